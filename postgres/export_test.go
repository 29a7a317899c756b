package postgres

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/groupcommit/groupcommittest"
)

// MigrateTo applies the embedded migrations up to version only, as an older binary did, so that
// tests can check what later migrations do to existing rows. Unlike Migrate it takes no lock:
// tests call it on a schema of their own.
func (db *DB) MigrateTo(ctx context.Context, version int64) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, createMigrationsTable); err != nil {
		return err
	}
	for _, m := range ms {
		if m.Version > version {
			break
		}
		if _, err := migrateOne(ctx, conn.Conn(), m, db); err != nil {
			return err
		}
	}
	return nil
}

// HoldWrites holds the writer before its next batch until release (storetest.DB.HoldWrites).
func (db *DB) HoldWrites(t *testing.T) (queued func() int, release func(fail error)) {
	return groupcommittest.Hold(t, db.w)
}

// ByLockKey is byLockKey over ops committing changes.
func ByLockKey(changes []*paynotify.Change) []int {
	ops := make([]*op, len(changes))
	for i, c := range changes {
		ops[i] = &op{Fn: &write{change: c}}
	}
	return byLockKey(ops)
}

// Reruns returns how many batches ran again write by write.
func (db *DB) Reruns() int64 { return db.reruns.Load() }

// FailReads makes the next n reads of batches' decisions' orders fail with err.
func (db *DB) FailReads(n int, err error) {
	var left atomic.Int64
	left.Store(int64(n))
	h := func() error { // on the writer's goroutines
		if left.Add(-1) < 0 {
			return nil
		}
		return err
	}
	db.readHook.Store(&h)
}

// EventsLockKey is the event log's advisory lock key.
const EventsLockKey = eventsLockKey

// SetWriterTimeouts shortens BatchTimeout and WriterStuckAfter for this store.
func (db *DB) SetWriterTimeouts(batch, stuck time.Duration) {
	db.batchTimeout, db.stuckAfter = batch, stuck
}
