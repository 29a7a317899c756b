package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify"
)

// orderColumns are the columns of an order. The last two, next_check_at and checks, belong to
// the reconciliation: CreateOrder writes them, Commit never does (see Commit).
const orderColumns = `app, out_trade_no, channel, status, amount, refunded_amount, currency, subject, body,
	payer_openid, provider_trade_no, version, created_at, paid_at, expires_at, pay, next_check_at, checks`

func scanOrder(row pgx.Row) (*paynotify.Order, error) {
	var (
		o                   paynotify.Order
		status              string
		amount, refundedAmt int64
		paid, next          *time.Time
		pay                 []byte
	)
	if err := row.Scan(&o.App, &o.OutTradeNo, &o.Channel, &status, &amount, &refundedAmt, &o.Currency, &o.Subject,
		&o.Body, &o.PayerOpenID, &o.ProviderTradeNo, &o.Version, &o.CreatedAt, &paid, &o.ExpiresAt, &pay, &next, &o.Checks); err != nil {
		return nil, err
	}
	o.Status = paynotify.OrderStatus(status)
	o.Amount, o.RefundedAmount = paynotify.Amount(amount), paynotify.Amount(refundedAmt)
	o.CreatedAt, o.ExpiresAt = o.CreatedAt.UTC(), o.ExpiresAt.UTC()
	o.PaidAt, o.NextCheckAt = utcPtr(paid), utcPtr(next)
	if pay != nil {
		o.Pay = pay
	}
	return &o, nil
}

// orderArgs are the values of orderColumns, in order.
func orderArgs(o *paynotify.Order) []any {
	var pay []byte
	if o.Pay != nil {
		pay = []byte(o.Pay)
	}
	return []any{o.App, o.OutTradeNo, o.Channel, string(o.Status), int64(o.Amount), int64(o.RefundedAmount),
		o.Currency, o.Subject, o.Body, o.PayerOpenID, o.ProviderTradeNo, o.Version, tm(o.CreatedAt),
		tmPtr(o.PaidAt), tm(o.ExpiresAt), pay, tmPtr(o.NextCheckAt), o.Checks}
}

// CreateOrder inserts o with Version 1 (and its NextCheckAt and Checks) unless (App, OutTradeNo)
// exists; it returns the stored order (an existing one unchanged) and whether it was created. o
// itself is not modified.
func (db *DB) CreateOrder(ctx context.Context, o *paynotify.Order) (*paynotify.Order, bool, error) {
	n := *o
	n.Version = 1
	wr := &write{create: &n}
	if err := db.w.Do(ctx, wr); err != nil {
		return nil, false, fmt.Errorf("postgres: create order: %w", err)
	}
	return wr.stored, wr.created, nil
}

const (
	insertOrderSQL = `INSERT INTO orders (` + orderColumns + `)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
		ON CONFLICT (app, out_trade_no) DO NOTHING`
	selectOrderSQL = `SELECT ` + orderColumns + ` FROM orders WHERE app = $1 AND out_trade_no = $2`
)

// createOrder is CreateOrder on tx (o has Version 1).
func createOrder(ctx context.Context, tx pgx.Tx, o *paynotify.Order) (*paynotify.Order, bool, error) {
	tag, err := tx.Exec(ctx, insertOrderSQL, orderArgs(o)...)
	if err != nil {
		return nil, false, err
	}
	stored, err := scanOrder(tx.QueryRow(ctx, selectOrderSQL, o.App, o.OutTradeNo))
	return stored, tag.RowsAffected() == 1, err
}

// GetOrder returns the order, or an *paynotify.Error with code ENOTFOUND.
func (db *DB) GetOrder(ctx context.Context, app, outTradeNo string) (*paynotify.Order, error) {
	if !storableKey(app) || !storableKey(outTradeNo) {
		return nil, notFound("Order not found.")
	}
	o, err := scanOrder(db.pool.QueryRow(ctx, selectOrderSQL, app, outTradeNo))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("Order not found.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: get order: %w", err)
	}
	return o, nil
}

// ListOrders returns the orders matching filter (Since: created at or after it), newest
// (CreatedAt) first.
func (db *DB) ListOrders(ctx context.Context, filter paynotify.OrderFilter) ([]*paynotify.Order, error) {
	var c conds
	if filter.App != "" {
		c.add("app = %s", filter.App)
	}
	if filter.Status != "" {
		c.add("status = %s", string(filter.Status))
	}
	if filter.Channel != "" {
		c.add("channel = %s", filter.Channel)
	}
	if filter.TradeNo != "" {
		// Two indexed lookups: out_trade_no through orders_out_trade_no, provider_trade_no
		// through orders_provider_trade_no (migration 0007).
		p := c.arg(filter.TradeNo)
		c.terms = append(c.terms, "(out_trade_no = "+p+" OR (provider_trade_no = "+p+" AND provider_trade_no <> ''))")
	}
	if !filter.Since.IsZero() {
		c.add("created_at >= %s", tm(filter.Since))
	}
	if !filter.Until.IsZero() {
		c.add("created_at < %s", tm(filter.Until))
	}
	lim := c.arg(limit(filter.Limit))
	off := c.arg(max(filter.Offset, 0))
	rows, err := db.pool.Query(ctx, `SELECT `+orderColumns+` FROM orders`+c.where()+`
		ORDER BY created_at DESC, seq DESC LIMIT `+lim+` OFFSET `+off, c.args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list orders: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.Order, error) { return scanOrder(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list orders: %w", err)
	}
	return out, nil
}

// refundWriteColumns are the columns a refund is inserted with (the values of refundArgs):
// needs_attention is left to its default, false, and written only by FinishCheck.
const refundWriteColumns = `app, out_trade_no, out_request_no, amount, reason, status, provider_refund_no, created_at,
	updated_at, next_check_at`

// refundColumns are the columns scanRefund reads.
const refundColumns = refundWriteColumns + `, needs_attention`

func scanRefund(row pgx.Row) (*paynotify.Refund, error) {
	var (
		r      paynotify.Refund
		amount int64
		status string
		next   *time.Time
	)
	if err := row.Scan(&r.App, &r.OutTradeNo, &r.OutRequestNo, &amount, &r.Reason, &status, &r.ProviderRefundNo,
		&r.CreatedAt, &r.UpdatedAt, &next, &r.NeedsAttention); err != nil {
		return nil, err
	}
	r.Amount = paynotify.Amount(amount)
	r.Status = paynotify.RefundStatus(status)
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	r.NextCheckAt = utcPtr(next)
	return &r, nil
}

// refundArgs are the values of refundWriteColumns, in order.
func refundArgs(r *paynotify.Refund) []any {
	return []any{r.App, r.OutTradeNo, r.OutRequestNo, int64(r.Amount), r.Reason, string(r.Status), r.ProviderRefundNo,
		tm(r.CreatedAt), tm(r.UpdatedAt), tmPtr(r.NextCheckAt)}
}

// CreateRefund records r (with its NextCheckAt; NeedsAttention is stored false whatever r says)
// unless (App, OutTradeNo, OutRequestNo) exists; it returns the stored refund (an existing one
// unchanged) and whether it was created. The order must exist: ENOTFOUND otherwise.
func (db *DB) CreateRefund(ctx context.Context, r *paynotify.Refund) (*paynotify.Refund, bool, error) {
	var (
		stored  *paynotify.Refund
		created bool
	)
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		// The order row is locked: concurrent refunds of one order are checked one at a time.
		var amount, refunded int64
		err := tx.QueryRow(ctx, `SELECT amount, refunded_amount FROM orders WHERE app = $1 AND out_trade_no = $2 FOR UPDATE`,
			r.App, r.OutTradeNo).Scan(&amount, &refunded)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("Order not found.")
		} else if err != nil {
			return err
		}
		var nonFailed, pending int64
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT COALESCE(SUM(amount) FILTER (WHERE status <> 'failed'), 0),
				COALESCE(SUM(amount) FILTER (WHERE status = 'pending'), 0), COALESCE(bool_or(out_request_no = $3), false)
			FROM refunds WHERE app = $1 AND out_trade_no = $2`, r.App, r.OutTradeNo, r.OutRequestNo).Scan(&nonFailed, &pending, &exists); err != nil {
			return err
		}
		if !exists {
			if err := paynotify.RefundBound(amount, refunded, nonFailed, pending, int64(r.Amount)); err != nil {
				return err
			}
		}
		tag, err := tx.Exec(ctx, `INSERT INTO refunds (`+refundWriteColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (app, out_trade_no, out_request_no) DO NOTHING`, refundArgs(r)...)
		if err != nil {
			return err
		}
		created = tag.RowsAffected() == 1
		stored, err = scanRefund(tx.QueryRow(ctx, `SELECT `+refundColumns+` FROM refunds
			WHERE app = $1 AND out_trade_no = $2 AND out_request_no = $3`, r.App, r.OutTradeNo, r.OutRequestNo))
		return err
	})
	var pe *paynotify.Error
	if errors.As(err, &pe) {
		return nil, false, err
	} else if err != nil {
		return nil, false, fmt.Errorf("postgres: create refund: %w", err)
	}
	return stored, created, nil
}

// orderExists returns nil if the order exists, ENOTFOUND if not.
func orderExists(ctx context.Context, tx pgx.Tx, app, outTradeNo string) error {
	var one int
	err := tx.QueryRow(ctx, orderExistsSQL, app, outTradeNo).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return notFound("Order not found.")
	}
	return err
}

// ListRefunds returns the refunds of an order in the order they were recorded (none for an
// unknown order).
func (db *DB) ListRefunds(ctx context.Context, app, outTradeNo string) ([]*paynotify.Refund, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+refundColumns+` FROM refunds WHERE app = $1 AND out_trade_no = $2
		ORDER BY seq`, app, outTradeNo)
	if err != nil {
		return nil, fmt.Errorf("postgres: list refunds: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.Refund, error) { return scanRefund(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list refunds: %w", err)
	}
	return out, nil
}

// ConfirmRefundAmount sets the amount of the succeeded refund (App, OutTradeNo, OutRequestNo of
// r) to amount; a refund that is not succeeded is left alone (nil). Nothing else changes: not its
// UpdatedAt, nor the order's refunded total. ENOTFOUND when the refund does not exist.
func (db *DB) ConfirmRefundAmount(ctx context.Context, r *paynotify.Refund, amount paynotify.Amount) error {
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE refunds SET amount = $1
			WHERE app = $2 AND out_trade_no = $3 AND out_request_no = $4 AND status = 'succeeded'`,
			int64(amount), r.App, r.OutTradeNo, r.OutRequestNo)
		if err != nil || tag.RowsAffected() > 0 {
			return err
		}
		var one int
		err = tx.QueryRow(ctx, `SELECT 1 FROM refunds WHERE app = $1 AND out_trade_no = $2 AND out_request_no = $3`,
			r.App, r.OutTradeNo, r.OutRequestNo).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("Refund not found.")
		}
		return err // nil: not succeeded, left alone
	})
	var pe *paynotify.Error
	if errors.As(err, &pe) {
		return err
	} else if err != nil {
		return fmt.Errorf("postgres: confirm refund amount: %w", err)
	}
	return nil
}

// ListAttentionRefunds returns the refunds created at or after since that need attention, oldest
// first: the pending ones, then the others still checked, each through its partial index.
func (db *DB) ListAttentionRefunds(ctx context.Context, since time.Time) ([]*paynotify.Refund, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+refundColumns+` FROM (
			SELECT * FROM refunds WHERE status = 'pending' AND created_at >= $1 AND needs_attention
			UNION ALL
			SELECT * FROM refunds WHERE next_check_at IS NOT NULL AND status <> 'pending' AND created_at >= $1 AND needs_attention) r
		ORDER BY created_at, seq`, tm(since))
	if err != nil {
		return nil, fmt.Errorf("postgres: list attention refunds: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.Refund, error) { return scanRefund(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list attention refunds: %w", err)
	}
	return out, nil
}

// ListPendingRefunds returns the pending refunds created at or after since, of app ("" for every
// app), oldest first.
func (db *DB) ListPendingRefunds(ctx context.Context, app string, since time.Time) ([]*paynotify.Refund, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+refundColumns+` FROM refunds
		WHERE status = 'pending' AND created_at >= $1 AND ($2 = '' OR app = $2)
		ORDER BY created_at, seq`, tm(since), app)
	if err != nil {
		return nil, fmt.Errorf("postgres: list pending refunds: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.Refund, error) { return scanRefund(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list pending refunds: %w", err)
	}
	return out, nil
}

// errConflict carries ErrVersionConflict out of the transaction function (which rolls back).
var errConflict = paynotify.ErrVersionConflict

// Commit applies c in one transaction: the order compare-and-set on c.PrevVersion, the refund
// upsert, the anomaly (once per key), the evidence, and the events in order (then the anomaly's
// event, if the anomaly is new). It returns paynotify.ErrVersionConflict, writing nothing, when
// the stored order's version is not c.PrevVersion, and ENOTFOUND when the order (of c.Order or
// c.Refund) does not exist. A serialization failure or deadlock reruns the whole transaction,
// whose compare-and-set then gives the answer.
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
		return false, fmt.Errorf("postgres: commit: order version %d does not follow %d", c.Order.Version, c.PrevVersion)
	}
	if err := c.CheckRepeat(); err != nil {
		return false, err
	}
	wr := &write{change: c, anomalyAt: tm(db.now())}
	err = db.w.Do(ctx, wr)
	var pe *paynotify.Error
	switch {
	case err == nil:
		return wr.anomalyNew, nil
	case errors.Is(err, errConflict), errors.Is(err, paynotify.ErrRepeatMissed), errors.As(err, &pe):
		return false, err
	default:
		return false, fmt.Errorf("postgres: commit: %w", err)
	}
}

// CommitOrder implements paynotify.OrderCommitter: the batch reads the orders of its
// CommitOrders in one statement before it writes anything, calls each build once on the
// writer's goroutine, and writes the changes as its Commits (the compare-and-set on the version
// read: two of one order in one batch, or another instance's write in between, make the later
// one lose, ErrVersionConflict, and its caller decides again). ev is not used: the evidence is
// encoded with the batch.
func (db *DB) CommitOrder(ctx context.Context, app, outTradeNo string, _ *paynotify.Evidence,
	build func(o *paynotify.Order) (*paynotify.Change, error)) (anomalyNew bool, err error) {
	wr := &write{decide: &decision{app: app, outTradeNo: outTradeNo, build: build}, anomalyAt: tm(db.now())}
	err = db.w.Do(ctx, wr)
	var pe *paynotify.Error
	switch {
	case err == nil:
		return wr.anomalyNew, nil
	case err == wr.decide.err: // build's own error, or the refusal of its change: as it is
		return false, err
	case errors.Is(err, errConflict), errors.Is(err, paynotify.ErrRepeatMissed), errors.As(err, &pe):
		return false, err
	default:
		return false, fmt.Errorf("postgres: commit: %w", err)
	}
}

// The statements of a Commit, shared by commit (one change) and commitPipelined (a batch).
const (
	// An order's state: what a Commit moves (its terms are fixed at CreateOrder; updateOrderArgs).
	updateOrderSQL = `UPDATE orders SET status = $1, refunded_amount = $2, provider_trade_no = $3, version = $4,
		paid_at = $5, next_check_at = CASE WHEN $1 = 'pending' THEN next_check_at WHEN $1 = 'closed' THEN $9::timestamptz END
		WHERE app = $6 AND out_trade_no = $7 AND version = $8`
	orderExistsSQL = `SELECT 1 FROM orders WHERE app = $1 AND out_trade_no = $2`
	// A change conditioned on its order's version (Change.OrderAt): the row is locked as a
	// compare-and-set locks it (FOR NO KEY UPDATE, the lock an UPDATE of its state takes), so that
	// another transaction's compare-and-set is waited for and the version read after it commits,
	// and a batch that then updates the order itself holds the lock it needs already. FOR SHARE
	// let two batches hold the row together and deadlock upgrading it (a reviewer helper's
	// finding); the batches lock rows in one order (byLockKey).
	orderAtSQL = `SELECT 1 FROM orders WHERE app = $1 AND out_trade_no = $2 AND version = $3 FOR NO KEY UPDATE`
	// Every SET expression reads the row as it was: refunds.status is the old status.
	upsertRefundSQL = `INSERT INTO refunds (` + refundWriteColumns + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (app, out_trade_no, out_request_no) DO UPDATE SET
			status = CASE WHEN refunds.status = 'succeeded' THEN refunds.status ELSE excluded.status END,
			provider_refund_no = CASE WHEN excluded.provider_refund_no = '' THEN refunds.provider_refund_no ELSE excluded.provider_refund_no END,
			next_check_at = CASE WHEN refunds.status = 'succeeded' AND NOT $11::boolean THEN refunds.next_check_at ELSE excluded.next_check_at END,
			needs_attention = CASE WHEN $11::boolean OR (refunds.status = 'pending' AND excluded.status <> 'pending') THEN false ELSE refunds.needs_attention END,
			updated_at = excluded.updated_at`
	insertAnomalySQL = `INSERT INTO anomalies (app, out_trade_no, key, reason, event_id, created_at)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app, out_trade_no, key) DO NOTHING`
)

// orderAt reports whether c is conditioned on its anomaly's order's version (Change.OrderAt).
func orderAt(c *paynotify.Change) bool { return c.Order == nil && c.Anomaly != nil && c.OrderAt != 0 }

// updateOrderArgs are the values of updateOrderSQL for c.
func updateOrderArgs(c *paynotify.Change) []any {
	o := c.Order
	return []any{string(o.Status), int64(o.RefundedAmount), o.ProviderTradeNo, o.Version, tmPtr(o.PaidAt),
		o.App, o.OutTradeNo, c.PrevVersion, tmPtr(paynotify.ClosedCheckAt(o))}
}

// anomalyArgs are the values of insertAnomalySQL for a, recorded at at.
func anomalyArgs(a *paynotify.Anomaly, at time.Time) []any {
	eventID := ""
	if a.Event != nil {
		eventID = a.Event.ID
	}
	return []any{a.App, a.OutTradeNo, a.Key, a.Reason, eventID, at}
}

// commit does c's row work on tx and hands its events to b. Its errors returned before it wrote
// anything are clean (see writer.go).
func commit(ctx context.Context, tx pgx.Tx, c *paynotify.Change, anomalyAt time.Time, anomalyNew *bool, b *batch) error {
	if a := c.Anomaly; orderAt(c) {
		var one int
		err := tx.QueryRow(ctx, orderAtSQL, a.App, a.OutTradeNo, c.OrderAt).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			if err := orderExists(ctx, tx, a.App, a.OutTradeNo); err != nil {
				return clean(err)
			}
			return clean(errConflict)
		} else if err != nil {
			return fmt.Errorf("order version: %w", err)
		}
	}
	if o := c.Order; o != nil {
		tag, err := tx.Exec(ctx, updateOrderSQL, updateOrderArgs(c)...)
		if err != nil {
			return fmt.Errorf("update order: %w", err)
		}
		if tag.RowsAffected() == 0 {
			if err := orderExists(ctx, tx, o.App, o.OutTradeNo); err != nil {
				return clean(err)
			}
			return clean(errConflict)
		}
	}

	if r := c.Refund; r != nil {
		if err := orderExists(ctx, tx, r.App, r.OutTradeNo); err != nil {
			if c.Order == nil {
				return clean(err)
			}
			return err
		}
		// Every SET expression reads the row as it was: refunds.status is the old status.
		if _, err := tx.Exec(ctx, upsertRefundSQL, append(refundArgs(r), c.RefundConfirmed)...); err != nil {
			return fmt.Errorf("upsert refund: %w", err)
		}
	}

	events := c.Events
	if a := c.Anomaly; a != nil {
		tag, err := tx.Exec(ctx, insertAnomalySQL, anomalyArgs(a, anomalyAt)...)
		if err != nil {
			return fmt.Errorf("insert anomaly: %w", err)
		}
		if *anomalyNew = tag.RowsAffected() == 1; *anomalyNew && a.Event != nil {
			events = append(events[:len(events):len(events)], a.Event)
		}
	}

	if e := c.Evidence; e != nil && c.RepeatVersion != 0 {
		tag, err := tx.Exec(ctx, repeatEvidenceIfSQL, repeatIfArgs(c)...)
		if err != nil {
			return fmt.Errorf("repeat evidence: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return clean(paynotify.ErrRepeatMissed) // nothing written (a repeat writes nothing else)
		}
	} else if e != nil {
		if err := insertEvidence(ctx, tx, evidenceSQL(c), e); err != nil {
			return err
		}
	}

	b.events = append(b.events, events...)
	return nil
}

// nullString passes JSON as text (so that the json column keeps it byte for byte), nil as NULL.
func nullString(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

// storableKey reports whether s can be a key of a stored row: a PostgreSQL text value holds
// neither NUL nor bytes that are not UTF-8 (the API refuses both; StorableText replaces them),
// so a key with them names no row, and asking for it would be an error of the database's
// instead of "not found".
func storableKey(s string) bool { return paynotify.StorableText(s) == s }
