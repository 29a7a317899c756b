package wechatpay

import (
	"bytes"
	"crypto"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	wire "github.com/paynotify/paynotify/internal/wechatpaywire"
)

// DefaultBaseURL is the primary APIv3 host; https://api2.mch.weixin.qq.com is the backup.
const DefaultBaseURL = "https://api.mch.weixin.qq.com"

// MaxSkew is the timestamp window: a Wechatpay-Timestamp |now − t| ≥ MaxSkew away is rejected.
const MaxSkew = 5 * time.Minute

// beijing is China Standard Time, UTC+8 without DST; never the host's zone.
var beijing = wire.Beijing

// Beijing returns the fixed UTC+8 zone in which WeChat Pay writes its times.
func Beijing() *time.Location { return beijing }

// Config configures a Client, grouped as merchant identity, platform keys, then plumbing; the
// zero value of each optional field selects its default.
type Config struct {
	// MchID is the merchant id (mchid). Required for API calls.
	MchID string
	// AppID is the default appid of prepay calls and client-side pay parameters.
	AppID string
	// MerchantPrivateKey signs API requests and client-side pay parameters. Required for API
	// calls, not for verifying notifications.
	MerchantPrivateKey *rsa.PrivateKey
	// MerchantSigner signs in place of MerchantPrivateKey when the key is not in memory (a KMS,
	// an HSM): its Public must be an *rsa.PublicKey, and it is asked for RSASSA-PKCS1-v1_5
	// signatures of SHA-256 digests (crypto.SHA256 as the SignerOpts). Set one of the two.
	MerchantSigner crypto.Signer
	// MerchantSerialNo is the serial of the merchant API certificate, sent as serial_no.
	MerchantSerialNo string
	// APIv3Key is the 32-byte APIv3 key that decrypts notification resources and downloaded
	// certificates. Required. It never appears in errors.
	APIv3Key []byte

	// PlatformPublicKey is the WeChat Pay public key (微信支付公钥); PlatformPublicKeyID is its
	// id, "PUB_KEY_ID_…". Set both, or neither.
	PlatformPublicKey   *rsa.PublicKey
	PlatformPublicKeyID string
	// PlatformCerts are platform certificates (wechatpay_<serial>.pem), PEM: one or more
	// CERTIFICATE blocks, concatenated, parsed by NewClient and looked up by serial. During a
	// migration to the public key set both PlatformCerts and PlatformPublicKey: either may sign.
	// More can be downloaded with RefreshCertificates.
	PlatformCerts []byte

	// BaseURL is the API base. Defaults to DefaultBaseURL; the sandbox sets its own.
	BaseURL string
	// HTTPClient sends API requests. Defaults to a client with a 30 s timeout.
	HTTPClient *http.Client
	// Now is the clock for the timestamp window and request timestamps. Defaults to time.Now.
	Now func() time.Time
	// Rand is the source of request and pay-parameter nonces. Defaults to crypto/rand.Reader.
	Rand io.Reader
	// UserAgent is sent with API requests. Defaults to "paynotify-wechatpay".
	UserAgent string
}

// Client is a WeChat Pay APIv3 merchant client: it verifies and decrypts notifications, signs
// requests and client-side pay parameters, and calls the API. It is safe for concurrent use;
// platform keys can be replaced while it runs (RefreshCertificates, SetPlatformCertificates).
type Client struct {
	cfg    Config
	base   *url.URL
	http   *http.Client
	now    func() time.Time
	rand   io.Reader
	aead   cipher.AEAD
	signer crypto.Signer // MerchantPrivateKey or MerchantSigner; nil: verify-only
	// keys, refresh and lastMissRefresh are pointers so that the Clients of WithClock share them.
	keys    *atomic.Pointer[keySet]
	refresh chan struct{} // one download at a time
	// lastMissRefresh is the Unix nano time of the last refresh triggered by an unknown serial.
	lastMissRefresh *atomic.Int64
	// configured holds the serials of Config.PlatformCerts: kept by RefreshCertificates after
	// they expire, for verifying a kept notification again as at its arrival.
	configured map[string]bool
}

// keySet is an immutable snapshot of the platform verification keys.
type keySet struct {
	pubID string
	pub   *rsa.PublicKey
	certs map[string]*x509.Certificate // by uppercase serial
}

func (k *keySet) lookup(serial string) *rsa.PublicKey {
	if k == nil {
		return nil
	}
	if strings.HasPrefix(serial, wire.PublicKeyIDPrefix) {
		if k.pub != nil && serial == k.pubID {
			return k.pub
		}
		return nil
	}
	c := k.cert(serial)
	if c == nil {
		return nil
	}
	pub, _ := c.PublicKey.(*rsa.PublicKey)
	return pub
}

// cert returns the platform certificate of serial, nil for a public key id or an unknown serial.
func (k *keySet) cert(serial string) *x509.Certificate {
	if k == nil || strings.HasPrefix(serial, wire.PublicKeyIDPrefix) {
		return nil
	}
	c, ok := k.certs[serial]
	if !ok {
		c = k.certs[strings.ToUpper(serial)]
	}
	return c
}

// NewClient checks cfg and returns a Client. It requires a 32-byte APIv3 key, the public key and
// its id together, and at least one platform key unless a merchant key is configured (then
// certificates can be downloaded with RefreshCertificates).
func NewClient(cfg Config) (*Client, error) {
	aead, err := newGCM(cfg.APIv3Key)
	if err != nil {
		return nil, err
	}
	cfg.APIv3Key = append([]byte(nil), cfg.APIv3Key...)
	if (cfg.PlatformPublicKey == nil) != (cfg.PlatformPublicKeyID == "") {
		return nil, errors.New("wechatpay: config: PlatformPublicKey and PlatformPublicKeyID go together")
	}
	if cfg.PlatformPublicKeyID != "" && !strings.HasPrefix(cfg.PlatformPublicKeyID, wire.PublicKeyIDPrefix) {
		return nil, fmt.Errorf("wechatpay: config: PlatformPublicKeyID %q does not start with %s", cfg.PlatformPublicKeyID, wire.PublicKeyIDPrefix)
	}
	var signer crypto.Signer
	switch {
	case cfg.MerchantPrivateKey != nil && cfg.MerchantSigner != nil:
		return nil, errors.New("wechatpay: config: set MerchantPrivateKey or MerchantSigner, not both")
	case cfg.MerchantPrivateKey != nil:
		signer = cfg.MerchantPrivateKey
	case cfg.MerchantSigner != nil:
		if _, ok := cfg.MerchantSigner.Public().(*rsa.PublicKey); !ok {
			return nil, errors.New("wechatpay: config: MerchantSigner's public key is not an RSA key")
		}
		signer = cfg.MerchantSigner
	}
	if cfg.PlatformPublicKey == nil && len(bytes.TrimSpace(cfg.PlatformCerts)) == 0 && signer == nil {
		return nil, errors.New("wechatpay: config: no platform key (PlatformPublicKey or PlatformCerts)")
	}
	if signer != nil && (cfg.MchID == "" || cfg.MerchantSerialNo == "") {
		return nil, errors.New("wechatpay: config: the merchant key needs MchID and MerchantSerialNo")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("wechatpay: config: bad BaseURL %q", cfg.BaseURL)
	}
	c := &Client{cfg: cfg, base: base, http: cfg.HTTPClient, now: cfg.Now, rand: cfg.Rand, aead: aead, signer: signer,
		keys: new(atomic.Pointer[keySet]), refresh: make(chan struct{}, 1), lastMissRefresh: new(atomic.Int64)}
	if c.http == nil {
		c.http = &http.Client{Timeout: 30 * time.Second}
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.rand == nil {
		c.rand = rand.Reader
	}
	ks := &keySet{pubID: cfg.PlatformPublicKeyID, pub: cfg.PlatformPublicKey, certs: map[string]*x509.Certificate{}}
	certs, err := parseCertificates(cfg.PlatformCerts)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: config: PlatformCerts: %w", err)
	}
	c.configured = map[string]bool{}
	for _, cert := range certs {
		ks.certs[CertificateSerial(cert)] = cert
		c.configured[CertificateSerial(cert)] = true
	}
	// The commonest key mistake: the merchant's own public key (or apiclient_cert.pem) where WeChat
	// Pay's belongs. Nothing WeChat Pay signs would verify: every notification would be refused.
	if signer != nil {
		own, _ := signer.Public().(*rsa.PublicKey)
		if cfg.PlatformPublicKey != nil && own != nil && cfg.PlatformPublicKey.Equal(own) {
			return nil, errors.New("wechatpay: config: PlatformPublicKey is the merchant's own public key (it matches the merchant private key): configure WeChat Pay's public key (微信支付公钥) instead")
		}
		for _, cert := range certs {
			if pub, ok := cert.PublicKey.(*rsa.PublicKey); ok && own != nil && pub.Equal(own) {
				return nil, errors.New("wechatpay: config: PlatformCerts holds the merchant's own certificate (apiclient_cert.pem, it matches the merchant private key): configure WeChat Pay's platform certificate instead")
			}
		}
	}
	c.keys.Store(ks)
	return c, nil
}

// SetPlatformCertificates replaces the platform certificates (the public key stays). Readers
// see either the old or the new set, never a mix.
func (c *Client) SetPlatformCertificates(certs []*x509.Certificate) {
	for {
		old := c.keys.Load()
		ks := &keySet{pubID: old.pubID, pub: old.pub, certs: map[string]*x509.Certificate{}}
		for _, cert := range certs {
			if cert == nil {
				continue
			}
			if _, ok := cert.PublicKey.(*rsa.PublicKey); ok {
				ks.certs[CertificateSerial(cert)] = cert
			}
		}
		if c.keys.CompareAndSwap(old, ks) {
			return
		}
	}
}

// PlatformCertificates returns the platform certificates in use, sorted by serial.
func (c *Client) PlatformCertificates() []*x509.Certificate {
	ks := c.keys.Load()
	out := make([]*x509.Certificate, 0, len(ks.certs))
	for _, cert := range ks.certs {
		out = append(out, cert)
	}
	sort.Slice(out, func(i, j int) bool { return CertificateSerial(out[i]) < CertificateSerial(out[j]) })
	return out
}

// platformKey returns the public key that Wechatpay-Serial serial names, or nil.
func (c *Client) platformKey(serial string) *rsa.PublicKey { return c.keys.Load().lookup(serial) }

// preferredSerial is the value of the request's Wechatpay-Serial header, which tells WeChat Pay
// which key family to sign the response with: the public key id when configured, else the
// certificate that expires last.
func (c *Client) preferredSerial() string {
	ks := c.keys.Load()
	if ks.pub != nil {
		return ks.pubID
	}
	var best *x509.Certificate
	for _, cert := range ks.certs {
		if best == nil || cert.NotAfter.After(best.NotAfter) {
			best = cert
		}
	}
	return CertificateSerial(best)
}

// newNonce returns 32 random characters of [0-9A-Za-z] from r.
func newNonce(r io.Reader) (string, error) {
	n, err := wire.Nonce(r, 32)
	if err != nil {
		return "", fmt.Errorf("wechatpay: %w", err)
	}
	return n, nil
}
