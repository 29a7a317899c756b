package postgres

import (
	"context"
	"embed"
	"fmt"
	"time"

	mig "github.com/paynotify/paynotify/internal/migrations"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one numbered SQL file of migrations/, NNNN_name.sql.
type migration = mig.Migration

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) { return mig.Load(migrationFS, "migrations") }

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    bigint PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL
)`

// Migrate applies the pending migrations, each in its own transaction, while holding a session
// advisory lock: several instances starting together on one schema take turns, and the later
// ones find the migrations applied. Tables are created in the connection's current schema
// (the first existing schema of search_path).
func (db *DB) Migrate(ctx context.Context) error {
	_, err := db.ApplyMigrations(ctx)
	return err
}

// ApplyMigrations is Migrate, and returns the names of the migrations this call applied, in
// order ("0004_webhooks_perf"); none when the schema was up to date (or another instance applied
// them first).
func (db *DB) ApplyMigrations(ctx context.Context) ([]string, error) {
	ms, err := migrations()
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	defer conn.Release()
	// The lock is per schema (current_schema() is where the tables go): instances on one schema
	// take turns, databases with several paynotify schemas do not wait for each other.
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1 # hashtextextended(current_schema(), 0))`, migrateLockKey); err != nil {
		return nil, fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1 # hashtextextended(current_schema(), 0))`, migrateLockKey); err != nil {
			// The session may still hold the lock: do not return the connection to the pool.
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := conn.Exec(ctx, createMigrationsTable); err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", err)
	}
	var applied []string
	for _, m := range ms {
		ok, err := migrateOne(ctx, conn.Conn(), m, db)
		for try := 1; lockTimeout(err) && try < migrateLockTries; try++ {
			// A table it changes is held (a long transaction, a pg_dump): step out of the lock
			// queue, where the writes of running instances would wait behind it, and try again.
			select {
			case <-ctx.Done():
				return applied, fmt.Errorf("postgres: migrate %s: %w", m.Name, ctx.Err())
			case <-time.After(migrateLockPause):
			}
			ok, err = migrateOne(ctx, conn.Conn(), m, db)
		}
		if lockTimeout(err) {
			return applied, fmt.Errorf("postgres: migrate %s: a table it changes stayed locked by another session for %d tries (a long transaction or a pg_dump?): %w",
				m.Name, migrateLockTries, err)
		}
		if err != nil {
			return applied, fmt.Errorf("postgres: migrate %s: %w", m.Name, err)
		}
		if ok {
			applied = append(applied, m.Name)
		}
	}
	return applied, nil
}

// migrateLockTimeout bounds a migration's wait for a table lock: shorter than the writers' own
// (lockTimeoutSQL), so that the writes queued behind a migration that waits go through in time.
// It does not bound the work once the lock is held: an index built on a big table holds off the
// table's writes while it builds (deploy.md).
const migrateLockTimeout = `SET LOCAL lock_timeout = '1s'`

// migrateLockTries and migrateLockPause: how often, and how far apart, a migration that could not
// take its lock is tried again before Migrate gives up (about two minutes).
const (
	migrateLockTries = 60
	migrateLockPause = time.Second
)

// migrateOne applies m unless the schema has it, and reports whether it did.
func migrateOne(ctx context.Context, conn *pgx.Conn, m migration, db *DB) (bool, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer rollback(ctx, tx)
	if _, err := tx.Exec(ctx, migrateLockTimeout); err != nil {
		return false, err
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, m.Version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		m.Version, m.Name, tm(db.now())); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}

// PendingMigrations returns how many embedded migrations the database (its current schema) has
// not applied yet, so that a server started without migrating can refuse an old schema.
func (db *DB) PendingMigrations(ctx context.Context) (int, error) {
	ms, err := migrations()
	if err != nil {
		return 0, fmt.Errorf("postgres: pending migrations: %w", err)
	}
	applied, err := db.appliedMigrations(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres: pending migrations: %w", err)
	}
	versions := map[int64]bool{}
	for _, a := range applied {
		versions[a.Version] = true
	}
	return mig.Pending(ms, versions), nil
}

// MigrationStatus lists every embedded migration, applied or pending, and any version the schema
// has applied that this binary does not know (Unknown: a newer paynotify migrated it), in version
// order. It writes nothing: a new schema lists every migration pending.
func (db *DB) MigrationStatus(ctx context.Context) ([]mig.Status, error) {
	ms, err := migrations()
	if err != nil {
		return nil, fmt.Errorf("postgres: migration status: %w", err)
	}
	applied, err := db.appliedMigrations(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: migration status: %w", err)
	}
	return mig.Statuses(ms, applied), nil
}

// appliedMigrations reads schema_migrations of the current schema; none when it does not exist.
func (db *DB) appliedMigrations(ctx context.Context) ([]mig.Applied, error) {
	var exists bool
	if err := db.pool.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return nil, nil
	}
	rows, err := db.pool.Query(ctx, `SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (mig.Applied, error) {
		var a mig.Applied
		err := row.Scan(&a.Version, &a.Name, &a.AppliedAt)
		a.AppliedAt = a.AppliedAt.UTC()
		return a, err
	})
}
