package provider_test

import (
	"crypto/aes"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/wechatpay"
)

// v2SignedWith is v2Signed's message with the sign given, not computed: a genuine sign put on
// regrouped fields.
func v2SignedWith(fields [][2]string, sign string) string {
	var xml strings.Builder
	for _, f := range fields {
		fmt.Fprintf(&xml, "<%s><![CDATA[%s]]></%s>", f[0], f[1], f[0])
	}
	return "<xml>" + xml.String() + "<sign><![CDATA[" + sign + "]]></sign></xml>"
}

// v2ReqInfo encrypts a refund's <root> as WeChat Pay does (AES-256-ECB under the lower-case hex
// MD5 of the APIv2 key, PKCS#7), with crypto/aes and not our code.
func v2ReqInfo(key, plain string) string {
	sum := md5.Sum([]byte(key))
	blk, err := aes.NewCipher([]byte(fmt.Sprintf("%x", sum)))
	if err != nil {
		panic(err)
	}
	pad := 16 - len(plain)%16
	pt := []byte(plain + strings.Repeat(string(rune(pad)), pad))
	for i := 0; i < len(pt); i += 16 {
		blk.Encrypt(pt[i:i+16], pt[i:i+16])
	}
	return base64.StdEncoding.EncodeToString(pt)
}

// TestWechatV2_Regrouped (from a reviewer helper's audit): the APIv2 sign covers the fields
// joined as name=value with "&", so a genuine payment of T1 whose attach holds buyer text
// "gift&mch_id=…&out_trade_no=T2&p=" can be regrouped into a payment of T2 under the same sign.
// Both the genuine and the regrouped one are refused as malformed (the genuine payment is found by
// the reconciliation's query).
func TestWechatV2_Regrouped(t *testing.T) {
	const key = "192006250b4c09247ec02edce69f6a2d"
	v := &provider.WechatV2{APIKey: []byte(key)}
	genuine := [][2]string{{"appid", "wx2421b1c4370ec43b"}, {"attach", "gift&mch_id=10000100&out_trade_no=T2&p="}, {"bank_type", "CMC"},
		{"cash_fee", "100"}, {"fee_type", "CNY"}, {"mch_id", "10000100"}, {"nonce_str", "abc"}, {"out_trade_no", "T1"},
		{"result_code", "SUCCESS"}, {"return_code", "SUCCESS"}, {"time_end", "20240601123500"}, {"total_fee", "100"},
		{"transaction_id", "4200000001"}}
	gbody := v2Signed(key, genuine)
	_, sign, _ := strings.Cut(gbody, "<sign><![CDATA[")
	sign, _, _ = strings.Cut(sign, "]]>")
	// The same signed string: attach=gift&mch_id=10000100&out_trade_no=T2&p=&bank_type=CMC&…
	regrouped := [][2]string{{"appid", "wx2421b1c4370ec43b"}, {"attach", "gift"}, {"mch_id", "10000100"}, {"out_trade_no", "T2"},
		{"p", "&bank_type=CMC&cash_fee=100&fee_type=CNY&mch_id=10000100&nonce_str=abc&out_trade_no=T1"},
		{"result_code", "SUCCESS"}, {"return_code", "SUCCESS"}, {"time_end", "20240601123500"}, {"total_fee", "100"},
		{"transaction_id", "4200000001"}}
	// Control: the regrouped fields, signed afresh, give the genuine sign.
	if !strings.Contains(v2Signed(key, regrouped), sign) {
		t.Fatal("control: the regrouped fields do not sign to the genuine sign")
	}
	for name, body := range map[string]string{"Genuine": gbody, "Regrouped": v2SignedWith(regrouped, sign)} {
		f, err := v.Verify(nil, []byte(body), time.Now())
		var rej *paynotify.RejectError
		if !errors.As(err, &rej) || rej.Reason != paynotify.ReasonMalformed || !strings.Contains(rej.Detail, `holds "&`) {
			t.Errorf("%s: fact %+v, err %v; want malformed", name, f, err)
		}
	}
	plain := [][2]string{{"appid", "wx2421b1c4370ec43b"}, {"attach", "note: <req_info>"}, {"mch_id", "10000100"}, {"nonce_str", "abc"},
		{"out_trade_no", "T3"}, {"result_code", "SUCCESS"}, {"return_code", "SUCCESS"}, {"time_end", "20240601123500"},
		{"total_fee", "100"}, {"transaction_id", "4200000003"}}
	if f, err := v.Verify(nil, []byte(v2Signed(key, plain)), time.Now()); err != nil || f.Kind != paynotify.FactPaid || f.OutTradeNo != "T3" {
		t.Errorf("a payment whose attach holds <req_info>: %+v, %v; want a payment (it was taken for a refund)", f, err)
	}
}

// TestWechatV2_RefundStatuses: a refund notification's refund_status (SUCCESS, REFUNDCLOSE, or
// CHANGE, APIv3's ABNORMAL) only has the refund asked about: the fact is the query's answer
// (SUCCESS a refund, CLOSED a failure, ABNORMAL an abnormal refund, neither made nor failed),
// whatever the notification said. Any other refund_status, or none, is refused without a query,
// not acknowledged as a duplicate with nothing recorded.
func TestWechatV2_RefundStatuses(t *testing.T) {
	const key = "192006250b4c09247ec02edce69f6a2d"
	body := func(status string) []byte {
		plain := "<root><out_refund_no>R1</out_refund_no><out_trade_no>T1</out_trade_no><refund_fee>100</refund_fee><total_fee>100</total_fee>" +
			"<refund_status>" + status + "</refund_status></root>"
		return []byte("<xml><return_code>SUCCESS</return_code><appid>wx2421b1c4370ec43b</appid><mch_id>10000100</mch_id><req_info>" +
			v2ReqInfo(key, plain) + "</req_info></xml>")
	}
	for _, claimed := range []string{"SUCCESS", "CHANGE", "REFUNDCLOSE"} {
		for answer, want := range map[string]paynotify.FactKind{"SUCCESS": paynotify.FactRefund, "ABNORMAL": paynotify.FactRefundAbnormal,
			"CLOSED": paynotify.FactRefundFailed} {
			q := &refundQuery{answer: &wechatpay.Refund{OutTradeNo: "T1", OutRefundNo: "R1", RefundStatus: answer}}
			q.answer.Amount.Total, q.answer.Amount.Refund = 100, 100
			f, err := (&provider.WechatV2{APIKey: []byte(key), Refunds: q}).Verify(nil, body(claimed), time.Now())
			if err != nil || f.Kind != want || fmt.Sprint(q.asked) != "[R1]" {
				t.Errorf("refund_status %q, the query's %q: %+v, %v (asked %v); want %s", claimed, answer, f, err, q.asked, want)
			}
		}
	}
	for _, status := range []string{"PROCESSING", ""} {
		q := &refundQuery{}
		f, err := (&provider.WechatV2{APIKey: []byte(key), Refunds: q}).Verify(nil, body(status), time.Now())
		var rej *paynotify.RejectError
		if !errors.As(err, &rej) || rej.Reason != paynotify.ReasonMalformed || len(q.asked) != 0 {
			t.Errorf("refund_status %q: %+v, %v (asked %v); want malformed", status, f, err, q.asked)
		}
	}
}
