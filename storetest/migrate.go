package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/migrations"
)

// Migrator is a store's migration API, as `paynotify migrate` uses it, with the test hooks the
// migration suite needs.
type Migrator interface {
	ApplyMigrations(ctx context.Context) ([]string, error)
	MigrationStatus(ctx context.Context) ([]migrations.Status, error)
	PendingMigrations(ctx context.Context) (int, error)
	// MigrateTo applies the migrations up to version only, as an older binary did.
	MigrateTo(ctx context.Context, version int64) error
	// ExecSQL runs one SQL statement on the store's database.
	ExecSQL(ctx context.Context, query string) error
}

// RunMigrations checks what a store says about its migrations. open must return a store on a
// new, empty database that nothing has migrated, closed when t ends.
func RunMigrations(t *testing.T, open func(t *testing.T) Migrator) {
	t.Run("StatusAndApply", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		db := open(t)
		// A new database: every migration pending, and nothing written by asking.
		st, err := db.MigrationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st) < 2 {
			t.Fatalf("MigrationStatus on a new database lists %d migrations, want every embedded one (≥ 2)", len(st))
		}
		for i, s := range st {
			if s.Applied || s.Unknown || !s.AppliedAt.IsZero() || s.Name == "" || (i > 0 && s.Version <= st[i-1].Version) {
				t.Fatalf("MigrationStatus on a new database: %+v", st)
			}
		}
		if n, err := db.PendingMigrations(ctx); err != nil || n != len(st) {
			t.Fatalf("PendingMigrations = %d, %v; want %d", n, err, len(st))
		}

		// As an older binary left it: the first applied, the rest pending.
		before := time.Now().Add(-time.Second)
		if err := db.MigrateTo(ctx, st[0].Version); err != nil {
			t.Fatal(err)
		}
		mid, err := db.MigrationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(mid) != len(st) || !mid[0].Applied || mid[0].AppliedAt.Before(before) || mid[0].AppliedAt.After(time.Now()) || mid[0].AppliedAt.Location() != time.UTC {
			t.Fatalf("after MigrateTo(%d): %+v", st[0].Version, mid)
		}
		var pending []string
		for _, s := range mid[1:] {
			if s.Applied {
				t.Fatalf("after MigrateTo(%d): %s applied", st[0].Version, s.Name)
			}
			pending = append(pending, s.Name)
		}

		applied, err := db.ApplyMigrations(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(applied, pending) {
			t.Fatalf("ApplyMigrations applied %q, want the pending %q", applied, pending)
		}
		after, err := db.MigrationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range after {
			if !s.Applied || s.Unknown || s.Name != st[i].Name || s.AppliedAt.IsZero() {
				t.Fatalf("after ApplyMigrations: %+v", after)
			}
		}
		if !after[0].AppliedAt.Equal(mid[0].AppliedAt) {
			t.Errorf("the first migration's time changed: %v, then %v", mid[0].AppliedAt, after[0].AppliedAt)
		}
		if again, err := db.ApplyMigrations(ctx); err != nil || len(again) != 0 {
			t.Fatalf("ApplyMigrations on an up-to-date database = %q, %v; want none", again, err)
		}
		if n, err := db.PendingMigrations(ctx); err != nil || n != 0 {
			t.Fatalf("PendingMigrations = %d, %v; want 0", n, err)
		}
	})

	t.Run("UnknownVersion", func(t *testing.T) {
		// A newer paynotify applied a migration this binary does not have: it is listed, and
		// nothing counts as pending.
		t.Parallel()
		ctx := t.Context()
		db := open(t)
		if _, err := db.ApplyMigrations(ctx); err != nil {
			t.Fatal(err)
		}
		if err := db.ExecSQL(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future', '2026-12-01T08:00:00.000000Z')`); err != nil {
			t.Fatal(err)
		}
		st, err := db.MigrationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		last := st[len(st)-1]
		want := migrations.Status{Version: 9999, Name: "9999_future", Applied: true, Unknown: true,
			AppliedAt: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}
		if last != want {
			t.Fatalf("last status = %+v, want %+v", last, want)
		}
		for _, s := range st[:len(st)-1] {
			if !s.Applied || s.Unknown {
				t.Fatalf("MigrationStatus: %+v", st)
			}
		}
		if n, err := db.PendingMigrations(ctx); err != nil || n != 0 {
			t.Fatalf("PendingMigrations = %d, %v; want 0", n, err)
		}
	})
}
