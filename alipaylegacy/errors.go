package alipaylegacy

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// The outward verification errors. A *VerifyError wraps exactly one of them; test with errors.Is.
// They are deliberately vague (like rsa.ErrVerification): the precise reason, for logs and
// evidence, is in the *VerifyError.
var (
	// ErrSignature means the sign is missing, undecodable or does not verify, or the message
	// declares another algorithm than the configured one.
	ErrSignature = errors.New("alipaylegacy: invalid signature")
	// ErrDecrypt means a `0001` notify_data or res_data is not what the merchant key decrypts, by
	// its shape (not base64, not whole blocks, too long, a key of another size), or for res_data
	// by a padding that fails. In a notification such a padding is ErrSignature
	// (ReasonSignatureInvalid), as a bad signature is.
	ErrDecrypt = errors.New("alipaylegacy: decryption failed")
	// ErrMalformed means the message does not parse, lacks a required field, or holds a value that
	// is not valid (charset, amount, time, XML).
	ErrMalformed = errors.New("alipaylegacy: malformed message")
	// ErrDuplicateKey means a name appears twice in a form, or an element twice in an XML document.
	ErrDuplicateKey = errors.New("alipaylegacy: duplicate key")
	// ErrWrongPartner means a verified message names another partner (PID) than the configured one,
	// or answers another request.
	ErrWrongPartner = errors.New("alipaylegacy: message for another partner or request")
)

// The VerifyError reasons: short, stable codes for logs and evidence. Those shared with package
// alipay have the same spelling there.
const (
	// ReasonSignatureInvalid: the signature does not verify with the configured algorithm and key
	// (also: bad base64, wrong length, an upper-case MD5).
	ReasonSignatureInvalid = "signature_invalid"
	// ReasonUnsigned: sign is absent or empty.
	ReasonUnsigned = "unsigned"
	// ReasonUnsupportedSignType: the message's sign_type (mapi) or sec_id (WAP) is not the
	// configured algorithm. The configuration alone chooses the algorithm (docs/alipay-legacy.md
	// §13.1), so this stops a downgrade from RSA to MD5.
	ReasonUnsupportedSignType = "unsupported_sign_type"
	// ReasonDecryptFailed: `0001` data is not what the merchant private key decrypts: not
	// base64, not whole 128-byte blocks, too long, or no key of 1024 bits; for a token answer
	// (from Alipay's gateway), a block whose padding fails too. In a notification (anyone can send
	// one) a failed padding is ReasonSignatureInvalid instead (the detail says it does not
	// decrypt): whether the padding held must not show outside, and a reason travels (metrics).
	ReasonDecryptFailed = "decrypt_failed"
	// ReasonMissingField: a required field (notify_id, out_trade_no, total_fee, …) is absent or
	// empty.
	ReasonMissingField = "missing_field"
	// ReasonDuplicateKey: a name appears twice (docs/alipay-legacy.md §13.6: PHP keeps the last,
	// Java joins them).
	ReasonDuplicateKey = "duplicate_key"
	// ReasonMalformed: a bad %-escape, XML that does not parse (or has a DTD), a bad time, or a
	// verified mapi notification one of whose values holds "&name=" for a field it is decided by
	// (docs/alipay-legacy.md §5.1).
	ReasonMalformed = "malformed"
	// ReasonBadCharset: a value is not valid in the configured charset.
	ReasonBadCharset = "bad_charset"
	// ReasonBadAmount: an amount does not match ^(0|[1-9]\d*)(\.\d{1,2})?$.
	ReasonBadAmount = "bad_amount"
	// ReasonWrongPartner: the partner field of a verified message is not Config.Partner.
	ReasonWrongPartner = "wrong_partner"
	// ReasonReqIDMismatch: a verified token answer carries another req_id than the request's.
	ReasonReqIDMismatch = "req_id_mismatch"
)

// VerifyError is the precise account of a rejected message, for logs, evidence and
// `paynotify verify --explain`. Its Error method stays vague (the wrapped sentinel's text) and,
// with Reason, can be shown to anyone: a `0001` block whose padding fails and a bad signature give
// the same. Detail, Canonical and OutTradeNo are for the operator only. They never contain key
// material, but under `0001` they tell what the merchant key made of the sender's data (whether
// it decrypted, the plaintext): shown to the sender they would be a decryption oracle
// (docs/alipay-legacy.md §7). Canonical contains the (unverified) message content.
type VerifyError struct {
	// Reason is one of the Reason… codes.
	Reason string
	// Detail says which check failed, in English, for operators.
	Detail string
	// Canonical is the string whose signature was checked (raw bytes in the configured charset,
	// for MD5 without the key), when the message got that far.
	Canonical []byte
	// OutTradeNo is the out_trade_no the message claims, when it could be read (UTF-8,
	// unverified: never act on it).
	OutTradeNo string

	err error
}

// Error returns the vague sentinel text, e.g. "alipaylegacy: invalid signature".
func (e *VerifyError) Error() string {
	if e.err == nil {
		return "alipaylegacy: verification failed"
	}
	return e.err.Error()
}

// Unwrap returns the sentinel: ErrSignature, ErrDecrypt, ErrMalformed, ErrDuplicateKey or
// ErrWrongPartner.
func (e *VerifyError) Unwrap() error { return e.err }

// sentinels maps each reason to the sentinel its VerifyError wraps.
var sentinels = map[string]error{
	ReasonSignatureInvalid:    ErrSignature,
	ReasonUnsigned:            ErrSignature,
	ReasonUnsupportedSignType: ErrSignature,
	ReasonDecryptFailed:       ErrDecrypt,
	ReasonMissingField:        ErrMalformed,
	ReasonDuplicateKey:        ErrDuplicateKey,
	ReasonMalformed:           ErrMalformed,
	ReasonBadCharset:          ErrMalformed,
	ReasonBadAmount:           ErrMalformed,
	ReasonWrongPartner:        ErrWrongPartner,
	ReasonReqIDMismatch:       ErrWrongPartner,
}

func verr(reason, detail string) *VerifyError {
	return &VerifyError{Reason: reason, Detail: detail, err: sentinels[reason]}
}

func missing(name string) *VerifyError {
	return verr(ReasonMissingField, name+" is missing or empty")
}

// formError turns a parse failure of the shared form parser into a *VerifyError.
func formError(err error) *VerifyError {
	var fe *alipaywire.FormError
	if errors.As(err, &fe) && fe.Duplicate {
		return verr(ReasonDuplicateKey, fe.Detail)
	}
	return verr(ReasonMalformed, strings.TrimPrefix(err.Error(), "form: "))
}

// Errors of the notify_verify check (Client.NotifyVerify).
var (
	// ErrNotConfirmed means notify_verify gave a definite answer other than exactly "true"
	// ("false", "invalid", anything else), or the notify_id could not be sent: the notification is
	// not genuine, or its notify_id has expired. Do not apply it.
	ErrNotConfirmed = errors.New("alipaylegacy: notify_id not confirmed by notify_verify")
	// ErrNotifyVerifyUnavailable means notify_verify gave no usable answer (network error, timeout,
	// an HTTP status other than 200): answer AckFail so that Alipay sends the notification again.
	ErrNotifyVerifyUnavailable = errors.New("alipaylegacy: notify_verify unavailable")
)

// NotifyVerifyError is a failed notify_verify check. It matches ErrNotConfirmed or
// ErrNotifyVerifyUnavailable under errors.Is, and its cause as well (context.DeadlineExceeded for a
// timeout).
type NotifyVerifyError struct {
	// NotifyID is the notify_id that was asked about.
	NotifyID string
	// Status is the HTTP status of the answer, 0 when there was none.
	Status int
	// Answer is the answer body (at most 64 bytes, made valid UTF-8) of a 200 answer.
	Answer string
	// Err is the cause of an unavailable check: a transport or context error, or nil.
	Err error

	sentinel error  // ErrNotConfirmed or ErrNotifyVerifyUnavailable
	unsent   string // why the notify_id was not sent at all
}

// Error says what happened, e.g. `alipaylegacy: notify_id not confirmed by notify_verify: answer
// "false"`.
func (e *NotifyVerifyError) Error() string {
	s := e.sentinel.Error()
	switch {
	case e.unsent != "":
		return s + ": " + e.unsent
	case e.Err != nil:
		return s + ": " + e.Err.Error()
	case e.Status != 200:
		return s + ": HTTP status " + strconv.Itoa(e.Status)
	}
	return s + ": answer " + strconv.Quote(e.Answer)
}

// Unwrap returns the sentinel and, when there is one, the cause.
func (e *NotifyVerifyError) Unwrap() []error {
	if e.Err != nil {
		return []error{e.sentinel, e.Err}
	}
	return []error{e.sentinel}
}

// WAPError is a res_error answer of the WAP gateway to alipay.wap.trade.create.direct
// (docs/alipay-legacy.md §11.2, §12), e.g. code "0005", "partner illegal". Such answers carry no
// sign: the error cannot be authenticated, so treat it as "no token", never as a statement about
// the order.
type WAPError struct {
	// Code is the error code, e.g. "0005".
	Code string
	// SubCode is the sub_code, often equal to Code.
	SubCode string
	// Msg is the short English message, e.g. "partner illegal".
	Msg string
	// Detail is the longer message, often Chinese.
	Detail string
}

// Error returns "alipaylegacy: WAP gateway error <code>: <msg>: <detail>".
func (e *WAPError) Error() string {
	s := "alipaylegacy: WAP gateway error " + e.Code
	if e.SubCode != "" && e.SubCode != e.Code {
		s += "/" + e.SubCode
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Answers to Alipay's notifications (docs/alipay-legacy.md §9.5): write exactly these bytes
// ("success", "fail"), HTTP 200, no newline, no HTML, no BOM. AckSuccess only once the effect is
// durably committed (or for a verified notification you deliberately ignore); anything else makes
// Alipay send it again.
const (
	AckSuccess = alipaywire.AckSuccess
	AckFail    = alipaywire.AckFail
)

// WriteAckSuccess answers a notification as handled: HTTP 200 and exactly AckSuccess. Call it only
// once the notification's effect is durably committed (and NotifyVerify returned nil).
func WriteAckSuccess(w http.ResponseWriter) { alipaywire.WriteAck(w, true) }

// WriteAckFailure answers a notification as not handled, so that Alipay sends it again: HTTP 200
// and exactly AckFail.
func WriteAckFailure(w http.ResponseWriter) { alipaywire.WriteAck(w, false) }

// short makes unverified bytes safe and short for an error detail.
func short(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(strings.ToValidUTF8(s, "\uFFFD"))
}

// answerText makes an answer body safe to keep: at most 64 bytes, valid UTF-8.
func answerText(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
