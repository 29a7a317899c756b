package sandbox

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/paynotify/paynotify/alipay"
)

// Alipay's public-key certificate mode (公钥证书模式, docs/alipay.md "Certificate mode"): the
// sandbox is its own certificate authority. Its root (alipayRootCert.crt) issues the sandbox's
// Alipay certificate (alipayCertPublicKey_RSA2.crt, over the key that signs answers and
// notifications) and each registered app's certificate (appCertPublicKey_<appid>.crt, over the
// app's public key). A request carrying app_cert_sn must name its app's certificate (else
// 40002 isv.app-cert-not-exist, as Alipay answers); its answer then carries alipay_cert_sn, the
// serial of the Alipay certificate, beside the node (not signed). alipay_root_cert_sn is not
// checked (what Alipay does with a wrong one is not documented).

// alipayCertSubject is the subject of the sandbox's Alipay certificate (a renewed one keeps it,
// as Alipay's do).
var alipayCertSubject = pkix.Name{CommonName: "paynotify sandbox Alipay", Organization: []string{"paynotify sandbox"}, Country: []string{"CN"}}

// certKeys is the sandbox's certificate authority and the certificates it issued.
type certKeys struct {
	root         *rsa.PrivateKey
	rootCert     *x509.Certificate
	rootPEM      []byte
	alipayPEM    []byte // the Alipay certificate over keyring.alipay
	alipaySN     string
	rootSN       string
	defaultAppID string
	appPEM       []byte // the default app's certificate
	appPEMSN     string // its SN

	mu    sync.Mutex
	appSN map[string]string // app id → the serial of its certificate (appCertSN)
	// current is the Alipay certificate the answers name and the download hands out: alipayPEM,
	// or one set by SetAlipayCert (as after a renewal).
	currentPEM []byte
	currentSN  string
}

// current returns the Alipay certificate the answers name, and its SN.
func (c *certKeys) current() ([]byte, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.currentPEM != nil {
		return c.currentPEM, c.currentSN
	}
	return c.alipayPEM, c.alipaySN
}

// loadOrCreateCerts reads the sandbox's root and Alipay certificate from dir, creating what is
// missing, and issues the default app's certificate.
func loadOrCreateCerts(dir string, alipayKey *rsa.PrivateKey, appID string, appKey *rsa.PublicKey) (*certKeys, error) {
	c := &certKeys{defaultAppID: appID, appSN: map[string]string{}}
	var err error
	if c.root, err = loadOrCreateRSA(filepath.Join(dir, "alipay_root_private_key.pem")); err != nil {
		return nil, err
	}
	if c.rootPEM, err = loadOrCreateCert(filepath.Join(dir, "alipay_root_cert.pem"), func() ([]byte, error) {
		tmpl := &x509.Certificate{
			SerialNumber:          randomSerial(),
			Subject:               pkix.Name{CommonName: "paynotify sandbox Alipay Root CA", Organization: []string{"paynotify sandbox"}, Country: []string{"CN"}},
			NotBefore:             time.Now().Add(-time.Hour),
			NotAfter:              time.Now().AddDate(20, 0, 0),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			SignatureAlgorithm:    x509.SHA256WithRSA,
		}
		return createCert(tmpl, tmpl, &c.root.PublicKey, c.root)
	}); err != nil {
		return nil, err
	}
	if c.rootCert, err = parseCertPEM(c.rootPEM); err != nil {
		return nil, fmt.Errorf("sandbox: alipay root certificate: %w", err)
	}
	if c.alipayPEM, err = loadOrCreateCert(filepath.Join(dir, "alipay_cert.pem"), func() ([]byte, error) {
		return c.issue(alipayCertSubject, randomSerial(), &alipayKey.PublicKey)
	}); err != nil {
		return nil, err
	}
	if c.rootSN, err = alipay.RootCertSN(c.rootPEM); err != nil {
		return nil, fmt.Errorf("sandbox: alipay root certificate: %w", err)
	}
	if c.alipaySN, err = alipay.CertSN(c.alipayPEM); err != nil {
		return nil, fmt.Errorf("sandbox: alipay certificate: %w", err)
	}
	if c.appPEM, err = c.appCert(appID, appKey); err != nil {
		return nil, err
	}
	c.appPEMSN = c.appSN[appID]
	return c, nil
}

// issue has the root sign a ten-year leaf certificate of subject over pub.
func (c *certKeys) issue(subject pkix.Name, serial *big.Int, pub *rsa.PublicKey) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber:       serial,
		Subject:            subject,
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().AddDate(10, 0, 0),
		KeyUsage:           x509.KeyUsageDigitalSignature,
		SignatureAlgorithm: x509.SHA256WithRSA,
	}
	return createCert(tmpl, c.rootCert, pub, c.root)
}

// appCert issues the certificate of app appID over pub: its serial comes from the app id, so that
// every certificate issued to the app has the same SN (appCertSN), which the gateway checks.
func (c *certKeys) appCert(appID string, pub *rsa.PublicKey) ([]byte, error) {
	b, err := c.issue(pkix.Name{CommonName: appID, Organization: []string{"paynotify sandbox"}, Country: []string{"CN"}}, appSerial(appID), pub)
	if err != nil {
		return nil, fmt.Errorf("sandbox: app certificate of %s: %w", appID, err)
	}
	sn, err := alipay.CertSN(b)
	if err != nil {
		return nil, fmt.Errorf("sandbox: app certificate of %s: %w", appID, err)
	}
	c.mu.Lock()
	c.appSN[appID] = sn
	c.mu.Unlock()
	return b, nil
}

// appCertSN returns the SN of app appID's certificate (issued over pub when not yet).
func (c *certKeys) appCertSN(appID string, pub *rsa.PublicKey) (string, error) {
	c.mu.Lock()
	sn, ok := c.appSN[appID]
	c.mu.Unlock()
	if ok {
		return sn, nil
	}
	if _, err := c.appCert(appID, pub); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.appSN[appID], nil
}

// appSerial is the serial number of app appID's certificate: 128 bits of a hash of the id.
func appSerial(appID string) *big.Int {
	h := sha256.Sum256([]byte("paynotify sandbox app certificate\x00" + appID))
	return new(big.Int).SetBytes(h[:16])
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}

func createCert(tmpl, parent *x509.Certificate, pub *rsa.PublicKey, signer *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// loadOrCreateCert reads the PEM certificate at path, or creates it with gen and writes it.
func loadOrCreateCert(path string, gen func() ([]byte, error)) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if b, err = gen(); err == nil {
			err = writeFileAtomic(path, b)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", filepath.Base(path), err)
	}
	if _, err := parseCertPEM(b); err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", filepath.Base(path), err)
	}
	return b, nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// AlipayAppCert issues the public-key certificate (appCertPublicKey_<appid>.crt, PEM) of the
// registered Alipay app appID, over its registered public key, for a merchant in certificate
// mode (its other two files are Keys.AlipayCert and Keys.AlipayRootCert); it is the app's
// certificate again if SetAlipayAppCert replaced it.
func (s *Sandbox) AlipayAppCert(appID string) ([]byte, error) {
	app, err := s.alipayApp(appID)
	if err != nil {
		return nil, fmt.Errorf("sandbox: no Alipay app %s", appID)
	}
	return s.keys.certs.appCert(appID, app.pub)
}

// SetAlipayCert makes certPEM (its first certificate, over the sandbox's Alipay key) the Alipay
// certificate that answers in certificate mode name and the download hands out, as after Alipay
// renewed its certificate, until the sandbox restarts: a merchant holding the old one then sees an
// alipay_cert_sn it does not know. Nil goes back to the sandbox's own.
func (s *Sandbox) SetAlipayCert(certPEM []byte) error {
	c := s.keys.certs
	if certPEM == nil {
		c.mu.Lock()
		c.currentPEM, c.currentSN = nil, ""
		c.mu.Unlock()
		return nil
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return fmt.Errorf("sandbox: Alipay certificate: %w", err)
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(&s.keys.alipay.PublicKey) {
		return errors.New("sandbox: Alipay certificate: not over the sandbox's Alipay key (its answers would not verify)")
	}
	sn, err := alipay.CertSN(certPEM)
	if err != nil {
		return fmt.Errorf("sandbox: Alipay certificate: %w", err)
	}
	c.mu.Lock()
	c.currentPEM, c.currentSN = certPEM, sn
	c.mu.Unlock()
	return nil
}

// SetAlipayAppCert makes certPEM (its first certificate, over the app's registered key) the
// certificate Alipay holds for app appID, in place of the one the sandbox issued: its SN is then
// the app_cert_sn the gateway takes, until the sandbox restarts (a merchant's certificates from
// another authority, in tests).
func (s *Sandbox) SetAlipayAppCert(appID string, certPEM []byte) error {
	app, err := s.alipayApp(appID)
	if err != nil {
		return fmt.Errorf("sandbox: no Alipay app %s", appID)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return fmt.Errorf("sandbox: app certificate: %w", err)
	}
	if pub, ok := cert.PublicKey.(*rsa.PublicKey); !ok || !pub.Equal(app.pub) {
		return fmt.Errorf("sandbox: app certificate: not over app %s's registered key", appID)
	}
	sn, err := alipay.CertSN(certPEM)
	if err != nil {
		return fmt.Errorf("sandbox: app certificate: %w", err)
	}
	c := s.keys.certs
	c.mu.Lock()
	c.appSN[appID] = sn
	c.mu.Unlock()
	return nil
}

// checkAppCertSN refuses a request whose app_cert_sn is not its app's certificate's.
func (s *Sandbox) checkAppCertSN(app *alipayApp, sn string) *alipayErr {
	want, err := s.keys.certs.appCertSN(app.AppID, app.pub)
	if err != nil || sn != want {
		return &alipayErr{code: codeInvalid, subCode: "isv.app-cert-not-exist", subMsg: "应用公钥证书不存在"}
	}
	return nil
}

// alipayCertDownload answers alipay.open.app.alipaycert.download: the Alipay certificate whose SN
// biz_content names, base64 of its PEM (the answer is not signed, as Alipay's is not).
func (s *Sandbox) alipayCertDownload(req *alipayReq) ([]kv, *alipayErr) {
	pemBytes, sn := s.keys.certs.current()
	if req.biz["alipay_cert_sn"] != sn {
		return nil, bizErr("CERT_NOT_EXIST", "证书不存在")
	}
	return []kv{{"code", codeSuccess}, {"msg", "Success"}, {"alipay_cert_content", base64.StdEncoding.EncodeToString(pemBytes)}}, nil
}
