package paynotify_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/internal/testsign"
	"github.com/paynotify/paynotify/provider"
)

// The check once more of an order closed by a close of our own (docs/reconciliation.md, "A close
// of our own"): cases a reviewer helper found wrong in its first versions.

// signedAlipay is a fake Alipay gateway on loopback, its answers signed by openssl with the key
// that plays Alipay (httpd/testdata), per method; nodes[method] is a queue, the last one repeated.
type signedAlipay struct {
	mu    sync.Mutex
	nodes map[string][]string
	calls map[string]int
}

func newSignedAlipay(t *testing.T, nodes map[string][]string) (*provider.Alipay, *signedAlipay) {
	t.Helper()
	fa := &signedAlipay{nodes: nodes, calls: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.URL.Query().Get("method")
		fa.mu.Lock()
		q := fa.nodes[method]
		fa.calls[method]++
		var node string
		if len(q) > 0 {
			node = q[0]
			if len(q) > 1 {
				fa.nodes[method] = q[1:]
			}
		}
		fa.mu.Unlock()
		if node == "" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		body := `{"` + strings.ReplaceAll(method, ".", "_") + `_response":` + node +
			`,"sign":"` + testsign.RSA2(t, "httpd/testdata/alipay_private.pem", []byte(node)) + `"}`
		w.Header().Set("Content-Type", "text/html;charset=utf-8")
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	b, err := os.ReadFile("httpd/testdata/alipay_public.pem")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := alipay.ParsePublicKey(b)
	if err != nil {
		t.Fatal(err)
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	c, err := alipay.NewClient(alipay.Config{AppID: "2021000000000001", PrivateKey: k, AlipayPublicKey: pub, Gateway: srv.URL + "/gateway.do"})
	if err != nil {
		t.Fatal(err)
	}
	return &provider.Alipay{Client: c}, fa
}

func (fa *signedAlipay) count(method string) int {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	return fa.calls[method]
}

// sweepsFindPayment sweeps every 10 minutes from t0+50m to t0+3h and fails unless T1 ends paid
// (the signed gateway's later query answers say TRADE_SUCCESS).
func sweepsFindPayment(t *testing.T, r *paynotify.Reconciler, b *svcBundle, fa *signedAlipay) {
	t.Helper()
	for at := 50 * time.Minute; at <= 3*time.Hour; at += 10 * time.Minute {
		b.now.Set(t0.Add(at))
		sweep(t, r)
	}
	if o := b.order(t, "T1"); o.Status != paynotify.StatusPaid {
		t.Errorf("T1 is %s after %d queries; want paid (Alipay has it TRADE_SUCCESS)", o.Status, fa.count("alipay.trade.query"))
	}
}

// closedLocallySigned: T1 (expiring at t0+30m) closed through the API at t0+5m against the
// signed loopback gateway answering nodes (its first close node a close of our own): its check
// once more is due at t0+40m.
func closedLocallySigned(t *testing.T, nodes map[string][]string) (*paynotify.Reconciler, *svcBundle, *signedAlipay) {
	t.Helper()
	r, b := setupReconciler(t)
	gw, fa := newSignedAlipay(t, nodes)
	b.app.Gateway = gw
	scheduledOrder(t, r.Service, "T1", 30*time.Minute)
	b.now.Set(t0.Add(5 * time.Minute))
	if o, err := r.Service.CloseOrder(context.Background(), "shop", "T1"); err != nil || o.Status != paynotify.StatusClosed || o.NextCheckAt == nil {
		t.Fatalf("close: %+v, %v", o, err)
	}
	return r, b, fa
}

// TestReconciler_LocalCloseNotFoundOfAnotherOrder: Alipay's business failures carry out_trade_no,
// and the signature covers the node, not the request. A signed ACQ.TRADE_NOT_EXIST naming T9
// (replayed) says nothing about T1: the real adapter rejects it, T1 is asked again and its
// payment (its notifications lost) found. It used to end T1's checks.
func TestReconciler_LocalCloseNotFoundOfAnotherOrder(t *testing.T) {
	r, b, fa := closedLocallySigned(t, map[string][]string{
		"alipay.trade.close": {`{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在","out_trade_no":"T1"}`},
		"alipay.trade.query": {
			// About T9, replayed: says nothing about T1.
			`{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在","out_trade_no":"T9"}`,
			// T1 as Alipay has it: paid before its expiry, notifications lost.
			`{"code":"10000","msg":"Success","out_trade_no":"T1","trade_no":"2026120122001400000000001","trade_status":"TRADE_SUCCESS","total_amount":"10.00","send_pay_date":"2026-12-01 08:20:00"}`,
		},
	})
	b.now.Set(t0.Add(40 * time.Minute))
	sweep(t, r)
	if fa.count("alipay.trade.query") != 1 {
		t.Fatalf("%d queries at the check once more, want 1", fa.count("alipay.trade.query"))
	}
	if next, _ := nextCheck(t, b, "T1"); next < 0 {
		t.Errorf("an ACQ.TRADE_NOT_EXIST naming T9 ended T1's checks (next_check_at null); want T1 asked again at then_every")
	}
	sweepsFindPayment(t, r, b, fa)
}

// TestReconciler_LocalClosePanicEnds: a check once more that panics every time is asked again
// until LocalCloseWindow after the expiry, then no more (it used to be asked for ever: the
// panic's outcome lost the window).
func TestReconciler_LocalClosePanicEnds(t *testing.T) {
	r, b := closedLocallyAt5m(t)
	b.fake.setQuery("T1", func() (*paynotify.Answer, error) { panic("adapter bug on an unexpected answer") })
	end := 30*time.Minute + paynotify.LocalCloseWindow
	for at := 40 * time.Minute; at <= end+3*24*time.Hour; at += time.Hour {
		b.now.Set(t0.Add(at))
		sweep(t, r)
	}
	o := b.order(t, "T1")
	if o.NextCheckAt != nil {
		t.Errorf("3 days past the window: next check at t0+%v after %d queries; want no more checks", o.NextCheckAt.Sub(t0), b.fake.count("query:T1"))
	}
}

// TestReconciler_LocalCloseShutdownWhileClosing: a check once more cancelled by a shutdown while
// closing the open trade is given back due at once, uncounted, as every check at shutdown
// (docs/reconciliation.md, "Graceful shutdown"); it used to be counted and put off then_every.
func TestReconciler_LocalCloseShutdownWhileClosing(t *testing.T) {
	r, b := closedLocallyAt5m(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.fake.closeFn = func(o *paynotify.Order) (paynotify.Fact, error) {
		cancel() // SIGTERM while the close is on its way
		return paynotify.Fact{}, &paynotify.Error{Code: paynotify.EPROVIDERUNAVAILABLE, Message: "Alipay is unreachable: context canceled."}
	}
	b.now.Set(t0.Add(40 * time.Minute))
	if _, err := r.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	next, checks := nextCheck(t, b, "T1")
	if next != 40*time.Minute || checks != 0 {
		t.Errorf("cancelled while closing: next check at t0+%v, %d checks counted; want given back due at once (t0+40m), uncounted", next, checks)
	}
}

// TestReconciler_LocalCloseOpenTradeCloseNamesAnotherOrder: at the check once more Alipay
// answers, signed, that T1's trade is open (WAIT_BUYER_PAY); its close answers a signed
// ACQ.TRADE_NOT_EXIST naming T9 (replayed), which says nothing about T1: the close fails, T1 is
// asked again, and the payment made on the open trade is found. The adapter used to take any
// such answer as a close of our own, and T1's checks ended with its trade open.
func TestReconciler_LocalCloseOpenTradeCloseNamesAnotherOrder(t *testing.T) {
	r, b, fa := closedLocallySigned(t, map[string][]string{
		"alipay.trade.close": {
			`{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在","out_trade_no":"T1"}`,
			// About T9, replayed: says nothing about T1, whose trade the query found open.
			`{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在","out_trade_no":"T9"}`,
		},
		"alipay.trade.query": {
			`{"code":"10000","msg":"Success","out_trade_no":"T1","trade_no":"2026120122001400000000001","trade_status":"WAIT_BUYER_PAY","total_amount":"10.00"}`,
			`{"code":"10000","msg":"Success","out_trade_no":"T1","trade_no":"2026120122001400000000001","trade_status":"TRADE_SUCCESS","total_amount":"10.00","send_pay_date":"2026-12-01 08:50:00"}`,
		},
	})
	b.now.Set(t0.Add(40 * time.Minute))
	sweep(t, r)
	if fa.count("alipay.trade.query") != 1 || fa.count("alipay.trade.close") != 2 {
		t.Fatalf("%d queries, %d closes; want the open trade found and a close tried", fa.count("alipay.trade.query"), fa.count("alipay.trade.close"))
	}
	if next, _ := nextCheck(t, b, "T1"); next < 0 {
		t.Errorf("the trade found open, its close answered ACQ.TRADE_NOT_EXIST about T9: T1's checks ended (next_check_at null); want it asked again")
	}
	sweepsFindPayment(t, r, b, fa)
}

// TestReconciler_LocalCloseWindowEndCounted: every check once more of T1 gets an answer that
// does not verify: each is a query made and counted in `checks` ("how many times it was
// queried", docs/api.md), the last one, past LocalCloseWindow, too.
func TestReconciler_LocalCloseWindowEndCounted(t *testing.T) {
	r, b := closedLocallyAt5m(t)
	b.fake.setQuery("T1", func() (*paynotify.Answer, error) {
		return &paynotify.Answer{Endpoint: "fake.query", Body: []byte(`{"forged":"TRADE_NOT_EXIST"}`)},
			&paynotify.RejectError{Reason: paynotify.ReasonSignatureInvalid, Detail: "bad signature"}
	})
	end := 30*time.Minute + paynotify.LocalCloseWindow
	for at := 40 * time.Minute; at <= end+24*time.Hour; at += time.Hour {
		b.now.Set(t0.Add(at))
		sweep(t, r)
	}
	o := b.order(t, "T1")
	if o.NextCheckAt != nil {
		t.Fatalf("past the window: next check %v, want none", o.NextCheckAt)
	}
	if q := b.fake.count("query:T1"); o.Checks != q {
		t.Errorf("%d queries answered (each rejected), checks = %d: the last, at the window's end, not counted", q, o.Checks)
	}
}

// TestReconciler_LocalCloseOpenTradeCloseAboutAnotherOrderNotAnOutage: at the check once more
// Alipay answers, signed, that T1's trade is open; its close answers, signed, ACQ.TRADE_NOT_EXIST
// naming T9. Alipay answered both calls: T1 is asked again at then_every (10m here), its answered
// query counted, and the app not backed off as in an outage (which, with other checks of a busy
// app answered and resetting the backoff, sent T1's close again at nearly every sweep).
func TestReconciler_LocalCloseOpenTradeCloseAboutAnotherOrderNotAnOutage(t *testing.T) {
	r, b, fa := closedLocallySigned(t, map[string][]string{
		"alipay.trade.close": {
			`{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在","out_trade_no":"T1"}`,
			`{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在","out_trade_no":"T9"}`,
		},
		"alipay.trade.query": {
			`{"code":"10000","msg":"Success","out_trade_no":"T1","trade_no":"2026120122001400000000001","trade_status":"WAIT_BUYER_PAY","total_amount":"10.00"}`,
		},
	})
	b.now.Set(t0.Add(40 * time.Minute))
	st := sweep(t, r)
	if fa.count("alipay.trade.query") != 1 || fa.count("alipay.trade.close") != 2 {
		t.Fatalf("%d queries, %d closes", fa.count("alipay.trade.query"), fa.count("alipay.trade.close"))
	}
	next, checks := nextCheck(t, b, "T1")
	if next != 50*time.Minute || checks != 1 {
		t.Errorf("Alipay answered the query (WAIT_BUYER_PAY) and the close (signed, about T9): next check at t0+%v, %d checks (sweep %+v); "+
			"want asked again at then_every (t0+50m), the query counted: it was handled as an outage of the app", next, checks, st)
	}
	// A busy app: a new order every sweep (every 30 s here), whose checks Alipay
	// answers; each answer resets the app's backoff (Reconciler.answered), so T1 is asked and
	// closed again at nearly every sweep, for up to LocalCloseWindow (7 days).
	i := 0
	for at := 40*time.Minute + 30*time.Second; at <= 70*time.Minute; at += 30 * time.Second {
		b.now.Set(t0.Add(at))
		scheduledOrder(t, r.Service, fmt.Sprintf("N%04d", i), 2*time.Hour)
		i++
		sweep(t, r)
	}
	if n := fa.count("alipay.trade.close") - 2; n > 3 {
		t.Errorf("%d more closes of T1 in the 30 minutes after its check (%d queries in all, with the new orders'); at then_every (10m) it would be 3", n, fa.count("alipay.trade.query"))
	}
}

// TestReconciler_ExpiryCloseAboutAnotherOrder: the close at expiry of pending T1 answered, signed,
// about another order (ACQ.TRADE_NOT_EXIST naming T9; or ACQ.TRADE_STATUS_ERROR, then a settling
// query answered about T9): the close fails and is sent again at then_every, as after a signed
// refusal, not at nearly every sweep of a busy app as in an outage (whose backoff the other
// orders' answered checks reset).
func TestReconciler_ExpiryCloseAboutAnotherOrder(t *testing.T) {
	for name, nodes := range map[string]map[string][]string{
		"NotExist": {
			"alipay.trade.close": {`{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在","out_trade_no":"T9"}`},
			"alipay.trade.query": {`{"code":"10000","msg":"Success","out_trade_no":"T1","trade_no":"2026120122001400000000001","trade_status":"WAIT_BUYER_PAY","total_amount":"10.00"}`},
		},
		"StatusErrorQuery": {
			"alipay.trade.close": {`{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_STATUS_ERROR","sub_msg":"交易状态不合法","out_trade_no":"T1"}`},
			"alipay.trade.query": {`{"code":"10000","msg":"Success","out_trade_no":"T9","trade_no":"2026120122001400000000009","trade_status":"TRADE_CLOSED","total_amount":"10.00"}`},
		},
	} {
		t.Run(name, func(t *testing.T) {
			r, b := setupReconciler(t)
			gw, fa := newSignedAlipay(t, nodes)
			b.app.Gateway = gw
			scheduledOrder(t, r.Service, "T1", 30*time.Minute)
			i := 0
			for at := 30 * time.Minute; at <= 60*time.Minute; at += 30 * time.Second {
				b.now.Set(t0.Add(at))
				scheduledOrder(t, r.Service, fmt.Sprintf("N%04d", i), 2*time.Hour)
				i++
				sweep(t, r)
			}
			if o := b.order(t, "T1"); o.Status != paynotify.StatusPending {
				t.Fatalf("T1 %s", o.Status)
			}
			if n := fa.count("alipay.trade.close"); n > 4 {
				t.Errorf("%d closes of T1 in the 30 minutes after its expiry; at then_every (10m) it would be 4", n)
			}
		})
	}
}

// TestReconciler_LocalCloseOpenTradeStatusErrorQueryAboutAnotherOrder: the check once more of
// locally closed T1 whose trade is open: the same close path.
func TestReconciler_LocalCloseOpenTradeStatusErrorQueryAboutAnotherOrder(t *testing.T) {
	r, b, fa := closedLocallySigned(t, map[string][]string{
		"alipay.trade.close": {
			`{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在","out_trade_no":"T1"}`,
			`{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_STATUS_ERROR","sub_msg":"交易状态不合法","out_trade_no":"T1"}`,
		},
		"alipay.trade.query": {
			`{"code":"10000","msg":"Success","out_trade_no":"T1","trade_no":"2026120122001400000000001","trade_status":"WAIT_BUYER_PAY","total_amount":"10.00"}`,
			`{"code":"10000","msg":"Success","out_trade_no":"T9","trade_no":"2026120122001400000000009","trade_status":"TRADE_CLOSED","total_amount":"10.00"}`,
		},
	})
	b.now.Set(t0.Add(40 * time.Minute))
	sweep(t, r)
	if fa.count("alipay.trade.query") != 2 || fa.count("alipay.trade.close") != 2 {
		t.Fatalf("%d queries, %d closes", fa.count("alipay.trade.query"), fa.count("alipay.trade.close"))
	}
	if next, checks := nextCheck(t, b, "T1"); next != 50*time.Minute || checks != 1 {
		t.Errorf("close's query answered about T9: next check at t0+%v, %d checks; want t0+50m (then_every), 1: handled as an outage", next, checks)
	}
}

// TestReconciler_LocalCloseRetryCappedAtWindow: a check once more that fails (a signed refusal)
// within then_every of the window's end is asked again at the window's end, not past it, and
// failing there ends its checks.
func TestReconciler_LocalCloseRetryCappedAtWindow(t *testing.T) {
	r, b := closedLocallyAt5m(t)
	b.fake.setQuery("T1", func() (*paynotify.Answer, error) {
		return nil, &paynotify.Error{Code: paynotify.EPROVIDER, Message: "Alipay refused: isv.insufficient-isv-permissions", ProviderCode: "isv.insufficient-isv-permissions"}
	})
	end := 30*time.Minute + paynotify.LocalCloseWindow
	b.now.Set(t0.Add(end - 5*time.Minute)) // then_every (10m) would pass the end
	sweep(t, r)
	if next, _ := nextCheck(t, b, "T1"); next != end {
		t.Fatalf("refused 5 minutes before the window's end: next check at t0+%v, want its end (t0+%v)", next, end)
	}
	b.now.Set(t0.Add(end))
	sweep(t, r)
	if next, checks := nextCheck(t, b, "T1"); next != -1 || checks != 2 || b.fake.count("query:T1") != 2 {
		t.Fatalf("refused at the window's end: next check at t0+%v after %d checks, %d queries; want none after 2, 2", next, checks, b.fake.count("query:T1"))
	}
}
