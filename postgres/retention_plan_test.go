package postgres

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify/internal/pgtest"
)

// The prunes find their rows through indexes: the time column's, and for evidence the index of
// the order.anomaly events by the record they name (migration 0006), which the query can use only
// while its expression is the index's. On empty tables the planner would rather scan: sequential
// scans are turned off for the question.
func TestPrunePlans(t *testing.T) {
	db, err := Open(t.Context(), pgtest.NewSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, query string
		want        []string
	}{
		{"evidence", pruneEvidence, []string{"evidence_received_at", "events_anomaly_evidence"}},
		{"attempts", pruneAttempts, []string{"webhook_attempts_at"}},
		{"deliveries", pruneDeliveries, []string{"webhook_deliveries_updated_at"}},
	} {
		var plan []string
		err := pgx.BeginFunc(t.Context(), db.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(t.Context(), `SET LOCAL enable_seqscan = off`); err != nil {
				return err
			}
			rows, err := tx.Query(t.Context(), "EXPLAIN "+tt.query, time.Now(), 1000)
			if err != nil {
				return err
			}
			plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(plan, "\n")
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: plan does not use %s:\n%s", tt.name, w, got)
			}
		}
	}
}
