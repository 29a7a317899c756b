package sqlite

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paynotify/paynotify"
)

// ClaimChecks claims, in one write transaction, up to limit due rows (NextCheckAt at or before
// now): the due refunds first, earliest first, up to paynotify.RefundClaimShare of limit, then
// the due orders, earliest first, then more refunds with what is left of limit. Each claimed row
// moves to now+lease under one new random token, and is returned
// in that order. The transaction holds the write lock from BEGIN (_txlock=immediate), so a
// concurrent claim, of this handle or another process, runs before or after it and never sees
// the rows as due. A limit of 0 or less claims nothing; lease must be positive.
func (db *DB) ClaimChecks(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*paynotify.Check, error) {
	return db.ClaimChecksOf(ctx, now, lease, limit, nil)
}

// ClaimChecksOf is ClaimChecks of the rows of apps only (nil: every app).
func (db *DB) ClaimChecksOf(ctx context.Context, now time.Time, lease time.Duration, limit int, apps []string) ([]*paynotify.Check, error) {
	if lease <= 0 {
		return nil, fmt.Errorf("sqlite: claim checks: lease %s is not positive", lease)
	}
	out := []*paynotify.Check{}
	if limit <= 0 {
		return out, nil
	}
	cl := claim{due: formatTime(now), until: formatTime(now.Add(lease)), token: rand.Text(), apps: apps}
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim checks: %w", err)
	}
	defer rollback(tx)
	for _, part := range paynotify.ClaimParts(limit) {
		if left := min(part.Limit, limit-len(out)); left > 0 {
			if out, err = cl.take(ctx, tx, part.Kind, left, out); err != nil {
				return nil, fmt.Errorf("sqlite: claim checks: %s: %w", part.Kind, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: claim checks: %w", err)
	}
	return out, nil
}

// claim is one ClaimChecks call: rows due at or before due move to until under token.
type claim struct {
	due, until, token string
	apps              []string // the apps whose rows it takes; nil for every app
}

// take claims up to limit due rows of kind's table and appends them to out, earliest first
// (next_check_at, then rowid) across the apps. Each app's earliest are read from the
// (app, next_check_at) index on their own, then merged: a claim costs the same whatever the
// due rows of the apps it does not claim (migration 0009; with next_check_at alone, a claim
// walked past all of them: ~15 ms at 50,000).
func (cl claim) take(ctx context.Context, tx *sql.Tx, kind paynotify.CheckKind, limit int, out []*paynotify.Check) ([]*paynotify.Check, error) {
	table, requestNo := "orders", "''"
	if kind == paynotify.CheckRefund {
		table, requestNo = "refunds", "out_request_no"
	}
	apps := slices.Compact(slices.Sorted(slices.Values(cl.apps)))
	if cl.apps == nil {
		var err error
		if apps, err = scheduledApps(ctx, tx, table); err != nil {
			return nil, err
		}
	}
	// Select first, then update the rows selected: the UPDATE's RETURNING could not give them
	// earliest first. Nothing can come between the statements, inside the write transaction.
	type row struct {
		rowid int64
		due   string
		c     *paynotify.Check
	}
	var due []row
	for _, app := range apps {
		rows, err := tx.QueryContext(ctx, `SELECT rowid, next_check_at, app, out_trade_no, `+requestNo+`, checks FROM `+table+`
			WHERE app = ?1 AND next_check_at IS NOT NULL AND next_check_at <= ?2
			ORDER BY next_check_at, rowid LIMIT ?3`, app, cl.due, limit)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			r := row{c: &paynotify.Check{Kind: kind, Token: cl.token}}
			if err := rows.Scan(&r.rowid, &r.due, &r.c.App, &r.c.OutTradeNo, &r.c.OutRequestNo, &r.c.Checks); err != nil {
				rows.Close()
				return nil, err
			}
			due = append(due, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	if len(due) == 0 {
		return out, nil
	}
	slices.SortFunc(due, func(a, b row) int { return cmp.Or(strings.Compare(a.due, b.due), cmp.Compare(a.rowid, b.rowid)) })
	due = due[:min(len(due), limit)]
	ids := make([]string, len(due))
	for i, r := range due {
		ids[i] = strconv.FormatInt(r.rowid, 10)
		out = append(out, r.c)
	}
	res, err := tx.ExecContext(ctx, `UPDATE `+table+` SET next_check_at = ?, check_token = ?
		WHERE rowid IN (SELECT value FROM json_each(?))`, cl.until, cl.token, "["+strings.Join(ids, ",")+"]")
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n != int64(len(ids)) {
		return nil, fmt.Errorf("claimed %d rows of %d selected", n, len(ids))
	}
	return out, nil
}

// scheduledApps returns the apps that have rows with a next_check_at in table, one index seek
// each (a loose scan of the (app, next_check_at) index), in order.
func scheduledApps(ctx context.Context, tx *sql.Tx, table string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `WITH RECURSIVE a(app) AS (
			SELECT (SELECT min(app) FROM `+table+` WHERE next_check_at IS NOT NULL)
			UNION ALL
			SELECT (SELECT min(app) FROM `+table+` WHERE next_check_at IS NOT NULL AND app > a.app) FROM a WHERE a.app IS NOT NULL
		) SELECT app FROM a WHERE app IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	apps := []string{}
	for rows.Next() {
		var app string
		if err := rows.Scan(&app); err != nil {
			return nil, err
		}
		apps = append(apps, app)
	}
	return apps, rows.Err()
}

// CountDueChecks counts the due orders and refunds by app (paynotify.CheckStore).
func (db *DB) CountDueChecks(ctx context.Context, before time.Time, except []string) (map[string]int64, error) {
	ex, err := json.Marshal(append([]string{}, except...))
	if err != nil {
		return nil, fmt.Errorf("sqlite: count due checks: %w", err)
	}
	out := map[string]int64{}
	for _, table := range []string{"orders", "refunds"} {
		// On the read pool: on the write connection the count held every write for its scan
		// (a reviewer's finding: ~0.8 s at a million due rows).
		rows, err := db.rd.QueryContext(ctx, `SELECT app, count(*) FROM `+table+`
			WHERE next_check_at IS NOT NULL AND next_check_at <= ?1 AND app NOT IN (SELECT value FROM json_each(?2))
			GROUP BY app`, formatTime(before), string(ex))
		if err != nil {
			return nil, fmt.Errorf("sqlite: count due checks: %w", err)
		}
		for rows.Next() {
			var app string
			var n int64
			if err := rows.Scan(&app, &n); err != nil {
				rows.Close()
				return nil, fmt.Errorf("sqlite: count due checks: %w", err)
			}
			out[app] += n
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("sqlite: count due checks: %w", err)
		}
	}
	return out, nil
}

// FinishCheck ends one claim: FinishChecks of one.
func (db *DB) FinishCheck(ctx context.Context, c *paynotify.Check, next *time.Time, counted, attention bool) error {
	return db.FinishChecks(ctx, []paynotify.CheckDone{{Check: c, Next: next, Counted: counted, Attention: attention}})
}

// FinishChecks ends each claim whose token still holds, all in one write transaction: checks grows
// when counted, check_token is cleared, next_check_at is set (NULL for an order no longer
// pending, but for a closed one that still had one: a close of our own, asked about once more),
// and a refund's needs_attention replaced (kept with KeepAttention).
func (db *DB) FinishChecks(ctx context.Context, done []paynotify.CheckDone) error {
	if len(done) == 0 {
		return nil
	}
	for _, d := range done {
		if d.Check == nil || d.Check.Token == "" {
			return fmt.Errorf("sqlite: finish check: no token")
		}
		if d.Check.Kind != paynotify.CheckOrder && d.Check.Kind != paynotify.CheckRefund {
			return fmt.Errorf("sqlite: finish check: unknown kind %q", d.Check.Kind)
		}
	}
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: finish check: %w", err)
	}
	defer rollback(tx)
	for _, d := range done {
		c := d.Check
		inc := 0
		if d.Counted {
			inc = 1
		}
		switch c.Kind {
		case paynotify.CheckOrder:
			_, err = tx.ExecContext(ctx, `UPDATE orders SET checks = checks + ?1, check_token = '',
				next_check_at = CASE WHEN status = 'pending' OR (status = 'closed' AND next_check_at IS NOT NULL) THEN ?2 END
				WHERE app = ?3 AND out_trade_no = ?4 AND check_token = ?5`,
				inc, formatTimePtr(d.Next), c.App, c.OutTradeNo, c.Token)
		case paynotify.CheckRefund:
			att := 0
			if d.Attention {
				att = 1
			}
			_, err = tx.ExecContext(ctx, `UPDATE refunds SET checks = checks + ?1, check_token = '',
				next_check_at = CASE WHEN ?9 AND status <> 'pending' THEN next_check_at ELSE ?2 END,
				needs_attention = CASE WHEN ?8 OR (?9 AND status <> 'pending') THEN needs_attention ELSE ?3 END
				WHERE app = ?4 AND out_trade_no = ?5 AND out_request_no = ?6 AND check_token = ?7`,
				inc, formatTimePtr(d.Next), att, c.App, c.OutTradeNo, c.OutRequestNo, c.Token, d.KeepAttention, d.WasPending)
		}
		if err != nil {
			return fmt.Errorf("sqlite: finish check: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: finish check: %w", err)
	}
	return nil
}
