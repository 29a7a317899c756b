package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWatchCertExpiry (a reviewer helper's finding): paynotify does not download Alipay's next
// certificate, so serve warns while a certificate-mode app's Alipay certificates all end within
// 30 days (an intermediate that lasts longer does not count; a rotation file whose new certificate
// lasts does not warn), and about the app's own certificate likewise.
func TestWatchCertExpiry(t *testing.T) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	cert := func(name string, isCA bool, ends time.Time) []byte {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: now.AddDate(-1, 0, 0), NotAfter: ends, IsCA: isCA, BasicConstraintsValid: true}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	write := func(name string, parts ...[]byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Join(parts, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	soon, later := now.AddDate(0, 0, 10), now.AddDate(2, 0, 0)
	intermediate := cert("Class 2 R1", true, now.AddDate(10, 0, 0))
	cfg := &Config{Apps: []AppConfig{
		{Name: "ending", Provider: "alipay", AppCertFile: write("app1.crt", cert("app", false, later)),
			AlipayCertFile: write("alipay1.crt", cert("alipay", false, soon), intermediate)},
		{Name: "rotated", Provider: "alipay", AppCertFile: write("app2.crt", cert("app", false, soon)),
			AlipayCertFile: write("alipay2.crt", cert("old", false, soon), cert("new", false, later), intermediate)},
		{Name: "keys", Provider: "alipay"},
	}}
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // one pass
	watchCertExpiry(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)), func() time.Time { return now }, time.Hour)
	out := logs.String()
	for _, want := range []string{"app=ending field=alipay_cert_file", "app=rotated field=app_cert_file"} {
		if !strings.Contains(out, want) || !strings.Contains(out, "days_left=10") {
			t.Errorf("no warning %q (10 days left):\n%s", want, out)
		}
	}
	for _, not := range []string{"app=ending field=app_cert_file", "app=rotated field=alipay_cert_file", "app=keys"} {
		if strings.Contains(out, not) {
			t.Errorf("a warning %q for a certificate that lasts:\n%s", not, out)
		}
	}
	if n := strings.Count(out, "level=WARN"); n != 2 {
		t.Errorf("%d warnings, want 2:\n%s", n, out)
	}
}

// TestWarnSharedPartners (a reviewer helper's finding): two legacy Alipay apps of one partner (two
// charsets) accept each other's notifications, so serve warns that their order numbers must not
// repeat across them; apps of other partners, and OpenAPI apps, are not named.
func TestWarnSharedPartners(t *testing.T) {
	var logs bytes.Buffer
	warnSharedPartners(slog.New(slog.NewTextHandler(&logs, nil)), &Config{Apps: []AppConfig{
		{Name: "pc-gbk", Provider: "alipay-legacy", Partner: "2088101122136241"},
		{Name: "wap-utf8", Provider: "alipay-legacy", Partner: "2088101122136241"},
		{Name: "other", Provider: "alipay-legacy", Partner: "2088000000000009"},
		{Name: "open", Provider: "alipay"},
	}})
	out := logs.String()
	if strings.Count(out, "level=WARN") != 1 || !strings.Contains(out, `apps="pc-gbk, wap-utf8"`) || !strings.Contains(out, "partner=2088101122136241") {
		t.Fatalf("log:\n%s", out)
	}
}
