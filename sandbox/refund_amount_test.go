package sandbox

import (
	"testing"
)

// TestRefundAmountBounds: as the providers do, the sandbox refuses a refund of less than 1 fen or
// more than the trade's amount, so that it never signs a notification of a negative refund, and
// a legacy price × quantity that does not fit in int64 fen.
func TestRefundAmountBounds(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	for _, p := range []string{ProviderAlipay, ProviderWechatpay} {
		product := map[string]string{ProviderAlipay: "page", ProviderWechatpay: "native"}[p]
		otn := "RB" + product
		if _, err := b.sb.CreateOrder(OrderRequest{Provider: p, Product: product, OutTradeNo: otn, Amount: 1000, NotifyURL: "http://127.0.0.1:1/notify"}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.sb.Act("pay", ActionRequest{Provider: p, OutTradeNo: otn}); err != nil {
			t.Fatalf("%s: pay: %v", p, err)
		}
		for _, amount := range []int64{-100, 1001} {
			if _, err := b.sb.Act("refund", ActionRequest{Provider: p, OutTradeNo: otn, Amount: amount, OutRequestNo: "R" + p}); err == nil {
				t.Errorf("%s: a refund of %d fen of a 1000-fen trade was made", p, amount)
			}
		}
	}
	if _, e := legacyAmount(LegacyProductDirect, map[string]string{"price": "42949672.97", "quantity": "4294967297"}); e == nil {
		t.Error("price × quantity past int64 fen was accepted")
	}
}
