package alipay

import (
	"errors"
	"net/http"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// The outward verification errors. They are deliberately vague (like rsa.ErrVerification): the
// precise reason, for logs and evidence, is in the *VerifyError that wraps them.
var (
	// ErrSignature means the signature is missing, undecodable, or does not verify.
	ErrSignature = errors.New("alipay: invalid signature")
	// ErrMalformed means the message could not be parsed (bad %-escape, bad amount or time, bad
	// charset, bad JSON).
	ErrMalformed = errors.New("alipay: malformed message")
	// ErrDuplicateKey means a key appears twice in a notification form or a response object.
	ErrDuplicateKey = errors.New("alipay: duplicate key")
	// ErrAppID means a notification whose signature verified names another app_id than
	// Config.AppID (or none): signed by Alipay, but not for this application.
	ErrAppID = errors.New("alipay: notification for another app")
	// ErrInvalidRequest is wrapped by the errors of a request refused before it was signed or
	// sent: a value outside Alipay's bounds (total_amount over 100,000,000.00 yuan), a required
	// field missing. Nothing reached Alipay; sending it again unchanged cannot succeed.
	ErrInvalidRequest = errors.New("alipay: invalid request")
)

// invalidRequestError is a request refused locally; it wraps ErrInvalidRequest.
type invalidRequestError struct{ msg string }

func (e *invalidRequestError) Error() string { return e.msg }
func (e *invalidRequestError) Unwrap() error { return ErrInvalidRequest }

func invalidRequest(msg string) error { return &invalidRequestError{msg} }

// The VerifyError reasons, the stable evidence reasons of docs/api.md, "Evidence".
const (
	ReasonSignatureInvalid = "signature_invalid"
	ReasonMalformed        = "malformed"
	ReasonDuplicateKey     = "duplicate_key"
	ReasonUnknownSerial    = "unknown_serial"
	ReasonAppIDMismatch    = "app_id_mismatch"
)

// VerifyError is the precise account of a failed verification, for logs, evidence and
// `paynotify verify --explain`. Its Error method stays vague (it returns the wrapped sentinel's
// text) so that it can be shown to anyone; Detail, Message and OutTradeNo never contain key
// material, but Message does contain the (unverified) message content.
type VerifyError struct {
	// Reason is ReasonSignatureInvalid, ReasonMalformed, ReasonDuplicateKey, ReasonUnknownSerial
	// or ReasonAppIDMismatch.
	Reason string
	// Detail says which check failed, in English, for operators.
	Detail string
	// Message is the string whose signature was checked (the canonical string, raw bytes in the
	// message's charset), when the message got that far.
	Message []byte
	// OutTradeNo is the out_trade_no the message claims, when it could be parsed (UTF-8, unverified).
	OutTradeNo string

	err error
}

// Error returns the vague sentinel text, e.g. "alipay: invalid signature".
func (e *VerifyError) Error() string { return e.err.Error() }

// Unwrap returns ErrSignature, ErrMalformed, ErrDuplicateKey or ErrAppID.
func (e *VerifyError) Unwrap() error { return e.err }

func malformed(detail string) *VerifyError {
	return &VerifyError{Reason: ReasonMalformed, Detail: detail, err: ErrMalformed}
}

func sigInvalid(detail string) *VerifyError {
	return &VerifyError{Reason: ReasonSignatureInvalid, Detail: detail, err: ErrSignature}
}

// Error is a business failure reported by the Alipay gateway: a response whose code is not 10000.
type Error struct {
	// Code is the gateway code, e.g. "40004" (Business Failed) or "20000" (Service Currently
	// Unavailable: the result is unknown, query again).
	Code string
	// Msg is the gateway message for Code.
	Msg string
	// SubCode is the precise code, e.g. "ACQ.TRADE_NOT_EXIST".
	SubCode string
	// SubMsg is the precise message (often Chinese).
	SubMsg string
	// Signed reports whether the response carrying the error was signed and verified. An unsigned
	// error must never cause a state change: treat the outcome as unknown and query later.
	Signed bool
	// OutTradeNo is the error node's out_trade_no, when it carries one (business failures often
	// do): the signature covers the node, not the request, so an error about another trade is
	// not about this one.
	OutTradeNo string
}

// Error returns "alipay: <code> <msg>: <sub_code> <sub_msg>".
func (e *Error) Error() string {
	s := "alipay: " + e.Code + " " + e.Msg
	if e.SubCode != "" || e.SubMsg != "" {
		s += ": " + e.SubCode + " " + e.SubMsg
	}
	if !e.Signed {
		s += " (unsigned)"
	}
	return s
}

// Ack answers to Alipay's notifications: write exactly these bytes ("success", "fail"), no newline,
// after the effect of the notification is durably committed (AckSuccessBody) or when it could not
// be (AckFailureBody).
const (
	AckSuccessBody = alipaywire.AckSuccess
	AckFailureBody = alipaywire.AckFail
)

// WriteAckSuccess answers a notification as handled: HTTP 200 and exactly AckSuccessBody. Call it only
// once the notification's effect is durably committed.
func WriteAckSuccess(w http.ResponseWriter) { alipaywire.WriteAck(w, true) }

// WriteAckFailure answers a notification as not handled, so that Alipay sends it again: HTTP 200
// and exactly AckFailureBody.
func WriteAckFailure(w http.ResponseWriter) { alipaywire.WriteAck(w, false) }
