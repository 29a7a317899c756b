package wechatpay

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/testsign"
	wire "github.com/paynotify/paynotify/internal/wechatpaywire"
)

func TestVerifyNotification_SharedVectors(t *testing.T) {
	v := mustShared(t)
	t.Run("OK/V1Transaction", func(t *testing.T) {
		ts, _ := strconv.ParseInt(v.V1.Headers[wire.HeaderTimestamp], 10, 64)
		sum := sha256.Sum256([]byte(v.V1.Body))
		if got := hex.EncodeToString(sum[:]); got != "94f410db70a9403e2442aa3f43c760bf43040a3a075eeeaa531de56ddb6f666a" {
			t.Fatalf("body sha256 %s", got)
		}
		n, err := newVerifyClient(t, ts+10).VerifyNotification(headerOf(v.V1.Headers), []byte(v.V1.Body))
		if err != nil {
			t.Fatal(err)
		}
		if string(n.Plaintext) != v.V1.Plaintext {
			t.Fatalf("plaintext %s", n.Plaintext)
		}
		tx := n.Transaction
		if n.EventType != EventTransactionSuccess || n.ID != "EV-2024060112350012345" || n.Summary != "支付成功" || tx == nil {
			t.Fatalf("%+v", n)
		}
		if tx.OutTradeNo != "ORD20240601123456" || tx.TradeState != "SUCCESS" || tx.Amount.Total != 100 || tx.Amount.PayerTotal != 100 ||
			tx.Amount.Currency != "CNY" || tx.Payer.OpenID != "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" || tx.MchID != "1900000100" ||
			tx.AppID != "wxd678efh567hg6787" || tx.TransactionID != "4200000001202406011234567890" || tx.TradeType != "NATIVE" || tx.Attach != "channel=native" {
			t.Fatalf("%+v", tx)
		}
		if want := time.Date(2024, 6, 1, 12, 35, 0, 0, Beijing()); !tx.SuccessTime.Equal(want) {
			t.Fatalf("success_time %v", tx.SuccessTime)
		}
		if want := time.Date(2024, 6, 1, 12, 35, 1, 0, Beijing()); !n.CreateTime.Equal(want) {
			t.Fatalf("create_time %v", n.CreateTime)
		}
	})
	t.Run("OK/V2RefundPublicKey", func(t *testing.T) {
		ts, _ := strconv.ParseInt(v.V2.Headers[wire.HeaderTimestamp], 10, 64)
		n, err := newVerifyClient(t, ts).VerifyNotification(headerOf(v.V2.Headers), []byte(v.V2.Body))
		if err != nil {
			t.Fatal(err)
		}
		r := n.Refund
		if n.EventType != EventRefundSuccess || r == nil || r.OutRefundNo != "RF20240602000001" || r.RefundStatus != "SUCCESS" ||
			r.Amount.Refund != 100 || r.Amount.Total != 100 || r.Amount.PayerRefund != 100 || r.UserReceivedAccount != "支付用户零钱" {
			t.Fatalf("%+v %+v", n, r)
		}
		if string(n.Plaintext) != v.V2.Plaintext {
			t.Fatalf("plaintext %s", n.Plaintext)
		}
	})
	t.Run("OK/V1SerialLowercase", func(t *testing.T) {
		ts, _ := strconv.ParseInt(v.V1.Headers[wire.HeaderTimestamp], 10, 64)
		h := headerOf(v.V1.Headers)
		h.Set(wire.HeaderSerial, strings.ToLower(h.Get(wire.HeaderSerial)))
		if _, err := newVerifyClient(t, ts).VerifyNotification(h, []byte(v.V1.Body)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OK/SerialSwapIsNotSigned", func(t *testing.T) {
		// The serial is not covered by the signature: V1's cert serial swapped for the public-key
		// id of the same key still verifies; swapped for the id of another key it does not.
		ts, _ := strconv.ParseInt(v.V1.Headers[wire.HeaderTimestamp], 10, 64)
		h := headerOf(v.V1.Headers)
		h.Set(wire.HeaderSerial, testPubKeyID)
		if _, err := newVerifyClient(t, ts).VerifyNotification(h, []byte(v.V1.Body)); err != nil {
			t.Fatal(err)
		}
		c, err := NewClient(Config{APIv3Key: []byte(testAPIv3Key), PlatformPublicKey: mustPublicKey(t, "shared/official_doc_test_pub.pem"),
			PlatformPublicKeyID: testPubKeyID, Now: func() time.Time { return time.Unix(ts, 0) }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.VerifyNotification(h, []byte(v.V1.Body)); !errors.Is(err, ErrSignature) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrHugeHeadersQuotedShort", func(t *testing.T) {
		// Anyone can send a notification: a header the detail quotes (%q) is cut short there,
		// whatever its size, so that the logged and stored detail stays small.
		ts, _ := strconv.ParseInt(v.V1.Headers[wire.HeaderTimestamp], 10, 64)
		for _, name := range []string{wire.HeaderTimestamp, wire.HeaderSerial} {
			h := headerOf(v.V1.Headers)
			h.Set(name, strings.Repeat("\xff", 60<<10))
			_, err := newVerifyClient(t, ts).VerifyNotification(h, []byte(v.V1.Body))
			var ve *VerifyError
			if !errors.As(err, &ve) || len(ve.Detail) > 1024 || !strings.Contains(ve.Detail, "…") {
				t.Fatalf("%s of 60 KiB: %d bytes of detail (%v)", name, len(ve.Detail), err)
			}
		}
	})
	t.Run("ErrTimestampSkew/V1WithRealClock", func(t *testing.T) {
		c := newVerifyClient(t, time.Now().Unix())
		_, err := c.VerifyNotification(headerOf(v.V1.Headers), []byte(v.V1.Body))
		if !errors.Is(err, ErrTimestampSkew) {
			t.Fatalf("got %v", err)
		}
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Reason != "timestamp_skew" || !bytes.Equal(ve.Message, wire.NotificationMessage(v.V1.Headers[wire.HeaderTimestamp], v.V1.Headers[wire.HeaderNonce], []byte(v.V1.Body))) {
			t.Fatalf("%+v", ve)
		}
	})
	t.Run("ErrUnknownSerial/OnlyCertMode", func(t *testing.T) {
		ts, _ := strconv.ParseInt(v.V2.Headers[wire.HeaderTimestamp], 10, 64)
		c, err := NewClient(Config{APIv3Key: []byte(testAPIv3Key), PlatformCerts: nil,
			PlatformPublicKey: mustPublicKey(t, "shared/go_sdk_test_public_key.pem"), PlatformPublicKeyID: "PUB_KEY_ID_0000",
			Now: func() time.Time { return time.Unix(ts, 0) }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.VerifyNotification(headerOf(v.V2.Headers), []byte(v.V2.Body)); !errors.Is(err, ErrUnknownSerial) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestVerifyNotification_OwnVectors(t *testing.T) {
	v := mustOwn(t)
	if v.APIv3Key != testAPIv3Key {
		t.Fatal("APIv3 key of own vectors changed")
	}
	for _, n := range v.Notifications {
		name := "OK/" + n.Name
		if n.Expect != "valid" {
			name = "Err/" + n.Name
		}
		t.Run(name, func(t *testing.T) {
			got, err := newVerifyClient(t, n.Now).VerifyNotification(headerOf(n.Headers), []byte(n.Body))
			if r := reasonOfErr(err); r != n.Expect {
				t.Fatalf("%s: got %s (%v), want %s", n.Note, r, err, n.Expect)
			}
			if err != nil {
				// The vague outward text never carries detail.
				if strings.Contains(err.Error(), testAPIv3Key) || !strings.HasPrefix(err.Error(), "wechatpay: ") {
					t.Fatalf("error text %q", err)
				}
				return
			}
			switch {
			case strings.HasPrefix(n.Name, "pay_"):
				tx := got.Transaction
				if string(got.Plaintext) != v.PayPlaintext || tx == nil || tx.Amount.Total != 2599 || tx.Amount.PayerTotal != 2499 ||
					tx.OutTradeNo != "PN20261101000001" || tx.TradeType != "JSAPI" || tx.BankType != "ICBC_DEBIT" {
					t.Fatalf("%+v", tx)
				}
			case strings.HasPrefix(n.Name, "refund_"):
				r := got.Refund
				if r == nil || r.RefundStatus != strings.ToUpper(strings.TrimPrefix(n.Name, "refund_")) || got.EventType != "REFUND."+r.RefundStatus {
					t.Fatalf("%+v", r)
				}
				if r.RefundStatus == "SUCCESS" && (r.Amount.Refund != 1000 || r.SuccessTime.IsZero()) {
					t.Fatalf("%+v", r)
				}
				if r.RefundStatus != "SUCCESS" && !r.SuccessTime.IsZero() {
					t.Fatalf("%+v", r)
				}
			}
		})
	}
}

func TestVerifyNotification_Headers(t *testing.T) {
	v := mustShared(t)
	ts, _ := strconv.ParseInt(v.V1.Headers[wire.HeaderTimestamp], 10, 64)
	body := []byte(v.V1.Body)
	tests := []struct {
		name   string
		edit   func(h http.Header)
		reason string
		check  string
	}{
		{"OK/NoSignatureType", func(h http.Header) { h.Del(wire.HeaderSignatureType) }, "valid", ""},
		{"OK/LowercaseNames", func(h http.Header) {
			for k, vv := range h {
				delete(h, k)
				h[strings.ToLower(k)] = vv
			}
		}, "valid", ""},
		{"ErrMissingTimestamp", func(h http.Header) { h.Del(wire.HeaderTimestamp) }, "malformed", CheckHeaders},
		{"ErrMissingNonce", func(h http.Header) { h.Del(wire.HeaderNonce) }, "malformed", CheckHeaders},
		{"ErrMissingSignature", func(h http.Header) { h.Del(wire.HeaderSignature) }, "malformed", CheckHeaders},
		{"ErrMissingSerial", func(h http.Header) { h.Del(wire.HeaderSerial) }, "malformed", CheckHeaders},
		{"ErrEmptySerial", func(h http.Header) { h.Set(wire.HeaderSerial, " ") }, "malformed", CheckHeaders},
		{"ErrRepeatedSignature", func(h http.Header) { h.Add(wire.HeaderSignature, h.Get(wire.HeaderSignature)) }, "malformed", CheckHeaders},
		{"ErrSM2", func(h http.Header) { h.Set(wire.HeaderSignatureType, "WECHATPAY2-SM2-WITH-SM3") }, "malformed", CheckHeaders},
		{"ErrTimestampNotNumber", func(h http.Header) { h.Set(wire.HeaderTimestamp, "1717216501.0") }, "malformed", CheckTimestamp},
		{"ErrTimestampNegative", func(h http.Header) { h.Set(wire.HeaderTimestamp, "-1717216501") }, "malformed", CheckTimestamp},
		{"ErrTimestampMillis", func(h http.Header) { h.Set(wire.HeaderTimestamp, "1717216501000") }, "malformed", CheckTimestamp},
		{"ErrTimestampZero", func(h http.Header) { h.Set(wire.HeaderTimestamp, "0") }, "timestamp_skew", CheckTimestamp},
		{"ErrTimestampChanged", func(h http.Header) { h.Set(wire.HeaderTimestamp, strconv.FormatInt(ts+1, 10)) }, "signature_invalid", CheckSignature},
		{"ErrNonceChanged", func(h http.Header) { h.Set(wire.HeaderNonce, "x"+h.Get(wire.HeaderNonce)) }, "signature_invalid", CheckSignature},
		{"ErrSignatureNotBase64", func(h http.Header) { h.Set(wire.HeaderSignature, "***") }, "signature_invalid", CheckSignature},
		{"ErrSignatureShort", func(h http.Header) { h.Set(wire.HeaderSignature, "AAAA") }, "signature_invalid", CheckSignature},
		{"ErrSignatureHuge", func(h http.Header) { h.Set(wire.HeaderSignature, strings.Repeat("A", 4000)) }, "signature_invalid", CheckSignature},
		{"ErrProbe", func(h http.Header) { h.Set(wire.HeaderSignature, wire.ProbePrefix+h.Get(wire.HeaderSignature)) }, "probe", CheckProbe},
		{"ErrProbeBeforeTimestamp", func(h http.Header) { h.Set(wire.HeaderSignature, wire.ProbePrefix); h.Set(wire.HeaderTimestamp, "1") }, "probe", CheckProbe},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := headerOf(v.V1.Headers)
			tt.edit(h)
			_, err := newVerifyClient(t, ts).VerifyNotification(h, body)
			if r := reasonOfErr(err); r != tt.reason {
				t.Fatalf("got %s (%v), want %s", r, err, tt.reason)
			}
			var ve *VerifyError
			if errors.As(err, &ve) && ve.Check != tt.check {
				t.Fatalf("check %s, want %s (%s)", ve.Check, tt.check, ve.Detail)
			}
		})
	}
}

// TestVerifyNotification_Envelope checks what follows a valid signature: the envelope, the
// decryption and the decoding. The signatures are made by openssl; the resources are encrypted
// with wire.EncryptGCM (decryption itself is checked on the independent vectors).
func TestVerifyNotification_Envelope(t *testing.T) {
	const ts = 1793500200
	sign := func(body string) http.Header {
		h := http.Header{}
		h.Set(wire.HeaderTimestamp, strconv.Itoa(ts))
		h.Set(wire.HeaderNonce, "nonce")
		h.Set(wire.HeaderSerial, testPubKeyID)
		h.Set(wire.HeaderSignature, testsign.RSA2(t, "testdata/shared/go_sdk_test_private_key.pem", []byte(strconv.Itoa(ts)+"\nnonce\n"+body+"\n")))
		return h
	}
	ct, _ := wire.EncryptGCM([]byte(testAPIv3Key), "abcdefghijkl", "transaction", []byte(`{"amount":{"total":"100"}}`))
	ctOther, _ := wire.EncryptGCM([]byte(testAPIv3Key), "abcdefghijkl", "x", []byte(`{"x":1}`))
	ctBad, _ := wire.EncryptGCM([]byte(testAPIv3Key), "abcdefghijkl", "x", []byte(`{"x":`))
	ctTime, _ := wire.EncryptGCM([]byte(testAPIv3Key), "abcdefghijkl", "transaction", []byte(`{"success_time":"yesterday"}`))
	res := func(ct, ad string) string {
		return `{"id":"1","create_time":"2026-11-01T09:30:01+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","resource":{"algorithm":"AEAD_AES_256_GCM","ciphertext":"` + ct + `","associated_data":"` + ad + `","nonce":"abcdefghijkl"}}`
	}
	tests := []struct {
		name, body, reason, check string
	}{
		{"OK/OtherEvent", strings.Replace(res(ctOther, "x"), "TRANSACTION.SUCCESS", "PAYSCORE.USER_OPEN_SERVICE", 1), "valid", ""},
		{"ErrNotJSON", `not json`, "malformed", CheckEnvelope},
		{"ErrEmptyBody", ``, "malformed", CheckEnvelope},
		{"ErrNoResource", `{"event_type":"TRANSACTION.SUCCESS"}`, "malformed", CheckEnvelope},
		{"ErrNoEventType", `{"resource":{}}`, "malformed", CheckEnvelope},
		{"ErrCreateTime", strings.Replace(res(ct, "transaction"), "2026-11-01T09:30:01+08:00", "20261101", 1), "malformed", CheckEnvelope},
		{"ErrAlgorithm", strings.Replace(res(ct, "transaction"), "AEAD_AES_256_GCM", "AEAD_SM4_GCM", 1), "decrypt_failed", CheckDecrypt},
		{"ErrCiphertextNotBase64", res("!!", "transaction"), "decrypt_failed", CheckDecrypt},
		{"ErrCiphertextShort", res("AAAA", "transaction"), "decrypt_failed", CheckDecrypt},
		{"ErrNonceLong", strings.Replace(res(ct, "transaction"), "abcdefghijkl", "abcdefghijklm", 1), "decrypt_failed", CheckDecrypt},
		{"ErrNonceEmpty", strings.Replace(res(ct, "transaction"), "abcdefghijkl", "", 1), "decrypt_failed", CheckDecrypt},
		{"ErrAmountString", res(ct, "transaction"), "malformed", CheckDecode},
		{"ErrSuccessTime", res(ctTime, "transaction"), "malformed", CheckDecode},
		{"ErrOtherEventNotJSON", strings.Replace(res(ctBad, "x"), "TRANSACTION.SUCCESS", "X.Y", 1), "malformed", CheckDecode},
	}
	c := newVerifyClient(t, ts)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.VerifyNotification(sign(tt.body), []byte(tt.body))
			if r := reasonOfErr(err); r != tt.reason {
				t.Fatalf("got %s (%v), want %s", r, err, tt.reason)
			}
			var ve *VerifyError
			if errors.As(err, &ve) && ve.Check != tt.check {
				t.Fatalf("check %s, want %s (%s)", ve.Check, tt.check, ve.Detail)
			}
		})
	}
}

func TestBuildNotification(t *testing.T) {
	t.Run("OK/RoundTrip", func(t *testing.T) {
		signer := mustPrivateKey(t, "shared/go_sdk_test_private_key.pem")
		at := time.Date(2026, 11, 1, 9, 30, 0, 0, time.UTC)
		plain := []byte(`{"mchid":"1900000100","out_trade_no":"A<B>&C","trade_state":"SUCCESS","amount":{"total":1}}`)
		h, body, err := wire.BuildNotification(signer, testPubKeyID, []byte(testAPIv3Key), wire.NotificationParams{
			ID: "EV-1", CreateTime: at, EventType: EventTransactionSuccess, Summary: "支付成功", OriginalType: "transaction", Plaintext: plain,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(body, []byte(`"create_time":"2026-11-01T17:30:00+08:00"`)) || !bytes.Contains(body, []byte("支付成功")) {
			t.Fatalf("body %s", body)
		}
		n, err := newVerifyClient(t, at.Unix()).VerifyNotification(h, body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(n.Plaintext, plain) || n.Transaction.OutTradeNo != "A<B>&C" {
			t.Fatalf("%+v", n)
		}
	})
}

func TestWriteAck(t *testing.T) {
	t.Run("OK/Success", func(t *testing.T) {
		w := httptest.NewRecorder()
		WriteAckSuccess(w)
		if w.Code != 204 || w.Body.Len() != 0 {
			t.Fatalf("%d %q", w.Code, w.Body)
		}
	})
	t.Run("OK/Failure", func(t *testing.T) {
		w := httptest.NewRecorder()
		WriteAckFailure(w, 401, `bad "sig"`)
		if w.Code != 401 || w.Body.String() != `{"code":"FAIL","message":"bad \"sig\""}` || w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%d %q", w.Code, w.Body)
		}
	})
	t.Run("OK/FailureNever2xx", func(t *testing.T) {
		w := httptest.NewRecorder()
		WriteAckFailure(w, 200, "x")
		if w.Code != 500 {
			t.Fatalf("%d", w.Code)
		}
	})
}

// TestVerifyNotification_MchID: with Config.MchID set, a verified payment or refund of another
// merchant comes back with ErrMchID (and the notification); the own vectors are of 1900000100.
func TestVerifyNotification_MchID(t *testing.T) {
	v := mustOwn(t)
	for _, n := range v.Notifications {
		if n.Expect != "valid" {
			continue
		}
		t.Run(n.Name, func(t *testing.T) {
			for _, tt := range []struct {
				mchID string
				ok    bool
			}{{"1900000100", true}, {"1900007291", false}} {
				c := newVerifyClient(t, n.Now)
				c.cfg.MchID = tt.mchID
				got, err := c.VerifyNotification(headerOf(n.Headers), []byte(n.Body))
				if tt.ok {
					if err != nil {
						t.Fatalf("MchID %s: %v", tt.mchID, err)
					}
					continue
				}
				var ve *VerifyError
				if !errors.Is(err, ErrMchID) || !errors.As(err, &ve) || ve.Reason != ReasonMchIDMismatch || ve.Check != CheckMchID ||
					got == nil || (got.Transaction == nil && got.Refund == nil) {
					t.Fatalf("MchID %s: got %+v, %v; want the notification with ErrMchID", tt.mchID, got, err)
				}
				if !strings.Contains(ve.Detail, `"1900000100"`) {
					t.Fatalf("detail %q", ve.Detail)
				}
			}
		})
	}
}

// TestClaimedOutTradeNo_Bounded: a notification that does not verify names its claimed
// out_trade_no (its resource decrypted without the signature, so that the rejected record is
// found by order; never acted on) when it is the size of WeChat Pay's, and not when it is larger
// than maxClaimBody: anyone can post large bodies to an open notify URL, and each cost its
// decryption (a reviewer helper measured about 300 µs for a forged 48 KiB probe).
func TestClaimedOutTradeNo_Bounded(t *testing.T) {
	v := mustShared(t)
	c := newVerifyClient(t, 1717216501)
	h := headerOf(v.V1.Headers)
	h.Set(wire.HeaderSignature, wire.ProbePrefix+"x")
	var ve *VerifyError
	if _, err := c.VerifyNotification(h, []byte(v.V1.Body)); !errors.As(err, &ve) || ve.OutTradeNo != "ORD20240601123456" {
		t.Fatalf("a probe of WeChat Pay's size: %v, claimed %q; want ORD20240601123456", err, ve.OutTradeNo)
	}
	big := []byte(v.V1.Body[:len(v.V1.Body)-1] + strings.Repeat(" ", maxClaimBody) + "}") // JSON whitespace
	ve = nil
	if _, err := c.VerifyNotification(h, big); !errors.As(err, &ve) || ve.OutTradeNo != "" {
		t.Fatalf("a probe over %d bytes: %v, claimed %q; want nothing decrypted", maxClaimBody, err, ve.OutTradeNo)
	}
}
