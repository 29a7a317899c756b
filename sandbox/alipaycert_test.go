package sandbox

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify/alipay"
)

// recorder keeps the bodies of the answers an http.Client received.
type recorder struct {
	mu     sync.Mutex
	bodies []string
}

func (rec *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	rec.mu.Lock()
	rec.bodies = append(rec.bodies, string(b))
	rec.mu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

func (rec *recorder) last() string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.bodies[len(rec.bodies)-1]
}

// certClient is a client of the default app in certificate mode, with appCert as its app
// certificate, recording the answers it receives.
func (b *testBundle) certClient(t *testing.T, appCert string) (*alipay.Client, *recorder) {
	t.Helper()
	priv, err := alipay.ParsePrivateKey([]byte(b.keys.AlipayAppPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	c, err := alipay.NewClient(alipay.Config{AppID: b.keys.AlipayAppID, PrivateKey: priv, AppCert: []byte(appCert),
		AlipayCert: []byte(b.keys.AlipayCert), AlipayRootCert: []byte(b.keys.AlipayRootCert),
		Gateway: b.srv.URL + "/sandbox/alipay/gateway.do", HTTPClient: &http.Client{Transport: rec, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// TestAlipay_CertMode: a merchant in certificate mode (the app's certificate, the Alipay
// certificate and the root, as Keys hands them out) creates, queries and refunds a trade; each
// answer names the Alipay certificate (alipay_cert_sn) beside its node and verifies. The SNs are
// computed independently from what the openssl command line reads of the certificates.
func TestAlipay_CertMode(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	m := newMerchant(t, alipayOK)
	ctx := waitCtx(t, 20*time.Second)
	for name, c := range map[string]struct{ pem, sn string }{
		"app": {b.keys.AlipayAppCert, b.keys.AlipayAppCertSN}, "alipay": {b.keys.AlipayCert, b.keys.AlipayCertSN},
		"root": {b.keys.AlipayRootCert, b.keys.AlipayRootCertSN},
	} {
		if got := opensslCertSN(t, c.pem); got != c.sn {
			t.Errorf("%s certificate: SN from openssl %s, Keys says %s", name, got, c.sn)
		}
	}
	c, rec := b.certClient(t, b.keys.AlipayAppCert)
	if c.AppCertSN() != b.keys.AlipayAppCertSN || c.AlipayRootCertSN() != b.keys.AlipayRootCertSN {
		t.Fatalf("client SNs app %s root %s, Keys %s %s", c.AppCertSN(), c.AlipayRootCertSN(), b.keys.AlipayAppCertSN, b.keys.AlipayRootCertSN)
	}
	pc, err := c.TradePrecreate(ctx, alipay.TradePrecreate{OutTradeNo: "cert_1", TotalAmount: 88, Subject: "s", NotifyURL: m.srv.URL})
	if err != nil {
		t.Fatalf("precreate: %v", err)
	}
	if want := `,"alipay_cert_sn":"` + b.keys.AlipayCertSN + `","sign":"`; !strings.Contains(rec.last(), want) {
		t.Fatalf("precreate answer %s: want %s between the node and the sign", rec.last(), want)
	}
	if _, err := b.sb.Act("pay", ActionRequest{URL: pc.QRCode}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "cert_1"}, 1); err != nil {
		t.Fatal(err)
	}
	q, err := c.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "cert_1"})
	if err != nil || q.TradeStatus != alipay.TradeSuccess || q.TotalAmount != 88 {
		t.Fatalf("query: %+v %v", q, err)
	}
	if _, err := c.TradeRefund(ctx, alipay.TradeRefund{OutTradeNo: "cert_1", RefundAmount: 8, OutRequestNo: "R1"}); err != nil {
		t.Fatalf("refund: %v", err)
	}
	// A business refusal names the certificate too.
	if _, err := c.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "cert_none"}); !isSub(err, "ACQ.TRADE_NOT_EXIST") {
		t.Fatalf("query of no trade: %v", err)
	}
	if !strings.Contains(rec.last(), `"alipay_cert_sn":"`+b.keys.AlipayCertSN+`"`) {
		t.Fatalf("refusal %s: want alipay_cert_sn", rec.last())
	}
	// Public-key mode: the answers name no certificate.
	if _, err := b.alipayClient(t).TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "cert_1"}); err != nil {
		t.Fatal(err)
	}
}

// TestAlipay_CertModeWrongAppCert: a request naming a certificate that is not its app's (here
// another app's, over the same key) is refused as Alipay refuses it.
func TestAlipay_CertModeWrongAppCert(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	priv, err := alipay.ParsePrivateKey([]byte(b.keys.AlipayAppPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.sb.RegisterAlipayApp("9021000000000009", &priv.PublicKey, ""); err != nil {
		t.Fatal(err)
	}
	other, err := b.sb.AlipayAppCert("9021000000000009")
	if err != nil {
		t.Fatal(err)
	}
	if sn := opensslCertSN(t, string(other)); sn == b.keys.AlipayAppCertSN {
		t.Fatalf("two apps' certificates with one SN %s", sn)
	}
	c, _ := b.certClient(t, string(other))
	_, err = c.TradeQuery(waitCtx(t, 10*time.Second), alipay.TradeQuery{OutTradeNo: "x"})
	if !isSub(err, "isv.app-cert-not-exist") {
		t.Fatalf("query with another app's certificate: %v, want isv.app-cert-not-exist", err)
	}
	if _, err := b.sb.AlipayAppCert("9021999999999999"); err == nil {
		t.Fatal("a certificate for an app that is not registered")
	}
}

// TestAlipay_CertDownload: alipay.open.app.alipaycert.download hands out the Alipay certificate
// by its SN (the client checks that it chains to the root), and refuses another SN.
func TestAlipay_CertDownload(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ctx := waitCtx(t, 10*time.Second)
	priv, err := alipay.ParsePrivateKey([]byte(b.keys.AlipayAppPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	// A client that holds the app's certificate, the root, and an older Alipay certificate of the
	// root (the same name, another key: as before a renewal): the sandbox's is unknown to it, and
	// downloaded.
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	otherCert, err := b.sb.keys.certs.issue(alipayCertSubject, randomSerial(), &otherKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := alipay.NewClient(alipay.Config{AppID: b.keys.AlipayAppID, PrivateKey: priv, AppCert: []byte(b.keys.AlipayAppCert),
		AlipayCert: otherCert, AlipayRootCert: []byte(b.keys.AlipayRootCert),
		Gateway: b.srv.URL + "/sandbox/alipay/gateway.do"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.FetchAlipayCert(ctx, "0123456789abcdef0123456789abcdef"); err == nil {
		t.Fatal("download of an SN the sandbox does not have: no error")
	}
	if err := c.FetchAlipayCert(ctx, b.keys.AlipayCertSN); err != nil {
		t.Fatalf("download of the sandbox's Alipay certificate: %v", err)
	}
	if _, err := c.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "x"}); !isSub(err, "ACQ.TRADE_NOT_EXIST") {
		t.Fatalf("query after the download: %v, want a verified ACQ.TRADE_NOT_EXIST", err)
	}
}

// opensslCertSN computes the Alipay SN of the first certificate of pemText (docs/alipay.md,
// "Certificate mode": MD5 of the issuer's RFC 2253 name and the decimal serial) from what the
// openssl command line reads.
func opensslCertSN(t *testing.T, pemText string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(path, []byte(pemText), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "x509", "-in", path, "-noout", "-serial", "-issuer", "-nameopt", "RFC2253").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	var serial, issuer string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if v, ok := strings.CutPrefix(line, "serial="); ok {
			serial = v
		} else if v, ok := strings.CutPrefix(line, "issuer="); ok {
			issuer = v
		}
	}
	n, ok := new(big.Int).SetString(serial, 16)
	if !ok || issuer == "" {
		t.Fatalf("openssl printed %q", out)
	}
	sum := md5.Sum([]byte(issuer + n.String()))
	return hex.EncodeToString(sum[:])
}

// TestAlipay_CertRenewed: after SetAlipayCert (Alipay renewed its certificate: the same name and
// key, a new serial), the answers name the new SN; a merchant holding the old certificate and
// the root downloads the new one (alipay.open.app.alipaycert.download), checks it, and verifies.
func TestAlipay_CertRenewed(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ctx := waitCtx(t, 10*time.Second)
	c, rec := b.certClient(t, b.keys.AlipayAppCert) // holds the certificate of before
	renewed, err := b.sb.keys.certs.issue(alipayCertSubject, randomSerial(), &b.sb.keys.alipay.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.sb.SetAlipayCert(renewed); err != nil {
		t.Fatal(err)
	}
	newSN := b.sb.Keys().AlipayCertSN
	if newSN == b.keys.AlipayCertSN || newSN != opensslCertSN(t, string(renewed)) {
		t.Fatalf("SN after the renewal %s (before %s)", newSN, b.keys.AlipayCertSN)
	}
	if _, err := c.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "x"}); !isSub(err, "ACQ.TRADE_NOT_EXIST") {
		t.Fatalf("query after the renewal: %v, want a verified ACQ.TRADE_NOT_EXIST", err)
	}
	if len(rec.bodies) != 2 || !strings.Contains(rec.bodies[0], `"alipay_cert_sn":"`+newSN+`"`) || !strings.Contains(rec.bodies[1], `"alipay_cert_content":"`) {
		t.Fatalf("answers %v: want the query naming %s, then the download", rec.bodies, newSN)
	}
	// A certificate over another key is refused: the answers would not verify.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := b.sb.keys.certs.issue(alipayCertSubject, randomSerial(), &other.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.sb.SetAlipayCert(bad); err == nil {
		t.Fatal("SetAlipayCert over another key: no error")
	}
}
