package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/groupcommit"
)

// Group commit (docs/storage.md, "Group commit").
//
// Commit, InsertEvidence and CreateOrder are ops of the store's groupcommit.Writer, which runs
// the ops that arrived while its previous transaction was committing in one transaction:
//   - each op does its row work (the order's compare-and-set first) and hands its events to the
//     batch instead of inserting them;
//   - after the last op the batch takes the event log's advisory lock once, inserts every
//     event in one round trip, and commits: seq order stays commit order for readers paging
//     with After, as with one lock per commit, and several instances still take turns;
//   - an op that fails before writing anything (a lost compare-and-set, ENOTFOUND, EINVALID)
//     fails alone and the batch goes on; any other error aborts PostgreSQL's transaction, so
//     the batch is rolled back and every op runs again in a transaction of its own, where only
//     the failing one fails. No savepoints: subtransactions that write overflow PostgreSQL's
//     per-backend cache beyond 64 and slow every other session's snapshots.
//
// Every caller is answered after the COMMIT of the transaction holding its op returned.

// maxBatch bounds the ops of one transaction.
const maxBatch = 256

// batch is what ops hand to the end of their transaction.
type batch struct {
	events []*paynotify.Event
}

// writeFn is one write, run on the batch's transaction.
type writeFn = func(ctx context.Context, tx pgx.Tx, b *batch) error

type writer = groupcommit.Writer[writeFn]

// cleanError is an op's error returned before it wrote anything: the transaction is intact and
// the op fails alone.
type cleanError struct{ err error }

func (e *cleanError) Error() string { return e.err.Error() }
func (e *cleanError) Unwrap() error { return e.err }

// clean marks err as returned before the op wrote anything.
func clean(err error) error { return &cleanError{err} }

func newWriter(db *DB) *writer {
	var w *writer
	w = groupcommit.New(maxBatch, func(ops []*groupcommit.Op[writeFn]) error { return db.commitBatch(w, ops) })
	return w
}

// commitBatch runs ops in one transaction, or each in its own when one fails after writing.
func (db *DB) commitBatch(w *writer, ops []*groupcommit.Op[writeFn]) error {
	err := db.tryBatch(w, ops)
	if err == nil {
		return nil
	}
	if !errors.Is(err, errOpFailed) && !retryable(err) {
		return err
	}
	// One op broke the transaction (or a deadlock with another instance's batch did): run
	// each one alone.
	for _, op := range ops {
		if err := op.Ctx.Err(); err != nil {
			op.Err = err // nothing of it was committed
			continue
		}
		op.Err = db.inTx(op.Ctx, func(tx pgx.Tx) error {
			var b batch
			if err := op.Fn(op.Ctx, tx, &b); err != nil {
				return err
			}
			return insertEvents(op.Ctx, tx, b.events)
		})
		if ce := (*cleanError)(nil); errors.As(op.Err, &ce) {
			op.Err = ce.err
		}
	}
	return nil
}

// errOpFailed: an op of the batch failed after writing; its transaction is lost.
var errOpFailed = errors.New("postgres: a write of the batch failed")

// tryBatch runs ops in one transaction. It returns nil when the batch committed (each op's Err
// says whether it was part of it), errOpFailed or a retryable error when the ops must run
// again one by one, or another error for every op without one.
func (db *DB) tryBatch(w *writer, ops []*groupcommit.Op[writeFn]) error {
	ctx := context.Background()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w", err)
	}
	defer rollback(ctx, tx)
	var b batch
	ran := 0
	for _, op := range ops {
		if err := op.Ctx.Err(); err != nil {
			op.Err = err
			continue
		}
		err := op.Fn(ctx, tx, &b)
		if err == nil {
			ran++
			continue
		}
		if ce := (*cleanError)(nil); errors.As(err, &ce) {
			op.Err = ce.err
			continue
		}
		if retryable(err) {
			return err
		}
		for _, op := range ops {
			if op.Ctx.Err() == nil {
				op.Err = nil // every op runs again
			}
		}
		return errOpFailed
	}
	if ran == 0 {
		return nil
	}
	if err := insertEvents(ctx, tx, b.events); err != nil {
		if retryable(err) {
			return err
		}
		for _, op := range ops {
			if op.Ctx.Err() == nil {
				op.Err = nil
			}
		}
		return errOpFailed
	}
	if err := w.BeforeCommit(); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

// insertEvents appends events to the log in one round trip, under the log's advisory lock: event
// writers take turns from here to their commit, so that seq order is commit order (a reader
// paging with After never sees seq N+1 committed before N and skips N). Nothing after this
// point waits on a row lock, so the lock cannot join a deadlock.
func insertEvents(ctx context.Context, tx pgx.Tx, events []*paynotify.Event) error {
	if len(events) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, eventsLockKey)
	for _, e := range events {
		var data []byte
		if e.Data != nil {
			data = []byte(e.Data)
		}
		b.Queue(`INSERT INTO events (id, type, app, out_trade_no, version, timestamp, data)
			VALUES ($1, $2, $3, $4, $5, $6, $7::text::json)`,
			e.ID, string(e.Type), e.App, e.OutTradeNo, e.Version, tm(e.Timestamp), nullString(data))
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	return nil
}
