package provider_test

import (
	"context"
	"errors"
	"testing"

	"github.com/paynotify/paynotify"
)

// A precreate refused because the trade is paid already (a signed ACQ.TRADE_HAS_SUCCESS) is a
// refusal (provider_error) that also says so (paynotify.ErrPaidAtProvider): the Service then
// stores the order and queries it. Unsigned, or another refusal, it says nothing of the kind.
func TestAlipayPrecreate_PaidAlready(t *testing.T) {
	paid := `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_HAS_SUCCESS","sub_msg":"交易已被支付"}`
	for _, tc := range []struct {
		name   string
		answer alipayAnswer
		code   string
		isPaid bool
	}{
		{"signed", alipayAnswer{node: paid}, paynotify.EPROVIDER, true},
		{"unsigned", alipayAnswer{node: paid, unsigned: true}, paynotify.EPROVIDERUNAVAILABLE, false},
		{"closed", alipayAnswer{node: `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_HAS_CLOSE","sub_msg":"交易已经关闭"}`}, paynotify.EPROVIDER, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _ := fakeAlipay(t, map[string]alipayAnswer{"alipay.trade.precreate": tc.answer})
			o := *testOrder
			o.Channel, o.Subject = paynotify.ChannelAlipayPrecreate, "s"
			_, err := g.Pay(context.Background(), &o, "https://m.example/notify", "")
			if paynotify.ErrorCode(err) != tc.code || errors.Is(err, paynotify.ErrPaidAtProvider) != tc.isPaid {
				t.Fatalf("precreate: %v (code %s, paid at provider %v); want code %s, paid at provider %v",
					err, paynotify.ErrorCode(err), errors.Is(err, paynotify.ErrPaidAtProvider), tc.code, tc.isPaid)
			}
		})
	}
}

// A WeChat Pay prepay refused because the order is paid already (a signed ORDERPAID) is a refusal
// (provider_error) that also says so (paynotify.ErrPaidAtProvider); unsigned, or another
// refusal, it says nothing of the kind.
func TestWechatPrepay_PaidAlready(t *testing.T) {
	paid := `{"code":"ORDERPAID","message":"该订单已支付"}`
	for _, tc := range []struct {
		name   string
		answer wxAnswer
		code   string
		isPaid bool
	}{
		{"signed", wxAnswer{status: 403, body: paid}, paynotify.EPROVIDER, true},
		{"signed 400", wxAnswer{status: 400, body: paid}, paynotify.EPROVIDER, true},
		{"unsigned", wxAnswer{status: 403, body: paid, unsigned: true}, paynotify.EPROVIDERUNAVAILABLE, false},
		{"other", wxAnswer{status: 400, body: `{"code":"OUT_TRADE_NO_USED","message":"商户订单号重复"}`}, paynotify.EPROVIDER, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, _ := fakeWechat(t, tc.answer)
			o := *testOrder
			o.Channel = paynotify.ChannelWechatNative
			_, err := g.Pay(context.Background(), &o, "https://m.example/notify", "")
			if paynotify.ErrorCode(err) != tc.code || errors.Is(err, paynotify.ErrPaidAtProvider) != tc.isPaid {
				t.Fatalf("prepay: %v (code %s, paid at provider %v); want code %s, paid at provider %v",
					err, paynotify.ErrorCode(err), errors.Is(err, paynotify.ErrPaidAtProvider), tc.code, tc.isPaid)
			}
		})
	}
}
