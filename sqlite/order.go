package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/paynotify/paynotify"
)

// orderColumns are the columns of an order. The last two, next_check_at and checks, belong to
// the reconciliation: CreateOrder writes them, Commit never does (see Commit).
const orderColumns = `app, out_trade_no, channel, status, amount, refunded_amount, currency, subject, body,
	payer_openid, provider_trade_no, version, created_at, paid_at, expires_at, pay, next_check_at, checks`

func scanOrder(s scanner) (*paynotify.Order, error) {
	var (
		o                   paynotify.Order
		created, expires    string
		paid, next          sql.NullString
		pay                 []byte
		amount, refundedAmt int64
	)
	if err := s.Scan(&o.App, &o.OutTradeNo, &o.Channel, &o.Status, &amount, &refundedAmt, &o.Currency, &o.Subject,
		&o.Body, &o.PayerOpenID, &o.ProviderTradeNo, &o.Version, &created, &paid, &expires, &pay, &next, &o.Checks); err != nil {
		return nil, err
	}
	o.Amount, o.RefundedAmount = paynotify.Amount(amount), paynotify.Amount(refundedAmt)
	var err error
	if o.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if o.ExpiresAt, err = parseTime(expires); err != nil {
		return nil, err
	}
	if o.PaidAt, err = parseTimeNull(paid); err != nil {
		return nil, err
	}
	if o.NextCheckAt, err = parseTimeNull(next); err != nil {
		return nil, err
	}
	if pay != nil {
		o.Pay = pay
	}
	return &o, nil
}

// orderArgs are the values of orderColumns, in order.
func orderArgs(o *paynotify.Order) []any {
	return []any{o.App, o.OutTradeNo, o.Channel, string(o.Status), int64(o.Amount), int64(o.RefundedAmount),
		o.Currency, o.Subject, o.Body, o.PayerOpenID, o.ProviderTradeNo, o.Version, formatTime(o.CreatedAt),
		formatTimePtr(o.PaidAt), formatTime(o.ExpiresAt), nullBytes(o.Pay), formatTimePtr(o.NextCheckAt), o.Checks}
}

// CreateOrder inserts o with Version 1 (and its NextCheckAt and Checks) unless (App, OutTradeNo)
// exists; it returns the stored order (an existing one unchanged) and whether it was created. o
// itself is not modified.
func (db *DB) CreateOrder(ctx context.Context, o *paynotify.Order) (*paynotify.Order, bool, error) {
	n := *o
	n.Version = 1
	var (
		stored  *paynotify.Order
		created int64
	)
	err := db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, st *statements) error {
		res, err := tx.StmtContext(ctx, st.insertOrder).ExecContext(ctx, orderArgs(&n)...)
		if err != nil {
			return fmt.Errorf("sqlite: create order: %w", err)
		}
		if created, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("sqlite: create order: %w", err)
		}
		if stored, err = scanOrder(tx.StmtContext(ctx, st.selectOrder).QueryRowContext(ctx, o.App, o.OutTradeNo)); err != nil {
			return fmt.Errorf("sqlite: create order: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return stored, created == 1, nil
}

// GetOrder returns the order, or an *paynotify.Error with code ENOTFOUND.
func (db *DB) GetOrder(ctx context.Context, app, outTradeNo string) (*paynotify.Order, error) {
	st, err := db.statements(ctx)
	if err != nil {
		return nil, err
	}
	o, err := scanOrder(st.getOrder.QueryRowContext(ctx, app, outTradeNo))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Order not found.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get order: %w", err)
	}
	return o, nil
}

// ListOrders returns the orders matching filter (Since: created at or after it), newest
// (CreatedAt) first.
func (db *DB) ListOrders(ctx context.Context, filter paynotify.OrderFilter) ([]*paynotify.Order, error) {
	var c conds
	if filter.App != "" {
		c.add("app = ?", filter.App)
	}
	if filter.Status != "" {
		c.add("status = ?", string(filter.Status))
	}
	if filter.Channel != "" {
		c.add("channel = ?", filter.Channel)
	}
	if filter.TradeNo != "" {
		// Two indexed lookups: the primary key's out_trade_no (after app) is not a prefix, so
		// the out_trade_no side uses orders_out_trade_no (migration 0007).
		c.terms = append(c.terms, "(out_trade_no = ? OR (provider_trade_no = ? AND provider_trade_no <> ''))")
		c.args = append(c.args, filter.TradeNo, filter.TradeNo)
	}
	if !filter.Since.IsZero() {
		c.add("created_at >= ?", formatTime(filter.Since))
	}
	if !filter.Until.IsZero() {
		c.add("created_at < ?", formatTime(filter.Until))
	}
	rows, err := db.rd.QueryContext(ctx, `SELECT `+orderColumns+` FROM orders`+c.where()+`
		ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?`, append(c.args, limit(filter.Limit), max(filter.Offset, 0))...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list orders: %w", err)
	}
	defer rows.Close()
	out := []*paynotify.Order{}
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list orders: %w", err)
		}
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list orders: %w", err)
	}
	return out, nil
}

// refundWriteColumns are the columns a refund is inserted with (the values of refundArgs):
// needs_attention is left to its default, false, and written only by FinishCheck.
const refundWriteColumns = `app, out_trade_no, out_request_no, amount, reason, status, provider_refund_no, created_at,
	updated_at, next_check_at`

// refundColumns are the columns scanRefund reads.
const refundColumns = refundWriteColumns + `, needs_attention`

func scanRefund(s scanner) (*paynotify.Refund, error) {
	var (
		r                paynotify.Refund
		amount           int64
		created, updated string
		next             sql.NullString
	)
	if err := s.Scan(&r.App, &r.OutTradeNo, &r.OutRequestNo, &amount, &r.Reason, &r.Status, &r.ProviderRefundNo,
		&created, &updated, &next, &r.NeedsAttention); err != nil {
		return nil, err
	}
	r.Amount = paynotify.Amount(amount)
	var err error
	if r.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if r.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	if r.NextCheckAt, err = parseTimeNull(next); err != nil {
		return nil, err
	}
	return &r, nil
}

// refundArgs are the values of refundWriteColumns, in order.
func refundArgs(r *paynotify.Refund) []any {
	return []any{r.App, r.OutTradeNo, r.OutRequestNo, int64(r.Amount), r.Reason, string(r.Status), r.ProviderRefundNo,
		formatTime(r.CreatedAt), formatTime(r.UpdatedAt), formatTimePtr(r.NextCheckAt)}
}

// CreateRefund records r (with its NextCheckAt; NeedsAttention is stored false whatever r says)
// unless (App, OutTradeNo, OutRequestNo) exists; it returns the stored refund (an existing one
// unchanged) and whether it was created. The order must exist: ENOTFOUND otherwise.
func (db *DB) CreateRefund(ctx context.Context, r *paynotify.Refund) (*paynotify.Refund, bool, error) {
	var (
		stored  *paynotify.Refund
		created int64
	)
	err := db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, _ *statements) error {
		var err error
		stored, created, err = createRefund(ctx, tx, r)
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return stored, created == 1, nil
}

// createRefund is CreateRefund on tx.
func createRefund(ctx context.Context, tx *sql.Tx, r *paynotify.Refund) (*paynotify.Refund, int64, error) {
	// The write lock is held from BEGIN (_txlock=immediate): the check and the insert are atomic.
	var amount, refunded, nonFailed, pending int64
	var exists int
	err := tx.QueryRowContext(ctx, `SELECT o.amount, o.refunded_amount,
			COALESCE((SELECT SUM(amount) FROM refunds WHERE app = o.app AND out_trade_no = o.out_trade_no AND status <> 'failed'), 0),
			COALESCE((SELECT SUM(amount) FROM refunds WHERE app = o.app AND out_trade_no = o.out_trade_no AND status = 'pending'), 0),
			(SELECT COUNT(*) FROM refunds WHERE app = o.app AND out_trade_no = o.out_trade_no AND out_request_no = ?)
		FROM orders o WHERE o.app = ? AND o.out_trade_no = ?`, r.OutRequestNo, r.App, r.OutTradeNo).Scan(&amount, &refunded, &nonFailed, &pending, &exists)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, clean(notFound("Order not found."))
	} else if err != nil {
		return nil, 0, fmt.Errorf("sqlite: create refund: %w", err)
	}
	if exists == 0 {
		if err := paynotify.RefundBound(amount, refunded, nonFailed, pending, int64(r.Amount)); err != nil {
			return nil, 0, clean(err)
		}
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO refunds (`+refundWriteColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (app, out_trade_no, out_request_no) DO NOTHING`, refundArgs(r)...)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: create refund: %w", err)
	}
	created, err := res.RowsAffected()
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: create refund: %w", err)
	}
	stored, err := scanRefund(tx.QueryRowContext(ctx, `SELECT `+refundColumns+` FROM refunds
		WHERE app = ? AND out_trade_no = ? AND out_request_no = ?`, r.App, r.OutTradeNo, r.OutRequestNo))
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: create refund: %w", err)
	}
	return stored, created, nil
}

// orderExists returns nil if the order exists, ENOTFOUND if not.
func orderExists(ctx context.Context, tx *sql.Tx, st *statements, app, outTradeNo string) error {
	var one int
	err := tx.StmtContext(ctx, st.orderExists).QueryRowContext(ctx, app, outTradeNo).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return notFound("Order not found.")
	} else if err != nil {
		return fmt.Errorf("sqlite: order exists: %w", err)
	}
	return nil
}

// ListRefunds returns the refunds of an order in the order they were recorded (none for an
// unknown order).
func (db *DB) ListRefunds(ctx context.Context, app, outTradeNo string) ([]*paynotify.Refund, error) {
	rows, err := db.rd.QueryContext(ctx, `SELECT `+refundColumns+` FROM refunds WHERE app = ? AND out_trade_no = ?
		ORDER BY rowid`, app, outTradeNo)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list refunds: %w", err)
	}
	defer rows.Close()
	out := []*paynotify.Refund{}
	for rows.Next() {
		r, err := scanRefund(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list refunds: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list refunds: %w", err)
	}
	return out, nil
}

// ConfirmRefundAmount sets the amount of the succeeded refund (App, OutTradeNo, OutRequestNo of
// r) to amount; a refund that is not succeeded is left alone (nil). Nothing else changes: not its
// UpdatedAt, nor the order's refunded total. ENOTFOUND when the refund does not exist.
func (db *DB) ConfirmRefundAmount(ctx context.Context, r *paynotify.Refund, amount paynotify.Amount) error {
	return db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, _ *statements) error {
		return confirmRefundAmount(ctx, tx, r, amount)
	})
}

// confirmRefundAmount is ConfirmRefundAmount on tx.
func confirmRefundAmount(ctx context.Context, tx *sql.Tx, r *paynotify.Refund, amount paynotify.Amount) error {
	res, err := tx.ExecContext(ctx, `UPDATE refunds SET amount = ?
		WHERE app = ? AND out_trade_no = ? AND out_request_no = ? AND status = 'succeeded'`,
		int64(amount), r.App, r.OutTradeNo, r.OutRequestNo)
	if err != nil {
		return fmt.Errorf("sqlite: confirm refund amount: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: confirm refund amount: %w", err)
	} else if n == 0 {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM refunds WHERE app = ? AND out_trade_no = ? AND out_request_no = ?`,
			r.App, r.OutTradeNo, r.OutRequestNo).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return clean(notFound("Refund not found.")) // the UPDATE matched no row: nothing written
		} else if err != nil {
			return fmt.Errorf("sqlite: confirm refund amount: %w", err)
		}
		return nil // not succeeded: left alone
	}
	return nil
}

// ListAttentionRefunds returns the refunds created at or after since that need attention, oldest
// first: the pending ones (refunds_pending_created_at), then the others still checked
// (refunds_app_next_check_at), each through its partial index.
func (db *DB) ListAttentionRefunds(ctx context.Context, since time.Time) ([]*paynotify.Refund, error) {
	rows, err := db.rd.QueryContext(ctx, `SELECT `+refundColumns+` FROM (
			SELECT rowid AS r, * FROM refunds WHERE status = 'pending' AND created_at >= ?1 AND needs_attention = 1
			UNION ALL
			SELECT rowid AS r, * FROM refunds WHERE next_check_at IS NOT NULL AND status <> 'pending' AND created_at >= ?1 AND needs_attention = 1)
		ORDER BY created_at, r`, formatTime(since))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list attention refunds: %w", err)
	}
	defer rows.Close()
	out := []*paynotify.Refund{}
	for rows.Next() {
		r, err := scanRefund(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list attention refunds: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list attention refunds: %w", err)
	}
	return out, nil
}

// ListPendingRefunds returns the pending refunds created at or after since, of app ("" for every
// app), oldest first.
func (db *DB) ListPendingRefunds(ctx context.Context, app string, since time.Time) ([]*paynotify.Refund, error) {
	rows, err := db.rd.QueryContext(ctx, `SELECT `+refundColumns+` FROM refunds
		WHERE status = 'pending' AND created_at >= ?1 AND (?2 = '' OR app = ?2)
		ORDER BY created_at, rowid`, formatTime(since), app)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list pending refunds: %w", err)
	}
	defer rows.Close()
	out := []*paynotify.Refund{}
	for rows.Next() {
		r, err := scanRefund(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list pending refunds: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list pending refunds: %w", err)
	}
	return out, nil
}

// Commit applies c in one write transaction: the order compare-and-set on c.PrevVersion, the
// refund upsert, the anomaly (once per key), the events in order (then the anomaly's event, if
// the anomaly is new) and the evidence. It returns paynotify.ErrVersionConflict, writing nothing,
// when the stored order's version is not c.PrevVersion, and ENOTFOUND when the order (of
// c.Order or c.Refund) does not exist.
//
// Of c.Order only the state is written (Status, RefundedAmount, ProviderTradeNo, Version, PaidAt):
// the order's terms are fixed at CreateOrder. Its NextCheckAt and Checks belong to the
// reconciliation, except that an order whose new status is not pending gets c.Order's when it
// is closed (paynotify.ClosedCheckAt: a close of our own, asked about once more) and loses its
// NextCheckAt otherwise.
// The claim token is left alone: a FinishCheck of a claim taken before still holds, and leaves a
// non-pending order unscheduled. An existing refund has its Status (unless succeeded),
// ProviderRefundNo (unless c.Refund's is empty), NextCheckAt (unless succeeded, but for
// c.RefundConfirmed) and UpdatedAt replaced; a new one is inserted with its NextCheckAt
// (NeedsAttention false) and no amount check.
func (db *DB) Commit(ctx context.Context, c *paynotify.Change) (anomalyNew bool, err error) {
	if c.Order != nil && c.Order.Version <= c.PrevVersion {
		return false, fmt.Errorf("sqlite: commit: order version %d does not follow %d", c.Order.Version, c.PrevVersion)
	}
	if err := c.CheckRepeat(); err != nil {
		return false, err
	}
	at := formatTime(db.now())
	var headers any
	if c.RepeatVersion == 0 { // a conditioned repeat never inserts its evidence
		if headers, err = evidenceHeaders(c.Evidence); err != nil {
			return false, fmt.Errorf("sqlite: commit: %w", err)
		}
	}
	err = db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, st *statements) error {
		anomalyNew = false
		var err error
		anomalyNew, err = commit(ctx, tx, st, c, at, headers)
		return err
	})
	if err != nil {
		return false, err
	}
	return anomalyNew, nil
}

// CommitOrder implements paynotify.OrderCommitter: the order is read on the write connection,
// inside the batch's transaction, so that nothing can change it between the read and the
// write, and build decides on the writer's goroutine.
func (db *DB) CommitOrder(ctx context.Context, app, outTradeNo string, ev *paynotify.Evidence,
	build func(o *paynotify.Order) (*paynotify.Change, error)) (anomalyNew bool, err error) {
	at := formatTime(db.now())
	var headers any
	if ev != nil {
		if headers, err = evidenceHeaders(ev); err != nil {
			return false, fmt.Errorf("sqlite: commit: %w", err)
		}
	}
	// The decision, made once: a batch that runs again (commitBatch) writes the change decided
	// the first time, as PostgreSQL's rerun does.
	var (
		decided   bool
		decidedIn *sql.Tx // the transaction whose state the decision read
		c         *paynotify.Change
		h         any
		refused   error // the decision's own error, its answer in every run
	)
	err = db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, st *statements) error {
		anomalyNew = false
		if decided && tx != decidedIn {
			// Decided in a transaction SQLite ended (commitBatch): the order it read may have
			// been a write of that transaction, and another writer's may now be at the same
			// version, so the change could pass its compare-and-set over it (a reviewer
			// helper's finding). The caller decides again, as after any lost compare-and-set.
			return clean(paynotify.ErrVersionConflict)
		}
		if refused != nil {
			return clean(refused)
		}
		if !decided {
			o, err := scanOrder(tx.StmtContext(ctx, st.selectOrder).QueryRowContext(ctx, app, outTradeNo))
			if errors.Is(err, sql.ErrNoRows) {
				o = nil
			} else if err != nil {
				return fmt.Errorf("sqlite: commit: read order: %w", err)
			}
			// A build that panics fails its write after nothing was written, uncleanly: it
			// is answered with the panic and never runs again (commitBatch).
			decided, decidedIn = true, tx
			if c, err = build(o); err != nil || c == nil {
				c, refused = nil, err
				return clean(err)
			}
			if c.Order != nil && c.Order.Version <= c.PrevVersion {
				c, refused = nil, fmt.Errorf("sqlite: commit: order version %d does not follow %d", c.Order.Version, c.PrevVersion)
				return clean(refused)
			}
			if err := c.CheckRepeat(); err != nil {
				c, refused = nil, err
				return clean(err)
			}
			h = headers
			if c.Evidence != ev {
				if h, err = evidenceHeaders(c.Evidence); err != nil {
					c, refused = nil, fmt.Errorf("sqlite: commit: %w", err)
					return clean(refused)
				}
			}
		}
		if c == nil {
			return nil
		}
		var err error
		anomalyNew, err = commit(ctx, tx, st, c, at, h)
		return err
	})
	if err != nil {
		return false, err
	}
	return anomalyNew, nil
}

// commit is Commit on tx; at stamps a new anomaly, headers are evidenceHeaders(c.Evidence).
func commit(ctx context.Context, tx *sql.Tx, st *statements, c *paynotify.Change, at string, headers any) (anomalyNew bool, err error) {
	if a := c.Anomaly; c.Order == nil && a != nil && c.OrderAt != 0 {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM orders WHERE app = ? AND out_trade_no = ? AND version = ?`,
			a.App, a.OutTradeNo, c.OrderAt).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			if err := orderExists(ctx, tx, st, a.App, a.OutTradeNo); err != nil {
				return false, cleanNotFound(err)
			}
			return false, clean(paynotify.ErrVersionConflict)
		} else if err != nil {
			return false, fmt.Errorf("sqlite: commit: order version: %w", err)
		}
	}
	if o := c.Order; o != nil {
		res, err := tx.StmtContext(ctx, st.updateOrder).ExecContext(ctx, string(o.Status), int64(o.RefundedAmount),
			o.ProviderTradeNo, o.Version, formatTimePtr(o.PaidAt), o.App, o.OutTradeNo, c.PrevVersion, formatTimePtr(paynotify.ClosedCheckAt(o)))
		if err != nil {
			return false, fmt.Errorf("sqlite: commit: update order: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return false, fmt.Errorf("sqlite: commit: update order: %w", err)
		} else if n == 0 {
			if err := orderExists(ctx, tx, st, o.App, o.OutTradeNo); err != nil {
				return false, cleanNotFound(err)
			}
			return false, clean(paynotify.ErrVersionConflict)
		}
	}

	if r := c.Refund; r != nil {
		if err := orderExists(ctx, tx, st, r.App, r.OutTradeNo); err != nil {
			if c.Order == nil { // nothing written yet
				err = cleanNotFound(err)
			}
			return false, err
		}
		// Every SET expression reads the row as it was: refunds.status is the old status.
		if _, err := tx.ExecContext(ctx, `INSERT INTO refunds (`+refundWriteColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (app, out_trade_no, out_request_no) DO UPDATE SET
				status = CASE WHEN refunds.status = 'succeeded' THEN refunds.status ELSE excluded.status END,
				provider_refund_no = CASE WHEN excluded.provider_refund_no = '' THEN refunds.provider_refund_no ELSE excluded.provider_refund_no END,
				next_check_at = CASE WHEN refunds.status = 'succeeded' AND NOT ? THEN refunds.next_check_at ELSE excluded.next_check_at END,
				needs_attention = CASE WHEN ?11 OR (refunds.status = 'pending' AND excluded.status <> 'pending') THEN 0 ELSE refunds.needs_attention END,
				updated_at = excluded.updated_at`,
			append(refundArgs(r), c.RefundConfirmed)...); err != nil {
			return false, fmt.Errorf("sqlite: commit: upsert refund: %w", err)
		}
	}

	events := c.Events
	if a := c.Anomaly; a != nil {
		eventID := ""
		if a.Event != nil {
			eventID = a.Event.ID
		}
		res, err := tx.StmtContext(ctx, st.insertAnomaly).ExecContext(ctx,
			a.App, a.OutTradeNo, a.Key, a.Reason, eventID, at)
		if err != nil {
			return false, fmt.Errorf("sqlite: commit: insert anomaly: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return false, fmt.Errorf("sqlite: commit: insert anomaly: %w", err)
		}
		if anomalyNew = n == 1; anomalyNew && a.Event != nil {
			events = append(events[:len(events):len(events)], a.Event)
		}
	}

	for _, e := range events {
		if _, err := tx.StmtContext(ctx, st.insertEvent).ExecContext(ctx,
			e.ID, string(e.Type), e.App, e.OutTradeNo, e.Version, formatTime(e.Timestamp), nullText(e.Data)); err != nil {
			return false, fmt.Errorf("sqlite: commit: insert event: %w", err)
		}
	}

	if e := c.Evidence; e != nil {
		if c.Repeat {
			var res sql.Result
			var err error
			if c.RepeatVersion != 0 {
				res, err = tx.StmtContext(ctx, st.repeatEvidenceIf).ExecContext(ctx, formatTime(e.ReceivedAt), e.ID,
					e.App, e.OutTradeNo, c.RepeatVersion)
			} else {
				res, err = tx.StmtContext(ctx, st.repeatEvidence).ExecContext(ctx, formatTime(e.ReceivedAt), e.ID)
			}
			if err != nil {
				return false, fmt.Errorf("sqlite: commit: repeat evidence: %w", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return false, fmt.Errorf("sqlite: commit: repeat evidence: %w", err)
			} else if n == 1 {
				return anomalyNew, nil
			}
			if c.RepeatVersion != 0 {
				// The order moved, or the record is gone. A repeat writes nothing else
				// (CheckRepeat): nothing written.
				return false, clean(paynotify.ErrRepeatMissed)
			}
			// The record is gone (pruned): this one takes its place.
		}
		if err := insertEvidence(ctx, tx, st, e, headers); err != nil {
			return false, fmt.Errorf("sqlite: commit: %w", err)
		}
	}

	return anomalyNew, nil
}
