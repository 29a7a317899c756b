package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify"
)

var _ paynotify.OverviewStore = (*DB)(nil)

// PaidSince counts, per app, the order.paid events at or after since (a range of events_timestamp)
// and sums their orders' amounts (primary-key lookups).
func (db *DB) PaidSince(ctx context.Context, since time.Time) ([]paynotify.AppPaid, error) {
	rows, err := db.pool.Query(ctx, `SELECT e.app, count(*), coalesce(sum(o.amount), 0)::bigint FROM events e
		JOIN orders o ON o.app = e.app AND o.out_trade_no = e.out_trade_no
		WHERE e.timestamp >= $1 AND e.type = $2 GROUP BY e.app ORDER BY e.app`, tm(since), string(paynotify.EventOrderPaid))
	if err != nil {
		return nil, fmt.Errorf("postgres: paid since: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (paynotify.AppPaid, error) {
		var p paynotify.AppPaid
		var amount int64
		err := r.Scan(&p.App, &p.Count, &amount)
		p.Amount = paynotify.Amount(amount)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: paid since: %w", err)
	}
	return out, nil
}

// CountEvidence counts the requests whose evidence records were received in [since, until), by
// verdict (a range of evidence_received_at): a record and its repeats (Change.Repeat), which are
// counted at the record's first arrival.
func (db *DB) CountEvidence(ctx context.Context, since, until time.Time) (map[paynotify.Verdict]int, error) {
	rows, err := db.pool.Query(ctx, `SELECT verdict, (count(*) + sum(repeats))::bigint FROM evidence
		WHERE received_at >= $1 AND received_at < $2 GROUP BY verdict`, tm(since), tm(until))
	if err != nil {
		return nil, fmt.Errorf("postgres: count evidence: %w", err)
	}
	out := map[paynotify.Verdict]int{}
	_, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		var v string
		var n int
		err := r.Scan(&v, &n)
		out[paynotify.Verdict(v)] = n
		return struct{}{}, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: count evidence: %w", err)
	}
	return out, nil
}
