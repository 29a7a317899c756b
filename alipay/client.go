package alipay

import (
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Gateways.
const (
	// GatewayProduction is the production gateway, the default.
	GatewayProduction = "https://openapi.alipay.com/gateway.do"
	// GatewaySandbox is the current Alipay sandbox gateway.
	GatewaySandbox = "https://openapi-sandbox.dl.alipaydev.com/gateway.do"
)

// Config configures a Client. Keys are parsed by the caller (ParsePrivateKey, ParsePublicKey) or,
// in certificate mode, given as PEM bytes; NewClient parses everything once.
//
// Public-key mode sets AlipayPublicKey. Certificate mode sets AlipayCert, and, to send requests,
// AppCert and AlipayRootCert. A client with no PrivateKey can only verify.
type Config struct {
	// AlipayCert is the Alipay public-key certificate (alipayCertPublicKey_RSA2.crt), PEM: certificate
	// mode. The file Alipay gives holds its certificate, then the CA's; every end-entity
	// certificate in it (one that issued none of the others) is trusted, so that during a rotation
	// the current and the next file can be concatenated. A message naming an alipay_cert_sn is
	// verified with that certificate's key; one naming none with the first certificate's, then the
	// others'.
	AlipayCert []byte
	// AlipayPublicKey is the Alipay public key (支付宝公钥, not the app public key): public-key mode.
	AlipayPublicKey *rsa.PublicKey
	// AlipayRootCert is Alipay's root certificate file (alipayRootCert.crt), PEM: certificate mode,
	// needed to send requests (alipay_root_cert_sn).
	AlipayRootCert []byte
	// AppCert is the app public-key certificate (appCertPublicKey_<appid>.crt), PEM: certificate
	// mode, needed to send requests (app_cert_sn). Its key must match PrivateKey.
	AppCert []byte
	// AppID is the application id, e.g. "2021000000000001". Required to send requests.
	AppID string
	// Gateway is the gateway URL. Defaults to GatewayProduction.
	Gateway string
	// HTTPClient sends API calls. Defaults to a client with a 15-second timeout; contexts bound each
	// call as well.
	HTTPClient *http.Client
	// Now is the clock for request timestamps. Defaults to time.Now. Timestamps are always written in
	// Beijing time, whatever the host's zone.
	Now func() time.Time
	// NotifyURL is the default notify_url of pay and precreate requests; a request's own NotifyURL
	// wins. Empty means none.
	NotifyURL string
	// PrivateKey is the app private key that signs requests. Nil (and no Signer) makes a
	// verify-only client.
	PrivateKey *rsa.PrivateKey
	// Signer signs requests in place of PrivateKey when the key is not in memory (a KMS, an HSM):
	// its Public must be the app's *rsa.PublicKey, and it is asked for RSASSA-PKCS1-v1_5
	// signatures of SHA-256 digests (crypto.SHA256 as the SignerOpts; crypto.SHA1 with SignType
	// RSA). Set PrivateKey or Signer, not both.
	Signer crypto.Signer
	// ReturnURL is the default return_url of page and wap pay requests; a request's own wins.
	ReturnURL string
	// SignType is the signature algorithm, for requests and for everything verified: RSA2 (the
	// default) or RSA. The sign_type a message declares is never used.
	SignType SignType
	// NoCertDownload turns off, in certificate mode, the download of an Alipay certificate that
	// an API answer names but AlipayCert does not have (Client.FetchAlipayCert: after Alipay
	// renews its certificate, the answers name the new one). Without AlipayRootCert or a private
	// key nothing is downloaded either.
	NoCertDownload bool
	// OnCertDownload, when set, is called with each certificate downloaded and trusted (to log
	// it: the configured file should be updated).
	OnCertDownload func(CertKey)
}

// Client signs requests to, and verifies messages from, one Alipay application. It is safe for
// concurrent use.
type Client struct {
	appID      string
	priv       crypto.Signer  // nil: verify-only
	appPub     *rsa.PublicKey // priv's public key
	signType   SignType
	gateway    string
	httpClient *http.Client
	now        func() time.Time
	notifyURL  string
	returnURL  string

	alipayKey  *rsa.PublicKey            // verifies notifications and responses without alipay_cert_sn
	alipayKeys map[string]*rsa.PublicKey // cert mode: SN → key
	otherKeys  []*rsa.PublicKey          // cert mode: the other certificates' keys, after alipayKey
	alipaySN   string                    // cert mode: SN of AlipayCert
	appCertSN  string                    // cert mode
	rootCertSN string                    // cert mode

	dl         *certDownloads                 // cert mode with a root and a key: downloads (nil: none)
	downloaded atomic.Pointer[downloadedKeys] // the certificates downloaded; nil: none yet
	dlMu       sync.Mutex                     // serialises additions to downloaded
}

// errOwnKey is the commonest configuration mistake (docs/alipay.md, "Keys").
var errOwnKey = errors.New("alipay: the configured Alipay public key is the app's own public key (it matches the app private key): configure the Alipay public key (支付宝公钥) shown in the Alipay console instead")

// NewClient checks cfg and parses its keys and certificates once. It refuses an Alipay public key
// (or Alipay certificate) that is in fact the app's own public key.
func NewClient(cfg Config) (*Client, error) {
	c := &Client{
		appID:      cfg.AppID,
		signType:   cfg.SignType,
		gateway:    cfg.Gateway,
		httpClient: cfg.HTTPClient,
		now:        cfg.Now,
		notifyURL:  cfg.NotifyURL,
		returnURL:  cfg.ReturnURL,
	}
	switch {
	case cfg.PrivateKey != nil && cfg.Signer != nil:
		return nil, errors.New("alipay: set PrivateKey or Signer, not both")
	case cfg.PrivateKey != nil:
		c.priv, c.appPub = cfg.PrivateKey, &cfg.PrivateKey.PublicKey
	case cfg.Signer != nil:
		pub, ok := cfg.Signer.Public().(*rsa.PublicKey)
		if !ok {
			return nil, errors.New("alipay: Signer's public key is not an RSA key")
		}
		c.priv, c.appPub = cfg.Signer, pub
	}
	if c.signType == "" {
		c.signType = RSA2
	}
	if !c.signType.valid() {
		return nil, ErrSignType
	}
	if c.gateway == "" {
		c.gateway = GatewayProduction
	}
	if c.httpClient == nil {
		c.httpClient = &http.Client{Timeout: 15 * time.Second}
	}
	if c.now == nil {
		c.now = time.Now
	}
	switch {
	case cfg.AlipayPublicKey != nil && len(cfg.AlipayCert) > 0:
		return nil, errors.New("alipay: set AlipayPublicKey or AlipayCert, not both")
	case cfg.AlipayPublicKey != nil:
		c.alipayKey = cfg.AlipayPublicKey
	case len(cfg.AlipayCert) > 0:
		leaves, err := certLeaves(cfg.AlipayCert)
		if err != nil {
			return nil, errors.New("alipay: AlipayCert: " + strings.TrimPrefix(err.Error(), "alipay: "))
		}
		c.alipayKey, c.alipaySN = leaves[0].pub, leaves[0].sn
		c.alipayKeys = map[string]*rsa.PublicKey{}
		for i, l := range leaves {
			c.alipayKeys[l.sn] = l.pub
			if i > 0 {
				c.otherKeys = append(c.otherKeys, l.pub)
			}
			if c.priv != nil && l.pub.Equal(c.appPub) {
				return nil, errOwnKey
			}
			if l.pub.N.BitLen() < 1024 {
				return nil, errors.New("alipay: AlipayCert: a certificate's key is shorter than 1024 bits")
			}
		}
		if len(cfg.AppCert) > 0 {
			sn, pub, err := CertPublicKey(cfg.AppCert)
			if err != nil {
				return nil, errors.New("alipay: AppCert: " + strings.TrimPrefix(err.Error(), "alipay: "))
			}
			if c.priv != nil && !pub.Equal(c.appPub) {
				return nil, errors.New("alipay: AppCert does not match the app private key")
			}
			c.appCertSN = sn
		}
		if len(cfg.AlipayRootCert) > 0 {
			sn, err := RootCertSN(cfg.AlipayRootCert)
			if err != nil {
				return nil, errors.New("alipay: AlipayRootCert: " + strings.TrimPrefix(err.Error(), "alipay: "))
			}
			c.rootCertSN = sn
		}
		if c.priv != nil && (c.appCertSN == "" || c.rootCertSN == "") {
			return nil, errors.New("alipay: certificate mode needs AppCert and AlipayRootCert to sign requests")
		}
		if c.priv != nil && !cfg.NoCertDownload {
			c.dl = &certDownloads{roots: rootPool(cfg.AlipayRootCert), subject: leaves[0].cn, appPub: c.appPub, onAdd: cfg.OnCertDownload}
		}
	default:
		return nil, errors.New("alipay: no Alipay public key: set AlipayPublicKey or AlipayCert")
	}
	if c.priv != nil && c.alipayKey.Equal(c.appPub) {
		return nil, errOwnKey
	}
	if c.alipayKey.N.BitLen() < 1024 {
		return nil, errors.New("alipay: Alipay public key shorter than 1024 bits")
	}
	return c, nil
}

// SignType returns the configured signature algorithm.
func (c *Client) SignType() SignType { return c.signType }

// AppCertSN returns app_cert_sn in certificate mode, else "".
func (c *Client) AppCertSN() string { return c.appCertSN }

// AlipayRootCertSN returns alipay_root_cert_sn in certificate mode, else "".
func (c *Client) AlipayRootCertSN() string { return c.rootCertSN }

// AlipayCertSN returns the SN of the configured Alipay certificate in certificate mode, else "".
func (c *Client) AlipayCertSN() string { return c.alipaySN }

// verifyNotificationForm verifies an asynchronous notification from its raw POST body and
// Content-Type (empty is accepted; Alipay sends "application/x-www-form-urlencoded; text/html;
// charset=utf-8"), under the V1 rule, and returns the verified form without decoding it further.
// It is the hot path of [Client.VerifyNotification]. Errors are *VerifyError.
func (c *Client) verifyNotificationForm(body []byte, contentType string) (*form, error) {
	f := new(form)
	if err := c.verifyNotificationInto(f, body, contentType); err != nil {
		return nil, err
	}
	return f, nil
}

// verifyNotificationInto is verifyNotificationForm into a Form the caller owns (see Form.Parse):
// with a pooled Form, verification of a usual notification allocates nothing. On success f holds
// the verified form, for decodeNotification.
func (c *Client) verifyNotificationInto(f *form, body []byte, contentType string) error {
	if err := checkContentType(contentType); err != nil {
		return err
	}
	if err := f.Parse(body); err != nil {
		return err
	}
	return c.verifyForm(f, ruleV1)
}

// MaxNotificationBytes is the largest body VerifyNotificationRequest reads: 1 MiB, far above any
// notification Alipay sends (a few KiB).
const MaxNotificationBytes = 1 << 20

// VerifyNotification verifies an asynchronous trade notification (notify_url) from its request
// header (only Content-Type is read: empty, or any application/x-www-form-urlencoded one; a nil
// header is accepted) and its raw POST body exactly as received, then decodes it. A failure is
// a *VerifyError wrapping ErrSignature, ErrMalformed or ErrDuplicateKey, with a nil notification
// and the out_trade_no the message claims in OutTradeNo; or, when Config.AppID is set and the
// verified notification names another app_id (or none), one wrapping ErrAppID (reason
// ReasonAppIDMismatch) returned together with the notification: treat it as not yours.
//
// A notification that verifies but one of whose values holds "&name=" for a field you decide by
// (out_trade_no, seller_id, total_amount…; docs/alipay.md, "Canonical strings"), or a field name
// holding "&" or "=", is refused too (ErrMalformed): the signature covers the fields joined with
// "&", not where each one ends, so such a message may be a genuine one regrouped to name another
// order or hide its seller. Answer it with failure and query the trade.
func (c *Client) VerifyNotification(header http.Header, body []byte) (*Notification, error) {
	f := formPool.Get().(*form)
	defer formPool.Put(f)
	if err := c.verifyNotificationInto(f, body, header.Get("Content-Type")); err != nil {
		return nil, err
	}
	n, err := decodeNotification(f)
	if err != nil {
		return nil, err
	}
	if c.appID != "" && n.AppID != c.appID {
		// Signed by Alipay, for another application: returned with the error, for a caller that
		// records such messages (paynotify keeps them as anomalies).
		return n, &VerifyError{Reason: ReasonAppIDMismatch, OutTradeNo: n.OutTradeNo, err: ErrAppID,
			Detail: "app_id " + strconv.Quote(n.AppID) + " is not the configured " + strconv.Quote(c.appID)}
	}
	return n, nil
}

// VerifyNotificationRequest is VerifyNotification for a notification as net/http hands it over:
// it reads r's body once, raw, at most MaxNotificationBytes of it (a larger body is a
// *VerifyError wrapping ErrMalformed, and nothing is verified), and verifies those bytes with r's
// Content-Type. It never reads r.Form or r.PostForm, which hold re-decoded values that no
// signature covers. A body that cannot be read is an error that is not a *VerifyError.
func (c *Client) VerifyNotificationRequest(r *http.Request) (*Notification, error) {
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(io.LimitReader(r.Body, MaxNotificationBytes+1))
		if err != nil {
			return nil, fmt.Errorf("alipay: read notification body: %w", err)
		}
		if len(b) > MaxNotificationBytes {
			return nil, malformed(fmt.Sprintf("body larger than %d bytes (MaxNotificationBytes)", MaxNotificationBytes))
		}
		body = b
	}
	return c.VerifyNotification(r.Header, body)
}

// formPool recycles the Forms of VerifyNotification: decodeNotification copies what it keeps.
var formPool = sync.Pool{New: func() any { return new(form) }}

// verifyGatewayNotification verifies a notification sent to the application gateway (应用网关),
// such as alipay.open.servicemarket.order.notify, under the V2 rule (sign_type is signed), and
// returns its verified form.
func (c *Client) verifyGatewayNotification(body []byte, contentType string) (*form, error) {
	if err := checkContentType(contentType); err != nil {
		return nil, err
	}
	f, err := parseForm(body)
	if err != nil {
		return nil, err
	}
	if err := c.verifyForm(f, ruleV2); err != nil {
		return nil, err
	}
	return f, nil
}

// VerifyReturn verifies the query string of a return_url redirect (with or without its leading
// '?'), under the V1 rule, and returns its values as UTF-8. A verified return only says the buyer
// came back: never mark an order paid from it.
func (c *Client) VerifyReturn(rawQuery string) (map[string]string, error) {
	rawQuery = strings.TrimPrefix(rawQuery, "?")
	f, err := parseForm([]byte(rawQuery))
	if err != nil {
		return nil, err
	}
	if err := c.verifyForm(f, ruleV1); err != nil {
		return nil, err
	}
	d, ok := charsetDecoder(f.Charset())
	if !ok {
		return nil, malformed("unsupported charset " + quoteShort(f.Charset()))
	}
	m := make(map[string]string, f.Len())
	for _, fl := range f.Fields() {
		k, ok1 := toUTF8(d, fl.Key)
		v, ok2 := toUTF8(d, fl.Value)
		if !ok1 || !ok2 {
			return nil, malformed("field " + quoteShort(fl.Key) + " is not valid " + f.Charset())
		}
		m[k] = v
	}
	return m, nil
}

// verifyForm checks the sign of a parsed form under rule r with the configured algorithm and Alipay
// key. In certificate mode an alipay_cert_sn field selects the key among the trusted ones, and the
// canonical string is tried with it (the official rule), then without it. When that fails and the
// form has an empty value, the canonical string keeping empty values is tried once more (see
// Form.SignedWithEmpty). It returns nil or a *VerifyError.
func (c *Client) verifyForm(f *form, r rule) error {
	sig, _ := f.getBytes("sign")
	var buf [512]byte
	raw, err := decodeSig(buf[:0], sig)
	if err != nil {
		ve := err.(*VerifyError)
		ve.OutTradeNo = claimedOutTradeNo(f)
		ve.Message = f.appendCanonical(nil, r, "")
		return ve
	}
	key := c.alipayKey
	certSNb, hasSN := f.getBytes("alipay_cert_sn")
	hasSN = hasSN && len(certSNb) > 0 // an empty value names no certificate (and is not signed)
	if hasSN && c.alipayKeys != nil {
		certSN := string(certSNb)
		if key = c.certKey(certSN); key == nil {
			return &VerifyError{Reason: ReasonUnknownSerial, Detail: "alipay_cert_sn " + quoteShort(certSN) + " is not the configured Alipay certificate (" + c.alipaySN + ")",
				OutTradeNo: claimedOutTradeNo(f), err: ErrSignature}
		}
	}
	// The canonical string of a usual notification fits on the stack; the failure path rebuilds it.
	var stack [2048]byte
	canon := f.appendCanonical(stack[:0], r, "")
	h, d, n := c.signType.hashed(canon)
	if rsaVerify(key, h, d[:n], raw) {
		return nil
	}
	if hasSN && c.alipayKeys != nil {
		alt := f.appendCanonical(stack[:0], r, "alipay_cert_sn")
		h, d, n := c.signType.hashed(alt)
		if rsaVerify(key, h, d[:n], raw) {
			return nil
		}
	}
	if c.verifyOtherRules(f, r, key, raw, stack[:0]) {
		return nil
	}
	// No alipay_cert_sn, and several certificates configured (a rotation): the others' keys,
	// under every rule.
	if !hasSN {
		for _, others := range [2][]*rsa.PublicKey{c.otherKeys, c.downloadedList()} {
			for _, other := range others {
				if rsaVerify(other, h, d[:n], raw) || c.verifyOtherRules(f, r, other, raw, stack[:0]) {
					return nil
				}
			}
		}
	}
	full := f.appendCanonical(nil, r, "")
	return &VerifyError{Reason: ReasonSignatureInvalid, Detail: c.explainFailure(f, r, key, raw, full),
		Message: full, OutTradeNo: claimedOutTradeNo(f), err: ErrSignature}
}

// verifyOtherRules verifies raw with key over the canonical strings of the other signers' rules,
// each only when the form has what makes it differ from the usual one.
func (c *Client) verifyOtherRules(f *form, r rule, key *rsa.PublicKey, raw, buf []byte) bool {
	// A notification with an empty value may be signed over the string that keeps it as "k="
	// (the PHP SDK's rule since its commit 49ca4518b): one more verification, only then.
	if f.hasEmptyValue(r) {
		withEmpty := f.appendCanonicalRule(buf, r, "", true)
		h, d, n := c.signType.hashed(withEmpty)
		if rsaVerify(key, h, d[:n], raw) {
			f.signedWithEmpty = true
			return true
		}
	}
	// A value made only of full-width (or other non-ASCII) spaces: Alipay's Java signer leaves
	// it out of the string (Character.isWhitespace), which our usual rule keeps. One more
	// verification, only then.
	if f.hasJavaBlankValue(r) {
		alt := f.appendCanonicalJava(buf, r)
		h, d, n := c.signType.hashed(alt)
		if rsaVerify(key, h, d[:n], raw) {
			return true
		}
	}
	return false
}

func rsaVerify(pub *rsa.PublicKey, h crypto.Hash, digest, sig []byte) bool {
	return rsa.VerifyPKCS1v15(pub, h, digest, sig) == nil
}

// explainFailure finds the likeliest cause of a failed signature, for operators. It runs only on
// the failure path.
func (c *Client) explainFailure(f *form, r rule, key *rsa.PublicKey, raw, canon []byte) string {
	var why []string
	why = append(why, string(c.signType)+" ("+c.signType.algorithm()+") signature does not verify over the "+r.String()+" canonical string with the configured Alipay key")
	if len(raw) != key.Size() {
		why = append(why, "the signature is "+strconv.Itoa(len(raw))+" bytes but the key needs "+strconv.Itoa(key.Size())+": truncated, or made with another key")
	}
	other := RSA
	if c.signType == RSA {
		other = RSA2
	}
	h, d, n := other.hashed(canon)
	if rsaVerify(key, h, d[:n], raw) {
		why = append(why, "it is a valid "+string(other)+" ("+other.algorithm()+") signature, but "+string(c.signType)+" is configured: rejected")
	}
	if st, ok := f.Get("sign_type"); ok && st != string(c.signType) {
		why = append(why, "the message declares sign_type="+quoteShort(st)+" (ignored: the configuration decides)")
	}
	otherRule := ruleV2
	if r == ruleV2 {
		otherRule = ruleV1
	}
	alt := f.appendCanonical(nil, otherRule, "")
	h, d, n = c.signType.hashed(alt)
	if rsaVerify(key, h, d[:n], raw) {
		why = append(why, "it verifies under the "+otherRule.String()+" rule instead")
	}
	return strings.Join(why, "; ")
}

// algorithm names the JCA algorithm of t.
func (t SignType) algorithm() string {
	if t == RSA {
		return "SHA1withRSA"
	}
	return "SHA256withRSA"
}
