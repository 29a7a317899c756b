package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// openTx begins a transaction on a connection of its own to url, as another session would (an
// operator's psql, another instance), and returns it with the session's backend PID. The
// transaction is rolled back (if still open) and the connection closed when t ends.
func openTx(t *testing.T, url string) (pgx.Tx, uint32) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(t.Context())
	if err != nil {
		conn.Close(context.Background())
		t.Fatal(err)
	}
	t.Cleanup(func() {
		tx.Rollback(context.Background())
		conn.Close(context.Background())
	})
	return tx, conn.PgConn().PID()
}

// waitBlockedBy waits until a session of url waits for a lock that session pid holds. A value on
// done first (the waiter finished without waiting) fails the test, as does 10 s of not waiting;
// what names the waiter.
func waitBlockedBy(t *testing.T, url string, pid uint32, done <-chan error, what string) {
	t.Helper()
	probe, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close(context.Background())
	for deadline := time.Now().Add(10 * time.Second); ; {
		var waiting int
		if err := probe.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))`,
			pid).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("%s finished (%v) without waiting for the held lock", what, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never waited for the held lock", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
