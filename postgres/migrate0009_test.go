package postgres_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/postgres"
)

// TestMigrate0009KeepsTablesReadable (a reviewer helper's finding): migration 0009 runs in one
// transaction (migrateOne). A DROP INDEX takes an ACCESS EXCLUSIVE lock on its table until the
// commit: run before the new index was built, it held off every read of orders (GET /v1/orders,
// a notification's read of its order, the running instances' claims) for as long as the build,
// not only the writes. The file's statements run here as migrateOne runs them, in one
// transaction; before each CREATE INDEX, another session must still read orders and refunds.
func TestMigrate0009KeepsTablesReadable(t *testing.T) {
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
	src, err := os.ReadFile("migrations/0009_claims_by_app.sql")
	if err != nil {
		t.Fatal(err)
	}
	var stmts []string
	var b strings.Builder
	for _, line := range strings.Split(string(src), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line + "\n")
		}
	}
	for _, s := range strings.Split(b.String(), ";") {
		if s = strings.TrimSpace(s); s != "" {
			stmts = append(stmts, s)
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
	tx, err := migrator.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	for _, s := range stmts {
		if strings.HasPrefix(strings.ToUpper(s), "CREATE INDEX") {
			// The index build is the long part: the tables must stay readable meanwhile.
			for _, q := range []string{
				`SELECT count(*) FROM orders WHERE app = 'app1' AND out_trade_no = 'T1'`,
				`SELECT count(*) FROM refunds WHERE app = 'app1' AND out_trade_no = 'T1'`,
			} {
				var n int
				if err := reader.QueryRow(ctx, q).Scan(&n); err != nil {
					t.Errorf("before %q: %q waited on the migration's lock: %v", s, q, err)
				}
			}
		}
		if _, err := tx.Exec(ctx, s); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
	}
}
