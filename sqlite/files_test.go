package sqlite_test

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sqlite"
	"github.com/paynotify/paynotify/storetest"
)

// TestFilesChangedUnderTheStore: a database's -wal or -shm removed, or the database file replaced,
// under an open store (a reviewer helper's finding: SQLite went on committing into the files it
// had open, whose names no longer led to them; the commits, acknowledged payments among them,
// were gone at the next restart, and /readyz said ok). The next commit fails instead, so does
// every one after it and Ping; and when the database file is still the one opened, the commits
// the vanished -wal held are copied into it, so that the file on disk (what a crash leaves) has
// them.
func TestFilesChangedUnderTheStore(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string)
		kept   bool // the earlier commit is in the database file on disk
	}{
		{"WALRemoved", func(t *testing.T, path string) { mustRemove(t, path+"-wal") }, true},
		{"SHMRemoved", func(t *testing.T, path string) { mustRemove(t, path+"-shm") }, true},
		{"DatabaseReplaced", func(t *testing.T, path string) {
			if err := os.WriteFile(path+".new", nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			path := tempPath(t)
			db := MustOpen(t, path)
			storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "BEFORE", storetest.T0))
			if err := db.Ping(ctx); err != nil {
				t.Fatalf("Ping before the change: %v", err)
			}
			tc.change(t, path)
			for i := range 2 {
				_, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", "AFTER", storetest.T0.Add(time.Minute)))
				if err == nil || !strings.Contains(err.Error(), "changed under the running server") || paynotify.ErrorCode(err) != paynotify.EINTERNAL {
					t.Fatalf("commit %d after the change: %v, want it refused", i, err)
				}
			}
			if err := db.Ping(ctx); err == nil || !strings.Contains(err.Error(), "restart") {
				t.Fatalf("Ping after the change: %v, want the store reported broken", err)
			}
			if !tc.kept {
				return
			}
			// The database file as a crash would leave it (the removed -wal has no name: only its
			// copy in the file counts), opened elsewhere.
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			crashed := filepath.Join(t.TempDir(), "crashed.db")
			if err := os.WriteFile(crashed, b, 0o600); err != nil {
				t.Fatal(err)
			}
			other, err := sqlite.Open(crashed)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if _, err := other.GetOrder(ctx, "app1", "BEFORE"); err != nil {
				t.Fatalf("the commit before the change, in the database file: %v", err)
			}
			if _, err := other.GetOrder(ctx, "app1", "AFTER"); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
				t.Fatalf("the refused commit: %v, want not found", err)
			}
		})
	}
}

// TestFilesChangedUnderTheStore_Symlink: opened through a symbolic link, the store watches the
// files SQLite keeps beside the link's target (a reviewer helper's finding: it watched names
// beside the link, which never exist, and the guard was off).
func TestFilesChangedUnderTheStore_Symlink(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	real := filepath.Join(dir, "real.db")
	link := filepath.Join(dir, "link.db")
	if err := os.WriteFile(real, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	db := MustOpen(t, link)
	storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "BEFORE", storetest.T0))
	if _, err := os.Stat(real + "-wal"); err != nil {
		t.Fatalf("no -wal beside the link's target: %v", err)
	}
	mustRemove(t, real+"-wal")
	if _, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", "AFTER", storetest.T0)); err == nil || !strings.Contains(err.Error(), "changed under the running server") {
		t.Fatalf("commit after the target's -wal was removed: %v, want it refused", err)
	}
}

func mustRemove(t *testing.T, name string) {
	t.Helper()
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// TestPingReportsAFailingWriter: while another process holds the write lock past the busy
// timeout, batches fail and Ping (GET /readyz) says so; once a batch commits, it is ready again
// (a reviewer helper's finding: /readyz said ok throughout).
func TestPingReportsAFailingWriter(t *testing.T) {
	ctx := t.Context()
	path := tempPath(t)
	db := MustOpen(t, path)
	other, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", "LOCKED", storetest.T0)); err == nil {
		t.Fatal("a commit while another process holds the write lock succeeded")
	}
	if err := db.Ping(ctx); err == nil || !strings.Contains(err.Error(), "last write batch failed") {
		t.Fatalf("Ping while the writer fails: %v, want it reported", err)
	}
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "FREED", storetest.T0))
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("Ping once a batch committed again: %v", err)
	}
}

// TestJournalSizeLimit: the write connection cuts a WAL that grew back to 64 MiB at its next
// reset (journal_size_limit), instead of keeping its peak size on disk.
func TestJournalSizeLimit(t *testing.T) {
	db := MustOpen(t, tempPath(t))
	var limit int64
	if err := db.SQL().QueryRowContext(t.Context(), `PRAGMA journal_size_limit`).Scan(&limit); err != nil {
		t.Fatal(err)
	}
	if limit != 64<<20 {
		t.Fatalf("journal_size_limit = %d, want %d", limit, 64<<20)
	}
}
