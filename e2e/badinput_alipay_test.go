package e2e_test

import (
	"bytes"
	"crypto/rsa"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/paynotify/paynotify"
)

// alipayFields are the fields of a TRADE_SUCCESS notification of order otn for yuan, from the
// sandbox's default app to its seller, sorted by key.
func (e *env) alipayFields(otn, yuan string) []kv {
	return fieldsOf(map[string]string{
		"notify_time": "2026-11-29 10:00:05", "notify_type": "trade_status_sync", "notify_id": "bad-" + otn,
		"app_id": e.keys.AlipayAppID, "auth_app_id": e.keys.AlipayAppID, "charset": "utf-8", "version": "1.0",
		"trade_no": "2026112922001400" + otn, "out_trade_no": otn, "buyer_id": "2088102177846880",
		"seller_id": e.keys.AlipaySellerID, "trade_status": "TRADE_SUCCESS", "total_amount": yuan, "receipt_amount": yuan,
		"buyer_pay_amount": yuan, "subject": "测试 order", "gmt_create": "2026-11-29 09:59:50", "gmt_payment": "2026-11-29 10:00:00",
	})
}

// TestBadInputAlipay: forged and re-signed Alipay notifications, posted to /notify/alipay/{app}.
// Every one is answered exactly "fail" (status 200, as Alipay wants) and kept as rejected evidence
// with its reason, or, when genuine but not matching the order, recorded as an anomaly (also
// answered "fail"); none changes an order. The last rows are genuine and pay their orders.
func TestBadInputAlipay(t *testing.T) {
	t.Parallel()
	alipayKey := sandboxKey(t, "alipay_private_key.pem")
	wrongKey := strangerKey(t)
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		const otn = "bad_alipay_target"
		e.create(paynotify.ChannelAlipayPage, otn, 8888)
		path := "/notify/alipay/" + alipayApp
		form := http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}}
		post := func(h http.Header, body []byte) func() (int, string) {
			return func() (int, string) { return e.rawPost(path, h, body) }
		}
		good := e.alipayFields(otn, "88.88")
		// signed appends sign (over canon, by key, SHA-1 or SHA-256) and sign_type to fields.
		signed := func(fields []kv, canon string, key *rsa.PrivateKey, sha1 bool, signType string) []kv {
			out := append([]kv{}, fields...)
			out = append(out, kv{"sign", rsaSign(t, key, []byte(canon), sha1)})
			if signType != "" {
				out = append(out, kv{"sign_type", signType})
			}
			return out
		}
		// genuine is fields signed as Alipay signs them (RSA2 over the sorted canonical string).
		genuine := func(fields []kv) []kv { return signed(fields, sortedCanonical(fields), alipayKey, false, "RSA2") }
		rejected := func(reason string) effect { return effect{evidence: "rejected/" + reason} }
		anomaly := func(reason string) effect {
			return effect{evidence: "anomaly/" + reason, events: []string{"order.anomaly"}, anomalies: 1}
		}

		reversed := append([]kv{}, good...)
		for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
			reversed[i], reversed[j] = reversed[j], reversed[i]
		}
		var bodyOrder []string
		for _, f := range reversed {
			bodyOrder = append(bodyOrder, f.k+"="+f.v)
		}
		encoded := strings.Split(string(encodeForm(good)), "&")
		v2 := append(append([]kv{}, good...), kv{"sign_type", "RSA2"})
		cheaper := with(good, "total_amount", "0.01")
		gbkSubject, _ := simplifiedchinese.GBK.NewEncoder().String("测试商品：中文标题")
		gbkAsUTF8 := with(good, "subject", gbkSubject) // GBK bytes, charset still utf-8
		gbkDeclared := with(good, "charset", "gbk")
		special := "a&b=c%d+e\nf g"
		tenMB := append(encodeForm(genuine(good)), "&pad="...)
		tenMB = append(tenMB, bytes.Repeat([]byte("x"), 10<<20)...)
		dupTotal := append(genuine(good), kv{"total_amount", "0.01"})

		rows := []row{
			// Forged: signed by a key that is not Alipay's.
			{name: "wrong key", send: post(form, encodeForm(signed(good, sortedCanonical(good), wrongKey, false, "RSA2"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			// sign_type swapped: the signature must be RSA2 (the configured algorithm) whatever the
			// message declares (sign_type is not signed).
			{name: "SHA1 signature declared RSA", send: post(form, encodeForm(signed(good, sortedCanonical(good), alipayKey, true, "RSA"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "SHA1 signature declared RSA2", send: post(form, encodeForm(signed(good, sortedCanonical(good), alipayKey, true, "RSA2"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			// Signatures over a differently built string.
			{name: "signed in body order, not sorted", send: post(form, encodeForm(signed(reversed, strings.Join(bodyOrder, "&"), alipayKey, false, "RSA2"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "signed with sign_type in the string (V2 rule)", send: post(form, encodeForm(signed(good, canonicalWith(v2), alipayKey, false, "RSA2"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "signed over the percent-encoded values", send: post(form, encodeForm(signed(good, strings.Join(encoded, "&"), alipayKey, false, "RSA2"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "signed joined by newlines", send: post(form, encodeForm(signed(good, strings.ReplaceAll(sortedCanonical(good), "&", "\n"), alipayKey, false, "RSA2"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "signed over another amount", send: post(form, encodeForm(signed(good, sortedCanonical(cheaper), alipayKey, false, "RSA2"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "genuine, then the amount altered", send: post(form, encodeForm(with(genuine(good), "total_amount", "0.01"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "no sign", send: post(form, encodeForm(good)), want: alipayFail, eff: rejected("signature_invalid")},
			// Duplicate keys: the signature covers one copy; which one a reader keeps is ambiguous.
			{name: "duplicate total_amount", send: post(form, encodeForm(dupTotal)), want: alipayFail, eff: effect{evidence: "rejected/duplicate_key", detail: "total_amount"}},
			{name: "duplicate out_trade_no, same value", send: post(form, encodeForm(append(genuine(good), kv{"out_trade_no", otn}))),
				want: alipayFail, eff: rejected("duplicate_key")},
			{name: "duplicate key percent-encoded", send: post(form, append(encodeForm(genuine(good)), "&total%5Famount=0.01"...)),
				want: alipayFail, eff: rejected("duplicate_key")},
			{name: "duplicate key fully percent-encoded", send: post(form, append(encodeForm(genuine(good)), "&%74%6F%74%61%6C_%61mount=0.01"...)),
				want: alipayFail, eff: rejected("duplicate_key")},
			{name: "duplicate sign", send: post(form, append(encodeForm(genuine(good)), "&sign=AAAA"...)),
				want: alipayFail, eff: rejected("duplicate_key")},
			// & = % + and newlines in a value, signed over the true value but not (or wrongly)
			// percent-encoded on the wire: the fields read differ from the ones signed.
			{name: "& and = in a value not encoded", send: post(form, rawValue(genuine(with(good, "body", "a&b=c")), "body")),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "+ in a value not encoded (read as a space)", send: post(form, rawValue(genuine(with(good, "body", "1+1")), "body")),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "bad percent escape in a value", send: post(form, rawValue(genuine(with(good, "body", "100%zz")), "body")),
				want: alipayFail, eff: rejected("malformed")},
			{name: "newline in a value, the signature without it", send: post(form, encodeForm(with(genuine(with(good, "body", "line")), "body", "line\n"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			// Charsets: GBK bytes under a declared utf-8, signed over those bytes; GBK declared
			// and sent, signed over the UTF-8 text.
			{name: "GBK bytes declared utf-8", send: post(form, encodeForm(genuine(gbkAsUTF8))), want: alipayFail, eff: rejected("malformed")},
			{name: "GBK declared, signed over UTF-8", send: post(form, encodeForm(signed(with(gbkDeclared, "subject", gbkSubject), sortedCanonical(with(gbkDeclared, "subject", "测试商品：中文标题")), alipayKey, false, "RSA2"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "non-UTF-8 byte in a value", send: post(form, encodeForm(genuine(with(good, "body", "caf\xe9")))), want: alipayFail, eff: rejected("malformed")},
			{name: "non-UTF-8 byte in a key", send: post(form, encodeForm(genuine(append(append([]kv{}, good...), kv{"x\xff", "1"})))), want: alipayFail, eff: rejected("malformed")},
			{name: "unknown charset", send: post(form, encodeForm(genuine(with(good, "charset", "koi8-r")))), want: alipayFail, eff: rejected("malformed")},
			// Size and shape.
			{name: "empty body", send: post(form, nil), want: alipayFail, eff: rejected("signature_invalid")},
			{name: "10 MB body", send: post(form, tenMB), want: alipayFail, eff: effect{evidence: "rejected/malformed", detail: "body larger than 65536 bytes"}},
			{name: "Content-Type application/json", send: post(http.Header{"Content-Type": {"application/json"}}, encodeForm(genuine(good))),
				want: alipayFail, eff: rejected("malformed")},
			{name: "Content-Type text/plain", send: post(http.Header{"Content-Type": {"text/plain"}}, encodeForm(genuine(good))),
				want: alipayFail, eff: rejected("malformed")},
			{name: "Content-Type multipart/form-data", send: post(http.Header{"Content-Type": {"multipart/form-data; boundary=x"}}, encodeForm(genuine(good))),
				want: alipayFail, eff: rejected("malformed")},
			// Genuine, but not about this order as we have it: anomalies (one order.anomaly event
			// each, also for an order we do not have), answered fail so that Alipay retries while
			// someone looks (docs/api.md, "Evidence"); the order unchanged.
			{name: "genuine, amount mismatch", send: post(form, encodeForm(genuine(cheaper))), want: alipayFail, eff: anomaly(paynotify.ReasonAmountMismatch)},
			// The same message again (Alipay's retry): evidence, but no second anomaly or event.
			{name: "genuine, amount mismatch, retried", send: post(form, encodeForm(genuine(cheaper))), want: alipayFail,
				eff: effect{evidence: "anomaly/" + paynotify.ReasonAmountMismatch}},
			{name: "genuine, another app_id", send: post(form, encodeForm(genuine(with(with(good, "app_id", "2021000000000001"), "notify_id", "bad-appid")))),
				want: alipayFail, eff: anomaly(paynotify.ReasonAppIDMismatch)},
			{name: "genuine, another seller", send: post(form, encodeForm(genuine(with(with(good, "seller_id", "2088000000000001"), "notify_id", "bad-seller")))),
				want: alipayFail, eff: anomaly(paynotify.ReasonSellerMismatch)},
			{name: "genuine, unknown order", send: post(form, encodeForm(genuine(e.alipayFields("bad_alipay_nosuch", "88.88")))),
				want: alipayFail, eff: anomaly(paynotify.ReasonUnknownOrder)},
			// An out_trade_no no order can have (NUL): the same anomaly on both stores (the text
			// kept with U+FFFD in place of NUL), not a failure to store it.
			{name: "genuine, unknown order named with NUL", send: post(form, encodeForm(genuine(with(e.alipayFields("bad_alipay_nul\x00", "88.88"), "notify_id", "bad-nul")))),
				want: alipayFail, eff: anomaly(paynotify.ReasonUnknownOrder)},
		}
		// Genuine notifications, each paying its own order: the signer above is right, and & = %
		// + and newlines in values, correctly encoded, are read as signed; GBK declared and sent
		// is read as GBK.
		// sign_type is outside the signature and not used to verify: a genuine RSA2 signature
		// under another label, or none, is still Alipay's.
		for _, g := range []struct {
			name, otn string
			fields    func(otn string) []kv
			signType  string
		}{
			{"genuine", "bad_alipay_ok", func(o string) []kv { return e.alipayFields(o, "88.88") }, "RSA2"},
			{"genuine RSA2 signature declared RSA", "bad_alipay_label", func(o string) []kv { return e.alipayFields(o, "88.88") }, "RSA"},
			{"genuine without sign_type", "bad_alipay_nolabel", func(o string) []kv { return e.alipayFields(o, "88.88") }, ""},
			{"genuine with & = % + and a newline in values", "bad_alipay_special", func(o string) []kv {
				return with(with(e.alipayFields(o, "88.88"), "body", special), "subject", "x=1&y=2%3 +")
			}, "RSA2"},
			{"genuine GBK", "bad_alipay_gbk", func(o string) []kv {
				return with(with(e.alipayFields(o, "88.88"), "charset", "gbk"), "subject", gbkSubject)
			}, "RSA2"},
		} {
			rows = append(rows, row{name: g.name, setup: func() { e.create(paynotify.ChannelAlipayPage, g.otn, 8888) },
				send: post(form, encodeForm(signed(g.fields(g.otn), sortedCanonical(g.fields(g.otn)), alipayKey, false, g.signType))), want: alipaySuccess,
				eff: effect{evidence: "accepted", events: []string{"order.paid"}, orders: map[string]string{alipayApp + "/" + g.otn: "paid@v2"}}})
		}
		e.runRows(rows)
	})
}

// rawValue percent-encodes fields in their order, except the value of key, written as it is: a
// sender that forgot to encode one value.
func rawValue(fields []kv, key string) []byte {
	parts := make([]string, len(fields))
	for i, f := range fields {
		v := url.QueryEscape(f.v)
		if f.k == key {
			v = f.v
		}
		parts[i] = url.QueryEscape(f.k) + "=" + v
	}
	return []byte(strings.Join(parts, "&"))
}

// canonicalWith is the sorted canonical string that keeps sign_type (the V2 rule of Alipay's
// gateway notifications, not the one of trade notifications).
func canonicalWith(fields []kv) string {
	var fs []kv
	for _, f := range fields {
		if f.k != "sign" && f.v != "" {
			fs = append(fs, f)
		}
	}
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].k < fs[j].k })
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.k + "=" + f.v
	}
	return strings.Join(parts, "&")
}
