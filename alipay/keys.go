package alipay

import (
	"bytes"
	"crypto/md5"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// ParsePrivateKey parses an RSA private key given as PEM or as the one-line base64 form of the
// Alipay key tool, in PKCS#8 ("PKCS8 (JAVA适用)") or PKCS#1 ("PKCS1 (非JAVA适用)"). Errors never
// contain key material.
func ParsePrivateKey(b []byte) (*rsa.PrivateKey, error) {
	der, err := alipaywire.KeyDER(b)
	if err != nil {
		return nil, fmt.Errorf("alipay: private key: %v", err)
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("alipay: private key: %T is not an RSA key", k)
		}
		return rk, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if _, err := x509.ParsePKIXPublicKey(der); err == nil {
		return nil, errors.New("alipay: private key: this is a public key")
	}
	return nil, errors.New("alipay: private key: not a PKCS#8 or PKCS#1 RSA private key")
}

// ParsePublicKey parses an RSA public key given as PEM or one-line base64 of a DER
// SubjectPublicKeyInfo (PKIX, "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA…"). A PKCS#1
// "RSA PUBLIC KEY" and a certificate are accepted too.
func ParsePublicKey(b []byte) (*rsa.PublicKey, error) {
	der, err := alipaywire.KeyDER(b)
	if err != nil {
		return nil, fmt.Errorf("alipay: public key: %v", err)
	}
	if k, err := x509.ParsePKIXPublicKey(der); err == nil {
		rk, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("alipay: public key: %T is not an RSA key", k)
		}
		return rk, nil
	}
	if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return k, nil
	}
	if c, err := x509.ParseCertificate(der); err == nil {
		rk, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok {
			return nil, errors.New("alipay: public key: certificate key is not RSA")
		}
		return rk, nil
	}
	if _, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return nil, errors.New("alipay: public key: this is a private key")
	}
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return nil, errors.New("alipay: public key: this is a private key")
	}
	return nil, errors.New("alipay: public key: not a PKIX RSA public key")
}

// rawCertificate is the outline of an X.509 certificate, enough to compute cert SNs and read the
// signature algorithm without x509.ParseCertificate, which fails on the SM2 root in Alipay's
// alipayRootCert.crt ("x509: unsupported elliptic curve").
type rawCertificate struct {
	TBS    rawTBS
	SigAlg pkix.AlgorithmIdentifier
	Sig    asn1.BitString
}

type rawTBS struct {
	Raw     asn1.RawContent
	Version int `asn1:"optional,explicit,default:0,tag:0"`
	Serial  *big.Int
	SigAlg  pkix.AlgorithmIdentifier
	Issuer  asn1.RawValue
}

var oidPKCS1 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1}

// certBlocks returns the DER of every CERTIFICATE block in a PEM file, in file order.
func certBlocks(pemBytes []byte) [][]byte {
	var out [][]byte
	rest := pemBytes
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return out
		}
		if blk.Type == "CERTIFICATE" {
			out = append(out, blk.Bytes)
		}
	}
}

// certSNOf computes the SN of one DER certificate and says whether it is RSA-signed.
func certSNOf(der []byte) (sn string, rsaSigned bool, err error) {
	var c rawCertificate
	if _, err := asn1.Unmarshal(der, &c); err != nil {
		return "", false, fmt.Errorf("alipay: certificate: %v", err)
	}
	if c.TBS.Serial == nil {
		return "", false, errors.New("alipay: certificate: no serial number")
	}
	var issuer pkix.RDNSequence
	if _, err := asn1.Unmarshal(c.TBS.Issuer.FullBytes, &issuer); err != nil {
		return "", false, fmt.Errorf("alipay: certificate issuer: %v", err)
	}
	sum := md5.Sum([]byte(issuer.String() + c.TBS.Serial.String()))
	oid := c.SigAlg.Algorithm
	rsaSigned = len(oid) == len(oidPKCS1)+1 && oid[:len(oidPKCS1)].Equal(oidPKCS1)
	return hex.EncodeToString(sum[:]), rsaSigned, nil
}

// CertSN returns the Alipay "cert SN" of the first certificate in a PEM file: the lowercase hex MD5
// (always 32 characters) of the issuer DN in RFC 2253 form (most specific attribute first, as Java's
// getIssuerX500Principal().getName()) followed by the decimal serial number. It is the app_cert_sn
// of an appCertPublicKey_<appid>.crt file, and the alipay_cert_sn of an alipayCertPublicKey_RSA2.crt.
func CertSN(pemBytes []byte) (string, error) {
	blocks := certBlocks(pemBytes)
	if len(blocks) == 0 {
		return "", errors.New("alipay: no CERTIFICATE block in PEM")
	}
	sn, _, err := certSNOf(blocks[0])
	return sn, err
}

// RootCertSN returns the alipay_root_cert_sn of an alipayRootCert.crt file: the SNs of the
// certificates whose signature algorithm is a PKCS#1 RSA one (OID 1.2.840.113549.1.1.*), in file
// order, joined with "_". Other certificates, such as the SM2 and ECDSA roots of the real file, are
// skipped, even when Go's x509 package cannot parse them.
func RootCertSN(pemBytes []byte) (string, error) {
	blocks := certBlocks(pemBytes)
	if len(blocks) == 0 {
		return "", errors.New("alipay: no CERTIFICATE block in PEM")
	}
	var sns []string
	for _, der := range blocks {
		sn, rsaSigned, err := certSNOf(der)
		if err != nil {
			return "", err
		}
		if rsaSigned {
			sns = append(sns, sn)
		}
	}
	if len(sns) == 0 {
		return "", errors.New("alipay: no RSA-signed root certificate")
	}
	return strings.Join(sns, "_"), nil
}

// leaf is an end-entity certificate's SN and key.
type leaf struct {
	sn, cn              string // cn: the subject's common name
	pub                 *rsa.PublicKey
	notBefore, notAfter time.Time
}

// certLeaves returns, in file order, the SN and RSA key of every end-entity certificate of a PEM
// file: every certificate that issued none of the others (alipayCertPublicKey_RSA2.crt holds
// Alipay's certificate, then its CA's; two such files concatenated hold two of each).
func certLeaves(pemBytes []byte) ([]leaf, error) {
	blocks := certBlocks(pemBytes)
	if len(blocks) == 0 {
		return nil, errors.New("alipay: no CERTIFICATE block in PEM")
	}
	certs := make([]*x509.Certificate, len(blocks))
	for i, b := range blocks {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("alipay: certificate %d: %v", i+1, err)
		}
		certs[i] = c
	}
	var out []leaf
	for i, c := range certs {
		issuer := false
		for j, o := range certs {
			if j != i && bytes.Equal(o.RawIssuer, c.RawSubject) && !bytes.Equal(o.RawSubject, c.RawSubject) {
				issuer = true
				break
			}
		}
		if issuer {
			continue
		}
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("alipay: certificate %d: key is not RSA", i+1)
		}
		sn, _, err := certSNOf(blocks[i])
		if err != nil {
			return nil, err
		}
		out = append(out, leaf{sn: sn, cn: c.Subject.CommonName, pub: pub, notBefore: c.NotBefore, notAfter: c.NotAfter})
	}
	if len(out) == 0 {
		return nil, errors.New("alipay: no end-entity certificate in PEM (each one issued another)")
	}
	return out, nil
}

// CertKey is a certificate's Alipay cert SN and its RSA public key.
type CertKey struct {
	SN  string
	Key *rsa.PublicKey
	// NotBefore and NotAfter are the certificate's validity (paynotify doctor reports them; the
	// verification does not check them).
	NotBefore, NotAfter time.Time
}

// AlipayCertKeys returns the certificates that Config.AlipayCert trusts in a PEM file, in file
// order: every end-entity certificate (one that issued none of the others in the file; Alipay's
// alipayCertPublicKey_RSA2.crt holds its certificate, then the CA's).
func AlipayCertKeys(pemBytes []byte) ([]CertKey, error) {
	leaves, err := certLeaves(pemBytes)
	if err != nil {
		return nil, err
	}
	out := make([]CertKey, len(leaves))
	for i, l := range leaves {
		out[i] = CertKey{SN: l.sn, Key: l.pub, NotBefore: l.notBefore, NotAfter: l.notAfter}
	}
	return out, nil
}

// CertPublicKey returns the cert SN and RSA public key of the first certificate in a PEM file, such
// as alipayCertPublicKey_RSA2.crt.
func CertPublicKey(pemBytes []byte) (string, *rsa.PublicKey, error) {
	blocks := certBlocks(pemBytes)
	if len(blocks) == 0 {
		return "", nil, errors.New("alipay: no CERTIFICATE block in PEM")
	}
	sn, _, err := certSNOf(blocks[0])
	if err != nil {
		return "", nil, err
	}
	c, err := x509.ParseCertificate(blocks[0])
	if err != nil {
		return "", nil, fmt.Errorf("alipay: certificate: %v", err)
	}
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return "", nil, errors.New("alipay: certificate key is not RSA")
	}
	return sn, pub, nil
}
