// Package teststore runs a test on each real store: a fresh SQLite file and a fresh PostgreSQL
// schema (internal/pgtest; the package's TestMain calls pgtest.Main), both migrated.
package teststore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/sqlite"
)

// ForEach runs fn as the parallel subtests SQLite and PostgreSQL, each on a fresh, migrated store
// closed when the subtest ends.
func ForEach(t *testing.T, fn func(t *testing.T, s paynotify.Store)) {
	t.Helper()
	t.Run("SQLite", func(t *testing.T) {
		t.Parallel()
		db, err := sqlite.Open(filepath.Join(t.TempDir(), "paynotify.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if err := db.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		fn(t, db)
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		t.Parallel()
		db, err := postgres.Open(context.Background(), pgtest.NewSchema(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if err := db.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		fn(t, db)
	})
}
