package alipay

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/testsign"
)

// TestCertRotation: in certificate mode the Alipay certificate file may hold the current and the
// next certificate (two of Alipay's files concatenated, each its certificate then the CA's), and
// notifications signed by either verify: by the certificate their alipay_cert_sn names, or, naming
// none, by any of them. A notification naming one certificate but signed by the other's key, or
// signed by a key of no configured certificate, does not (a reviewer helper's finding: only the
// file's first certificate was trusted, so a rotation was an outage until the file was swapped at
// the right moment and the server restarted). The notifications are signed by openssl.
func TestCertRotation(t *testing.T) {
	dir := t.TempDir()
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Alipay CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := func(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}) }
	leafOf := func(keyFile string, serial int64) ([]byte, string) {
		priv, err := ParsePrivateKey(mustRead(t, keyFile))
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "Alipay"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &priv.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		sn, err := CertSN(certPEM(der))
		if err != nil {
			t.Fatal(err)
		}
		return certPEM(der), sn
	}
	const oldKey, newKey = "testdata/shared/test_private_pkcs8.pem", "testdata/openssl/other_private.pem"
	oldCert, oldSN := leafOf(oldKey, 1001)
	newCert, newSN := leafOf(newKey, 1002)
	// A key of no configured certificate, for openssl to sign with.
	stranger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	strangerDER, err := x509.MarshalPKCS8PrivateKey(stranger)
	if err != nil {
		t.Fatal(err)
	}
	strangerKey := filepath.Join(dir, "stranger.pem")
	if err := os.WriteFile(strangerKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: strangerDER}), 0o600); err != nil {
		t.Fatal(err)
	}

	both := append(append(append(append([]byte(nil), oldCert...), certPEM(caDER)...), newCert...), certPEM(caDER)...)
	c, err := NewClient(Config{AlipayCert: both})
	if err != nil {
		t.Fatal(err)
	}
	if c.AlipayCertSN() != oldSN {
		t.Errorf("AlipayCertSN = %s, want the first certificate's %s", c.AlipayCertSN(), oldSN)
	}
	notify := func(keyFile, sn string) []byte {
		f := testsign.AlipayPaid("2021000000000001", "2088000000000002", "R0001", "1.00")
		switch sn {
		case "":
		case "(empty)":
			f["alipay_cert_sn"] = "" // sent empty: not in the signed string, names no certificate
		default:
			f["alipay_cert_sn"] = sn
		}
		return testsign.AlipayNotify(t, keyFile, f)
	}
	for _, tc := range []struct {
		name, key, sn string
		ok            bool
	}{
		{"NewNamed", newKey, newSN, true},
		{"NewUnnamed", newKey, "", true},
		{"OldNamed", oldKey, oldSN, true},
		{"OldUnnamed", oldKey, "", true},
		{"NewEmptySN", newKey, "(empty)", true},
		{"NewNamingOld", newKey, oldSN, false},
		{"Stranger", strangerKey, "", false},
		{"StrangerNamingNew", strangerKey, newSN, false},
	} {
		_, err := c.VerifyNotification(nil, notify(tc.key, tc.sn))
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v, want a signature failure", tc.name, err)
		}
	}
	// Signed by the next certificate's key over the string that keeps an empty value ("body=",
	// the PHP SDK's rule), naming no certificate: the other rules are tried with every key too.
	f := testsign.AlipayPaid("2021000000000001", "2088000000000002", "R0002", "1.00")
	f["body"] = ""
	if _, err := c.VerifyNotification(nil, testsign.AlipayNotifyWithEmpty(t, newKey, f)); err != nil {
		t.Errorf("the next certificate's notification signed with its empty value kept: %v", err)
	}
	// The file Alipay gives alone (its certificate, then the CA's): only its certificate.
	single, err := NewClient(Config{AlipayCert: append(append([]byte(nil), oldCert...), certPEM(caDER)...)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := single.VerifyNotification(nil, notify(newKey, "")); !errors.Is(err, ErrSignature) {
		t.Errorf("the next certificate's notification with only the current one configured: %v", err)
	}
	if _, err := single.VerifyNotification(nil, notify(oldKey, oldSN)); err != nil {
		t.Errorf("with only the current certificate: %v", err)
	}
}

// TestAlipayCertKeys: on Ant's real files, the certificates AlipayCert trusts are the end-entity
// ones: the sandbox's alipayCertPublicKey (its certificate, then the CA's) gives its certificate
// only, in either order; two files concatenated give both, in file order. The expected SNs are
// those of TestCertSN (openssl-checked, testdata/shared/README.md).
func TestAlipayCertKeys(t *testing.T) {
	read := func(name string) []byte { return mustRead(t, filepath.Join("testdata", "shared", "certs", name)) }
	sandbox, prod := read("sandbox_alipayPublicCert.crt"), read("alipayCertPublicKey_RSA2.crt")
	blocks := certBlocks(sandbox)
	if len(blocks) != 2 {
		t.Fatalf("the sandbox file holds %d certificates, want 2", len(blocks))
	}
	reversed := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: blocks[1]}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: blocks[0]})...)
	for _, c := range []struct {
		name string
		file []byte
		want []string
	}{
		{"Sandbox", sandbox, []string{"05d88faef76d723019c5c14d3ecd014a"}},
		{"SandboxCAFirst", reversed, []string{"05d88faef76d723019c5c14d3ecd014a"}},
		{"Rotation", append(append([]byte(nil), sandbox...), prod...), []string{"05d88faef76d723019c5c14d3ecd014a", "7513daaaa48aa3ba2e4018d84402479c"}},
	} {
		cks, err := AlipayCertKeys(c.file)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got []string
		for _, ck := range cks {
			got = append(got, ck.SN)
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
