// Package groupcommittest holds a store's group-commit writer for the conformance suite
// (storetest.DB.HoldWrites).
package groupcommittest

import (
	"sync/atomic"
	"testing"

	"github.com/paynotify/paynotify/internal/groupcommit"
)

// Hold holds w before its next batch: the ops sent until release is called join that batch,
// queued reports how many ops wait for it (0 until its first op arrived), and release(fail)
// with fail not nil makes that batch fail where its COMMIT would.
func Hold[F any](t *testing.T, w *groupcommit.Writer[F]) (queued func() int, release func(fail error)) {
	arrived, released := make(chan struct{}), make(chan struct{})
	var fail error
	// held is set by the first Hold (the held batch's gathering); read by later Holds and by
	// BeforeCommit, on any of the writer's goroutines. With several goroutines (PostgreSQL), a
	// batch gathered after release may clear the hooks before the held batch's BeforeCommit,
	// which then does not fail: the tests send every op of the held batch before release and
	// nothing after it until its answers are in.
	var held atomic.Bool
	w.SetHooks(&groupcommit.Hooks{
		Hold: func() {
			if held.Load() {
				// The next batch: the held one is over, whether or not its BeforeCommit ran
				// (PostgreSQL's write-by-write rerun has none).
				w.SetHooks(nil)
				return
			}
			held.Store(true)
			close(arrived)
			<-released
		},
		BeforeCommit: func() error {
			if !held.Load() {
				return nil
			}
			w.SetHooks(nil)
			return fail
		},
	})
	done := false // the test's goroutine only
	release = func(f error) {
		if done {
			return
		}
		done = true
		fail = f
		close(released)
	}
	t.Cleanup(func() { release(nil) })
	queued = func() int {
		select {
		case <-arrived:
			return 1 + w.Queued()
		default:
			return 0
		}
	}
	return queued, release
}
