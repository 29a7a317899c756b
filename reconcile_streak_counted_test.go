package paynotify_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// TestReconciler_StreakOfCountedFailures (a reviewer helper's finding): the check once more of an order closed locally finds its
// trade open at the provider (a query answered: the check is counted), and the close of that trade
// fails with the provider unavailable, again and again, while the app's other checks answer. Its
// own failures move its query count (Check.Checks), so the streak must not read them as another
// process's answer: it backs off as any check failing alone (1 s doubling to 5 min), instead of
// starting again from 1 s at each failure, a query and a close at every sweep for 7 days.
func TestReconciler_StreakOfCountedFailures(t *testing.T) {
	r, b := closedLocallyAt5m(t) // T1's check once more is due at t0+40m
	r.Batch = 1
	b.fake.closeFn = func(o *paynotify.Order) (paynotify.Fact, error) {
		return paynotify.Fact{}, paynotify.Errorf(paynotify.EPROVIDERUNAVAILABLE, "ACQ.SYSTEM_ERROR about this trade")
	}
	var gaps []time.Duration
	for i := 1; i <= 10; i++ {
		due, before := nextCheck(t, b, "T1")
		at := t0.Add(due + time.Millisecond)
		b.now.Set(at.Add(-time.Minute - time.Second))
		scheduledOrder(t, r.Service, fmt.Sprint("A", i), 24*time.Hour) // due 1 s before T1: answered first
		b.now.Set(at)
		if stats := sweep(t, r); stats.Checked < 1 || stats.Errors != 1 {
			t.Fatalf("round %d: stats = %+v, want A%d answered, then T1 failed", i, stats, i)
		}
		next, checks := nextCheck(t, b, "T1")
		if checks != before+1 {
			t.Fatalf("round %d: T1 counted %d checks, want %d (its query answered)", i, checks, before+1)
		}
		gaps = append(gaps, t0.Add(next).Sub(at))
	}
	// The 10th failure in a row backs off 5 min ±50 %.
	if last := gaps[len(gaps)-1]; last < 150*time.Second {
		t.Fatalf("T1's close failed 10 times in a row (this process's own checks): due again after %v; want 5m ±50%% (gaps %v)", last, gaps)
	}
}
