package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/groupcommit"
)

// Group commit (docs/storage.md, "Group commit").
//
// Commit, InsertEvidence and CreateOrder are ops of the store's groupcommit.Writer, which runs
// the ops that arrived while its previous transaction was committing in one transaction, with
// few round trips whatever its size:
//   - the order creations (pipelined, in the order of their keys) and the ops written as
//     functions (one after the other) run first;
//   - then the Commits, pipelined: every order compare-and-set in one round trip, then for those
//     that won (and those without an order change) the refund upserts, anomalies and evidence in
//     a second one, with the existence checks that tell a lost compare-and-set from a missing
//     order;
//   - then the batch takes the event log's advisory lock once, inserts every event, and
//     commits: seq order stays commit order for readers paging with After, as with one lock per
//     commit, and several instances still take turns. The lock and the events are queued behind
//     the second round trip's row work (PostgreSQL runs them after it), an anomaly's event on
//     the condition that the anomaly's row names it (new in this transaction);
//   - an op that fails before writing anything (a lost compare-and-set, ENOTFOUND, EINVALID)
//     fails alone and the batch goes on; any other error aborts PostgreSQL's transaction, so the
//     batch is rolled back and every op runs again in a transaction of its own, where only the
//     failing one fails. No savepoints: subtransactions that write overflow PostgreSQL's
//     per-backend cache beyond 64 and slow every other session's snapshots.
//
// BEGIN travels with the batch's lock timeout. Every caller is answered after the COMMIT of the
// transaction holding its op returned.

// maxBatch bounds the ops of one transaction.
const maxBatch = 256

// writers is how many batches are in flight at once, each on a connection of its own. Batches
// that append events take turns at the event log's lock, from their events to their COMMIT, but
// the rest of one batch (its begin, its reads, its row work) runs while the other commits:
// measured faster than one at a time (docs/performance.md, "PostgreSQL").
const writers = 2

// batch is what ops hand to the end of their transaction.
type batch struct {
	events []*paynotify.Event
}

// write is one op: a Commit of change or a CreateOrder of create (each pipelined with the
// others of its kind), or fn.
type write struct {
	change    *paynotify.Change
	anomalyAt time.Time
	// anomalyNew is the Commit's result: whether change.Anomaly was new.
	anomalyNew bool

	create *paynotify.Order
	// stored and created are the CreateOrder's result.
	stored  *paynotify.Order
	created bool

	fn func(ctx context.Context, tx pgx.Tx, b *batch) error

	// decide is a CommitOrder: decided once (its order read with the batch's others, in one
	// round trip), then written as a Commit of the change it returned.
	decide *decision
}

// decision is a CommitOrder's read and build, and their outcome once built.
type decision struct {
	app, outTradeNo string
	build           func(*paynotify.Order) (*paynotify.Change, error)
	// built is set once build ran (or the read failed): the write's change is what it
	// returned, nil for nothing to write, or err is the op's answer (nothing written).
	built bool
	err   error
}

// decided runs the decision's build on o (nil: no such order) and records its outcome: wr.change
// set to the change to write, or the decision's err.
func (wr *write) decided(o *paynotify.Order) {
	d := wr.decide
	d.built = true
	d.err = groupcommit.Run(func() error {
		c, err := d.build(o)
		if err != nil || c == nil {
			return err
		}
		if c.Order != nil && c.Order.Version <= c.PrevVersion {
			return fmt.Errorf("postgres: commit: order version %d does not follow %d", c.Order.Version, c.PrevVersion)
		}
		if err := c.CheckRepeat(); err != nil {
			return err
		}
		wr.change = c
		return nil
	})
}

type writer = groupcommit.Writer[*write]

type op = groupcommit.Op[*write]

// cleanError is an op's error returned before it wrote anything: the transaction is intact and
// the op fails alone.
type cleanError struct{ err error }

func (e *cleanError) Error() string { return e.err.Error() }
func (e *cleanError) Unwrap() error { return e.err }

// clean marks err as returned before the op wrote anything.
func clean(err error) error { return &cleanError{err} }

// unclean returns err without its clean mark.
func unclean(err error) error {
	if ce := (*cleanError)(nil); errors.As(err, &ce) {
		return ce.err
	}
	return err
}

func newWriter(db *DB) *writer {
	var w *writer
	w = groupcommit.New(writers, maxBatch, func(ops []*op) error { return db.commitBatch(w, ops) })
	return w
}

// commitBatch runs ops in one transaction, or each in its own when one fails after writing.
func (db *DB) commitBatch(w *writer, ops []*op) error {
	err := db.tryBatch(w, ops)
	if err == nil {
		return nil
	}
	if !errors.Is(err, errOpFailed) && !retryable(err) && !lockTimeout(err) {
		return err
	}
	// One op broke the transaction (or a deadlock with another instance's batch, or a row
	// locked by another session past lockTimeoutSQL, did): run each one alone.
	db.reruns.Add(1)
	// The rows whose write waited past the lock timeout: the other writes of one are failed
	// without running, rather than each waiting its own 2 s while every write behind them waits.
	timedOut := map[rowKey]error{}
	for _, o := range ops {
		if err := o.Ctx.Err(); err != nil {
			o.Err, o.Skipped = err, true // nothing of it was committed
			continue
		}
		key, keyed := rerunKey(o.Fn)
		if err, ok := timedOut[key]; keyed && ok {
			o.Err = fmt.Errorf("postgres: not run: a write of the same row (%s/%s) waited past the lock timeout: %w", key.app, key.outTradeNo, err)
			continue
		}
		err := db.rerunOne(o)
		if errors.Is(err, context.DeadlineExceeded) && o.Ctx.Err() == nil {
			// Its own BatchTimeout, not the caller's context: the store's failure.
			err = fmt.Errorf("postgres: the write did not finish within %s: the database did not answer in time", db.batchTimeout)
		}
		if keyed && lockTimeout(err) {
			timedOut[key] = unclean(err)
		}
		o.Err = unclean(err)
	}
	return nil
}

// rerunOne runs the write of o alone, in a transaction of its own, and returns its outcome. Once
// started, a write runs to its end, whoever waits for it (a cancelled COMMIT leaves its outcome
// unknown); the lock timeout bounds how long it can wait for a row, and BatchTimeout how long it
// can wait for a connection that went silent.
func (db *DB) rerunOne(o *op) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(o.Ctx), db.batchTimeout)
	defer cancel()
	defer db.inflight.end(db.inflight.begin(time.Now()))
	wr := o.Fn
	if d := wr.decide; d != nil {
		if !d.built { // its batch failed before deciding it: read alone, decide once
			ord, err := db.GetOrder(ctx, d.app, d.outTradeNo)
			switch {
			case paynotify.ErrorCode(err) == paynotify.ENOTFOUND:
				wr.decided(nil)
			case err != nil:
				d.built, d.err = true, err // "postgres: get order: …"
			default:
				wr.decided(ord)
			}
		}
		if d.err != nil || wr.change == nil {
			return d.err
		}
	}
	return db.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockTimeoutSQL); err != nil {
			return err
		}
		var b batch
		err := groupcommit.Run(func() error {
			var err error
			switch {
			case wr.change != nil:
				wr.anomalyNew = false
				err = commit(ctx, tx, wr.change, wr.anomalyAt, &wr.anomalyNew, &b)
			case wr.create != nil:
				wr.stored, wr.created, err = createOrder(ctx, tx, wr.create)
			default:
				err = wr.fn(ctx, tx, &b)
			}
			return err
		})
		if err != nil {
			return err
		}
		return insertEvents(ctx, tx, b.events)
	})
}

// rerunKey is the row a write run alone locks first, when it is known before it runs: its
// order's (a CommitOrder's, a creation's), or lockKey's for a Commit.
func rerunKey(wr *write) (rowKey, bool) {
	switch {
	case wr.decide != nil:
		return rowKey{app: wr.decide.app, outTradeNo: wr.decide.outTradeNo}, true
	case wr.change != nil:
		k := lockKey(wr.change)
		return k, k != rowKey{}
	case wr.create != nil:
		return rowKey{app: wr.create.App, outTradeNo: wr.create.OutTradeNo}, true
	}
	return rowKey{}, false
}

// lockTimeoutSQL bounds how long a batch (or a write run alone) waits for a row that another
// session holds: without it one locked order would stall every write of the instance behind the
// batch waiting for it. A batch that times out runs again write by write, where only the write of
// that order fails (and its caller is answered with a failure: a provider retries).
const lockTimeoutSQL = `SET LOCAL lock_timeout = '2s'`

// beginBatch begins a batch's transaction with its lock timeout in one round trip (a query
// without arguments goes as one simple-protocol message, so both statements travel together).
var beginBatch = pgx.TxOptions{BeginQuery: "BEGIN ISOLATION LEVEL READ COMMITTED; " + lockTimeoutSQL} // readCommitted's

// lockTimeout reports whether err is PostgreSQL's lock_not_available (lock_timeout ran out).
func lockTimeout(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "55P03"
}

// errOpFailed: an op of the batch failed after writing; its transaction is lost.
var errOpFailed = errors.New("postgres: a write of the batch failed")

// tryBatch runs ops in one transaction. It returns nil when the batch committed (each op's Err
// says whether it was part of it), errOpFailed or a retryable error when the ops must run
// again one by one, or another error for every op without one.
func (db *DB) tryBatch(w *writer, ops []*op) error {
	ctx, cancel := context.WithTimeout(context.Background(), db.batchTimeout)
	defer cancel()
	defer db.inflight.end(db.inflight.begin(time.Now()))
	err := db.runBatch(ctx, w, ops)
	if err != nil && ctx.Err() != nil {
		// Past BatchTimeout (a connection gone silent, a lock held): every write of the batch
		// is answered this, not run again alone (each would wait its own BatchTimeout).
		// Not wrapping ctx.Err(): the caller's own context did not end, and this is not its
		// cancellation (the Processor tells a provider that hung up, client_gone, by that).
		return fmt.Errorf("postgres: the batch did not finish within %s (%v): the database did not answer in time", db.batchTimeout, ctx.Err())
	}
	return err
}

// runBatch is tryBatch's work, under its deadline.
func (db *DB) runBatch(ctx context.Context, w *writer, ops []*op) error {
	tx, err := db.pool.BeginTx(ctx, beginBatch)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer rollback(ctx, tx)
	var (
		b       batch
		ran     int
		commits []*op
		creates []*op
	)
	// The CommitOrders first, before the batch writes anything: their orders as committed, read
	// in one round trip, and each decided once.
	if err := groupcommit.Run(func() error { return db.decidePipelined(ctx, tx, ops) }); err != nil {
		return batchFailed(ops, err)
	}
	for _, o := range ops {
		if d := o.Fn.decide; d != nil && d.built { // decided: its outcome stands
			if d.err != nil || o.Fn.change == nil {
				o.Err = d.err
				continue
			}
			commits = append(commits, o)
			continue
		}
		if err := o.Ctx.Err(); err != nil {
			o.Err, o.Skipped = err, true
			continue
		}
		if o.Fn.change != nil {
			commits = append(commits, o)
			continue
		}
		if o.Fn.create != nil {
			creates = append(creates, o)
			continue
		}
		err := groupcommit.Run(func() error { return o.Fn.fn(ctx, tx, &b) })
		if err == nil {
			ran++
			continue
		}
		if ce := (*cleanError)(nil); errors.As(err, &ce) {
			o.Err = ce.err
			continue
		}
		return batchFailed(ops, err)
	}
	if err := groupcommit.Run(func() error { return createPipelined(ctx, tx, creates) }); err != nil {
		return batchFailed(ops, err)
	}
	ran += len(creates)
	var n int
	err = groupcommit.Run(func() error {
		var err error
		n, err = commitPipelined(ctx, tx, commits, &b, ran)
		return err
	})
	if err != nil {
		return batchFailed(ops, err)
	}
	if ran += n; ran == 0 {
		return nil
	}
	if len(commits) == 0 { // else commitPipelined appended the events
		if err := insertEvents(ctx, tx, b.events); err != nil {
			return batchFailed(ops, err)
		}
	}
	if err := w.BeforeCommit(); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

// decidePipelined reads the orders of the batch's CommitOrder ops that are not decided yet (and
// whose caller still waits) in one statement, and decides each.
func (db *DB) decidePipelined(ctx context.Context, tx pgx.Tx, ops []*op) error {
	var apps, nos []string
	for _, o := range ops {
		if d := o.Fn.decide; d != nil && !d.built && o.Ctx.Err() == nil {
			if !storableKey(d.app) || !storableKey(d.outTradeNo) {
				o.Fn.decided(nil) // no order has it; asking would fail the statement
				continue
			}
			apps, nos = append(apps, d.app), append(nos, d.outTradeNo)
		}
	}
	if len(apps) == 0 {
		return nil
	}
	if h := db.readHook.Load(); h != nil {
		if err := (*h)(); err != nil {
			return err
		}
	}
	type key struct{ app, outTradeNo string }
	found := make(map[key]*paynotify.Order, len(apps))
	rows, err := tx.Query(ctx, `SELECT `+orderColumns+` FROM orders
		WHERE (app, out_trade_no) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, apps, nos)
	if err != nil {
		return fmt.Errorf("read orders: %w", err)
	}
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			rows.Close()
			return fmt.Errorf("read orders: %w", err)
		}
		found[key{o.App, o.OutTradeNo}] = o
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read orders: %w", err)
	}
	for _, o := range ops {
		if d := o.Fn.decide; d != nil && !d.built && o.Ctx.Err() == nil {
			var ord *paynotify.Order
			if f := found[key{d.app, d.outTradeNo}]; f != nil {
				c := *f // each op decides on a copy of its own
				ord = &c
			}
			o.Fn.decided(ord)
		}
	}
	return nil
}

// batchFailed clears the answers given so far (every op runs again alone) and returns what
// commitBatch needs to do so: err itself when retryable, errOpFailed otherwise.
func batchFailed(ops []*op, err error) error {
	for _, o := range ops {
		if o.Ctx.Err() == nil {
			o.Err = nil
		}
	}
	if retryable(err) || lockTimeout(err) {
		return err
	}
	return errOpFailed
}

// createPipelined inserts the orders of the CreateOrder ops in one round trip and reads the
// ones that existed already in a second.
func createPipelined(ctx context.Context, tx pgx.Tx, ops []*op) error {
	if len(ops) == 0 {
		return nil
	}
	// In the order of their keys (two of one order as they arrived), as the Commits lock theirs.
	slices.SortStableFunc(ops, func(a, b *op) int {
		return rowKey{app: a.Fn.create.App, outTradeNo: a.Fn.create.OutTradeNo}.compare(rowKey{app: b.Fn.create.App, outTradeNo: b.Fn.create.OutTradeNo})
	})
	ins := &pgx.Batch{}
	for _, o := range ops {
		wr := o.Fn
		wr.stored, wr.created = nil, false
		ins.Queue(insertOrderSQL+` RETURNING `+orderColumns, orderArgs(wr.create)...).Query(func(rows pgx.Rows) error {
			defer rows.Close()
			if rows.Next() {
				var err error
				if wr.stored, err = scanOrder(rows); err != nil {
					return err
				}
				wr.created = true
			}
			return rows.Err()
		})
	}
	if err := tx.SendBatch(ctx, ins).Close(); err != nil {
		return fmt.Errorf("create order: %w", err)
	}
	sel := &pgx.Batch{}
	for _, o := range ops {
		if wr := o.Fn; !wr.created {
			sel.Queue(selectOrderSQL, wr.create.App, wr.create.OutTradeNo).QueryRow(func(row pgx.Row) error {
				var err error
				wr.stored, err = scanOrder(row)
				return err
			})
		}
	}
	if sel.Len() > 0 {
		if err := tx.SendBatch(ctx, sel).Close(); err != nil {
			return fmt.Errorf("create order: %w", err)
		}
	}
	return nil
}

// commitPipelined does the row work of the Commits ops in two round trips, as commit does for
// one, and appends the batch's events (those in b, ran being the ops before that wrote, then the
// Commits') in the second, after the event log's lock (insertEvents). Ops that lose their
// compare-and-set (or name a missing order) get their error; it returns how many succeeded, or
// an error that aborted the transaction.
func commitPipelined(ctx context.Context, tx pgx.Tx, ops []*op, b *batch, ran int) (int, error) {
	if len(ops) == 0 {
		return 0, nil
	}
	// Round trip 1: the compare-and-sets (and the version checks of Change.OrderAt), in the order of their rows' keys (two writes of one
	// order in the order they arrived), as the second round trip's row work: batches in flight
	// side by side, or of several instances, lock the rows they write in one order, so they
	// cannot deadlock on them.
	order := byLockKey(ops)
	won := make([]bool, len(ops))
	cas := &pgx.Batch{}
	for _, i := range order {
		c := ops[i].Fn.change
		if orderAt(c) {
			a := c.Anomaly
			cas.Queue(orderAtSQL, a.App, a.OutTradeNo, c.OrderAt).Query(func(rows pgx.Rows) error {
				won[i] = rows.Next()
				rows.Close()
				return rows.Err()
			})
			continue
		}
		if c.Order == nil {
			won[i] = true
			continue
		}
		if c.Order.Version <= c.PrevVersion {
			return 0, fmt.Errorf("commit: order version %d does not follow %d", c.Order.Version, c.PrevVersion)
		}
		cas.Queue(updateOrderSQL, updateOrderArgs(c)...).Exec(func(tag pgconn.CommandTag) error {
			won[i] = tag.RowsAffected() == 1
			return nil
		})
	}
	if cas.Len() > 0 {
		if err := tx.SendBatch(ctx, cas).Close(); err != nil {
			return 0, fmt.Errorf("update order: %w", err)
		}
	}
	// Round trip 2: the losers' existence checks, then what the winners write, table by table
	// in one order (refunds, anomalies, evidence), each table's rows in the order of their keys
	// (rows of one key as they arrived: the last upsert of a refund wins, the first insert of an
	// anomaly is the new one): batches side by side lock rows in one order. Then, if anything was
	// written, the batch's events under the lock.
	rest := &pgx.Batch{}
	var rows []rowWrite
	for _, i := range order {
		o := ops[i]
		c, wr := o.Fn.change, o.Fn
		if !won[i] {
			k := lockKey(c) // the order's, or for OrderAt the anomaly's (of the same order)
			rest.Queue(orderExistsSQL, k.app, k.outTradeNo).Query(func(rows pgx.Rows) error {
				found := rows.Next()
				rows.Close()
				if err := rows.Err(); err != nil {
					return err
				}
				if found {
					o.Err = errConflict
				} else {
					o.Err = notFound("Order not found.")
				}
				return nil
			})
			continue
		}
		wr.anomalyNew = false
		if r := c.Refund; r != nil {
			// A refund of a missing order breaks the foreign key: the batch runs again op by
			// op, where commit answers ENOTFOUND.
			rows = append(rows, rowWrite{0, rowKey{r.App, r.OutTradeNo, r.OutRequestNo}, func() { rest.Queue(upsertRefundSQL, append(refundArgs(r), c.RefundConfirmed)...) }})
		}
		if a := c.Anomaly; a != nil {
			rows = append(rows, rowWrite{1, rowKey{a.App, a.OutTradeNo, a.Key}, func() {
				rest.Queue(insertAnomalySQL, anomalyArgs(a, wr.anomalyAt)...).Exec(func(tag pgconn.CommandTag) error {
					wr.anomalyNew = tag.RowsAffected() == 1
					return nil
				})
			}})
		}
		if e := c.Evidence; e != nil && c.RepeatVersion != 0 {
			// A missed repeat wrote nothing: it fails alone, the batch goes on.
			rows = append(rows, rowWrite{2, rowKey{record: e.ID}, func() {
				rest.Queue(repeatEvidenceIfSQL, repeatIfArgs(c)...).Exec(func(tag pgconn.CommandTag) error {
					if tag.RowsAffected() == 0 {
						o.Err = paynotify.ErrRepeatMissed
					}
					return nil
				})
			}})
		} else if e != nil {
			args, err := evidenceArgs(e)
			if err != nil {
				return 0, err
			}
			// A repeat (Change.Repeat) updates the record e.ID; an insert's id is new.
			rows = append(rows, rowWrite{2, rowKey{record: e.ID}, func() { rest.Queue(evidenceSQL(c), args...) }})
		}
	}
	slices.SortStableFunc(rows, func(a, b rowWrite) int { return cmp.Or(cmp.Compare(a.table, b.table), a.key.compare(b.key)) })
	for _, r := range rows {
		r.queue()
	}
	n := 0
	for i := range ops {
		if won[i] {
			n++
		}
	}
	if ran+n > 0 {
		ev := eventQueue{b: rest}
		for _, e := range b.events {
			ev.queue(insertEventSQL, eventArgs(e)...)
		}
		for i, o := range ops {
			if !won[i] {
				continue
			}
			c := o.Fn.change
			for _, e := range c.Events {
				ev.queue(insertEventSQL, eventArgs(e)...)
			}
			if a := c.Anomaly; a != nil && a.Event != nil {
				// Its event only if the anomaly is new: the row this op inserted names it (the
				// insert's own answer comes back only with this round trip's).
				ev.queue(insertAnomalyEventSQL, append(eventArgs(a.Event), a.App, a.OutTradeNo, a.Key)...)
			}
		}
	}
	if rest.Len() > 0 {
		if err := tx.SendBatch(ctx, rest).Close(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// byLockKey returns the indexes of ops in the order of lockKey (ops of one key in their own
// order): a batch takes the row locks of its compare-and-sets and of its other row work in that
// order, as every other batch does, in this process or another, so that no two wait for each
// other's rows in opposite orders.
func byLockKey(ops []*op) []int {
	idx := make([]int, len(ops))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return lockKey(ops[a].Fn.change).compare(lockKey(ops[b].Fn.change)) })
	return idx
}

// rowKey orders the rows a write locks: an order's, then the evidence record a repeat counts on.
// In a batch's second round trip it is the key of a refund (app, out_trade_no,
// out_request_no), an anomaly (app, out_trade_no, key) or an evidence record (its id).
type rowKey struct{ app, outTradeNo, record string }

// rowWrite is a statement of a batch's second round trip, queued in the order of (table, key).
type rowWrite struct {
	table int // 0 refunds, 1 anomalies, 2 evidence
	key   rowKey
	queue func()
}

func (k rowKey) compare(o rowKey) int {
	return cmp.Or(strings.Compare(k.app, o.app), strings.Compare(k.outTradeNo, o.outTradeNo), strings.Compare(k.record, o.record))
}

// lockKey is the key of the rows c's write locks: its order's (app, out_trade_no), or for a
// change without an order change its refund's, anomaly's or evidence's (each of one order), and
// for a repeat the record it counts on.
func lockKey(c *paynotify.Change) rowKey {
	var k rowKey
	switch {
	case c.Order != nil:
		k.app, k.outTradeNo = c.Order.App, c.Order.OutTradeNo
	case c.Refund != nil:
		k.app, k.outTradeNo = c.Refund.App, c.Refund.OutTradeNo
	case c.Anomaly != nil:
		k.app, k.outTradeNo = c.Anomaly.App, c.Anomaly.OutTradeNo
	case c.Evidence != nil:
		k.app, k.outTradeNo = c.Evidence.App, c.Evidence.OutTradeNo
	}
	if c.Repeat && c.Evidence != nil {
		k.record = c.Evidence.ID
	}
	return k
}

// insertEvents appends events to the log in one round trip, under the log's advisory lock: event
// writers take turns from here to their commit, so that seq order is commit order (a reader
// paging with After never sees seq N+1 committed before N and skips N). Nothing after this
// point waits on a row lock, so the lock cannot join a deadlock.
func insertEvents(ctx context.Context, tx pgx.Tx, events []*paynotify.Event) error {
	if len(events) == 0 {
		return nil
	}
	ev := eventQueue{b: &pgx.Batch{}}
	for _, e := range events {
		ev.queue(insertEventSQL, eventArgs(e)...)
	}
	if err := tx.SendBatch(ctx, ev.b).Close(); err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	return nil
}

// eventQueue queues event inserts on b, the event log's lock before the first (insertEvents).
type eventQueue struct {
	b      *pgx.Batch
	locked bool
}

func (q *eventQueue) queue(sql string, args ...any) {
	if !q.locked {
		// The lock is held only from another transaction's events to its COMMIT, never across a
		// row lock, so its wait is bounded by that COMMIT: no lock timeout for it (the batch's
		// 2 s are for rows). With two batches in flight one waits here for the other routinely,
		// and a slow COMMIT must not fail it.
		q.b.Queue(`SET LOCAL lock_timeout = 0`)
		q.b.Queue(`SELECT pg_advisory_xact_lock($1)`, eventsLockKey)
		q.b.Queue(lockTimeoutSQL) // for what follows (the events table's own lock, say)
		q.locked = true
	}
	q.b.Queue(sql, args...)
}

const (
	insertEventSQL = `INSERT INTO events (id, type, app, out_trade_no, version, timestamp, data)
		VALUES ($1, $2, $3, $4, $5, $6, $7::text::json)`
	// An anomaly's event, inserted only when the anomaly row ($8, $9, $10) carries its id: the
	// row was inserted by this transaction (insertAnomalySQL does nothing for a known anomaly).
	insertAnomalyEventSQL = `INSERT INTO events (id, type, app, out_trade_no, version, timestamp, data)
		SELECT $1::text, $2::text, $3::text, $4::text, $5::bigint, $6::timestamptz, $7::text::json
		WHERE EXISTS (SELECT 1 FROM anomalies WHERE app = $8 AND out_trade_no = $9 AND key = $10 AND event_id = $1::text)`
)

// eventArgs are the values of insertEventSQL for e.
func eventArgs(e *paynotify.Event) []any {
	var data []byte
	if e.Data != nil {
		data = []byte(e.Data)
	}
	return []any{e.ID, string(e.Type), e.App, e.OutTradeNo, e.Version, tm(e.Timestamp), nullString(data)}
}
