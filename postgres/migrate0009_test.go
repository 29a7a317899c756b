package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/storetest"
)

// TestMigrateClaimsByAppUnderTraffic (reviewer helpers' findings): migrations 0009 to 0012 build
// the (app, next_check_at) indexes and drop the old ones while other instances run. Each file is
// run here as migrateOne runs it (one transaction, lock_timeout 1s), statement by statement:
//   - before a build (the long part) orders and refunds are still readable: a drop first held
//     every read off for the whole build;
//   - after each statement, a running instance's sweep claims (it locks refunds, then orders) and
//     creates a refund (its order, then refunds); the migration waits past deadlock_timeout (1 s)
//     and must still commit, and the writes succeed after it: all four in one transaction, a
//     write holding one table and waiting for the migration's lock on it while the migration
//     waited for the other table, deadlocked or timed out.
func TestMigrateClaimsByAppUnderTraffic(t *testing.T) {
	ctx := t.Context()
	u := pgtest.NewSchema(t)
	db, err := postgres.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.MigrateTo(ctx, 8); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	o := storetest.NewOrder("app1", "T1", now)
	o.NextCheckAt = &now
	if _, _, err := db.CreateOrder(ctx, o); err != nil {
		t.Fatal(err)
	}
	refunds := 0
	writes := func() []func() error {
		refunds++
		no := fmt.Sprintf("REFUND%03d", refunds)
		return []func() error{
			func() error {
				_, err := db.ClaimChecksOf(context.Background(), now.Add(time.Hour), time.Second, 10, []string{"app1"})
				return err
			},
			func() error {
				_, _, err := db.CreateRefund(context.Background(), &paynotify.Refund{App: "app1", OutTradeNo: "T1", OutRequestNo: no,
					Amount: 1, Reason: "r", Status: paynotify.RefundPending, CreatedAt: now, UpdatedAt: now, NextCheckAt: &now})
				return err
			},
		}
	}
	migrator, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer migrator.Close(context.Background())
	reader, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close(context.Background())
	if _, err := reader.Exec(ctx, `SET lock_timeout = '300ms'`); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("migrations/00*.sql")
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, file := range files {
		if base := filepath.Base(file); base < "0009" {
			continue
		}
		ran++
		tx, err := migrator.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '1s'`); err != nil { // migrateOne's
			t.Fatal(err)
		}
		var pending []chan error
		for _, s := range statements(t, file) {
			if strings.HasPrefix(strings.ToUpper(s), "CREATE INDEX") {
				for _, q := range []string{`SELECT count(*) FROM orders WHERE app = 'app1'`, `SELECT count(*) FROM refunds WHERE app = 'app1'`} {
					var n int
					if err := reader.QueryRow(ctx, q).Scan(&n); err != nil {
						t.Errorf("%s, before %q: %q waited on the migration's lock: %v", file, s, q, err)
					}
				}
			}
			if _, err := tx.Exec(ctx, s); err != nil {
				tx.Rollback(context.Background())
				t.Fatalf("%s: %q, with writes of a running instance begun before it: %v", file, s, err)
			}
			for _, w := range writes() {
				done := make(chan error, 1)
				go func() { done <- w() }()
				pending = append(pending, done)
			}
			time.Sleep(1200 * time.Millisecond) // past the writes' deadlock_timeout
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatalf("%s: commit: %v", file, err)
		}
		for _, done := range pending {
			if err := <-done; err != nil {
				t.Errorf("%s: a running instance's write during the migration: %v", file, err)
			}
		}
	}
	if ran == 0 {
		t.Fatal("no migration from 0009 on")
	}
	// The end state: the new indexes, not the old ones.
	var names []string
	rows, err := reader.Query(ctx, `SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname LIKE '%next_check_at' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	if names, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names, " "); got != "orders_app_next_check_at refunds_app_next_check_at" {
		t.Fatalf("indexes %s, want the two (app, next_check_at) ones only", got)
	}
}

// statements returns the SQL statements of a migration file, without its comments.
func statements(t *testing.T, file string) []string {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(src), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line + "\n")
		}
	}
	var out []string
	for _, s := range strings.Split(b.String(), ";") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
