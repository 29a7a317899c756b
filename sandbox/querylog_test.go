package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/wechatpay"
)

// queryRow is the part of a QueryRecord the tests compare: everything but the id and the time.
func queryRow(r QueryRecord) string {
	return fmt.Sprintf("%s %s app=%s mch=%s out=%s req=%s result=%s failed=%v fault=%s",
		r.Provider, r.API, r.AppID, r.MchID, r.OutTradeNo, r.OutRequestNo, r.Result, r.Failed, r.Fault)
}

func queryRows(rs []QueryRecord) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = queryRow(r)
	}
	return out
}

func checkRows(t *testing.T, what string, got []QueryRecord, want []string) {
	t.Helper()
	g := queryRows(got)
	if strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\ngot\n  %s\nwant\n  %s", what, strings.Join(g, "\n  "), strings.Join(want, "\n  "))
	}
}

func payAlipayApp(t *testing.T, b *testBundle, c *alipay.Client, no string, amount int64, notifyURL string) {
	t.Helper()
	os1, err := c.AppPay(alipay.TradeAppPay{OutTradeNo: no, TotalAmount: amount, Subject: "s", NotifyURL: notifyURL})
	if err != nil {
		t.Fatal(err)
	}
	if st, _, memo, err := b.sb.AlipayAppPay(os1, "9000"); err != nil || st != "9000" {
		t.Fatalf("app pay %s: %s %s %v", no, st, memo, err)
	}
}

func prepayWechat(ctx context.Context, t *testing.T, c *wechatpay.Client, no string, amount int64, notifyURL string) {
	t.Helper()
	req := wechatpay.PrepayRequest{Description: "d", OutTradeNo: no, NotifyURL: notifyURL}
	req.Amount.Total = amount
	if _, err := c.PrepayNative(ctx, req); err != nil {
		t.Fatal(err)
	}
}

// TestQueryLog_EveryAPI makes each query-type call of both providers (answered, refused, for
// unknown trades) among calls that are not queries, and checks the log holds exactly the
// queries, in order, with what each asked and was answered; then the control API's listing and
// filters, and reset.
func TestQueryLog_EveryAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ac, wc := b.alipayClient(t), b.wechatClient(t)
	ctx := waitCtx(t, 20*time.Second)
	m := newMerchant(t, func(_ int, r *http.Request, _ []byte) (int, string) { return 200, "success" })
	app, mch := b.keys.AlipayAppID, b.keys.WechatMchID

	// Alipay.
	if _, err := ac.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "ql_a1"}); !isSub(err, "ACQ.TRADE_NOT_EXIST") {
		t.Fatalf("query before the order: %v", err)
	}
	payAlipayApp(t, b, ac, "ql_a1", 100, m.srv.URL)
	q, err := ac.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "ql_a1"})
	if err != nil || q.TradeStatus != alipay.TradeSuccess {
		t.Fatalf("query: %+v %v", q, err)
	}
	if _, err := ac.TradeQuery(ctx, alipay.TradeQuery{TradeNo: q.TradeNo}); err != nil {
		t.Fatalf("query by trade_no: %v", err)
	}
	if _, err := ac.TradeRefund(ctx, alipay.TradeRefund{OutTradeNo: "ql_a1", RefundAmount: 30, OutRequestNo: "ql_r1"}); err != nil {
		t.Fatal(err)
	}
	if rq, err := ac.TradeFastpayRefundQuery(ctx, alipay.TradeFastpayRefundQuery{OutTradeNo: "ql_a1", OutRequestNo: "ql_r1"}); err != nil || rq.RefundStatus != "REFUND_SUCCESS" {
		t.Fatalf("refund query: %+v %v", rq, err)
	}
	if rq, err := ac.TradeFastpayRefundQuery(ctx, alipay.TradeFastpayRefundQuery{OutTradeNo: "ql_a1", OutRequestNo: "ql_nope"}); err != nil || rq.RefundStatus != "" {
		t.Fatalf("unknown refund query: %+v %v", rq, err)
	}
	if _, err := ac.TradeClose(ctx, alipay.TradeClose{OutTradeNo: "ql_a1"}); !isSub(err, "ACQ.TRADE_STATUS_ERROR") {
		t.Fatalf("close paid: %v", err)
	}
	os2, err := ac.AppPay(alipay.TradeAppPay{OutTradeNo: "ql_a2", TotalAmount: 5, Subject: "s", NotifyURL: m.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _, err := b.sb.AlipayAppPay(os2, "4000"); err != nil || st != "4000" {
		t.Fatalf("app pay 4000: %s %v", st, err)
	}
	if _, err := b.sb.Act("open", ActionRequest{OutTradeNo: "ql_a2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.TradeClose(ctx, alipay.TradeClose{OutTradeNo: "ql_a2"}); err != nil {
		t.Fatalf("close: %v", err)
	}
	params := map[string]string{"app_id": app, "method": "alipay.trade.query", "charset": "utf-8", "sign_type": "RSA2",
		"timestamp": alipay.FormatTime(time.Now()), "version": "1.0", "biz_content": `{"out_trade_no":"ql_a1"}`}
	if err := ac.SignParams(params); err != nil {
		t.Fatal(err)
	}
	params["biz_content"] = `{"out_trade_no":"ql_a2"}` // tampered after signing
	if body := postGateway(t, b, params); !contains(body, "isv.invalid-signature") {
		t.Fatalf("tampered query: %s", body)
	}

	// WeChat Pay.
	if _, err := wc.QueryByOutTradeNo(ctx, "ql_w1_x"); !isWx(err, "ORDER_NOT_EXIST") {
		t.Fatalf("query unknown: %v", err)
	}
	if err := b.sb.SetFaults("ql_w1_x", Faults{ManualRefund: true}); err != nil {
		t.Fatal(err)
	}
	prepayWechat(ctx, t, wc, "ql_w1_x", 100, m.srv.URL)
	if tx, err := wc.QueryByOutTradeNo(ctx, "ql_w1_x"); err != nil || tx.TradeState != "NOTPAY" {
		t.Fatalf("query unpaid: %+v %v", tx, err)
	}
	if _, err := b.sb.Act("pay", ActionRequest{OutTradeNo: "ql_w1_x"}); err != nil {
		t.Fatal(err)
	}
	tx, err := wc.QueryByOutTradeNo(ctx, "ql_w1_x")
	if err != nil || tx.TradeState != "SUCCESS" {
		t.Fatalf("query paid: %+v %v", tx, err)
	}
	if tx2, err := wc.QueryByTransactionID(ctx, tx.TransactionID); err != nil || tx2.OutTradeNo != "ql_w1_x" {
		t.Fatalf("query by id: %+v %v", tx2, err)
	}
	rr := wechatpay.RefundRequest{OutTradeNo: "ql_w1_x", OutRefundNo: "ql_wr1"}
	rr.Amount.Refund, rr.Amount.Total = 10, 100
	if _, err := wc.CreateRefund(ctx, rr); err != nil {
		t.Fatal(err)
	}
	if ref, err := wc.QueryRefund(ctx, "ql_wr1"); err != nil || ref.RefundStatus != "PROCESSING" {
		t.Fatalf("refund query: %+v %v", ref, err)
	}
	if _, err := wc.QueryRefund(ctx, "ql_wnope"); !isWx(err, "RESOURCE_NOT_EXISTS") {
		t.Fatalf("unknown refund query: %v", err)
	}
	if err := wc.Close(ctx, "ql_w1_x"); !isWx(err, "ORDERPAID") {
		t.Fatalf("close paid: %v", err)
	}
	prepayWechat(ctx, t, wc, "ql_w2_x", 5, m.srv.URL)
	if err := wc.Close(ctx, "ql_w2_x"); err != nil {
		t.Fatalf("close: %v", err)
	}

	want := []string{
		"alipay alipay.trade.query app=" + app + " mch= out=ql_a1 req= result=ACQ.TRADE_NOT_EXIST failed=true fault=",
		"alipay alipay.trade.query app=" + app + " mch= out=ql_a1 req= result=TRADE_SUCCESS failed=false fault=",
		"alipay alipay.trade.query app=" + app + " mch= out=ql_a1 req= result=TRADE_SUCCESS failed=false fault=", // by trade_no: the trade's out_trade_no
		"alipay alipay.trade.fastpay.refund.query app=" + app + " mch= out=ql_a1 req=ql_r1 result=REFUND_SUCCESS failed=false fault=",
		"alipay alipay.trade.fastpay.refund.query app=" + app + " mch= out=ql_a1 req=ql_nope result=10000 failed=false fault=",
		"alipay alipay.trade.close app=" + app + " mch= out=ql_a1 req= result=ACQ.TRADE_STATUS_ERROR failed=true fault=",
		"alipay alipay.trade.close app=" + app + " mch= out=ql_a2 req= result=TRADE_CLOSED failed=false fault=",
		"alipay alipay.trade.query app=" + app + " mch= out=ql_a2 req= result=isv.invalid-signature failed=true fault=", // as asked
		"wechatpay wechatpay.query app= mch=" + mch + " out=ql_w1_x req= result=ORDER_NOT_EXIST failed=true fault=",
		"wechatpay wechatpay.query app= mch=" + mch + " out=ql_w1_x req= result=NOTPAY failed=false fault=",
		"wechatpay wechatpay.query app= mch=" + mch + " out=ql_w1_x req= result=SUCCESS failed=false fault=",
		"wechatpay wechatpay.query_by_id app= mch=" + mch + " out=ql_w1_x req= result=SUCCESS failed=false fault=",
		"wechatpay wechatpay.refund_query app= mch=" + mch + " out=ql_w1_x req=ql_wr1 result=PROCESSING failed=false fault=",
		"wechatpay wechatpay.refund_query app= mch=" + mch + " out= req=ql_wnope result=RESOURCE_NOT_EXISTS failed=true fault=",
		"wechatpay wechatpay.close app= mch=" + mch + " out=ql_w1_x req= result=ORDERPAID failed=true fault=",
		"wechatpay wechatpay.close app= mch=" + mch + " out=ql_w2_x req= result=CLOSED failed=false fault=",
	}
	all := b.sb.Queries(QueryFilter{})
	checkRows(t, "query log", all, want)
	for i, r := range all {
		if i > 0 && r.ID <= all[i-1].ID {
			t.Fatalf("ids not increasing: %d after %d", r.ID, all[i-1].ID)
		}
		if r.At.IsZero() {
			t.Fatalf("record %d has no time", r.ID)
		}
	}
	if all[1].TradeNo != q.TradeNo || all[2].TradeNo != q.TradeNo || all[11].TradeNo != tx.TransactionID {
		t.Fatalf("trade numbers: %q %q %q, want %q and %q", all[1].TradeNo, all[2].TradeNo, all[11].TradeNo, q.TradeNo, tx.TransactionID)
	}

	// The control API lists the same records, and filters them.
	c := &Client{BaseURL: b.srv.URL}
	got, err := c.Queries(ctx, QueryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	gj, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	aj, err := json.Marshal(all)
	if err != nil {
		t.Fatal(err)
	}
	if string(gj) != string(aj) {
		t.Fatalf("control API:\n%s\nin process:\n%s", gj, aj)
	}
	for _, tc := range []struct {
		f    QueryFilter
		want []string
	}{
		{QueryFilter{Provider: ProviderAlipay}, want[:8]},
		{QueryFilter{Provider: ProviderWechatpay, API: APIWechatQuery}, want[8:11]},
		{QueryFilter{OutTradeNo: "ql_a2"}, []string{want[6], want[7]}},
		{QueryFilter{API: APIAlipayRefundQuery, OutTradeNo: "ql_a1"}, want[3:5]},
		{QueryFilter{Provider: ProviderAlipay, API: APIWechatClose}, nil},
	} {
		got, err := c.Queries(ctx, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		checkRows(t, fmt.Sprintf("filter %+v", tc.f), got, tc.want)
		checkRows(t, fmt.Sprintf("filter %+v in process", tc.f), b.sb.Queries(tc.f), tc.want)
	}

	// Reset forgets one trade's records, then all; ids go on increasing.
	if err := c.Reset(ctx, "ql_a2"); err != nil {
		t.Fatal(err)
	}
	checkRows(t, "after reset of ql_a2", b.sb.Queries(QueryFilter{}), append(append([]string{}, want[:6]...), want[8:]...))
	if err := c.Reset(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Queries(ctx, QueryFilter{}); err != nil || len(got) != 0 {
		t.Fatalf("after reset: %v %v", got, err)
	}
	if _, err := wc.QueryByOutTradeNo(ctx, "ql_w1_x"); !isWx(err, "ORDER_NOT_EXIST") {
		t.Fatalf("query after reset: %v", err)
	}
	if got := b.sb.Queries(QueryFilter{}); len(got) != 1 || got[0].ID <= all[len(all)-1].ID {
		t.Fatalf("after reset: %+v (last id before %d)", got, all[len(all)-1].ID)
	}
}

// TestQueryLog_Ring checks that the log keeps the newest records, in order, when full.
func TestQueryLog_Ring(t *testing.T) {
	t.Parallel()
	l := newQueryLog(3)
	for i := range 5 {
		l.add(&QueryRecord{Provider: ProviderAlipay, OutTradeNo: fmt.Sprintf("o%d", i%2)})
	}
	ids := func(rs []QueryRecord) string {
		var s []string
		for _, r := range rs {
			s = append(s, fmt.Sprint(r.ID))
		}
		return strings.Join(s, ",")
	}
	if got := ids(l.list(QueryFilter{})); got != "3,4,5" {
		t.Fatalf("kept %s, want 3,4,5", got)
	}
	if got := ids(l.list(QueryFilter{OutTradeNo: "o0"})); got != "3,5" {
		t.Fatalf("o0: %s, want 3,5", got)
	}
	l.forget("o0")
	if got := ids(l.list(QueryFilter{})); got != "4" {
		t.Fatalf("after forget: %s, want 4", got)
	}
	for range 3 {
		l.add(&QueryRecord{})
	}
	if got := ids(l.list(QueryFilter{})); got != "6,7,8" {
		t.Fatalf("after forget and refill: %s, want 6,7,8", got)
	}
}

// TestQueryLog_Concurrent queries both providers from 8 goroutines at once: every call is
// recorded once, with a distinct id, in id order (run with -race for the lock).
func TestQueryLog_Concurrent(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ac, wc := b.alipayClient(t), b.wechatClient(t)
	ctx := waitCtx(t, 30*time.Second)
	payAlipayApp(t, b, ac, "qc_a", 1, "")
	prepayWechat(ctx, t, wc, "qc_w_1", 1, "https://merchant.example/notify")
	const workers, each = 8, 5
	errs := make(chan error, workers*each*2)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if q, err := ac.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "qc_a"}); err != nil || q.TradeStatus != alipay.TradeSuccess {
					errs <- fmt.Errorf("alipay: %+v %v", q, err)
				}
				if tx, err := wc.QueryByOutTradeNo(ctx, "qc_w_1"); err != nil || tx.TradeState != "NOTPAY" {
					errs <- fmt.Errorf("wechatpay: %+v %v", tx, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	all := b.sb.Queries(QueryFilter{})
	if len(all) != workers*each*2 {
		t.Fatalf("%d records, want %d", len(all), workers*each*2)
	}
	seen := map[int64]bool{}
	for i, r := range all {
		if seen[r.ID] || i > 0 && r.ID <= all[i-1].ID {
			t.Fatalf("record %d: id %d repeated or out of order", i, r.ID)
		}
		seen[r.ID] = true
	}
	if n := len(b.sb.Queries(QueryFilter{Provider: ProviderWechatpay, OutTradeNo: "qc_w_1"})); n != workers*each {
		t.Fatalf("%d WeChat records, want %d", n, workers*each)
	}
}

// TestQueryLog_SignsOutsideMainLock checks that no query answer is signed while the sandbox's
// main lock is held: a hook run just before each signature tries the lock. No notifier runs, so
// nothing else holds it.
func TestQueryLog_SignsOutsideMainLock(t *testing.T) {
	t.Parallel()
	b := setupStopped(t, 1000)
	ac, wc := b.alipayClient(t), b.wechatClient(t)
	ctx := waitCtx(t, 20*time.Second)
	if err := b.sb.SetFaults("", Faults{ManualRefund: true}); err != nil {
		t.Fatal(err)
	}
	payAlipayApp(t, b, ac, "lk_a1", 100, "http://127.0.0.1:9/notify")
	os2, err := ac.AppPay(alipay.TradeAppPay{OutTradeNo: "lk_a2", TotalAmount: 5, Subject: "s", NotifyURL: "http://127.0.0.1:9/notify"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := b.sb.AlipayAppPay(os2, "4000"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.sb.Act("open", ActionRequest{OutTradeNo: "lk_a2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.TradeRefund(ctx, alipay.TradeRefund{OutTradeNo: "lk_a1", RefundAmount: 1, OutRequestNo: "lk_r1"}); err != nil {
		t.Fatal(err)
	}
	prepayWechat(ctx, t, wc, "lk_w1_x", 100, "http://127.0.0.1:9/notify")
	prepayWechat(ctx, t, wc, "lk_w2_x", 100, "http://127.0.0.1:9/notify")
	if _, err := b.sb.Act("pay", ActionRequest{OutTradeNo: "lk_w1_x"}); err != nil {
		t.Fatal(err)
	}
	rr := wechatpay.RefundRequest{OutTradeNo: "lk_w1_x", OutRefundNo: "lk_wr1"}
	rr.Amount.Refund, rr.Amount.Total = 1, 100
	if _, err := wc.CreateRefund(ctx, rr); err != nil {
		t.Fatal(err)
	}

	var signed, underLock atomic.Int32
	hook := func() {
		signed.Add(1)
		if b.sb.mu.TryLock() {
			b.sb.mu.Unlock()
		} else {
			underLock.Add(1)
		}
	}
	b.sb.signHook.Store(&hook)
	q, err := ac.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "lk_a1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ac.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "lk_none"}); !isSub(err, "ACQ.TRADE_NOT_EXIST") {
		t.Fatal(err)
	}
	if _, err := ac.TradeFastpayRefundQuery(ctx, alipay.TradeFastpayRefundQuery{OutTradeNo: "lk_a1", OutRequestNo: "lk_r1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ac.TradeClose(ctx, alipay.TradeClose{OutTradeNo: "lk_a2"}); err != nil {
		t.Fatal(err)
	}
	tx, err := wc.QueryByOutTradeNo(ctx, "lk_w1_x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wc.QueryByTransactionID(ctx, tx.TransactionID); err != nil {
		t.Fatal(err)
	}
	if _, err := wc.QueryByOutTradeNo(ctx, "lk_none_x"); !isWx(err, "ORDER_NOT_EXIST") {
		t.Fatal(err)
	}
	if _, err := wc.QueryRefund(ctx, "lk_wr1"); err != nil {
		t.Fatal(err)
	}
	if _, err := wc.QueryRefund(ctx, "lk_none"); !isWx(err, "RESOURCE_NOT_EXISTS") {
		t.Fatal(err)
	}
	if err := wc.Close(ctx, "lk_w2_x"); err != nil {
		t.Fatal(err)
	}
	if q.TradeNo == "" {
		t.Fatal("no trade_no")
	}
	if n := signed.Load(); n != 10 {
		t.Fatalf("%d answers signed, want 10", n)
	}
	if n := underLock.Load(); n != 0 {
		t.Fatalf("%d of 10 query answers were signed under the sandbox's main lock", n)
	}
}
