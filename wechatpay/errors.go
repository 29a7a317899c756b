package wechatpay

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Sentinel errors. A *VerifyError wraps exactly one of them; test with errors.Is.
var (
	// ErrSignature means a signature did not verify (or could not be decoded).
	ErrSignature = errors.New("wechatpay: invalid signature")
	// ErrTimestampSkew means Wechatpay-Timestamp is 5 minutes or more away from now.
	ErrTimestampSkew = errors.New("wechatpay: timestamp outside the allowed window")
	// ErrProbe means the signature is a WECHATPAY/SIGNTEST/ probe that WeChat Pay sends on
	// purpose to check that merchants verify signatures. Reject it quietly; the real message is
	// redelivered with a valid signature.
	ErrProbe = errors.New("wechatpay: signature probe")
	// ErrUnknownSerial means Wechatpay-Serial names neither the configured WeChat Pay public key
	// nor a known platform certificate.
	ErrUnknownSerial = errors.New("wechatpay: unknown platform key serial")
	// ErrDecrypt means the AEAD_AES_256_GCM resource did not decrypt (wrong APIv3 key, tampered
	// ciphertext, wrong nonce or associated data).
	ErrDecrypt = errors.New("wechatpay: decryption failed")
	// ErrMalformed means a required header or field is missing or does not parse.
	ErrMalformed = errors.New("wechatpay: malformed message")
	// ErrMchID means a notification that verified and decrypted is about a payment or refund of
	// another merchant than Config.MchID: signed by WeChat Pay, but not yours.
	ErrMchID = errors.New("wechatpay: notification for another merchant")
)

// Reasons of a VerifyError: the stable evidence reasons of docs/api.md, "Evidence".
const (
	ReasonSignatureInvalid = "signature_invalid"
	ReasonTimestampSkew    = "timestamp_skew"
	ReasonProbe            = "probe"
	ReasonUnknownSerial    = "unknown_serial"
	ReasonDecryptFailed    = "decrypt_failed"
	ReasonMalformed        = "malformed"
	ReasonMchIDMismatch    = "mchid_mismatch"
)

// Names of the checks a notification goes through, in order; VerifyError.Check names the one
// that failed.
const (
	CheckHeaders   = "headers"
	CheckProbe     = "probe"
	CheckTimestamp = "timestamp"
	CheckSerial    = "serial"
	CheckSignature = "signature"
	CheckEnvelope  = "envelope"
	CheckDecrypt   = "decrypt"
	CheckDecode    = "decode"
	CheckMchID     = "mchid"
)

// NotificationChecks lists the checks of VerifyNotification in the order they run.
var NotificationChecks = []string{CheckHeaders, CheckProbe, CheckTimestamp, CheckSerial, CheckSignature, CheckEnvelope, CheckDecrypt, CheckDecode, CheckMchID}

// VerifyError is a rejected notification, response or APIv2 message. Its Error text is the vague
// sentinel text; Reason, Check and Detail are for logs and evidence, Message is the signed
// message that was checked (nil when the check failed before it could be built), and OutTradeNo
// the order the message claims. None of them ever contains a key.
type VerifyError struct {
	// Reason is one of "signature_invalid", "timestamp_skew", "probe", "unknown_serial",
	// "decrypt_failed", "malformed", "mchid_mismatch".
	Reason string
	// Check is the name of the failed check (CheckHeaders … CheckDecode).
	Check string
	// Detail says what exactly was wrong, for logs.
	Detail string
	// Message is the signed message ("timestamp\nnonce\nbody\n" for APIv3).
	Message []byte
	// OutTradeNo is the out_trade_no a rejected notification claims, read by decrypting its
	// resource without trusting it, "" when it does not decrypt: for finding the evidence by
	// order, never for acting on.
	OutTradeNo string

	err error
}

// Error returns the text of the wrapped sentinel.
func (e *VerifyError) Error() string {
	if e.err == nil {
		return "wechatpay: verification failed"
	}
	return e.err.Error()
}

// Unwrap returns the sentinel.
func (e *VerifyError) Unwrap() error { return e.err }

// verifyErr builds a VerifyError. A string argument longer than maxQuoted bytes (a header value
// or a field the sender chose: anyone can send a notification) is cut to maxQuoted bytes and
// "…", so that the detail, logged and kept as evidence, stays small whatever was sent.
func verifyErr(sentinel error, check, format string, args ...any) *VerifyError {
	for i, a := range args {
		if s, ok := a.(string); ok && len(s) > maxQuoted {
			j := maxQuoted
			for j > maxQuoted-utf8.UTFMax && !utf8.RuneStart(s[j]) {
				j--
			}
			args[i] = s[:j] + "…"
		}
	}
	return &VerifyError{Reason: reasonOf(sentinel), Check: check, Detail: fmt.Sprintf(format, args...), err: sentinel}
}

// maxQuoted bounds a string quoted in a VerifyError's detail (verifyErr).
const maxQuoted = 128

func reasonOf(sentinel error) string {
	switch sentinel {
	case ErrSignature:
		return ReasonSignatureInvalid
	case ErrTimestampSkew:
		return ReasonTimestampSkew
	case ErrProbe:
		return ReasonProbe
	case ErrUnknownSerial:
		return ReasonUnknownSerial
	case ErrDecrypt:
		return ReasonDecryptFailed
	case ErrMchID:
		return ReasonMchIDMismatch
	default:
		return ReasonMalformed
	}
}

// Error is an error answer of the APIv3 API: a non-2xx status with WeChat Pay's
// {"code","message","detail"} body.
type Error struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is WeChat Pay's error code, e.g. "ORDER_NOT_EXIST", "SIGN_ERROR", "PARAM_ERROR";
	// empty when the body was not the documented JSON.
	Code string
	// Message is WeChat Pay's human-readable message.
	Message string
	// Detail is the optional "detail" object, verbatim.
	Detail json.RawMessage
	// Signed reports whether the answer carried a valid WeChat Pay signature. An unsigned error
	// (a 401, a proxy, anyone on the path) proves nothing about the request's outcome.
	Signed bool
}

// Error returns "wechatpay: HTTP <status> <code>: <message>".
func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("wechatpay: HTTP %d", e.StatusCode)
	}
	return fmt.Sprintf("wechatpay: HTTP %d %s: %s", e.StatusCode, e.Code, e.Message)
}
