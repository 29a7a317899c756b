package paynotify_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// TestDecide checks every cell of docs/state_machine.md's table, plus the checks against our own
// order.
func TestDecide(t *testing.T) {
	const amount = 1000
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	order := func(s paynotify.OrderStatus, refunded paynotify.Amount) *paynotify.Order {
		return &paynotify.Order{App: "shop", OutTradeNo: "T1", Status: s, Amount: amount, RefundedAmount: refunded, Currency: "CNY", Version: 5}
	}
	paid := paynotify.Fact{Kind: paynotify.FactPaid, OutTradeNo: "T1", ProviderTradeNo: "P1", Amount: amount, HasAmount: true, At: at}
	finished := paynotify.Fact{Kind: paynotify.FactFinished, OutTradeNo: "T1", ProviderTradeNo: "P1", Amount: amount, HasAmount: true, At: at}
	closed := paynotify.Fact{Kind: paynotify.FactClosed, OutTradeNo: "T1", Amount: amount, HasAmount: true, At: at}
	refund := func(total paynotify.Amount) paynotify.Fact {
		return paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", ProviderTradeNo: "P1", Amount: amount, HasAmount: true, RefundTotal: total, RefundRequestNo: "R1", At: at}
	}
	paidWith := func(tradeNo string) *paynotify.Order {
		o := order(paynotify.StatusPaid, 0)
		o.ProviderTradeNo = tradeNo
		return o
	}
	otherTrade := func(f paynotify.Fact) paynotify.Fact { f.ProviderTradeNo = "P2"; return f }
	refundedAtProvider := func(f paynotify.Fact) paynotify.Fact { f.RefundedAtProvider = true; return f }
	const (
		pending  = paynotify.StatusPending
		paidS    = paynotify.StatusPaid
		finS     = paynotify.StatusFinished
		closedS  = paynotify.StatusClosed
		refunded = paynotify.StatusRefunded
	)
	const (
		evPaid     = paynotify.EventOrderPaid
		evFinished = paynotify.EventOrderFinished
		evClosed   = paynotify.EventOrderClosed
		evRefunded = paynotify.EventOrderRefunded
	)
	type want struct {
		events   []paynotify.EventType
		status   paynotify.OrderStatus // final status; "" when nothing changes
		refunded paynotify.Amount
		anomaly  string
	}
	tests := []struct {
		name  string
		order *paynotify.Order
		fact  paynotify.Fact
		want  want
	}{
		// Row "paid".
		{"Paid/Pending", order(pending, 0), paid, want{[]paynotify.EventType{evPaid}, paidS, 0, ""}},
		{"Paid/Paid", order(paidS, 0), paid, want{nil, "", 0, ""}},
		{"Paid/Finished", order(finS, 0), paid, want{nil, "", 0, ""}},
		{"Paid/Closed", order(closedS, 0), paid, want{[]paynotify.EventType{evPaid}, paidS, 0, paynotify.ReasonLatePayment}},
		{"Paid/Refunded", order(refunded, amount), paid, want{nil, "", 0, ""}},
		// Row "finished".
		{"Finished/Pending", order(pending, 0), finished, want{[]paynotify.EventType{evPaid, evFinished}, finS, 0, ""}},
		{"Finished/Paid", order(paidS, 0), finished, want{[]paynotify.EventType{evFinished}, finS, 0, ""}},
		{"Finished/Finished", order(finS, 0), finished, want{nil, "", 0, ""}},
		{"Finished/Closed", order(closedS, 0), finished, want{[]paynotify.EventType{evPaid, evFinished}, finS, 0, paynotify.ReasonLatePayment}},
		{"Finished/Refunded", order(refunded, amount), finished, want{nil, "", 0, ""}},
		// Row "closed unpaid".
		{"Closed/Pending", order(pending, 0), closed, want{[]paynotify.EventType{evClosed}, closedS, 0, ""}},
		{"Closed/Paid", order(paidS, 0), closed, want{nil, "", 0, paynotify.ReasonUnexpectedClose}},
		{"Closed/Finished", order(finS, 0), closed, want{nil, "", 0, paynotify.ReasonUnexpectedClose}},
		{"Closed/Closed", order(closedS, 0), closed, want{nil, "", 0, ""}},
		{"Closed/Refunded", order(refunded, amount), closed, want{nil, "", 0, ""}},
		// Row "refund, cumulative R < amount".
		{"PartialRefund/Pending", order(pending, 0), refund(300), want{[]paynotify.EventType{evPaid, evRefunded}, paidS, 300, ""}},
		{"PartialRefund/Paid", order(paidS, 0), refund(300), want{[]paynotify.EventType{evRefunded}, paidS, 300, ""}},
		{"PartialRefund/PaidGrows", order(paidS, 200), refund(300), want{[]paynotify.EventType{evRefunded}, paidS, 300, ""}},
		{"PartialRefund/PaidStale", order(paidS, 500), refund(300), want{nil, "", 0, ""}},
		{"PartialRefund/PaidSame", order(paidS, 300), refund(300), want{nil, "", 0, ""}},
		// A negative amount (no provider sends one; a signed one would move the total backwards).
		{"NegativeRefund/Paid", order(paidS, 500), func() paynotify.Fact {
			f := refund(400)
			f.RefundPerRequest, f.RefundAmount, f.RefundRequestNo = true, -100, "R2"
			return f
		}(), want{nil, "", 0, paynotify.ReasonAmountMismatch}},
		{"NegativeAmount/Pending", order(pending, 0), func() paynotify.Fact { f := paid; f.Amount, f.HasAmount = -1, false; return f }(),
			want{nil, "", 0, paynotify.ReasonAmountMismatch}},
		{"PartialRefund/Finished", order(finS, 0), refund(300), want{[]paynotify.EventType{evRefunded}, finS, 300, ""}},
		{"PartialRefund/FinishedStale", order(finS, 300), refund(300), want{nil, "", 0, ""}},
		{"PartialRefund/Closed", order(closedS, 0), refund(300), want{[]paynotify.EventType{evPaid, evRefunded}, paidS, 300, paynotify.ReasonLatePayment}},
		{"PartialRefund/Refunded", order(refunded, amount), refund(300), want{nil, "", 0, ""}},
		// Row "refund, cumulative R = amount".
		{"FullRefund/Pending", order(pending, 0), refund(amount), want{[]paynotify.EventType{evPaid, evRefunded}, refunded, amount, ""}},
		{"FullRefund/Paid", order(paidS, 300), refund(amount), want{[]paynotify.EventType{evRefunded}, refunded, amount, ""}},
		{"FullRefund/Finished", order(finS, 0), refund(amount), want{[]paynotify.EventType{evRefunded}, refunded, amount, ""}},
		{"FullRefund/Closed", order(closedS, 0), refund(amount), want{[]paynotify.EventType{evPaid, evRefunded}, refunded, amount, paynotify.ReasonLatePayment}},
		{"FullRefund/Refunded", order(refunded, amount), refund(amount), want{nil, "", 0, ""}},
		// Checks against our own order.
		{"ErrUnknownOrder", nil, paid, want{nil, "", 0, paynotify.ReasonUnknownOrder}},
		{"ErrAmountMismatch", order(pending, 0), func() paynotify.Fact { f := paid; f.Amount = 999; return f }(), want{nil, "", 0, paynotify.ReasonAmountMismatch}},
		{"ErrCurrencyMismatch", order(pending, 0), func() paynotify.Fact { f := paid; f.Currency = "USD"; return f }(), want{nil, "", 0, paynotify.ReasonCurrencyMismatch}},
		{"ErrRefundOverAmount", order(paidS, 0), refund(amount + 1), want{nil, "", 0, paynotify.ReasonAmountMismatch}},
		// A payment under another provider trade number: money arrived twice (issue 8).
		{"ErrDuplicatePayment/Paid", paidWith("P1"), otherTrade(paid), want{nil, "", 0, paynotify.ReasonDuplicatePayment}},
		{"ErrDuplicatePayment/Finished", func() *paynotify.Order { o := paidWith("P1"); o.Status = finS; return o }(), otherTrade(finished), want{nil, "", 0, paynotify.ReasonDuplicatePayment}},
		{"ErrDuplicatePayment/Refunded", func() *paynotify.Order { o := paidWith("P1"); o.Status, o.RefundedAmount = refunded, amount; return o }(), otherTrade(paid), want{nil, "", 0, paynotify.ReasonDuplicatePayment}},
		// A refund of another trade than the one that paid: the refund of a duplicate payment.
		{"ErrDuplicatePaymentRefund/Partial", paidWith("P1"), otherTrade(refund(300)), want{nil, "", 0, paynotify.ReasonDuplicatePaymentRefund}},
		{"ErrDuplicatePaymentRefund/Full", paidWith("P1"), otherTrade(refund(amount)), want{nil, "", 0, paynotify.ReasonDuplicatePaymentRefund}},
		{"ErrDuplicatePaymentRefund/Failed", paidWith("P1"), otherTrade(paynotify.Fact{Kind: paynotify.FactRefundFailed, OutTradeNo: "T1", RefundRequestNo: "R1"}), want{nil, "", 0, paynotify.ReasonDuplicatePaymentRefund}},
		{"OKRefundSameTradeNo", paidWith("P1"), refund(amount), want{[]paynotify.EventType{evRefunded}, refunded, amount, ""}},
		{"OKRefundTradeNoNotReported", paidWith("P1"), func() paynotify.Fact { f := refund(300); f.ProviderTradeNo = ""; return f }(), want{[]paynotify.EventType{evRefunded}, paidS, 300, ""}},
		{"OKSameTradeNo", paidWith("P1"), paid, want{nil, "", 0, ""}},
		{"OKTradeNoUnknown", paidWith(""), otherTrade(paid), want{nil, "", 0, ""}},
		// Paid, then refunded at the provider of an amount it does not say (WeChat Pay's
		// trade_state REFUND): applied, and raised while the order has no refund we know of.
		{"RefundedAtProvider/Pending", order(pending, 0), refundedAtProvider(paid), want{[]paynotify.EventType{evPaid}, paidS, 0, paynotify.ReasonRefundedAtProvider}},
		{"RefundedAtProvider/Paid", order(paidS, 0), refundedAtProvider(paid), want{nil, "", 0, paynotify.ReasonRefundedAtProvider}},
		{"RefundedAtProvider/Closed", order(closedS, 0), refundedAtProvider(paid), want{[]paynotify.EventType{evPaid}, paidS, 0, paynotify.ReasonRefundedAtProvider}},
		{"RefundedAtProvider/PaidPartlyRefunded", order(paidS, 300), refundedAtProvider(paid), want{nil, "", 0, ""}},
		{"RefundedAtProvider/Refunded", order(refunded, amount), refundedAtProvider(paid), want{nil, "", 0, ""}},
		{"OKAmountNotReported", order(pending, 0), func() paynotify.Fact { f := paid; f.HasAmount = false; f.Amount = 0; return f }(), want{[]paynotify.EventType{evPaid}, paidS, 0, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before paynotify.Order
			if tt.order != nil {
				before = *tt.order
			}
			d := paynotify.Decide(tt.order, tt.fact)
			if tt.order != nil && !reflect.DeepEqual(*tt.order, before) {
				t.Fatalf("Decide modified its input order")
			}
			var got []paynotify.EventType
			for i, s := range d.Steps {
				got = append(got, s.Event)
				if want := tt.order.Version + int64(i) + 1; s.Order.Version != want {
					t.Errorf("step %d version = %d, want %d", i, s.Order.Version, want)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want.events) {
				t.Errorf("events = %v, want %v", got, tt.want.events)
			}
			if d.Anomaly != tt.want.anomaly {
				t.Errorf("anomaly = %q, want %q", d.Anomaly, tt.want.anomaly)
			}
			final := d.Final()
			switch {
			case tt.want.status == "" && final != nil:
				t.Errorf("order changed to %s, want no change", final.Status)
			case tt.want.status != "" && final == nil:
				t.Errorf("no change, want %s", tt.want.status)
			case final != nil:
				if final.Status != tt.want.status || final.RefundedAmount != tt.want.refunded {
					t.Errorf("final = %s refunded %d, want %s refunded %d", final.Status, final.RefundedAmount, tt.want.status, tt.want.refunded)
				}
				if got[0] == evPaid && (final.PaidAt == nil || !final.PaidAt.Equal(at)) {
					t.Errorf("paid_at = %v, want %v", final.PaidAt, at)
				}
			}
		})
	}
}

func TestDecide_RefundStepCarriesRefund(t *testing.T) {
	o := &paynotify.Order{App: "shop", OutTradeNo: "T1", Status: paynotify.StatusPaid, Amount: 1000, RefundedAmount: 200, Version: 3}
	d := paynotify.Decide(o, paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", RefundTotal: 700, RefundRequestNo: "R2"})
	if len(d.Steps) != 1 || d.Steps[0].Refund == nil {
		t.Fatalf("steps = %+v", d.Steps)
	}
	if r := d.Steps[0].Refund; r.Amount != 500 || r.RefundedTotal != 700 || r.OutRequestNo != "R2" {
		t.Fatalf("refund = %+v, want amount 500 of total 700 under R2", r)
	}
}

func TestAmountString(t *testing.T) {
	if got := paynotify.Amount(8888).String(); got != "88.88" {
		t.Errorf("String = %q", got)
	}
	if got := paynotify.Amount(5).String(); got != "0.05" {
		t.Errorf("String = %q", got)
	}
}

// TestDecide_LocalCloseCheckAt: a close of our own with a CheckAt leaves the closed order with
// that NextCheckAt (asked about once more, docs/reconciliation.md); any other close, and a close
// of our own without one, leaves none, nor does a payment of an order so closed.
func TestDecide_LocalCloseCheckAt(t *testing.T) {
	expires := time.Date(2026, 11, 29, 10, 30, 0, 0, time.UTC)
	scheduled := expires.Add(-20 * time.Minute)
	pending := &paynotify.Order{App: "shop", OutTradeNo: "T1", Status: paynotify.StatusPending, Amount: 1000, Version: 1,
		ExpiresAt: expires, NextCheckAt: &scheduled}
	checkAt := expires.Add(paynotify.LocalCloseGrace)
	for _, c := range []struct {
		name string
		f    paynotify.Fact
		want *time.Time
	}{
		{"Local", paynotify.Fact{Kind: paynotify.FactClosed, OutTradeNo: "T1", Local: true, CheckAt: &checkAt}, &checkAt},
		{"LocalWithout", paynotify.Fact{Kind: paynotify.FactClosed, OutTradeNo: "T1", Local: true}, nil},
		{"Provider", paynotify.Fact{Kind: paynotify.FactClosed, OutTradeNo: "T1", CheckAt: &checkAt}, nil},
	} {
		d := paynotify.Decide(pending, c.f)
		got := d.Final()
		if got == nil || got.Status != paynotify.StatusClosed {
			t.Fatalf("%s: %+v, want closed", c.name, d)
		}
		if (got.NextCheckAt == nil) != (c.want == nil) || got.NextCheckAt != nil && !got.NextCheckAt.Equal(*c.want) {
			t.Errorf("%s: NextCheckAt %v, want %v", c.name, got.NextCheckAt, c.want)
		}
		if c.want == nil {
			continue
		}
		paid := paynotify.Decide(got, paynotify.Fact{Kind: paynotify.FactPaid, OutTradeNo: "T1", ProviderTradeNo: "P1", Amount: 1000, HasAmount: true})
		if o := paid.Final(); o == nil || o.Status != paynotify.StatusPaid || o.NextCheckAt != nil || paid.Anomaly != paynotify.ReasonLatePayment {
			t.Errorf("%s, then paid: %+v", c.name, paid)
		}
	}
	if got := paynotify.LocalCloseCheckAt(pending, expires.Add(-time.Hour)); !got.Equal(checkAt) {
		t.Errorf("closed before its expiry: asked at %v, want %v", got, checkAt)
	}
	late := expires.Add(2 * time.Hour)
	if got := paynotify.LocalCloseCheckAt(pending, late); !got.Equal(late.Add(paynotify.LocalCloseGrace)) {
		t.Errorf("closed after its expiry: asked at %v, want %v", got, late.Add(paynotify.LocalCloseGrace))
	}
}
