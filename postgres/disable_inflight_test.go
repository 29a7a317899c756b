package postgres_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/postgres"
)

// TestDisableSeesEventInFlight (from a reviewer helper's review): an event whose commit is under
// way (inserted under the event log's lock, not committed) when an endpoint is disabled: the
// endpoint was enabled when it committed, so the disable's fan-out must see it (it waits for the
// log's lock) and give it a delivery, failed with the others, which recover since the disable
// finds after an enable. Without the lock the fan-out missed it: no delivery at all.
func TestDisableSeesEventInFlight(t *testing.T) {
	u := pgtest.NewSchema(t)
	db := MustOpen(t, u)
	ctx := t.Context()
	ep := enabledEndpoint(t, db)
	tx, pid := openTx(t, u)
	// As Commit appends an event: the event log's lock, then the insert.
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, postgres.EventsLockKey); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO events (id, type, app, out_trade_no, version, timestamp, data)
		VALUES ('evt_A', 'order.paid', 'app1', 'A', 2, now(), '{}')`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var disabledAt time.Time
	disabled := paynotify.EndpointDisabled
	go func() {
		e, err := db.UpdateWebhookEndpoint(ctx, ep.ID, &paynotify.WebhookEndpointUpdate{Status: &disabled, DisabledReason: "by hand",
			Event: paynotify.NewEndpointDisabledEvent("evt_D", time.Now(), &paynotify.EndpointDisabledData{EndpointID: ep.ID, Reason: "by hand"})})
		if err == nil {
			disabledAt = e.UpdatedAt
		}
		done <- err
	}()
	// The disable waits for the log's lock (seen in pg_stat_activity, not assumed after a sleep:
	// a late goroutine would otherwise let the commit finish first and the test pass vacuously).
	waitBlockedBy(t, u, pid, done, "the disable")
	if err := tx.Commit(ctx); err != nil { // evt_A committed; the endpoint is still enabled
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ds, err := db.ListWebhookDeliveries(ctx, "evt_A")
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) == 0 {
		t.Errorf("evt_A, committed while the endpoint was enabled, has no delivery after the disable")
	}
	enabled := paynotify.EndpointEnabled
	if _, err := db.UpdateWebhookEndpoint(ctx, ep.ID, &paynotify.WebhookEndpointUpdate{Status: &enabled}); err != nil {
		t.Fatal(err)
	}
	n, err := db.RecoverWebhooks(ctx, ep.ID, disabledAt, time.Now())
	if n != 1 || err != nil {
		t.Errorf("recover since the disable = %d, %v; want 1 (evt_A)", n, err)
	}
	if ds, _ := db.ListWebhookDeliveries(ctx, "evt_D"); len(ds) != 0 {
		t.Errorf("the disable's own endpoint.disabled has a delivery to the endpoint: %+v", ds[0])
	}
}

// TestDisableBacklogWithoutLogLock (from a reviewer helper's review): the disable's fan-out of
// the endpoint's backlog held the event log's lock, which every commit of an event waits for (a
// backlog of 200,000 events held them for seconds). The backlog is fanned out first without the
// lock: here the fan-out is held up (another session holds a delivery row it inserts) while an
// event is committed, which must not wait for it; then the tail, under the lock, takes that
// event too.
func TestDisableBacklogWithoutLogLock(t *testing.T) {
	u := pgtest.NewSchema(t)
	db := MustOpen(t, u)
	ctx := t.Context()
	ep := enabledEndpoint(t, db)
	event := func(id string) *paynotify.Change {
		return &paynotify.Change{Events: []*paynotify.Event{paynotify.NewOrphanAnomalyEvent(id, "app1", id, time.Now(),
			&paynotify.EventAnomaly{Reason: paynotify.ReasonUnknownOrder})}}
	}
	if _, err := db.Commit(ctx, event("evt_B")); err != nil { // the backlog
		t.Fatal(err)
	}
	blocker, blockerPID := openTx(t, u)
	// The delivery the disable's fan-out will insert, inserted and not committed: it waits.
	if _, err := blocker.Exec(ctx, `INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, event_seq, app,
		out_trade_no, status, next_attempt_at, created_at, updated_at)
		SELECT 'whd_blocker', $1, id, type, seq, app, out_trade_no, 'pending', now(), now(), now() FROM events WHERE id = 'evt_B'`, ep.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	disabled := paynotify.EndpointDisabled
	go func() {
		_, err := db.UpdateWebhookEndpoint(ctx, ep.ID, &paynotify.WebhookEndpointUpdate{Status: &disabled, DisabledReason: "by hand"})
		done <- err
	}()
	waitBlockedBy(t, u, blockerPID, done, "the disable's fan-out") // it waits for the blocker's row
	committed := make(chan error, 1)
	go func() { _, err := db.Commit(ctx, event("evt_C")); committed <- err }() // an event committed meanwhile
	waited := false
	select {
	case err := <-committed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		waited = true
		t.Errorf("an event's commit waited 5 s for the disable's fan-out of the backlog (the event log's lock)")
	}
	if err := blocker.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if waited {
		if err := <-committed; err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"evt_B", "evt_C"} {
		ds, err := db.ListWebhookDeliveries(ctx, id)
		if err != nil || len(ds) != 1 || ds[0].Status != paynotify.DeliveryFailed {
			t.Errorf("%s: %+v, %v; want one failed delivery", id, ds, err)
		}
	}
}

// TestDisableLockTimeout (from a reviewer helper's review): with lock_timeout set in the database
// URL, a disable that waited for the event log's lock (a commit under way) failed with 55P03; it
// waits as the batches do.
func TestDisableLockTimeout(t *testing.T) {
	base := pgtest.NewSchema(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("lock_timeout", "200ms")
	u.RawQuery = q.Encode()
	db := MustOpen(t, u.String())
	ctx := t.Context()
	ep := enabledEndpoint(t, db)
	tx, pid := openTx(t, base)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, postgres.EventsLockKey); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	disabled := paynotify.EndpointDisabled
	go func() {
		_, err := db.UpdateWebhookEndpoint(ctx, ep.ID, &paynotify.WebhookEndpointUpdate{Status: &disabled, DisabledReason: "by hand"})
		done <- err
	}()
	// The disable waits for the lock, past the URL's lock_timeout of 200 ms, then the commit under
	// way ends and the disable goes through.
	waitBlockedBy(t, base, pid, done, "the disable")
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("the disable ended (%v) while the lock was still held", err)
	default:
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("disable while an event's commit is under way: %v", err)
	}
}

// enabledEndpoint creates an enabled endpoint (its URL never called: these tests stay in the store).
func enabledEndpoint(t *testing.T, db *postgres.DB) *paynotify.WebhookEndpoint {
	t.Helper()
	ep := &paynotify.WebhookEndpoint{Kind: paynotify.EndpointHTTP, URL: "https://example.invalid/h", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Status: paynotify.EndpointEnabled}
	if err := db.CreateWebhookEndpoint(t.Context(), ep); err != nil {
		t.Fatal(err)
	}
	return ep
}
