package provider_test

// Answers checked against the question (a reviewer helper's audit of the Alipay API side).
// Answers are served by the package's fake gateway (fakeAlipay), signed by openssl with the key
// that plays Alipay.

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/paynotify/paynotify"
)

// A signed final refusal of the refund, then a refund-query answer that is about ANOTHER refund
// of another order (no refund_status): such an answer leaves the outcome unknown (the refund
// stays pending); it failed the refund, which then could not be retried under its number.
func TestAlipayRefund_QueryAnswerAboutAnotherRefund(t *testing.T) {
	for name, q := range map[string]string{
		"OtherRefundNoStatus": `{"code":"10000","msg":"Success","out_trade_no":"T9","out_request_no":"R9","trade_no":"2099"}`,
		// Any signed 10000 node without refund_status will do: the node name is not signed.
		"CloseAnswerOfT9": `{"code":"10000","msg":"Success","out_trade_no":"T9","trade_no":"2099"}`,
	} {
		t.Run(name, func(t *testing.T) {
			g, _ := fakeAlipay(t, map[string]alipayAnswer{
				"alipay.trade.refund":               {node: `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_STATUS_ERROR","sub_msg":"交易状态不合法"}`},
				"alipay.trade.fastpay.refund.query": {node: q},
			})
			f, err := g.Refund(context.Background(), testOrder, &paynotify.Refund{OutRequestNo: "R1", Amount: 8888}, "")
			if f != nil || paynotify.ErrorCode(err) != paynotify.EPROVIDERUNAVAILABLE {
				t.Fatalf("refund R1 of T1, refund query answered about %s: fact %v, err %v (code %s); want pending (provider_unavailable)",
					q, f, err, paynotify.ErrorCode(err))
			}
		})
	}
	// Same with a signed ACQ.TRADE_NOT_EXIST of the query that names another order (Alipay's
	// business failures carry out_trade_no: docs §5.3 sample).
	t.Run("QueryNotExistOfAnotherOrder", func(t *testing.T) {
		g, _ := fakeAlipay(t, map[string]alipayAnswer{
			"alipay.trade.refund":               {node: `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_STATUS_ERROR","sub_msg":"交易状态不合法"}`},
			"alipay.trade.fastpay.refund.query": {node: `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在","out_trade_no":"T9"}`},
		})
		f, err := g.Refund(context.Background(), testOrder, &paynotify.Refund{OutRequestNo: "R1", Amount: 8888}, "")
		if f != nil || paynotify.ErrorCode(err) != paynotify.EPROVIDERUNAVAILABLE {
			t.Fatalf("fact %v, err %v (code %s); want pending", f, err, paynotify.ErrorCode(err))
		}
	})
}

// The precreate answer's out_trade_no was never compared with the order's, unlike every other
// answer (close, query, refund): the QR code of another order was handed out as this order's.
func TestAlipayPrecreate_AnswerAboutAnotherOrder(t *testing.T) {
	g, _ := fakeAlipay(t, map[string]alipayAnswer{
		"alipay.trade.precreate": {node: `{"code":"10000","msg":"Success","out_trade_no":"T9","qr_code":"https:\/\/qr.alipay.com\/bax09999"}`},
	})
	o := *testOrder
	o.Channel, o.Subject = paynotify.ChannelAlipayPrecreate, "s"
	pay, err := g.Pay(context.Background(), &o, "https://m.example/notify", "")
	if err == nil {
		var p map[string]string
		json.Unmarshal(pay, &p)
		t.Fatalf("precreate of T1 answered about T9: accepted, pay %s; want an error (provider_unavailable)", p["qr_code"])
	}
}

// Alipay's throttle (code 40005 "Call Limited", docs/alipay.md "Gateway error codes") was classed
// a definitive refusal (provider_error): the reconciliation counted the check and waited
// then_every (docs/reconciliation.md "Provider limits": a throttle backs the app off, uncounted),
// and a precreate was answered 422 as refused.
func TestAlipay_CallLimitedIsNotARefusal(t *testing.T) {
	limited := alipayAnswer{node: `{"code":"40005","msg":"Call Limited","sub_code":"aop.ACQ.TRADE_QUERY_LIMIT","sub_msg":"调用频次超限"}`}
	g, _ := fakeAlipay(t, map[string]alipayAnswer{"alipay.trade.query": limited, "alipay.trade.precreate": limited})
	_, err := g.Query(context.Background(), testOrder)
	if paynotify.ErrorCode(err) != paynotify.EPROVIDERUNAVAILABLE {
		t.Errorf("query throttled: %v (code %s), want provider_unavailable", err, paynotify.ErrorCode(err))
	}
	o := *testOrder
	o.Channel, o.Subject = paynotify.ChannelAlipayPrecreate, "s"
	_, err = g.Pay(context.Background(), &o, "https://m.example/notify", "")
	if paynotify.ErrorCode(err) != paynotify.EPROVIDERUNAVAILABLE {
		t.Errorf("precreate throttled: %v (code %s), want provider_unavailable", err, paynotify.ErrorCode(err))
	}
}
