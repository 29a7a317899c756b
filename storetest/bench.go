package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// BenchClaimBeside measures a sweep's claim of app1's due checks (ClaimChecksOf, 100 at a time,
// then FinishChecks putting them back due) while others due orders of an app no process has
// (dropped from the config, or an app backing off) sit in the same table, unclaimed: a claim's
// cost should not grow with them (docs/performance.md, "Claims beside another app's due
// rows"). The store must be empty.
func BenchClaimBeside(b *testing.B, st paynotify.Store, others int) {
	ctx := b.Context()
	due := T0
	create := func(app string, n int) {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 16 {
					o := NewOrder(app, fmt.Sprintf("C%08d", i), T0)
					o.NextCheckAt = &due
					if _, _, err := st.CreateOrder(ctx, o); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	create("gone", others)
	create("app1", 500)
	now, lease, apps := T0.Add(time.Minute), time.Minute, []string{"app1"}
	claimed := 0
	b.ResetTimer()
	for b.Loop() {
		cs, err := st.ClaimChecksOf(ctx, now, lease, 100, apps)
		if err != nil {
			b.Fatal(err)
		}
		if len(cs) != 100 {
			b.Fatalf("claimed %d checks, want 100", len(cs))
		}
		done := make([]paynotify.CheckDone, len(cs))
		for i, c := range cs {
			if c.App != "app1" {
				b.Fatalf("claimed a check of %s", c.App)
			}
			done[i] = paynotify.CheckDone{Check: c, Next: &due}
		}
		if err := st.FinishChecks(context.WithoutCancel(ctx), done); err != nil {
			b.Fatal(err)
		}
		claimed += len(cs)
	}
	b.ReportMetric(float64(claimed)/b.Elapsed().Seconds(), "checks/s")
}
