package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// goSecret finds a 32-character key written in Go: assigned to a name holding "key", or given
// to aes.NewCipher.
var goSecret = regexp.MustCompile(`(?i)(?:\w*key\w*\s*(?::=|=|:)\s*(?:\[\]byte\()?|NewCipher\(\[\]byte\()"([0-9A-Za-z]{32})"`)

// TestPublishedKeys_Complete walks the repository for private keys (PEM, in any file, the
// "TESTING KEY" label included, and one-line base64 PKCS#8 files) and secret files (legacy MD5
// keys, WeChat APIv2/APIv3 keys) and checks that each is on the refusal lists: a key a test
// adds is refused on real gateways without anyone remembering to list it. The digests are
// computed here with crypto/x509 and crypto/sha256, not with published.go's helpers.
func TestPublishedKeys_Complete(t *testing.T) {
	root := filepath.Join("..", "..")
	digest := func(pub crypto.PublicKey) string {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(der)
		return hex.EncodeToString(s[:])
	}
	parsePriv := func(der []byte) (crypto.PublicKey, bool) {
		if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
			return k.(crypto.Signer).Public(), true
		}
		if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
			return k.Public(), true
		}
		return nil, false
	}
	var keys, secrets int
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "paynotify-data") {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rest := b
		for {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			if !strings.HasSuffix(blk.Type, "PRIVATE KEY") && blk.Type != "TESTING KEY" {
				continue
			}
			pub, ok := parsePriv(blk.Bytes)
			if !ok {
				continue // a deliberately broken key of a parser test
			}
			keys++
			if _, listed := publishedKeys[digest(pub)]; !listed {
				t.Errorf("%s: private key %s not in publishedKeys", rel, digest(pub))
			}
		}
		if strings.HasSuffix(path, ".oneline") && strings.Contains(d.Name(), "private") {
			der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatalf("%s: %v", rel, err)
			}
			pub, ok := parsePriv(der)
			if !ok {
				t.Fatalf("%s: not a private key", rel)
			}
			keys++
			if _, listed := publishedKeys[digest(pub)]; !listed {
				t.Errorf("%s: private key not in publishedKeys", rel)
			}
		}
		if strings.HasSuffix(path, ".go") {
			// Keys of 32 characters written in Go sources (tests, godoc examples):
			// `APIv3Key: []byte("…")`, `apiv3Key := …`, `const key = "…"`, `NewCipher([]byte("…"))`.
			for _, m := range goSecret.FindAllSubmatch(b, -1) {
				secrets++
				s := sha256.Sum256(m[1])
				if _, listed := publishedSecrets[hex.EncodeToString(s[:])]; !listed {
					t.Errorf("%s: key %.8s… not in publishedSecrets", rel, m[1])
				}
			}
		}
		if strings.Contains(filepath.ToSlash(rel), "testdata/") && (strings.HasPrefix(d.Name(), "md5_key") || strings.HasSuffix(d.Name(), ".key")) {
			secrets++
			s := sha256.Sum256([]byte(strings.TrimSpace(string(b))))
			if _, listed := publishedSecrets[hex.EncodeToString(s[:])]; !listed {
				t.Errorf("%s: secret not in publishedSecrets", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The repository holds 15 PEM and 3 one-line private keys (8 distinct keys), 5 secret files
	// and more than 10 keys in Go sources: a walk that found fewer would have missed some.
	if keys < 18 || secrets < 15 {
		t.Fatalf("found %d private keys and %d secret files: the walk missed the testdata", keys, secrets)
	}
	s := sha256.Sum256([]byte("tour-token-0123456789"))
	if _, listed := publishedTokens[hex.EncodeToString(s[:])]; !listed {
		t.Error("docs/tour.md's token is not in publishedTokens")
	}
	// The tour makes its token at random now: a token printed in the docs is a published one.
	for _, f := range []string{"tour.md", "tour.sh"} {
		tour, err := os.ReadFile(filepath.Join(root, "docs", f))
		if err != nil || !strings.Contains(string(tour), "export PAYNOTIFY_API_TOKEN=$(openssl rand -hex 16)") {
			t.Errorf("docs/%s does not make its api_token at random (%v): a fixed one belongs in publishedTokens", f, err)
		}
	}
}

// TestBuildApps_RefusesPublishedKeys gives each key field of each provider a published key (or
// secret), with the provider's real gateway (the default) and with a loopback one: refused, naming
// the field, with the first; accepted with the second. The app's other keys are fresh.
func TestBuildApps_RefusesPublishedKeys(t *testing.T) {
	dir := t.TempDir()
	repo := func(p string) string {
		abs, err := filepath.Abs(filepath.Join("..", "..", p))
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	k1, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := func(k *rsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	pubPEM := func(k *rsa.PrivateKey) []byte {
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	ownPriv := write("own_private.pem", privPEM(k1))
	ownPub := write("other_public.pem", pubPEM(k2))
	secret := func() []byte { // 32 random hex characters, and the newline an editor adds
		b := make([]byte, 16)
		rand.Read(b)
		return []byte(hex.EncodeToString(b) + "\n")
	}
	ownV3 := write("apiv3.key", secret())
	ownV2 := write("apiv2.key", secret())
	ownMD5 := write("md5.txt", secret())

	// A self-signed certificate over the app's own key, for the certificate mode's app and root
	// certificates.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "own"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k1.PublicKey, k1)
	if err != nil {
		t.Fatal(err)
	}
	ownCert := write("own_cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}))
	// (An app certificate over a published key goes with that key as app_private_key_file,
	// refused as such: Alipay's client checks that the two match.)
	certApp := func(appCert, alipayCert, rootCert string) AppConfig {
		return AppConfig{Name: "shop", Provider: "alipay", AppID: "2021000000000001", AppPrivateKeyFile: ownPriv, AppCertFile: appCert,
			AlipayCertFile: alipayCert, AlipayRootCertFile: rootCert, SignType: "RSA2", Gateway: "https://openapi.alipay.com/gateway.do"}
	}
	alipayApp := func(priv, pub string) AppConfig {
		return AppConfig{Name: "shop", Provider: "alipay", AppID: "2021000000000001", AppPrivateKeyFile: priv,
			AlipayPublicKeyFile: pub, SignType: "RSA2", Gateway: "https://openapi.alipay.com/gateway.do"}
	}
	wechatApp := func(priv, v3, v2, pub string, certs ...string) AppConfig {
		a := AppConfig{Name: "wx", Provider: "wechatpay", MchID: "1900000001", WechatAppID: "wx0000000000000001",
			MerchantPrivateKeyFile: priv, MerchantSerialNo: "0123456789ABCDEF", APIv3KeyFile: v3, APIv2KeyFile: v2,
			APIBase: "https://api.mch.weixin.qq.com", PlatformCertFiles: certs}
		if pub != "" {
			a.PlatformPublicKeyFile, a.PlatformPublicKeyID = pub, "PUB_KEY_ID_0001"
		}
		return a
	}
	legacyApp := func(md5, pub, priv string) AppConfig {
		a := AppConfig{Name: "old", Provider: "alipay-legacy", Partner: "2088101122136241", MD5KeyFile: md5,
			AlipayPublicKeyFile: pub, MerchantPrivateKeyFile: priv, SignType: "RSA", InputCharset: "utf-8",
			Gateway: "https://mapi.alipay.com/gateway.do", WAPGateway: "http://wappaygw.alipay.com/service/rest.htm",
			NotifyVerifyURL: "https://mapi.alipay.com/gateway.do?service=notify_verify"}
		if md5 != "" {
			a.SignType = "MD5"
		}
		return a
	}
	loopback := func(a AppConfig) AppConfig {
		switch a.Provider {
		case "wechatpay":
			a.APIBase = "http://127.0.0.1:1"
		case "alipay-legacy":
			a.Gateway, a.WAPGateway, a.NotifyVerifyURL = "http://localhost:1/gateway.do", "http://[::1]:1/rest.htm", "http://127.0.0.2:1/v"
		default:
			a.Gateway = "http://127.0.0.1:1/gateway.do"
		}
		return a
	}

	for _, tc := range []struct {
		name, field string
		app         AppConfig
	}{
		{"AlipayAppKey", "app_private_key_file", alipayApp(repo("alipay/testdata/shared/test_private_pkcs8.pem"), ownPub)},
		{"AlipayPublicKey", "alipay_public_key_file", alipayApp(ownPriv, repo("httpd/testdata/alipay_public.pem"))},
		{"AlipayCertFile", "alipay_cert_file", certApp(ownCert, repo("wechatpay/testdata/platform_cert.pem"), ownCert)},
		{"WechatMerchantKey", "merchant_private_key_file", wechatApp(repo("wechatpay/testdata/shared/official_doc_test_key.pem"), ownV3, "", ownPub)},
		{"WechatAPIv3Key", "apiv3_key_file", wechatApp(ownPriv, repo("wechatpay/testdata/samples/apiv3.key"), "", ownPub)},
		{"WechatAPIv2Key", "apiv2_key_file", wechatApp(ownPriv, ownV3, repo("wechatpay/testdata/samples/apiv2.key"), ownPub)},
		{"WechatPlatformPublicKey", "platform_public_key_file", wechatApp(ownPriv, ownV3, "", repo("wechatpay/testdata/shared/go_sdk_test_public_key.pem"))},
		{"WechatPlatformCert", "platform_cert_files[0]", wechatApp(ownPriv, ownV3, "", "", repo("wechatpay/testdata/platform_cert.pem"))},
		{"LegacyMD5Key", "md5_key_file", legacyApp(repo("alipaylegacy/testdata/keys/md5_key.txt"), "", "")},
		{"LegacyAlipayKey", "alipay_public_key_file", legacyApp("", repo("alipaylegacy/testdata/keys/alipay_public.pem"), ownPriv)},
		{"LegacyMerchantKey", "merchant_private_key_file", legacyApp("", ownPub, repo("alipaylegacy/testdata/keys/merchant_private_pkcs1.pem"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := buildApps(&Config{APIToken: "0123456789abcdef0123", Apps: []AppConfig{tc.app}})
			var pe *publishedError
			if !errors.As(err, &pe) || pe.field != tc.field || !strings.Contains(err.Error(), "."+tc.field+": this key is published") {
				t.Fatalf("real gateway: err = %v, want %s refused as published", err, tc.field)
			}
			if err := publishedCheck(&tc.app); err == nil || !strings.Contains(err.Error(), tc.field+": this key is published") {
				t.Errorf("doctor's check: %v", err)
			}
			lb := loopback(tc.app)
			if _, err := buildApps(&Config{APIToken: "0123456789abcdef0123", Apps: []AppConfig{lb}}); err != nil {
				t.Fatalf("loopback gateway: %v", err)
			}
			if err := publishedCheck(&lb); err != nil {
				t.Errorf("doctor's check, loopback gateway: %v", err)
			}
		})
	}

	t.Run("OwnKeys", func(t *testing.T) {
		for _, a := range []AppConfig{alipayApp(ownPriv, ownPub), wechatApp(ownPriv, ownV3, ownV2, ownPub), legacyApp(ownMD5, "", ""),
			legacyApp("", ownPub, ownPriv)} {
			if _, err := buildApps(&Config{APIToken: "0123456789abcdef0123", Apps: []AppConfig{a}}); err != nil {
				t.Errorf("%s: %v", a.Provider, err)
			}
		}
	})

	t.Run("TourToken", func(t *testing.T) {
		real := alipayApp(ownPriv, ownPub)
		_, err := buildApps(&Config{APIToken: "tour-token-0123456789", Apps: []AppConfig{loopback(real), real}})
		if err == nil || !strings.Contains(err.Error(), "api_token: this token is published") || !strings.Contains(err.Error(), "apps[1] (shop)") {
			t.Fatalf("tour token with a real gateway: %v", err)
		}
		if _, err := buildApps(&Config{APIToken: "tour-token-0123456789", Apps: []AppConfig{loopback(real)}}); err != nil {
			t.Fatalf("tour token with a loopback gateway: %v", err)
		}
	})

	t.Run("Doctor", func(t *testing.T) {
		// doctor reports both as FAIL lines; its probes here reach nothing (the dialer refuses
		// every address without connecting).
		d := &doctor{now: time.Now, http: &http.Client{Transport: &http.Transport{
			DialContext: func(context.Context, string, string) (net.Conn, error) {
				return nil, errors.New("no network in this test")
			}}}}
		app := wechatApp(repo("wechatpay/testdata/shared/official_doc_test_key.pem"), ownV3, "", ownPub)
		d.cfg = &Config{APIToken: "tour-token-0123456789", Database: "sqlite:" + filepath.Join(dir, "doctor.db"),
			PublicURL: "http://127.0.0.1:1", Apps: []AppConfig{app}}
		results := d.run(t.Context(), d.cfg.Apps)
		var got []string
		for _, r := range results {
			if r.status == checkFail && (r.check == "published key" || r.check == "api_token") {
				got = append(got, r.scope+" "+r.check+": "+r.finding)
			}
		}
		if len(got) != 2 || !strings.HasPrefix(got[0], "wx published key: merchant_private_key_file: this key is published") ||
			!strings.HasPrefix(got[1], "(server) api_token: api_token: this token is published") {
			t.Fatalf("doctor's FAIL lines: %q", got)
		}
	})

	t.Run("Loopback", func(t *testing.T) {
		for u, want := range map[string]bool{
			"http://127.0.0.1:8080/gateway.do": true, "http://127.8.9.1/": true, "http://[::1]:1/": true, "http://LOCALHOST./x": true,
			"https://openapi.alipay.com/gateway.do": false, "http://10.0.0.1/": false, "http://localhost.example.com/": false,
			"http://[::ffff:8.8.8.8]/": false, "http://0.0.0.0/": false, "http://sandbox:8081/": false,
		} {
			if got := loopbackURL(u); got != want {
				t.Errorf("loopbackURL(%q) = %v, want %v", u, got, want)
			}
		}
	})
}
