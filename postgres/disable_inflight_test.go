package postgres_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
	ep := &paynotify.WebhookEndpoint{Kind: paynotify.EndpointHTTP, URL: "https://example.invalid/h", Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", Status: paynotify.EndpointEnabled}
	if err := db.CreateWebhookEndpoint(ctx, ep); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
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
	time.Sleep(300 * time.Millisecond) // the disable waits for the log's lock
	select {
	case err := <-done:
		t.Fatalf("the disable did not wait for the commit in flight: %v", err)
	default:
	}
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
