package groupcommit

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// op's Fn in these tests: the value the commit function answers the op with.
type answer struct{ err error }

func TestWriter(t *testing.T) {
	t.Run("OKHeldBatch", func(t *testing.T) {
		// Ops sent while the first one is held go into its batch and each gets its own answer;
		// when the batch fails, every op that ran gets the batch's error instead of its own (its
		// own may rest on writes of the batch that are gone), and a skipped op keeps its own.
		var sizes []int
		batchErr := errors.New("batch failed")
		failNext := false
		w := New(1, 64, func(ops []*Op[answer]) error {
			sizes = append(sizes, len(ops))
			for _, op := range ops {
				if err := op.Ctx.Err(); err != nil {
					op.Err, op.Skipped = err, true
					continue
				}
				op.Err = op.Fn.err
			}
			if failNext {
				return batchErr
			}
			return nil
		})
		defer w.Close()
		held := func(ctxs []context.Context, answers []answer, before func()) []error {
			arrived, release := make(chan struct{}), make(chan struct{})
			first := true
			w.SetHooks(&Hooks{Hold: func() {
				if first {
					first = false
					close(arrived)
					<-release
				}
			}})
			errs := make([]error, len(answers))
			var wg sync.WaitGroup
			for i := range answers {
				wg.Go(func() { errs[i] = w.Do(ctxs[i], answers[i]) })
			}
			<-arrived
			for w.Queued() < len(answers)-1 {
				time.Sleep(time.Millisecond)
			}
			before()
			close(release)
			wg.Wait()
			w.SetHooks(nil)
			return errs
		}
		own := errors.New("own")
		bg := context.Background()
		ctxs := []context.Context{bg, bg, bg, bg, bg}
		answers := []answer{{}, {}, {own}, {}, {}}
		errs := held(ctxs, answers, func() {})
		for i, err := range errs {
			if want := answers[i].err; err != want {
				t.Errorf("committed batch, op %d: %v, want %v", i, err, want)
			}
		}
		// A failed batch, one op's caller gone while it waited: ctxs[3] is cancelled after
		// every op was queued (so it is skipped), and the batch fails.
		gone, cancel := context.WithCancel(bg)
		ctxs[3] = gone
		failNext = true
		errs = held(ctxs, answers, cancel)
		for i, err := range errs {
			want := batchErr
			if i == 3 {
				want = context.Canceled
			}
			if !errors.Is(err, want) {
				t.Errorf("failed batch, op %d: %v, want %v", i, err, want)
			}
		}
		if len(sizes) != 2 || sizes[0] != 5 || sizes[1] != 5 {
			t.Errorf("batches %v, want two of 5", sizes)
		}
	})
	t.Run("ErrPanic", func(t *testing.T) {
		err := Run(func() error { var m map[string]int; m["x"]++; return nil })
		if err == nil || !strings.Contains(err.Error(), "write panicked") {
			t.Fatalf("Run of a panicking write: %v", err)
		}
		if err := Run(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrContextDone", func(t *testing.T) {
		ran := 0
		w := New(1, 8, func(ops []*Op[answer]) error { ran += len(ops); return nil })
		defer w.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := w.Do(ctx, answer{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		w.Close()
		if ran != 0 {
			t.Fatalf("an op of a cancelled caller reached the commit function")
		}
	})
	t.Run("CloseRunsQueued", func(t *testing.T) {
		// Close runs what was sent before it, then refuses.
		var mu sync.Mutex
		ran := 0
		w := New(2, 8, func(ops []*Op[answer]) error {
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			ran += len(ops)
			mu.Unlock()
			return nil
		})
		var wg sync.WaitGroup
		var ok, closed int
		for range 20 {
			wg.Go(func() {
				err := w.Do(context.Background(), answer{})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrClosed):
					closed++
				default:
					t.Errorf("Do: %v", err)
				}
			})
		}
		time.Sleep(10 * time.Millisecond)
		w.Close()
		wg.Wait()
		if err := w.Do(context.Background(), answer{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("after Close: %v, want ErrClosed", err)
		}
		mu.Lock()
		defer mu.Unlock()
		// Every op answered nil ran; every other was refused before it was queued.
		if ran != ok || ok+closed != 20 || ok == 0 {
			t.Fatalf("ran %d, answered nil %d, refused %d", ran, ok, closed)
		}
	})
}
