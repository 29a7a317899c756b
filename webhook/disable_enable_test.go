package webhook_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/teststore"
	"github.com/paynotify/paynotify/storetest"
	"github.com/paynotify/paynotify/webhook"
)

// TestDispatcher_DisableEnableBetweenPasses (from a reviewer helper's audit): an endpoint disabled
// and enabled again by another process between two passes of the dispatcher, whose lane never saw
// it disabled. The disable failed the deliveries the lane had queued; the lane sent them all the
// same after the enable (for tens of seconds, the receiver's 2xx recorded nowhere, a later
// event of the order claimed meanwhile). A delivery claimed before the endpoint's last change is
// released instead of sent: A's first event, failed by the disable, is not sent (recover would
// send it), and A's next event, committed after the enable, is.
func TestDispatcher_DisableEnableBetweenPasses(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		other := newEnv(t, st) // another serve process: its Service does not wake e's dispatcher
		rc := newReceiver(t)
		rc.delay = 300 * time.Millisecond
		ep := e.endpoint(rc, nil, nil)
		e.start(webhook.Config{Concurrency: 2, Poll: time.Second}, nil)
		for i := range 6 {
			e.order("shop", fmt.Sprintf("F%d", i), false)
		}
		o := storetest.MustCreateOrder(t, e.ctx, st, storetest.NewOrder("shop", "A", time.Now()))
		paid := storetest.PaidChange(o, paynotify.NewID("evt"), paynotify.NewID("ntf"), time.Now())
		storetest.MustCommit(t, e.ctx, st, paid)
		waitFor(t, 5*time.Second, "the first request", func() bool { return rc.inflight.Load() > 0 })

		disabled, enabled := paynotify.EndpointDisabled, paynotify.EndpointEnabled
		if _, err := other.svc.UpdateWebhookEndpoint(e.ctx, ep.ID, &paynotify.WebhookEndpointRequest{Status: &disabled}); err != nil {
			t.Fatal(err)
		}
		if _, err := other.svc.UpdateWebhookEndpoint(e.ctx, ep.ID, &paynotify.WebhookEndpointRequest{Status: &enabled}); err != nil {
			t.Fatal(err)
		}
		enabledAt := time.Now()
		next := *paid.Order
		next.Status = paynotify.StatusFinished
		next.Version++
		fin := paynotify.NewEvent(paynotify.NewID("evt"), paynotify.EventOrderFinished, time.Now(), &next, nil, nil)
		storetest.MustCommit(t, e.ctx, st, &paynotify.Change{Order: &next, PrevVersion: paid.Order.Version, Events: []*paynotify.Event{fin}})

		waitFor(t, 15*time.Second, "A's event committed after the enable", func() bool {
			for _, g := range rc.all() {
				if g.id == fin.ID {
					return true
				}
			}
			return false
		})
		time.Sleep(500 * time.Millisecond) // a stale send would be under way by now
		for _, g := range rc.all() {
			if g.id == paid.Events[0].ID && g.at.Add(-rc.delay).After(enabledAt) {
				t.Errorf("A's first event, failed by the disable, was sent after the endpoint was enabled again")
			}
		}
		ds, err := st.ListWebhookDeliveries(e.ctx, paid.Events[0].ID)
		if err != nil || len(ds) != 1 || ds[0].Status != paynotify.DeliveryFailed {
			t.Errorf("A's first delivery: %+v, %v; want failed by the disable", ds, err)
		}
	})
}

// claimCounter counts the claims that returned deliveries.
type claimCounter struct {
	paynotify.Store
	claims atomic.Int64
}

func (c *claimCounter) ClaimWebhookDeliveries(ctx context.Context, ep string, now time.Time, lease time.Duration, lim int) ([]*paynotify.WebhookDelivery, error) {
	ds, err := c.Store.ClaimWebhookDeliveries(ctx, ep, now, lease, lim)
	if len(ds) > 0 {
		c.claims.Add(1)
	}
	return ds, err
}

// TestDispatcher_EditedByAClockAhead (from a reviewer helper's review): the release of deliveries
// claimed before an endpoint's change first compared the endpoint's UpdatedAt, stamped by the
// editing process's clock, with this process's claim time: with the editor's clock 3 s ahead, an
// edit of the description stopped every delivery to the endpoint for 3 s, claimed and released in
// a loop. The lane now compares the UpdatedAt it saw at the claim with the one it sees now.
func TestDispatcher_EditedByAClockAhead(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		cs := &claimCounter{Store: st}
		e := newEnv(t, st)
		e.st = cs
		e.now = func() time.Time { return time.Now().Add(-3 * time.Second) } // the dispatcher's clock
		rc := newReceiver(t)
		ep := e.endpoint(rc, nil, nil)
		e.start(webhook.Config{Poll: time.Second}, nil)
		desc := "billing system"
		if _, err := e.svc.UpdateWebhookEndpoint(e.ctx, ep.ID, &paynotify.WebhookEndpointRequest{Description: &desc}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // the dispatcher's next pass sees the change
		ids := e.order("shop", "S1", false)
		waitFor(t, 10*time.Second, "the delivery", func() bool {
			for _, g := range rc.all() {
				if g.id == ids[0] {
					return true
				}
			}
			return false
		})
		if n := cs.claims.Load(); n > 2 {
			t.Errorf("one event took %d claims to go out: claimed and released in a loop", n)
		}
	})
}

// TestDispatcher_DisabledEndpointsHoldNoWorkers: a disabled endpoint's lane ends (its workers
// exit) and one is started again when it is enabled, and delivers (a reviewer helper's finding:
// every disabled endpoint kept its 8 workers and queue until deleted; 200 disabled endpoints held
// 1,600 goroutines).
func TestDispatcher_DisabledEndpointsHoldNoWorkers(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		rc := newReceiver(t) // the first endpoint's: a receiver verifies with one endpoint's secret
		eps := []*paynotify.WebhookEndpoint{e.endpoint(rc, nil, nil)}
		others := newReceiver(t)
		for range 4 {
			eps = append(eps, e.endpoint(others, nil, nil))
		}
		d := &webhook.Dispatcher{Store: st, Config: webhook.Config{Poll: 50 * time.Millisecond, Schedule: fast, AllowHTTP: true},
			Client: webhook.NewClient(true, 5*time.Second), Now: e.now}
		e.svc.WakeWebhooks = d.Wake
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); d.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		waitFor(t, 5*time.Second, "a lane per enabled endpoint", func() bool { return d.Lanes() == 5 })
		disabled, enabled := paynotify.EndpointDisabled, paynotify.EndpointEnabled
		for _, ep := range eps {
			if _, err := e.svc.UpdateWebhookEndpoint(e.ctx, ep.ID, &paynotify.WebhookEndpointRequest{Status: &disabled}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 5*time.Second, "no lane for the disabled endpoints", func() bool { return d.Lanes() == 0 })
		if _, err := e.svc.UpdateWebhookEndpoint(e.ctx, eps[0].ID, &paynotify.WebhookEndpointRequest{Status: &enabled}); err != nil {
			t.Fatal(err)
		}
		want := e.order("shop", "LANE1", false)
		waitFor(t, 10*time.Second, "the event delivered to the endpoint enabled again", func() bool {
			for _, g := range rc.delivered() {
				if g.id == want[0] {
					return true
				}
			}
			return false
		})
		if n := d.Lanes(); n != 1 {
			t.Fatalf("%d lanes, want the enabled endpoint's only", n)
		}
	})
}

// TestDispatcher_ConcurrencyBoundAfterDisableEnable: "different orders in parallel, bounded per
// endpoint". A disable retires the endpoint's lane while its attempts are still in flight (they
// finish); an enable right after starts a new lane with Concurrency fresh workers, so the endpoint
// got up to twice the bound at once (a reviewer helper's finding). The bound is the endpoint's.
func TestDispatcher_ConcurrencyBoundAfterDisableEnable(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		rc := newReceiver(t)
		rc.delay = 3 * time.Second
		ep := e.endpoint(rc, nil, nil)
		d := &webhook.Dispatcher{Store: st, Config: webhook.Config{Concurrency: 2, Poll: 50 * time.Millisecond, Schedule: fast, AllowHTTP: true},
			Client: webhook.NewClient(true, 5*time.Second), Now: e.now}
		e.svc.WakeWebhooks = d.Wake
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); d.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })

		e.order("shop", "C1", false)
		e.order("shop", "C2", false)
		waitFor(t, 5*time.Second, "2 attempts in flight", func() bool { return rc.inflight.Load() == 2 })
		disabled, enabled := paynotify.EndpointDisabled, paynotify.EndpointEnabled
		if _, err := e.svc.UpdateWebhookEndpoint(e.ctx, ep.ID, &paynotify.WebhookEndpointRequest{Status: &disabled}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 2*time.Second, "the lane retired", func() bool { return d.Lanes() == 0 })
		if _, err := e.svc.UpdateWebhookEndpoint(e.ctx, ep.ID, &paynotify.WebhookEndpointRequest{Status: &enabled}); err != nil {
			t.Fatal(err)
		}
		e.order("shop", "C3", false)
		e.order("shop", "C4", false)
		time.Sleep(1500 * time.Millisecond)
		if m := rc.maxIn.Load(); m > 2 {
			t.Errorf("%d requests in flight to the endpoint at once, Concurrency is 2", m)
		}
	})
}
