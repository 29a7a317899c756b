package sqlite

import (
	"context"
	"fmt"

	"github.com/paynotify/paynotify"
)

// CountStatuses counts the orders per status (over the index orders_status_created_at, without
// reading the rows) and the pending webhook deliveries (over the partial index of the pending
// ones), on a read connection.
func (db *DB) CountStatuses(ctx context.Context) (*paynotify.StatusCounts, error) {
	out := &paynotify.StatusCounts{Orders: map[paynotify.OrderStatus]int64{}}
	rows, err := db.rd.QueryContext(ctx, `SELECT status, count(*) FROM orders GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: count orders: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var status string
		var n int64
		if err := rows.Scan(&status, &n); err != nil {
			return nil, fmt.Errorf("sqlite: count orders: %w", err)
		}
		out.Orders[paynotify.OrderStatus(status)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: count orders: %w", err)
	}
	if err := db.rd.QueryRowContext(ctx, `SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'`).Scan(&out.PendingDeliveries); err != nil {
		return nil, fmt.Errorf("sqlite: count pending deliveries: %w", err)
	}
	// The two branches of ListAttentionRefunds, each through its partial index, not a scan.
	if err := db.rd.QueryRowContext(ctx, `SELECT
			(SELECT count(*) FROM refunds WHERE status = 'pending' AND needs_attention = 1) +
			(SELECT count(*) FROM refunds WHERE next_check_at IS NOT NULL AND status <> 'pending' AND needs_attention = 1)`).Scan(&out.RefundsNeedingAttention); err != nil {
		return nil, fmt.Errorf("sqlite: count refunds needing attention: %w", err)
	}
	return out, nil
}
