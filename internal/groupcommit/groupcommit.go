// Package groupcommit gathers concurrent writes into batches, for the stores' group commit
// (docs/storage.md, "Group commit"): one goroutine takes the writes that arrived while its
// previous batch was committing and hands them to the store's commit function together; every
// caller is answered once the batch holding its write is over.
//
// The package knows nothing of databases: the store's commit function runs the batch in one
// transaction, isolates each write's failure and records every write's outcome.
package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// ErrClosed answers a write sent after Close.
var ErrClosed = errors.New("store closed")

// Op is one caller's write in a batch.
type Op[F any] struct {
	// Ctx is the caller's context. A commit function skips an op whose Ctx is done when its
	// turn comes (answering Ctx.Err()), and otherwise runs it to the end: once started, a
	// write's outcome is decided by its batch, not by its caller going away.
	Ctx context.Context
	// Fn is the write, in the store's terms.
	Fn F
	// Err is the op's outcome, set by the commit function: nil means committed.
	Err error
	// Skipped is set by the commit function for an op it did not run (its Ctx had ended).
	Skipped bool
	done    chan struct{}
}

// Hooks let tests shape and fail batches.
type Hooks struct {
	// Hold, if set, is called when a batch's first op arrived, before the others are gathered:
	// the ops sent while it blocks join that batch.
	Hold func()
	// BeforeCommit, if set, is what Writer.BeforeCommit returns.
	BeforeCommit func() error
}

// Writer runs the batches, on one goroutine or on several that take turns gathering.
type Writer[F any] struct {
	commit func(ops []*Op[F]) error
	max    int
	ops    chan *Op[F]
	quit   chan struct{}
	wg     sync.WaitGroup

	gatherMu sync.Mutex // one goroutine gathers at a time; the batches run side by side

	mu     sync.RWMutex // held for reading while sending to ops, for writing by Close
	closed bool

	hooks atomic.Pointer[Hooks]
}

// New starts a writer whose batches hold at most max ops, run by n goroutines (n batches at
// most in flight; SQLite has one writer, PostgreSQL can commit several at once). commit runs
// one batch: it sets each op's Err (and Skipped), and returns a non-nil error only when nothing
// of the batch was committed. That error becomes the answer of every op that ran, its own
// answer replaced: an op's own outcome (a lost compare-and-set, a refund refused for the
// refunds before it) may rest on writes of the batch that are now gone.
func New[F any](n, max int, commit func(ops []*Op[F]) error) *Writer[F] {
	w := &Writer[F]{commit: commit, max: max, ops: make(chan *Op[F], 4*max), quit: make(chan struct{})}
	for range max1(n) {
		w.wg.Add(1)
		go w.run()
	}
	return w
}

func max1(n int) int { return max(n, 1) }

// Do runs fn in the next batch and returns its outcome once that batch is over: nil when fn's
// writes are committed (durably, as the store's commit is).
func (w *Writer[F]) Do(ctx context.Context, fn F) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &Op[F]{Ctx: ctx, Fn: fn, done: make(chan struct{})}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return ErrClosed
	}
	select {
	case w.ops <- op:
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	w.mu.RUnlock()
	// Wait for the outcome even when ctx ends meanwhile: the answer must say what happened.
	<-op.done
	return op.Err
}

// Close stops accepting ops, runs those already sent and waits for them.
func (w *Writer[F]) Close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.quit)
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// SetHooks sets (nil: clears) the test hooks.
func (w *Writer[F]) SetHooks(h *Hooks) { w.hooks.Store(h) }

// Queued returns how many ops wait to be gathered into a batch.
func (w *Writer[F]) Queued() int { return len(w.ops) }

// BeforeCommit is called by a commit function after the ops ran and before its COMMIT: an
// error fails the batch as a failed COMMIT would (tests).
func (w *Writer[F]) BeforeCommit() error {
	if h := w.hooks.Load(); h != nil && h.BeforeCommit != nil {
		return h.BeforeCommit()
	}
	return nil
}

func (w *Writer[F]) run() {
	defer w.wg.Done()
	batch := make([]*Op[F], 0, w.max)
	for {
		if !w.gather(&batch) {
			return
		}
		w.runBatch(batch)
		clear(batch)
	}
}

// gather waits for the next op and takes those queued behind it into batch, under gatherMu so
// that a held batch (Hooks.Hold) gets every op sent meanwhile. It runs what is left and returns
// false once the writer is closed.
func (w *Writer[F]) gather(batch *[]*Op[F]) bool {
	w.gatherMu.Lock()
	defer w.gatherMu.Unlock()
	var first *Op[F]
	select {
	case first = <-w.ops:
	case <-w.quit:
		// No sender is left (Close holds the lock they send under): run what is queued.
		for {
			select {
			case op := <-w.ops:
				w.runBatch([]*Op[F]{op})
			default:
				return false
			}
		}
	}
	if h := w.hooks.Load(); h != nil && h.Hold != nil {
		h.Hold()
	}
	*batch = append((*batch)[:0], first)
	for len(*batch) < w.max {
		select {
		case op := <-w.ops:
			*batch = append(*batch, op)
		default:
			return true
		}
	}
	return true
}

func (w *Writer[F]) runBatch(ops []*Op[F]) {
	err := w.commit(ops)
	for _, op := range ops {
		if err != nil && !op.Skipped {
			op.Err = err
		}
		close(op.done)
	}
}

// Run calls fn, turning a panic into an error: a write that panics fails alone instead of
// taking the writer's goroutine, and the process, down with it.
func Run(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("groupcommit: write panicked: %v", r)
		}
	}()
	return fn()
}
