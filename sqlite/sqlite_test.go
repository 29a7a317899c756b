package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sqlite"
	"github.com/paynotify/paynotify/storetest"
)

var dump = flag.Bool("dump", false, "keep the test databases and print their paths")

// tempPath returns a database path in a directory that survives the test with -dump.
func tempPath(tb testing.TB) string {
	tb.Helper()
	if !*dump {
		return filepath.Join(tb.TempDir(), "paynotify.db")
	}
	dir, err := os.MkdirTemp("", "paynotify-sqlite-")
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(dir, "paynotify.db")
	tb.Logf("database: %s", p)
	return p
}

// MustOpen opens and migrates a new database, closed when tb ends.
func MustOpen(tb testing.TB, path string) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := db.Migrate(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	return db
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.DB { return suiteDB{MustOpen(t, tempPath(t))} })
}

// suiteDB is the store as the conformance suite needs it.
type suiteDB struct{ *sqlite.DB }

// ExecSQL runs query on the store's own connection.
func (db suiteDB) ExecSQL(ctx context.Context, query string) error {
	_, err := db.SQL().ExecContext(ctx, query)
	return err
}

// OpenAnother opens the same file again: its own *sql.DB and connection, as another process.
func (db suiteDB) OpenAnother(t *testing.T) paynotify.Store { return MustOpen(t, db.Path()) }

func TestOpen(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		path := tempPath(t)
		db := MustOpen(t, path)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("file mode %o, want 600", perm)
		}
		if db.Path() != path {
			t.Errorf("Path = %q, want %q", db.Path(), path)
		}
	})

	t.Run("OKDurable", func(t *testing.T) {
		// A commit is on disk when Commit returns: synchronous=FULL (2) in WAL mode. Nothing else
		// in the suite could notice a missing fsync (a killed process keeps what the OS has).
		t.Parallel()
		db := MustOpen(t, tempPath(t))
		for pragma, want := range map[string]string{"synchronous": "2", "journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "5000"} {
			var got string
			if err := db.SQL().QueryRow("PRAGMA " + pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
			}
		}
	})

	t.Run("ErrNoDir", func(t *testing.T) {
		t.Parallel()
		if _, err := sqlite.Open(filepath.Join(t.TempDir(), "missing", "x.db")); err == nil {
			t.Fatal("Open in a missing directory succeeded")
		}
	})

	t.Run("ErrPath", func(t *testing.T) {
		t.Parallel()
		for _, p := range []string{"", ":memory:", "x.db?mode=ro", "file:x.db"} {
			if _, err := sqlite.Open(p); err == nil {
				t.Errorf("Open(%q) succeeded", p)
			}
		}
	})
}

func TestMigrate(t *testing.T) {
	storetest.RunMigrations(t, func(t *testing.T) storetest.Migrator {
		db, err := sqlite.Open(tempPath(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return suiteDB{db}
	})

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		db, err := sqlite.Open(tempPath(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		n, err := db.PendingMigrations(t.Context())
		if err != nil || n < 1 {
			t.Fatalf("PendingMigrations on a new file = %d, %v; want ≥ 1", n, err)
		}
		for range 2 { // idempotent
			if err := db.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
			if n, err := db.PendingMigrations(t.Context()); err != nil || n != 0 {
				t.Fatalf("PendingMigrations after Migrate = %d, %v; want 0", n, err)
			}
		}
	})

	t.Run("OKUpgrade", func(t *testing.T) {
		// Rows written under schema version 1 get the defaults of the columns added since.
		t.Parallel()
		db, err := sqlite.Open(tempPath(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.MigrateTo(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		for _, q := range storetest.V1Rows {
			if _, err := db.SQL().ExecContext(t.Context(), q); err != nil {
				t.Fatalf("insert version 1 row: %v", err)
			}
		}
		if n, err := db.PendingMigrations(t.Context()); err != nil || n < 1 {
			t.Fatalf("PendingMigrations at version 1 = %d, %v; want ≥ 1", n, err)
		}
		if err := db.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		storetest.CheckV1Rows(t, t.Context(), db)
	})

	t.Run("OKConcurrentProcesses", func(t *testing.T) {
		// Several handles on one file (as several processes would be) migrating at once.
		t.Parallel()
		path := tempPath(t)
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				db, err := sqlite.Open(path)
				if err != nil {
					t.Error(err)
					return
				}
				defer db.Close()
				if err := db.Migrate(t.Context()); err != nil {
					t.Errorf("Migrate: %v", err)
				}
			}()
		}
		wg.Wait()
		db := MustOpen(t, path)
		if n, err := db.PendingMigrations(t.Context()); err != nil || n != 0 {
			t.Fatalf("PendingMigrations = %d, %v; want 0", n, err)
		}
	})

	t.Run("OKWaitsForAnotherWriter", func(t *testing.T) {
		// Another process holds the write lock longer than the busy timeout (5 s), as a migrate
		// building an index on a long table does: Migrate waits for it (it failed at once with
		// SQLITE_BUSY: a reviewer helper's finding).
		t.Parallel()
		path := tempPath(t)
		db, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		other, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		conn, err := other.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
		released := make(chan struct{})
		go func() {
			defer close(released)
			time.Sleep(6500 * time.Millisecond)
			if _, err := conn.ExecContext(context.Background(), "COMMIT"); err != nil {
				t.Error(err)
			}
		}()
		start := time.Now()
		if err := db.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate beside a writer of 6.5 s: %v", err)
		}
		<-released
		if time.Since(start) < 6*time.Second {
			t.Fatalf("Migrate returned after %v, while the other writer held the lock", time.Since(start))
		}
		if n, err := db.PendingMigrations(t.Context()); err != nil || n != 0 {
			t.Fatalf("PendingMigrations = %d, %v; want 0", n, err)
		}
	})
}

// TestDurability commits, closes, reopens the file and finds everything.
func TestDurability(t *testing.T) {
	t.Parallel()
	path := tempPath(t)
	ctx := t.Context()
	db, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	o, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", "T1", storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	c := storetest.PaidChange(o, "ev1", "nt1", storetest.T0.Add(time.Minute))
	if _, err := db.Commit(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = MustOpen(t, path)
	got, err := db.GetOrder(ctx, "app1", "T1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || got.Status != paynotify.StatusPaid || got.PaidAt == nil || !bytes.Equal(got.Pay, o.Pay) {
		t.Errorf("order after reopen: %+v", got)
	}
	evs, err := db.ListEvents(ctx, paynotify.EventFilter{})
	if err != nil || len(evs) != 1 || evs[0].ID != "ev1" || !bytes.Equal(evs[0].Data, c.Events[0].Data) {
		t.Errorf("events after reopen: %v, %v", evs, err)
	}
	nts, err := db.ListEvidence(ctx, paynotify.EvidenceFilter{})
	if err != nil || len(nts) != 1 || !bytes.Equal(nts[0].Body, c.Evidence.Body) {
		t.Errorf("evidence after reopen: %v, %v", nts, err)
	}
}

// BenchmarkCommit measures one durable single-order commit (order CAS, one event, evidence).
func BenchmarkCommit(b *testing.B) {
	db := MustOpen(b, tempPath(b))
	ctx := b.Context()
	orders := make([]*paynotify.Order, b.N)
	for i := range orders {
		o, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", fmt.Sprint("B", i), storetest.T0))
		if err != nil {
			b.Fatal(err)
		}
		orders[i] = o
	}
	b.ResetTimer()
	for i, o := range orders {
		if _, err := db.Commit(ctx, storetest.PaidChange(o, fmt.Sprint("ev", i), fmt.Sprint("nt", i), storetest.T0)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

// TestFailedBatchRefunds: two refunds of an order's whole amount in one batch whose COMMIT fails.
// The second is refused only because of the first, which is not kept: both are answered with the
// batch's failure, none with "would exceed", and a retry of either succeeds.
func TestFailedBatchRefunds(t *testing.T) {
	db := MustOpen(t, tempPath(t))
	ctx := t.Context()
	o := storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "R1", storetest.T0))
	refund := func(no string) *paynotify.Refund {
		return &paynotify.Refund{App: "app1", OutTradeNo: "R1", OutRequestNo: no, Amount: o.Amount,
			Status: paynotify.RefundPending, CreatedAt: storetest.T0, UpdatedAt: storetest.T0}
	}
	injected := errors.New("injected commit failure")
	create := func(no string) func() error {
		return func() error { _, _, err := db.CreateRefund(ctx, refund(no)); return err }
	}
	errs := storetest.HeldBatch(t, db, injected, create("RF1"), create("RF2"))
	for i, err := range errs {
		if !errors.Is(err, injected) {
			t.Errorf("refund %d: %v, want the injected failure", i, err)
		}
	}
	if rs, err := db.ListRefunds(ctx, "app1", "R1"); err != nil || len(rs) != 0 {
		t.Fatalf("refunds after the failed batch: %v %v", rs, err)
	}
	if _, created, err := db.CreateRefund(ctx, refund("RF2")); err != nil || !created {
		t.Fatalf("retry: created %v, %v", created, err)
	}
}
