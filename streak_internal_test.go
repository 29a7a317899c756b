package paynotify

import (
	"fmt"
	"testing"
	"time"
)

// The streaks of failing checks are bounded (maxStreaks): the stale ones go first, then one at
// random, and a check that failed again keeps its own count.
func TestFailedAgainBounded(t *testing.T) {
	r := &Reconciler{}
	t0 := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	check := func(i int) *Check { return &Check{Kind: CheckOrder, App: "shop", OutTradeNo: fmt.Sprintf("T%05d", i)} }
	for i := range maxStreaks {
		r.failedAgain(check(i), t0, false)
	}
	// The last one fails three more times: its backoff is 8s±50%, whatever else is held.
	now := t0.Add(time.Hour) // every other streak is stale by now
	for range 3 {
		r.failedAgain(check(maxStreaks-1), now, false)
	}
	if got := r.streaks[checkID{CheckOrder, "shop", fmt.Sprintf("T%05d", maxStreaks-1), ""}].n; got != 4 {
		t.Fatalf("streak = %d, want 4", got)
	}
	next := r.failedAgain(check(maxStreaks), now, false) // a new one: the stale are forgotten
	if len(r.streaks) != 2 {
		t.Fatalf("%d streaks held, want the two fresh ones", len(r.streaks))
	}
	if d := next.Sub(now); d < 500*time.Millisecond || d > 1500*time.Millisecond {
		t.Fatalf("a new streak backs off %s, want 1s±50%%", d)
	}
	// Full of fresh streaks: one goes at random for a new one.
	for i := range maxStreaks + 5 {
		r.failedAgain(check(2*maxStreaks+i), now, false)
	}
	if len(r.streaks) != maxStreaks {
		t.Fatalf("%d streaks held, want at most %d", len(r.streaks), maxStreaks)
	}
	r.forget(check(3*maxStreaks + 4))
	if len(r.streaks) != maxStreaks-1 {
		t.Fatalf("%d streaks held after forget, want %d", len(r.streaks), maxStreaks-1)
	}
}
