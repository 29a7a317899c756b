package jobs_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// TestSweep_UnaskedNotCounted: SweepStats.Checked ("the checks that asked the provider and got an
// answer", exported as paynotify_reconcile_checks_total{result="checked"}, "the provider
// answered") counted checks that asked nobody: those of an app this process does not know, given
// back for an hour (a reviewer helper's finding). They are not claimed now (ClaimChecksOf the
// apps it knows): left, still due, to a process that has the app.
func TestSweep_UnaskedNotCounted(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "paynotify.db"))
	gw := &payingProvider{queries: map[string]int{}}
	svc := newService(db, gw)
	createOrders(t, svc, 5)
	time.Sleep(1100 * time.Millisecond)
	other := cloneService(svc)
	other.Apps = map[string]*paynotify.App{} // a process whose config lacks "shop" (rolling deploy)
	st, err := (&paynotify.Reconciler{Service: other}).Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	q := 0
	for _, n := range gw.counts() {
		q += n
	}
	if st != (paynotify.SweepStats{}) || q != 0 {
		t.Errorf("sweep stats %+v, the provider asked %d times; want nothing claimed, nothing counted", st, q)
	}
	// A process that has the app checks them at once.
	st, err = (&paynotify.Reconciler{Service: svc}).Sweep(context.Background())
	if err != nil || st.Checked != 5 {
		t.Errorf("the process with the app: %+v, %v; want its 5 checks made", st, err)
	}
}

// TestSweep_UnknownAppUnpaced: the checks of an app this process does not know were paced like
// real ones (max_checks_per_second) before they were found unknown and given back for an hour, so
// a backlog of them (an app dropped from the config; the old instances during a rolling deploy
// that adds one) held the other apps' checks back, every hour, for as long as the app was absent
// (a reviewer helper's finding: 20 s behind 200). They are given back at once, the app's whole
// due queue with them.
func TestSweep_UnknownAppUnpaced(t *testing.T) {
	db := openSQLite(t, filepath.Join(t.TempDir(), "paynotify.db"))
	gw := &payingProvider{queries: map[string]int{}}
	svc := newService(db, gw)
	gone := *svc.Apps["shop"]
	gone.Name = "gone"
	svc.Apps["gone"] = &gone
	for i := range 200 {
		if _, _, err := svc.CreateOrder(t.Context(), paynotify.CreateOrderRequest{App: "gone", OutTradeNo: fmt.Sprintf("G%05d", i), Amount: 100,
			Subject: "s", Channel: paynotify.ChannelAlipayApp, ExpiresIn: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	createOrders(t, svc, 1) // shop's J00000, due just after them
	time.Sleep(1100 * time.Millisecond)
	other := cloneService(svc)
	other.Apps = map[string]*paynotify.App{"shop": svc.Apps["shop"]} // "gone" dropped from the config
	start := time.Now()
	var shopAt time.Duration
	rc := &paynotify.Reconciler{Service: other, MaxPerSecond: 10, OnCheck: func(c *paynotify.Check, _ *paynotify.CheckResult, _ error) {
		if c.App == "shop" {
			shopAt = time.Since(start)
		}
	}}
	st, err := rc.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sweep %+v; shop's due check ran after %s, behind 200 give-backs of an unknown app that asked nobody", st, shopAt.Round(time.Millisecond))
	if shopAt > 5*time.Second {
		t.Errorf("a known app's due check waited %s for the pacing of an unknown app's give-backs", shopAt.Round(time.Second))
	}
}
