package postgres_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/storetest"
)

// TestWebhookFanOutCommitOrder checks, on PostgreSQL where seq is handed out at insert and not at
// commit, that fan-outs of two processes racing with event-appending commits never move a cursor
// past an event committed later with a smaller seq: at the end every event has exactly one
// delivery to the endpoint, and the cursor is at the last event. (The conformance suite fans out
// only events committed beforehand.)
func TestWebhookFanOutCommitOrder(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	u := pgtest.NewSchema(t)
	db, other := MustOpen(t, u), MustOpen(t, u)
	if err := db.CreateWebhookEndpoint(ctx, &paynotify.WebhookEndpoint{ID: "we1", Kind: paynotify.EndpointHTTP,
		URL: "https://merchant.example/hooks", Status: paynotify.EndpointEnabled, Secret: "whsec_c2VjcmV0LWtleS0x",
		CreatedAt: storetest.T0, UpdatedAt: storetest.T0}); err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 8, 30
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				o, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", fmt.Sprintf("W%d-%d", w, i), storetest.T0))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := db.Commit(ctx, storetest.PaidChange(o, fmt.Sprintf("ev%d-%d", w, i), fmt.Sprintf("nt%d-%d", w, i), storetest.T0)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var fanners sync.WaitGroup
	for _, st := range []*postgres.DB{db, other} {
		fanners.Add(1)
		go func() {
			defer fanners.Done()
			for finished := false; ; {
				select {
				case <-done:
					finished = true
				default:
				}
				n, err := st.FanOutWebhooks(ctx, storetest.T0, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if finished && n == 0 {
					return
				}
			}
		}()
	}
	fanners.Wait()
	var deliveries, distinct int
	if err := db.Pool().QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM webhook_deliveries`).Scan(&deliveries, &distinct); err != nil {
		t.Fatal(err)
	}
	if deliveries != writers*perWriter || distinct != deliveries {
		t.Errorf("%d deliveries of %d events, want one of each of %d", deliveries, distinct, writers*perWriter)
	}
	e, err := db.GetWebhookEndpoint(ctx, "we1")
	if err != nil {
		t.Fatal(err)
	}
	if e.Cursor != writers*perWriter {
		t.Errorf("Cursor = %d, want %d", e.Cursor, writers*perWriter)
	}
}
