// Package e2e holds the end-to-end tests of issue 5 item 8: the paynotify server (httpd.Server on
// a real store) and the provider sandbox, each on its own loopback port, talking to each other over
// real HTTP. Orders are created through the merchant API, paid by a buyer in the sandbox, notified
// on the sandbox's (time-scaled) retry schedules with its faults, and the outcomes are read back
// through the API (orders, refunds, events, evidence) and the sandbox's attempt records. Every test
// runs on SQLite and on PostgreSQL, each with its own sandbox state directory and its own store (a
// SQLite file; a schema of this run's PostgreSQL database).
package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/sandbox"
)

// keyTemplate is a sandbox state directory whose generated keys every test copies into its own
// state directory: generating four RSA keys per test would be most of the run time.
var keyTemplate string

func TestMain(m *testing.M) {
	// These tests wait (on retry schedules, long-polls, the network) far more than they compute:
	// unless -parallel is given, run more of them at once than GOMAXPROCS.
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "8")
	}
	dir, err := os.MkdirTemp("", "paynotify-e2e-keys-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sb, err := sandbox.New(sandbox.Config{StateDir: dir, BaseURL: "http://127.0.0.1:1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sb.Close()
	keyTemplate = dir
	code := m.Run()
	os.RemoveAll(dir)
	if pgName != "" {
		if err := dropDatabase(pgName); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// One PostgreSQL database per run, made on first use, dropped at the end; a schema per test
// (as the postgres package's own tests do): creating a database per test costs more than the
// test.
var (
	pgOnce sync.Once
	pgName string
	pgURL  string
	pgErr  error
)

// pgSchemaURL creates a fresh schema in this run's database and returns a URL working in it.
func pgSchemaURL(t *testing.T) string {
	t.Helper()
	pgOnce.Do(func() { pgName, pgURL, pgErr = createDatabase() })
	if pgErr != nil {
		t.Fatalf("PostgreSQL (PAYNOTIFY_TEST_POSTGRES_URL): %v", pgErr) // never skipped
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	schema := randomName("e2e_")
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(pgURL)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func createDatabase() (name, dbURL string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := pgtest.ServerURL()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	name = randomName("paynotify_test_")
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", "", fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", "", fmt.Errorf("PAYNOTIFY_TEST_POSTGRES_URL is not a URL")
	}
	u.Path = "/" + name
	return name, u.String(), nil
}

func dropDatabase(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.ServerURL())
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// newStateDir returns a fresh sandbox state directory holding the template's keys (not its
// database).
func newStateDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(keyTemplate)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || strings.HasPrefix(e.Name(), "sandbox.db") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(keyTemplate, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
