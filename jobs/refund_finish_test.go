package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
)

// TestSweep_RefundFinishAfterSettle: FinishChecks wrote a refund's next_check_at (and
// needs_attention) whatever the refund's status was then. A refund settled by its notification
// (or by `paynotify reconcile`, or the API's query) after the check read it pending, but before
// the finisher's batch (up to flushInterval, 1 s, later), was left succeeded WITH a next check:
// the Processor then took its amount for an inferred, unconfirmed one (Processor.load: Alipay,
// NextCheckAt != nil), and it was queried again (a reviewer helper's finding). The check's end
// now leaves a refund settled meanwhile as its settlement wrote it (CheckDone.WasPending).
func TestSweep_RefundFinishAfterSettle(t *testing.T) {
	for _, k := range []string{"SQLite", "PostgreSQL"} {
		t.Run(k, func(t *testing.T) {
			store := openKind(t, k)
			ctx := context.Background()
			gw := &payingProvider{queries: map[string]int{}}
			svc := newService(store, gw)
			app := svc.Apps["shop"]
			otn := paidWithPendingRefund(t, svc)
			time.Sleep(1100 * time.Millisecond) // its first check is due (schedule 1s)
			rc := &paynotify.Reconciler{Service: svc, OnCheck: func(c *paynotify.Check, res *paynotify.CheckResult, err error) {
				if c.Kind != paynotify.CheckRefund {
					return
				}
				// The refund's success notification, committed while the check's finish waits for
				// the finisher's next batch.
				r, err := svc.Processor.Apply(ctx, app, paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: otn, ProviderTradeNo: "P" + otn,
					RefundRequestNo: "RF000001", RefundAmount: 40, RefundTotal: 40}, nil)
				if err != nil {
					t.Error(err)
				} else {
					t.Logf("notification applied: verdict %s %s", r.Verdict, r.Reason)
				}
			}}
			if _, err := rc.Sweep(ctx); err != nil {
				t.Fatal(err)
			}
			refunds, err := store.ListRefunds(ctx, "shop", otn)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range refunds {
				t.Logf("refund %s: status %s, next_check_at %v, needs_attention %v", r.OutRequestNo, r.Status, r.NextCheckAt, r.NeedsAttention)
				if r.Status == paynotify.RefundSucceeded && r.NextCheckAt != nil {
					t.Errorf("refund %s succeeded (a refund of ours, amount known) but left with a next check at %v by the check's stale finish: the Processor now counts it as an inferred, unconfirmed amount", r.OutRequestNo, r.NextCheckAt)
				}
			}
		})
	}
}

// settlingProvider: its refund query commits the refund's success notification (a notification
// arriving while the check runs), then ends as end says.
type settlingProvider struct {
	*payingProvider
	settle func()
	end    func(ctx context.Context) (*paynotify.Answer, error)
}

func (p *settlingProvider) QueryRefund(ctx context.Context, _ *paynotify.Order, _ *paynotify.Refund) (*paynotify.Answer, error) {
	p.settle()
	return p.end(ctx)
}

// TestSweep_RefundFinishAfterSettleOnStop: bf25fc6 carried WasPending on the answered, failed
// and unasked ends of a refund's check, not on the one given back because the sweep stops (a
// reviewer's finding): a refund read pending and settled by its notification meanwhile was left
// succeeded WITH a next check. (A check that panics still does not carry it: documented on
// CheckDone.WasPending.)
func TestSweep_RefundFinishAfterSettleOnStop(t *testing.T) {
	ends := map[string]func(cancel context.CancelFunc) func(ctx context.Context) (*paynotify.Answer, error){
		"sweep stopped": func(cancel context.CancelFunc) func(ctx context.Context) (*paynotify.Answer, error) {
			return func(ctx context.Context) (*paynotify.Answer, error) {
				cancel() // shutdown (Runner.Stop) while the query is in flight
				<-ctx.Done()
				return nil, ctx.Err()
			}
		},
	}
	for _, k := range []string{"SQLite", "PostgreSQL"} {
		for name, end := range ends {
			t.Run(k+"/"+name, func(t *testing.T) {
				store := openKind(t, k)
				ctx := context.Background()
				sctx, cancel := context.WithCancel(ctx)
				defer cancel()
				gw := &settlingProvider{payingProvider: &payingProvider{queries: map[string]int{}}}
				svc := newService(store, gw)
				app := svc.Apps["shop"]
				otn := paidWithPendingRefund(t, svc)
				gw.settle = func() {
					if _, err := svc.Processor.Apply(ctx, app, paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: otn, ProviderTradeNo: "P" + otn,
						RefundRequestNo: "RF000001", RefundAmount: 40, RefundTotal: 40}, nil); err != nil {
						t.Error(err)
					}
				}
				gw.end = end(cancel)
				time.Sleep(1100 * time.Millisecond) // the refund's first check is due
				rc := &paynotify.Reconciler{Service: svc}
				st, err := rc.Sweep(sctx)
				t.Logf("sweep: %+v, %v", st, err)
				refunds, err := store.ListRefunds(ctx, "shop", otn)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range refunds {
					if r.Status == paynotify.RefundSucceeded && r.NextCheckAt != nil {
						t.Errorf("refund %s settled by its notification during the check, left succeeded with a next check at %v (%s end): read as an inferred, unconfirmed amount",
							r.OutRequestNo, r.NextCheckAt, name)
					} else {
						t.Logf("refund %s: %s, next %v", r.OutRequestNo, r.Status, r.NextCheckAt)
					}
				}
			})
		}
	}
}

// openKind opens a fresh store of kind "SQLite" or "PostgreSQL".
func openKind(t *testing.T, kind string) paynotify.Store {
	t.Helper()
	if kind == "SQLite" {
		return openSQLite(t, t.TempDir()+"/p.db")
	}
	return openPostgres(t, pgtest.NewSchema(t))
}

// paidWithPendingRefund creates an order of svc's app "shop", pays it, and asks for refund
// RF000001 of 0.40, whose outcome the fake provider leaves unknown: pending. It returns the
// order's out_trade_no.
func paidWithPendingRefund(t *testing.T, svc *paynotify.Service) string {
	t.Helper()
	ctx := context.Background()
	otn := createOrders(t, svc, 1)[0]
	o, err := svc.Store.GetOrder(ctx, "shop", otn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Processor.Apply(ctx, svc.Apps["shop"], paynotify.Fact{Kind: paynotify.FactPaid, OutTradeNo: otn, ProviderTradeNo: "P" + otn,
		Amount: o.Amount, HasAmount: true}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Refund(ctx, "shop", otn, paynotify.RefundRequest{Amount: 40, OutRequestNo: "RF000001"}); err != nil &&
		paynotify.ErrorCode(err) != paynotify.EPROVIDERUNAVAILABLE {
		t.Fatal(err)
	}
	return otn
}
