package wechatpay

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	wire "github.com/paynotify/paynotify/internal/wechatpaywire"
)

// Event types of APIv3 payment and refund notifications.
const (
	EventTransactionSuccess = "TRANSACTION.SUCCESS"
	EventRefundSuccess      = "REFUND.SUCCESS"
	EventRefundAbnormal     = "REFUND.ABNORMAL"
	EventRefundClosed       = "REFUND.CLOSED"
)

// Notification is a verified and decrypted APIv3 notification.
type Notification struct {
	// ID is the notification id; not documented to stay the same across retries.
	ID string
	// EventType is TRANSACTION.SUCCESS, REFUND.SUCCESS, REFUND.ABNORMAL, REFUND.CLOSED, or
	// another product's event.
	EventType string
	// ResourceType is "encrypt-resource".
	ResourceType string
	// Summary is human text such as 支付成功.
	Summary string
	// CreateTime is when WeChat Pay created the notification (zero when absent).
	CreateTime time.Time
	// OriginalType is the resource's original_type: "transaction", "refund", …
	OriginalType string
	// Transaction is set for TRANSACTION.* events.
	Transaction *Transaction
	// Refund is set for REFUND.* events. WeChat Pay reports each refund's own amount
	// (Amount.Refund), not a running total: sum the distinct out_refund_no that succeeded.
	Refund *Refund
	// Plaintext is the decrypted resource JSON, verbatim.
	Plaintext []byte
}

// Transaction is a payment: the decrypted resource of TRANSACTION.SUCCESS and the answer of the
// query APIs. Amounts are integer fen.
type Transaction struct {
	AppID          string
	MchID          string
	OutTradeNo     string
	TransactionID  string
	TradeType      string // JSAPI, NATIVE, APP, MICROPAY, MWEB, FACEPAY
	TradeState     string // SUCCESS, REFUND, NOTPAY, CLOSED, REVOKED, USERPAYING, PAYERROR
	TradeStateDesc string
	BankType       string
	Attach         string
	SuccessTime    time.Time // zero unless paid
	Payer          struct{ OpenID string }
	Amount         struct {
		Total         int64 // order total in fen
		PayerTotal    int64 // what the payer paid, in fen (less than Total with coupons)
		Currency      string
		PayerCurrency string
	}
}

// Refund is a refund: the decrypted resource of REFUND.* notifications and the answer of the
// refund APIs. Amounts are integer fen; Amount.Refund is this refund's own amount.
type Refund struct {
	MchID         string
	OutTradeNo    string
	TransactionID string
	OutRefundNo   string
	RefundID      string
	// RefundStatus is SUCCESS, CLOSED, ABNORMAL or (API only) PROCESSING.
	RefundStatus string
	SuccessTime  time.Time // zero unless SUCCESS
	CreateTime   time.Time // API answers only
	Channel      string    // API answers only: ORIGINAL, BALANCE, OTHER_BALANCE, OTHER_BANKCARD
	Amount       struct {
		Total       int64 // original order total
		Refund      int64 // this refund
		PayerTotal  int64
		PayerRefund int64
		Currency    string
	}
	UserReceivedAccount string
}

// wire shapes

type envelope struct {
	ID           string    `json:"id"`
	CreateTime   string    `json:"create_time"`
	ResourceType string    `json:"resource_type"`
	EventType    string    `json:"event_type"`
	Summary      string    `json:"summary"`
	Resource     *Resource `json:"resource"`
}

type wireTransaction struct {
	AppID          string `json:"appid"`
	MchID          string `json:"mchid"`
	OutTradeNo     string `json:"out_trade_no"`
	TransactionID  string `json:"transaction_id"`
	TradeType      string `json:"trade_type"`
	TradeState     string `json:"trade_state"`
	TradeStateDesc string `json:"trade_state_desc"`
	BankType       string `json:"bank_type"`
	Attach         string `json:"attach"`
	SuccessTime    string `json:"success_time"`
	Payer          struct {
		OpenID string `json:"openid"`
	} `json:"payer"`
	Amount struct {
		Total         int64  `json:"total"`
		PayerTotal    int64  `json:"payer_total"`
		Currency      string `json:"currency"`
		PayerCurrency string `json:"payer_currency"`
	} `json:"amount"`
}

func (w *wireTransaction) typed() (*Transaction, error) {
	t := &Transaction{AppID: w.AppID, MchID: w.MchID, OutTradeNo: w.OutTradeNo, TransactionID: w.TransactionID,
		TradeType: w.TradeType, TradeState: w.TradeState, TradeStateDesc: w.TradeStateDesc, BankType: w.BankType, Attach: w.Attach}
	t.Payer.OpenID = w.Payer.OpenID
	t.Amount.Total, t.Amount.PayerTotal = w.Amount.Total, w.Amount.PayerTotal
	t.Amount.Currency, t.Amount.PayerCurrency = w.Amount.Currency, w.Amount.PayerCurrency
	var err error
	if t.SuccessTime, err = parseTime("success_time", w.SuccessTime); err != nil {
		return nil, err
	}
	return t, nil
}

type wireRefund struct {
	MchID         string `json:"mchid"`
	OutTradeNo    string `json:"out_trade_no"`
	TransactionID string `json:"transaction_id"`
	OutRefundNo   string `json:"out_refund_no"`
	RefundID      string `json:"refund_id"`
	RefundStatus  string `json:"refund_status"` // notifications
	Status        string `json:"status"`        // API answers
	SuccessTime   string `json:"success_time"`
	CreateTime    string `json:"create_time"`
	Channel       string `json:"channel"`
	Amount        struct {
		Total       int64  `json:"total"`
		Refund      int64  `json:"refund"`
		PayerTotal  int64  `json:"payer_total"`
		PayerRefund int64  `json:"payer_refund"`
		Currency    string `json:"currency"`
	} `json:"amount"`
	UserReceivedAccount string `json:"user_received_account"`
}

func (w *wireRefund) typed() (*Refund, error) {
	r := &Refund{MchID: w.MchID, OutTradeNo: w.OutTradeNo, TransactionID: w.TransactionID, OutRefundNo: w.OutRefundNo,
		RefundID: w.RefundID, RefundStatus: w.RefundStatus, Channel: w.Channel, UserReceivedAccount: w.UserReceivedAccount}
	if r.RefundStatus == "" {
		r.RefundStatus = w.Status
	}
	r.Amount.Total, r.Amount.Refund, r.Amount.PayerTotal, r.Amount.PayerRefund = w.Amount.Total, w.Amount.Refund, w.Amount.PayerTotal, w.Amount.PayerRefund
	r.Amount.Currency = w.Amount.Currency
	var err error
	if r.SuccessTime, err = parseTime("success_time", w.SuccessTime); err != nil {
		return nil, err
	}
	if r.CreateTime, err = parseTime("create_time", w.CreateTime); err != nil {
		return nil, err
	}
	return r, nil
}

func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		// The value is not quoted: it comes from a decrypted resource (jsonErr below).
		return time.Time{}, fmt.Errorf("%s (%d bytes) is not RFC 3339", field, len(s))
	}
	return t, nil
}

// signedHeaders are the Wechatpay-* headers of a signed message.
type signedHeaders struct {
	timestamp, nonce, signature, serial string
}

// headerValues returns the values of name; it also finds keys that were not canonicalised (a
// header map built by hand), which http.Header.Values misses.
func headerValues(h http.Header, name string) []string {
	if v := h.Values(name); len(v) > 0 {
		return v
	}
	var out []string
	for k, v := range h {
		if strings.EqualFold(k, name) {
			out = append(out, v...)
		}
	}
	return out
}

func headerValue(h http.Header, name string) (string, error) {
	v := headerValues(h, name)
	switch len(v) {
	case 0:
		return "", fmt.Errorf("missing %s", name)
	case 1:
		s := strings.TrimSpace(v[0])
		if s == "" {
			return "", fmt.Errorf("empty %s", name)
		}
		return s, nil
	default:
		return "", fmt.Errorf("repeated %s", name)
	}
}

func readSignedHeaders(h http.Header) (signedHeaders, *VerifyError) {
	var s signedHeaders
	var err error
	if s.timestamp, err = headerValue(h, wire.HeaderTimestamp); err != nil {
		return s, verifyErr(ErrMalformed, CheckHeaders, "%v", err)
	}
	if s.nonce, err = headerValue(h, wire.HeaderNonce); err != nil {
		return s, verifyErr(ErrMalformed, CheckHeaders, "%v", err)
	}
	if s.signature, err = headerValue(h, wire.HeaderSignature); err != nil {
		return s, verifyErr(ErrMalformed, CheckHeaders, "%v", err)
	}
	if s.serial, err = headerValue(h, wire.HeaderSerial); err != nil {
		return s, verifyErr(ErrMalformed, CheckHeaders, "%v", err)
	}
	if v := headerValues(h, wire.HeaderSignatureType); len(v) > 1 || (len(v) == 1 && strings.TrimSpace(v[0]) != wire.SignatureType) {
		return s, verifyErr(ErrMalformed, CheckHeaders, "unsupported %s %q", wire.HeaderSignatureType, strings.Join(v, ","))
	}
	return s, nil
}

// verifySigned runs the checks shared by notifications and responses: headers, probe,
// timestamp window, serial, signature over "timestamp\nnonce\nbody\n".
func (c *Client) verifySigned(h http.Header, body []byte) *VerifyError {
	return c.verifyAt(c.keys.Load(), h, body, c.now())
}

func (c *Client) verifyWith(ks *keySet, h http.Header, body []byte) *VerifyError {
	return c.verifyAt(ks, h, body, c.now())
}

// verifyAt runs the checks with the timestamp window centred on at.
func (c *Client) verifyAt(ks *keySet, h http.Header, body []byte, at time.Time) *VerifyError {
	s, verr := readSignedHeaders(h)
	if verr != nil {
		return verr
	}
	fail := func(sentinel error, check, format string, args ...any) *VerifyError {
		e := verifyErr(sentinel, check, format, args...)
		e.Message = wire.NotificationMessage(s.timestamp, s.nonce, body)
		return e
	}
	if strings.HasPrefix(s.signature, wire.ProbePrefix) {
		return fail(ErrProbe, CheckProbe, "signature starts with %s", wire.ProbePrefix)
	}
	ts, ok := parseUnix(s.timestamp)
	if !ok {
		return fail(ErrMalformed, CheckTimestamp, "%s %q is not Unix seconds", wire.HeaderTimestamp, s.timestamp)
	}
	now := at.Unix()
	skew := now - ts
	if skew < 0 {
		skew = -skew
	}
	if skew >= int64(MaxSkew/time.Second) {
		return fail(ErrTimestampSkew, CheckTimestamp, "%s %d is %ds away from the time it was checked at (%d); the window is ±%ds", wire.HeaderTimestamp, ts, now-ts, now, int64(MaxSkew/time.Second))
	}
	pub := ks.lookup(s.serial)
	if pub == nil {
		return fail(ErrUnknownSerial, CheckSerial, "no platform key for %s %q", wire.HeaderSerial, s.serial)
	}
	// A platform certificate vouches for its key only while it is valid: one WeChat Pay has
	// replaced stays in platform_cert_files, or in the keys when a refresh fails, after its end.
	// at is the message's time (the receipt's, when evidence is processed again).
	if cert := ks.cert(s.serial); cert != nil && (at.Before(cert.NotBefore) || !at.Before(cert.NotAfter)) {
		return fail(ErrUnknownSerial, CheckSerial, "the platform certificate %s is valid from %s until %s, not at %s", CertificateSerial(cert),
			cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	d := notificationDigest(s.timestamp, s.nonce, body)
	if err := verifyDigest(pub, d[:], s.signature); err != nil {
		return fail(ErrSignature, CheckSignature, "SHA256withRSA signature does not verify with the key of %s", s.serial)
	}
	return nil
}

// parseUnix parses a decimal Unix time in seconds: digits only, at most 12 of them.
func parseUnix(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 12 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// VerifyResponse verifies a signed API answer you hold (for example one kept with
// WithRawResponse): h are its headers and body its raw bytes. It runs every check of
// VerifyNotification up to the signature and returns nil or a *VerifyError. The API methods
// already verify their answers.
func (c *Client) VerifyResponse(h http.Header, body []byte) error {
	if verr := c.verifySigned(h, body); verr != nil {
		return verr
	}
	return nil
}

// MaxNotificationBytes is the largest body VerifyNotificationRequest reads: 1 MiB, far above any
// notification WeChat Pay sends (a few KiB).
const MaxNotificationBytes = 1 << 20

// VerifyNotification verifies and decrypts an APIv3 notification. header are the request headers
// and body the raw body bytes exactly as received (never re-serialised JSON). In order: the four
// Wechatpay-* headers must be present; a WECHATPAY/SIGNTEST/ probe is rejected; the timestamp
// must be less than 5 minutes from Now; Wechatpay-Serial must name the configured public key or
// a known platform certificate; the signature must verify. Only then is the envelope parsed, the
// resource decrypted with the APIv3 key, and the plaintext decoded: a Transaction for
// TRANSACTION.* events, a Refund for REFUND.* events (other events carry only Plaintext).
//
// Every failure is a *VerifyError wrapping ErrMalformed, ErrProbe, ErrTimestampSkew,
// ErrUnknownSerial, ErrSignature or ErrDecrypt, with the out_trade_no the message claims in
// OutTradeNo when its resource decrypts. VerifyNotification does no network I/O: keep platform
// certificates fresh with RunCertificateRefresher (or use VerifyNotificationRequest).
//
// When Config.MchID is set, a notification whose transaction or refund names another mchid is
// returned together with a *VerifyError wrapping ErrMchID (reason ReasonMchIDMismatch, check
// CheckMchID): signed by WeChat Pay, but treat it as not yours.
func (c *Client) VerifyNotification(header http.Header, body []byte) (*Notification, error) {
	if verr := c.verifySigned(header, body); verr != nil {
		verr.OutTradeNo = c.claimedOutTradeNo(body)
		return nil, verr
	}
	return c.checkMchID(c.decodeNotification(body))
}

// VerifyNotificationRequest is VerifyNotification for a notification as net/http hands it over:
// it reads r's body once, raw, at most MaxNotificationBytes of it (a larger body is a
// *VerifyError wrapping ErrMalformed, and nothing is verified), and verifies those bytes with
// r's headers. Unlike VerifyNotification, in certificate mode an unknown certificate serial (not
// a PUB_KEY_ID_…) triggers one RefreshCertificates under r's context and one retry, as WeChat Pay
// prescribes for a rotation that the periodic refresh has not seen yet; such downloads happen at
// most once per MissRefreshInterval and need the merchant key. A body that cannot be read is an
// error that is not a *VerifyError.
func (c *Client) VerifyNotificationRequest(r *http.Request) (*Notification, error) {
	body, err := readLimited(r.Body, MaxNotificationBytes)
	if err != nil {
		return nil, err
	}
	return c.verifyNotificationContext(r.Context(), r.Header, body)
}

// readLimited reads body whole, refusing more than limit bytes without reading further.
func readLimited(body io.Reader, limit int64) ([]byte, error) {
	if body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("wechatpay: read notification body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, verifyErr(ErrMalformed, CheckHeaders, "body larger than %d bytes (MaxNotificationBytes)", limit)
	}
	return b, nil
}

// WithClock returns a Client that shares c's configuration, keys and platform certificates (a
// refresh of either is seen by both) but reads the time from now: its timestamp window is
// centred on now(). It is for verifying a kept notification again, later, exactly as it would
// have been when it was received.
func (c *Client) WithClock(now func() time.Time) *Client {
	d := *c
	d.now = now
	return &d
}

// checkMchID passes a decoded notification on, with ErrMchID when its transaction or refund
// names another merchant than Config.MchID.
func (c *Client) checkMchID(n *Notification, err error) (*Notification, error) {
	if err != nil || c.cfg.MchID == "" {
		return n, err
	}
	got := ""
	switch {
	case n.Transaction != nil:
		got = n.Transaction.MchID
	case n.Refund != nil:
		got = n.Refund.MchID
	default:
		return n, nil // another product's event: no mchid to check
	}
	if got != c.cfg.MchID {
		return n, verifyErr(ErrMchID, CheckMchID, "mchid %q is not the configured %q", got, c.cfg.MchID)
	}
	return n, nil
}

// claimedOutTradeNo returns the out_trade_no an unverified notification claims, by decrypting its
// resource with the APIv3 key without checking the signature, or "" when it cannot. It exists so
// that rejected notifications can be found by order in the evidence: never act on its result.
// A body over maxClaimBody is not decrypted: WeChat Pay's are 1–2 KiB, and anyone can post a
// large one to an open notify URL, each costing its decryption (a reviewer helper measured about
// 300 µs for a forged 48 KiB probe, ten RSA verifications).
func (c *Client) claimedOutTradeNo(body []byte) string {
	if len(body) > maxClaimBody {
		return ""
	}
	n, err := c.decodeNotification(body)
	switch {
	case err != nil:
		return ""
	case n.Transaction != nil:
		return claimed(n.Transaction.OutTradeNo)
	case n.Refund != nil:
		return claimed(n.Refund.OutTradeNo)
	}
	return ""
}

// maxClaimBody bounds the bodies claimedOutTradeNo decrypts.
const maxClaimBody = 8 << 10

func (c *Client) decodeNotification(body []byte) (*Notification, error) {
	var env envelope
	if err := decodeEnvelope(body, &env); err != nil {
		return nil, verifyErr(ErrMalformed, CheckEnvelope, "envelope: %v", jsonErr(err))
	}
	if env.Resource == nil {
		return nil, verifyErr(ErrMalformed, CheckEnvelope, "envelope has no resource")
	}
	if env.EventType == "" {
		return nil, verifyErr(ErrMalformed, CheckEnvelope, "envelope has no event_type")
	}
	n := &Notification{ID: env.ID, EventType: env.EventType, ResourceType: env.ResourceType, Summary: env.Summary, OriginalType: env.Resource.OriginalType}
	var err error
	if n.CreateTime, err = parseTime("create_time", env.CreateTime); err != nil {
		return nil, verifyErr(ErrMalformed, CheckEnvelope, "%v", err)
	}
	r := env.Resource
	if r.Algorithm != algorithm {
		return nil, verifyErr(ErrDecrypt, CheckDecrypt, "resource algorithm %q is not %s", r.Algorithm, algorithm)
	}
	pt, err := openGCM(c.aead, r.Nonce, r.AssociatedData, r.Ciphertext)
	if err != nil {
		return nil, verifyErr(ErrDecrypt, CheckDecrypt, "%v", strings.TrimPrefix(err.Error(), ErrDecrypt.Error()+": "))
	}
	n.Plaintext = pt
	switch {
	case strings.HasPrefix(n.EventType, "TRANSACTION."):
		var w wireTransaction
		if err := decodeTransaction(pt, &w); err != nil {
			return nil, verifyErr(ErrMalformed, CheckDecode, "transaction: %v", jsonErr(err))
		}
		if n.Transaction, err = w.typed(); err != nil {
			return nil, verifyErr(ErrMalformed, CheckDecode, "transaction: %v", err)
		}
	case strings.HasPrefix(n.EventType, "REFUND."):
		var w wireRefund
		if err := decodeRefund(pt, &w); err != nil {
			return nil, verifyErr(ErrMalformed, CheckDecode, "refund: %v", jsonErr(err))
		}
		if n.Refund, err = w.typed(); err != nil {
			return nil, verifyErr(ErrMalformed, CheckDecode, "refund: %v", err)
		}
	default:
		if !json.Valid(pt) {
			return nil, verifyErr(ErrMalformed, CheckDecode, "plaintext is not JSON")
		}
	}
	return n, nil
}

// jsonErr shortens a JSON error to its kind, so no decrypted value ends up in a log.
func jsonErr(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return fmt.Sprintf("syntax error at offset %d", e.Offset)
	case *json.UnmarshalTypeError:
		return fmt.Sprintf("field %s: want %s", e.Field, e.Type)
	default:
		if err == errJSON {
			return "invalid JSON"
		}
		return err.Error()
	}
}

// WriteAckSuccess answers a notification as handled: 204 No Content, no body.
func WriteAckSuccess(w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) }

// WriteAckFailure answers a notification as not handled, so that WeChat Pay retries: status (a
// 4xx or 5xx; anything else becomes 500, since WeChat Pay reads a 2xx as success whatever the
// body) with {"code":"FAIL","message":message}.
func WriteAckFailure(w http.ResponseWriter, status int, message string) {
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(AckFailureBody(message))
}

// AckFailureBody is the body WriteAckFailure writes: {"code":"FAIL","message":message}.
func AckFailureBody(message string) []byte {
	b, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{"FAIL", message})
	return b
}
