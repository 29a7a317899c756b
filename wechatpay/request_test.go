package wechatpay

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/testsign"
	wire "github.com/paynotify/paynotify/internal/wechatpaywire"
)

// onceReader hands out a body and fails the test if it is read again after its end, or read past
// max bytes; n counts the bytes handed out.
type onceReader struct {
	t    *testing.T
	r    io.Reader
	done bool
	n    int
}

func (o *onceReader) Read(p []byte) (int, error) {
	if o.done {
		o.t.Error("body read again after its end")
		return 0, io.EOF
	}
	n, err := o.r.Read(p)
	o.n += n
	if err == io.EOF {
		o.done = true
	}
	return n, err
}

// errReader fails every read.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func notifyRequest(h http.Header, body io.Reader) *http.Request {
	r := httptest.NewRequest("POST", "/notify/wechatpay", body)
	for k, vv := range h {
		r.Header[k] = vv
	}
	return r
}

// TestVerifyNotificationRequest checks the *http.Request entry point against the bytes one: the
// same verdict for the shared vector (from the official Go SDK) and for openssl-signed bodies,
// the body read once and raw, a size limit, and a read error that is not a verdict.
func TestVerifyNotificationRequest(t *testing.T) {
	v := mustShared(t)
	ts, _ := strconv.ParseInt(v.V1.Headers[wire.HeaderTimestamp], 10, 64)
	c := newVerifyClient(t, ts)

	// An openssl-signed notification whose resource claims out_trade_no O-CLAIMED.
	const sts = 1793500200
	ct, err := wire.EncryptGCM([]byte(testAPIv3Key), "abcdefghijkl", "transaction",
		[]byte(`{"mchid":"1900000100","out_trade_no":"O-CLAIMED","transaction_id":"4200","trade_state":"SUCCESS","amount":{"total":100,"payer_total":100,"currency":"CNY"}}`))
	if err != nil {
		t.Fatal(err)
	}
	own := `{"id":"1","create_time":"2026-11-01T09:30:01+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","resource":{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"` + ct + `","associated_data":"transaction","nonce":"abcdefghijkl"}}`
	ownHeader := http.Header{}
	ownHeader.Set(wire.HeaderTimestamp, strconv.Itoa(sts))
	ownHeader.Set(wire.HeaderNonce, "nonce")
	ownHeader.Set(wire.HeaderSerial, testPubKeyID)
	ownHeader.Set(wire.HeaderSignature, testsign.RSA2(t, "testdata/shared/go_sdk_test_private_key.pem", []byte(strconv.Itoa(sts)+"\nnonce\n"+own+"\n")))
	ownClient := newVerifyClient(t, sts)

	tests := []struct {
		name   string
		c      *Client
		h      http.Header
		body   string
		reason string
		otn    string
	}{
		{"OK/SharedVector", c, headerOf(v.V1.Headers), v.V1.Body, "valid", ""},
		{"OK/OpenSSL", ownClient, ownHeader, own, "valid", ""},
		{"ErrSignature/BodyChanged", ownClient, ownHeader, strings.Replace(own, `"id":"1"`, `"id":"2"`, 1), "signature_invalid", "O-CLAIMED"},
		{"ErrSignature/TrailingNewline", c, headerOf(v.V1.Headers), v.V1.Body + "\n", "signature_invalid", "ORD20240601123456"},
		{"ErrTimestampSkew", c, ownHeader, own, "timestamp_skew", "O-CLAIMED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nb, errb := tt.c.VerifyNotification(tt.h, []byte(tt.body))
			body := &onceReader{t: t, r: strings.NewReader(tt.body)}
			nr, errr := tt.c.VerifyNotificationRequest(notifyRequest(tt.h, body))
			if rb, rr := reasonOfErr(errb), reasonOfErr(errr); rb != tt.reason || rr != tt.reason {
				t.Fatalf("bytes form %s (%v), request form %s (%v), want %s", rb, errb, rr, errr, tt.reason)
			}
			if body.n != len(tt.body) || !body.done {
				t.Fatalf("read %d of %d bytes (end reached: %v)", body.n, len(tt.body), body.done)
			}
			if tt.reason == "valid" {
				if !bytes.Equal(nb.Plaintext, nr.Plaintext) || nb.ID != nr.ID || nr.Transaction == nil || nr.Transaction.OutTradeNo != nb.Transaction.OutTradeNo {
					t.Fatalf("notifications differ: %+v vs %+v", nb, nr)
				}
				return
			}
			var vb, vr *VerifyError
			errors.As(errb, &vb)
			errors.As(errr, &vr)
			if vb.Detail != vr.Detail || vb.OutTradeNo != tt.otn || vr.OutTradeNo != tt.otn {
				t.Fatalf("details %q / %q, claimed out_trade_no %q / %q, want %q", vb.Detail, vr.Detail, vb.OutTradeNo, vr.OutTradeNo, tt.otn)
			}
		})
	}

	t.Run("ErrTooLarge", func(t *testing.T) {
		big := &onceReader{t: t, r: io.MultiReader(strings.NewReader(own), bytes.NewReader(make([]byte, MaxNotificationBytes)))}
		_, err := ownClient.VerifyNotificationRequest(notifyRequest(ownHeader, big))
		var ve *VerifyError
		if !errors.As(err, &ve) || !errors.Is(err, ErrMalformed) || !strings.Contains(ve.Detail, "body larger than 1048576 bytes") {
			t.Fatalf("got %v", err)
		}
		if big.n > MaxNotificationBytes+1 {
			t.Fatalf("read %d bytes, more than the limit and one", big.n)
		}
	})
	t.Run("ErrSignature/ExactlyTheLimit", func(t *testing.T) {
		// A body of exactly MaxNotificationBytes is read and verified, not refused for its size:
		// the padding is not covered by the signature.
		padded := own + strings.Repeat(" ", MaxNotificationBytes-len(own))
		_, err := ownClient.VerifyNotificationRequest(notifyRequest(ownHeader, strings.NewReader(padded)))
		if reasonOfErr(err) != "signature_invalid" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrRead", func(t *testing.T) {
		_, err := ownClient.VerifyNotificationRequest(notifyRequest(ownHeader, errReader{}))
		var ve *VerifyError
		if err == nil || errors.As(err, &ve) || !strings.Contains(err.Error(), "wechatpay: read notification body: connection reset") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestWithClock checks that a Client of WithClock verifies as of its own clock and shares the
// platform keys of the Client it came from.
func TestWithClock(t *testing.T) {
	v := mustShared(t)
	ts, _ := strconv.ParseInt(v.V1.Headers[wire.HeaderTimestamp], 10, 64)
	c := newVerifyClient(t, ts+3600) // an hour later: outside the window
	if _, err := c.VerifyNotification(headerOf(v.V1.Headers), []byte(v.V1.Body)); !errors.Is(err, ErrTimestampSkew) {
		t.Fatalf("an hour later: %v", err)
	}
	then := c.WithClock(func() time.Time { return time.Unix(ts, 0) })
	if _, err := then.VerifyNotification(headerOf(v.V1.Headers), []byte(v.V1.Body)); err != nil {
		t.Fatalf("as of receipt: %v", err)
	}
	if _, err := c.VerifyNotification(headerOf(v.V1.Headers), []byte(v.V1.Body)); !errors.Is(err, ErrTimestampSkew) {
		t.Fatalf("the original's clock changed: %v", err)
	}
	// Certificates replaced on the original are the clone's too.
	c.SetPlatformCertificates(nil)
	h := headerOf(v.V1.Headers)
	if strings.HasPrefix(h.Get(wire.HeaderSerial), wire.PublicKeyIDPrefix) {
		t.Fatal("vector V1 is expected to be signed with a platform certificate")
	}
	if _, err := then.VerifyNotification(h, []byte(v.V1.Body)); !errors.Is(err, ErrUnknownSerial) {
		t.Fatalf("after the original dropped its certificates: %v", err)
	}
}
