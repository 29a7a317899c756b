package sqlite

import (
	"context"
	"testing"

	"github.com/paynotify/paynotify/internal/groupcommit/groupcommittest"
)

// MigrateTo applies the embedded migrations up to version only, as an older binary did, so that
// tests can check what later migrations do to existing rows.
func (db *DB) MigrateTo(ctx context.Context, version int64) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	if _, err := db.db.ExecContext(ctx, createMigrationsTable); err != nil {
		return err
	}
	for _, m := range ms {
		if m.Version > version {
			break
		}
		if _, err := db.migrateOne(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// HoldWrites holds the writer before its next batch until release (storetest.DB.HoldWrites).
func (db *DB) HoldWrites(t *testing.T) (queued func() int, release func(fail error)) {
	return groupcommittest.Hold(t, db.w)
}

// SetBackupHook sets the function a backup runs before publishing its copy, until the test ends.
func SetBackupHook(t *testing.T, f func(tmp string) error) {
	backupHook = f
	t.Cleanup(func() { backupHook = nil })
}

// SetWebhookChunk sets the chunk of DeleteWebhookEndpoint and RecoverWebhooks, and a function run
// after each chunk, until the test ends.
func SetWebhookChunk(t *testing.T, n int, hook func()) {
	old := webhookChunk
	webhookChunk, chunkHook = n, hook
	t.Cleanup(func() { webhookChunk, chunkHook = old, nil })
}
