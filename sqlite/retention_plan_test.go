package sqlite

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The prunes find their rows through indexes: the time column's, and for evidence the index of
// the order.anomaly events by the record they name (migration 0005), which the query uses only
// while its expression is the index's, word for word.
func TestPrunePlans(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "paynotify.db"))
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
		{"evidence", pruneEvidence, []string{"INDEX evidence_received_at", "SEARCH ev USING INDEX events_anomaly_evidence (<expr>=?)"}},
		{"rejected", pruneRejected, []string{"INDEX evidence_verdict_received_at"}},
		{"unavailable", pruneUnavailable, []string{"INDEX evidence_reason_received_at"}},
		{"attempts", pruneAttempts, []string{"INDEX webhook_attempts_at"}},
		{"deliveries", pruneDeliveries, []string{"INDEX webhook_deliveries_updated_at"}},
	} {
		rows, err := db.db.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+tt.query, formatTime(time.Now()), 1000, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		if err := rows.Close(); err != nil {
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
