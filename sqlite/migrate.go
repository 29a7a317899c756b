package sqlite

import (
	"context"
	"embed"
	"fmt"
	"strings"
	"time"

	mig "github.com/paynotify/paynotify/internal/migrations"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered SQL file of migrations/, NNNN_name.sql.
type migration = mig.Migration

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) { return mig.Load(migrationFS, "migrations") }

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at TEXT NOT NULL
)`

// migrateBusyWait is how long a migration waits for another process's write lock, beyond the
// busy timeout of each attempt.
const migrateBusyWait = 2 * time.Minute

// Migrate applies the pending migrations, each in its own write transaction (BEGIN IMMEDIATE:
// another process migrating the same file waits, up to migrateBusyWait, then finds the migration
// applied).
func (db *DB) Migrate(ctx context.Context) error {
	_, err := db.ApplyMigrations(ctx)
	return err
}

// ApplyMigrations is Migrate, and returns the names of the migrations this call applied, in
// order ("0003_webhooks"); none when the database was up to date (or another process applied
// them first).
func (db *DB) ApplyMigrations(ctx context.Context) ([]string, error) {
	ms, err := migrations()
	if err != nil {
		return nil, fmt.Errorf("sqlite: migrate: %w", err)
	}
	if err := waitBusy(ctx, func() error { _, err := db.db.ExecContext(ctx, createMigrationsTable); return err }); err != nil {
		return nil, fmt.Errorf("sqlite: migrate: %w", err)
	}
	var applied []string
	for _, m := range ms {
		var ok bool
		err := waitBusy(ctx, func() (err error) { ok, err = db.migrateOne(ctx, m); return err })
		if err != nil {
			return applied, fmt.Errorf("sqlite: migrate %s: %w", m.Name, err)
		}
		if ok {
			applied = append(applied, m.Name)
		}
	}
	return applied, nil
}

// waitBusy runs f again while it fails with SQLITE_BUSY, for up to migrateBusyWait: another
// process holding the write lock longer than the busy timeout (5 s) — another migrate building an
// index on a long table, a backup — is waited for, as PostgreSQL's migrations wait for their lock
// (a second process failed at once: a reviewer helper's finding).
func waitBusy(ctx context.Context, f func() error) error {
	err := f()
	for deadline := time.Now().Add(migrateBusyWait); err != nil && strings.Contains(err.Error(), "SQLITE_BUSY") && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		err = f()
	}
	return err
}

// migrateOne applies m unless the database has it, and reports whether it did.
func (db *DB) migrateOne(ctx context.Context, m migration) (bool, error) {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer rollback(tx)
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.Version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.Version, m.Name, formatTime(db.now())); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// PendingMigrations returns how many embedded migrations the database has not applied yet
// (all of them on a new file), so that a server started without migrating can refuse an old
// schema.
func (db *DB) PendingMigrations(ctx context.Context) (int, error) {
	ms, err := migrations()
	if err != nil {
		return 0, fmt.Errorf("sqlite: pending migrations: %w", err)
	}
	applied, err := db.appliedMigrations(ctx)
	if err != nil {
		return 0, fmt.Errorf("sqlite: pending migrations: %w", err)
	}
	versions := map[int64]bool{}
	for _, a := range applied {
		versions[a.Version] = true
	}
	return mig.Pending(ms, versions), nil
}

// MigrationStatus lists every embedded migration, applied or pending, and any version the
// database has applied that this binary does not know (Unknown: a newer paynotify migrated it),
// in version order. It writes nothing: a new file lists every migration pending.
func (db *DB) MigrationStatus(ctx context.Context) ([]mig.Status, error) {
	ms, err := migrations()
	if err != nil {
		return nil, fmt.Errorf("sqlite: migration status: %w", err)
	}
	applied, err := db.appliedMigrations(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlite: migration status: %w", err)
	}
	return mig.Statuses(ms, applied), nil
}

// appliedMigrations reads schema_migrations; none when the table does not exist yet.
func (db *DB) appliedMigrations(ctx context.Context) ([]mig.Applied, error) {
	var exists int
	if err := db.db.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&exists); err != nil {
		return nil, err
	}
	if exists == 0 {
		return nil, nil
	}
	rows, err := db.db.QueryContext(ctx, `SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var applied []mig.Applied
	for rows.Next() {
		var a mig.Applied
		var at string
		if err := rows.Scan(&a.Version, &a.Name, &at); err != nil {
			return nil, err
		}
		if a.AppliedAt, err = parseTime(at); err != nil {
			return nil, fmt.Errorf("schema_migrations version %d: %w", a.Version, err)
		}
		applied = append(applied, a)
	}
	return applied, rows.Err()
}
