package sandbox

import (
	"crypto/rand"
	"crypto/rsa"
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
	"strings"
	"time"

	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/internal/wechatpaywire"
	"github.com/paynotify/paynotify/wechatpay"
)

// Keys is what a merchant configuration needs to talk to the sandbox: the provider-side public keys
// and shared secrets, and the default registered Alipay app and WeChat Pay merchant with their
// generated merchant-side keys. Every key here is a throw-away key generated for this sandbox's
// state directory; none is a published test key.
type Keys struct {
	// AlipayPublicKey is the sandbox's Alipay public key (支付宝公钥), PEM: it verifies notifications,
	// responses and return_url redirects.
	AlipayPublicKey string `json:"alipay_public_key"`
	// AlipayPublicKeyBase64 is the same key as the one-line base64 the Alipay console hands out.
	AlipayPublicKeyBase64 string `json:"alipay_public_key_base64"`
	// AlipayAppID is the default registered app; AlipaySellerID its seller (2088…).
	AlipayAppID    string `json:"alipay_app_id"`
	AlipaySellerID string `json:"alipay_seller_id"`
	// AlipayAppPrivateKey and AlipayAppPublicKey are the default app's key pair (PEM, PKCS#8 and
	// PKIX): the merchant signs requests with the private key.
	AlipayAppPrivateKey string `json:"alipay_app_private_key"`
	AlipayAppPublicKey  string `json:"alipay_app_public_key"`
	// Certificate mode (公钥证书模式), PEM: AlipayCert (alipayCertPublicKey_RSA2.crt) over the
	// Alipay public key, AlipayRootCert (alipayRootCert.crt) the sandbox's root that issued it and
	// the apps' certificates, AlipayAppCert (appCertPublicKey_<appid>.crt) the default app's
	// (Sandbox.AlipayAppCert issues another app's); and their SNs (app_cert_sn,
	// alipay_root_cert_sn, and the alipay_cert_sn of the answers).
	AlipayCert       string `json:"alipay_cert"`
	AlipayRootCert   string `json:"alipay_root_cert"`
	AlipayAppCert    string `json:"alipay_app_cert"`
	AlipayCertSN     string `json:"alipay_cert_sn"`
	AlipayRootCertSN string `json:"alipay_root_cert_sn"`
	AlipayAppCertSN  string `json:"alipay_app_cert_sn"`

	// WechatPlatformPublicKey is the WeChat Pay public key (微信支付公钥, pub_key.pem) and
	// WechatPlatformPublicKeyID its id (PUB_KEY_ID_…): it verifies notifications and responses.
	WechatPlatformPublicKey   string `json:"wechatpay_platform_public_key"`
	WechatPlatformPublicKeyID string `json:"wechatpay_platform_public_key_id"`
	// WechatPlatformCertificate is a platform certificate over the same key (PEM), with serial
	// WechatPlatformCertSerial, for merchants in certificate mode.
	WechatPlatformCertificate string `json:"wechatpay_platform_certificate"`
	WechatPlatformCertSerial  string `json:"wechatpay_platform_cert_serial"`
	// WechatAPIv3Key is the 32-character APIv3 key shared with every merchant of this sandbox.
	WechatAPIv3Key string `json:"wechatpay_apiv3_key"`
	// WechatMchID, WechatAppID and WechatMerchantSerialNo identify the default merchant;
	// WechatMerchantPrivateKey and WechatMerchantPublicKey are its API key pair (PEM).
	WechatMchID              string `json:"wechatpay_mchid"`
	WechatAppID              string `json:"wechatpay_appid"`
	WechatMerchantSerialNo   string `json:"wechatpay_merchant_serial_no"`
	WechatMerchantPrivateKey string `json:"wechatpay_merchant_private_key"`
	WechatMerchantPublicKey  string `json:"wechatpay_merchant_public_key"`

	// LegacyPartner is the default legacy Alipay partner (PID, 2088…, also its seller_id) and
	// LegacySellerEmail its account (seller_email / seller_account_name). It may sign with
	// LegacyMD5Key (MD5) or with LegacyMerchantPrivateKey (RSA, sec_id 0001).
	LegacyPartner     string `json:"alipay_legacy_partner"`
	LegacySellerEmail string `json:"alipay_legacy_seller_email"`
	LegacyMD5Key      string `json:"alipay_legacy_md5_key"`
	// LegacyAlipayPublicKey is the sandbox's legacy "Alipay" RSA-1024 public key (PEM; and as the
	// one-line base64 of the merchant portal): it verifies RSA / 0001 notifications, returns and
	// token answers. LegacyAlipayPrivateKey is its private key (PKCS#8 PEM), exposed for tests
	// that forge genuine-looking messages; a merchant never has it.
	LegacyAlipayPublicKey       string `json:"alipay_legacy_alipay_public_key"`
	LegacyAlipayPublicKeyBase64 string `json:"alipay_legacy_alipay_public_key_base64"`
	LegacyAlipayPrivateKey      string `json:"alipay_legacy_alipay_private_key"`
	// LegacyMerchantPrivateKey (PKCS#1 PEM, "BEGIN RSA PRIVATE KEY", as the PHP demos want) and
	// LegacyMerchantPublicKey (PKIX PEM) are the default partner's RSA-1024 pair: it signs RSA /
	// 0001 requests and decrypts 0001 notify_data and res_data.
	LegacyMerchantPrivateKey string `json:"alipay_legacy_merchant_private_key"`
	LegacyMerchantPublicKey  string `json:"alipay_legacy_merchant_public_key"`
}

// keyring holds the parsed keys of one sandbox.
type keyring struct {
	alipay          *rsa.PrivateKey
	platform        *rsa.PrivateKey
	platformCert    *x509.Certificate
	platformCertPEM []byte
	pubKeyID        string
	certSerial      string
	apiv3Key        []byte

	appID, sellerID string
	appKey          *rsa.PrivateKey
	mchID, mchAppID string
	mchSerial       string
	merchantKey     *rsa.PrivateKey

	legacy *legacyKeyring // legacy.go
	certs  *certKeys      // alipaycert.go
}

// loadOrCreateKeys reads the sandbox keys from dir, generating whatever is missing.
func loadOrCreateKeys(dir string) (*keyring, error) {
	k := &keyring{}
	var err error
	if k.alipay, err = loadOrCreateRSA(filepath.Join(dir, "alipay_private_key.pem")); err != nil {
		return nil, err
	}
	if k.platform, err = loadOrCreateRSA(filepath.Join(dir, "wechatpay_platform_private_key.pem")); err != nil {
		return nil, err
	}
	if k.appKey, err = loadOrCreateRSA(filepath.Join(dir, "default_alipay_app_private_key.pem")); err != nil {
		return nil, err
	}
	if k.merchantKey, err = loadOrCreateRSA(filepath.Join(dir, "default_wechatpay_merchant_private_key.pem")); err != nil {
		return nil, err
	}
	if k.pubKeyID, err = loadOrCreateString(filepath.Join(dir, "wechatpay_public_key_id"), func() string {
		return wechatpaywire.PublicKeyIDPrefix + randDigits(32)
	}); err != nil {
		return nil, err
	}
	key, err := loadOrCreateString(filepath.Join(dir, "wechatpay_apiv3_key"), func() string { return randAlnum(32) })
	if err != nil {
		return nil, err
	}
	if len(key) != wechatpay.APIv3KeySize {
		return nil, errors.New("sandbox: wechatpay_apiv3_key must hold 32 characters")
	}
	k.apiv3Key = []byte(key)
	if k.appID, err = loadOrCreateString(filepath.Join(dir, "default_alipay_app_id"), func() string { return "9021" + randDigits(12) }); err != nil {
		return nil, err
	}
	if k.sellerID, err = loadOrCreateString(filepath.Join(dir, "default_alipay_seller_id"), func() string { return "2088" + randDigits(12) }); err != nil {
		return nil, err
	}
	if k.mchID, err = loadOrCreateString(filepath.Join(dir, "default_wechatpay_mchid"), func() string { return "19" + randDigits(8) }); err != nil {
		return nil, err
	}
	if k.mchAppID, err = loadOrCreateString(filepath.Join(dir, "default_wechatpay_appid"), func() string { return "wx" + strings.ToLower(randHex(8)) }); err != nil {
		return nil, err
	}
	if k.mchSerial, err = loadOrCreateString(filepath.Join(dir, "default_wechatpay_merchant_serial_no"), func() string { return randHex(20) }); err != nil {
		return nil, err
	}
	if k.legacy, err = loadOrCreateLegacyKeys(dir); err != nil {
		return nil, err
	}
	b, err := loadOrCreateCert(filepath.Join(dir, "wechatpay_platform_cert.pem"), func() ([]byte, error) { return makePlatformCert(k.platform) })
	if err != nil {
		return nil, err
	}
	if k.platformCert, err = parseCertPEM(b); err != nil {
		return nil, fmt.Errorf("sandbox: platform certificate: %w", err)
	}
	k.platformCertPEM = b
	k.certSerial = wechatpay.CertificateSerial(k.platformCert)
	if k.certs, err = loadOrCreateCerts(dir, k.alipay, k.appID, &k.appKey.PublicKey); err != nil {
		return nil, err
	}
	return k, nil
}

// makePlatformCert self-signs a ten-year platform certificate over key.
func makePlatformCert(key *rsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 159))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "paynotify sandbox WeChat Pay platform", Organization: []string{"paynotify sandbox"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func loadOrCreateRSA(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := alipay.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("sandbox: %s: %w", filepath.Base(path), err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sandbox: read key: %w", err)
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("sandbox: generate key: %w", err)
	}
	if err := writeFileAtomic(path, privatePEM(k)); err != nil {
		return nil, err
	}
	return k, nil
}

func loadOrCreateString(path string, gen func() string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("sandbox: read %s: %w", filepath.Base(path), err)
	}
	v := gen()
	return v, writeFileAtomic(path, []byte(v+"\n"))
}

// writeFileAtomic writes a 0600 file through a temporary name, so a crash never leaves half a key.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("sandbox: write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("sandbox: write %s: %w", filepath.Base(path), err)
	}
	return nil
}

func privatePEM(k *rsa.PrivateKey) []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func publicPEM(k *rsa.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(k)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func publicBase64(k *rsa.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(k)
	return base64.StdEncoding.EncodeToString(der)
}

const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func randFrom(set string, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	for i := range b {
		b[i] = set[int(b[i])%len(set)]
	}
	return string(b)
}

func randDigits(n int) string { return randFrom("0123456789", n) }
func randAlnum(n int) string  { return randFrom(alnum, n) }
func randHex(nBytes int) string {
	return randFrom("0123456789ABCDEF", 2*nBytes)
}
