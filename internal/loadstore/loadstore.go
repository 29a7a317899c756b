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
