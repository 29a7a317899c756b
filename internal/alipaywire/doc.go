// Package alipaywire holds the wire facts that the modern (alipay) and legacy (alipaylegacy) Alipay
// packages share, so that each has one home: the form parser that keeps the raw decoded bytes and
// rejects duplicate keys, the charset names and their conversions (UTF-8, GBK, GB2312, GB18030),
// strict yuan amounts and Beijing timestamps, the key-file envelope (PEM or one-line base64), and
// the notification answers.
//
// It reports failures as plain values (*FormError, ok booleans); each public package turns them
// into its own typed errors.
package alipaywire

import (
	"io"
	"net/http"
)

// Answers to Alipay's notifications: write exactly these bytes, no newline. Both protocol families
// (OpenAPI and the legacy mapi and WAP services) use the same two.
const (
	AckSuccess = "success"
	AckFail    = "fail"
)

// WriteAck answers an Alipay notification: HTTP 200, text/plain, exactly AckSuccess when ok,
// AckFail otherwise (no newline).
func WriteAck(w http.ResponseWriter, ok bool) {
	body := AckFail
	if ok {
		body = AckSuccess
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, body)
}
