package groupcommit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// op's Fn in these tests: the value the commit function answers the op with.
type answer struct{ err error }

func TestWriter(t *testing.T) {
	t.Run("OKHeldBatch", func(t *testing.T) {
		// Ops sent while the first one is held go into its batch; each gets its own answer,
		// and a batch failure goes only to the ops without one.
		var sizes []int
		batchErr := errors.New("batch failed")
		w := New(1, 64, func(ops []*Op[answer]) error {
			sizes = append(sizes, len(ops))
			for _, op := range ops {
				op.Err = op.Fn.err
			}
			if len(ops) > 1 {
				return batchErr
			}
			return nil
		})
		defer w.Close()
		arrived, release := make(chan struct{}), make(chan struct{})
		held := false
		w.SetHooks(&Hooks{Hold: func() {
			if !held {
				held = true
				close(arrived)
				<-release
			}
		}})
		own := errors.New("own")
		errs := make([]error, 5)
		var wg sync.WaitGroup
		for i := range errs {
			var a answer
			if i == 2 {
				a.err = own
			}
			wg.Go(func() { errs[i] = w.Do(context.Background(), a) })
		}
		<-arrived
		for w.Queued() < 4 {
			time.Sleep(time.Millisecond)
		}
		close(release)
		wg.Wait()
		for i, err := range errs {
			want := batchErr
			if i == 2 {
				want = own
			}
			if err != want {
				t.Errorf("op %d: %v, want %v", i, err, want)
			}
		}
		if len(sizes) != 1 || sizes[0] != 5 {
			t.Errorf("batches %v, want one of 5", sizes)
		}
		w.SetHooks(nil)
		if err := w.Do(context.Background(), answer{}); err != nil {
			t.Errorf("a batch of one: %v", err)
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
