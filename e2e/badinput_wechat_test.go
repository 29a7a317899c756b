package e2e_test

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// wxResource is the plaintext of a notification's resource (a transaction), as this test writes
// it.
type wxResource map[string]any

// wxTransaction is a SUCCESS transaction of order otn for total fen, of the sandbox's merchant.
func (e *env) wxTransaction(otn string, total int64) wxResource {
	return wxResource{
		"mchid": e.keys.WechatMchID, "appid": e.keys.WechatAppID, "out_trade_no": otn, "transaction_id": "4200000000202611" + otn,
		"trade_type": "NATIVE", "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "",
		"success_time": "2026-11-29T10:00:00+08:00", "payer": map[string]any{"openid": "oBadInput0123456789"},
		"amount": map[string]any{"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
	}
}

// wxEnvelope encrypts plaintext with AES-256-GCM under key (the APIv3 key) with nonce and
// associated data, then lets tamper change (or replace) the sealed bytes (ciphertext||tag) and the resource,
// and returns the notification body.
func wxEnvelope(t *testing.T, key string, plaintext []byte, tamper func(sealed []byte, res map[string]any) []byte) []byte {
	t.Helper()
	blk, err := aes.NewCipher([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(blk)
	if err != nil {
		t.Fatal(err)
	}
	nonce, ad := "bAdInPuT0123", "transaction"
	sealed := gcm.Seal(nil, []byte(nonce), plaintext, []byte(ad))
	res := map[string]any{"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM", "associated_data": ad, "nonce": nonce}
	if tamper != nil {
		sealed = tamper(sealed, res)
	}
	res["ciphertext"] = base64.StdEncoding.EncodeToString(sealed)
	b, err := json.Marshal(map[string]any{"id": "EV-bad-input", "create_time": "2026-11-29T10:00:05+08:00", "resource_type": "encrypt-resource",
		"event_type": "TRANSACTION.SUCCESS", "summary": "支付成功", "resource": res})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wxSigned returns the Wechatpay-* headers of body signed (SHA256withRSA over
// "timestamp\nnonce\nbody\n") by key at ts, with serial.
func wxSigned(t *testing.T, key *rsa.PrivateKey, serial string, ts time.Time, body []byte) http.Header {
	t.Helper()
	stamp, nonce := strconv.FormatInt(ts.Unix(), 10), "n0nce-bad-input"
	msg := stamp + "\n" + nonce + "\n" + string(body) + "\n"
	return http.Header{
		"Content-Type":             {"application/json"},
		"Wechatpay-Timestamp":      {stamp},
		"Wechatpay-Nonce":          {nonce},
		"Wechatpay-Serial":         {serial},
		"Wechatpay-Signature":      {rsaSign(t, key, []byte(msg), false)},
		"Wechatpay-Signature-Type": {"WECHATPAY2-SHA256-RSA2048"},
	}
}

// TestBadInputWechat: forged and re-signed WeChat Pay APIv3 notifications, posted to
// /notify/wechatpay/{app}: stale and future timestamps, an unknown serial, a wrong key, signatures
// over other bytes, a tampered ciphertext, tag, nonce or associated data (re-signed, so that only
// the AEAD catches them), missing and repeated headers, probes, shapes and sizes; each answered
// with its exact status and {"code":"FAIL","message":reason} and kept as rejected evidence. A
// genuine notification whose resource states another amount, merchant or app is an anomaly
// (answered 400); the last row is genuine and pays its order (204).
func TestBadInputWechat(t *testing.T) {
	t.Parallel()
	platform := sandboxKey(t, "wechatpay_platform_private_key.pem")
	wrongKey := strangerKey(t)
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		const otn = "bad_wechat_target"
		e.create(paynotify.ChannelWechatNative, otn, 8888)
		path := "/notify/wechatpay/" + wechatApp
		apiv3, serial := e.keys.WechatAPIv3Key, e.keys.WechatPlatformPublicKeyID
		tx := func(r wxResource) []byte {
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		body := wxEnvelope(t, apiv3, tx(e.wxTransaction(otn, 8888)), nil)
		// send posts body with the headers of sign (made at send time: the timestamp is now), as
		// changed by mod.
		send := func(body []byte, sign func(body []byte) http.Header, mod func(h http.Header)) func() (int, string) {
			return func() (int, string) {
				h := sign(body)
				if mod != nil {
					mod(h)
				}
				return e.rawPost(path, h, body)
			}
		}
		at := func(d time.Duration) func([]byte) http.Header {
			return func(b []byte) http.Header { return wxSigned(t, platform, serial, time.Now().Add(d), b) }
		}
		now := at(0)
		by := func(key *rsa.PrivateKey, serial string) func([]byte) http.Header {
			return func(b []byte) http.Header { return wxSigned(t, key, serial, time.Now(), b) }
		}
		rejected := func(reason string) effect { return effect{evidence: "rejected/" + reason} }
		unauthorized := func(reason string) answer { return wechatFail(http.StatusUnauthorized, reason) }
		drop := func(name string) func(http.Header) { return func(h http.Header) { h.Del(name) } }
		repeat := func(name, v string) func(http.Header) { return func(h http.Header) { h[name] = append(h[name], v) } }
		set := func(name, v string) func(http.Header) { return func(h http.Header) { h.Set(name, v) } }
		flip := func(i int) func([]byte, map[string]any) []byte {
			return func(sealed []byte, _ map[string]any) []byte {
				sealed[(i+len(sealed))%len(sealed)] ^= 0x01
				return sealed
			}
		}
		res := func(k, v string) func([]byte, map[string]any) []byte {
			return func(sealed []byte, r map[string]any) []byte { r[k] = v; return sealed }
		}
		tenMB := append(bytes.TrimSuffix(body, []byte("}")), `,"pad":"`...)
		tenMB = append(append(tenMB, bytes.Repeat([]byte("x"), 10<<20)...), `"}`...)
		wrongAPIv3 := strings.Repeat("k", 32)

		rows := []row{
			// Timestamps outside the ±5 min window, signed correctly.
			{name: "stale timestamp", send: send(body, at(-6*time.Minute), nil), want: unauthorized("timestamp_skew"), eff: rejected("timestamp_skew")},
			{name: "future timestamp", send: send(body, at(6*time.Minute), nil), want: unauthorized("timestamp_skew"), eff: rejected("timestamp_skew")},
			{name: "timestamp a day old", send: send(body, at(-24*time.Hour), nil), want: unauthorized("timestamp_skew"), eff: rejected("timestamp_skew")},
			{name: "timestamp not a number", send: send(body, now, set("Wechatpay-Timestamp", "1e9")), want: unauthorized("malformed"), eff: rejected("malformed")},
			// Keys and serials.
			{name: "unknown serial", send: send(body, by(platform, "PUB_KEY_ID_0000000000000000000000000000000000"), nil),
				want: unauthorized("unknown_serial"), eff: rejected("unknown_serial")},
			{name: "the merchant's own serial", send: send(body, by(platform, e.keys.WechatMerchantSerialNo), nil),
				want: unauthorized("unknown_serial"), eff: rejected("unknown_serial")},
			{name: "wrong key", send: send(body, by(wrongKey, serial), nil), want: unauthorized("signature_invalid"), eff: rejected("signature_invalid")},
			{name: "signed without the trailing newline", send: send(body, func(b []byte) http.Header {
				h := wxSigned(t, platform, serial, time.Now(), b)
				msg := h.Get("Wechatpay-Timestamp") + "\n" + h.Get("Wechatpay-Nonce") + "\n" + string(b)
				h.Set("Wechatpay-Signature", rsaSign(t, platform, []byte(msg), false))
				return h
			}, nil), want: unauthorized("signature_invalid"), eff: rejected("signature_invalid")},
			{name: "signed with SHA-1", send: send(body, func(b []byte) http.Header {
				h := wxSigned(t, platform, serial, time.Now(), b)
				msg := h.Get("Wechatpay-Timestamp") + "\n" + h.Get("Wechatpay-Nonce") + "\n" + string(b) + "\n"
				h.Set("Wechatpay-Signature", rsaSign(t, platform, []byte(msg), true))
				return h
			}, nil), want: unauthorized("signature_invalid"), eff: rejected("signature_invalid")},
			{name: "another nonce than signed", send: send(body, now, set("Wechatpay-Nonce", "other-nonce")), want: unauthorized("signature_invalid"), eff: rejected("signature_invalid")},
			{name: "body re-serialised after signing", send: func() (int, string) {
				h := now(body)
				var v any
				_ = json.Unmarshal(body, &v)
				b, _ := json.MarshalIndent(v, "", " ")
				return e.rawPost(path, h, b)
			}, want: unauthorized("signature_invalid"), eff: rejected("signature_invalid")},
			// The resource tampered with and the envelope re-signed: only the AEAD can tell.
			{name: "tampered ciphertext", send: send(wxEnvelope(t, apiv3, tx(e.wxTransaction(otn, 8888)), flip(0)), now, nil),
				want: unauthorized("decrypt_failed"), eff: rejected("decrypt_failed")},
			{name: "tampered tag", send: send(wxEnvelope(t, apiv3, tx(e.wxTransaction(otn, 8888)), flip(-1)), now, nil),
				want: unauthorized("decrypt_failed"), eff: rejected("decrypt_failed")},
			{name: "ciphertext shorter than a tag", send: send(wxEnvelope(t, apiv3, tx(e.wxTransaction(otn, 8888)), func(sealed []byte, _ map[string]any) []byte { return sealed[:8] }), now, nil),
				want: unauthorized("decrypt_failed"), eff: rejected("decrypt_failed")},
			{name: "other associated_data", send: send(wxEnvelope(t, apiv3, tx(e.wxTransaction(otn, 8888)), res("associated_data", "refund")), now, nil),
				want: unauthorized("decrypt_failed"), eff: rejected("decrypt_failed")},
			{name: "other nonce in the resource", send: send(wxEnvelope(t, apiv3, tx(e.wxTransaction(otn, 8888)), res("nonce", "0123bAdInPuT")), now, nil),
				want: unauthorized("decrypt_failed"), eff: rejected("decrypt_failed")},
			{name: "encrypted under another APIv3 key", send: send(wxEnvelope(t, wrongAPIv3, tx(e.wxTransaction(otn, 8888)), nil), now, nil),
				want: unauthorized("decrypt_failed"), eff: rejected("decrypt_failed")},
			{name: "another algorithm", send: send(wxEnvelope(t, apiv3, tx(e.wxTransaction(otn, 8888)), res("algorithm", "AEAD_AES_128_GCM")), now, nil),
				want: unauthorized("decrypt_failed"), eff: rejected("decrypt_failed")},
			// Missing and repeated headers.
			{name: "no Wechatpay-Timestamp", send: send(body, now, drop("Wechatpay-Timestamp")), want: unauthorized("malformed"), eff: effect{evidence: "rejected/malformed", detail: "missing Wechatpay-Timestamp"}},
			{name: "no Wechatpay-Nonce", send: send(body, now, drop("Wechatpay-Nonce")), want: unauthorized("malformed"), eff: effect{evidence: "rejected/malformed", detail: "missing Wechatpay-Nonce"}},
			{name: "no Wechatpay-Signature", send: send(body, now, drop("Wechatpay-Signature")), want: unauthorized("malformed"), eff: effect{evidence: "rejected/malformed", detail: "missing Wechatpay-Signature"}},
			{name: "no Wechatpay-Serial", send: send(body, now, drop("Wechatpay-Serial")), want: unauthorized("malformed"), eff: effect{evidence: "rejected/malformed", detail: "missing Wechatpay-Serial"}},
			{name: "repeated Wechatpay-Timestamp", send: send(body, now, repeat("Wechatpay-Timestamp", "1")), want: unauthorized("malformed"), eff: effect{evidence: "rejected/malformed", detail: "repeated Wechatpay-Timestamp"}},
			{name: "repeated Wechatpay-Nonce", send: send(body, now, repeat("Wechatpay-Nonce", "x")), want: unauthorized("malformed"), eff: effect{evidence: "rejected/malformed", detail: "repeated Wechatpay-Nonce"}},
			{name: "repeated Wechatpay-Signature", send: send(body, now, repeat("Wechatpay-Signature", "AAAA")), want: unauthorized("malformed"), eff: effect{evidence: "rejected/malformed", detail: "repeated Wechatpay-Signature"}},
			{name: "repeated Wechatpay-Serial", send: send(body, now, repeat("Wechatpay-Serial", serial)), want: unauthorized("malformed"), eff: effect{evidence: "rejected/malformed", detail: "repeated Wechatpay-Serial"}},
			{name: "another Wechatpay-Signature-Type", send: send(body, now, set("Wechatpay-Signature-Type", "WECHATPAY2-SM2-WITH-SM3")), want: unauthorized("malformed"), eff: rejected("malformed")},
			{name: "probe signature", send: send(body, now, set("Wechatpay-Signature", "WECHATPAY/SIGNTEST/AAAA")), want: unauthorized("probe"), eff: rejected("probe")},
			// Shapes and sizes, signed correctly.
			{name: "empty body", send: send(nil, now, nil), want: unauthorized("malformed"), eff: rejected("malformed")},
			{name: "not JSON", send: send([]byte("out_trade_no="+otn), now, nil), want: unauthorized("malformed"), eff: rejected("malformed")},
			{name: "10 MB body", send: send(tenMB, now, nil), want: unauthorized("malformed"), eff: effect{evidence: "rejected/malformed", detail: "body larger than 65536 bytes"}},
			{name: "non-UTF-8 body", send: send(append(bytes.TrimSuffix(body, []byte("}")), `,"x":"caf`+"\xe9"+`"}`...), now, nil),
				want: unauthorized("malformed"), eff: rejected("malformed")},
			// Genuine, but the resource disagrees with the order or the app: anomalies, answered
			// 400 so that WeChat Pay retries; the order unchanged.
			{name: "amount mismatch inside the resource", send: send(wxEnvelope(t, apiv3, tx(e.wxTransaction(otn, 1)), nil), now, nil),
				want: wechatFail(http.StatusBadRequest, paynotify.ReasonAmountMismatch),
				eff:  effect{evidence: "anomaly/" + paynotify.ReasonAmountMismatch, events: []string{"order.anomaly"}, anomalies: 1}},
			{name: "another mchid inside the resource", send: send(wxEnvelope(t, apiv3, tx(wxWith(e.wxTransaction(otn, 8888), "mchid", "1900000109")), nil), now, nil),
				// Kept as app_id_mismatch (docs/wechatpay.md, "mchid").
				want: wechatFail(http.StatusBadRequest, paynotify.ReasonAppIDMismatch),
				eff:  effect{evidence: "anomaly/" + paynotify.ReasonAppIDMismatch, events: []string{"order.anomaly"}, anomalies: 1}},
			{name: "another appid inside the resource", send: send(wxEnvelope(t, apiv3, tx(wxWith(e.wxTransaction(otn, 8888), "appid", "wx0000000000000000")), nil), now, nil),
				want: wechatFail(http.StatusBadRequest, paynotify.ReasonAppIDMismatch),
				eff:  effect{evidence: "anomaly/" + paynotify.ReasonAppIDMismatch, events: []string{"order.anomaly"}, anomalies: 1}},
		}
		const okOTN = "bad_wechat_ok"
		rows = append(rows, row{name: "genuine", setup: func() { e.create(paynotify.ChannelWechatNative, okOTN, 8888) },
			send: send(wxEnvelope(t, apiv3, tx(e.wxTransaction(okOTN, 8888)), nil), now, nil), want: answer{status: http.StatusNoContent},
			eff: effect{evidence: "accepted", events: []string{"order.paid"}, orders: map[string]string{wechatApp + "/" + okOTN: "paid@v2"}}})
		e.runRows(rows)
	})
}

// wxWith returns r with k set to v.
func wxWith(r wxResource, k string, v any) wxResource {
	out := wxResource{}
	for kk, vv := range r {
		out[kk] = vv
	}
	out[k] = v
	return out
}
