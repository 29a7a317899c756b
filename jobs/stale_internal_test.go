package jobs

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sqlite"
)

// TestSweepWorker_SkipsStaleTicks: a sweep's tick that waited past staleSweep behind a long sweep
// of this process, taken right after it, is completed without sweeping (a reviewer helper's
// finding: under a queue of due checks the ticks piled up in the job table and then ran back to
// back); a fresh one sweeps, and so does a "stale" one that does not follow a sweep of this
// process at once: the tick's time is its scheduler's clock, which may be behind ours (a
// reviewer helper's finding: a clock 2 minutes behind skipped every tick, and no sweep ran).
func TestSweepWorker_SkipsStaleTicks(t *testing.T) {
	db, err := sqlite.Open(filepath.Join(t.TempDir(), "paynotify.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	var sweeps int
	cfg := &Config{SweepInterval: 5 * time.Second, Logger: quiet, OnSweep: func(paynotify.SweepStats, error) { sweeps++ },
		Reconciler: &paynotify.Reconciler{Service: &paynotify.Service{Store: db, Processor: &paynotify.Processor{Store: db, Logger: quiet},
			Apps: map[string]*paynotify.App{}, Logger: quiet}}}
	w := &sweepWorker{cfg: cfg}
	tick := func(late time.Duration) *river.Job[sweepArgs] {
		return &river.Job[sweepArgs]{JobRow: &rivertype.JobRow{ScheduledAt: time.Now().Add(-late)}}
	}
	for _, tc := range []struct {
		late      time.Duration
		lastSweep time.Duration // how long ago this process's last sweep ended
		sweep     bool
	}{
		{0, 0, true}, {50 * time.Second, 0, true}, // fresh enough
		{61 * time.Second, 0, false}, {time.Hour, 0, false}, // behind a sweep that just ended
		{2 * time.Minute, 3 * time.Second, true}, {time.Hour, time.Minute, true}, // a clock behind ours
	} {
		w.mu.Lock()
		w.lastEnd = time.Now().Add(-tc.lastSweep)
		w.mu.Unlock()
		before := sweeps
		if err := w.Work(t.Context(), tick(tc.late)); err != nil {
			t.Fatal(err)
		}
		if swept := sweeps > before; swept != tc.sweep {
			t.Errorf("a tick %s late, %s after the last sweep: swept %t, want %t", tc.late, tc.lastSweep, swept, tc.sweep)
		}
	}
}

// clockStore is a store whose database's clock is off by skew from this process's.
type clockStore struct {
	paynotify.Store
	skew time.Duration
}

func (c clockStore) DatabaseNow(context.Context) (time.Time, error) {
	return time.Now().Add(c.skew), nil
}

// TestPruneNow: a prune cuts by the earlier of this process's clock and the database's, so that
// a leader whose clock ran ahead does not delete what is not yet due (a reviewer helper's
// finding); a store without a clock of its own (SQLite) is this machine's.
func TestPruneNow(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		skew time.Duration
		want time.Duration // from this process's now
	}{{-30 * 24 * time.Hour, -30 * 24 * time.Hour}, {-time.Second, -time.Second}, {time.Hour, 0}} {
		got := pruneNow(t.Context(), clockStore{skew: tc.skew}, quiet)
		if d := time.Until(got) - tc.want; d < -time.Second || d > time.Second {
			t.Errorf("database %s off: prune at %s from now, want %s", tc.skew, time.Until(got).Round(time.Second), tc.want)
		}
	}
	if d := time.Until(pruneNow(t.Context(), nil, quiet)); d < -time.Second || d > time.Second {
		t.Errorf("without a database clock: %s from now", d)
	}
}

// TestCheckSkew: a sweep warns, at most every skewCheckEvery, when this process's clock and the
// database's differ by more than clockSkewWarn (instances with clocks apart take each other's
// claims early: a reviewer helper's finding); not when they agree, nor on a store without a clock
// of its own.
func TestCheckSkew(t *testing.T) {
	for _, tc := range []struct {
		skew time.Duration
		warn bool
	}{{-time.Minute, true}, {time.Minute, true}, {time.Second, false}, {0, false}} {
		var b strings.Builder
		w := &sweepWorker{cfg: &Config{Logger: slog.New(slog.NewTextHandler(&b, nil)),
			Reconciler: &paynotify.Reconciler{Service: &paynotify.Service{Store: clockStore{skew: tc.skew}}}}}
		w.checkSkew(t.Context())
		if got := strings.Contains(b.String(), "differs from the database's"); got != tc.warn {
			t.Errorf("database %s off: warned %t, want %t: %q", tc.skew, got, tc.warn, b.String())
		}
		if tc.warn {
			b.Reset()
			w.checkSkew(t.Context())
			if b.Len() != 0 {
				t.Errorf("database %s off: warned again at once: %q", tc.skew, b.String())
			}
		}
	}
}
