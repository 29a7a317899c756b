package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/sqlite"
)

// getReady asks base/readyz over a real socket and returns the status and body.
func getReady(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReadyz: 200 on a migrated database, 503 once it no longer answers (both stores), 503 with
// migrations pending; the answer never carries the driver's error text.
func TestReadyz(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	serveStore := func(t *testing.T, st store) string {
		cfg := &Config{APIToken: binToken}
		srv := httptest.NewServer(newServer(cfg, st, newService(cfg, st, map[string]*paynotify.App{}, logger), logger).Handler())
		t.Cleanup(srv.Close)
		return srv.URL
	}
	for _, kind := range []string{"SQLite", "PostgreSQL"} {
		t.Run(kind, func(t *testing.T) {
			dsn := "sqlite:" + filepath.Join(t.TempDir(), "paynotify.db")
			if kind == "PostgreSQL" {
				dsn = pgtest.NewDatabase(t)
			}
			st, err := openStore(t.Context(), dsn, true)
			if err != nil {
				t.Fatal(err)
			}
			base := serveStore(t, st)
			if code, body := getReady(t, base); code != http.StatusOK || body != "ok\n" {
				t.Fatalf("migrated: %d %q", code, body)
			}
			st.Close()
			code, body := getReady(t, base)
			if code != http.StatusServiceUnavailable || body != "not ready: the database does not answer\n" {
				t.Fatalf("closed: %d %q", code, body)
			}
		})
	}
	t.Run("MigrationsCheckedUntilComplete", func(t *testing.T) {
		// Pending, then migrated: checked on each call until found complete, then only pinged.
		var pings, checks atomic.Int32
		pending := 2
		ready := readinessOf(func(context.Context) error { pings.Add(1); return nil },
			func(context.Context) (int, int, error) { checks.Add(1); return pending, 0, nil }, logger)
		if err := ready(t.Context()); err == nil {
			t.Fatal("ready with migrations pending")
		}
		pending = 0
		for range 5 {
			if err := ready(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if pings.Load() != 6 || checks.Load() != 2 {
			t.Fatalf("%d pings and %d migration checks, want 6 and 2", pings.Load(), checks.Load())
		}
	})
	t.Run("PendingMigrations", func(t *testing.T) {
		db, err := sqlite.Open(filepath.Join(t.TempDir(), "paynotify.db")) // never migrated
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		code, body := getReady(t, serveStore(t, db))
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready: the database has migrations pending (paynotify: ") {
			t.Fatalf("unmigrated: %d %q", code, body)
		}
	})
}
