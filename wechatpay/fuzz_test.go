package wechatpay

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	wire "github.com/paynotify/paynotify/internal/wechatpaywire"
)

// FuzzEnvelope feeds arbitrary bodies to the part of VerifyNotification that runs after the
// signature: envelope JSON, resource checks, GCM (nonce and length checks), plaintext decoding.
// Nothing may panic, and every failure must be a *VerifyError with a known reason.
func FuzzEnvelope(f *testing.F) {
	v := mustShared(f)
	own := mustOwn(f)
	f.Add([]byte(v.V1.Body))
	f.Add([]byte(v.V2.Body))
	for _, n := range own.Notifications {
		f.Add([]byte(n.Body))
	}
	f.Add([]byte(`{"event_type":"TRANSACTION.SUCCESS","resource":{"algorithm":"AEAD_AES_256_GCM","nonce":"abcdefghijk","ciphertext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}`))
	c := newVerifyClient(f, 1717216501)
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := c.decodeNotification(body)
		if err != nil {
			var ve *VerifyError
			if !errors.As(err, &ve) || reasonOf(ve.err) != ve.Reason {
				t.Fatalf("not a VerifyError: %v", err)
			}
			return
		}
		if n.Plaintext == nil || (n.Transaction == nil && n.Refund == nil && n.EventType == EventTransactionSuccess) {
			t.Fatalf("%+v", n)
		}
	})
}

// FuzzNotificationHeaders varies the four Wechatpay-* headers and the body of a signed
// notification: only the untouched original may verify.
func FuzzNotificationHeaders(f *testing.F) {
	v := mustShared(f)
	h := v.V1.Headers
	f.Add(h[wire.HeaderTimestamp], h[wire.HeaderNonce], h[wire.HeaderSignature], h[wire.HeaderSerial], h[wire.HeaderSignatureType], []byte(v.V1.Body))
	f.Add(h[wire.HeaderTimestamp], h[wire.HeaderNonce], wire.ProbePrefix+"x", h[wire.HeaderSerial], "", []byte(v.V1.Body))
	f.Add("0", "", "", "PUB_KEY_ID_", "", []byte{})
	f.Add("99999999999999999999", "\n", "====", "d7ce59d1f522d701", "WECHATPAY2-SM2-WITH-SM3", []byte("{}"))
	c := newVerifyClient(f, 1717216501)
	f.Fuzz(func(t *testing.T, ts, nonce, sig, serial, sigType string, body []byte) {
		hdr := http.Header{}
		hdr.Set(wire.HeaderTimestamp, ts)
		hdr.Set(wire.HeaderNonce, nonce)
		hdr.Set(wire.HeaderSignature, sig)
		hdr.Set(wire.HeaderSerial, serial)
		if sigType != "" {
			hdr.Set(wire.HeaderSignatureType, sigType)
		}
		_, err := c.VerifyNotification(hdr, body)
		if err == nil {
			orig := ts == h[wire.HeaderTimestamp] && nonce == h[wire.HeaderNonce] && bytes.Equal(body, []byte(v.V1.Body))
			if !orig {
				t.Fatalf("verified a changed notification: ts %q nonce %q body %q", ts, nonce, body)
			}
			return
		}
		var ve *VerifyError
		if !errors.As(err, &ve) {
			t.Fatalf("not a VerifyError: %v", err)
		}
	})
}

// FuzzParseAuthorization checks that parsing never panics and that what parses formats back to
// a header that parses to the same value.
func FuzzParseAuthorization(f *testing.F) {
	f.Add(wire.Authorization{MchID: "1900007291", NonceStr: "593BEC0C930BF1AFEB40B4A08C8FB242", Timestamp: "1554208460", SerialNo: testSerialNo, Signature: "c2ln"}.String())
	f.Add(`WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="2",timestamp="3",serial_no="4",signature="5",x=""`)
	f.Add(`WECHATPAY2-SHA256-RSA2048 mchid="`)
	f.Fuzz(func(t *testing.T, s string) {
		a, err := wire.ParseAuthorization(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "authorization") {
				t.Fatalf("error does not name the header: %v", err)
			}
			return
		}
		b, err := wire.ParseAuthorization(a.String())
		if err != nil || b != a {
			t.Fatalf("round trip: %+v -> %q -> %+v, %v", a, a.String(), b, err)
		}
	})
}

// FuzzV2XML feeds arbitrary XML to the APIv2 parsers: nothing may panic, a forged sign must not
// verify, and failures are typed.
func FuzzV2XML(f *testing.F) {
	own := mustOwn(f)
	for _, n := range own.V2 {
		f.Add([]byte(n.Body))
	}
	f.Add([]byte(own.V2Refund.Body))
	f.Add([]byte(`<xml><a><![CDATA[x]]></a><sign>00000000000000000000000000000000</sign></xml>`))
	f.Add([]byte(`<?xml version="1.0"?><!DOCTYPE x><xml></xml>`))
	key := []byte(own.V2Key)
	f.Fuzz(func(t *testing.T, body []byte) {
		fields, perr := ParseV2XML(body)
		if perr != nil && !errors.Is(perr, ErrMalformed) {
			t.Fatalf("%v", perr)
		}
		n, err := VerifyV2Notification(body, key)
		if err == nil {
			want, _ := v2Sign(n.Fields, key, map[int]string{32: "MD5", 64: "HMAC-SHA256"}[len(n.Fields["sign"])])
			if perr != nil || !bytes.EqualFold([]byte(want), []byte(fields["sign"])) {
				t.Fatalf("verified without a matching sign")
			}
		} else {
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("not a VerifyError: %v", err)
			}
		}
		if _, err := ParseV2RefundNotification(body, key); err != nil {
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("not a VerifyError: %v", err)
			}
		}
		if perr == nil {
			if _, err := DecryptV2RefundReqInfo(fields["req_info"], key); err == nil && fields["req_info"] == "" {
				t.Fatal("empty req_info decrypted")
			}
		}
	})
}

// FuzzJSONDecode checks the notification JSON reader against encoding/json: whatever it
// accepts is valid JSON and decodes to the same values; what encoding/json decodes, it decodes.
// (Keys match exactly here, case-insensitively in encoding/json, which also folds some
// non-ASCII letters to ASCII ones: "ſ" to "s", the Kelvin sign to "k". Inputs with upper-case
// ASCII or any byte past ASCII are only checked for validity.)
func FuzzJSONDecode(f *testing.F) {
	v := mustShared(f)
	f.Add([]byte(v.V1.Plaintext))
	f.Add([]byte(v.V2.Plaintext))
	f.Add([]byte(v.V1.Body))
	f.Add([]byte(`{"amount":{"total":1e2},"a":[1,{"b":null},"\u00e9\ud83d\ude00"],"attach":"x\"y\\/"}`))
	f.Add([]byte(`{"payer":null,"amount":{"total":-0,"currency":"CN\u0059"}} `))
	f.Add([]byte(`{"tranſaction_id":"4200"}`)) // encoding/json reads it as transaction_id
	f.Fuzz(func(t *testing.T, b []byte) {
		upper := bytes.ContainsFunc(b, func(r rune) bool { return r >= 'A' && r <= 'Z' || r >= 0x80 })
		var mt, jt wireTransaction
		errM := decodeTransaction(b, &mt)
		errJ := json.Unmarshal(b, &jt)
		if errM == nil && !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if !upper && errM == nil && (errJ != nil || mt != jt) {
			t.Fatalf("differs from encoding/json on %q: %+v %v / %+v %v", b, mt, errM, jt, errJ)
		}
		if !upper && errJ == nil && errM != nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("{")) {
			t.Fatalf("rejected what encoding/json decodes: %q: %v", b, errM)
		}
		var mr, jr wireRefund
		if decodeRefund(b, &mr) == nil && !upper && (json.Unmarshal(b, &jr) != nil || mr != jr) {
			t.Fatalf("refund differs on %q", b)
		}
		var me, je envelope
		if decodeEnvelope(b, &me) == nil && !upper {
			if json.Unmarshal(b, &je) != nil || me.ID != je.ID || me.EventType != je.EventType || (me.Resource == nil) != (je.Resource == nil) ||
				(me.Resource != nil && *me.Resource != *je.Resource) {
				t.Fatalf("envelope differs on %q", b)
			}
		}
	})
}
