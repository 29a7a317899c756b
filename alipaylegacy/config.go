package alipaylegacy

import (
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// SignType is the merchant's signature algorithm (alipay.config.php's sign_type). It is chosen by
// the configuration only: the sign_type or sec_id a message declares is never used to pick the
// algorithm, and a message that declares another one is rejected (docs/alipay-legacy.md §13.1).
type SignType string

// The signature algorithms.
const (
	// SignMD5 is lower-case hex MD5(canonical || key) with the merchant's 32-character key
	// (docs/alipay-legacy.md §6.1). sign_type=MD5 on mapi, sec_id=MD5 on the WAP pair.
	SignMD5 SignType = "MD5"
	// SignRSA is RSASSA-PKCS1-v1_5 with SHA-1 (docs/alipay-legacy.md §6.2): Alipay's key signs what
	// Alipay sends, the merchant's key what the merchant sends. sign_type=RSA on mapi; on the WAP
	// pair it is sec_id=0001, which also encrypts notify_data and res_data to the merchant key
	// (docs/alipay-legacy.md §7).
	SignRSA SignType = "RSA"
)

// SecID returns the sec_id that stands for t on the WAP pair: "MD5" or "0001".
func (t SignType) SecID() string {
	if t == SignRSA {
		return "0001"
	}
	return string(t)
}

// Endpoints (docs/alipay-legacy.md §4).
const (
	// DefaultGateway is the mapi gateway of create_direct_pay_by_user and the escrow services.
	DefaultGateway = "https://mapi.alipay.com/gateway.do"
	// DefaultWAPGateway is the old WAP gateway of both WAP services (plain http in every demo).
	DefaultWAPGateway = "http://wappaygw.alipay.com/service/rest.htm"
	// NotifyVerifyHTTPS is the notify_verify URL of the demos' transport=https, the default.
	NotifyVerifyHTTPS = "https://mapi.alipay.com/gateway.do?service=notify_verify"
	// NotifyVerifyHTTP is the notify_verify URL of the demos' transport=http.
	NotifyVerifyHTTP = "http://notify.alipay.com/trade/notify_query.do"
	// DefaultTimeout bounds a notify_verify call and a WAP gateway call.
	DefaultTimeout = 10 * time.Second
)

// Config is a legacy merchant's configuration, the settings of alipay.config.php
// (docs/alipay-legacy.md §2). New checks it.
type Config struct {
	// AlipayPublicKey is Alipay's RSA public key (ali_public_key_path / alipay_public_key), which
	// verifies what Alipay signs. Required with SignRSA; see ParsePublicKey.
	AlipayPublicKey *rsa.PublicKey
	// Gateway is the mapi gateway. Defaults to DefaultGateway.
	Gateway string
	// HTTPClient sends notify_verify and WAP gateway calls. Defaults to a new http.Client; Timeout
	// bounds each call in any case.
	HTTPClient *http.Client
	// InputCharset is the merchant's _input_charset: "utf-8" (the default) or "gbk" ("gb2312" and
	// "gb18030" are accepted too; names are case-insensitive). Every signed value is in this
	// charset, and the mapi notification does not say which it is: it must be configured.
	InputCharset string
	// MD5Key is the 32-character MD5 key (安全校验码), required with SignMD5. Whitespace around it
	// (a key file's newline) is trimmed by New. It is a shared secret: whoever has it can forge
	// notifications.
	MD5Key string
	// MerchantPrivateKey is the merchant's RSA private key (private_key_path): it signs requests
	// under SignRSA and decrypts `0001` notify_data and res_data, which needs a 1024-bit key
	// (docs/alipay-legacy.md §7). Optional: without it the client only verifies mapi messages. See
	// ParsePrivateKey.
	MerchantPrivateKey *rsa.PrivateKey
	// Now is the clock of generated req_ids. Defaults to time.Now; req_ids are written in Beijing
	// time whatever the host's zone.
	Now func() time.Time
	// NotifyVerifyURL is the notify_verify URL, to which "partner=…&notify_id=…" is appended (after
	// '&' when it already has a query, '?' otherwise). Defaults to NotifyVerifyHTTPS; the demos'
	// transport=http is NotifyVerifyHTTP; a simulator's URL works the same way.
	NotifyVerifyURL string
	// Partner is the merchant's PID: "2088" followed by 12 digits. Required.
	Partner string
	// SellerEmail is the receiving account's email (seller_email), sent in mapi requests when
	// SellerID is empty, and the WAP seller_account_name. Optional.
	SellerEmail string
	// SellerID is the receiving account's user id (seller_id, "2088…"). Optional; when both
	// SellerID and SellerEmail are empty, mapi requests send seller_id = Partner (the demos'
	// default).
	SellerID string
	// SignType is the algorithm, SignMD5 or SignRSA ("0001" is accepted for SignRSA). Required.
	SignType SignType
	// Timeout bounds each notify_verify and WAP gateway call. Defaults to DefaultTimeout.
	Timeout time.Duration
	// WAPGateway is the old WAP gateway. Defaults to DefaultWAPGateway.
	WAPGateway string
}

// Client verifies a legacy merchant's notifications and returns and builds its requests. It is
// safe for concurrent use.
type Client struct {
	partner     string
	sellerID    string
	sellerEmail string
	signType    SignType
	md5Key      string
	alipayKey   *rsa.PublicKey
	merchantKey *rsa.PrivateKey
	charset     string
	gateway     string
	wapGateway  string
	verifyURL   string
	httpClient  *http.Client
	timeout     time.Duration
	now         func() time.Time
	newReqID    func() string // tests pin it
}

// New checks cfg and returns a client for it. It refuses a config whose Alipay public key is the
// merchant's own public key (the commonest key mistake).
func New(cfg Config) (*Client, error) {
	c := &Client{
		partner:     cfg.Partner,
		sellerID:    cfg.SellerID,
		sellerEmail: strings.TrimSpace(cfg.SellerEmail),
		md5Key:      strings.TrimSpace(cfg.MD5Key),
		alipayKey:   cfg.AlipayPublicKey,
		merchantKey: cfg.MerchantPrivateKey,
		gateway:     cfg.Gateway,
		wapGateway:  cfg.WAPGateway,
		verifyURL:   cfg.NotifyVerifyURL,
		httpClient:  cfg.HTTPClient,
		timeout:     cfg.Timeout,
		now:         cfg.Now,
	}
	if !isPID(c.partner) {
		return nil, errors.New(`alipaylegacy: Partner must be "2088" followed by 12 digits`)
	}
	if c.sellerID != "" && !isPID(c.sellerID) {
		return nil, errors.New(`alipaylegacy: SellerID must be "2088" followed by 12 digits`)
	}
	switch strings.ToUpper(strings.TrimSpace(string(cfg.SignType))) {
	case "MD5":
		c.signType = SignMD5
		if !isMD5Key(c.md5Key) {
			return nil, errors.New("alipaylegacy: SignType MD5 needs MD5Key, 32 letters and digits")
		}
	case "RSA", "0001":
		c.signType = SignRSA
		if c.alipayKey == nil {
			return nil, errors.New("alipaylegacy: SignType RSA needs AlipayPublicKey")
		}
		if c.alipayKey.N.BitLen() < 1024 {
			return nil, errors.New("alipaylegacy: AlipayPublicKey is shorter than 1024 bits")
		}
		if c.merchantKey != nil && c.alipayKey.Equal(&c.merchantKey.PublicKey) {
			return nil, errors.New("alipaylegacy: AlipayPublicKey is the merchant's own public key (it matches MerchantPrivateKey): configure Alipay's public key instead")
		}
	case "":
		return nil, errors.New("alipaylegacy: SignType is required (MD5 or RSA)")
	default:
		return nil, fmt.Errorf("alipaylegacy: unsupported SignType %q (want MD5 or RSA)", cfg.SignType)
	}
	cs, ok := alipaywire.Charset(cfg.InputCharset)
	if !ok {
		return nil, fmt.Errorf("alipaylegacy: unsupported InputCharset %q (want utf-8 or gbk)", cfg.InputCharset)
	}
	c.charset = cs
	urls := []struct {
		dst     *string
		def     string
		name    string
		queryOK bool
	}{
		{&c.gateway, DefaultGateway, "Gateway", false},
		{&c.wapGateway, DefaultWAPGateway, "WAPGateway", false},
		{&c.verifyURL, NotifyVerifyHTTPS, "NotifyVerifyURL", true},
	}
	for _, u := range urls {
		if *u.dst == "" {
			*u.dst = u.def
		}
		if err := checkURL(*u.dst, u.queryOK); err != nil {
			return nil, fmt.Errorf("alipaylegacy: %s: %v", u.name, err)
		}
	}
	if c.timeout < 0 {
		return nil, errors.New("alipaylegacy: negative Timeout")
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.httpClient == nil {
		c.httpClient = &http.Client{}
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.newReqID = c.randomReqID
	return c, nil
}

// Partner returns the configured partner (PID).
func (c *Client) Partner() string { return c.partner }

// SignType returns the configured algorithm.
func (c *Client) SignType() SignType { return c.signType }

// Charset returns the configured _input_charset in its canonical spelling ("utf-8", "gbk", …).
func (c *Client) Charset() string { return c.charset }

// SellerMatches reports whether a verified notification or return is about this merchant's
// receiving account: its seller_id equals Config.SellerID, or else its seller_email equals
// Config.SellerEmail (ignoring case), or else (neither configured) its seller_id equals Partner, the
// demos' default. Legacy notifications carry no partner field, so this is the account check; a
// message without the compared field does not match.
func (c *Client) SellerMatches(n *Notification) bool {
	switch {
	case c.sellerID != "":
		return n.SellerID == c.sellerID
	case c.sellerEmail != "":
		return n.SellerEmail != "" && strings.EqualFold(n.SellerEmail, c.sellerEmail)
	}
	return n.SellerID == c.partner
}

// IsPID reports whether s has the form of an Alipay partner id (PID): 2088 and 12 more digits.
func IsPID(s string) bool { return isPID(s) }

func isPID(s string) bool {
	if len(s) != 16 || !strings.HasPrefix(s, "2088") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isMD5Key(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

func checkURL(s string, queryOK bool) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("not an http or https URL")
	case u.Host == "":
		return errors.New("no host")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return errors.New("has a fragment")
	case !queryOK && (u.RawQuery != "" || strings.Contains(s, "?")):
		return errors.New("has a query")
	}
	return nil
}

// randomReqID returns a fresh req_id: the Beijing time as yyyyMMddHHmmss (the demos' date
// format) followed by six random digits, so that two requests in one second differ.
func (c *Client) randomReqID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	d := make([]byte, 6)
	for i := range b {
		d[i] = '0' + b[i]%10
	}
	return c.now().In(alipaywire.Beijing).Format("20060102150405") + string(d)
}
