package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// Group commit: the writes that reach a store while its writer is held are committed in one
// transaction. These tests hold the writer (DB.HoldWrites), send the writes, and check that each
// one is answered as if it had been committed alone: a conflict or an error fails only its own
// write, and a batch whose commit fails answers every write in it with an error and keeps none.

// Holder is a store whose group-commit writer can be held (DB.HoldWrites).
type Holder interface {
	HoldWrites(t *testing.T) (queued func() int, release func(fail error))
}

// HeldBatch sends the writes while st's writer is held, waits until all of them wait for the
// held batch, releases it with fail and returns each write's error, in order.
func HeldBatch(t *testing.T, st Holder, fail error, writes ...func() error) []error {
	t.Helper()
	queued, release := st.HoldWrites(t)
	errs := make([]error, len(writes))
	var wg sync.WaitGroup
	for i, w := range writes {
		wg.Go(func() { errs[i] = w() })
	}
	deadline := time.Now().Add(10 * time.Second)
	for queued() < len(writes) {
		if time.Now().After(deadline) {
			release(nil)
			wg.Wait()
			t.Fatalf("held batch: %d of %d writes queued after 10s", queued(), len(writes))
		}
		time.Sleep(time.Millisecond)
	}
	release(fail)
	wg.Wait()
	return errs
}

// HeldBatchInOrder is HeldBatch with the writes queued one after the other, in the order given,
// each sent once the one before it waits for the held batch: the batch runs them in that order.
func HeldBatchInOrder(t *testing.T, st Holder, fail error, writes ...func() error) []error {
	t.Helper()
	queued, release := st.HoldWrites(t)
	errs := make([]error, len(writes))
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, w := range writes {
		wg.Go(func() { errs[i] = w() })
		for deadline := time.Now().Add(10 * time.Second); queued() < i+1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				release(nil)
				t.Fatalf("held batch: %d of %d writes queued after 10s", queued(), i+1)
			}
		}
	}
	release(fail)
	wg.Wait()
	return errs
}

func (s *suite) testGroupCommit(t *testing.T) {
	// Without a failing write the batch commits as one (PostgreSQL: pipelined); with one, the
	// failing write is undone alone (SQLite: the batch runs again without it; PostgreSQL: the
	// batch runs again write by write).
	t.Run("ConflictInBatch", func(t *testing.T) { s.testBatchOutcomes(t, false) })
	t.Run("ConflictAndErrorInBatch", func(t *testing.T) { s.testBatchOutcomes(t, true) })
	t.Run("ManyErrorsInBatch", s.testBatchManyErrors)
	s.testGroupCommitMore(t)
}

// testBatchManyErrors: a batch in which many writes fail after writing (each pays its order,
// then inserts an evidence id that is taken), between writes that succeed and writes that lose
// a compare-and-set: each failing write is undone alone, whatever their number (SQLite runs the
// batch again without one, twice, then with a savepoint around each write).
func (s *suite) testBatchManyErrors(t *testing.T) {
	st, b := s.setup(t)
	ctx := b.ctx
	var writes []func() error
	want := map[string]paynotify.OrderStatus{}
	const n = 6
	for i := range n {
		good := MustCreateOrder(t, ctx, st, NewOrder("app1", fmt.Sprintf("G%d", i), T0))
		bad := MustCreateOrder(t, ctx, st, NewOrder("app1", fmt.Sprintf("F%d", i), T0))
		if err := st.InsertEvidence(ctx, NewEvidence(fmt.Sprintf("nt_taken%d", i), bad, T0)); err != nil {
			t.Fatal(err)
		}
		want[good.OutTradeNo], want[bad.OutTradeNo] = paynotify.StatusPaid, paynotify.StatusPending
		stale := PaidChange(good, fmt.Sprintf("evS%d", i), fmt.Sprintf("ntS%d", i), T0)
		stale.PrevVersion, stale.Order.Version = 7, 8
		writes = append(writes,
			func() error {
				_, err := st.Commit(ctx, PaidChange(bad, fmt.Sprintf("evF%d", i), fmt.Sprintf("nt_taken%d", i), T0))
				return err
			},
			func() error {
				_, err := st.Commit(ctx, PaidChange(good, fmt.Sprintf("evG%d", i), fmt.Sprintf("ntG%d", i), T0))
				return err
			},
			func() error { _, err := st.Commit(ctx, stale); return err },
		)
	}
	errs := HeldBatchInOrder(t, st, nil, writes...)
	for i := range n {
		if err := errs[3*i]; err == nil || errors.Is(err, paynotify.ErrVersionConflict) {
			t.Errorf("F%d (evidence id taken): %v, want a store error", i, err)
		}
		if err := errs[3*i+1]; err != nil {
			t.Errorf("G%d: %v", i, err)
		}
		if err := errs[3*i+2]; !errors.Is(err, paynotify.ErrVersionConflict) {
			t.Errorf("G%d's stale write: %v, want ErrVersionConflict", i, err)
		}
	}
	for no, status := range want {
		if o, err := st.GetOrder(ctx, "app1", no); err != nil || o.Status != status {
			t.Errorf("order %s: %+v, %v, want %s", no, o, err, status)
		}
	}
	evs := MustListEvents(t, ctx, st, paynotify.EventFilter{})
	if len(evs) != n {
		t.Errorf("events %q, want the %d of the G orders", eventIDs(evs), n)
	}
	for _, e := range evs {
		if !strings.HasPrefix(e.ID, "evG") {
			t.Errorf("event %s stored", e.ID)
		}
	}
}

func (s *suite) testBatchOutcomes(t *testing.T, withFailing bool) {
	st, b := s.setup(t)
	ctx := b.ctx
	orders := map[string]*paynotify.Order{}
	for _, no := range []string{"A", "B", "C", "D", "E"} {
		orders[no] = MustCreateOrder(t, ctx, st, NewOrder("app1", no, T0))
	}
	// An evidence record whose id the failing write reuses, and a duplicate's that repeats count on.
	if err := st.InsertEvidence(ctx, NewEvidence("nt_taken", orders["C"], T0)); err != nil {
		t.Fatal(err)
	}
	dupRecord := NewEvidence("nt_dup", orders["C"], T0)
	dupRecord.Verdict = paynotify.VerdictDuplicate
	if err := st.InsertEvidence(ctx, dupRecord); err != nil {
		t.Fatal(err)
	}
	at := T0.Add(time.Minute)
	stale := PaidChange(orders["B"], "evB", "ntB", at)
	stale.PrevVersion, stale.Order.Version = 7, 8 // decided from a version B never had
	failing := PaidChange(orders["C"], "evC", "nt_taken", at)
	var anomalyNew bool
	anomaly := PaidChange(orders["D"], "evD", "ntD", at)
	anomaly.Anomaly = &paynotify.Anomaly{App: "app1", OutTradeNo: "D", Reason: "amount_mismatch", Key: "k1",
		Event: paynotify.NewEvent("evD_anomaly", paynotify.EventOrderAnomaly, at, anomaly.Order, nil, nil)}
	var created *paynotify.Order
	var wasCreated bool
	// Repeats (Change.Repeat): two counted on nt_dup, one of a record that is gone inserted.
	repeat := func(id string, at time.Time) func() error {
		return func() error {
			e := NewEvidence(id, orders["C"], at)
			e.Verdict = paynotify.VerdictDuplicate
			_, err := st.Commit(ctx, &paynotify.Change{Evidence: e, Repeat: true})
			return err
		}
	}
	failingWrite := func() error { _, err := st.Commit(ctx, failing); return err }
	if !withFailing {
		// In its place, a write that loses to a missing order.
		failing = PaidChange(NewOrder("app1", "nowhere", T0), "evX", "ntX", at)
	}
	errs := HeldBatch(t, st, nil,
		func() error { _, err := st.Commit(ctx, PaidChange(orders["A"], "evA", "ntA", at)); return err },
		func() error { _, err := st.Commit(ctx, stale); return err },
		failingWrite,
		func() error { var err error; anomalyNew, err = st.Commit(ctx, anomaly); return err },
		func() error { _, err := st.Commit(ctx, PaidChange(orders["E"], "evE1", "ntE1", at)); return err },
		func() error { _, err := st.Commit(ctx, PaidChange(orders["E"], "evE2", "ntE2", at)); return err },
		func() error { return st.InsertEvidence(ctx, NewEvidence("nt_alone", orders["A"], at)) },
		func() error {
			var err error
			created, wasCreated, err = st.CreateOrder(ctx, NewOrder("app1", "F", T0))
			return err
		},
		repeat("nt_dup", at.Add(2*time.Second)),
		repeat("nt_dup", at.Add(time.Second)),
		repeat("nt_gone", at),
		// Conditioned on C's version (which the failing write's change to C never leaves
		// committed): counted; on a version C never had: missed, nothing written.
		func() error {
			e := NewEvidence("nt_dup", orders["C"], at.Add(3*time.Second))
			e.Verdict = paynotify.VerdictDuplicate
			_, err := st.Commit(ctx, &paynotify.Change{Evidence: e, Repeat: true, RepeatVersion: orders["C"].Version})
			return err
		},
		func() error {
			e := NewEvidence("nt_dup", orders["C"], at.Add(4*time.Second))
			e.Verdict = paynotify.VerdictDuplicate
			_, err := st.Commit(ctx, &paynotify.Change{Evidence: e, Repeat: true, RepeatVersion: 99})
			return err
		},
	)
	if !errors.Is(errs[12], paynotify.ErrRepeatMissed) {
		t.Errorf("a repeat conditioned on a version the order never had: err = %v, want ErrRepeatMissed", errs[12])
	}
	for i, name := range map[int]string{0: "A", 3: "D (with an anomaly)", 6: "evidence", 7: "CreateOrder", 8: "repeat",
		9: "repeat", 10: "repeat of a record that is gone", 11: "repeat conditioned on the order's version"} {
		if errs[i] != nil {
			t.Errorf("write %s: %v", name, errs[i])
		}
	}
	if !errors.Is(errs[1], paynotify.ErrVersionConflict) {
		t.Errorf("stale write: err = %v, want ErrVersionConflict", errs[1])
	}
	if withFailing && (errs[2] == nil || errors.Is(errs[2], paynotify.ErrVersionConflict)) {
		t.Errorf("write reusing an evidence id: err = %v, want a store error", errs[2])
	}
	if !withFailing && paynotify.ErrorCode(errs[2]) != paynotify.ENOTFOUND {
		t.Errorf("write of a missing order: err = %v, want ENOTFOUND", errs[2])
	}
	winner := ""
	switch {
	case errs[4] == nil && errors.Is(errs[5], paynotify.ErrVersionConflict):
		winner = "evE1"
	case errs[5] == nil && errors.Is(errs[4], paynotify.ErrVersionConflict):
		winner = "evE2"
	default:
		t.Errorf("two writes of E from version 1: errs %v, %v; want one nil and one ErrVersionConflict", errs[4], errs[5])
	}
	if !anomalyNew {
		t.Errorf("anomalyNew = false for a new anomaly")
	}
	if !wasCreated || created == nil || created.OutTradeNo != "F" || created.Version != 1 {
		t.Errorf("CreateOrder in the batch: created %v, order %v", wasCreated, created)
	}

	status := map[string]paynotify.OrderStatus{"A": paynotify.StatusPaid, "B": paynotify.StatusPending,
		"C": paynotify.StatusPending, "D": paynotify.StatusPaid, "E": paynotify.StatusPaid, "F": paynotify.StatusPending}
	for no, want := range status {
		o, err := st.GetOrder(ctx, "app1", no)
		if err != nil {
			t.Fatalf("GetOrder %s: %v", no, err)
		}
		if o.Status != want {
			t.Errorf("order %s: status %s, want %s (the failed write's order change must be undone)", no, o.Status, want)
		}
	}
	evs := MustListEvents(t, ctx, st, paynotify.EventFilter{})
	got := map[string]int{}
	for i, e := range evs {
		got[e.ID]++
		if i > 0 && e.Seq <= evs[i-1].Seq {
			t.Errorf("events out of seq order: %d after %d", e.Seq, evs[i-1].Seq)
		}
	}
	want := []string{"evA", "evD", "evD_anomaly", winner}
	if len(evs) != len(want) {
		t.Errorf("events %q, want %q", eventIDs(evs), want)
	}
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("event %s stored %d times, want once (events %q)", id, got[id], eventIDs(evs))
		}
	}
	nts := MustListEvidence(t, ctx, st, paynotify.EvidenceFilter{})
	gotNt := map[string]*paynotify.Evidence{}
	for _, e := range nts {
		gotNt[e.ID] = e
	}
	loser := map[string]string{"evE1": "ntE2", "evE2": "ntE1"}[winner]
	for _, id := range []string{"ntB", loser, "ntX"} {
		if gotNt[id] != nil {
			t.Errorf("evidence %s of a losing write was stored", id)
		}
	}
	for _, id := range []string{"ntA", "ntD", "nt_alone", map[string]string{"evE1": "ntE1", "evE2": "ntE2"}[winner]} {
		if gotNt[id] == nil {
			t.Errorf("evidence %s missing (stored: %q)", id, evidenceIDs(nts))
		}
	}
	if e := gotNt["nt_taken"]; e == nil || e.OrderVersion != orders["C"].Version || e.Repeats != 0 {
		t.Errorf("evidence nt_taken = %+v, want the first record kept unchanged", e)
	}
	if e := gotNt["nt_dup"]; e == nil || e.Repeats != 3 || !e.LastReceivedAt.Equal(at.Add(3*time.Second)) || !e.ReceivedAt.Equal(T0) {
		t.Errorf("evidence nt_dup = %+v, want the record with 3 repeats, the last at %v", e, at.Add(3*time.Second))
	}
	if e := gotNt["nt_gone"]; e == nil || e.Repeats != 0 || !e.ReceivedAt.Equal(at) || !e.LastReceivedAt.IsZero() {
		t.Errorf("evidence nt_gone = %+v, want the repeat of a missing record inserted as it is", e)
	}

	// The writer goes on: C can still be paid.
	MustCommit(t, ctx, st, PaidChange(orders["C"], "evC2", "ntC2", at))
}

// testGroupCommitMore: a failed batch, and many writers at once.
func (s *suite) testGroupCommitMore(t *testing.T) {
	t.Run("FailedBatch", func(t *testing.T) {
		st, b := s.setup(t)
		ctx := b.ctx
		g := MustCreateOrder(t, ctx, st, NewOrder("app1", "G", T0))
		h := MustCreateOrder(t, ctx, st, NewOrder("app1", "H", T0))
		at := T0.Add(time.Minute)
		dup := NewEvidence("nt_dup", g, T0)
		dup.Verdict = paynotify.VerdictDuplicate
		MustCommit(t, ctx, st, &paynotify.Change{Evidence: dup})
		injected := errors.New("injected commit failure")
		// Two writes of H: the one that loses to the other loses to a write that is not kept,
		// so it must not be told it lost (ErrVersionConflict) but that the batch failed.
		errs := HeldBatch(t, st, injected,
			func() error { _, err := st.Commit(ctx, PaidChange(g, "evG", "ntG", at)); return err },
			func() error { _, err := st.Commit(ctx, PaidChange(h, "evH", "ntH", at)); return err },
			func() error { _, err := st.Commit(ctx, PaidChange(h, "evH2", "ntH2", at)); return err },
			func() error { return st.InsertEvidence(ctx, NewEvidence("nt_lost", g, at)) },
			func() error { _, _, err := st.CreateOrder(ctx, NewOrder("app1", "I", T0)); return err },
			func() error {
				e := *dup
				e.ReceivedAt = at
				_, err := st.Commit(ctx, &paynotify.Change{Evidence: &e, Repeat: true})
				return err
			},
		)
		for i, err := range errs {
			if err == nil || errors.Is(err, paynotify.ErrVersionConflict) {
				t.Errorf("write %d of a failed batch: err = %v, want the batch's failure", i, err)
			}
		}
		for _, no := range []string{"G", "H"} {
			if o, err := st.GetOrder(ctx, "app1", no); err != nil || o.Status != paynotify.StatusPending || o.Version != 1 {
				t.Errorf("order %s after a failed batch: %v, %v; want pending version 1", no, o, err)
			}
		}
		if _, err := st.GetOrder(ctx, "app1", "I"); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
			t.Errorf("order I created in a failed batch: GetOrder err = %v, want ENOTFOUND", err)
		}
		if evs := MustListEvents(t, ctx, st, paynotify.EventFilter{}); len(evs) != 0 {
			t.Errorf("events after a failed batch: %q", eventIDs(evs))
		}
		if nts := MustListEvidence(t, ctx, st, paynotify.EvidenceFilter{}); len(nts) != 1 || nts[0].Repeats != 0 {
			t.Errorf("evidence after a failed batch: %q, want nt_dup alone and not repeated", evidenceIDs(nts))
		}
		// The same writes succeed in the next batch.
		MustCommit(t, ctx, st, PaidChange(g, "evG", "ntG", at))
		MustCreateOrder(t, ctx, st, NewOrder("app1", "I", T0))
	})

	t.Run("ConcurrentCommits", func(t *testing.T) {
		// Many writers at once, two per order: each order is paid once, with one event, and
		// every write is answered.
		st, b := s.setup(t)
		ctx := b.ctx
		const n = 60
		orders := make([]*paynotify.Order, n)
		for i := range orders {
			orders[i] = MustCreateOrder(t, ctx, st, NewOrder("app1", fmt.Sprint("K", i), T0))
		}
		at := T0.Add(time.Minute)
		var (
			mu        sync.Mutex
			wins      = map[string]int{}
			conflicts int
			wg        sync.WaitGroup
		)
		for i := range 2 * n {
			o := orders[i%n]
			wg.Go(func() {
				_, err := st.Commit(ctx, PaidChange(o, fmt.Sprint("ev", i), fmt.Sprint("nt", i), at))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins[o.OutTradeNo]++
				case errors.Is(err, paynotify.ErrVersionConflict):
					conflicts++
				default:
					t.Errorf("Commit %s: %v", o.OutTradeNo, err)
				}
			})
		}
		wg.Wait()
		if len(wins) != n || conflicts != n {
			t.Errorf("%d orders paid, %d conflicts; want %d and %d", len(wins), conflicts, n, n)
		}
		for no, w := range wins {
			if w != 1 {
				t.Errorf("order %s paid by %d writes", no, w)
			}
		}
		if evs := MustListEvents(t, ctx, st, paynotify.EventFilter{Limit: 1000}); len(evs) != n {
			t.Errorf("%d events, want %d", len(evs), n)
		}
		if nts := MustListEvidence(t, ctx, st, paynotify.EvidenceFilter{Limit: 1000}); len(nts) != n {
			t.Errorf("%d evidence records, want %d (a losing write keeps none)", len(nts), n)
		}
	})
}
