package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/paynotify/paynotify"
)

var _ paynotify.OverviewStore = (*DB)(nil)

// PaidSince counts, per app, the order.paid events at or after since (a range of events_timestamp)
// and sums their orders' amounts (primary-key lookups).
func (db *DB) PaidSince(ctx context.Context, since time.Time) ([]paynotify.AppPaid, error) {
	rows, err := db.rd.QueryContext(ctx, `SELECT e.app, count(*), coalesce(sum(o.amount), 0) FROM events e
		JOIN orders o ON o.app = e.app AND o.out_trade_no = e.out_trade_no
		WHERE e.timestamp >= ? AND e.type = ? GROUP BY e.app ORDER BY e.app`, formatTime(since), string(paynotify.EventOrderPaid))
	if err != nil {
		return nil, fmt.Errorf("sqlite: paid since: %w", err)
	}
	defer rows.Close()
	out := []paynotify.AppPaid{}
	for rows.Next() {
		var p paynotify.AppPaid
		var amount int64
		if err := rows.Scan(&p.App, &p.Count, &amount); err != nil {
			return nil, fmt.Errorf("sqlite: paid since: %w", err)
		}
		p.Amount = paynotify.Amount(amount)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: paid since: %w", err)
	}
	return out, nil
}

// CountEvidence counts the requests whose evidence records were received in [since, until), by
// verdict (a range of evidence_received_at): a record and its repeats (Change.Repeat), which are
// counted at the record's first arrival.
func (db *DB) CountEvidence(ctx context.Context, since, until time.Time) (map[paynotify.Verdict]int, error) {
	rows, err := db.rd.QueryContext(ctx, `SELECT verdict, count(*) + sum(repeats) FROM evidence
		WHERE received_at >= ? AND received_at < ? GROUP BY verdict`, formatTime(since), formatTime(until))
	if err != nil {
		return nil, fmt.Errorf("sqlite: count evidence: %w", err)
	}
	defer rows.Close()
	out := map[paynotify.Verdict]int{}
	for rows.Next() {
		var v string
		var n int
		if err := rows.Scan(&v, &n); err != nil {
			return nil, fmt.Errorf("sqlite: count evidence: %w", err)
		}
		out[paynotify.Verdict(v)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: count evidence: %w", err)
	}
	return out, nil
}
