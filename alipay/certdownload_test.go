package alipay

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/testsign"
)

// certChain is a test PKI laid out as Alipay's: a root (given beside the real alipayRootCert.crt,
// whose SM2 root Go cannot parse), an intermediate ("Class 2"), and end-entity certificates
// issued by the intermediate. The certificates are fixtures; every signature a test verifies
// is made by openssl (testsign).
type certChain struct {
	t                 *testing.T
	now               time.Time
	rootKey, interKey *rsa.PrivateKey
	root, inter       *x509.Certificate
	rootPEM, interPEM []byte
	serial            int64
}

var testSerial int64 = 100

const alipayCN = "支付宝(中国)网络技术有限公司-2088000000000001"

func newCertChain(t *testing.T, now time.Time) *certChain {
	ch := &certChain{t: t, now: now}
	ch.rootKey, ch.interKey = genKey(t), genKey(t)
	rootDER := ch.create(&x509.Certificate{Subject: pkix.Name{CommonName: "Test Ant Root R1"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, ch.rootKey, &ch.rootKey.PublicKey)
	ch.root, _ = x509.ParseCertificate(rootDER)
	interDER := ch.create(&x509.Certificate{Subject: pkix.Name{CommonName: "Test Ant Class 2 R1"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, ch.root, ch.rootKey, &ch.interKey.PublicKey)
	ch.inter, _ = x509.ParseCertificate(interDER)
	ch.rootPEM, ch.interPEM = pemCert(rootDER), pemCert(interDER)
	return ch
}

func genKey(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// create issues tmpl (parent nil: self-signed) for pub, valid an hour either side of now unless
// tmpl says otherwise.
func (ch *certChain) create(tmpl, parent *x509.Certificate, parentKey *rsa.PrivateKey, pub *rsa.PublicKey) []byte {
	// Unique across chains: a cert SN is the issuer's name and the serial, and the test chains'
	// names are alike.
	testSerial++
	tmpl.SerialNumber = big.NewInt(testSerial)
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = ch.now.Add(-time.Hour), ch.now.Add(time.Hour)
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		ch.t.Fatal(err)
	}
	return der
}

// leaf issues an end-entity certificate with that common name for the key in keyFile, and returns
// its PEM and SN.
func (ch *certChain) leaf(cn string, pub *rsa.PublicKey, mod func(*x509.Certificate)) ([]byte, string) {
	tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn, OrganizationalUnit: []string{"Alipay"}}}
	if mod != nil {
		mod(tmpl)
	}
	p := pemCert(ch.create(tmpl, ch.inter, ch.interKey, pub))
	sn, err := CertSN(p)
	if err != nil {
		ch.t.Fatal(err)
	}
	return p, sn
}

func keyOf(t *testing.T, file string) *rsa.PublicKey {
	priv, err := ParsePrivateKey(mustRead(t, file))
	if err != nil {
		t.Fatal(err)
	}
	return &priv.PublicKey
}

// downloadGateway answers alipay.trade.query with the vector's node signed (by openssl) with
// newKeyFile and naming sn, and the certificate download with content (base64 of it unless it
// starts with "raw:"), counting the downloads.
type downloadGateway struct {
	mu        sync.Mutex
	content   string
	downloads int
	asked     []string // the SNs the downloads asked for
}

func (g *downloadGateway) serve(t *testing.T, queryBody string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		g.mu.Lock()
		defer g.mu.Unlock()
		switch r.URL.Query().Get("method") {
		case "alipay.trade.query":
			io.WriteString(w, queryBody)
		case MethodCertDownload:
			g.downloads++
			sn, _ := downloadSN(string(b))
			g.asked = append(g.asked, sn)
			content := g.content
			if s, ok := strings.CutPrefix(content, "raw:"); ok {
				io.WriteString(w, s)
				return
			}
			io.WriteString(w, `{"alipay_open_app_alipaycert_download_response":{"code":"10000","msg":"Success","alipay_cert_content":"`+
				base64.StdEncoding.EncodeToString([]byte(content))+`"}}`)
		default:
			http.Error(w, "unexpected method", http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// downloadSN returns the alipay_cert_sn of a download request's biz_content.
func downloadSN(body string) (string, error) {
	v, err := url.ParseQuery(body)
	if err != nil {
		return "", err
	}
	var biz struct {
		SN string `json:"alipay_cert_sn"`
	}
	err = json.Unmarshal([]byte(v.Get("biz_content")), &biz)
	return biz.SN, err
}

func (g *downloadGateway) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.downloads
}

// TestCertDownload: in certificate mode, an API answer naming an Alipay certificate the
// configuration does not have (Alipay renewed its certificate) makes the client download it
// (alipay.open.app.alipaycert.download, whose answer is not signed), trust it only when it chains
// to the configured roots and names Alipay as the configured certificate does, and verify the
// answer with it; the certificate then verifies notifications too, naming it or naming none.
// A refused download is not asked for again for a minute. Before, such an answer was refused
// (unknown_serial) until the operator replaced the file and restarted.
func TestCertDownload(t *testing.T) {
	now := time.Now()
	ch := newCertChain(t, now)
	const oldKeyFile, newKeyFile = "testdata/shared/test_private_pkcs8.pem", "testdata/openssl/other_private.pem"
	oldCert, _ := ch.leaf(alipayCN, keyOf(t, oldKeyFile), nil)
	newCert, newSN := ch.leaf(alipayCN, keyOf(t, newKeyFile), nil)
	appKey := genKey(t)
	appCert, _ := ch.leaf("2088000000000001-2021000000000001", &appKey.PublicKey, nil)
	realRoot := mustRead(t, filepath.Join("testdata", "shared", "certs", "alipayRootCert.crt"))
	rootFile := append(append(append([]byte(nil), realRoot...), '\n'), ch.rootPEM...) // the real file ends without a newline

	vs := loadVectors(t, "derived_vectors.json")
	node := vs["response_trade_query"].SignedSub
	queryBody := func(sn, keyFile string) string {
		return `{"alipay_trade_query_response":` + node + `,"alipay_cert_sn":"` + sn + `","sign":"` + testsign.RSA2(t, keyFile, []byte(node)) + `"}`
	}
	client := func(t *testing.T, g *downloadGateway, body string, mod func(*Config)) (*Client, *[]CertKey, *time.Time) {
		srv := g.serve(t, body)
		clock := now
		var added []CertKey
		cfg := Config{AppID: "2021000000000001", PrivateKey: appKey, AppCert: appCert, AlipayRootCert: rootFile,
			AlipayCert: append(append([]byte(nil), oldCert...), ch.interPEM...), Gateway: srv.URL, HTTPClient: srv.Client(),
			Now: func() time.Time { return clock }, OnCertDownload: func(ck CertKey) { added = append(added, ck) }}
		if mod != nil {
			mod(&cfg)
		}
		c, err := NewClient(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c, &added, &clock
	}
	notify := func(keyFile, sn string) []byte {
		f := testsign.AlipayPaid("2021000000000001", "2088000000000002", "R0001", "1.00")
		if sn != "" {
			f["alipay_cert_sn"] = sn
		}
		return testsign.AlipayNotify(t, keyFile, f)
	}
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		g := &downloadGateway{content: string(newCert) + string(ch.interPEM)}
		c, added, _ := client(t, g, queryBody(newSN, newKeyFile), nil)
		// Before any answer named it, the new certificate's notifications do not verify.
		if _, err := c.VerifyNotification(nil, notify(newKeyFile, "")); !errors.Is(err, ErrSignature) {
			t.Fatalf("before the download, a notification signed by the new key: %v", err)
		}
		var raw RawResponse
		r, err := c.TradeQuery(WithRawResponse(ctx, &raw), TradeQuery{OutTradeNo: "20240102000001"})
		if err != nil {
			t.Fatal(err)
		}
		if r.TotalAmount != 8888 {
			t.Errorf("TotalAmount = %d", r.TotalAmount)
		}
		if !strings.Contains(string(raw.Body), "alipay_trade_query_response") {
			t.Errorf("the raw answer recorded is %q, want the query's (not the download's)", raw.Body)
		}
		if g.count() != 1 || len(g.asked) != 1 || g.asked[0] != newSN {
			t.Errorf("downloads %d asking %v, want one asking %s", g.count(), g.asked, newSN)
		}
		if len(*added) != 1 || (*added)[0].SN != newSN || !(*added)[0].Key.Equal(keyOf(t, newKeyFile)) {
			t.Errorf("OnCertDownload got %+v", *added)
		}
		if _, err := c.TradeQuery(ctx, TradeQuery{OutTradeNo: "20240102000001"}); err != nil || g.count() != 1 {
			t.Errorf("again: %v, %d downloads, want none more", err, g.count())
		}
		for _, sn := range []string{newSN, ""} {
			if _, err := c.VerifyNotification(nil, notify(newKeyFile, sn)); err != nil {
				t.Errorf("a notification signed by the new key naming %q: %v", sn, err)
			}
		}
		if _, err := c.VerifyNotification(nil, notify(oldKeyFile, "")); err != nil {
			t.Errorf("the configured certificate's notification: %v", err)
		}
	})

	t.Run("Concurrent", func(t *testing.T) {
		g := &downloadGateway{content: string(newCert) + string(ch.interPEM)}
		c, _, _ := client(t, g, queryBody(newSN, newKeyFile), nil)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				_, err := c.TradeQuery(ctx, TradeQuery{OutTradeNo: "20240102000001"})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if g.count() != 1 {
			t.Errorf("%d downloads for 8 concurrent answers naming one certificate, want 1", g.count())
		}
	})

	t.Run("NoCertDownload", func(t *testing.T) {
		g := &downloadGateway{content: string(newCert) + string(ch.interPEM)}
		c, _, _ := client(t, g, queryBody(newSN, newKeyFile), func(cfg *Config) { cfg.NoCertDownload = true })
		_, err := c.TradeQuery(ctx, TradeQuery{OutTradeNo: "20240102000001"})
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Reason != ReasonUnknownSerial || g.count() != 0 {
			t.Fatalf("%v (%d downloads), want unknown_serial and no download", err, g.count())
		}
	})

	// Refused downloads: the answer to the query is refused as before, with the download's cause.
	otherRoot := newCertChain(t, now)
	unchained, unchainedSN := otherRoot.leaf(alipayCN, keyOf(t, newKeyFile), nil)
	appLike, appLikeSN := ch.leaf("2088000000000009-2021000000000009", keyOf(t, newKeyFile), nil)
	expired, expiredSN := ch.leaf(alipayCN, keyOf(t, newKeyFile), func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
	})
	appKeyCert, appKeySN := ch.leaf(alipayCN, &appKey.PublicKey, nil)
	for _, tc := range []struct {
		name, sn, content, want string
		keyFile                 string
	}{
		{"OtherRoot", unchainedSN, string(unchained) + string(otherRoot.interPEM), "does not verify", newKeyFile},
		{"NoIntermediate", newSN, string(newCert), "does not verify", newKeyFile},
		{"AnAppsCertificate", appLikeSN, string(appLike) + string(ch.interPEM), "common name", newKeyFile},
		{"Expired", expiredSN, string(expired) + string(ch.interPEM), "does not verify", newKeyFile},
		{"OtherSN", newSN, string(appLike) + string(ch.interPEM), "has that SN", newKeyFile},
		{"TheAppsKey", appKeySN, string(appKeyCert) + string(ch.interPEM), "app's own", newKeyFile},
		{"ErrorAnswer", newSN, `raw:{"alipay_open_app_alipaycert_download_response":{"code":"40004","msg":"Business Failed","sub_code":"CERT_NOT_EXIST","sub_msg":"x"}}`, "CERT_NOT_EXIST", newKeyFile},
		{"NotBase64", newSN, `raw:{"alipay_open_app_alipaycert_download_response":{"code":"10000","msg":"Success","alipay_cert_content":"%%%"}}`, "not base64", newKeyFile},
	} {
		t.Run("Refused/"+tc.name, func(t *testing.T) {
			g := &downloadGateway{content: tc.content}
			c, added, clock := client(t, g, queryBody(tc.sn, tc.keyFile), nil)
			_, err := c.TradeQuery(ctx, TradeQuery{OutTradeNo: "20240102000001"})
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Reason != ReasonUnknownSerial || !errors.Is(err, ErrCertDownload) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want unknown_serial with a download error saying %q", err, tc.want)
			}
			if len(*added) != 0 || c.certKey(tc.sn) != nil {
				t.Fatalf("the refused certificate is trusted")
			}
			if _, err := c.VerifyNotification(nil, notify(tc.keyFile, "")); !errors.Is(err, ErrSignature) {
				t.Errorf("a notification signed by the refused certificate's key: %v", err)
			}
			// Not asked for again within the minute; the same error comes back.
			_, err2 := c.TradeQuery(ctx, TradeQuery{OutTradeNo: "20240102000001"})
			if g.count() != 1 || err2 == nil || !strings.Contains(err2.Error(), tc.want) {
				t.Errorf("again within the minute: %v, %d downloads, want the same error and one download", err2, g.count())
			}
			*clock = clock.Add(61 * time.Second)
			c.TradeQuery(ctx, TradeQuery{OutTradeNo: "20240102000001"})
			if g.count() != 2 {
				t.Errorf("a minute later: %d downloads, want 2", g.count())
			}
		})
	}
}

// TestCertDownload_AfterAnotherFinished: FetchAlipayCert checked whether the SN is trusted
// before taking d.mu only; a caller that read "unknown" just before another call's download was
// added, and took the lock after that call removed its in-flight entry, downloaded the same
// certificate again, kept its key twice (one of the 8 slots) and ran OnCertDownload (serve's
// warning) twice (a reviewer's finding). It checks again under the lock now. The interleaving is
// forced by holding d.mu while the first download's result is added.
func TestCertDownload_AfterAnotherFinished(t *testing.T) {
	now := time.Now()
	ch := newCertChain(t, now)
	const oldKeyFile, newKeyFile = "testdata/shared/test_private_pkcs8.pem", "testdata/openssl/other_private.pem"
	oldCert, _ := ch.leaf(alipayCN, keyOf(t, oldKeyFile), nil)
	newCert, newSN := ch.leaf(alipayCN, keyOf(t, newKeyFile), nil)
	appKey := genKey(t)
	appCert, _ := ch.leaf("2088000000000001-2021000000000001", &appKey.PublicKey, nil)
	g := &downloadGateway{content: string(newCert) + string(ch.interPEM)}
	srv := g.serve(t, "")
	added := 0
	c, err := NewClient(Config{AppID: "2021000000000001", PrivateKey: appKey, AppCert: appCert, AlipayRootCert: ch.rootPEM,
		AlipayCert: append(append([]byte(nil), oldCert...), ch.interPEM...), Gateway: srv.URL, HTTPClient: srv.Client(),
		OnCertDownload: func(CertKey) { added++ }})
	if err != nil {
		t.Fatal(err)
	}
	// The first download, done: its result is what FetchAlipayCert adds.
	ck, err := c.downloadCert(context.Background(), newSN)
	if err != nil {
		t.Fatal(err)
	}
	c.dl.mu.Lock() // the first call holds d.mu to delete its in-flight entry ...
	done := make(chan error)
	go func() { done <- c.FetchAlipayCert(context.Background(), newSN) }() // ... while the second has read "unknown"
	time.Sleep(200 * time.Millisecond)
	if err := c.addDownloaded(ck); err != nil { // (the first call's addDownloaded, before its delete)
		t.Fatal(err)
	}
	c.dl.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	d := c.downloaded.Load()
	t.Logf("downloads %d, keys kept %d for 1 SN, OnCertDownload calls %d", g.count(), len(d.keys), added)
	if g.count() != 1 || len(d.keys) != 1 || added != 0 {
		t.Errorf("one SN: %d downloads, %d keys kept (of %d allowed), %d OnCertDownload calls by the second caller; want 1, 1, 0",
			g.count(), len(d.keys), maxDownloadedCerts, added)
	}
	if err := c.addDownloaded(ck); err != nil || len(c.downloaded.Load().keys) != 1 {
		t.Errorf("the same certificate added again: %v, %d keys kept; want it kept once", err, len(c.downloaded.Load().keys))
	}
}
