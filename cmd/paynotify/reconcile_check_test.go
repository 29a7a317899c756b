package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// refundCheck is a store holding order T1 of app shop (10.00, paid under trade P1) and its
// pending refund R1, and a Service whose app calls the provider gw.
type refundCheck struct {
	st   store
	svc  *paynotify.Service
	app  *paynotify.App
	rf   *paynotify.Refund
	logs *lockedBuffer
}

func newRefundCheck(t *testing.T, gw paynotify.Provider, r1 paynotify.Amount) *refundCheck {
	t.Helper()
	ctx := t.Context()
	st, err := openStore(ctx, "sqlite:"+filepath.Join(t.TempDir(), "paynotify.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rc := &refundCheck{st: st, logs: &lockedBuffer{}}
	logger := slog.New(slog.NewTextHandler(rc.logs, nil))
	rc.app = &paynotify.App{Name: "shop", Provider: paynotify.ProviderAlipay, AppID: "2021000000000001",
		SellerIDs: []string{"2088000000000002"}, Gateway: gw}
	rc.svc = &paynotify.Service{Store: st, Processor: &paynotify.Processor{Store: st, Logger: logger}, Logger: logger,
		Apps: map[string]*paynotify.App{"shop": rc.app}}
	now := time.Now()
	if _, _, err := st.CreateOrder(ctx, &paynotify.Order{App: "shop", OutTradeNo: "T1", Channel: paynotify.ChannelAlipayApp,
		Status: paynotify.StatusPending, Amount: 1000, Currency: "CNY", Subject: "s", Version: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	rc.apply(t, paynotify.Fact{Kind: paynotify.FactPaid, Amount: 1000, HasAmount: true})
	if rc.rf, _, err = st.CreateRefund(ctx, &paynotify.Refund{App: "shop", OutTradeNo: "T1", OutRequestNo: "R1", Amount: r1,
		Status: paynotify.RefundPending, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	return rc
}

// apply applies f, a fact of T1's payment P1, as a verified notification would.
func (rc *refundCheck) apply(t *testing.T, f paynotify.Fact) {
	t.Helper()
	f.OutTradeNo, f.ProviderTradeNo, f.AppID, f.SellerID, f.At = "T1", "P1", "2021000000000001", "2088000000000002", time.Now()
	if res, err := rc.svc.Processor.Apply(t.Context(), rc.app, f, nil); err != nil || res.Verdict != paynotify.VerdictAccepted {
		t.Fatalf("%s: %+v, %v", f.Kind, res, err)
	}
}

// check runs paynotify reconcile's check of R1.
func (rc *refundCheck) check(t *testing.T, dry bool) *reconcileStats {
	var stats reconcileStats
	reconcileCommand{}.check(t.Context(), rc.svc, reconcileItem{app: rc.app, refund: rc.rf}, dry, &stats)
	return &stats
}

// r1 and t1 are R1 and T1 as stored.
func (rc *refundCheck) r1(t *testing.T) *paynotify.Refund {
	t.Helper()
	rs, err := rc.st.ListRefunds(t.Context(), "shop", "T1")
	if err != nil || len(rs) != 1 {
		t.Fatalf("refunds %+v, %v", rs, err)
	}
	return rs[0]
}

func (rc *refundCheck) t1(t *testing.T) *paynotify.Order {
	t.Helper()
	o, err := rc.st.GetOrder(t.Context(), "shop", "T1")
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// otherPaymentRefunds answers a refund query about the refund as made from (or, with failed,
// failed on) another payment (P2) of the order than the one it holds (P1): the provider refunded
// by out_trade_no and picked the duplicate payment.
type otherPaymentRefunds struct {
	paynotify.Provider
	failed bool
	amount paynotify.Amount // the trade's amount the answer states, when not 0
}

func (g otherPaymentRefunds) QueryRefund(_ context.Context, o *paynotify.Order, r *paynotify.Refund) (*paynotify.Answer, error) {
	kind, state := paynotify.FactRefund, "REFUND_SUCCESS"
	if g.failed {
		kind, state = paynotify.FactRefundFailed, "ABNORMAL"
	}
	f := &paynotify.Fact{Kind: kind, OutTradeNo: o.OutTradeNo, ProviderTradeNo: "P2", AppID: "2021000000000001",
		SellerID: "2088000000000002", RefundRequestNo: r.OutRequestNo, RefundAmount: r.Amount, RefundPerRequest: true, At: time.Now()}
	if g.amount != 0 {
		f.Amount, f.HasAmount = g.amount, true
	}
	return &paynotify.Answer{State: state, Endpoint: "test.refund.query", Body: []byte(`{"test":"refund query"}`), Fact: f}, nil
}

// TestReconcileCheck_RefundFromOtherPayment: `paynotify reconcile` counts a pending refund that
// the provider made from another payment of the order (an acknowledged duplicate_payment_refund)
// as pending, with a warning, not as an error: the refund stays pending whatever the run does,
// and an error would fail every run until it needs attention. A failure reported on another
// payment (WeChat Pay's ABNORMAL) stays an error: someone must look. A dry run counts as the run
// would, and neither changes the order or the refund.
func TestReconcileCheck_RefundFromOtherPayment(t *testing.T) {
	for _, tc := range []struct {
		name          string
		failed, dry   bool
		amount        paynotify.Amount
		pending, errs int
		warned        bool
	}{
		{"Made", false, false, 0, 1, 0, true},
		{"Made/DryRun", false, true, 0, 1, 0, true},
		{"Failed", true, false, 0, 0, 1, false},
		{"Failed/DryRun", true, true, 0, 0, 1, false},
		// Another amount than the order's is an anomaly of its own, checked first, unacknowledged.
		{"OtherAmount", false, false, 999, 0, 1, false},
		{"OtherAmount/DryRun", false, true, 999, 0, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newRefundCheck(t, otherPaymentRefunds{failed: tc.failed, amount: tc.amount}, 300)
			before := rc.t1(t)
			stats := rc.check(t, tc.dry)
			if stats.errs != tc.errs || stats.pending != tc.pending || stats.checked != 1 {
				t.Fatalf("stats %s, want pending=%d errors=%d; log:\n%s", stats.String(), tc.pending, tc.errs, rc.logs.String())
			}
			logs := rc.logs.String()
			warned := strings.Contains(logs, "refund made from another payment of the order") && strings.Contains(logs, "out_request_no=R1")
			if warned != tc.warned {
				t.Fatalf("warning logged: %v, want %v:\n%s", warned, tc.warned, logs)
			}
			if r := rc.r1(t); r.Status != paynotify.RefundPending {
				t.Fatalf("R1 %+v: want it still pending", r)
			}
			if cur := rc.t1(t); cur.Status != paynotify.StatusPaid || cur.RefundedAmount != 0 || cur.Version != before.Version {
				t.Fatalf("order %+v: want it unmoved", cur)
			}
		})
	}
}

// abnormalRefunds answers a refund query with the refund ABNORMAL on the order's own payment.
type abnormalRefunds struct{ paynotify.Provider }

func (abnormalRefunds) QueryRefund(_ context.Context, o *paynotify.Order, r *paynotify.Refund) (*paynotify.Answer, error) {
	return &paynotify.Answer{State: "ABNORMAL", Endpoint: "test.refund.query", Body: []byte(`{"test":"refund query"}`),
		Fact: &paynotify.Fact{Kind: paynotify.FactRefundAbnormal, OutTradeNo: o.OutTradeNo, ProviderTradeNo: "P1", AppID: "2021000000000001",
			SellerID: "2088000000000002", RefundRequestNo: r.OutRequestNo, RefundAmount: r.Amount, RefundPerRequest: true, At: time.Now()}}, nil
}

// TestReconcileCheck_RefundAbnormal: a refund the provider reports ABNORMAL (WeChat Pay: to be
// settled in the merchant platform) is counted pending with a warning, as serve keeps it, not
// closed (it was booked failed, its amount freed for a second refund) nor an error (every run
// would fail until someone settles it). A dry run counts the same; neither settles the refund.
func TestReconcileCheck_RefundAbnormal(t *testing.T) {
	for _, dry := range []bool{false, true} {
		rc := newRefundCheck(t, abnormalRefunds{}, 300)
		stats := rc.check(t, dry)
		if stats.errs != 0 || stats.pending != 1 || stats.closed != 0 || stats.checked != 1 {
			t.Fatalf("dry run %t: stats %s, want pending=1; log:\n%s", dry, stats.String(), rc.logs.String())
		}
		if logs := rc.logs.String(); !strings.Contains(logs, "ABNORMAL") || !strings.Contains(logs, "out_request_no=R1") {
			t.Fatalf("dry run %t: no warning naming R1:\n%s", dry, logs)
		}
		if r := rc.r1(t); r.Status != paynotify.RefundPending {
			t.Fatalf("dry run %t: R1 %+v, want it still pending", dry, r)
		}
	}
}

// refundAnswers answers a refund query with the refund as the provider states it: per request,
// of the order's own payment (P1), of amount (when not 0) instead of the recorded one.
type refundAnswers struct {
	paynotify.Provider
	amount paynotify.Amount
}

func (g refundAnswers) QueryRefund(_ context.Context, o *paynotify.Order, r *paynotify.Refund) (*paynotify.Answer, error) {
	amount := r.Amount
	if g.amount != 0 {
		amount = g.amount
	}
	return &paynotify.Answer{State: "REFUND_SUCCESS", Endpoint: "test.refund.query", Body: []byte(`{"test":"refund query"}`),
		Fact: &paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: o.OutTradeNo, ProviderTradeNo: "P1", AppID: "2021000000000001",
			SellerID: "2088000000000002", RefundRequestNo: r.OutRequestNo, RefundAmount: amount, RefundPerRequest: true, At: time.Now()}}, nil
}

// TestReconcileCheck_DryRunAsTheRun: --dry-run counts a refund answer as the run does, because it
// asks the Processor what applying would give (Processor.Preview): a pending refund that Alipay's
// running total already holds is refunded, not an amount mismatch; an answer with another amount
// than the refund recorded is an error in both.
func TestReconcileCheck_DryRunAsTheRun(t *testing.T) {
	for _, tc := range []struct {
		name            string
		amount          paynotify.Amount // what the query answers for R1 (0: R1's own)
		refunded, errs  int
		orderRefundedTo paynotify.Amount // after the run
	}{
		{"PendingRefundInTheTotal", 0, 1, 0, 1000},
		{"AnotherAmount", 400, 0, 1, 1000},
	} {
		for _, dry := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/dry=%v", tc.name, dry), func(t *testing.T) {
				// R1 (5.00) asked for, its answer lost: pending. R2 (5.00) notified with Alipay's
				// running total, 10.00, which holds R1.
				rc := newRefundCheck(t, refundAnswers{amount: tc.amount}, 500)
				rc.apply(t, paynotify.Fact{Kind: paynotify.FactRefund, RefundRequestNo: "R2", RefundAmount: 500, RefundTotal: 1000})
				if stats := rc.check(t, dry); stats.refunded != tc.refunded || stats.errs != tc.errs {
					t.Fatalf("stats %s, want refunded=%d errors=%d", stats.String(), tc.refunded, tc.errs)
				}
				if o := rc.t1(t); o.RefundedAmount != tc.orderRefundedTo {
					t.Fatalf("order %+v", o)
				}
			})
		}
	}
}

// queryOutcomes answers a refund query with an error (a signed refusal of the query: EPROVIDER),
// or as not knowing the refund, and a request for it with refused (EPROVIDER) or made.
type queryOutcomes struct {
	paynotify.Provider
	queryRefused, notFound, refundRefused bool
}

func (g queryOutcomes) QueryRefund(context.Context, *paynotify.Order, *paynotify.Refund) (*paynotify.Answer, error) {
	if g.queryRefused {
		return nil, paynotify.Errorf(paynotify.EPROVIDER, "ACQ.ACCESS_FORBIDDEN: the key may not query refunds")
	}
	return &paynotify.Answer{State: "NOT_FOUND", NotFound: g.notFound, Endpoint: "test.refund.query", Body: []byte(`{}`)}, nil
}

func (g queryOutcomes) Refund(_ context.Context, o *paynotify.Order, r *paynotify.Refund, _ string) (*paynotify.Fact, error) {
	if g.refundRefused {
		return nil, paynotify.Errorf(paynotify.EPROVIDER, "ACQ.TRADE_STATUS_ERROR: refused")
	}
	return &paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: o.OutTradeNo, ProviderTradeNo: "P1", AppID: "2021000000000001",
		SellerID: "2088000000000002", RefundRequestNo: r.OutRequestNo, RefundAmount: r.Amount, RefundPerRequest: true, At: time.Now()}, nil
}

// TestReconcileCheck_QueryOutcomes: a signed refusal of the refund query is an error (the refund
// stays pending), not a failed refund; a refund the provider does not know is asked for again
// by the run (refunded, or failed when refused) and reported by a dry run, which asks nothing.
func TestReconcileCheck_QueryOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name                            string
		gw                              queryOutcomes
		dry                             bool
		pending, refunded, closed, errs int
		status                          paynotify.RefundStatus
		warned                          bool
		failedMeanwhile                 bool // R1 recorded failed after the run listed it pending
	}{
		{"QueryRefused", queryOutcomes{queryRefused: true}, false, 0, 0, 0, 1, paynotify.RefundPending, false, false},
		{"QueryRefused/DryRun", queryOutcomes{queryRefused: true}, true, 0, 0, 0, 1, paynotify.RefundPending, false, false},
		{"NotFound", queryOutcomes{notFound: true}, false, 0, 1, 0, 0, paynotify.RefundSucceeded, false, false},
		{"NotFound/Refused", queryOutcomes{notFound: true, refundRefused: true}, false, 0, 0, 1, 0, paynotify.RefundFailed, false, false},
		{"NotFound/DryRun", queryOutcomes{notFound: true}, true, 1, 0, 0, 0, paynotify.RefundPending, true, false},
		// Failed meanwhile (serve's reconciliation, a notification), then the query refused:
		// the refusal is still the query's, an error.
		{"QueryRefused/FailedMeanwhile", queryOutcomes{queryRefused: true}, false, 0, 0, 0, 1, paynotify.RefundFailed, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newRefundCheck(t, tc.gw, 300)
			if tc.failedMeanwhile {
				rc.apply(t, paynotify.Fact{Kind: paynotify.FactRefundFailed, RefundRequestNo: "R1", RefundPerRequest: true})
			}
			stats := rc.check(t, tc.dry)
			if stats.pending != tc.pending || stats.refunded != tc.refunded || stats.closed != tc.closed || stats.errs != tc.errs {
				t.Fatalf("stats %s, want pending=%d refunded=%d closed=%d errors=%d", stats.String(), tc.pending, tc.refunded, tc.closed, tc.errs)
			}
			if r := rc.r1(t); r.Status != tc.status {
				t.Fatalf("R1 %+v: want %s", r, tc.status)
			}
			if warned := strings.Contains(rc.logs.String(), "the run would ask for it again"); warned != tc.warned {
				t.Fatalf("warned %v, want %v:\n%s", warned, tc.warned, rc.logs.String())
			}
		})
	}
}
