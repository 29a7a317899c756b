// Package loadstore gives the load tools (tools/…) a fresh, migrated store to load: a SQLite file
// in a new temporary directory, or a new PostgreSQL database; Close removes it.
package loadstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/jobs"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/sqlite"
)

// Store is a fresh store: paynotify's schema and River's.
type Store struct {
	paynotify.Store
	// DSN is how paynotify's config names it ("sqlite:PATH" or a postgres:// URL).
	DSN string
	// Dir is the SQLite file's temporary directory ("" on PostgreSQL).
	Dir   string
	close func()
}

// Seed inserts n filler orders (out_trade_no "F" + 9 digits, pending, never checked) in one
// statement, as the baseline harness seeds its orders, so that a run can measure the
// notification path against a large table.
func (s *Store) Seed(ctx context.Context, app string, n int) error {
	switch db := s.Store.(type) {
	case *sqlite.DB:
		_, err := db.SQL().ExecContext(ctx, `WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?)
			INSERT INTO orders (app, out_trade_no, channel, status, amount, currency, subject, version, created_at, expires_at)
			SELECT ?, printf('F%09d', i), 'alipay.app', 'pending', 8888, 'CNY', 'filler', 1,
				'2026-01-01T00:00:00.000000Z', '2030-01-01T00:00:00.000000Z' FROM s`, n, app)
		return err
	case *postgres.DB:
		_, err := db.Pool().Exec(ctx, `INSERT INTO orders (app, out_trade_no, channel, status, amount, currency, subject, version, created_at, expires_at)
			SELECT $2, 'F' || lpad(i::text, 9, '0'), 'alipay.app', 'pending', 8888, 'CNY', 'filler', 1,
				'2026-01-01T00:00:00Z', '2030-01-01T00:00:00Z' FROM generate_series(1, $1::int) AS i`, n, app)
		if err == nil {
			_, err = db.Pool().Exec(ctx, `VACUUM ANALYZE orders`)
		}
		return err
	}
	return fmt.Errorf("seed: unknown store %T", s.Store)
}

// Close closes the store and removes its file or database. It may be called more than once.
func (s *Store) Close() {
	if s.close != nil {
		s.close()
		s.close = nil
	}
}

// Open creates the store: kind "sqlite" (a file in a new temporary directory named after tool)
// or "postgres" (a new database paynotify_load_… on the server of pgURL, dropped by Close).
func Open(ctx context.Context, kind, pgURL, tool string) (*Store, error) {
	switch kind {
	case "sqlite":
		dir, err := os.MkdirTemp("", tool)
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "paynotify.db")
		db, err := sqlite.Open(path)
		if err == nil {
			if err = db.Migrate(ctx); err == nil {
				err = jobs.MigrateSQLite(ctx, db.SQL())
			}
			if err != nil {
				db.Close()
			}
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		return &Store{Store: db, DSN: "sqlite:" + path, Dir: dir, close: func() { db.Close(); os.RemoveAll(dir) }}, nil
	case "postgres":
		var b [6]byte
		rand.Read(b[:])
		name := "paynotify_load_" + hex.EncodeToString(b[:])
		u, err := url.Parse(pgURL)
		if err != nil {
			return nil, err
		}
		admin, err := pgx.Connect(ctx, pgURL)
		if err != nil {
			return nil, err
		}
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			admin.Close(ctx)
			return nil, err
		}
		drop := func() {
			admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			admin.Close(context.Background())
		}
		u.Path = "/" + name
		db, err := postgres.Open(ctx, u.String())
		if err == nil {
			if err = db.Migrate(ctx); err == nil {
				err = jobs.MigratePostgres(ctx, db.Pool())
			}
			if err != nil {
				db.Close()
			}
		}
		if err != nil {
			drop()
			return nil, err
		}
		return &Store{Store: db, DSN: u.String(), close: func() { db.Close(); drop() }}, nil
	}
	return nil, fmt.Errorf("unknown store %q (sqlite or postgres)", kind)
}
