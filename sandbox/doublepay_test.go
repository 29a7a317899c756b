package sandbox

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/wechatpay"
)

// TestDoublePay pays a trade with the double_pay fault and checks what a merchant receives: two
// verified payment notifications of the one out_trade_no, same amount, under two trade numbers,
// the first payment's first; the second retried on the normal schedule; queries by out_trade_no
// answering the first payment, by the second trade number the second; and the second payment in
// the control API's trades listing.
func TestDoublePay(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ac, wc := b.alipayClient(t), b.wechatClient(t)
	c := &Client{BaseURL: b.srv.URL}

	t.Run("Alipay", func(t *testing.T) {
		t.Parallel()
		ctx := waitCtx(t, 20*time.Second)
		// The merchant verifies, and fails the second request once: the second payment's
		// notification must be retried like any other.
		m := newMerchant(t, func(n int, r *http.Request, body []byte) (int, string) {
			if _, err := ac.VerifyNotification(r.Header, body); err != nil || n == 2 {
				return 500, "fail"
			}
			return 200, "success"
		})
		if err := c.SetFaults(ctx, "dp_a", Faults{DoublePay: true}); err != nil {
			t.Fatal(err)
		}
		payAlipayApp(t, b, ac, "dp_a", 250, m.srv.URL)
		as, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "dp_a"}, 2)
		if err != nil {
			t.Fatalf("%v %+v", err, as)
		}
		ts, err := c.Trades(ctx, "dp_a")
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 1 || ts[0].DoublePay == nil || ts[0].DoublePay.Amount != 250 || ts[0].DoublePay.PaidAt.IsZero() ||
			ts[0].DoublePay.TradeNo == "" || ts[0].DoublePay.TradeNo == ts[0].TradeNo || ts[0].Status != alipay.TradeSuccess {
			t.Fatalf("trades listing %+v", ts)
		}
		first, second := ts[0].TradeNo, ts[0].DoublePay.TradeNo

		reqs := m.requests()
		if len(reqs) != 3 {
			t.Fatalf("merchant got %d requests, want 3", len(reqs))
		}
		var got []string
		ids := map[string]string{}
		for _, r := range reqs {
			n, err := ac.VerifyNotification(r.header, r.body)
			if err != nil {
				t.Fatal(err)
			}
			if n.OutTradeNo != "dp_a" || n.TotalAmount != 250 || n.TradeStatus != alipay.TradeSuccess || n.AppID != b.keys.AlipayAppID {
				t.Fatalf("notification %+v", n)
			}
			got = append(got, n.TradeNo)
			if old, ok := ids[n.TradeNo]; ok && old != n.NotifyID {
				t.Fatalf("notify_id changed across retries of %s", n.TradeNo)
			}
			ids[n.TradeNo] = n.NotifyID
		}
		if want := first + "," + second + "," + second; strings.Join(got, ",") != want {
			t.Fatalf("notified trade numbers %v, want %s", got, want)
		}
		if ids[first] == ids[second] {
			t.Fatal("both payments have one notify_id")
		}

		ns, err := c.Notifications(ctx, "dp_a")
		if err != nil {
			t.Fatal(err)
		}
		if len(ns) != 2 || ns[0].DoublePay || ns[0].TradeNo != first || !ns[1].DoublePay || ns[1].TradeNo != second ||
			ns[1].AfterID != ns[0].ID || ns[1].Kind != "payment" {
			t.Fatalf("notifications %+v", ns)
		}
		as, err = b.sb.Attempts(AttemptFilter{OutTradeNo: "dp_a"})
		if err != nil {
			t.Fatal(err)
		}
		sched, _ := Schedule("alipay")
		var secondAttempts []*Attempt
		for _, a := range as {
			if a.NotificationID == ns[1].ID {
				secondAttempts = append(secondAttempts, a)
				if a.Fault != "double_pay" {
					t.Fatalf("attempt of the second payment with fault %q", a.Fault)
				}
			} else if a.Fault != "" {
				t.Fatalf("attempt of the first payment with fault %q", a.Fault)
			}
		}
		if len(secondAttempts) != 2 || secondAttempts[0].Acked || !secondAttempts[1].Acked || secondAttempts[1].ScheduledOffset.D() != sched[1] {
			t.Fatalf("second payment's attempts %+v", secondAttempts)
		}

		q, err := ac.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "dp_a"})
		if err != nil || q.TradeNo != first || q.TotalAmount != 250 || q.TradeStatus != alipay.TradeSuccess {
			t.Fatalf("query by out_trade_no: %+v %v", q, err)
		}
		q2, err := ac.TradeQuery(ctx, alipay.TradeQuery{TradeNo: second})
		if err != nil || q2.TradeNo != second || q2.OutTradeNo != "dp_a" || q2.TotalAmount != 250 || q2.TradeStatus != alipay.TradeSuccess {
			t.Fatalf("query by the second trade_no: %+v %v", q2, err)
		}
		if r := lastQuery(t, b.sb, APIAlipayTradeQuery, "dp_a"); r.TradeNo != second || r.Result != alipay.TradeSuccess {
			t.Fatalf("record %+v", r)
		}
	})

	t.Run("Wechat", func(t *testing.T) {
		t.Parallel()
		ctx := waitCtx(t, 20*time.Second)
		m := newMerchant(t, func(_ int, r *http.Request, body []byte) (int, string) {
			if _, err := wc.VerifyNotification(r.Header, body); err != nil {
				return 401, `{"code":"FAIL","message":"signature"}`
			}
			return 204, ""
		})
		if err := b.sb.SetFaults("dp_w_1", Faults{DoublePay: true}); err != nil {
			t.Fatal(err)
		}
		prepayWechat(ctx, t, wc, "dp_w_1", 300, m.srv.URL)
		if _, err := b.sb.Act("pay", ActionRequest{OutTradeNo: "dp_w_1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "dp_w_1"}, 2); err != nil {
			t.Fatal(err)
		}
		ts, err := c.Trades(ctx, "dp_w_1")
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) != 1 || ts[0].DoublePay == nil || ts[0].DoublePay.Amount != 300 || ts[0].DoublePay.TradeNo == ts[0].TradeNo ||
			!strings.HasPrefix(ts[0].DoublePay.TradeNo, "42000") {
			t.Fatalf("trades listing %+v", ts)
		}
		first, second := ts[0].TradeNo, ts[0].DoublePay.TradeNo
		reqs := m.requests()
		if len(reqs) != 2 {
			t.Fatalf("merchant got %d requests, want 2", len(reqs))
		}
		for i, want := range []string{first, second} {
			n, err := wc.VerifyNotification(reqs[i].header, reqs[i].body)
			if err != nil {
				t.Fatal(err)
			}
			tx := n.Transaction
			if n.EventType != wechatpay.EventTransactionSuccess || tx.TransactionID != want || tx.OutTradeNo != "dp_w_1" ||
				tx.Amount.Total != 300 || tx.TradeState != "SUCCESS" || tx.AppID != b.keys.WechatAppID || tx.MchID != b.keys.WechatMchID {
				t.Fatalf("notification %d: %+v, want transaction %s", i+1, tx, want)
			}
		}
		tx, err := wc.QueryByOutTradeNo(ctx, "dp_w_1")
		if err != nil || tx.TransactionID != first || tx.Amount.Total != 300 {
			t.Fatalf("query by out_trade_no: %+v %v", tx, err)
		}
		tx2, err := wc.QueryByTransactionID(ctx, second)
		if err != nil || tx2.TransactionID != second || tx2.OutTradeNo != "dp_w_1" || tx2.TradeState != "SUCCESS" || tx2.Amount.Total != 300 {
			t.Fatalf("query by the second transaction_id: %+v %v", tx2, err)
		}
	})

	// Without the fault, one payment is one notification (the merchant answers success at once).
	t.Run("OffByDefault", func(t *testing.T) {
		t.Parallel()
		ctx := waitCtx(t, 20*time.Second)
		m := newMerchant(t, alipayOK)
		payAlipayApp(t, b, ac, "dp_none", 1, m.srv.URL)
		if _, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "dp_none"}, 1); err != nil {
			t.Fatal(err)
		}
		ns, err := b.sb.Notifications("dp_none")
		ts, err2 := b.sb.Trades(ProviderAlipay, "dp_none")
		if err != nil || err2 != nil || len(ns) != 1 || len(ts) != 1 || ts[0].DoublePay != nil {
			t.Fatalf("%+v %+v %v %v", ns, ts, err, err2)
		}
	})
}
