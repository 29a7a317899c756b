package wechatpay

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ParsePrivateKey parses an RSA private key: PEM ("PRIVATE KEY" PKCS#8 as in apiclient_key.pem,
// or "RSA PRIVATE KEY" PKCS#1; a "TESTING KEY" label is read as PKCS#8), or the bare base64 DER
// on one line. The error never contains key material.
func ParsePrivateKey(b []byte) (*rsa.PrivateKey, error) {
	der, label, err := decodeKeyBytes(b)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: private key: %w", err)
	}
	var key any
	switch label {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(der)
	default:
		key, err = x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			if k, err1 := x509.ParsePKCS1PrivateKey(der); err1 == nil {
				key, err = k, nil
			}
		}
	}
	if err != nil {
		return nil, errors.New("wechatpay: private key: not a PKCS#8 or PKCS#1 RSA private key")
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("wechatpay: private key: %T is not RSA", key)
	}
	return rk, nil
}

// ParsePublicKey parses an RSA public key such as the WeChat Pay public key (pub_key.pem): PEM
// "PUBLIC KEY" (SubjectPublicKeyInfo) or "RSA PUBLIC KEY" (PKCS#1), or the bare base64 DER.
func ParsePublicKey(b []byte) (*rsa.PublicKey, error) {
	der, label, err := decodeKeyBytes(b)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: public key: %w", err)
	}
	if label == "CERTIFICATE" {
		return nil, errors.New("wechatpay: public key: got a certificate (use parseCertificate)")
	}
	if label == "RSA PUBLIC KEY" {
		k, err := x509.ParsePKCS1PublicKey(der)
		if err != nil {
			return nil, errors.New("wechatpay: public key: bad PKCS#1 public key")
		}
		return k, nil
	}
	key, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		if k, err1 := x509.ParsePKCS1PublicKey(der); err1 == nil {
			return k, nil
		}
		return nil, errors.New("wechatpay: public key: not a SubjectPublicKeyInfo or PKCS#1 RSA public key")
	}
	rk, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("wechatpay: public key: %T is not RSA", key)
	}
	return rk, nil
}

// ParseCertificate parses an X.509 certificate (PEM "CERTIFICATE" or DER) holding an RSA key,
// such as a platform certificate. Its serial as WeChat Pay writes it is CertificateSerial(cert).
func ParseCertificate(b []byte) (*x509.Certificate, error) {
	der := b
	if blk, _ := pem.Decode(bytes.TrimSpace(b)); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("wechatpay: certificate: PEM block %q is not a CERTIFICATE", blk.Type)
		}
		der = blk.Bytes
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: certificate: %w", err)
	}
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("wechatpay: certificate %s: %T key is not RSA", CertificateSerial(cert), cert.PublicKey)
	}
	return cert, nil
}

// parseCertificates parses every CERTIFICATE block of a PEM file (none when it is empty), each
// as parseCertificate does. Other blocks and text between blocks are refused.
func parseCertificates(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bytes.TrimSpace(b)
	for len(rest) > 0 {
		blk, r := pem.Decode(rest)
		if blk == nil {
			return nil, fmt.Errorf("certificate %d: not PEM", len(certs)+1)
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("certificate %d: PEM block %q is not a CERTIFICATE", len(certs)+1, blk.Type)
		}
		cert, err := ParseCertificate(pem.EncodeToMemory(blk))
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
		rest = bytes.TrimSpace(r)
	}
	return certs, nil
}

// CertificateSerial returns the serial number of cert as WeChat Pay writes it in
// Wechatpay-Serial and serial_no: uppercase hex of the serial's big-endian bytes.
func CertificateSerial(cert *x509.Certificate) string {
	if cert == nil || cert.SerialNumber == nil {
		return ""
	}
	return fmt.Sprintf("%X", cert.SerialNumber.Bytes())
}

// decodeKeyBytes returns the DER bytes and PEM label of a PEM block, or decodes one-line base64.
func decodeKeyBytes(b []byte) (der []byte, label string, err error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, "", errors.New("empty")
	}
	if blk, _ := pem.Decode(b); blk != nil {
		label = blk.Type
		if label == "TESTING KEY" {
			label = "PRIVATE KEY"
		}
		return blk.Bytes, label, nil
	}
	if bytes.HasPrefix(b, []byte("-----")) {
		return nil, "", errors.New("bad PEM")
	}
	s := strings.Join(strings.Fields(string(b)), "")
	der, err = base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, "", errors.New("neither PEM nor base64 DER")
	}
	return der, "", nil
}
