package sqlite_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sqlite"
	"github.com/paynotify/paynotify/storetest"
)

// TestWebhookChunks (from a reviewer helper's audit): deleting an endpoint with its history and
// recovering a long period ran as one transaction on the write connection, holding every
// notification's write for seconds. They run in chunks, each a write of the group commit: here
// in chunks of 3, with a write sent between chunks (as a notification's would be) that completes
// before the next chunk, and the same outcome as in one piece.
func TestWebhookChunks(t *testing.T) {
	db := MustOpen(t, tempPath(t))
	ctx := t.Context()
	writes, ids := 0, 0
	between := func() {
		writes, ids = writes+1, ids+1
		e := storetest.NewEvidence(fmt.Sprint("nt-between-", ids), &paynotify.Order{App: "app1", OutTradeNo: "X"}, storetest.T0)
		if err := db.InsertEvidence(ctx, e); err != nil {
			t.Errorf("a write between chunks: %v", err)
		}
	}
	sqlite.SetWebhookChunk(t, 3, between)
	tenMissed(t, db)
	n, err := db.RecoverWebhooks(ctx, "we1", storetest.T0, storetest.T0)
	if err != nil || n != 10 {
		t.Fatalf("RecoverWebhooks = %d, %v; want 10", n, err)
	}
	if writes < 4 {
		t.Errorf("recover ran in %d chunks, want 4 or more (10 events by 3)", writes)
	}
	// Attempts for the deliveries, then the delete.
	var rows []string
	for i := range 10 {
		rows = append(rows, fmt.Sprintf("('wha%d', 'whd%d', 'we1', 'e%d', 'order.anomaly', '2026-11-29T02:30:15.000000Z')", i, i, i))
	}
	if err := (suiteDB{db}).ExecSQL(ctx, `INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, event_id, event_type, at) VALUES `+strings.Join(rows, ", ")); err != nil {
		t.Fatal(err)
	}
	writes = 0
	if err := db.DeleteWebhookEndpoint(ctx, "we1"); err != nil {
		t.Fatal(err)
	}
	if writes < 8 {
		t.Errorf("delete ran in %d chunks, want 8 or more (10 attempts and 10 deliveries by 3)", writes)
	}
	if _, err := db.GetWebhookEndpoint(ctx, "we1"); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
		t.Fatalf("endpoint after delete: %v", err)
	}
	if ds, err := db.ListWebhookAttempts(ctx, paynotify.WebhookAttemptFilter{EndpointID: "we1"}); err != nil || len(ds) != 0 {
		t.Fatalf("attempts after delete: %d, %v", len(ds), err)
	}
	if err := db.DeleteWebhookEndpoint(ctx, "we1"); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
		t.Fatalf("deleting it again: %v", err)
	}
}

// TestRecoverEndpointDeletedMidway (from a reviewer helper's review): an endpoint deleted between
// two chunks of RecoverWebhooks made the next chunk's delivery break its foreign key, answered
// as an internal error; it is ENOTFOUND, as for an endpoint missing from the start.
func TestRecoverEndpointDeletedMidway(t *testing.T) {
	db := MustOpen(t, tempPath(t))
	ctx := t.Context()
	deleted := false
	sqlite.SetWebhookChunk(t, 3, func() {
		if !deleted {
			deleted = true
			if err := db.DeleteWebhookEndpoint(ctx, "we1"); err != nil {
				t.Errorf("delete: %v", err)
			}
		}
	})
	tenMissed(t, db)
	if n, err := db.RecoverWebhooks(ctx, "we1", storetest.T0, storetest.T0); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
		t.Fatalf("RecoverWebhooks = %d, %v; want ENOTFOUND", n, err)
	}
}

// tenBehind creates endpoint we1 and commits ten events after it, not fanned out: we1 is ten
// events behind.
func tenBehind(t *testing.T, db *sqlite.DB) []*paynotify.Event {
	t.Helper()
	ctx := t.Context()
	ep := &paynotify.WebhookEndpoint{ID: "we1", Kind: paynotify.EndpointHTTP, URL: "https://merchant.example/h", Status: paynotify.EndpointEnabled,
		Secret: "whsec_c2VjcmV0LWtleS0x", CreatedAt: storetest.T0, UpdatedAt: storetest.T0}
	if err := db.CreateWebhookEndpoint(ctx, ep); err != nil {
		t.Fatal(err)
	}
	var evs []*paynotify.Event
	for i := range 10 {
		evs = append(evs, paynotify.NewOrphanAnomalyEvent(fmt.Sprint("e", i), "app1", fmt.Sprint("T", i), storetest.T0,
			&paynotify.EventAnomaly{Reason: paynotify.ReasonUnknownOrder}))
	}
	storetest.MustCommit(t, ctx, db, &paynotify.Change{Events: evs})
	return evs
}

// tenMissed creates endpoint we1 and ten events past its cursor that it has no delivery of.
func tenMissed(t *testing.T, db *sqlite.DB) {
	t.Helper()
	ctx := t.Context()
	tenBehind(t, db)
	if _, err := db.FanOutWebhooks(ctx, storetest.T0, 0); err != nil { // moves the cursor past them
		t.Fatal(err)
	}
	if err := (suiteDB{db}).ExecSQL(ctx, `DELETE FROM webhook_deliveries`); err != nil { // as if never delivered
		t.Fatal(err)
	}
}

// TestDisableBacklogChunks (from a reviewer helper's review): a disable makes the deliveries of
// the events the endpoint was behind on, failed with the others; a large backlog is fanned out
// before the disable's transaction, in chunks of the group commit with writes between them,
// instead of inside it (which held every write). In chunks of 3: ten events behind, all with a
// failed delivery after the disable.
func TestDisableBacklogChunks(t *testing.T) {
	db := MustOpen(t, tempPath(t))
	ctx := t.Context()
	writes := 0
	sqlite.SetWebhookChunk(t, 3, func() {
		writes++
		e := storetest.NewEvidence(fmt.Sprint("nt-between-", writes), &paynotify.Order{App: "app1", OutTradeNo: "X"}, storetest.T0)
		if err := db.InsertEvidence(ctx, e); err != nil {
			t.Errorf("a write between chunks: %v", err)
		}
	})
	evs := tenBehind(t, db)
	disabled := paynotify.EndpointDisabled
	if _, err := db.UpdateWebhookEndpoint(ctx, "we1", &paynotify.WebhookEndpointUpdate{Status: &disabled, DisabledReason: "by hand"}); err != nil {
		t.Fatal(err)
	}
	if writes < 2 {
		t.Errorf("the backlog was fanned out in %d chunks, want 2 or more before the disable", writes)
	}
	for _, ev := range evs {
		ds, err := db.ListWebhookDeliveries(ctx, ev.ID)
		if err != nil || len(ds) != 1 || ds[0].Status != paynotify.DeliveryFailed {
			t.Errorf("%s: %+v, %v; want one failed delivery", ev.ID, ds, err)
		}
	}
}
