package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sqlite"
	"github.com/paynotify/paynotify/storetest"
)

// TestWebhookBookkeepingKeepsCommitsDurable: the dispatcher's transactions commit with
// synchronous=NORMAL, and the connection is back to FULL after each of them, after a failed one
// too, so that the next notification's commit waits for the disk as before.
func TestWebhookBookkeepingKeepsCommitsDurable(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(tempPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	full := func(after string) {
		t.Helper()
		n, err := db.Synchronous(ctx)
		if err != nil || n != 2 {
			t.Fatalf("after %s: synchronous = %d (%v), want 2 (FULL)", after, n, err)
		}
	}
	full("open")
	now := time.Now()
	e := &paynotify.WebhookEndpoint{ID: "we_light", Kind: paynotify.EndpointHTTP, URL: "https://example.com/h",
		Events: []paynotify.EventType{}, Apps: []string{}, Status: paynotify.EndpointEnabled, Secret: paynotify.NewWebhookSecret(),
		CreatedAt: now, UpdatedAt: now}
	if err := db.CreateWebhookEndpoint(ctx, e); err != nil {
		t.Fatal(err)
	}
	o := storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("shop", "light_1", now))
	storetest.MustCommit(t, ctx, db, storetest.PaidChange(o, paynotify.NewID("evt"), paynotify.NewID("ntf"), now))
	if n, err := db.FanOutWebhooks(ctx, now, 100); err != nil || n != 1 {
		t.Fatalf("fan out: %d, %v", n, err)
	}
	full("a fan-out")
	claimed, err := db.ClaimWebhookDeliveries(ctx, e.ID, now, time.Minute, 10)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %d, %v", len(claimed), err)
	}
	full("a claim")
	a := &paynotify.WebhookAttempt{DeliveryID: claimed[0].ID, EndpointID: e.ID, EventID: claimed[0].EventID, At: now, Status: 204}
	if err := db.FinishWebhookDeliveries(ctx, []paynotify.WebhookResult{{Delivery: claimed[0], Attempt: a, Status: paynotify.DeliveryDelivered}}); err != nil {
		t.Fatal(err)
	}
	full("a finish")
	// A finish that fails (pending without a next attempt) and one on a cancelled context.
	if err := db.FinishWebhookDeliveries(ctx, []paynotify.WebhookResult{{Delivery: claimed[0], Status: paynotify.DeliveryPending}}); err == nil {
		t.Fatal("a pending result without a next attempt was accepted")
	}
	full("a refused finish")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := db.ClaimWebhookDeliveries(cctx, e.ID, now, time.Minute, 10); err == nil {
		t.Fatal("a claim on a cancelled context succeeded")
	}
	full("a cancelled claim")
}
