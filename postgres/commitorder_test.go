package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/storetest"
)

var _ paynotify.OrderCommitter = (*postgres.DB)(nil)

// TestCommitOrder: the PostgreSQL store reads its batch's orders before it writes, so of two
// decisions of one order in one batch the second loses its compare-and-set.
func TestCommitOrder(t *testing.T) {
	storetest.OrderCommitter(t, func(t *testing.T) storetest.CommitterDB { return MustOpen(t, pgtest.NewSchema(t)) }, false)
}

// payCounting returns a build that pays a pending order (PaidChange, ids of suffix), counting
// its calls and the changes it returned.
func payCounting(suffix string, calls, wrote *atomic.Int32) func(*paynotify.Order) (*paynotify.Change, error) {
	return func(o *paynotify.Order) (*paynotify.Change, error) {
		calls.Add(1)
		if o == nil || o.Status != paynotify.StatusPending {
			return nil, nil
		}
		wrote.Add(1)
		return storetest.PaidChange(o, "evt_"+suffix, "ntf_"+suffix, storetest.T0.Add(time.Minute)), nil
	}
}

// TestCommitOrderReadFails: the batch's read of its orders fails (a test hook): every op runs
// alone, reading its own order, each build once; the second op of R1 then meets the first's
// payment, as on SQLite. A key no order can have (bytes that are not UTF-8, which PostgreSQL's
// text refuses) is decided on no order before the read, and stays decided.
func TestCommitOrderReadFails(t *testing.T) {
	db := MustOpen(t, pgtest.NewSchema(t))
	ctx := t.Context()
	storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "R1", storetest.T0))
	storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "R2", storetest.T0))
	db.FailReads(1, errors.New("the read fails"))
	var c, w [4]atomic.Int32
	errs := storetest.HeldBatch(t, db, nil,
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "R1", nil, payCounting("a", &c[0], &w[0]))
			return err
		},
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "bad\xff", nil, payCounting("b", &c[1], &w[1]))
			return err
		},
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "R1", nil, payCounting("c", &c[2], &w[2]))
			return err
		},
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "R2", nil, payCounting("d", &c[3], &w[3]))
			return err
		},
	)
	if errs[0] != nil || errs[1] != nil || errs[2] != nil || errs[3] != nil {
		t.Fatalf("outcomes: %v", errs)
	}
	if db.Reruns() != 1 {
		t.Fatalf("%d batches ran again write by write, want the one whose read failed", db.Reruns())
	}
	// "bad\xff" names no order (decided on none before the read); the others are read alone.
	if c[0].Load() != 1 || c[1].Load() != 1 || c[2].Load() != 1 || c[3].Load() != 1 || w[0].Load()+w[2].Load() != 1 {
		t.Fatalf("builds: calls %d %d %d %d, payments of R1 %d", c[0].Load(), c[1].Load(), c[2].Load(), c[3].Load(), w[0].Load()+w[2].Load())
	}
	if evs := storetest.MustListEvents(t, ctx, db, paynotify.EventFilter{}); len(evs) != 2 {
		t.Fatalf("events: %d, want R1's and R2's", len(evs))
	}
}

// TestCommitOrderFullBatch: 256 ops in one batch, committed pipelined: 128 of one order (one
// pays, 127 lose their compare-and-set), 64 of missing orders (build meets nil), 64 of orders of
// their own; every build once.
func TestCommitOrderFullBatch(t *testing.T) {
	db := MustOpen(t, pgtest.NewSchema(t))
	ctx := t.Context()
	storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "H", storetest.T0))
	for i := range 64 {
		storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", fmt.Sprintf("D%d", i), storetest.T0))
	}
	var calls, wrote atomic.Int32
	var writes []func() error
	for i := range 256 {
		no := "H"
		switch i % 4 {
		case 1:
			no = fmt.Sprintf("M%d", i)
		case 3:
			no = fmt.Sprintf("D%d", i/4)
		}
		writes = append(writes, func() error {
			_, err := db.CommitOrder(ctx, "app1", no, nil, payCounting(fmt.Sprint(i), &calls, &wrote))
			return err
		})
	}
	errs := storetest.HeldBatch(t, db, nil, writes...)
	conflicts := 0
	for _, err := range errs {
		switch {
		case errors.Is(err, paynotify.ErrVersionConflict):
			conflicts++
		case err != nil:
			t.Fatalf("an op: %v", err)
		}
	}
	evs := storetest.MustListEvents(t, ctx, db, paynotify.EventFilter{Limit: 1000})
	if calls.Load() != 256 || conflicts != 127 || len(evs) != 65 {
		t.Fatalf("builds %d, conflicts %d, events %d; want 256, 127, 65", calls.Load(), conflicts, len(evs))
	}
}

// TestCommitOrderTwoInstances: two stores on one database, 200 callers of one order deciding
// again on a version conflict as the Processor does: one payment, one event, version 2, and one
// caller answered with a write, five times over.
func TestCommitOrderTwoInstances(t *testing.T) {
	u := pgtest.NewSchema(t)
	db1, db2 := MustOpen(t, u), MustOpen(t, u)
	ctx := t.Context()
	for round := range 5 {
		no := fmt.Sprintf("T%d", round)
		storetest.MustCreateOrder(t, ctx, db1, storetest.NewOrder("app1", no, storetest.T0))
		var wg sync.WaitGroup
		var paid atomic.Int32
		for i := range 200 {
			db := db1
			if i%2 == 1 {
				db = db2
			}
			wg.Go(func() {
				for attempt := range 50 {
					var wrote bool
					_, err := db.CommitOrder(ctx, "app1", no, nil, func(o *paynotify.Order) (*paynotify.Change, error) {
						if wrote = o != nil && o.Status == paynotify.StatusPending; !wrote {
							return nil, nil
						}
						return storetest.PaidChange(o, fmt.Sprintf("evt_%s_%d_%d", no, i, attempt), fmt.Sprintf("ntf_%s_%d_%d", no, i, attempt), storetest.T0), nil
					})
					if errors.Is(err, paynotify.ErrVersionConflict) {
						continue
					}
					if err != nil {
						t.Error(err)
					} else if wrote {
						paid.Add(1)
					}
					return
				}
				t.Error("50 version conflicts in a row")
			})
		}
		wg.Wait()
		n := 0
		for _, e := range storetest.MustListEvents(t, ctx, db1, paynotify.EventFilter{Limit: 1000}) {
			if e.OutTradeNo == no {
				n++
			}
		}
		o := storetest.MustGetOrder(t, ctx, db1, "app1", no)
		if paid.Load() != 1 || n != 1 || o.Version != 2 {
			t.Fatalf("%s: %d callers answered with a payment, %d events, version %d; want 1, 1, 2", no, paid.Load(), n, o.Version)
		}
	}
}

// TestCommitOrderLockTimeout: another session holds LX, uncommitted, having paid it, while a
// batch decides LX from the committed pending row: the batch waits past its lock timeout, runs
// its ops alone with the changes already decided (no build again), and the other session
// commits meanwhile: LX's op loses its compare-and-set, LY's commits.
func TestCommitOrderLockTimeout(t *testing.T) {
	db := MustOpen(t, pgtest.NewSchema(t))
	ctx := t.Context()
	storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "LX", storetest.T0))
	storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "LY", storetest.T0))
	other, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Exec(ctx, `UPDATE orders SET version = version + 1, status = 'paid' WHERE app = 'app1' AND out_trade_no = 'LX'`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { time.Sleep(3 * time.Second); done <- other.Commit(context.Background()) }()
	var c, w [2]atomic.Int32
	errs := storetest.HeldBatch(t, db, nil,
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "LX", nil, payCounting("x", &c[0], &w[0]))
			return err
		},
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "LY", nil, payCounting("y", &c[1], &w[1]))
			return err
		},
	)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !errors.Is(errs[0], paynotify.ErrVersionConflict) || errs[1] != nil || c[0].Load() != 1 || c[1].Load() != 1 {
		t.Fatalf("outcomes %v, builds %d and %d; want a version conflict and a payment, one build each", errs, c[0].Load(), c[1].Load())
	}
	if evs := storetest.MustListEvents(t, ctx, db, paynotify.EventFilter{}); len(evs) != 1 || evs[0].OutTradeNo != "LY" {
		t.Fatalf("events: %v, want LY's", evs)
	}
}

// TestCommitOrderUnstorableKey: a key no order can have (NUL, bytes that are not UTF-8) is
// decided on no order before the batch reads its orders, so the read does not fail and the batch
// is not run again write by write.
func TestCommitOrderUnstorableKey(t *testing.T) {
	db := MustOpen(t, pgtest.NewSchema(t))
	ctx := t.Context()
	storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "K1", storetest.T0))
	var c, w [3]atomic.Int32
	errs := storetest.HeldBatch(t, db, nil,
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "K\x00", nil, payCounting("a", &c[0], &w[0]))
			return err
		},
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "K1", nil, payCounting("b", &c[1], &w[1]))
			return err
		},
		func() error {
			_, err := db.CommitOrder(ctx, "app\xff", "K1", nil, payCounting("c", &c[2], &w[2]))
			return err
		},
	)
	if errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Fatalf("outcomes: %v", errs)
	}
	if n := db.Reruns(); n != 0 {
		t.Errorf("%d batches ran again write by write, want none", n)
	}
	if c[0].Load() != 1 || c[1].Load() != 1 || c[2].Load() != 1 || w[1].Load() != 1 {
		t.Errorf("builds: calls %d %d %d, K1 paid %d times; want once each, K1 once", c[0].Load(), c[1].Load(), c[2].Load(), w[1].Load())
	}
}

// TestCommitOrderLockedRow: another session holds order LX's row. The batch of four decisions
// of LX and one of LY waits past the lock timeout and runs again write by write: the first write
// of LX waits its own timeout, the other three of LX fail at once without running (they would
// each have waited 2 s more, and LY behind them), and LY is paid.
func TestCommitOrderLockedRow(t *testing.T) {
	u := pgtest.NewSchema(t)
	db := MustOpen(t, u)
	ctx := t.Context()
	storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "LX", storetest.T0))
	storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "LY", storetest.T0))
	hold, _ := openTx(t, u)
	if _, err := hold.Exec(ctx, `SELECT 1 FROM orders WHERE app = 'app1' AND out_trade_no = 'LX' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	var c, w atomic.Int32
	pay := func(no, suffix string) func() error {
		return func() error {
			_, err := db.CommitOrder(ctx, "app1", no, nil, payCounting(suffix, &c, &w))
			return err
		}
	}
	errs := storetest.HeldBatch(t, db, nil, pay("LX", "a"), pay("LX", "b"), pay("LX", "c"), pay("LX", "d"), pay("LY", "e"))
	waited, notRun := 0, 0
	for i, err := range errs[:4] {
		switch {
		case err == nil:
			t.Errorf("write %d of the locked order: no error", i)
		case strings.Contains(err.Error(), "not run"):
			notRun++
		case strings.Contains(err.Error(), "55P03"):
			waited++
		default:
			t.Errorf("write %d of the locked order: %v", i, err)
		}
	}
	if waited != 1 || notRun != 3 {
		t.Errorf("of the locked order's four writes, %d waited past the lock timeout and %d were not run; want 1 and 3", waited, notRun)
	}
	if errs[4] != nil {
		t.Fatalf("the write of another order: %v", errs[4])
	}
	if o, err := db.GetOrder(ctx, "app1", "LY"); err != nil || o.Status != paynotify.StatusPaid {
		t.Fatalf("LY = %+v, %v; want paid", o, err)
	}
}

// TestOrderAtWaitsForUpdate: an anomaly conditioned on its order's version (Change.OrderAt) while
// another session has moved the order without committing yet waits for it and, once it commits,
// loses: a plain read would have seen the old version and written the anomaly's event after the
// other session's (a reviewer helper's finding, with two instances on one database).
func TestOrderAtWaitsForUpdate(t *testing.T) {
	ctx := context.Background()
	u := pgtest.NewSchema(t)
	db := MustOpen(t, u)
	o := storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "T1", storetest.T0))

	hold, holder := openTx(t, u)
	if _, err := hold.Exec(ctx, `UPDATE orders SET version = version + 1 WHERE app = 'app1' AND out_trade_no = 'T1'`); err != nil {
		t.Fatal(err)
	}
	c := &paynotify.Change{OrderAt: o.Version,
		Anomaly: &paynotify.Anomaly{App: "app1", OutTradeNo: "T1", Reason: paynotify.ReasonAmountMismatch, Key: "k",
			Event: paynotify.NewEvent("ev1", paynotify.EventOrderAnomaly, storetest.T0, o, nil, &paynotify.EventAnomaly{Reason: paynotify.ReasonAmountMismatch})}}
	committed := make(chan error, 1)
	go func() { _, err := db.Commit(ctx, c); committed <- err }()

	waitBlockedBy(t, u, holder, committed, "the anomaly, its order moved by another session,")
	if err := hold.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-committed; !errors.Is(err, paynotify.ErrVersionConflict) {
		t.Fatalf("after the update committed: %v, want a version conflict", err)
	}
	if evs := storetest.MustListEvents(t, ctx, db, paynotify.EventFilter{}); len(evs) != 0 {
		t.Fatalf("events %d, want none", len(evs))
	}
}

// TestOrderAtNoDeadlock (from a reviewer helper's review): two instances, each with a batch of
// [an anomaly of T1 conditioned on its version v (Change.OrderAt), the payment of T1 from v],
// queued behind a session that locks T1 without moving its version (as FinishChecks' UPDATE of
// checks does). With the version read FOR SHARE both batches held the row together, then each
// payment's UPDATE waited for the other's share: a deadlock, the batch rolled back and run again
// write by write (a rerun) after deadlock_timeout, in about half the tries. The version is read
// FOR NO KEY UPDATE: the second batch waits for the first, no rerun.
func TestOrderAtNoDeadlock(t *testing.T) {
	for try := range 6 {
		if reruns := orderAtRace(t); reruns != 0 {
			t.Fatalf("try %d: %d batches rolled back and run again (a deadlock between the two instances' batches)", try, reruns)
		}
	}
}

func orderAtRace(t *testing.T) int64 {
	ctx := context.Background()
	u := pgtest.NewSchema(t)
	dbs := []*postgres.DB{MustOpen(t, u), MustOpen(t, u)}
	o := storetest.MustCreateOrder(t, ctx, dbs[0], storetest.NewOrder("app1", "T1", storetest.T0))
	hold, _ := openTx(t, u)
	if _, err := hold.Exec(ctx, `UPDATE orders SET checks = checks + 1 WHERE app = 'app1' AND out_trade_no = 'T1'`); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for i, db := range dbs {
		queued, release := db.HoldWrites(t)
		anomaly := &paynotify.Change{OrderAt: o.Version,
			Anomaly: &paynotify.Anomaly{App: "app1", OutTradeNo: "T1", Reason: paynotify.ReasonAmountMismatch, Key: fmt.Sprint("k", i),
				Event: paynotify.NewEvent(fmt.Sprint("eva", i), paynotify.EventOrderAnomaly, storetest.T0, o, nil, &paynotify.EventAnomaly{Reason: paynotify.ReasonAmountMismatch})}}
		paid := storetest.PaidChange(o, fmt.Sprint("evp", i), fmt.Sprint("ntp", i), storetest.T0.Add(time.Minute))
		go func() { _, err := db.Commit(ctx, anomaly); errs <- err }()
		for queued() < 1 {
			time.Sleep(time.Millisecond)
		}
		go func() { _, err := db.Commit(ctx, paid); errs <- err }()
		for queued() < 2 {
			time.Sleep(time.Millisecond)
		}
		release(nil)
	}
	time.Sleep(300 * time.Millisecond) // both batches wait for the holder's lock
	if err := hold.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	won := 0
	for range 4 {
		if err := <-errs; err == nil {
			won++
		} else if !errors.Is(err, paynotify.ErrVersionConflict) {
			t.Fatalf("commit: %v", err)
		}
	}
	if won == 0 {
		t.Fatal("no write of T1 committed")
	}
	return dbs[0].Reruns() + dbs[1].Reruns()
}
