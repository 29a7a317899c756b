package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/sandbox"
	"github.com/paynotify/paynotify/sqlite"
)

// doctorEnv is a sandbox on a real loopback socket and what a config needs to reach it.
type doctorEnv struct {
	base string // the sandbox's URL
	sb   *sandbox.Sandbox
	k    sandbox.Keys
	// secrets are the private keys and shared secrets the configs hold: no output may contain
	// any of them.
	secrets []string
}

func newDoctorEnv(t *testing.T) *doctorEnv {
	t.Helper()
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	sb, err := sandbox.New(sandbox.Config{StateDir: t.TempDir(), BaseURL: srv.URL, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	h = sb.Handler()
	k := sb.Keys()
	e := &doctorEnv{base: srv.URL, sb: sb, k: k}
	for _, p := range []string{k.AlipayAppPrivateKey, k.WechatMerchantPrivateKey, k.LegacyMerchantPrivateKey} {
		e.secrets = append(e.secrets, pemBody(t, p)...)
	}
	e.secrets = append(e.secrets, k.WechatAPIv3Key, k.LegacyMD5Key, doctorToken)
	return e
}

const doctorToken = "doctor-test-token-0123456789"

// pemBody returns pieces of a PEM block's base64 body (any of which in an output would be a
// leak), or fails.
func pemBody(t *testing.T, s string) []string {
	t.Helper()
	blk, _ := pem.Decode([]byte(s))
	if blk == nil {
		t.Fatal("not PEM")
	}
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if len(line) == 64 {
			out = append(out, line[8:40])
		}
	}
	if len(out) < 10 {
		t.Fatalf("a PEM body of %d lines", len(out))
	}
	return out
}

// config writes the key files of the sandbox's three apps and a config using them into dir, and
// returns the config's path. Tests then overwrite a key file to break one thing.
func (e *doctorEnv) config(t *testing.T, dir, database, publicURL string) string {
	t.Helper()
	k := e.k
	files := map[string]string{
		"alipay_app.pem": k.AlipayAppPrivateKey, "alipay_pub.pem": k.AlipayPublicKey,
		"wx_key.pem": k.WechatMerchantPrivateKey, "wx_apiv3.key": k.WechatAPIv3Key + "\n", "wx_pub.pem": k.WechatPlatformPublicKey,
		"legacy_md5.key": k.LegacyMD5Key + "\n",
	}
	for name, content := range files {
		writeTestFile(t, filepath.Join(dir, name), content)
	}
	cfg := fmt.Sprintf(`database: %q
public_url: %q
api_token: %q
apps:
  - name: alipay-demo
    provider: alipay
    app_id: %q
    gateway: %q
    app_private_key_file: alipay_app.pem
    alipay_public_key_file: alipay_pub.pem
  - name: wechatpay-demo
    provider: wechatpay
    mchid: %q
    appid: %q
    api_base: %q
    merchant_private_key_file: wx_key.pem
    merchant_serial_no: %q
    apiv3_key_file: wx_apiv3.key
    platform_public_key_file: wx_pub.pem
    platform_public_key_id: %q
  - name: alipay-legacy-demo
    provider: alipay-legacy
    partner: %q
    seller_email: %q
    sign_type: MD5
    md5_key_file: legacy_md5.key
    gateway: %q
    wap_gateway: %q
    notify_verify_url: %q
`, database, publicURL, doctorToken,
		k.AlipayAppID, e.base+"/sandbox/alipay/gateway.do",
		k.WechatMchID, k.WechatAppID, e.base+"/sandbox/wechatpay", k.WechatMerchantSerialNo, k.WechatPlatformPublicKeyID,
		k.LegacyPartner, k.LegacySellerEmail, e.base+"/sandbox/alipay-legacy/gateway.do", e.base+"/sandbox/alipay-legacy/wap/rest.htm",
		e.base+"/sandbox/alipay-legacy/gateway.do?service=notify_verify")
	path := filepath.Join(dir, "paynotify.yaml")
	writeTestFile(t, path, cfg)
	return path
}

// doctorRun runs `paynotify doctor` and checks that nothing it printed holds a secret.
func (e *doctorEnv) run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	code, out, errs := runMain(t, "", append([]string{"doctor"}, args...)...)
	for _, s := range e.secrets {
		if strings.Contains(out+errs, s) {
			t.Fatalf("doctor printed a secret (%.6s…):\n%s%s", s, out, errs)
		}
	}
	return code, out + errs
}

// doctorLine matches one check line: STATUS, scope, check and the rest.
var doctorLine = regexp.MustCompile(`^(PASS|WARN|FAIL)  (\S+) +([a-z0-9_ -]+): (.*)$`)

// lines returns the check lines of out whose scope and check are as given, as "STATUS rest".
func doctorLines(t *testing.T, out, scope, check string) []string {
	t.Helper()
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		m := doctorLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if m[2] == scope && m[3] == check {
			got = append(got, m[1]+" "+m[4])
		}
	}
	return got
}

// wantLine fails unless out has a line of scope and check with status whose text contains each
// of subs.
func wantLine(t *testing.T, out, status, scope, check string, subs ...string) {
	t.Helper()
	for _, l := range doctorLines(t, out, scope, check) {
		if !strings.HasPrefix(l, status+" ") {
			continue
		}
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			return
		}
	}
	t.Fatalf("no %s line for %s %s with %q in:\n%s", status, scope, check, subs, out)
}

// noStatus fails if out has a line of status.
func noStatus(t *testing.T, out, status string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, status+"  ") {
			t.Fatalf("unexpected %s line %q in:\n%s", status, l, out)
		}
	}
}

// TestDoctor runs doctor against the sandbox: a good config before the first serve (WARN only
// for what serve has yet to do, and the plain-http sandbox), the same after serve started, and
// each broken key, certificate or address as the FAIL or WARN it must be.
func TestDoctor(t *testing.T) {
	e := newDoctorEnv(t)

	t.Run("BeforeServe", func(t *testing.T) {
		dir := t.TempDir()
		dbPath := filepath.Join(dir, "data", "paynotify.db")
		config := e.config(t, dir, "sqlite:"+dbPath, "http://"+freeAddr(t))
		code, out := e.run(t, "--config", config)
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		noStatus(t, out, "FAIL")
		wantLine(t, out, "PASS", "alipay-demo", "keys", "app_private_key_file parses (RSA 2048)")
		wantLine(t, out, "PASS", "alipay-demo", "key pair", "consistent RSA key")
		wantLine(t, out, "PASS", "alipay-demo", "wrong-key guard", "alipay_public_key_file is not the app's own public key")
		wantLine(t, out, "WARN", "alipay-demo", "gateway", "plain http", " — ")
		wantLine(t, out, "PASS", "alipay-demo", "signed call", "ACQ.TRADE_NOT_EXIST, signed and verified")
		wantLine(t, out, "PASS", "wechatpay-demo", "keys", "apiv3_key_file holds 32 bytes")
		wantLine(t, out, "PASS", "wechatpay-demo", "wrong-key guard", "platform_public_key_file")
		wantLine(t, out, "WARN", "wechatpay-demo", "gateway", "plain http")
		wantLine(t, out, "PASS", "wechatpay-demo", "signed call", "404 ORDER_NOT_EXIST, signed and verified")
		wantLine(t, out, "PASS", "wechatpay-demo", "apiv3 key", "apiv3_key_file decrypts what WeChat Pay encrypts with it")
		wantLine(t, out, "PASS", "alipay-legacy-demo", "keys", "md5_key_file holds 32 letters and digits")
		wantLine(t, out, "WARN", "alipay-legacy-demo", "signed call", "not made")
		wantLine(t, out, "PASS", "alipay-legacy-demo", "notify_verify", "answers false")
		wantLine(t, out, "WARN", "(server)", "public_url", "does not answer", "fine before the first serve")
		wantLine(t, out, "WARN", "(server)", "public_url", "plain http")
		wantLine(t, out, "WARN", "(server)", "database", "does not exist yet")
		if !regexp.MustCompile(`(?m)^\d+ checks: \d+ passed, \d+ warnings, 0 failed$`).MatchString(out) {
			t.Fatalf("no summary line:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
			t.Fatalf("doctor created the database's directory (%v)", err)
		}

		// An SQLite file that exists but was never migrated: migrations pending is a WARN, and
		// doctor leaves them pending.
		if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		db, err := sqlite.Open(dbPath)
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		code, out = e.run(t, "--config", config)
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		wantLine(t, out, "WARN", "(server)", "database", "migrations pending (paynotify: ", "River: Unapplied migrations", "paynotify migrate")
		db, err = sqlite.Open(dbPath)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if n, err := db.PendingMigrations(t.Context()); err != nil || n == 0 {
			t.Fatalf("after doctor: %d pending, %v; doctor must not migrate", n, err)
		}
	})

	t.Run("AfterServe", func(t *testing.T) {
		dir := t.TempDir()
		addr := freeAddr(t)
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+addr)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int)
		go func() {
			m := &Main{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: io.Discard}
			done <- m.Run(ctx, []string{"serve", "--config", config, "--listen", addr})
		}()
		defer func() {
			cancel()
			if code := <-done; code != exitOK {
				t.Errorf("serve exit %d", code)
			}
		}()
		waitHealthy(t, "http://"+addr)
		code, out := e.run(t, "--config", config)
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		noStatus(t, out, "FAIL")
		wantLine(t, out, "PASS", "(server)", "public_url", "/healthz answers ok")
		wantLine(t, out, "PASS", "(server)", "database", "answers, migrations current")
	})

	t.Run("WrongProviderKey", func(t *testing.T) {
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		// Keys of someone else: the answers are genuine, but do not verify with them.
		writeTestFile(t, filepath.Join(dir, "alipay_pub.pem"), e.k.WechatPlatformPublicKey)
		writeTestFile(t, filepath.Join(dir, "wx_pub.pem"), e.k.AlipayPublicKey)
		code, out := e.run(t, "--config", config)
		if code != exitInvalid {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, "PASS", "alipay-demo", "keys", "alipay_public_key_file parses")
		wantLine(t, out, "FAIL", "alipay-demo", "signed call", "the answer's signature does not verify with alipay_public_key_file",
			" — set the Alipay public key (支付宝公钥) of app_id "+e.k.AlipayAppID)
		wantLine(t, out, "FAIL", "wechatpay-demo", "signed call", "the answer's signature does not verify with platform_public_key_file",
			" — set the WeChat Pay public key")
		wantLine(t, out, "PASS", "alipay-legacy-demo", "notify_verify", "answers false")
		if !strings.Contains(out, " 2 failed\n") {
			t.Fatalf("summary:\n%s", out)
		}
	})

	t.Run("MismatchedKeyPair", func(t *testing.T) {
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		// Private keys whose public halves are not the ones registered at the provider.
		writeTestFile(t, filepath.Join(dir, "alipay_app.pem"), e.k.WechatMerchantPrivateKey)
		writeTestFile(t, filepath.Join(dir, "wx_key.pem"), e.k.AlipayAppPrivateKey)
		code, out := e.run(t, "--config", config)
		if code != exitInvalid {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, "FAIL", "alipay-demo", "signed call", "isv.invalid-signature", "does not match the app public key registered for app_id")
		wantLine(t, out, "FAIL", "wechatpay-demo", "signed call", "401 SIGN_ERROR", "merchant_serial_no")
		if strings.Contains(out, "验签") { // the gateway's sub_msg quotes the signed request: not shown
			t.Fatalf("doctor printed Alipay's sub_msg:\n%s", out)
		}
	})

	t.Run("AppCertNotExist", func(t *testing.T) {
		// Alipay's refusal of an app certificate it does not know (after a renewal in the
		// console) points at app_cert_file, not at the keys (a reviewer helper's finding).
		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html;charset=utf-8")
			io.WriteString(w, `{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.app-cert-not-exist","sub_msg":"应用证书不存在"}}`)
		}))
		defer gw.Close()
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		b, err := os.ReadFile(config)
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, config, strings.Replace(string(b), e.base+"/sandbox/alipay/gateway.do", gw.URL+"/gateway.do", 1))
		code, out := e.run(t, "--config", config, "--app", "alipay-demo")
		if code != exitInvalid {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, "FAIL", "alipay-demo", "signed call", "isv.app-cert-not-exist", "app_cert_file")
	})

	t.Run("CertModeHints", func(t *testing.T) {
		// An app in certificate mode configured with a certificate as alipay_public_key_file
		// passed every line; Alipay's refusal of a request without the certificates' SNs got the
		// generic "check app_id, app_private_key_file and gateway" (a reviewer helper's findings).
		pub, err := alipay.ParsePublicKey([]byte(e.k.AlipayPublicKey))
		if err != nil {
			t.Fatal(err)
		}
		issuer, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Alipay public-key certificate"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, issuer)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		writeTestFile(t, filepath.Join(dir, "alipay_pub.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
		code, out := e.run(t, "--config", config, "--app", "alipay-demo")
		if code != exitOK {
			t.Fatalf("exit %d, want 0 (a warning):\n%s", code, out)
		}
		wantLine(t, out, "WARN", "alipay-demo", "keys", "alipay_public_key_file holds a certificate", "app_cert_file, alipay_cert_file and alipay_root_cert_file")

		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html;charset=utf-8")
			io.WriteString(w, `{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.missing-app-cert-sn","sub_msg":"缺少应用公钥证书序列号"}}`)
		}))
		defer gw.Close()
		b, err := os.ReadFile(config)
		if err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, config, strings.Replace(string(b), e.base+"/sandbox/alipay/gateway.do", gw.URL+"/gateway.do", 1))
		code, out = e.run(t, "--config", config, "--app", "alipay-demo")
		if code != exitInvalid {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, "FAIL", "alipay-demo", "signed call", "certificate mode", "isv.missing-app-cert-sn", "configure app_cert_file")
	})

	t.Run("WrongKeyGuard", func(t *testing.T) {
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		writeTestFile(t, filepath.Join(dir, "alipay_pub.pem"), e.k.AlipayAppPublicKey)
		writeTestFile(t, filepath.Join(dir, "wx_pub.pem"), e.k.WechatMerchantPublicKey)
		code, out := e.run(t, "--config", config)
		if code != exitInvalid {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, "FAIL", "alipay-demo", "wrong-key guard", "alipay_public_key_file holds the app's own public key", "支付宝公钥")
		wantLine(t, out, "WARN", "alipay-demo", "signed call", "not made")
		wantLine(t, out, "FAIL", "wechatpay-demo", "wrong-key guard", "platform_public_key_file holds the merchant's own public key")
		wantLine(t, out, "WARN", "wechatpay-demo", "signed call", "not made")
	})

	t.Run("CertMode", func(t *testing.T) {
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		now := time.Now()
		ca := newTestCA(t)
		appPub := mustPublicKey(t, e.k.AlipayAppPublicKey)
		alipayPub := mustPublicKey(t, e.k.AlipayPublicKey)
		// The certificates come from an authority of the test's own: the sandbox is told that
		// they are the app's and Alipay's (it checks app_cert_sn, and its answers name Alipay's).
		hold := func(t *testing.T, appCert, alipayCert string) {
			t.Helper()
			writeTestFile(t, filepath.Join(dir, "app.crt"), appCert)
			if err := e.sb.SetAlipayAppCert(e.k.AlipayAppID, []byte(appCert)); err != nil {
				t.Fatal(err)
			}
			writeTestFile(t, filepath.Join(dir, "alipay.crt"), alipayCert)
		}
		t.Cleanup(func() { e.sb.SetAlipayCert(nil); e.sb.AlipayAppCert(e.k.AlipayAppID) })
		writeTestFile(t, filepath.Join(dir, "root.crt"), ca.pem)
		// Alipay's certificate ends in 10 days: a WARN, and the call still goes through.
		alipayCert := ca.issue(t, "alipay", alipayPub, now.Add(10*24*time.Hour+time.Hour))
		if err := e.sb.SetAlipayCert([]byte(alipayCert)); err != nil {
			t.Fatal(err)
		}
		hold(t, ca.issue(t, "app", appPub, now.Add(400*24*time.Hour)), alipayCert)
		certConfig := func(t *testing.T) {
			t.Helper()
			b, err := os.ReadFile(config)
			if err != nil {
				t.Fatal(err)
			}
			s := strings.Replace(string(b), "    alipay_public_key_file: alipay_pub.pem\n",
				"    app_cert_file: app.crt\n    alipay_cert_file: alipay.crt\n    alipay_root_cert_file: root.crt\n", 1)
			writeTestFile(t, config, s)
		}
		certConfig(t)
		code, out := e.run(t, "--config", config, "--app", "alipay-demo")
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		wantLine(t, out, "PASS", "alipay-demo", "key pair", "app_cert_file certifies the public key of app_private_key_file")
		wantLine(t, out, "PASS", "alipay-demo", "certificate", "app_cert_file valid until")
		wantLine(t, out, "WARN", "alipay-demo", "certificate", "alipay_cert_file", "expires on "+now.Add(10*24*time.Hour+time.Hour).UTC().Format(time.DateOnly), "in 10 days")
		wantLine(t, out, "PASS", "alipay-demo", "signed call", "ACQ.TRADE_NOT_EXIST, signed and verified with alipay_cert_file")

		// Expired: a FAIL. An app certificate of another key: a FAIL of the key pair.
		writeTestFile(t, filepath.Join(dir, "alipay.crt"), ca.issue(t, "alipay", alipayPub, now.Add(-time.Hour)))
		writeTestFile(t, filepath.Join(dir, "app.crt"), ca.issue(t, "app", alipayPub, now.Add(400*24*time.Hour)))
		code, out = e.run(t, "--config", config, "--app", "alipay-demo")
		if code != exitInvalid {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, "FAIL", "alipay-demo", "certificate", "alipay_cert_file", "expired on")
		wantLine(t, out, "FAIL", "alipay-demo", "key pair", "app_cert_file does not certify the public key of app_private_key_file")

		// A rotation's file: the ended certificate beside the next one is a WARN to remove it,
		// named by its alipay_cert_sn, not a FAIL (the server verifies with the next one).
		next := ca.issue(t, "alipay-new", alipayPub, now.Add(400*24*time.Hour))
		if err := e.sb.SetAlipayCert([]byte(next)); err != nil {
			t.Fatal(err)
		}
		hold(t, ca.issue(t, "app", appPub, now.Add(400*24*time.Hour)), ca.issue(t, "alipay-old", alipayPub, now.Add(-time.Hour))+next)
		code, out = e.run(t, "--config", config, "--app", "alipay-demo")
		if code != exitOK {
			t.Fatalf("a rotation's file: exit %d, want 0:\n%s", code, out)
		}
		wantLine(t, out, "PASS", "alipay-demo", "certificate", "alipay_cert_file valid until", "alipay_cert_sn")
		wantLine(t, out, "WARN", "alipay-demo", "certificate", "alipay_cert_file also holds alipay_cert_sn", "ended on", "remove it")

		// The next certificate added ahead of its start, beside the current one: not a FAIL.
		current := ca.issue(t, "alipay-now", alipayPub, now.Add(400*24*time.Hour))
		if err := e.sb.SetAlipayCert([]byte(current)); err != nil {
			t.Fatal(err)
		}
		writeTestFile(t, filepath.Join(dir, "alipay.crt"), current+
			ca.issueBetween(t, "alipay-next", alipayPub, now.Add(10*24*time.Hour), now.Add(800*24*time.Hour)))
		code, out = e.run(t, "--config", config, "--app", "alipay-demo")
		if code != exitOK {
			t.Fatalf("a next certificate not valid yet: exit %d, want 0:\n%s", code, out)
		}
		wantLine(t, out, "PASS", "alipay-demo", "certificate", "alipay_cert_file valid until "+now.Add(400*24*time.Hour).UTC().Format(time.DateOnly))
		wantLine(t, out, "PASS", "alipay-demo", "certificate", "(the next one)")
	})

	t.Run("Unreachable", func(t *testing.T) {
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		b, err := os.ReadFile(config)
		if err != nil {
			t.Fatal(err)
		}
		dead := "http://" + freeAddr(t)
		writeTestFile(t, config, strings.Replace(string(b), e.base+"/sandbox/alipay/gateway.do", dead+"/gateway.do", 1))
		code, out := e.run(t, "--config", config, "--app", "alipay-demo")
		if code != exitInvalid {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, "FAIL", "alipay-demo", "gateway", "does not answer", " — check gateway")
		wantLine(t, out, "WARN", "alipay-demo", "signed call", "not made: the gateway does not answer")
	})

	t.Run("AppFilter", func(t *testing.T) {
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		writeTestFile(t, filepath.Join(dir, "alipay_pub.pem"), e.k.WechatPlatformPublicKey) // broken, but not checked
		code, out := e.run(t, "--config", config, "--app", "wechatpay-demo")
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		scopes := map[string]bool{}
		for _, l := range strings.Split(out, "\n") {
			if m := doctorLine.FindStringSubmatch(l); m != nil {
				scopes[m[2]] = true
			}
		}
		if len(scopes) != 2 || !scopes["wechatpay-demo"] || !scopes["(server)"] {
			t.Fatalf("scopes %v, want wechatpay-demo and (server):\n%s", scopes, out)
		}
	})

	// editConfig replaces old by repl in the config file at path.
	editConfig := func(t *testing.T, path, old, repl string) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), old) {
			t.Fatalf("%q is not in the config", old)
		}
		writeTestFile(t, path, strings.Replace(string(b), old, repl, 1))
	}

	t.Run("WrongAPIv3Key", func(t *testing.T) {
		// 32 bytes, the signed call fits: only a decryption tells the key is someone else's
		// (a reviewer helper's finding: doctor passed it while every notification failed).
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		writeTestFile(t, filepath.Join(dir, "wx_apiv3.key"), strings.Repeat("k", 32)+"\n")
		code, out := e.run(t, "--config", config, "--app", "wechatpay-demo")
		if code != exitInvalid {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, "PASS", "wechatpay-demo", "signed call", "ORDER_NOT_EXIST, signed and verified")
		wantLine(t, out, "FAIL", "wechatpay-demo", "apiv3 key", "apiv3_key_file does not decrypt", " — set apiv3_key_file to the APIv3 key of mchid")
	})

	t.Run("PlatformCertificates", func(t *testing.T) {
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		writeTestFile(t, filepath.Join(dir, "wx_cert.pem"), e.k.WechatPlatformCertificate)
		editConfig(t, config, "    platform_public_key_file: wx_pub.pem\n    platform_public_key_id: \""+e.k.WechatPlatformPublicKeyID+"\"\n",
			"    platform_cert_files: [wx_cert.pem]\n")
		code, out := e.run(t, "--config", config, "--app", "wechatpay-demo")
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		wantLine(t, out, "PASS", "wechatpay-demo", "keys", "platform_cert_files[0] parses (serial "+e.k.WechatPlatformCertSerial)
		wantLine(t, out, "PASS", "wechatpay-demo", "certificate", "platform_cert_files[0] valid until")
		wantLine(t, out, "PASS", "wechatpay-demo", "wrong-key guard", "platform_cert_files[0] is not the merchant's own public key")
		wantLine(t, out, "PASS", "wechatpay-demo", "signed call", "ORDER_NOT_EXIST, signed and verified with platform_cert_files")
	})

	t.Run("LegacyRSA", func(t *testing.T) {
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		writeTestFile(t, filepath.Join(dir, "legacy_key.pem"), e.k.LegacyMerchantPrivateKey)
		writeTestFile(t, filepath.Join(dir, "legacy_alipay.pem"), e.k.LegacyAlipayPublicKey)
		editConfig(t, config, "    sign_type: MD5\n    md5_key_file: legacy_md5.key\n",
			"    sign_type: RSA\n    merchant_private_key_file: legacy_key.pem\n    alipay_public_key_file: legacy_alipay.pem\n")
		code, out := e.run(t, "--config", config, "--app", "alipay-legacy-demo")
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		wantLine(t, out, "PASS", "alipay-legacy-demo", "keys", "merchant_private_key_file parses (RSA 1024)")
		wantLine(t, out, "PASS", "alipay-legacy-demo", "key pair", "merchant_private_key_file is a consistent RSA key")
		wantLine(t, out, "PASS", "alipay-legacy-demo", "wrong-key guard", "alipay_public_key_file is not the merchant's own public key")
		wantLine(t, out, "PASS", "alipay-legacy-demo", "notify_verify", "answers false")

		writeTestFile(t, filepath.Join(dir, "legacy_alipay.pem"), e.k.LegacyMerchantPublicKey)
		code, out = e.run(t, "--config", config, "--app", "alipay-legacy-demo")
		if code != exitInvalid {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, "FAIL", "alipay-legacy-demo", "wrong-key guard", "alipay_public_key_file holds the merchant's own public key")
	})

	t.Run("SecretFileMode", func(t *testing.T) {
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		if err := os.Chmod(filepath.Join(dir, "wx_apiv3.key"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out := e.run(t, "--config", config, "--app", "wechatpay-demo")
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		wantLine(t, out, "WARN", "wechatpay-demo", "keys", "apiv3_key_file is readable by other users (mode 0644)", "chmod 640")
		// 0640, what deploy.md installs (root-owned, readable by the service's group), is fine.
		if err := os.Chmod(filepath.Join(dir, "wx_apiv3.key"), 0o640); err != nil {
			t.Fatal(err)
		}
		if _, out := e.run(t, "--config", config, "--app", "wechatpay-demo"); strings.Contains(out, "readable by other users") {
			t.Fatalf("mode 0640 warned:\n%s", out)
		}
	})

	t.Run("Usage", func(t *testing.T) {
		dir := t.TempDir()
		config := e.config(t, dir, "sqlite:"+filepath.Join(dir, "paynotify.db"), "http://"+freeAddr(t))
		for _, tc := range []struct {
			args []string
			want string
		}{
			{nil, "--config is required"},
			{[]string{"--config"}, "flag needs an argument"},
			{[]string{"--config", config, "--frobnicate"}, "not defined: -frobnicate"},
			{[]string{"--config", config, "extra"}, "unexpected arguments"},
			{[]string{"--config", config, "--app", "nope"}, `--app "nope" is not an app of`},
			{[]string{"--config", filepath.Join(dir, "missing.yaml")}, "no such file"},
		} {
			code, out := e.run(t, tc.args...)
			if code != exitUsage || !strings.Contains(out, tc.want) {
				t.Errorf("doctor %q: exit %d, output %q; want exit 2 and %q", tc.args, code, out, tc.want)
			}
		}
		writeTestFile(t, config, "public_url: http://x\n")
		if code, out := e.run(t, "--config", config); code != exitUsage || !strings.Contains(out, "api_token") {
			t.Errorf("an invalid config: exit %d, output %q; want exit 2 naming api_token", code, out)
		}
		if code, out := e.run(t, "--help"); code != exitOK || !strings.Contains(out, "Usage: paynotify doctor") {
			t.Errorf("--help: exit %d, output %q", code, out)
		}
	})

	t.Run("PostgreSQL", func(t *testing.T) {
		dsn := pgtest.NewDatabase(t)
		dir := t.TempDir()
		config := e.config(t, dir, dsn, "http://"+freeAddr(t))
		code, out := e.run(t, "--config", config, "--app", "alipay-demo")
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		wantLine(t, out, "WARN", "(server)", "database", "answers; migrations pending (paynotify: ", "River: Unapplied migrations")
		st, err := openStore(t.Context(), dsn, true)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		code, out = e.run(t, "--config", config, "--app", "alipay-demo")
		if code != exitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		wantLine(t, out, "PASS", "(server)", "database", "answers, migrations current")

		// Nothing listens there; the password must not be printed.
		const pw = "doctor-db-password-5150"
		config = e.config(t, dir, "postgres://postgres:"+pw+"@"+freeAddr(t)+"/paynotify?sslmode=disable", "http://"+freeAddr(t))
		code, out = e.run(t, "--config", config, "--app", "alipay-demo")
		if code != exitInvalid {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, "FAIL", "(server)", "database", "does not answer")
		if strings.Contains(out, pw) {
			t.Fatalf("doctor printed the database password:\n%s", out)
		}
		// The same with the password as a query parameter, which pgx reads too.
		config = e.config(t, dir, "postgres://postgres@"+freeAddr(t)+"/paynotify?sslmode=disable&password="+pw, "http://"+freeAddr(t))
		code, out = e.run(t, "--config", config, "--app", "alipay-demo")
		if code != exitInvalid {
			t.Fatalf("exit %d, want 1:\n%s", code, out)
		}
		wantLine(t, out, "FAIL", "(server)", "database", "does not answer")
		if strings.Contains(out, pw) {
			t.Fatalf("doctor printed the database password given as ?password=:\n%s", out)
		}
	})
}

func TestRedactDSN(t *testing.T) {
	const pw = "s3cret-pw"
	for _, c := range []struct{ dsn, want string }{
		{"postgres://app:" + pw + "@db:5432/pay?sslmode=disable", "postgres://…@db:5432/pay?sslmode=disable"},
		{"postgres://app@db/pay?password=" + pw + "&sslmode=disable", "postgres://…@db/pay?password=…&sslmode=disable"},
		{"postgresql://db/pay?sslpassword=" + pw, "postgresql://db/pay?sslpassword=…"},
		{"host=db user=app password=" + pw + " dbname=pay", "host=db user=app password=… dbname=pay"},
		{"sqlite:paynotify-data/paynotify.db", "sqlite:paynotify-data/paynotify.db"},
		{"sqlite:/srv/a@b/paynotify.db", "sqlite:/srv/a@b/paynotify.db"},
		// User info url.Parse refuses or reads otherwise: a bare %, an unescaped /, one slash,
		// a misspelt scheme.
		{"postgres://app:50%off" + pw + "@db:5432/pay", "postgres://…@db:5432/pay"},
		{"postgres://app:a/" + pw + "@db/pay?sslmode=disable", "postgres://…@db/pay?sslmode=disable"},
		{"postgresql:/app:" + pw + "@db/pay", "postgresql:/…@db/pay"},
		{"postgress://app:" + pw + "@db/pay", "postgress://…@db/pay"},
		{"https://pay.example.com/n/a@b?x=1", "https://pay.example.com/n/a@b?x=1"},
		{"https://u:" + pw + "/x@pay.example.com/n", "https://…@pay.example.com/n"},
	} {
		got := redactDSN(c.dsn)
		if got != c.want {
			t.Errorf("redactDSN(%q) = %q, want %q", c.dsn, got, c.want)
		}
		if strings.Contains(got, pw) {
			t.Errorf("redactDSN(%q) shows the password", c.dsn)
		}
		if msg := scrubPassword("cannot parse `"+c.dsn+"`", c.dsn); strings.Contains(c.dsn, pw) && strings.Contains(msg, pw) {
			t.Errorf("scrubPassword with dsnSecrets(%q) = %q leaves the password: %q", c.dsn, dsnSecrets(c.dsn), msg)
		}
	}
}

// TestRedactNATSURL: nats.url is a list of servers, each with user info of its own (a reviewer's
// finding: read as one URL, the second server's user:password@ was its path, and logged).
func TestRedactNATSURL(t *testing.T) {
	const pw = "s3cret-pw"
	for _, c := range []struct{ url, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://u:" + pw + "@h1:4222", "nats://…@h1:4222"},
		{"nats://u:" + pw + "@h1:4222,nats://v:" + pw + "@h2:4222", "nats://…@h1:4222,nats://…@h2:4222"},
		{"nats://h1:4222, nats://v:" + pw + "@h2:4222", "nats://h1:4222,nats://…@h2:4222"},
		{"nats://" + pw + "@h1,tls://" + pw + "@h2", "nats://…@h1,tls://…@h2"},
		// User info where url.Parse would not find it: in the path after a ";" (one server as
		// written, which nats.go would misread as well).
		{"nats://u:" + pw + "@h1;nats://v:" + pw + "@h2", "nats://…@h2"},
		{"nats://u:%2F" + pw + "@h1", "nats://…@h1"},
	} {
		if got := redactNATSURL(c.url); got != c.want || strings.Contains(got, pw) {
			t.Errorf("redactNATSURL(%q) = %q, want %q", c.url, got, c.want)
		}
	}
	// A list of servers is a valid nats.url.
	list := validConfig + "nats: {url: \"nats://u:" + pw + "@127.0.0.1:4222, tls://127.0.0.2:4222\"}\n"
	if c, err := ParseConfig([]byte(list), env(map[string]string{"TOKEN": "0123456789abcdef0123"})); err != nil || c.NATS.Stream != "PAYNOTIFY" {
		t.Errorf("a list of servers: %v", err)
	}
}

// testCA is a certificate authority of a test: it issues certificates over given public keys.
type testCA struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
	pem  string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "doctor test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(3650 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{key: key, cert: cert, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// issue returns a PEM certificate over pub, valid from a day ago (or from notAfter minus a day,
// when that is earlier) until notAfter.
func (ca *testCA) issue(t *testing.T, cn string, pub *rsa.PublicKey, notAfter time.Time) string {
	t.Helper()
	notBefore := time.Now().Add(-24 * time.Hour)
	if d := notAfter.Add(-24 * time.Hour); d.Before(notBefore) {
		notBefore = d
	}
	return ca.issueBetween(t, cn, pub, notBefore, notAfter)
}

// issueBetween is issue with its start too.
func (ca *testCA) issueBetween(t *testing.T, cn string, pub *rsa.PublicKey, notBefore, notAfter time.Time) string {
	t.Helper()
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func mustPublicKey(t *testing.T, s string) *rsa.PublicKey {
	t.Helper()
	k, err := alipay.ParsePublicKey([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
