package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify"
)

// ClaimChecks claims, in one short transaction, up to limit due rows (NextCheckAt at or before
// now): the due refunds first, earliest first, up to paynotify.RefundClaimShare of limit, then
// the due orders, earliest first, then more refunds with what is left of limit. Each claimed row moves to now+lease under one new random token, and is returned
// in that order. Due rows are locked FOR NO KEY UPDATE SKIP LOCKED: a concurrent claim (of this
// or another process) skips the rows this one is taking instead of waiting for them, and one that
// reaches a row after this claim committed finds it no longer due. A limit of 0 or less claims
// nothing; lease must be positive.
func (db *DB) ClaimChecks(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*paynotify.Check, error) {
	return db.ClaimChecksOf(ctx, now, lease, limit, nil)
}

// ClaimChecksOf is ClaimChecks of the rows of apps only (nil: every app).
func (db *DB) ClaimChecksOf(ctx context.Context, now time.Time, lease time.Duration, limit int, apps []string) ([]*paynotify.Check, error) {
	if lease <= 0 {
		return nil, fmt.Errorf("postgres: claim checks: lease %s is not positive", lease)
	}
	if limit <= 0 {
		return []*paynotify.Check{}, nil
	}
	token := rand.Text()
	due, until := tm(now), tm(now.Add(lease))
	var out []*paynotify.Check
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		for _, part := range paynotify.ClaimParts(limit) {
			if left := min(part.Limit, limit-len(out)); left > 0 {
				got, err := claim(ctx, tx, part.Kind, due, until, token, left, apps)
				if err != nil {
					return fmt.Errorf("%s: %w", part.Kind, err)
				}
				out = append(out, got...)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: claim checks: %w", err)
	}
	return out, nil
}

// claim claims up to limit rows of kind's table due at or before due: they move to until under
// token, and are returned earliest first (next_check_at, then seq) across the apps. Each app's
// earliest are read from the (app, next_check_at, seq) index on their own (a LATERAL subquery per
// app), then merged: a claim costs the same whatever the due rows of the apps it does not claim
// (migration 0009; with next_check_at alone, a claim walked past all of them). Each app's rows
// are locked as they are read, SKIP LOCKED; those read but not among the earliest limit stay
// locked, unclaimed, until the claim commits.
func claim(ctx context.Context, tx pgx.Tx, kind paynotify.CheckKind, due, until time.Time, token string, limit int, apps []string) ([]*paynotify.Check, error) {
	table, requestNo := "orders", "''::text"
	if kind == paynotify.CheckRefund {
		table, requestNo = "refunds", "t.out_request_no"
	}
	if apps == nil {
		var err error
		if apps, err = scheduledApps(ctx, tx, table); err != nil {
			return nil, err
		}
	}
	apps = slices.Compact(slices.Sorted(slices.Values(apps)))
	if len(apps) == 0 {
		return nil, nil
	}
	rows, err := tx.Query(ctx, `WITH due AS (
			SELECT d.seq, d.next_check_at FROM unnest($5::text[]) AS a(app)
			CROSS JOIN LATERAL (
				SELECT seq, next_check_at FROM `+table+`
				WHERE app = a.app AND next_check_at IS NOT NULL AND next_check_at <= $1
				ORDER BY next_check_at, seq LIMIT $2
				FOR NO KEY UPDATE SKIP LOCKED
			) d
			ORDER BY d.next_check_at, d.seq LIMIT $2
		), claimed AS (
			UPDATE `+table+` t SET next_check_at = $3, check_token = $4 FROM due WHERE t.seq = due.seq
			RETURNING t.app, t.out_trade_no, `+requestNo+` AS out_request_no, t.checks, due.next_check_at AS due_at, due.seq
		)
		SELECT app, out_trade_no, out_request_no, checks FROM claimed ORDER BY due_at, seq`,
		due, limit, until, token, apps)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.Check, error) {
		c := &paynotify.Check{Kind: kind, Token: token}
		if err := r.Scan(&c.App, &c.OutTradeNo, &c.OutRequestNo, &c.Checks); err != nil {
			return nil, err
		}
		return c, nil
	})
}

// scheduledApps returns the apps that have rows with a next_check_at in table, one index seek
// each (a loose scan of the (app, next_check_at, seq) index), in order.
func scheduledApps(ctx context.Context, tx pgx.Tx, table string) ([]string, error) {
	rows, err := tx.Query(ctx, `WITH RECURSIVE a(app) AS (
			SELECT (SELECT min(app) FROM `+table+` WHERE next_check_at IS NOT NULL)
			UNION ALL
			SELECT (SELECT min(app) FROM `+table+` WHERE next_check_at IS NOT NULL AND app > a.app) FROM a WHERE a.app IS NOT NULL
		) SELECT app FROM a WHERE app IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// CountDueChecks counts the due orders and refunds by app (paynotify.CheckStore).
func (db *DB) CountDueChecks(ctx context.Context, before time.Time, except []string) (map[string]int64, error) {
	out := map[string]int64{}
	for _, table := range []string{"orders", "refunds"} {
		rows, err := db.pool.Query(ctx, `SELECT app, count(*) FROM `+table+`
			WHERE next_check_at IS NOT NULL AND next_check_at <= $1 AND NOT (app = ANY($2))
			GROUP BY app`, tm(before), append([]string{}, except...))
		if err != nil {
			return nil, fmt.Errorf("postgres: count due checks: %w", err)
		}
		for rows.Next() {
			var app string
			var n int64
			if err := rows.Scan(&app, &n); err != nil {
				rows.Close()
				return nil, fmt.Errorf("postgres: count due checks: %w", err)
			}
			out[app] += n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("postgres: count due checks: %w", err)
		}
	}
	return out, nil
}

// FinishCheck ends one claim: FinishChecks of one.
func (db *DB) FinishCheck(ctx context.Context, c *paynotify.Check, next *time.Time, counted, attention bool) error {
	return db.FinishChecks(ctx, []paynotify.CheckDone{{Check: c, Next: next, Counted: counted, Attention: attention}})
}

// FinishChecks ends each claim whose token still holds, all in one transaction (one round trip,
// as a pgx batch): checks grows when counted, check_token is cleared, next_check_at is set (NULL
// for an order no longer pending, but for a closed one that still had one: a close of our own,
// asked about once more), and a refund's needs_attention replaced.
//
// The rows are updated in the order a notification batch locks them (writer.go): the orders by
// (app, out_trade_no), then the refunds by (app, out_trade_no, out_request_no), whatever order
// the checks completed in. A batch paying order A while this transaction holds order B and
// waits for A would otherwise deadlock, and PostgreSQL would roll one of them back.
func (db *DB) FinishChecks(ctx context.Context, done []paynotify.CheckDone) error {
	if len(done) == 0 {
		return nil
	}
	done = slices.Clone(done)
	slices.SortStableFunc(done, func(a, b paynotify.CheckDone) int {
		if a.Check == nil || b.Check == nil {
			return 0 // refused below
		}
		return cmp.Or(cmp.Compare(checkRank(a.Check.Kind), checkRank(b.Check.Kind)),
			strings.Compare(a.Check.App, b.Check.App), strings.Compare(a.Check.OutTradeNo, b.Check.OutTradeNo),
			strings.Compare(a.Check.OutRequestNo, b.Check.OutRequestNo))
	})
	var b pgx.Batch
	for _, d := range done {
		c := d.Check
		if c == nil || c.Token == "" {
			return fmt.Errorf("postgres: finish check: no token")
		}
		inc := 0
		if d.Counted {
			inc = 1
		}
		switch c.Kind {
		case paynotify.CheckOrder:
			b.Queue(`UPDATE orders SET checks = checks + $1, check_token = '',
				next_check_at = CASE WHEN status = 'pending' OR (status = 'closed' AND next_check_at IS NOT NULL) THEN $2::timestamptz END
				WHERE app = $3 AND out_trade_no = $4 AND check_token = $5`,
				inc, tmPtr(d.Next), c.App, c.OutTradeNo, c.Token)
		case paynotify.CheckRefund:
			b.Queue(`UPDATE refunds SET checks = checks + $1, check_token = '',
				next_check_at = CASE WHEN $9 AND status <> 'pending' THEN next_check_at ELSE $2::timestamptz END,
				needs_attention = CASE WHEN $8 OR ($9 AND status <> 'pending') THEN needs_attention ELSE $3 END
				WHERE app = $4 AND out_trade_no = $5 AND out_request_no = $6 AND check_token = $7`,
				inc, tmPtr(d.Next), d.Attention, c.App, c.OutTradeNo, c.OutRequestNo, c.Token, d.KeepAttention, d.WasPending)
		default:
			return fmt.Errorf("postgres: finish check: unknown kind %q", c.Kind)
		}
	}
	err := db.inTx(ctx, func(tx pgx.Tx) error { return tx.SendBatch(ctx, &b).Close() })
	if err != nil {
		return fmt.Errorf("postgres: finish check: %w", err)
	}
	return nil
}

// checkRank puts a batch's tables in the order it locks them: orders, then refunds.
func checkRank(k paynotify.CheckKind) int {
	if k == paynotify.CheckOrder {
		return 0
	}
	return 1
}
