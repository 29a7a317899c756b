package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/storetest"
)

// TestMigrateBehindLongReader: a migration that alters evidence while another session reads it
// (a long transaction, a pg_dump) steps out of the lock queue after a second and tries again,
// instead of queueing for as long as the reader lasts with every evidence insert of the running
// instance queued behind it (each giving up after its own 2 s lock timeout). The inserts go
// through meanwhile; the migration is applied once the reader ends.
func TestMigrateBehindLongReader(t *testing.T) {
	u := pgtest.NewSchema(t)
	db := MustOpen(t, u) // migrated
	ctx := t.Context()
	// Undo migration 8 (it alters evidence), as if this schema were one version behind.
	if _, err := db.Pool().Exec(ctx, `ALTER TABLE evidence DROP COLUMN repeats, DROP COLUMN last_received_at;
		DELETE FROM schema_migrations WHERE version = 8`); err != nil {
		t.Fatal(err)
	}
	old, err := postgres.Open(ctx, u) // the running instance, not migrating
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	reader, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close(context.Background())
	long, err := reader.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := long.Exec(ctx, `SELECT count(*) FROM evidence`); err != nil {
		t.Fatal(err)
	}
	migrated := make(chan error, 1)
	go func() { migrated <- db.Migrate(context.Background()) }()
	// The running instance's evidence inserts (old's own schema has no repeats column yet: a
	// plain insert of a rejected request's record) go through while the migration waits.
	for i := range 6 {
		time.Sleep(300 * time.Millisecond)
		ev := &paynotify.Evidence{ID: fmt.Sprint("ntf_migr_", i), App: "app1", Provider: "alipay", Source: paynotify.SourceNotification,
			Endpoint: "alipay", ReceivedAt: storetest.T0, Verdict: paynotify.VerdictRejected, Reason: paynotify.ReasonSignatureInvalid}
		if err := old.InsertEvidence(ctx, ev); err != nil {
			t.Errorf("evidence insert %d while the migration waits: %v", i, err)
		}
	}
	select {
	case err := <-migrated:
		t.Fatalf("the migration ended while the reader held evidence: %v", err)
	default:
	}
	if err := long.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-migrated:
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the migration did not end once the reader was gone")
	}
	if n, err := db.PendingMigrations(ctx); err != nil || n != 0 {
		t.Fatalf("PendingMigrations = %d, %v; want 0", n, err)
	}
}
