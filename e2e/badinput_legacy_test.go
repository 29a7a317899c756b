package e2e_test

import (
	"bytes"
	"crypto/rsa"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/sandbox"
)

// legacyFields are the fields of a mapi TRADE_SUCCESS notification of order otn for yuan, from
// the sandbox's default partner, sorted by key (no sign, no sign_type).
func (e *env) legacyFields(otn, yuan string) []kv {
	return fieldsOf(map[string]string{
		"discount": "0.00", "payment_type": "1", "subject": "e2e " + otn, "trade_no": "2026112900001000" + otn,
		"buyer_email": "buyer@example.com", "gmt_create": "2026-11-29 09:59:50", "notify_type": "trade_status_sync", "quantity": "1",
		"out_trade_no": otn, "seller_id": e.keys.LegacyPartner, "notify_time": "2026-11-29 10:00:05", "trade_status": "TRADE_SUCCESS",
		"is_total_fee_adjust": "N", "total_fee": yuan, "gmt_payment": "2026-11-29 10:00:00", "seller_email": e.keys.LegacySellerEmail,
		"price": yuan, "buyer_id": "2088102177846880", "notify_id": "forged" + otn, "use_coupon": "N",
	})
}

// TestBadInputLegacy: forged and re-signed legacy Alipay notifications (mapi and WAP, MD5 and
// RSA), posted to /notify/alipay-legacy/{app}, each answered exactly "fail" and kept as rejected
// evidence with its reason. A message whose signature holds (signed here, with the partner's MD5
// key or the legacy Alipay RSA key) still needs notify_verify to answer "true": the sandbox
// answers "false" for a notify_id it never issued, and "invalid" when told to; both are refused
// as notify_id_unconfirmed. None changes an order.
func TestBadInputLegacy(t *testing.T) {
	t.Parallel()
	wrongRSA := strangerKey(t)
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		// Time scale 1: the sandbox's own retries of the one notification it sends here come
		// minutes later, after the test.
		e := newEnv(t, s, options{scale: 1})
		e.addLegacyApp(legacyRSA, e.rsaLegacy)
		alipayRSA := parseRSAKey(t, []byte(e.keys.LegacyAlipayPrivateKey))
		md5Key := e.keys.LegacyMD5Key
		const otn, rsaOTN = "bad_legacy_target", "bad_legacy_rsa_target"
		e.createLegacy(legacyDemo, paynotify.ChannelAlipayDirect, otn)
		e.createLegacy(legacyRSA, paynotify.ChannelAlipayDirect, rsaOTN)
		form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
		post := func(app string, body []byte) func() (int, string) {
			return func() (int, string) { return e.rawPost("/notify/alipay-legacy/"+app, form, body) }
		}
		// md5 appends an MD5 signature (over canon with key) and sign_type.
		md5 := func(fields []kv, canon, key string) []kv {
			return append(append([]kv{}, fields...), kv{"sign", md5Sign([]byte(canon), key)}, kv{"sign_type", "MD5"})
		}
		genuineMD5 := func(fields []kv) []kv { return md5(fields, sortedCanonical(fields), md5Key) }
		rsaSigned := func(fields []kv, k *rsa.PrivateKey) []kv {
			return append(append([]kv{}, fields...), kv{"sign", rsaSign(t, k, []byte(sortedCanonical(fields)), true)}, kv{"sign_type", "RSA"})
		}
		rejected := func(reason string) effect { return effect{evidence: "rejected/" + reason} }
		unconfirmed := rejected(provider.ReasonNotifyIDUnconfirmed)
		good := e.legacyFields(otn, "12.34")
		rsaGood := e.legacyFields(rsaOTN, "12.34")
		reversed := append([]kv{}, good...)
		for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
			reversed[i], reversed[j] = reversed[j], reversed[i]
		}
		gbk, _ := simplifiedchinese.GBK.NewEncoder().String("测试商品")
		tenMB := append(encodeForm(genuineMD5(good)), "&pad="...)
		tenMB = append(tenMB, bytes.Repeat([]byte("x"), 10<<20)...)
		// A WAP notification: notify_data XML signed over the fixed-order string.
		wap := func(key, notifyID string) []byte {
			data := "<notify><out_trade_no>" + otn + "</out_trade_no><trade_no>2026112900001000" + otn + "</trade_no><trade_status>TRADE_SUCCESS</trade_status>" +
				"<total_fee>12.34</total_fee><seller_email>" + e.keys.LegacySellerEmail + "</seller_email><seller_id>" + e.keys.LegacyPartner +
				"</seller_id><notify_id>" + notifyID + "</notify_id></notify>"
			msg := "service=alipay.wap.trade.create.direct&v=1.0&sec_id=MD5&notify_data=" + data
			return encodeForm([]kv{{"service", "alipay.wap.trade.create.direct"}, {"sign", md5Sign([]byte(msg), key)}, {"sec_id", "MD5"}, {"v", "1.0"}, {"notify_data", data}})
		}
		var captured []byte // the sandbox's own notification of the "invalid" row

		rows := []row{
			{name: "MD5 with a wrong key", send: post(legacyDemo, encodeForm(md5(good, sortedCanonical(good), "0123456789abcdef0123456789abcdef"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "MD5 without the key", send: post(legacyDemo, encodeForm(md5(good, sortedCanonical(good), ""))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "MD5 in body order, not sorted", send: post(legacyDemo, encodeForm(md5(reversed, joinKV(reversed), md5Key))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "MD5, then the amount altered", send: post(legacyDemo, encodeForm(with(genuineMD5(good), "total_fee", "0.01"))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "no sign", send: post(legacyDemo, encodeForm(with(good, "sign_type", "MD5"))), want: alipayFail, eff: rejected("unsigned")},
			{name: "no sign_type", send: post(legacyDemo, encodeForm(without(genuineMD5(good), "sign_type"))), want: alipayFail, eff: rejected("missing_field")},
			{name: "sign_type RSA on an MD5 app", send: post(legacyDemo, encodeForm(with(genuineMD5(good), "sign_type", "RSA"))),
				want: alipayFail, eff: rejected("unsupported_sign_type")},
			{name: "duplicate total_fee", send: post(legacyDemo, encodeForm(append(genuineMD5(good), kv{"total_fee", "0.01"}))),
				want: alipayFail, eff: effect{evidence: "rejected/duplicate_key", detail: "total_fee"}},
			{name: "duplicate key percent-encoded", send: post(legacyDemo, append(encodeForm(genuineMD5(good)), "&total%5Ffee=0.01"...)),
				want: alipayFail, eff: rejected("duplicate_key")},
			{name: "wrong partner, signed", send: post(legacyDemo, encodeForm(genuineMD5(append(append([]kv{}, good...), kv{"partner", "2088000000000001"})))),
				want: alipayFail, eff: rejected("wrong_partner")},
			{name: "no notify_id, signed", send: post(legacyDemo, encodeForm(genuineMD5(without(good, "notify_id")))),
				want: alipayFail, eff: rejected("missing_field")},
			{name: "GBK bytes to a UTF-8 app, signed", send: post(legacyDemo, encodeForm(genuineMD5(with(good, "subject", gbk)))),
				want: alipayFail, eff: rejected("bad_charset")},
			{name: "empty body", send: post(legacyDemo, nil), want: alipayFail, eff: rejected("unsigned")},
			{name: "10 MB body", send: post(legacyDemo, tenMB), want: alipayFail, eff: effect{evidence: "rejected/malformed", detail: "body larger than 65536 bytes"}},
			// Signed right (the MD5 key leaked): notify_verify answers false for a notify_id
			// Alipay never issued.
			{name: "MD5 right, notify_id forged: notify_verify false", send: post(legacyDemo, encodeForm(genuineMD5(good))), want: alipayFail, eff: unconfirmed},
			// WAP notifications.
			{name: "WAP, MD5 with a wrong key", send: post(legacyDemo, wap("0123456789abcdef0123456789abcdef", "forged-wap")),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "WAP, MD5 right, notify_id forged", send: post(legacyDemo, wap(md5Key, "forged-wap")), want: alipayFail, eff: unconfirmed},
			// The RSA app.
			{name: "RSA by a stranger's key", send: post(legacyRSA, encodeForm(rsaSigned(rsaGood, wrongRSA))),
				want: alipayFail, eff: rejected("signature_invalid")},
			{name: "MD5 on an RSA app", send: post(legacyRSA, encodeForm(genuineMD5(rsaGood))), want: alipayFail, eff: rejected("unsupported_sign_type")},
			{name: "RSA right, notify_id forged: notify_query false", send: post(legacyRSA, encodeForm(rsaSigned(rsaGood, alipayRSA))),
				want: alipayFail, eff: unconfirmed},
			// The sandbox's own notification of a paid trade, its notify_verify told to answer
			// "invalid": posted again as it was sent.
			{name: "genuine, notify_verify invalid", setup: func() {
				const o = "bad_legacy_invalid"
				e.faults(o, sandbox.Faults{NotifyVerify: sandbox.NotifyVerifyInvalid})
				e.payLegacy(e.createLegacy(legacyDemo, paynotify.ChannelAlipayDirect, o))
				as := e.waitAttempts(sandbox.AttemptFilter{OutTradeNo: o}, 1)
				if as[0].Acked || as[0].Response != "fail" {
					t.Fatalf("the sandbox's notification: %s", summary(as))
				}
				captured = as[0].RequestBody
			}, send: func() (int, string) { return post(legacyDemo, captured)() }, want: alipayFail, eff: unconfirmed},
		}
		e.runRows(rows)
		// notify_verify was asked only about messages whose signature held: the three forged
		// notify_ids (false) and the sandbox's notification, twice (invalid).
		var answers []string
		for _, q := range e.sb.Queries(sandbox.QueryFilter{API: sandbox.APILegacyNotifyVerify}) {
			answers = append(answers, q.Result)
		}
		if got := strings.Join(answers, ","); got != "false,false,false,invalid,invalid" {
			t.Errorf("notify_verify answers %q, want false (MD5), false (WAP), false (RSA), invalid twice", got)
		}
	})
}
