package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"time"

	"github.com/paynotify/paynotify"
)

// Sign returns one Standard Webhooks signature, "v1," and the standard base64 of
// HMAC-SHA256(key, "{id}.{timestamp}.{body}") (docs/webhooks.md, "Signatures").
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, timestamp, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// SignatureHeader returns the webhook-signature header of a delivery of body to e at timestamp:
// the signature with the current secret, and during the overlap after a rotation (until
// OldSecretUntil) the one with the old secret too, space-separated.
func SignatureHeader(e *paynotify.WebhookEndpoint, now time.Time, id string, timestamp int64, body []byte) (string, error) {
	key, err := paynotify.WebhookKey(e.Secret)
	if err != nil {
		return "", err
	}
	h := Sign(key, id, timestamp, body)
	if e.OldSecret != "" && e.OldSecretUntil != nil && now.Before(*e.OldSecretUntil) {
		old, err := paynotify.WebhookKey(e.OldSecret)
		if err != nil {
			return "", err
		}
		h += " " + Sign(old, id, timestamp, body)
	}
	return h, nil
}
