// Package pgtest gives tests a fresh PostgreSQL database or schema of their own.
//
// The server is PAYNOTIFY_TEST_POSTGRES_URL, or postgres://postgres@127.0.0.1:5432/postgres when
// unset (the project's machines run PostgreSQL 15 there with trust authentication). A server that
// cannot be reached fails the test: PostgreSQL tests never skip.
//
// NewSchema is the cheap one: one database per test binary, made on first use, and a schema per
// test in it. A package that uses it calls Main from its TestMain so that the database is dropped
// at the end. NewDatabase makes a whole database for a test that needs one (migrations racing on
// an empty database, a server process).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the server used when PAYNOTIFY_TEST_POSTGRES_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// ServerURL returns the URL of the test server's maintenance database.
func ServerURL() string {
	if u := os.Getenv("PAYNOTIFY_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return DefaultURL
}

func randomName(prefix string) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b[:])
}

// create makes a database named paynotify_test_<random> and returns its name and URL.
func create() (name, dbURL string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := ServerURL()
	u, err := url.Parse(admin)
	if err != nil {
		return "", "", fmt.Errorf("pgtest: PAYNOTIFY_TEST_POSTGRES_URL is not a URL")
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", "", fmt.Errorf("pgtest: connect to PostgreSQL (set PAYNOTIFY_TEST_POSTGRES_URL): %w", err)
	}
	defer conn.Close(ctx)
	name = randomName("paynotify_test_")
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", "", fmt.Errorf("pgtest: create database: %w", err)
	}
	u.Path = "/" + name
	return name, u.String(), nil
}

// drop drops a database made by create, ending its sessions.
func drop(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", name, err)
	}
	return nil
}

// NewDatabase creates a database of its own for the test and returns its URL; it is dropped when
// the test ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	name, u, err := create()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := drop(name); err != nil {
			tb.Error(err)
		}
	})
	return u
}

// The database of this test binary, for NewSchema.
var (
	runOnce sync.Once
	runName string
	runURL  string
	runErr  error
)

// NewSchema creates a schema of its own for the test in this binary's database (made on first
// use) and returns a URL whose connections work in it (search_path). Main drops the database.
func NewSchema(tb testing.TB) string {
	tb.Helper()
	runOnce.Do(func() { runName, runURL, runErr = create() })
	if runErr != nil {
		tb.Fatal(runErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, runURL)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	schema := randomName("s_")
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("pgtest: create schema: %v", err)
	}
	u, _ := url.Parse(runURL)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Main runs the tests and drops this binary's database, if NewSchema made one; a failure to drop
// it fails the run. Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if runName != "" {
		if err := drop(runName); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}
