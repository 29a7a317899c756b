package e2e_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/sandbox"
	"github.com/paynotify/paynotify/wechatpay"
)

// The reliability engine against the real server and the sandbox, on both stores: what a missed
// notification, an expiry, a wrong key, a double payment and a bad query answer become.

// fastReconcile queries an order 1s and 2s after creation, then every second.
var fastReconcile = &paynotify.ReconcilePolicy{Schedule: []time.Duration{time.Second, 2 * time.Second}, ThenEvery: time.Second, MaxChecks: 30, Concurrency: 4}

// paidNeverNotified creates an order, has the buyer pay it, and has the sandbox never tell.
func (e *env) paidNeverNotified(channel, otn string) order {
	e.t.Helper()
	return e.payWithFaults(channel, otn, sandbox.Faults{NeverNotify: true})
}

// queries returns the sandbox's query log of one order.
func (e *env) queries(otn string) []sandbox.QueryRecord {
	return e.sb.Queries(sandbox.QueryFilter{OutTradeNo: otn})
}

// TestReconcile_NeverNotified: 100 orders paid at the sandbox without a notification ever sent,
// and 20 never paid. The scheduled reconciliation makes the 100 paid (one event each, the signed
// answer kept as evidence) and leaves the 20 pending; later sweeps change nothing.
func TestReconcile_NeverNotified(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{reconcile: fastReconcile})
		var paid, unpaid []order
		for i := range 120 {
			ch := providerChannels[i%2]
			otn := fmt.Sprintf("e2e_nn_%03d", i)
			if i < 100 {
				paid = append(paid, e.paidNeverNotified(ch, otn))
			} else {
				unpaid = append(unpaid, e.create(ch, otn, 100))
			}
		}
		for _, o := range paid {
			got := e.waitStatus(o.App, o.OutTradeNo, "paid")
			if got.ProviderTradeNo == "" || got.Version != 2 {
				t.Fatalf("%s: %+v", o.OutTradeNo, got)
			}
			if as := e.attempts(o.OutTradeNo); len(as) != 0 {
				t.Fatalf("%s: the sandbox notified: %s", o.OutTradeNo, summary(as))
			}
		}
		time.Sleep(3 * time.Second) // more sweeps: nothing may change
		for _, o := range paid {
			e.checkEvents(o.OutTradeNo, "order.paid@v2")
			ev := e.evidenceQuery("source=query&out_trade_no=" + o.OutTradeNo)
			if len(ev) != 1 || ev[0].Verdict != "accepted" {
				t.Fatalf("%s: query evidence %+v", o.OutTradeNo, ev)
			}
			if got := e.get(o.App, o.OutTradeNo, 0); got.Version != 2 {
				t.Fatalf("%s changed again: %+v", o.OutTradeNo, got)
			}
		}
		for _, o := range unpaid {
			got := e.get(o.App, o.OutTradeNo, 0)
			if got.Status != "pending" || got.Version != 1 {
				t.Fatalf("%s: %+v", o.OutTradeNo, got)
			}
			if len(e.queries(o.OutTradeNo)) == 0 {
				t.Fatalf("%s was never queried", o.OutTradeNo)
			}
			if evs := e.events(o.OutTradeNo); len(evs) != 0 {
				t.Fatalf("%s: events %s", o.OutTradeNo, types(evs))
			}
		}
	})
}

// TestReconcile_Expiry: at expiry the order is closed at the sandbox, then locally; an order paid
// (never notified) just before its close ends paid, not closed. The server's clock is moved on so
// that the one-minute expiry (and WeChat's five-minute floor) has passed.
func TestReconcile_Expiry(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		var skew atomic.Int64
		now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		policy := *fastReconcile
		policy.Schedule = []time.Duration{time.Hour} // no query before the close: the close finds the payment
		e := newEnv(t, s, options{reconcile: &policy, serverNow: now})
		var unpaid, raced []order
		for _, ch := range providerChannels {
			unpaid = append(unpaid, e.create(ch, "e2e_exp_"+ch[:6], 100, "expires_in", "1m"))
			raced = append(raced, e.paidNeverNotified(ch, "e2e_race_"+ch[:6]))
		}
		// Expire them all: the raced ones were created with the default 2h, so move past that.
		skew.Store(int64(3 * time.Hour))
		for _, o := range unpaid {
			e.waitStatus(o.App, o.OutTradeNo, "closed")
			e.checkEvents(o.OutTradeNo, "order.closed@v2")
		}
		if tr := e.trade("e2e_exp_wechat"); tr.Status != "CLOSED" {
			t.Fatalf("sandbox WeChat trade %s, want CLOSED", tr.Status)
		}
		if qs := e.sb.Queries(sandbox.QueryFilter{API: sandbox.APIAlipayClose, OutTradeNo: "e2e_exp_alipay"}); len(qs) != 1 {
			t.Fatalf("Alipay close calls: %+v", qs)
		}
		for _, o := range raced {
			got := e.waitStatus(o.App, o.OutTradeNo, "paid")
			e.checkEvents(o.OutTradeNo, "order.paid@v2")
			if got.ProviderTradeNo == "" {
				t.Fatalf("%s: %+v", o.OutTradeNo, got)
			}
		}
	})
}

// TestReconcile_BadAnswers: a query answer with a bad signature, about another order, another
// app id or another amount changes nothing; the evidence says why.
func TestReconcile_BadAnswers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		fault, channel, verdict, reason string
	}{
		{sandbox.QueryFaultBadSignature, paynotify.ChannelAlipayApp, "rejected", paynotify.ReasonSignatureInvalid},
		{sandbox.QueryFaultBadSignature, paynotify.ChannelWechatNative, "rejected", paynotify.ReasonSignatureInvalid},
		{sandbox.QueryFaultWrongOutTradeNo, paynotify.ChannelAlipayApp, "rejected", paynotify.ReasonOutTradeNoMismatch},
		{sandbox.QueryFaultWrongOutTradeNo, paynotify.ChannelWechatNative, "rejected", paynotify.ReasonOutTradeNoMismatch},
		{sandbox.QueryFaultWrongAppID, paynotify.ChannelWechatNative, "anomaly", paynotify.ReasonAppIDMismatch},
		{sandbox.QueryFaultWrongAmount, paynotify.ChannelAlipayApp, "anomaly", paynotify.ReasonAmountMismatch},
		{sandbox.QueryFaultWrongAmount, paynotify.ChannelWechatNative, "anomaly", paynotify.ReasonAmountMismatch},
	}
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{reconcile: fastReconcile})
		for i, c := range cases {
			otn := fmt.Sprintf("e2e_bad_%d", i)
			o := e.payWithFaults(c.channel, otn, sandbox.Faults{NeverNotify: true, Query: c.fault})
			deadline := time.Now().Add(waitFor)
			for len(e.evidenceQuery("source=query&out_trade_no="+otn)) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%s (%s): no query evidence", otn, c.fault)
				}
				time.Sleep(50 * time.Millisecond)
			}
			ev := e.evidenceQuery("source=query&out_trade_no=" + otn)[0]
			if ev.Verdict != c.verdict || ev.Reason != c.reason {
				t.Fatalf("%s (%s %s): evidence %+v, want %s %s", otn, c.fault, c.channel, ev, c.verdict, c.reason)
			}
			if got := e.get(o.App, otn, 0); got.Status != "pending" || got.Version != 1 {
				t.Fatalf("%s (%s): order changed: %+v", otn, c.fault, got)
			}
		}
	})
}

// TestReconcile_DoublePayment: the buyer's payment is made twice under two trade numbers, both
// notified (with copies): the order is paid once, and one duplicate_payment anomaly is raised.
func TestReconcile_DoublePayment(t *testing.T) {
	t.Parallel()
	eachProvider(t, options{}, func(t *testing.T, e *env, ch, otn string) {
		o := e.payWithFaults(ch, otn, sandbox.Faults{DoublePay: true, Duplicate: 2})
		e.waitStatus(o.App, otn, "paid")
		// Both payments' notifications, each with two copies, all acknowledged.
		as := e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn}, 6)
		if len(as) != 6 {
			t.Fatalf("attempts: %s", summary(as))
		}
		evs := e.checkEvents(otn, "order.paid@v2", "order.anomaly@v2")
		if a := evs[1].Data.Anomaly; a == nil || a.Reason != paynotify.ReasonDuplicatePayment {
			t.Fatalf("anomaly %+v", a)
		}
		second := e.trade(otn).DoublePay
		if got := e.get(o.App, otn, 0); second == nil || got.ProviderTradeNo == second.TradeNo {
			t.Fatalf("order %+v, second payment %+v: the first payment must stay the order's", got, second)
		}
		e.checkVerdicts(otn, map[string]int{"accepted": 1, "duplicate": 2, "anomaly/duplicate_payment": 3})
	})
}

// TestReprocess_WrongKey: with a wrong provider key every notification is rejected; once the key
// is fixed, reprocessing the kept notifications pays each order once. WeChat Pay's timestamp window
// is checked against when a notification arrived: the fixed client's clock is ten minutes ahead,
// which would refuse them were they verified now.
func TestReprocess_WrongKey(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		// Once the notifications were rejected, the server stops taking them (503 before it reads
		// them): the sandbox's later retries must not pay the orders before the reprocessing does.
		var closed atomic.Bool
		shut := func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if closed.Load() && strings.HasPrefix(r.URL.Path, "/notify/") {
					http.Error(w, "closed", http.StatusServiceUnavailable)
					return
				}
				h.ServeHTTP(w, r)
			})
		}
		e := newEnv(t, s, options{middleware: shut})
		good := map[string]paynotify.Provider{alipayApp: e.svc.Apps[alipayApp].Gateway, wechatApp: e.svc.Apps[wechatApp].Gateway}
		var orders []order
		for _, ch := range providerChannels { // created with the right keys (WeChat verifies the prepay answer)
			orders = append(orders, e.create(ch, "e2e_wrongkey_"+ch[:6], 100))
		}
		e.svc.Apps[alipayApp].Gateway = wrongKeyAlipay(t, e)
		e.svc.Apps[wechatApp].Gateway = wrongKeyWechat(t, e, time.Now)
		for i, ch := range providerChannels {
			otn, o := "e2e_wrongkey_"+ch[:6], orders[i]
			e.pay(ch, o.Pay)
			// Three attempts, each rejected: the provider retries (time-scaled).
			e.waitAttempts(sandbox.AttemptFilter{OutTradeNo: otn}, 3)
			if got := e.get(o.App, otn, 0); got.Status != "pending" {
				t.Fatalf("%s paid with a wrong key: %+v", otn, got)
			}
		}
		closed.Store(true)
		// The fix: the right keys, and for WeChat a clock ten minutes on.
		e.svc.Apps[alipayApp].Gateway = good[alipayApp]
		e.svc.Apps[wechatApp].Gateway = wrongKeyWechat(t, e, func() time.Time { return time.Now().Add(10 * time.Minute) }, true)
		for _, ch := range providerChannels {
			otn := "e2e_wrongkey_" + ch[:6]
			rejected := e.evidenceQuery("verdict=rejected&out_trade_no=" + otn)
			if len(rejected) < 3 {
				t.Fatalf("%s: %d rejected records", otn, len(rejected))
			}
			verdicts := map[string]int{}
			for _, r := range rejected {
				var ev evidence
				if code := e.api("POST", "/v1/notifications/"+r.ID+"/reprocess", nil, &ev); code != http.StatusOK {
					t.Fatalf("reprocess %s: HTTP %d", r.ID, code)
				}
				verdicts[ev.Verdict]++
			}
			if verdicts["accepted"] != 1 || verdicts["duplicate"] != len(rejected)-1 {
				t.Fatalf("%s: reprocess verdicts %v", otn, verdicts)
			}
			e.checkEvents(otn, "order.paid@v2")
			if got := e.get(appOf(ch), otn, 0); got.Status != "paid" {
				t.Fatalf("%s: %+v", otn, got)
			}
			re := e.evidenceQuery("source=reprocess&out_trade_no=" + otn)
			if len(re) != len(rejected) {
				t.Fatalf("%s: %d reprocess records for %d rejected", otn, len(re), len(rejected))
			}
		}
		// Query answers cannot be reprocessed; unknown ids are 404.
		if code := e.api("POST", "/v1/notifications/ntf_nope/reprocess", nil, nil); code != http.StatusNotFound {
			t.Fatalf("unknown id: HTTP %d", code)
		}
	})
}

// wrongKeyAlipay is the Alipay demo app verifying with a key that is not Alipay's.
func wrongKeyAlipay(t *testing.T, e *env) paynotify.Provider {
	t.Helper()
	k := e.keys
	k.AlipayPublicKey = k.WechatPlatformPublicKey // a valid RSA key, not Alipay's
	return demoApps(t, k, e.sbURL, e.URL)[alipayApp].Gateway
}

// wrongKeyWechat is the WeChat demo app with the given clock, verifying with a wrong platform key
// unless right is set.
func wrongKeyWechat(t *testing.T, e *env, now func() time.Time, right ...bool) paynotify.Provider {
	t.Helper()
	k := e.keys
	pubPEM := k.AlipayPublicKey // a valid RSA key, not WeChat Pay's
	if len(right) > 0 && right[0] {
		pubPEM = k.WechatPlatformPublicKey
	}
	mchKey, err := wechatpay.ParsePrivateKey([]byte(k.WechatMerchantPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := wechatpay.ParsePublicKey([]byte(pubPEM))
	if err != nil {
		t.Fatal(err)
	}
	wc, err := wechatpay.NewClient(wechatpay.Config{MchID: k.WechatMchID, AppID: k.WechatAppID, MerchantPrivateKey: mchKey,
		MerchantSerialNo: k.WechatMerchantSerialNo, APIv3Key: []byte(k.WechatAPIv3Key), PlatformPublicKey: pub,
		PlatformPublicKeyID: k.WechatPlatformPublicKeyID, BaseURL: e.sbURL + "/sandbox/wechatpay", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return &provider.Wechat{Client: wc}
}
