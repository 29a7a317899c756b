package storetest

import (
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// testConsoleReads checks the reads the operator console adds: the order filters by channel, trade
// number, creation range and offset; the events of one order; the paid totals and the evidence
// counts of the overview.
func (s *suite) testConsoleReads(t *testing.T) {
	// setupOrders creates, oldest first, one second apart: app1/A (alipay.app, pending),
	// app1/B (wechatpay.native, paid at T0+1m, provider trade no "2026…0001"), app2/C (alipay.app,
	// paid at T0+2m: amount 500), app1/D (alipay.app, pending).
	setupOrders := func(t *testing.T) (paynotify.Store, *bundle) {
		st, b := s.setup(t)
		for i, k := range []struct{ app, no, channel string }{{"app1", "A", paynotify.ChannelAlipayApp},
			{"app1", "B", paynotify.ChannelWechatNative}, {"app2", "C", paynotify.ChannelAlipayApp}, {"app1", "D", paynotify.ChannelAlipayApp}} {
			o := NewOrder(k.app, k.no, T0.Add(time.Duration(i)*time.Second))
			o.Channel = k.channel
			if k.no == "C" {
				o.Amount = 500
			}
			o = MustCreateOrder(t, b.ctx, st, o)
			switch k.no {
			case "B":
				MustCommit(t, b.ctx, st, PaidChange(o, "evB", "ntB", T0.Add(time.Minute)))
			case "C":
				c := PaidChange(o, "evC", "ntC", T0.Add(2*time.Minute))
				c.Order.ProviderTradeNo = "4200000000000000000000000003"
				MustCommit(t, b.ctx, st, c)
			}
		}
		return st, b
	}
	list := func(t *testing.T, st paynotify.Store, b *bundle, f paynotify.OrderFilter) []string {
		t.Helper()
		os, err := st.ListOrders(b.ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return orderNos(os)
	}

	t.Run("OKOrderFilters", func(t *testing.T) {
		st, b := setupOrders(t)
		checkStrings(t, "channel", list(t, st, b, paynotify.OrderFilter{Channel: paynotify.ChannelAlipayApp}), []string{"D", "C", "A"})
		checkStrings(t, "app1 alipay.app", list(t, st, b, paynotify.OrderFilter{App: "app1", Channel: paynotify.ChannelAlipayApp}), []string{"D", "A"})
		checkStrings(t, "out_trade_no", list(t, st, b, paynotify.OrderFilter{TradeNo: "C"}), []string{"C"})
		checkStrings(t, "provider trade no", list(t, st, b, paynotify.OrderFilter{TradeNo: "4200000000000000000000000003"}), []string{"C"})
		checkStrings(t, "provider trade no of another app", list(t, st, b, paynotify.OrderFilter{App: "app1", TradeNo: "4200000000000000000000000003"}), nil)
		checkStrings(t, "unknown trade no", list(t, st, b, paynotify.OrderFilter{TradeNo: "nope"}), nil)
		// An empty provider trade number never matches the pending orders' empty ones.
		checkStrings(t, "until C", list(t, st, b, paynotify.OrderFilter{Until: T0.Add(2 * time.Second)}), []string{"B", "A"})
		checkStrings(t, "since B until D", list(t, st, b, paynotify.OrderFilter{Since: T0.Add(time.Second), Until: T0.Add(3 * time.Second)}), []string{"C", "B"})
		checkStrings(t, "page 2", list(t, st, b, paynotify.OrderFilter{Limit: 2, Offset: 2}), []string{"B", "A"})
		checkStrings(t, "page 3", list(t, st, b, paynotify.OrderFilter{Limit: 2, Offset: 4}), nil)
		checkStrings(t, "offset 1 app1", list(t, st, b, paynotify.OrderFilter{App: "app1", Offset: 1}), []string{"B", "A"})
	})
	t.Run("OKEventsOfOrder", func(t *testing.T) {
		st, b := setupOrders(t)
		checkStrings(t, "app1/B", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{App: "app1", OutTradeNo: "B"})), []string{"evB"})
		checkStrings(t, "app2/C", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{App: "app2", OutTradeNo: "C"})), []string{"evC"})
		checkStrings(t, "app1/C", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{App: "app1", OutTradeNo: "C"})), nil)
		checkStrings(t, "all", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{})), []string{"evB", "evC"})
	})
	t.Run("OKPaidSince", func(t *testing.T) {
		st, b := setupOrders(t)
		paid := func(since time.Time) map[string]paynotify.AppPaid {
			t.Helper()
			got, err := st.PaidSince(b.ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]paynotify.AppPaid{}
			for _, p := range got {
				out[p.App] = p
			}
			return out
		}
		all := paid(T0)
		if len(all) != 2 || all["app1"] != (paynotify.AppPaid{App: "app1", Count: 1, Amount: 1234}) ||
			all["app2"] != (paynotify.AppPaid{App: "app2", Count: 1, Amount: 500}) {
			t.Errorf("paid since T0 = %+v, want app1 1×1234 and app2 1×500", all)
		}
		// B was paid at T0+1m exactly, C at T0+2m.
		if got := paid(T0.Add(time.Minute + time.Microsecond)); len(got) != 1 || got["app2"].Count != 1 {
			t.Errorf("paid after B = %+v, want app2 only", got)
		}
		if got := paid(T0.Add(time.Hour)); len(got) != 0 {
			t.Errorf("paid an hour later = %+v, want none", got)
		}
	})
	t.Run("OKCountEvidence", func(t *testing.T) {
		st, b := setupOrders(t)
		o := NewOrder("app1", "X", T0)
		rej := NewEvidence("ntR", o, T0.Add(90*time.Second))
		rej.Verdict, rej.Reason = paynotify.VerdictRejected, paynotify.ReasonSignatureInvalid
		if err := st.InsertEvidence(b.ctx, rej); err != nil {
			t.Fatal(err)
		}
		// A duplicate at T0+100s, repeated three times later (the last after the whole range):
		// four requests, counted at the record's first arrival.
		dup := NewEvidence("ntD", o, T0.Add(100*time.Second))
		dup.Verdict = paynotify.VerdictDuplicate
		MustCommit(t, b.ctx, st, &paynotify.Change{Evidence: dup})
		for _, at := range []time.Duration{2 * time.Minute, 30 * time.Minute, 3 * time.Hour} {
			r := *dup
			r.ReceivedAt = T0.Add(at)
			MustCommit(t, b.ctx, st, &paynotify.Change{Evidence: &r, Repeat: true})
		}
		count := func(since, until time.Time) map[paynotify.Verdict]int {
			t.Helper()
			got, err := st.CountEvidence(b.ctx, since, until)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		// ntB at T0+1m, ntR at T0+90s, ntD at T0+100s (and 3 repeats), ntC at T0+2m.
		if got := count(T0, T0.Add(time.Hour)); len(got) != 3 || got[paynotify.VerdictAccepted] != 2 || got[paynotify.VerdictRejected] != 1 || got[paynotify.VerdictDuplicate] != 4 {
			t.Errorf("whole range = %v, want accepted 2, rejected 1, duplicate 4", got)
		}
		if got := count(T0.Add(time.Minute), T0.Add(2*time.Minute)); len(got) != 3 || got[paynotify.VerdictAccepted] != 1 || got[paynotify.VerdictRejected] != 1 || got[paynotify.VerdictDuplicate] != 4 {
			t.Errorf("[1m, 2m) = %v, want accepted 1 (ntB; ntC is at the end, excluded), rejected 1, duplicate 4", got)
		}
		if got := count(T0.Add(101*time.Second), T0.Add(time.Hour)); len(got) != 1 || got[paynotify.VerdictAccepted] != 1 {
			t.Errorf("[101s, 1h) = %v, want accepted 1 (ntC): repeats are counted at their record's first arrival", got)
		}
		if got := count(T0.Add(time.Hour), T0.Add(2*time.Hour)); len(got) != 0 {
			t.Errorf("an empty range = %v", got)
		}
	})
}
