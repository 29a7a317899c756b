package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// TestPingBesideTheWriter: Ping (GET /readyz, which anyone may call) answers while the group
// commit's writer holds its connection through a long batch, and so takes nothing from it.
func TestPingBesideTheWriter(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "paynotify.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	started, finish := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.w.Do(context.Background(), func(context.Context, *sql.Tx, *statements) error {
			close(started)
			<-finish // a batch whose fsync takes its time
			return nil
		})
	}()
	<-started
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	err = db.Ping(ctx)
	close(finish)
	if err != nil {
		t.Fatalf("Ping while the writer is busy: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
