// Package paynotify is the domain of the paynotify server: orders and their state machine, the
// verified provider facts that move them, the evidence kept for every callback, the event log,
// the store interfaces, and the Processor that ties them together.
//
// The protocol packages (alipay, wechatpay) turn provider bytes into verified facts; the stores
// (sqlite, postgres) keep orders, events and evidence; httpd serves it all. This package imports
// only the standard library.
package paynotify

import (
	"errors"
	"fmt"
)

// Application error codes: the wire codes of the merchant API (docs/api.md, "Errors").
const (
	EINVALID             = "invalid"
	ENOTFOUND            = "not_found"
	ECONFLICT            = "conflict"
	EUNAUTHORIZED        = "unauthorized"
	EFORBIDDEN           = "forbidden"
	EPROVIDERUNAVAILABLE = "provider_unavailable"
	EPROVIDER            = "provider_error"
	EINTERNAL            = "internal"
)

// Error is an application error meant for people: its Code maps to an HTTP status in one place
// (httpd), its Message is safe to show. ProviderCode carries the provider's own error code, if any.
type Error struct {
	Code         string
	Message      string
	ProviderCode string
}

func (e *Error) Error() string {
	return fmt.Sprintf("paynotify error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the *Error in err's chain, EINTERNAL for any other non-nil
// error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// ErrorMessage returns the message of the *Error in err's chain, or "Internal error." for any
// other error: internal details never reach a client.
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	default:
		return "Internal error."
	}
}
