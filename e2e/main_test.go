// Package e2e holds the end-to-end tests of issue 5 item 8: the paynotify server (httpd.Server on
// a real store) and the provider sandbox, each on its own loopback port, talking to each other over
// real HTTP. Orders are created through the merchant API, paid by a buyer in the sandbox, notified
// on the sandbox's (time-scaled) retry schedules with its faults, and the outcomes are read back
// through the API (orders, refunds, events, evidence) and the sandbox's attempt records. Every test
// runs on SQLite and on PostgreSQL, each with its own sandbox state directory and its own store (a
// SQLite file; a schema of this run's PostgreSQL database).
package e2e_test

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	code := pgtest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
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
