package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
			// The answer before is kept for readyTTL (a second), then the ping runs again.
			deadline := time.Now().Add(3 * readyTTL)
			for {
				code, body := getReady(t, base)
				if code == http.StatusServiceUnavailable && body == "not ready: the database does not answer\n" {
					break
				}
				if code != http.StatusOK || time.Now().After(deadline) {
					t.Fatalf("closed: %d %q", code, body)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	t.Run("MigrationsCheckedUntilComplete", func(t *testing.T) {
		// Pending, then migrated: checked on each call until found complete, then only pinged.
		var pings, checks atomic.Int32
		pending := 2
		now := time.Unix(1_800_000_000, 0)
		ready := readinessOf(func() time.Time { return now }, func(context.Context) error { pings.Add(1); return nil },
			func(context.Context) (int, int, error) { checks.Add(1); return pending, 0, nil }, logger)
		if err := ready(t.Context()); err == nil {
			t.Fatal("ready with migrations pending")
		}
		pending = 0
		for range 5 {
			now = now.Add(readyTTL)
			if err := ready(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		if pings.Load() != 6 || checks.Load() != 2 {
			t.Fatalf("%d pings and %d migration checks, want 6 and 2", pings.Load(), checks.Load())
		}
	})
	t.Run("AnswerKeptForReadyTTL", func(t *testing.T) {
		// Anyone can poll /readyz: within readyTTL of an answer the database is not asked again,
		// failures included (one ping and one log line a second, however many ask).
		var pings atomic.Int32
		fail := false
		var during func() // run inside the next ping
		now := time.Unix(1_800_000_000, 0)
		ready := readinessOf(func() time.Time { return now }, func(context.Context) error {
			pings.Add(1)
			if during != nil {
				during()
				during = nil
			}
			if fail {
				return errors.New("down")
			}
			return nil
		}, func(context.Context) (int, int, error) { return 0, 0, nil }, logger)
		for range 100 {
			if err := ready(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		fail = true
		now = now.Add(readyTTL - time.Millisecond)
		if err := ready(t.Context()); err != nil || pings.Load() != 1 {
			t.Fatalf("within readyTTL: %v after %d pings, want the kept answer after 1", err, pings.Load())
		}
		now = now.Add(time.Millisecond)
		for range 100 {
			if err := ready(t.Context()); err == nil {
				t.Fatal("ready with the database down")
			}
		}
		if pings.Load() != 2 {
			t.Fatalf("%d pings, want 2", pings.Load())
		}
		// A caller that leaves during its check does not leave its cut-short answer for the others.
		now = now.Add(readyTTL)
		leaving, leave := context.WithCancel(t.Context())
		during = leave
		if err := ready(leaving); err == nil {
			t.Fatal("the leaving caller's check did not fail")
		}
		fail = false
		if err := ready(t.Context()); err != nil || pings.Load() != 4 {
			t.Fatalf("after a caller that left: %v after %d pings, want a new ping's answer", err, pings.Load())
		}
		// Callers that have left before their turn (a client that hangs up at once) ping nothing.
		now = now.Add(readyTTL)
		gone, cancel := context.WithCancel(t.Context())
		cancel()
		for range 50 {
			if err := ready(gone); err == nil {
				t.Fatal("ready for a caller that left")
			}
		}
		if pings.Load() != 4 {
			t.Fatalf("%d pings for callers that had left, want none", pings.Load()-4)
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
