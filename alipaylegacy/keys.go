package alipaylegacy

import (
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// ParsePrivateKey parses the merchant's RSA private key, given as PEM or as the one-line base64
// form merchant portals and key tools hand out, in PKCS#1 ("BEGIN RSA PRIVATE KEY", what the PHP
// demos load) or PKCS#8 (what the Java demos load). Errors never contain key material.
func ParsePrivateKey(b []byte) (*rsa.PrivateKey, error) {
	der, err := alipaywire.KeyDER(b)
	if err != nil {
		return nil, fmt.Errorf("alipaylegacy: private key: %v", err)
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		rk, ok := k.(*rsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("alipaylegacy: private key: %T is not an RSA key", k)
		}
		return rk, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if _, err := x509.ParsePKIXPublicKey(der); err == nil {
		return nil, errors.New("alipaylegacy: private key: this is a public key")
	}
	return nil, errors.New("alipaylegacy: private key: not a PKCS#1 or PKCS#8 RSA private key")
}

// ParsePublicKey parses an RSA public key (Alipay's, "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQ…"),
// given as PEM or one-line base64 of a DER SubjectPublicKeyInfo (PKIX, "BEGIN PUBLIC KEY"). A
// PKCS#1 "RSA PUBLIC KEY" is accepted too.
func ParsePublicKey(b []byte) (*rsa.PublicKey, error) {
	der, err := alipaywire.KeyDER(b)
	if err != nil {
		return nil, fmt.Errorf("alipaylegacy: public key: %v", err)
	}
	if k, err := x509.ParsePKIXPublicKey(der); err == nil {
		rk, ok := k.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("alipaylegacy: public key: %T is not an RSA key", k)
		}
		return rk, nil
	}
	if k, err := x509.ParsePKCS1PublicKey(der); err == nil {
		return k, nil
	}
	if _, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return nil, errors.New("alipaylegacy: public key: this is a private key")
	}
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return nil, errors.New("alipaylegacy: public key: this is a private key")
	}
	return nil, errors.New("alipaylegacy: public key: not a PKIX RSA public key")
}
