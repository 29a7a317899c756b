// Package provider adapts the protocol packages to the domain: it turns verified Alipay and
// WeChat Pay messages and API answers into paynotify Facts, and implements paynotify.Provider for
// each app (Alipay, Wechat). It decides nothing: the Processor does, on the facts it returns.
//
// The adapters classify provider failures once, for every caller: a signed, final refusal is
// paynotify.EPROVIDER; anything whose outcome is unknown (unreachable, unsigned, unverifiable,
// a system error) is paynotify.EPROVIDERUNAVAILABLE. A Pay refused because the trade is paid
// already also matches paynotify.ErrPaidAtProvider.
package provider

import (
	"bytes"
	"encoding/json"

	"github.com/paynotify/paynotify"
)

// marshalPay encodes payment parameters without HTML-escaping (a form stays readable as "<form"):
// they are data for the merchant, never embedded in our own HTML.
func marshalPay(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// paidAtProvider is err (a *paynotify.Error) that also matches paynotify.ErrPaidAtProvider.
func paidAtProvider(err error) error { return &paidRefusal{err: err} }

// paidRefusal is a Pay refusal because the trade is paid already (paidAtProvider).
type paidRefusal struct{ err error }

func (e *paidRefusal) Error() string   { return e.err.Error() }
func (e *paidRefusal) Unwrap() []error { return []error{e.err, paynotify.ErrPaidAtProvider} }
