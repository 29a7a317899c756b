package e2e_test

import (
	"net/http"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sandbox"
)

// payAndWait creates an order of channel, has the buyer pay it and waits until it is paid.
func (e *env) payAndWait(channel, otn string, amount int64) order {
	e.t.Helper()
	o := e.create(channel, otn, amount)
	e.pay(channel, o.Pay)
	return e.waitStatus(o.App, otn, "paid")
}

// refund asks the API for a refund and returns the HTTP status and the refund.
func (e *env) refund(app, otn, no string, amount int64) (int, refund) {
	e.t.Helper()
	var r struct {
		refund
		apiError
	}
	code := e.api("POST", "/v1/orders/"+app+"/"+otn+"/refunds", map[string]any{"amount": amount, "out_request_no": no, "reason": "e2e"}, &r)
	if code/100 != 2 {
		e.t.Logf("refund %s of %d: HTTP %d %s: %s", no, amount, code, r.Error.Code, r.Error.Message)
	}
	return code, r.refund
}

func (e *env) sandboxRefunds(otn string) []*sandbox.Refund {
	e.t.Helper()
	rs, err := e.sb.Refunds(otn)
	if err != nil {
		e.t.Fatal(err)
	}
	return rs
}

// TestRefundAlipay: Alipay confirms refunds synchronously (fund_change=Y): partial then full,
// the order ends refunded; a repeated out_request_no returns the same refund and never refunds
// twice at the provider; the refund notifications that follow change nothing.
func TestRefundAlipay(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		const otn = "e2e_refund_alipay"
		e.payAndWait(paynotify.ChannelAlipayApp, otn, 1000)

		code, r := e.refund(alipayApp, otn, "refund_r1", 300)
		if code != http.StatusCreated || r.Status != "succeeded" || r.Amount != 300 || r.OutRequestNo != "refund_r1" {
			t.Fatalf("refund r1: HTTP %d %+v", code, r)
		}
		if o := e.get(alipayApp, otn, 0); o.Status != "paid" || o.RefundedAmount != 300 || o.Version != 3 {
			t.Fatalf("after r1: %+v", o)
		}
		// The same out_request_no again: the same refund, no second refund at Alipay.
		code, r = e.refund(alipayApp, otn, "refund_r1", 300)
		if code != http.StatusOK || r.Status != "succeeded" || r.Amount != 300 {
			t.Fatalf("refund r1 again: HTTP %d %+v", code, r)
		}
		if code, _ := e.refund(alipayApp, otn, "refund_r1", 400); code != http.StatusConflict {
			t.Fatalf("refund r1 with another amount: HTTP %d, want 409", code)
		}
		if tr := e.trade(otn); tr.RefundedAmount != 300 || len(e.sandboxRefunds(otn)) != 1 {
			t.Fatalf("sandbox after r1 twice: refunded %d, %d refunds", tr.RefundedAmount, len(e.sandboxRefunds(otn)))
		}
		if code, _ := e.refund(alipayApp, otn, "refund_r2", 701); code != http.StatusBadRequest {
			t.Fatalf("refund beyond the amount: HTTP %d, want 400", code)
		}

		code, r = e.refund(alipayApp, otn, "refund_r2", 700)
		if code != http.StatusCreated || r.Status != "succeeded" {
			t.Fatalf("refund r2: HTTP %d %+v", code, r)
		}
		if code, r = e.refund(alipayApp, otn, "refund_r2", 700); code != http.StatusOK || r.Status != "succeeded" {
			t.Fatalf("refund r2 again: HTTP %d %+v", code, r)
		}
		o := e.get(alipayApp, otn, 0)
		if o.Status != "refunded" || o.RefundedAmount != 1000 || o.Version != 4 {
			t.Fatalf("after r2: %+v", o)
		}
		tr := e.trade(otn)
		if tr.RefundedAmount != 1000 || tr.Status != "TRADE_CLOSED" || len(e.sandboxRefunds(otn)) != 2 {
			t.Fatalf("sandbox: %s refunded %d, %d refunds", tr.Status, tr.RefundedAmount, len(e.sandboxRefunds(otn)))
		}

		// Alipay notifies both refunds too (TRADE_SUCCESS and TRADE_CLOSED with refund_fee): they
		// are acknowledged and change nothing more.
		e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn, Kind: "refund"}, 2)
		if o2 := e.get(alipayApp, otn, 0); o2.Version != 4 || o2.Status != "refunded" {
			t.Fatalf("after the refund notifications: %+v", o2)
		}
		evs := e.checkEvents(otn, "order.paid@v2", "order.refunded@v3", "order.refunded@v4")
		for i, want := range []struct {
			no            string
			amount, total int64
		}{{"refund_r1", 300, 300}, {"refund_r2", 700, 1000}} {
			if rf := evs[i+1].Data.Refund; rf == nil || rf.OutRequestNo != want.no || rf.Amount != want.amount || rf.RefundedTotal != want.total {
				t.Errorf("event %d refund %+v, want %+v", i+1, rf, want)
			}
		}
		v := verdicts(e.evidence(otn))
		if v["accepted"]+v["duplicate"] != 3 || len(v) > 2 {
			t.Errorf("evidence %v: want the payment and the two refund notifications accepted or duplicate", v)
		}
		rs := e.refunds(alipayApp, otn)
		if len(rs) != 2 || rs[0].Status != "succeeded" || rs[1].Status != "succeeded" {
			t.Errorf("refunds %+v", rs)
		}
	})
}

// TestRefundWechat: WeChat answers PROCESSING and confirms by notification: partial then full,
// the order ends refunded; a repeated out_refund_no returns the same refund (while pending and
// once succeeded) and never refunds twice; a refund WeChat closes raises refund.failed.
func TestRefundWechat(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		const otn = "e2e_refund_wechat"
		e.faults(otn, sandbox.Faults{ManualRefund: true})
		e.payAndWait(paynotify.ChannelWechatNative, otn, 1000)

		code, r := e.refund(wechatApp, otn, "refund_w1", 300)
		if code != http.StatusCreated || r.Status != "pending" || r.Amount != 300 {
			t.Fatalf("refund w1: HTTP %d %+v", code, r)
		}
		if code, r = e.refund(wechatApp, otn, "refund_w1", 300); code != http.StatusOK || r.Status != "pending" {
			t.Fatalf("refund w1 again while pending: HTTP %d %+v", code, r)
		}
		if o := e.get(wechatApp, otn, 0); o.RefundedAmount != 0 || o.Version != 2 {
			t.Fatalf("a PROCESSING refund moved the order: %+v", o)
		}
		if rs := e.sandboxRefunds(otn); len(rs) != 1 || rs[0].Status != "PROCESSING" {
			t.Fatalf("sandbox refunds %+v", rs)
		}

		// WeChat completes it and notifies REFUND.SUCCESS.
		if err := e.sb.CompleteRefund(otn, "refund_w1", "SUCCESS"); err != nil {
			t.Fatal(err)
		}
		e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn, Kind: "refund"}, 1)
		if o := e.get(wechatApp, otn, 0); o.Status != "paid" || o.RefundedAmount != 300 || o.Version != 3 {
			t.Fatalf("after w1 succeeded: %+v", o)
		}
		if code, r = e.refund(wechatApp, otn, "refund_w1", 300); code != http.StatusOK || r.Status != "succeeded" {
			t.Fatalf("refund w1 again once succeeded: HTTP %d %+v", code, r)
		}

		code, r = e.refund(wechatApp, otn, "refund_w2", 700)
		if code != http.StatusCreated || r.Status != "pending" {
			t.Fatalf("refund w2: HTTP %d %+v", code, r)
		}
		if err := e.sb.CompleteRefund(otn, "refund_w2", "SUCCESS"); err != nil {
			t.Fatal(err)
		}
		e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn, Kind: "refund"}, 2)
		o := e.get(wechatApp, otn, 0)
		if o.Status != "refunded" || o.RefundedAmount != 1000 || o.Version != 4 {
			t.Fatalf("after w2: %+v", o)
		}
		tr := e.trade(otn)
		if tr.RefundedAmount != 1000 || tr.Status != "REFUND" || len(e.sandboxRefunds(otn)) != 2 {
			t.Fatalf("sandbox: %s refunded %d, %d refunds", tr.Status, tr.RefundedAmount, len(e.sandboxRefunds(otn)))
		}
		evs := e.checkEvents(otn, "order.paid@v2", "order.refunded@v3", "order.refunded@v4")
		if rf := evs[2].Data.Refund; rf == nil || rf.OutRequestNo != "refund_w2" || rf.Amount != 700 || rf.RefundedTotal != 1000 {
			t.Errorf("last refund event %+v", rf)
		}
		e.checkVerdicts(otn, map[string]int{"accepted": 3})
		for _, rf := range e.refunds(wechatApp, otn) {
			if rf.Status != "succeeded" || rf.ProviderRefundNo == "" {
				t.Errorf("refund %+v", rf)
			}
		}

		// A refund WeChat closes: refund.failed, the order keeps its money.
		const otn2 = "e2e_refund_wechat_closed"
		e.faults(otn2, sandbox.Faults{ManualRefund: true})
		e.payAndWait(paynotify.ChannelWechatApp, otn2, 500)
		if code, r := e.refund(wechatApp, otn2, "refund_w3", 500); code != http.StatusCreated || r.Status != "pending" {
			t.Fatalf("refund w3: HTTP %d %+v", code, r)
		}
		if err := e.sb.CompleteRefund(otn2, "refund_w3", "CLOSED"); err != nil {
			t.Fatal(err)
		}
		e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn2, Kind: "refund"}, 1)
		if o := e.get(wechatApp, otn2, 0); o.Status != "paid" || o.RefundedAmount != 0 {
			t.Fatalf("after a closed refund: %+v", o)
		}
		if rs := e.refunds(wechatApp, otn2); len(rs) != 1 || rs[0].Status != "failed" {
			t.Fatalf("refunds %+v", rs)
		}
		e.checkEvents(otn2, "order.paid@v2", "refund.failed@v3")
	})
}

// TestClose: closing through the API. An Alipay page order the buyer never opened
// (ACQ.TRADE_NOT_EXIST) is closed locally, and a payment made after all takes the late-payment
// path; an opened Alipay wap order is closed at Alipay (its TRADE_CLOSED notification is a
// duplicate); a WeChat unpaid order is closed; an order paid meanwhile (its notification not
// arrived) answers 409 with the paid order, on both providers.
func TestClose(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		closeOrder := func(app, otn string) (int, apiError, order) {
			t.Helper()
			var raw struct {
				apiError
				order
			}
			code := e.api("POST", "/v1/orders/"+app+"/"+otn+"/close", nil, &raw)
			return code, raw.apiError, raw.order
		}

		// Alipay page order, never opened.
		const page = "e2e_close_page"
		po := e.create(paynotify.ChannelAlipayPage, page, 100)
		if code, _, o := closeOrder(alipayApp, page); code != http.StatusOK || o.Status != "closed" || o.Version != 2 {
			t.Fatalf("close unopened page order: HTTP %d %+v", code, o)
		}
		if code, _, o := closeOrder(alipayApp, page); code != http.StatusOK || o.Status != "closed" || o.Version != 2 {
			t.Fatalf("close it again: HTTP %d %+v", code, o)
		}
		if ts, _ := e.sb.Trades("", page); len(ts) != 0 {
			t.Fatalf("the sandbox knows the unopened order: %+v", ts[0])
		}
		// The buyer pays it after all: money arrived, so the order is paid, with an anomaly.
		e.pay(paynotify.ChannelAlipayPage, po.Pay)
		e.waitAcked(sandbox.AttemptFilter{OutTradeNo: page}, 1)
		if o := e.get(alipayApp, page, 0); o.Status != "paid" || o.Version != 3 {
			t.Fatalf("late payment: %+v", o)
		}
		evs := e.checkEvents(page, "order.closed@v2", "order.paid@v3", "order.anomaly@v3")
		if a := evs[2].Data.Anomaly; a == nil || a.Reason != "late_payment" {
			t.Errorf("anomaly %+v", a)
		}
		e.checkVerdicts(page, map[string]int{"accepted/late_payment": 1})

		// Alipay wap order, opened by the buyer, then closed: closed at Alipay.
		const wap = "e2e_close_wap"
		wo := e.create(paynotify.ChannelAlipayWap, wap, 100)
		var p map[string]string
		mustUnmarshal(t, wo.Pay, &p)
		e.act("open", sandbox.ActionRequest{URL: p["url"]})
		if code, _, o := closeOrder(alipayApp, wap); code != http.StatusOK || o.Status != "closed" {
			t.Fatalf("close opened wap order: HTTP %d %+v", code, o)
		}
		if tr := e.trade(wap); tr.Status != "TRADE_CLOSED" {
			t.Fatalf("sandbox trade %s", tr.Status)
		}
		e.waitAcked(sandbox.AttemptFilter{OutTradeNo: wap, Kind: "close"}, 1)
		e.checkEvents(wap, "order.closed@v2")
		// The notification races the API's own close: whichever comes second is the duplicate.
		if v := verdicts(e.evidence(wap)); v["accepted"]+v["duplicate"] != 1 || len(v) != 1 {
			t.Fatalf("evidence of %s: %v", wap, v)
		}
		if code, ae, _ := closeOrder(alipayApp, "e2e_close_nosuch"); code != http.StatusNotFound || ae.Error.Code != "not_found" {
			t.Fatalf("close an unknown order: HTTP %d %+v", code, ae)
		}

		// WeChat unpaid order.
		const native = "e2e_close_native"
		e.create(paynotify.ChannelWechatNative, native, 100)
		if code, _, o := closeOrder(wechatApp, native); code != http.StatusOK || o.Status != "closed" || o.Version != 2 {
			t.Fatalf("close unpaid wechat order: HTTP %d %+v", code, o)
		}
		if tr := e.trade(native); tr.Status != "CLOSED" {
			t.Fatalf("sandbox trade %s", tr.Status)
		}
		e.checkEvents(native, "order.closed@v2")

		// Paid meanwhile, the notification not (yet) here: 409 with the paid order.
		for _, ch := range []string{paynotify.ChannelWechatJSAPI, paynotify.ChannelAlipayApp} {
			otn := "e2e_close_paid_" + ch[len(ch)-3:]
			app := appOf(ch)
			e.faults(otn, sandbox.Faults{NeverNotify: true})
			o := e.create(ch, otn, 100)
			e.pay(ch, o.Pay)
			code, ae, _ := closeOrder(app, otn)
			if code != http.StatusConflict || ae.Error.Code != "conflict" || ae.Order == nil || ae.Order.Status != "paid" || ae.Order.Version != 2 {
				t.Fatalf("%s: close a paid order: HTTP %d %+v %+v", ch, code, ae, ae.Order)
			}
			if o := e.get(app, otn, 0); o.Status != "paid" || o.ProviderTradeNo != e.trade(otn).TradeNo {
				t.Fatalf("%s: %+v", ch, o)
			}
			e.checkEvents(otn, "order.paid@v2")
			if code, ae, _ := closeOrder(app, otn); code != http.StatusConflict || ae.Error.Code != "conflict" {
				t.Fatalf("%s: close it again: HTTP %d %+v", ch, code, ae)
			}
		}
	})
}

// TestRefundWechat_NumberOfAnotherOrder (from a reviewer helper's audit): WeChat Pay's
// out_refund_no is unique per merchant. A refund of order B under the number of order A's refund
// was left pending for ever (WeChat Pay answering with A's refund), holding B's whole amount: no
// other refund of B could be made. It is failed (422, the number named), and B is refunded under
// another number.
func TestRefundWechat_NumberOfAnotherOrder(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		const a, b = "e2e_reuse_a", "e2e_reuse_b"
		e.payAndWait(paynotify.ChannelWechatNative, a, 1000)
		e.payAndWait(paynotify.ChannelWechatNative, b, 1000)
		if code, _ := e.refund(wechatApp, a, "reuse_r1", 300); code != http.StatusCreated {
			t.Fatalf("refund of a: HTTP %d", code)
		}
		if code, r := e.refund(wechatApp, b, "reuse_r1", 1000); code != http.StatusUnprocessableEntity {
			t.Fatalf("refund of b under a's number: HTTP %d %+v, want 422", code, r)
		}
		rs := e.refunds(wechatApp, b)
		if len(rs) != 1 || rs[0].Status != "failed" {
			t.Fatalf("b's refunds: %+v, want reuse_r1 failed", rs)
		}
		if code, r := e.refund(wechatApp, b, "reuse_r2", 100); code != http.StatusCreated {
			t.Fatalf("refund of b under its own number: HTTP %d %+v", code, r)
		}
	})
}
