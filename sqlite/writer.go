package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/paynotify/paynotify/internal/groupcommit"
)

// Group commit (docs/storage.md, "Group commit").
//
// Every write of the request path (Commit, InsertEvidence, CreateOrder, CreateRefund,
// ConfirmRefundAmount) and the webhook dispatcher's (fan-outs, claims, results) is an op of the
// store's groupcommit.Writer, which runs the ops that arrived while its previous transaction was
// committing in one write transaction, each inside a savepoint of its own: an op that fails (or
// panics) is rolled back to its savepoint and fails alone, the others commit. Every caller is
// answered after the COMMIT of the transaction holding its op returned (synchronous=FULL: on
// disk), so one fsync serves a whole batch.
//
// The writer holds the write connection only for the length of a batch: River's transactions,
// the API's endpoint changes and other processes (paynotify reconcile, a backup) take their turn
// between batches.

// maxBatch bounds the ops of one transaction, so that a burst does not hold the write lock (and
// its callers' answers) for long.
const maxBatch = 256

// writeFn is one write, run on the batch's transaction with the prepared statements.
type writeFn = func(ctx context.Context, tx *sql.Tx, st *statements) error

type writer = groupcommit.Writer[writeFn]

func newWriter(db *DB) *writer {
	var w *writer
	w = groupcommit.New(1, maxBatch, func(ops []*groupcommit.Op[writeFn]) error {
		err := db.commitBatch(w, ops)
		if errors.Is(err, errFilesChanged) {
			db.salvageCommits()
		}
		if err != nil {
			db.lastFailure.Store(&batchFailure{at: time.Now(), err: err})
		} else {
			db.lastFailure.Store(nil)
		}
		return err
	})
	return w
}

// batchFailure is a batch that failed as a whole (its BEGIN, a savepoint, its COMMIT), and when.
type batchFailure struct {
	at  time.Time
	err error
}

// failingFor is how long after a batch that failed as a whole, with none committed since, Ping
// reports the writer failing: another process holding the write lock past the busy timeout, a
// disk that refuses writes. /readyz said ok through all of it (a reviewer helper's finding).
const failingFor = 30 * time.Second

// commitBatch runs ops in one transaction, each in a savepoint, and commits what succeeded.
func (db *DB) commitBatch(w *writer, ops []*groupcommit.Op[writeFn]) error {
	ctx := context.Background()
	st, err := db.statements(ctx)
	if err != nil {
		return err
	}
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	defer rollback(tx)
	savepoint, rollbackTo, release := tx.StmtContext(ctx, st.savepoint), tx.StmtContext(ctx, st.rollbackTo), tx.StmtContext(ctx, st.release)
	ran := 0
	for _, op := range ops {
		if err := op.Ctx.Err(); err != nil {
			op.Err, op.Skipped = err, true
			continue
		}
		// Once started, an op runs to its end whatever its caller does: a statement interrupted
		// by a cancelled context makes SQLite roll the whole transaction back, the other ops'
		// writes with it.
		opCtx := context.WithoutCancel(op.Ctx)
		if len(ops) == 1 {
			// Alone in its transaction: its failure is the batch's.
			if op.Err = groupcommit.Run(func() error { return op.Fn(opCtx, tx, st) }); op.Err != nil {
				return nil
			}
			ran++
			continue
		}
		if _, err := savepoint.ExecContext(ctx); err != nil {
			return fmt.Errorf("sqlite: savepoint: %w", err)
		}
		if op.Err = groupcommit.Run(func() error { return op.Fn(opCtx, tx, st) }); op.Err != nil {
			// Undo its writes and go on with the others. If SQLite already ended the
			// transaction (some errors roll it back whole), the savepoint is gone: the batch
			// fails.
			if _, err := rollbackTo.ExecContext(ctx); err != nil {
				return fmt.Errorf("sqlite: batch failed after an error of another write (%v): %w", op.Err, err)
			}
		} else {
			ran++
		}
		if _, err := release.ExecContext(ctx); err != nil {
			return fmt.Errorf("sqlite: release savepoint: %w", err)
		}
	}
	if ran == 0 {
		return nil // nothing to commit; the deferred rollback ends the transaction
	}
	// Committed into files that are no longer the database's, the batch would be lost at the
	// next restart: it fails instead (files.go).
	if err := db.checkFiles(); err != nil {
		return err
	}
	if err := w.BeforeCommit(); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}
