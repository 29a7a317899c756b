package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// CommitterDB is a store that reads and decides inside its write path (paynotify.OrderCommitter),
// with the test hook that holds its writer.
type CommitterDB interface {
	paynotify.Store
	paynotify.OrderCommitter
	Holder
}

// OrderCommitter checks a store's CommitOrder, on a fresh store from open for each part. inTurn
// says how two CommitOrders of one order in one batch end: decided in turn, the second meeting
// the first's write (SQLite's one writer reads inside the batch), or the second losing its
// compare-and-set (PostgreSQL reads the batch's orders before it writes).
func OrderCommitter(t *testing.T, open func(t *testing.T) CommitterDB, inTurn bool) {
	t.Run("Decide", func(t *testing.T) { testCommitOrder(t, open(t)) })
	t.Run("Batch", func(t *testing.T) { testCommitOrderBatch(t, open(t), inTurn) })
	t.Run("DecidedOnce", func(t *testing.T) { testCommitOrderDecidedOnce(t, open(t)) })
	t.Run("Cancelled", func(t *testing.T) { testCommitOrderCancelled(t, open(t)) })
	t.Run("UnstorableKey", func(t *testing.T) { testCommitOrderUnstorableKey(t, open(t)) })
}

// testCommitOrderUnstorableKey: an out_trade_no no order can have (NUL, bytes that are not
// UTF-8: a PostgreSQL text value cannot hold them, and the API refuses them) is decided on no
// order, alone and in a batch beside a valid one, which goes on as usual.
func testCommitOrderUnstorableKey(t *testing.T, db CommitterDB) {
	ctx := t.Context()
	MustCreateOrder(t, ctx, db, NewOrder("app1", "U1", T0))
	for _, no := range []string{"U\x00", "U\xff"} {
		var saw *paynotify.Order
		calls := 0
		if _, err := db.CommitOrder(ctx, "app1", no, nil, payIn("x", &saw, &calls)); err != nil || calls != 1 || saw != nil {
			t.Errorf("CommitOrder(%q) alone: err %v, build called %d times with %v; want nil, once, no order", no, err, calls, saw)
		}
	}
	saw := make([]*paynotify.Order, 3)
	calls := make([]int, 3)
	errs := HeldBatch(t, db, nil,
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "U\x00", nil, payIn("a", &saw[0], &calls[0]))
			return err
		},
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "U1", nil, payIn("b", &saw[1], &calls[1]))
			return err
		},
		func() error {
			_, err := db.CommitOrder(ctx, "app\xfe", "U1", nil, payIn("c", &saw[2], &calls[2]))
			return err
		},
	)
	for i, err := range errs {
		if err != nil || calls[i] != 1 {
			t.Errorf("write %d of the batch: err %v, build called %d times; want nil, once", i, err, calls[i])
		}
	}
	if saw[0] != nil || saw[2] != nil || saw[1] == nil || saw[1].Status != paynotify.StatusPending {
		t.Errorf("builds saw %v; want no order, U1 pending, no order", saw)
	}
	if o := MustGetOrder(t, ctx, db, "app1", "U1"); o.Status != paynotify.StatusPaid {
		t.Errorf("U1: %s, want paid", o.Status)
	}
}

// payIn returns a build for CommitOrder that pays the order it is given (PaidChange, with
// event and evidence ids of suffix), recording what it saw in *saw; a paid or missing order
// gets nothing written.
func payIn(suffix string, saw **paynotify.Order, calls *int) func(*paynotify.Order) (*paynotify.Change, error) {
	return func(o *paynotify.Order) (*paynotify.Change, error) {
		*calls++
		*saw = o
		if o == nil || o.Status != paynotify.StatusPending {
			return nil, nil
		}
		return PaidChange(o, "evt_"+suffix, "ntf_"+suffix, T0.Add(time.Minute)), nil
	}
}

// testCommitOrder: build meets the stored order (nil when there is none), its Change is
// committed as by Commit, a nil Change or an error writes nothing.
func testCommitOrder(t *testing.T, db CommitterDB) {
	ctx := t.Context()
	o := MustCreateOrder(t, ctx, db, NewOrder("app1", "C1", T0))

	var saw *paynotify.Order
	var calls int
	if _, err := db.CommitOrder(ctx, "app1", "C1", nil, payIn("1", &saw, &calls)); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || saw == nil || saw.Version != o.Version || saw.Status != paynotify.StatusPending || string(saw.Pay) != string(o.Pay) {
		t.Fatalf("build called %d times with %+v, want once with the stored pending order", calls, saw)
	}
	got, err := db.GetOrder(ctx, "app1", "C1")
	if err != nil || got.Status != paynotify.StatusPaid || got.Version != o.Version+1 {
		t.Fatalf("order after CommitOrder: %+v, %v", got, err)
	}
	if evs := MustListEvents(t, ctx, db, paynotify.EventFilter{}); len(evs) != 1 || evs[0].ID != "evt_1" {
		t.Fatalf("events: %v", evs)
	}
	if nts, err := db.ListEvidence(ctx, paynotify.EvidenceFilter{}); err != nil || len(nts) != 1 || nts[0].ID != "ntf_1" ||
		nts[0].Headers.Get("Content-Type") == "" {
		t.Fatalf("evidence: %v, %v", nts, err)
	}

	// Paid now: build sees it and writes nothing.
	calls = 0
	if _, err := db.CommitOrder(ctx, "app1", "C1", nil, payIn("2", &saw, &calls)); err != nil {
		t.Fatal(err)
	}
	if calls != 1 || saw.Status != paynotify.StatusPaid || saw.Version != o.Version+1 {
		t.Fatalf("second build: %d calls, saw %+v", calls, saw)
	}
	if evs := MustListEvents(t, ctx, db, paynotify.EventFilter{}); len(evs) != 1 {
		t.Fatalf("events after a nil change: %d, want 1", len(evs))
	}

	// No such order: build gets nil.
	calls = 0
	saw = o
	if _, err := db.CommitOrder(ctx, "app1", "NOPE", nil, payIn("3", &saw, &calls)); err != nil || calls != 1 || saw != nil {
		t.Fatalf("missing order: err %v, %d calls, saw %+v", err, calls, saw)
	}

	// A build error is the answer; what build would have written is not written.
	o2 := MustCreateOrder(t, ctx, db, NewOrder("app1", "C2", T0))
	boom := errors.New("boom")
	_, err = db.CommitOrder(ctx, "app1", "C2", nil, func(o *paynotify.Order) (*paynotify.Change, error) {
		return PaidChange(o, "evt_4", "ntf_4", T0), boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("build error: got %v", err)
	}
	if got, err := db.GetOrder(ctx, "app1", "C2"); err != nil || got.Version != o2.Version {
		t.Fatalf("order after a build error: %+v, %v", got, err)
	}

	// A Change whose version does not follow the one it was decided from is refused.
	_, err = db.CommitOrder(ctx, "app1", "C2", nil, func(o *paynotify.Order) (*paynotify.Change, error) {
		c := PaidChange(o, "evt_5", "ntf_5", T0)
		c.Order.Version = o.Version
		return c, nil
	})
	if err == nil || !strings.Contains(err.Error(), "does not follow") {
		t.Fatalf("a change whose version does not follow: %v", err)
	}
	// A Change with Repeat that is not a duplicate's evidence alone is refused.
	_, err = db.CommitOrder(ctx, "app1", "C2", nil, func(o *paynotify.Order) (*paynotify.Change, error) {
		c := PaidChange(o, "evt_5", "ntf_5", T0)
		c.Repeat = true
		return c, nil
	})
	if paynotify.ErrorCode(err) != paynotify.EINVALID {
		t.Fatalf("a repeat with an order change: %v, want EINVALID", err)
	}
	if evs := MustListEvents(t, ctx, db, paynotify.EventFilter{}); len(evs) != 1 {
		t.Fatalf("events after refused changes: %d, want 1", len(evs))
	}

	// The evidence prepared beforehand (ev) is the one stored, headers included.
	c2 := PaidChange(o2, "evt_6", "ntf_6", T0)
	if _, err := db.CommitOrder(ctx, "app1", "C2", c2.Evidence, func(o *paynotify.Order) (*paynotify.Change, error) {
		c := PaidChange(o, "evt_6", "ntf_6", T0)
		c.Evidence = c2.Evidence
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	nt, err := db.GetEvidence(ctx, "ntf_6")
	if err != nil || nt.Headers.Get("X-Multi") != "a" || len(nt.Headers["X-Multi"]) != 2 {
		t.Fatalf("evidence stored from the prepared ev: %+v, %v", nt, err)
	}
}

// testCommitOrderBatch: two ops of one order in one batch end with one payment, decided in turn
// (inTurn: the second build meets the first's write and finds the order paid) or with the
// second losing its compare-and-set (ErrVersionConflict, both builds having met the order
// pending); a failing op and a panicking build in the batch fail alone; a batch whose COMMIT
// fails answers every op with that failure and keeps nothing.
func testCommitOrderBatch(t *testing.T, db CommitterDB, inTurn bool) {
	ctx := t.Context()
	MustCreateOrder(t, ctx, db, NewOrder("app1", "B1", T0))
	MustCreateOrder(t, ctx, db, NewOrder("app1", "B2", T0))

	saw := make([]*paynotify.Order, 3)
	calls := make([]int, 3)
	errs := HeldBatch(t, db, nil,
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "B1", nil, payIn("a", &saw[0], &calls[0]))
			return err
		},
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "B1", nil, payIn("b", &saw[1], &calls[1]))
			return err
		},
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "B2", nil, func(o *paynotify.Order) (*paynotify.Change, error) {
				calls[2]++
				c := PaidChange(o, "evt_c", "ntf_c", T0)
				c.Events = append(c.Events, c.Events[0]) // the same event id twice: fails
				return c, nil
			})
			return err
		},
		func() error { // a build that panics: its write fails alone
			_, err := db.CommitOrder(ctx, "app1", "B2", nil, func(*paynotify.Order) (*paynotify.Change, error) { panic("build panicked") })
			return err
		},
	)
	if errs[2] == nil || errs[3] == nil || !strings.Contains(errs[3].Error(), "panicked") {
		t.Fatalf("batch outcomes: %v", errs)
	}
	if calls[0] != 1 || calls[1] != 1 || calls[2] != 1 {
		t.Fatalf("build calls: %v", calls)
	}
	paid, pending := 0, 0
	for _, o := range saw[:2] {
		switch o.Status {
		case paynotify.StatusPaid:
			paid++
		case paynotify.StatusPending:
			pending++
		}
	}
	if inTurn {
		if errs[0] != nil || errs[1] != nil || paid != 1 || pending != 1 {
			t.Fatalf("B1's two ops: %v, %v; their builds saw %+v and %+v: want both committed, one pending, one paid",
				errs[0], errs[1], saw[0], saw[1])
		}
	} else {
		lost := 0
		for _, err := range errs[:2] {
			if errors.Is(err, paynotify.ErrVersionConflict) {
				lost++
			} else if err != nil {
				t.Fatalf("B1's ops: %v", errs[:2])
			}
		}
		if lost != 1 || pending != 2 {
			t.Fatalf("B1's two ops: %v; their builds saw %+v and %+v: want one version conflict, both pending",
				errs[:2], saw[0], saw[1])
		}
	}
	if evs := MustListEvents(t, ctx, db, paynotify.EventFilter{}); len(evs) != 1 || evs[0].OutTradeNo != "B1" {
		t.Fatalf("events: %v, want B1's one", evs)
	}
	if got, err := db.GetOrder(ctx, "app1", "B2"); err != nil || got.Status != paynotify.StatusPending {
		t.Fatalf("B2 after its failed op: %+v, %v", got, err)
	}

	// A failed COMMIT: both ops answered with it, nothing kept, a retry succeeds.
	MustCreateOrder(t, ctx, db, NewOrder("app1", "B3", T0))
	injected := errors.New("injected commit failure")
	var s3, s4 *paynotify.Order
	var n3, n4 int
	errs = HeldBatch(t, db, injected,
		func() error { _, err := db.CommitOrder(ctx, "app1", "B3", nil, payIn("d", &s3, &n3)); return err },
		func() error { _, err := db.CommitOrder(ctx, "app1", "B2", nil, payIn("e", &s4, &n4)); return err },
	)
	for i, err := range errs {
		if !errors.Is(err, injected) {
			t.Errorf("op %d: %v, want the injected failure", i, err)
		}
	}
	for _, no := range []string{"B2", "B3"} {
		if got, err := db.GetOrder(ctx, "app1", no); err != nil || got.Status != paynotify.StatusPending {
			t.Fatalf("%s after the failed batch: %+v, %v", no, got, err)
		}
	}
	if _, err := db.CommitOrder(ctx, "app1", "B3", nil, payIn("f", &s3, &n3)); err != nil {
		t.Fatal(err)
	}
	if got, err := db.GetOrder(ctx, "app1", "B3"); err != nil || got.Status != paynotify.StatusPaid {
		t.Fatalf("B3 after the retry: %+v, %v", got, err)
	}
}

// testCommitOrderDecidedOnce: ops decided before a write of their batch failed after writing
// (which a store may answer by running the batch again: SQLite without savepoints, PostgreSQL
// write by write) are not decided again: each build runs once, and the changes they returned
// are committed; the failed write leaves nothing.
func testCommitOrderDecidedOnce(t *testing.T, db CommitterDB) {
	ctx := t.Context()
	for _, no := range []string{"O1", "O2", "O3"} {
		MustCreateOrder(t, ctx, db, NewOrder("app1", no, T0))
	}
	saw := make([]*paynotify.Order, 3)
	calls := make([]int, 4)
	errs := HeldBatchInOrder(t, db, nil,
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "O1", nil, payIn("o1", &saw[0], &calls[0]))
			return err
		},
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "O2", nil, payIn("o2", &saw[1], &calls[1]))
			return err
		},
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "O3", nil, func(o *paynotify.Order) (*paynotify.Change, error) {
				calls[2]++
				c := PaidChange(o, "evt_o3", "ntf_o3", T0)
				c.Events = append(c.Events, c.Events[0]) // the same event id twice: fails after the order's write
				return c, nil
			})
			return err
		},
		// After the failure: a second op of O1, decided on O1 as the first op left it.
		func() error {
			_, err := db.CommitOrder(ctx, "app1", "O1", nil, payIn("o1b", &saw[2], &calls[3]))
			return err
		},
	)
	if errs[0] != nil || errs[1] != nil || errs[2] == nil {
		t.Fatalf("batch outcomes: %v", errs)
	}
	if calls[0] != 1 || calls[1] != 1 || calls[2] != 1 || calls[3] != 1 {
		t.Fatalf("build calls: %v, want each once", calls)
	}
	for i, no := range []string{"O1", "O2"} {
		if saw[i] == nil || saw[i].Status != paynotify.StatusPending {
			t.Fatalf("%s's build saw %+v, want the order pending", no, saw[i])
		}
		if got, err := db.GetOrder(ctx, "app1", no); err != nil || got.Status != paynotify.StatusPaid {
			t.Fatalf("%s after the batch: %+v, %v, want paid", no, got, err)
		}
	}
	// O1's second op: decided on O1 paid (SQLite) and writing nothing, or decided on O1 pending
	// and losing its compare-and-set (PostgreSQL reads the batch's orders first).
	if !errors.Is(errs[3], paynotify.ErrVersionConflict) && (errs[3] != nil || saw[2] == nil || saw[2].Status != paynotify.StatusPaid) {
		t.Fatalf("O1's second op: %v, its build saw %+v", errs[3], saw[2])
	}
	if got, err := db.GetOrder(ctx, "app1", "O3"); err != nil || got.Status != paynotify.StatusPending {
		t.Fatalf("O3 after its failed op: %+v, %v, want pending", got, err)
	}
	evs := MustListEvents(t, ctx, db, paynotify.EventFilter{})
	if ids := eventIDs(evs); len(ids) != 2 || ids[0] != "evt_o1" || ids[1] != "evt_o2" {
		t.Fatalf("events %q, want evt_o1 and evt_o2", ids)
	}
}

// testCommitOrderCancelled: an op whose context ended before its turn is not run: build is not
// called, nothing is written and the answer is the context's error.
func testCommitOrderCancelled(t *testing.T, db CommitterDB) {
	MustCreateOrder(t, t.Context(), db, NewOrder("app1", "X1", T0))
	MustCreateOrder(t, t.Context(), db, NewOrder("app1", "X2", T0))
	queued, release := db.HoldWrites(t)
	wait := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); queued() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				release(nil)
				t.Fatalf("%d ops queued, want %d", queued(), n)
			}
		}
	}
	var firstCalls, calls int
	var firstSaw, saw *paynotify.Order
	firstErr, err := make(chan error, 1), make(chan error, 1)
	go func() {
		_, e := db.CommitOrder(t.Context(), "app1", "X2", nil, payIn("y", &firstSaw, &firstCalls))
		firstErr <- e
	}()
	wait(1) // X2's op holds the batch
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		_, e := db.CommitOrder(ctx, "app1", "X1", nil, payIn("x", &saw, &calls))
		err <- e
	}()
	wait(2) // X1's op is queued behind it
	cancel()
	release(nil)
	if e := <-firstErr; e != nil || firstCalls != 1 {
		t.Fatalf("the held op: %v, %d build calls", e, firstCalls)
	}
	if e := <-err; !errors.Is(e, context.Canceled) || calls != 0 {
		t.Fatalf("the cancelled op: %v, %d build calls; want context.Canceled and none", e, calls)
	}
	if got, e := db.GetOrder(t.Context(), "app1", "X1"); e != nil || got.Status != paynotify.StatusPending {
		t.Fatalf("X1: %+v, %v", got, e)
	}
}
