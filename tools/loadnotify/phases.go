package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// phases alternates the run between phases "on" (even numbers), when some extra work runs
// beside the notifications, and "off" (odd numbers), when it does not, each of the same length,
// so that the notifications' latencies with and without the work come from the same run (the
// disk and the neighbours drift between runs). The work is one or more phasers: the
// reconciliation (-reconcile), the webhook deliveries (-webhook-phase); with both, they are on
// in the same phases.
type phases struct {
	started time.Time
	length  time.Duration
	work    []phaser
	stop    chan struct{}
	done    sync.WaitGroup

	mu      sync.Mutex
	on, off []time.Duration         // latencies by kind of phase
	byPhase map[int][]time.Duration // latencies by phase number
}

// phaser is work that runs in the "on" phases only.
type phaser interface {
	// phase is called at the start of each phase; ctx ends with the phase (or the run). It may
	// return at once (switching something on or off) or work until ctx ends.
	phase(ctx context.Context, on bool)
}

// settle is how far from a phase change a notification must start for its latency to count:
// the end of a phase waits for the work in flight.
const settle = 200 * time.Millisecond

// begin starts the phases, the first one "on", until end.
func (p *phases) begin(length time.Duration, work ...phaser) {
	p.started, p.length, p.work = time.Now(), length, work
	p.stop, p.byPhase = make(chan struct{}), map[int][]time.Duration{}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		for k := 0; ; k++ {
			ctx, cancel := context.WithDeadline(context.Background(), p.started.Add(time.Duration(k+1)*p.length))
			var wg sync.WaitGroup
			for _, w := range p.work {
				wg.Add(1)
				go func() {
					defer wg.Done()
					w.phase(ctx, k%2 == 0)
				}()
			}
			stopped := false
			select {
			case <-ctx.Done():
			case <-p.stop:
				stopped = true
			}
			cancel()
			wg.Wait()
			if stopped {
				return
			}
		}
	}()
}

// end stops the phases once the work of the current one has returned.
func (p *phases) end() {
	if p == nil {
		return
	}
	close(p.stop)
	p.done.Wait()
}

// phaseAt says whether the work runs at t, whether t is far enough from a phase change for its
// latency to count, and the number of its phase (even: on).
func (p *phases) phaseAt(t time.Time) (on, settled bool, n int) {
	if p == nil || p.length == 0 {
		return false, false, 0
	}
	in := t.Sub(p.started)
	k := in / p.length
	off := in - k*p.length
	return k%2 == 0, off > settle, int(k)
}

// phaseEnd returns the end of the phase that t is in.
func (p *phases) phaseEnd(t time.Time) time.Time {
	return p.started.Add((t.Sub(p.started)/p.length + 1) * p.length)
}

// record counts the latency d of a notification sent at t0, if it started settled in a phase.
func (p *phases) record(t0 time.Time, d time.Duration) {
	if p == nil {
		return
	}
	on, settled, k := p.phaseAt(t0)
	if !settled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.on = append(p.on, d)
	} else {
		p.off = append(p.off, d)
	}
	p.byPhase[k] = append(p.byPhase[k], d)
}

// report prints the p99 of the notifications with the work (what) and without it, over all the
// phases of each kind and as the median of the phases' p99; extra goes before the first figure.
func (p *phases) report(what, extra string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	on, off := p99(p.on), p99(p.off)
	fmt.Printf("%s: %sp99 with it %v (n=%d), without %v (n=%d): %+.0f%%\n",
		what, extra, on.Round(10*time.Microsecond), len(p.on), off.Round(10*time.Microsecond), len(p.off), change(on, off))
	// The median over phases of each phase's p99: a disk stall spoils one phase, not the figure.
	var ons, offs []time.Duration
	for k, l := range p.byPhase {
		if k%2 == 0 {
			ons = append(ons, p99(l))
		} else {
			offs = append(offs, p99(l))
		}
	}
	mOn, mOff := median(ons), median(offs)
	fmt.Printf("median of the phases' p99: with it %v (%d phases), without %v (%d phases): %+.0f%%\n",
		mOn.Round(10*time.Microsecond), len(ons), mOff.Round(10*time.Microsecond), len(offs), change(mOn, mOff))
}

func p99(l []time.Duration) time.Duration {
	if len(l) == 0 {
		return 0
	}
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[int(0.99*float64(len(l)-1))]
}

func median(l []time.Duration) time.Duration {
	if len(l) == 0 {
		return 0
	}
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[len(l)/2]
}

// change is on relative to off, in percent.
func change(on, off time.Duration) float64 {
	if off == 0 {
		return 0
	}
	return 100 * (float64(on)/float64(off) - 1)
}
