package paynotify_test

import (
	"context"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// TestProcess_AlipayRefundConfirmedByQueryThenNotifiedAnnouncedOnce (a reviewer helper's finding): our refunds
// R1 (3.00) and R2 (4.00) of an Alipay order of 10.00 are both pending; Alipay makes R2 first,
// then R1 (running totals 4.00, then 7.00). R1's answer was lost and its refund query confirms it
// (its own amount, 3.00: the order goes to 3.00, order.refunded R1). Then R1's own notification
// arrives, with Alipay's running total 7.00: R1 is already succeeded and announced, so it must not
// be announced a second time; then R2's notification (total 4.00) settles R2. Each refund is
// announced once, and the announced amounts add up to the order's refunded total (the invariant
// of TestProcess_RefundHeldByAnInferredAmountNotAnnouncedTwice).
func TestProcess_AlipayRefundConfirmedByQueryThenNotifiedAnnouncedOnce(t *testing.T) {
	ctx := context.Background()
	s, b := setupService(t)
	b.mustOrder(t, "T1")
	if _, err := s.Processor.Apply(ctx, b.app, paidFact("T1", "P1"), nil); err != nil {
		t.Fatal(err)
	}
	b.pendingRefund(t, "T1", "R1", 300)
	b.pendingRefund(t, "T1", "R2", 400)
	// R1's refund query (alipay.trade.fastpay.refund.query: the refund's own amount).
	if _, err := s.Processor.Apply(ctx, b.app, paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", ProviderTradeNo: "P1",
		RefundPerRequest: true, RefundRequestNo: "R1", RefundAmount: 300}, nil); err != nil {
		t.Fatal(err)
	}
	// R1's notification (TRADE_SUCCESS, out_biz_no R1, refund_fee 7.00: R2 was made before it),
	// then R2's (refund_fee 4.00).
	refundNotified(t, s, b, "R1", 700)
	refundNotified(t, s, b, "R2", 400)

	o := b.order(t, "T1")
	evs := refundEvents(t, b, "T1")
	var sum paynotify.Amount
	per := map[string]int{}
	for _, e := range evs {
		sum += e.Amount
		per[e.OutRequestNo]++
	}
	if o.RefundedAmount != 700 {
		t.Fatalf("order refunded %d, want 700", o.RefundedAmount)
	}
	if per["R1"] != 1 || per["R2"] != 1 || sum != o.RefundedAmount {
		t.Fatalf("order.refunded events %+v: R1 announced %d times, R2 %d, amounts adding up to %d; want each once, adding up to the order's %d",
			evs, per["R1"], per["R2"], sum, o.RefundedAmount)
	}
}

// TestRefund_AlipayPortalRefundBeforeOursAnnounced (a reviewer helper's finding): a portal refund P (5.00) is
// made at Alipay just before our refund R1 (3.00), whose synchronous answer (fund_change=Y,
// refund_fee 8.00, its running total counting P) comes back before P's notification. The order
// goes to 8.00, announced as R1's 3.00. P's notification (refund_fee 5.00) then records P with an
// inferred amount of 0 and announces nothing, and P's confirmation by the refund query (5.00)
// adds nothing to the total and announces nothing either: a refund of 5.00 is never announced,
// and the announced amounts (3.00) fall short of the order's refunded total (8.00).
func TestRefund_AlipayPortalRefundBeforeOursAnnounced(t *testing.T) {
	ctx := context.Background()
	s, b := setupService(t)
	b.mustOrder(t, "T1")
	if _, err := s.Processor.Apply(ctx, b.app, paidFact("T1", "P1"), nil); err != nil {
		t.Fatal(err)
	}
	// Alipay's fund_change=Y answer to R1, as provider.Alipay.Refund states it.
	b.fake.refundFn = func(o *paynotify.Order, r *paynotify.Refund) (*paynotify.Fact, error) {
		return &paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: o.OutTradeNo, ProviderTradeNo: "P1", RefundTotal: 800,
			RefundRequestNo: r.OutRequestNo, RefundAmount: r.Amount}, nil
	}
	if rf, _, err := s.Refund(ctx, "shop", "T1", paynotify.RefundRequest{Amount: 300, OutRequestNo: "R00001"}); err != nil || rf.Status != paynotify.RefundSucceeded {
		t.Fatalf("Refund = %+v, %v", rf, err)
	}
	b.now.Set(t0.Add(time.Minute))
	refundNotified(t, s, b, "PORTAL", 500) // P's notification: out_biz_no PORTAL, refund_fee 5.00
	b.fake.rquery["PORTAL"] = answer("REFUND_SUCCESS", &paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", ProviderTradeNo: "P1",
		RefundPerRequest: true, RefundRequestNo: "PORTAL", RefundAmount: 500})
	if _, err := s.CheckRefund(ctx, b.app, b.order(t, "T1"), b.refundOfT1(t, "PORTAL"), false); err != nil {
		t.Fatal(err)
	}
	if p := b.refundOfT1(t, "PORTAL"); p.Amount != 500 || p.NextCheckAt != nil {
		t.Fatalf("portal refund %+v, want 5.00 confirmed", p)
	}
	o := b.order(t, "T1")
	var sum paynotify.Amount
	evs := refundEvents(t, b, "T1")
	for _, e := range evs {
		sum += e.Amount
	}
	if o.RefundedAmount != 800 || sum != o.RefundedAmount {
		t.Fatalf("order refunded %d; order.refunded events %+v add up to %d: the portal refund of 5.00 was never announced", o.RefundedAmount, evs, sum)
	}
}

// TestCheckRefund_WechatNumberOfAnotherOrder (a reviewer helper's finding): WeChat Pay's out_refund_no is unique
// per merchant. Order T1's refund R00001 went pending when its call's outcome was unknown (a
// timeout); the number turns out to be order T9's refund. Service.Refund fails such a refund on
// WeChat Pay's verified answer naming the other order (OUT_REFUND_NO_USED, so that it stops
// holding T1's amount), but the reconciliation's refund query, which gets the same verified
// answer, rejects it as out_trade_no_mismatch and leaves the refund pending for good: T1's
// 10.00 stays held and no refund of T1 can be made.
func TestCheckRefund_WechatNumberOfAnotherOrder(t *testing.T) {
	ctx := context.Background()
	s, b := setupService(t)
	b.app.Provider = paynotify.ProviderWechatpay
	b.mustOrder(t, "T1")
	if _, err := s.Processor.Apply(ctx, b.app, paidFact("T1", "P1"), nil); err != nil {
		t.Fatal(err)
	}
	b.fake.refundFn = func(*paynotify.Order, *paynotify.Refund) (*paynotify.Fact, error) {
		return nil, paynotify.Errorf(paynotify.EPROVIDERUNAVAILABLE, "WeChat Pay is unreachable: timeout.")
	}
	if _, _, err := s.Refund(ctx, "shop", "T1", paynotify.RefundRequest{Amount: 1000, OutRequestNo: "R00001"}); paynotify.ErrorCode(err) != paynotify.EPROVIDERUNAVAILABLE {
		t.Fatalf("Refund: %v, want provider_unavailable", err)
	}
	// GET /v3/refund/domestic/refunds/R00001: verified, T9's refund (as provider.Wechat.QueryRefund states it).
	b.fake.rquery["R00001"] = answer("SUCCESS", &paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T9", ProviderTradeNo: "P9",
		Amount: 500, HasAmount: true, RefundPerRequest: true, RefundRequestNo: "R00001", RefundAmount: 500, ProviderRefundNo: "W1"})
	if _, err := s.CheckRefund(ctx, b.app, b.order(t, "T1"), b.refundOfT1(t, "R00001"), false); err != nil {
		t.Fatal(err)
	}
	if rf := b.refundOfT1(t, "R00001"); rf.Status != paynotify.RefundFailed {
		t.Fatalf("refund %+v: want failed, as Service.Refund fails it on the same answer (its number is T9's at WeChat Pay)", rf)
	}
	if _, _, err := s.Refund(ctx, "shop", "T1", paynotify.RefundRequest{Amount: 1000, OutRequestNo: "R00002"}); paynotify.ErrorCode(err) == paynotify.ECONFLICT {
		t.Fatalf("a refund of T1 under its own number: %v (the other order's refund still holds T1's amount)", err)
	}
}
