package e2e_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sandbox"
)

// One channel of each provider: the faults are played on both.
var providerChannels = []string{paynotify.ChannelAlipayApp, paynotify.ChannelWechatNative}

// eachProvider runs fn for an Alipay and a WeChat order, on both stores, each in its own env.
func eachProvider(t *testing.T, o options, fn func(t *testing.T, e *env, channel, otn string)) {
	for _, ch := range providerChannels {
		t.Run(strings.SplitN(ch, ".", 2)[0], func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, s paynotify.Store) {
				e := newEnv(t, s, o)
				fn(t, e, ch, "e2e_fault_"+strings.ReplaceAll(ch, ".", "_"))
			})
		})
	}
}

// payWithFaults creates an order, sets its faults in the sandbox and has the buyer pay it.
func (e *env) payWithFaults(channel, otn string, f sandbox.Faults, extra ...string) order {
	e.t.Helper()
	e.faults(otn, f)
	o := e.create(channel, otn, 100, extra...)
	e.pay(channel, o.Pay)
	return o
}

// TestFaultDuplicate: the acknowledged notification is sent three more times: all are answered
// success, one event, the copies are duplicates.
func TestFaultDuplicate(t *testing.T) {
	t.Parallel()
	eachProvider(t, options{}, func(t *testing.T, e *env, ch, otn string) {
		o := e.payWithFaults(ch, otn, sandbox.Faults{Duplicate: 3})
		as := e.waitAttempts(sandbox.AttemptFilter{OutTradeNo: otn}, 4)
		for i, a := range as {
			if !a.Acked || a.Copy != i || (i > 0) != (a.Fault == "duplicate") {
				t.Fatalf("attempts: %s", summary(as))
			}
		}
		e.waitStatus(o.App, otn, "paid")
		e.checkEvents(otn, "order.paid@v2")
		e.checkVerdicts(otn, map[string]int{"accepted": 1, "duplicate": 3})
	})
}

// TestFaultConcurrentDuplicate: the first attempt goes out fifty times at the same moment: every
// copy is answered success, exactly one is accepted, one event.
func TestFaultConcurrentDuplicate(t *testing.T) {
	t.Parallel()
	eachProvider(t, options{}, func(t *testing.T, e *env, ch, otn string) {
		o := e.payWithFaults(ch, otn, sandbox.Faults{ConcurrentDuplicate: 49})
		as := e.waitAttempts(sandbox.AttemptFilter{OutTradeNo: otn}, 50)
		for _, a := range as {
			if !a.Acked || a.N != 1 {
				t.Fatalf("attempts: %s", summary(as))
			}
		}
		if p := e.waitStatus(o.App, otn, "paid"); p.Version != 2 {
			t.Fatalf("order %+v", p)
		}
		e.checkEvents(otn, "order.paid@v2")
		e.checkVerdicts(otn, map[string]int{"accepted": 1, "duplicate": 49})
	})
}

// TestFaultDelay: the first attempt is held back one second: the order stays pending meanwhile,
// then is paid.
func TestFaultDelay(t *testing.T) {
	t.Parallel()
	eachProvider(t, options{}, func(t *testing.T, e *env, ch, otn string) {
		start := time.Now()
		o := e.payWithFaults(ch, otn, sandbox.Faults{Delay: sandbox.Duration(time.Second)})
		if p := e.get(o.App, otn, 0); p.Status != "pending" && time.Since(start) < time.Second {
			t.Fatalf("paid before the delayed notification: %+v", p)
		}
		e.waitStatus(o.App, otn, "paid")
		as := e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn}, 1)
		if len(as) != 1 || as[0].At.Sub(e.trade(otn).PaidAt) < time.Second {
			t.Fatalf("attempt at %v, paid at %v: %s", as[0].At, e.trade(otn).PaidAt, summary(as))
		}
		e.checkEvents(otn, "order.paid@v2")
		e.checkVerdicts(otn, map[string]int{"accepted": 1})
	})
}

// TestFaultDropFirst: the first two scheduled attempts are lost on the way: the server first
// hears of the payment at the third, and applies it once.
func TestFaultDropFirst(t *testing.T) {
	t.Parallel()
	eachProvider(t, options{}, func(t *testing.T, e *env, ch, otn string) {
		o := e.payWithFaults(ch, otn, sandbox.Faults{DropFirst: 2})
		e.waitStatus(o.App, otn, "paid")
		as := e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn}, 1)
		if len(as) != 3 || as[0].Fault != "dropped" || as[1].Fault != "dropped" || !as[2].Acked || as[2].N != 3 {
			t.Fatalf("attempts: %s", summary(as))
		}
		e.checkEvents(otn, "order.paid@v2")
		e.checkVerdicts(otn, map[string]int{"accepted": 1})
	})
}

// TestFaultReorder: a refund made at the provider is notified before the payment: the refund
// implies the payment, the order lands in the right state with its events in version order, and
// the late payment notification is a duplicate. Alipay: a partial refund (cumulative
// refund_fee); WeChat: a full refund (per-refund amount).
func TestFaultReorder(t *testing.T) {
	t.Parallel()
	eachProvider(t, options{}, func(t *testing.T, e *env, ch, otn string) {
		o := e.payWithFaults(ch, otn, sandbox.Faults{Reorder: true})
		amount, status := int64(30), "paid"
		if o.App == wechatApp {
			amount, status = 100, "refunded"
		}
		e.act("refund", sandbox.ActionRequest{OutTradeNo: otn, Amount: amount, OutRequestNo: "portal_refund_1"})
		as := e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn}, 2)
		if len(as) != 2 || as[0].Kind != "refund" || as[1].Kind != "payment" {
			t.Fatalf("attempts: %s", summary(as))
		}
		p := e.get(o.App, otn, 0)
		if p.Status != status || p.RefundedAmount != amount || p.Version != 3 || p.PaidAt == nil || p.ProviderTradeNo != e.trade(otn).TradeNo {
			t.Fatalf("order %+v", p)
		}
		evs := e.checkEvents(otn, "order.paid@v2", "order.refunded@v3")
		if rf := evs[1].Data.Refund; rf == nil || rf.OutRequestNo != "portal_refund_1" || rf.Amount != amount || rf.RefundedTotal != amount {
			t.Errorf("refund event %+v", rf)
		}
		e.checkVerdicts(otn, map[string]int{"accepted": 1, "duplicate": 1})
		// The refund made at the provider is recorded.
		if rs := e.refunds(o.App, otn); len(rs) != 1 || rs[0].OutRequestNo != "portal_refund_1" || rs[0].Status != "succeeded" || rs[0].Amount != amount {
			t.Errorf("refunds %+v", rs)
		}
	})
}

// checkRefused waits for at least three attempts of a notification the server must refuse
// (answered fail / 4xx so that the provider keeps retrying), and checks that none was
// acknowledged, the order is untouched and every evidence record has the verdict and reason.
func (e *env) checkRefused(app, otn, verdict, reason string) {
	e.t.Helper()
	as := e.waitAttempts(sandbox.AttemptFilter{OutTradeNo: otn}, 3)
	for _, a := range as {
		wantStatus, wantAnswer := 200, "fail"
		if app == wechatApp {
			wantStatus, wantAnswer = 400, `{"code":"FAIL","message":"`+reason+`"}`
			if verdict == "rejected" {
				wantStatus = 401
			}
		}
		if a.Acked || a.Status != wantStatus || a.Response != wantAnswer {
			e.t.Fatalf("attempts: %s", summary(as))
		}
	}
	if p := e.get(app, otn, 0); p.Status != "pending" || p.Version != 1 || p.RefundedAmount != 0 {
		e.t.Fatalf("order changed: %+v", p)
	}
	// Rejected WeChat notifications are found by order too: the server reads the out_trade_no
	// their encrypted resource claims (decrypting with its own key, trusting nothing).
	evs := e.evidence(otn)
	if len(evs) < 3 {
		e.t.Fatalf("%d evidence records for %d attempts", len(evs), len(as))
	}
	for _, ev := range evs {
		if ev.Verdict != verdict || ev.Reason != reason || ev.OutTradeNo != otn {
			e.t.Fatalf("evidence %+v, want %s/%s", ev, verdict, reason)
		}
	}
}

// TestFaultWrongAmount: a properly signed notification for one fen more is an anomaly: the order
// is unchanged, one order.anomaly event however many retries, answered as a failure so the
// provider keeps retrying.
func TestFaultWrongAmount(t *testing.T) {
	t.Parallel()
	eachProvider(t, options{scale: 5000}, func(t *testing.T, e *env, ch, otn string) {
		o := e.payWithFaults(ch, otn, sandbox.Faults{WrongAmount: true})
		e.checkRefused(o.App, otn, "anomaly", "amount_mismatch")
		evs := e.checkEvents(otn, "order.anomaly@v1")
		if a := evs[0].Data.Anomaly; a == nil || a.Reason != "amount_mismatch" || a.NotificationID == "" {
			t.Fatalf("anomaly %+v", a)
		}
	})
}

// TestFaultWrongAppID: a properly signed notification naming another app is an anomaly.
func TestFaultWrongAppID(t *testing.T) {
	t.Parallel()
	eachProvider(t, options{scale: 5000}, func(t *testing.T, e *env, ch, otn string) {
		o := e.payWithFaults(ch, otn, sandbox.Faults{WrongAppID: true})
		e.checkRefused(o.App, otn, "anomaly", "app_id_mismatch")
		evs := e.checkEvents(otn, "order.anomaly@v1")
		if a := evs[0].Data.Anomaly; a == nil || a.Reason != "app_id_mismatch" {
			t.Fatalf("anomaly %+v", a)
		}
	})
}

// TestFaultBadSignature: a signature that does not verify: rejected (signature_invalid), no
// event, answered as a failure.
func TestFaultBadSignature(t *testing.T) {
	t.Parallel()
	eachProvider(t, options{scale: 5000}, func(t *testing.T, e *env, ch, otn string) {
		o := e.payWithFaults(ch, otn, sandbox.Faults{BadSignature: true})
		e.checkRefused(o.App, otn, "rejected", "signature_invalid")
		e.checkEvents(otn)
	})
}

// TestFaultGBK: an Alipay notification encoded and signed in GBK, about an order with a Chinese
// subject, is verified and paid.
func TestFaultGBK(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		const otn = "e2e_fault_gbk"
		e.payWithFaults(paynotify.ChannelAlipayWap, otn, sandbox.Faults{Charset: "GBK"}, "subject", "测试商品：中文标题")
		e.waitStatus(alipayApp, otn, "paid")
		as := e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn}, 1)
		if ct := as[0].RequestHeaders["Content-Type"]; !strings.Contains(strings.ToUpper(ct), "CHARSET=GBK") || len(as) != 1 {
			t.Fatalf("Content-Type %q: %s", ct, summary(as))
		}
		if !strings.Contains(strings.ToUpper(string(as[0].RequestBody)), "CHARSET=GBK") {
			t.Fatalf("body %s", as[0].RequestBody)
		}
		e.checkEvents(otn, "order.paid@v2")
		e.checkVerdicts(otn, map[string]int{"accepted": 1})
	})
}

// TestFaultSigntestProbe: WeChat's first attempt carries a WECHATPAY/SIGNTEST/ signature: it is
// rejected as a probe, and the real retry is accepted.
func TestFaultSigntestProbe(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		const otn = "e2e_fault_signtest"
		e.payWithFaults(paynotify.ChannelWechatJSAPI, otn, sandbox.Faults{SigntestProbe: 1})
		e.waitStatus(wechatApp, otn, "paid")
		as := e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn}, 1)
		if len(as) != 2 || as[0].Fault != "signtest_probe" || as[0].Acked || as[0].Status != 401 || !as[1].Acked || as[1].N != 2 {
			t.Fatalf("attempts: %s", summary(as))
		}
		e.checkEvents(otn, "order.paid@v2")
		// The probe is kept as evidence, found by the order its encrypted resource claims.
		e.checkVerdicts(otn, map[string]int{"accepted": 1, "rejected/probe": 1})
	})
}

// slowFirstNotify answers the first notification request only after d, once the server has
// handled it: the merchant is slow, the provider stops waiting.
func slowFirstNotify(d time.Duration) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		var once sync.Once // per server
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			slow := false
			if strings.HasPrefix(r.URL.Path, "/notify/") {
				once.Do(func() { slow = true })
			}
			if !slow {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			time.Sleep(d)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
		})
	}
}

// TestFaultSlowMerchant: the sandbox waits one second for an answer; the first one takes 1.5 s:
// the attempt counts as failed, and the retry is answered success (a duplicate: the first
// request was applied before its late answer).
func TestFaultSlowMerchant(t *testing.T) {
	t.Parallel()
	eachProvider(t, options{middleware: slowFirstNotify(1500 * time.Millisecond)}, func(t *testing.T, e *env, ch, otn string) {
		o := e.payWithFaults(ch, otn, sandbox.Faults{Timeout: sandbox.Duration(time.Second)})
		as := e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn}, 1)
		if len(as) != 2 || as[0].Acked || as[0].Error == "" || as[0].Latency.D() < time.Second || !as[1].Acked || as[1].N != 2 {
			t.Fatalf("attempts: %s", summary(as))
		}
		e.waitStatus(o.App, otn, "paid")
		e.checkEvents(otn, "order.paid@v2")
		e.checkVerdicts(otn, map[string]int{"accepted": 1, "duplicate": 1})
	})
}

// TestFaultNeverNotify: "paid but never notified" is offered by the sandbox: the trade is paid
// there, its payment notification is suppressed, and the order stays pending (reconciliation,
// a later issue, answers it).
func TestFaultNeverNotify(t *testing.T) {
	t.Parallel()
	eachProvider(t, options{}, func(t *testing.T, e *env, ch, otn string) {
		o := e.payWithFaults(ch, otn, sandbox.Faults{NeverNotify: true})
		if st := e.trade(otn).Status; st != "TRADE_SUCCESS" && st != "SUCCESS" {
			t.Fatalf("sandbox trade %s", st)
		}
		ns, err := e.sb.Notifications(otn)
		if err != nil || len(ns) != 1 || ns[0].Status != sandbox.NoteSuppressed || ns[0].Kind != "payment" {
			t.Fatalf("notifications %+v %v", ns, err)
		}
		if p := e.get(o.App, otn, 300*time.Millisecond); p.Status != "pending" {
			t.Fatalf("order %+v", p)
		}
		if as := e.attempts(otn); len(as) != 0 {
			t.Fatalf("attempts: %s", summary(as))
		}
		e.checkEvents(otn)
	})
}
