package paynotify_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// TestReconciler_StreakEndsWithAnotherProcessAnswer (a reviewer helper's finding): a check's
// streak of provider-unavailable failures is "in a row" (docs/reconciliation.md: "until it is
// answered or fails otherwise"), but it is kept in the memory of the process whose checks failed,
// and only that process's answer ended it. Two processes share the schedule: T1 fails 9 times at r1
// (backing off to 256 s), is then answered by r2, and fails once more at r1: that one failure
// must back off 1 s ±50 %, not 5 min ±50 % as the 10th failure "in a row".
func TestReconciler_StreakEndsWithAnotherProcessAnswer(t *testing.T) {
	r1, b := setupReconciler(t)
	r1.Batch = 1
	r2 := &paynotify.Reconciler{Service: r1.Service, Batch: 1} // another process on the same store
	b.now.Set(t0)
	scheduledOrder(t, r1.Service, "T1", 24*time.Hour) // first due at t0+1m
	failing := func() (*paynotify.Answer, error) {
		return nil, paynotify.Errorf(paynotify.EPROVIDERUNAVAILABLE, "ACQ.SYSTEM_ERROR about this trade")
	}
	b.fake.setQuery("T1", failing)
	// round: at T1's due time, an order due 1 s before it answers at r1 first (which ends r1's
	// backoff of the app), then T1 fails at r1; it returns how far ahead T1 went.
	round := func(i int) time.Duration {
		t.Helper()
		due, _ := nextCheck(t, b, "T1")
		at := t0.Add(due + time.Millisecond)
		b.now.Set(at.Add(-time.Minute - time.Second))
		scheduledOrder(t, r1.Service, fmt.Sprint("A", i), 24*time.Hour)
		b.now.Set(at)
		if stats := sweep(t, r1); stats.Checked < 1 || stats.Errors != 1 {
			t.Fatalf("round %d: stats = %+v, want A%d answered, then T1 failed", i, stats, i)
		}
		next, _ := nextCheck(t, b, "T1")
		return t0.Add(next).Sub(at)
	}
	for i := 1; i <= 9; i++ {
		round(i)
	}
	// T1 is answered, by the other process.
	b.fake.setQuery("T1", nil)
	due, before := nextCheck(t, b, "T1")
	b.now.Set(t0.Add(due + time.Millisecond))
	sweep(t, r2)
	if _, checks := nextCheck(t, b, "T1"); checks != before+1 {
		t.Fatalf("T1 counted %d checks, want %d: answered at r2", checks, before+1)
	}
	// One failure after that answer.
	b.fake.setQuery("T1", failing)
	if got := round(10); got < 500*time.Millisecond || got > 1500*time.Millisecond {
		t.Fatalf("one failure after an answer (by another process): T1 due again after %s, want 1s ±50%%", got)
	}
}
