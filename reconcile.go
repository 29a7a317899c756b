package paynotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Reconciler runs the reconciliation of docs/reconciliation.md: each Sweep claims the orders and
// refunds whose next check fell due (Store.ClaimChecks) and checks them at the provider, with at
// most App.Reconcile.Concurrency queries of an app in flight in this process. An app whose
// provider is unavailable or throttles is backed off, with jitter, and its checks wait; the
// notification path never waits for any of it.
//
// A Sweep is safe to run in several processes at once: a claim belongs to one of them, and the
// claim of a process that dies falls due again after Lease.
type Reconciler struct {
	Service *Service
	// Lease is how long a claimed check stays claimed if it is never finished (its process died);
	// it falls due again then. Defaults to 45s. A check that could not start within
	// Lease-CheckTimeout-10s of its claim (10 s: applyTimeout, for recording the answer) is
	// released instead of run, so that no check runs twice.
	Lease time.Duration
	// CheckTimeout bounds the provider calls of one check. Defaults to 20s.
	CheckTimeout time.Duration
	// Batch is how many checks one claim takes. Defaults to 64.
	Batch int
	// Budget is how long one Sweep goes on claiming new batches; the checks it has claimed then
	// finish. Defaults to 30s. A backlog larger than a sweep can take is left to the next sweeps
	// (of this or another process).
	Budget time.Duration
	// MaxPerSecond caps the checks this Reconciler starts per second, over all apps, so that a
	// backlog (after downtime, or of many unpaid orders) drains steadily instead of taking the
	// machine from the notification path. 0 means no cap (paynotify reconcile's one pass).
	MaxPerSecond float64
	// OnCheck, if set, is called after each check with its outcome (tests, metrics).
	OnCheck func(c *Check, res *CheckResult, err error)

	pace pacer
	mu   sync.Mutex
	apps map[string]*appLimiter
	// unknownLogged is when a check of an app this process does not know was last logged, per
	// app (the apps of the database's rows: few).
	unknownLogged map[string]time.Time
	// unknownCounted is when the due checks of the apps the config lacks were last counted
	// (warnUnknownApps).
	unknownCounted time.Time
	draining       atomic.Bool
	drained        chan struct{} // closed by Drain (drainedC)
	// streaks counts the provider-unavailable failures in a row of each check whose last try
	// failed so (failedAgain): a check that keeps failing while the app's other checks answer
	// (which end the app's backoff) backs off on its own.
	streaks map[checkID]streak
}

// checkID names a check's row: a kind, an app, an order and, for a refund, its request number.
type checkID struct {
	kind                          CheckKind
	app, outTradeNo, outRequestNo string
}

// streak is one check's provider-unavailable failures in a row, when the last was, and the
// check's query count then (Check.Checks): an answer counts, a failure does not, so a count that
// moved says the check was answered since, by another process (a reviewer helper's finding: its
// streak went on).
type streak struct {
	n      int
	at     time.Time
	checks int
}

// maxStreaks bounds Reconciler.streaks: past it, the streaks older than maxCheckBackoff's double
// are forgotten, then one at random, so that an outage of every pending order of a large app
// holds at most this many (a check whose streak is forgotten starts again from 1 s, under its
// app's backoff).
const maxStreaks = 10000

// maxCheckBackoff is the longest a check backs off on its own, as its app does (unavailable).
const maxCheckBackoff = 5 * time.Minute

// appLimiter is one app's share of the provider: a semaphore and a backoff.
type appLimiter struct {
	sem     chan struct{}
	backoff time.Duration
	until   time.Time
}

// SweepStats counts what one Sweep did.
type SweepStats struct {
	// Checked counts the checks that asked the provider and got an answer.
	Checked int
	// Released counts the claims given back unchecked: their app began backing off after they
	// were claimed (an app backing off is not claimed), or they could not start in time, or the
	// sweep was stopped, or the check asked nobody.
	Released int
	// Errors counts the checks that failed (provider unavailable, store errors).
	Errors int
}

func (r *Reconciler) lease() time.Duration {
	if r.Lease > 0 {
		return r.Lease
	}
	return 45 * time.Second
}

// startWindow is how long after its claim a check may still start: its provider calls
// (checkTimeout) and the recording of their answer (applyTimeout) must end within the lease. A
// lease too short for both leaves half of it, rather than none.
func (r *Reconciler) startWindow() time.Duration {
	if w := r.lease() - r.checkTimeout() - applyTimeout; w > 0 {
		return w
	}
	return r.lease() / 2
}

func (r *Reconciler) checkTimeout() time.Duration {
	if r.CheckTimeout > 0 {
		return r.CheckTimeout
	}
	return 20 * time.Second
}

func (r *Reconciler) batch() int {
	n := 64
	if r.Batch > 0 {
		n = r.Batch
	}
	if r.MaxPerSecond > 0 {
		// Claim no more than can start within a few seconds: the rest stay due for the next claim.
		n = min(n, max(1, int(5*r.MaxPerSecond)))
	}
	return n
}

// pacer spaces events at least every apart, in real time.
type pacer struct {
	mu   sync.Mutex
	next time.Time
}

// wait returns when the next event may start, or false when ctx ends or stop is closed first.
func (p *pacer) wait(ctx context.Context, every time.Duration, stop <-chan struct{}) bool {
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	p.next = p.next.Add(every)
	p.mu.Unlock()
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}

func (r *Reconciler) budget() time.Duration {
	if r.Budget > 0 {
		return r.Budget
	}
	return 30 * time.Second
}

func (r *Reconciler) log() *slog.Logger { return r.Service.logger() }

// Drain makes every Sweep stop claiming: the checks already started finish, those claimed but
// not started (waiting for their app's concurrency) are given back, due at once, and later
// sweeps return at once. Call it when a graceful shutdown begins.
func (r *Reconciler) Drain() {
	c := r.drainedC()
	if !r.draining.Swap(true) {
		close(c)
	}
}

// drainedC returns the channel Drain closes.
func (r *Reconciler) drainedC() chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.drained == nil {
		r.drained = make(chan struct{})
	}
	return r.drained
}

func (r *Reconciler) limiter(app string) *appLimiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.apps == nil {
		r.apps = make(map[string]*appLimiter)
	}
	l := r.apps[app]
	if l == nil {
		n := DefaultReconcile.Concurrency
		if a := r.Service.Apps[app]; a != nil {
			n = a.Reconcile.WithDefaults().Concurrency
		}
		l = &appLimiter{sem: make(chan struct{}, n)}
		r.apps[app] = l
	}
	return l
}

// backingOff returns the end of app's backoff, if it is backing off at now.
func (r *Reconciler) backingOff(app string, now time.Time) (time.Time, bool) {
	l := r.limiter(app)
	r.mu.Lock()
	defer r.mu.Unlock()
	return l.until, now.Before(l.until)
}

// releaseAfterBackoff is when a check of app released because the app is backing off until
// until falls due again: spread over a quarter of the app's backoff past its end, so that the
// app's queue does not fall due in one instant when it ends.
func (r *Reconciler) releaseAfterBackoff(app string, until time.Time) time.Time {
	l := r.limiter(app)
	r.mu.Lock()
	spread := l.backoff / 4
	r.mu.Unlock()
	if spread <= 0 {
		return until
	}
	return until.Add(rand.N(spread))
}

// unavailable backs app off: from 1s, doubling to 5 minutes, with ±50% jitter. It returns when
// the app's checks are due again.
func (r *Reconciler) unavailable(app string, now time.Time) time.Time {
	l := r.limiter(app)
	r.mu.Lock()
	defer r.mu.Unlock()
	l.backoff = min(max(2*l.backoff, time.Second), 5*time.Minute)
	jittered := time.Duration(float64(l.backoff) * (0.5 + rand.Float64()))
	if until := now.Add(jittered); until.After(l.until) {
		l.until = until
	}
	return l.until
}

// failedAgain records that check c failed again because its provider was unavailable, and
// returns when it may be tried again on its own account: from 1s, doubling to maxCheckBackoff,
// with ±50% jitter. An app's backoff ends with any answer of the app, so that one order whose
// query keeps failing (a provider's system error about that trade, a timeout of its answer)
// while the app's other checks answer was otherwise tried again at every sweep, for as long as
// it stayed due (a reviewer's finding).
//
// counted says the failure was counted (a query answered before what failed, checkClosed): the
// count it leaves is c.Checks+1, and only a count other than that says another process answered
// (a reviewer helper's finding: the streak restarted at each of its own counted failures).
func (r *Reconciler) failedAgain(c *Check, now time.Time, counted bool) time.Time {
	id := checkID{c.Kind, c.App, c.OutTradeNo, c.OutRequestNo}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.streaks == nil {
		r.streaks = make(map[checkID]streak)
	}
	st, ok := r.streaks[id]
	if !ok && len(r.streaks) >= maxStreaks {
		for k, v := range r.streaks {
			if now.Sub(v.at) > 2*maxCheckBackoff {
				delete(r.streaks, k)
			}
		}
		for k := range r.streaks {
			if len(r.streaks) < maxStreaks {
				break
			}
			delete(r.streaks, k) // map order: one at random
		}
	}
	if ok && st.checks != c.Checks {
		st = streak{}
	}
	left := c.Checks
	if counted {
		left++
	}
	st = streak{n: st.n + 1, at: now, checks: left}
	r.streaks[id] = st
	d := maxCheckBackoff
	if st.n <= 9 { // 1s<<8 = 256s; 1s<<9 would pass maxCheckBackoff
		d = min(time.Second<<(st.n-1), maxCheckBackoff)
	}
	return now.Add(time.Duration(float64(d) * (0.5 + rand.Float64())))
}

// forget ends check c's streak of failures (failedAgain): it was answered, or failed otherwise.
func (r *Reconciler) forget(c *Check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.streaks, checkID{c.Kind, c.App, c.OutTradeNo, c.OutRequestNo})
}

// answered resets app's backoff.
func (r *Reconciler) answered(app string) {
	l := r.limiter(app)
	r.mu.Lock()
	defer r.mu.Unlock()
	l.backoff, l.until = 0, time.Time{}
}

// warnUnknownApps warns, at most once an hour, about the apps this process's config lacks whose
// checks are due: its sweeps leave them (claimableApps), to a process that has the app; when
// none has (an app dropped or renamed in the config), its orders are neither queried nor closed
// at expiry, and this line is what says so (a reviewer's finding: it went silent).
func (r *Reconciler) warnUnknownApps(ctx context.Context) {
	now := r.Service.now()
	r.mu.Lock()
	due := r.unknownCounted.IsZero() || now.Sub(r.unknownCounted) >= unknownAppRetry || now.Before(r.unknownCounted)
	if due {
		r.unknownCounted = now
	}
	r.mu.Unlock()
	if !due {
		return
	}
	// Due for an hour and not claimed since: nobody serves them (a process that has the app
	// claims its checks as they fall due, which moves them; a reviewer's finding: counted at
	// now, an instance without an app another serves warned hourly for nothing).
	known := make([]string, 0, len(r.Service.Apps))
	for name := range r.Service.Apps {
		known = append(known, name)
	}
	counts, err := r.Service.Store.CountDueChecks(ctx, now.Add(-unknownAppRetry), known)
	if err != nil {
		if ctx.Err() == nil {
			r.log().Warn("reconcile: count the due checks", "err", err)
		}
		return
	}
	apps := make([]string, 0, len(counts))
	for app := range counts {
		apps = append(apps, app)
	}
	slices.Sort(apps)
	for _, app := range apps {
		r.log().Warn("checks of an app this process's config does not have have been due for over an hour, claimed by no process: its orders are neither queried nor closed at expiry (logged once an hour)",
			"app", app, "due", counts[app])
	}
}

// claimableApps is the names of the apps whose checks a sweep claims at now
// (CheckStore.ClaimChecksOf): those of this process's config that it is not backing off. The
// others' checks are left in the shared schedule as they are, to the processes that have the app
// or reach its provider (a rolling deploy that adds an app; one instance's broken route to a
// provider), or due until the app is back or answers again. Claimed and given back a batch per
// sweep, they held the other apps' checks back (a reviewer helper's finding: 70 s behind 1,000
// of a down app's, 20 s behind 200 of an unknown app's); deferring an app's whole queue instead
// held back the other instances too (a reviewer's finding on that fix).
func (r *Reconciler) claimableApps(now time.Time) []string {
	apps := make([]string, 0, len(r.Service.Apps))
	for name := range r.Service.Apps {
		if _, off := r.backingOff(name, now); !off {
			apps = append(apps, name)
		}
	}
	slices.Sort(apps)
	return apps
}

// Sweep claims and runs due checks until none is due, its Budget is spent, Drain is called, or
// ctx ends. Checks still claimed when ctx ends are released (due again at once), never left half
// done: a check that has started finishes its store writes on a context of its own.
func (r *Reconciler) Sweep(ctx context.Context) (SweepStats, error) {
	deadline := r.Service.now().Add(r.budget())
	fin := r.newFinisher()
	defer fin.close()
	var stats SweepStats
	var mu sync.Mutex
	add := func(f func(s *SweepStats)) {
		mu.Lock()
		f(&stats)
		mu.Unlock()
	}
	r.warnUnknownApps(ctx)
	for ctx.Err() == nil && !r.draining.Load() && r.Service.now().Before(deadline) {
		claimedAt := r.Service.now()
		claims, err := r.Service.Store.ClaimChecksOf(ctx, claimedAt, r.lease(), r.batch(), r.claimableApps(claimedAt))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return stats, err
		}
		var wg sync.WaitGroup
		backedOff := 0
		for _, c := range claims {
			if until, ok := r.backingOff(c.App, claimedAt); ok {
				// Began backing off since the claim's apps were chosen (another goroutine's check
				// failed): given back after the backoff.
				until = r.releaseAfterBackoff(c.App, until)
				fin.unanswered(c, &until, false)
				add(func(s *SweepStats) { s.Released++ })
				backedOff++
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				l := r.limiter(c.App)
				select {
				case l.sem <- struct{}{}:
				case <-ctx.Done():
					fin.release(c)
					add(func(s *SweepStats) { s.Released++ })
					return
				}
				defer func() { <-l.sem }()
				// Drained meanwhile: the pace's wait ends at once, and the check below gives it back.
				if r.MaxPerSecond > 0 && !r.pace.wait(ctx, time.Duration(float64(time.Second)/r.MaxPerSecond), r.drainedC()) {
					fin.release(c)
					add(func(s *SweepStats) { s.Released++ })
					return
				}
				now := r.Service.now()
				if until, ok := r.backingOff(c.App, now); ok || ctx.Err() != nil || r.draining.Load() || now.Sub(claimedAt) > r.startWindow() {
					// Backing off, stopping (a graceful shutdown drains: what has not started is
					// not started now), or too late to finish within the lease: give it back.
					if ok {
						fin.unanswered(c, &until, false)
					} else {
						fin.release(c)
					}
					add(func(s *SweepStats) { s.Released++ })
					return
				}
				switch r.run(ctx, c, fin) {
				case checkAnswered:
					add(func(s *SweepStats) { s.Checked++ })
				case checkReleased:
					add(func(s *SweepStats) { s.Released++ })
				default:
					add(func(s *SweepStats) { s.Errors++ })
				}
			}()
		}
		wg.Wait()
		if len(claims) < r.batch() || backedOff == len(claims) {
			// A whole batch given back: the next sweep goes on. Claiming on, a sweep ran through
			// an app's whole due queue while its provider was down, claiming and releasing every
			// row with no pacing (a reviewer helper's finding). Apps backing off are not claimed
			// at all (claimableApps), so this is rare.
			break
		}
	}
	return stats, nil
}

// finisher ends a sweep's claims in batches: one transaction (one durable write) for the checks
// that ended in the last flushInterval, instead of one each, so that checks cost the notification
// path's store little. A claim not yet flushed when its process dies falls due at the end of its
// lease, as any.
type finisher struct {
	r     *Reconciler
	mu    sync.Mutex
	buf   []CheckDone
	kick  chan struct{}
	stop  chan struct{}
	ended chan struct{}
}

// flushInterval bounds how long a finished check waits for its batch to be written.
const flushInterval = time.Second

func (r *Reconciler) newFinisher() *finisher {
	f := &finisher{r: r, kick: make(chan struct{}, 1), stop: make(chan struct{}), ended: make(chan struct{})}
	go f.loop()
	return f
}

// add queues the end of claim c, whose check the provider answered.
func (f *finisher) add(c *Check, next *time.Time, counted, attention bool) {
	f.queue(CheckDone{Check: c, Next: next, Counted: counted, Attention: attention})
}

// unanswered queues the end of claim c, whose check got no answer: failed, released or backing
// off. A refund's needs_attention stays as it was.
func (f *finisher) unanswered(c *Check, next *time.Time, counted bool) {
	f.queue(CheckDone{Check: c, Next: next, Counted: counted, KeepAttention: true})
}

func (f *finisher) queue(d CheckDone) {
	f.mu.Lock()
	f.buf = append(f.buf, d)
	full := len(f.buf) >= 64
	f.mu.Unlock()
	if full {
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

// release gives a claim back unchecked, due at once.
func (f *finisher) release(c *Check) {
	now := f.r.Service.now()
	f.unanswered(c, &now, false)
}

func (f *finisher) loop() {
	defer close(f.ended)
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-f.kick:
		case <-f.stop:
			f.flush()
			return
		}
		f.flush()
	}
}

// flush writes what is queued, on a context of its own: a sweep that is stopping still records
// what it did.
func (f *finisher) flush() {
	f.mu.Lock()
	done := f.buf
	f.buf = nil
	f.mu.Unlock()
	if len(done) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.r.Service.Store.FinishChecks(ctx, done); err != nil {
		f.r.log().Error("finish checks", "checks", len(done), "err", err)
	}
}

// close flushes what is left and stops the finisher.
func (f *finisher) close() {
	close(f.stop)
	<-f.ended
}

// abnormalEvery is how often a refund the provider reports ABNORMAL is asked about again.
const abnormalEvery = 6 * time.Hour

// thenEvery is the slowest pace of app's checks (its policy's then_every), an hour for an app this
// process does not know.
func (r *Reconciler) thenEvery(app string) time.Duration {
	if a := r.Service.Apps[app]; a != nil {
		return a.Reconcile.WithDefaults().ThenEvery
	}
	return time.Hour
}

// errCheckPanicked is the error of a check that panicked (Reconciler.check).
var errCheckPanicked = errors.New("the check panicked (a bug: the log has its stack)")

// check runs the check of c, with a panic inside it (a provider adapter's or the Processor's bug
// on an answer it did not expect) logged with its stack and returned as errCheckPanicked: the
// check runs on a sweep's goroutine, where a panic would end the whole process, notification
// path included, and the claim falling due again after the restart would end it again (a
// reviewer helper's finding).
func (r *Reconciler) check(ctx context.Context, c *Check) (o checkOutcome, res *CheckResult, err error) {
	var wasPending bool // checkRefund's, kept through a panic (CheckDone.WasPending)
	defer func() {
		if p := recover(); p != nil {
			r.log().Error("check panicked", "app", c.App, "out_trade_no", c.OutTradeNo, "out_request_no", c.OutRequestNo,
				"kind", c.Kind, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			o, res, err = checkOutcome{wasPending: wasPending}, nil, fmt.Errorf("%w: %v", errCheckPanicked, p)
		}
	}()
	if c.Kind == CheckRefund {
		return r.checkRefund(ctx, c, &wasPending)
	}
	return r.checkOrder(ctx, c)
}

// run performs one claimed check and finishes its claim. It reports whether the provider
// answered, the check failed, or it was given back unchecked because the sweep is stopping.
func (r *Reconciler) run(ctx context.Context, c *Check, fin *finisher) checkEnd {
	cctx, cancel := context.WithTimeout(ctx, r.checkTimeout())
	defer cancel()
	var (
		o   checkOutcome
		res *CheckResult
		err error
	)
	o, res, err = r.check(cctx, c)
	if err != nil && ctx.Err() != nil && !errors.Is(err, errCheckPanicked) {
		// The sweep is stopping (shutdown): give the check back, due at once, for whoever runs next
		// (a refund settled meanwhile as its settlement wrote it: WasPending, a reviewer's
		// finding).
		now := r.Service.now()
		fin.queue(CheckDone{Check: c, Next: &now, KeepAttention: true, WasPending: o.wasPending})
		return checkReleased
	}
	if err != nil {
		now := r.Service.now()
		next, counted := now.Add(time.Minute), false
		switch {
		case errors.Is(err, errCheckPanicked):
			// A bug, which a minute will not fix: asked again at the schedule's slow pace.
			next = now.Add(r.thenEvery(c.App))
			if c.Kind == CheckOrder {
				if a := r.Service.Apps[c.App]; a != nil {
					ord, gerr := r.Service.Store.GetOrder(ctx, c.App, c.OutTradeNo)
					switch {
					case gerr != nil:
					case ord.Status == StatusPending:
						if at := CloseAt(a.Provider, ord.CreatedAt, ord.ExpiresAt); at.After(now) && at.Before(next) {
							next = at // not past the order's close at expiry
						}
					case ord.Status == StatusClosed && ord.NextCheckAt != nil:
						// checkClosed's retries end, a panic's too (a reviewer helper's finding).
						until := ord.ExpiresAt.Add(LocalCloseWindow)
						o.until = &until
					}
				}
			}
		case ErrorCode(err) == EPROVIDERUNAVAILABLE || errors.Is(err, context.DeadlineExceeded):
			next = r.unavailable(c.App, now)
			if own := r.failedAgain(c, now, o.counted); own.After(next) {
				next = own
			}
			if at := o.closeAt; at != nil && at.After(now) && at.Before(next) {
				next = *at // not past the order's close at expiry
			}
		case ErrorCode(err) == EPROVIDER:
			// A signed refusal (a permission or configuration fault at the provider) will not
			// go away in a minute: asked again at the schedule's pace, and counted, rather than
			// every minute for every pending order of the app.
			next, counted = now.Add(r.thenEvery(c.App)), true
			if at := o.closeAt; at != nil && at.After(now) && at.Before(next) {
				next = *at // not past the order's close at expiry
			}
		}
		if ErrorCode(err) != EPROVIDERUNAVAILABLE && !errors.Is(err, context.DeadlineExceeded) {
			r.forget(c) // a streak is of unavailable failures in a row
		}
		counted = counted || o.counted // a query answered before what failed (checkClosed)
		if errors.Is(err, errLocalCloseUnconfirmed) {
			r.answered(c.App) // the provider answered, with nothing verified: not an outage
		}
		retry := &next
		if u := o.until; u != nil {
			switch {
			case !now.Before(*u):
				retry = nil
				r.log().Error("check failed, and its retries are over: look at it in the provider's portal", "app", c.App,
					"out_trade_no", c.OutTradeNo, "kind", c.Kind, "err", err)
			case next.After(*u):
				next = *u
			}
		}
		if retry != nil {
			r.log().Warn("check failed", "app", c.App, "out_trade_no", c.OutTradeNo, "out_request_no", c.OutRequestNo, "kind", c.Kind, "err", err, "retry_at", next)
		}
		fin.queue(CheckDone{Check: c, Next: retry, Counted: counted, KeepAttention: true, WasPending: o.wasPending})
	} else if o.unasked {
		r.forget(c)
		fin.queue(CheckDone{Check: c, Next: o.next, Counted: o.counted, KeepAttention: true, WasPending: o.wasPending})
		if r.OnCheck != nil {
			r.OnCheck(c, res, err)
		}
		return checkReleased // nobody was asked: not "checked" (a reviewer helper's finding)
	} else {
		r.answered(c.App)
		r.forget(c)
		fin.queue(CheckDone{Check: c, Next: o.next, Counted: o.counted, Attention: o.attention, WasPending: o.wasPending})
	}
	if r.OnCheck != nil {
		r.OnCheck(c, res, err)
	}
	if err != nil {
		return checkFailed
	}
	return checkAnswered
}

// closeRetryAfter is how long after a failed close at expiry (a signed refusal, an answer that
// disagrees with the order) it is tried again, age after the close was due: then_every at first,
// then a quarter of age, up to maxCloseRetry, never less than then_every. Tried every then_every
// for as long as it failed, an order whose trade was paid with another amount was closed and
// queried 144 times a day, each answer an evidence record, until someone settled it (a reviewer
// helper's finding).
func closeRetryAfter(thenEvery, age time.Duration) time.Duration {
	return max(thenEvery, min(maxCloseRetry, age/4))
}

// maxCloseRetry is the longest wait between two tries of a close at expiry that fails (as a
// refund the provider reports ABNORMAL is asked about).
const maxCloseRetry = 6 * time.Hour

// checkEnd is how run ended a check, as SweepStats counts it.
type checkEnd int

const (
	checkAnswered checkEnd = iota // Checked: the provider answered
	checkReleased                 // Released: given back unchecked (the sweep stopping)
	checkFailed                   // Errors
)

// checkOutcome is how a check ends its claim.
type checkOutcome struct {
	next      *time.Time
	counted   bool
	attention bool
	// unasked: the check was given back without asking (an app this process does not know): a
	// refund's needs_attention stays as it was.
	unasked bool
	// closeAt is, for a pending order's check that failed, when it is to be closed (the retry
	// must not pass it).
	closeAt *time.Time
	// until is, for a check that failed, when its retries end (checkClosed's LocalCloseWindow):
	// the retry does not pass it, and a check failing at or after it is not asked again.
	until *time.Time
	// wasPending: a refund's check that read the refund pending (CheckDone.WasPending).
	wasPending bool
}

// unknownAppRetry is how far ahead the check of an app this process does not know is given back:
// another instance may know it (a rolling deploy that adds the app), or the app comes back to the
// config. Dropping its schedule would stop its checks and its close at expiry for good.
const unknownAppRetry = time.Hour

// errLocalCloseUnconfirmed: the checks of an order closed locally ended, past LocalCloseWindow,
// without a verified answer (checkClosed).
var errLocalCloseUnconfirmed = errors.New("paynotify: order closed locally could not be confirmed with the provider: look for a payment in its portal")

// errUnknownApp: the check is of an app this process's config does not have.
var errUnknownApp = errors.New("paynotify: check of an app this process does not know")

// target loads what a check is about: its app and order. A nil order (gone) ends the check with no
// next one; an app this process does not know is errUnknownApp (see unknownAppOutcome).
func (r *Reconciler) target(ctx context.Context, c *Check) (*App, *Order, error) {
	a := r.Service.Apps[c.App]
	if a == nil {
		if r.logUnknownApp(c.App) {
			r.log().Warn("checks of an app this process does not know are given back for an hour (logged once an hour per app)",
				"app", c.App, "out_trade_no", c.OutTradeNo)
		}
		return nil, nil, errUnknownApp
	}
	o, err := r.Service.Store.GetOrder(ctx, a.Name, c.OutTradeNo)
	if ErrorCode(err) == ENOTFOUND {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, err
	}
	return a, o, nil
}

// logUnknownApp reports whether a check of app, which this process does not know, is to be logged:
// once an hour per app. Each of an app's pending orders is given back every hour: a line each
// filled the log of a process whose config dropped an app with many (a reviewer helper's finding).
func (r *Reconciler) logUnknownApp(app string) bool {
	now := r.Service.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if at, ok := r.unknownLogged[app]; ok && now.Sub(at) < unknownAppRetry {
		return false
	}
	if r.unknownLogged == nil {
		r.unknownLogged = map[string]time.Time{}
	}
	r.unknownLogged[app] = now
	return true
}

// unknownAppOutcome gives the check back, unchanged and uncounted, unknownAppRetry from now.
func (r *Reconciler) unknownAppOutcome() checkOutcome {
	next := r.Service.now().Add(unknownAppRetry)
	return checkOutcome{next: &next, unasked: true}
}

// checkOrder queries a pending order, or closes it once it is past its expiry, or asks once more
// about an order closed by a close of our own (checkClosed).
func (r *Reconciler) checkOrder(ctx context.Context, c *Check) (checkOutcome, *CheckResult, error) {
	s := r.Service
	a, o, err := r.target(ctx, c)
	if errors.Is(err, errUnknownApp) {
		return r.unknownAppOutcome(), nil, nil
	}
	if a == nil || o == nil {
		return checkOutcome{}, nil, err
	}
	now := s.now()
	if o.Status == StatusClosed && o.NextCheckAt != nil {
		return r.checkClosed(ctx, a, o, now)
	}
	if o.Status != StatusPending {
		return checkOutcome{}, &CheckResult{Order: o}, nil
	}
	if closeAt := CloseAt(a.Provider, o.CreatedAt, o.ExpiresAt); !now.Before(closeAt) {
		closed, err := s.closeOrder(ctx, a, o)
		if errors.Is(err, ErrNoCloseService) {
			closed, err = s.expireLocally(ctx, a, o)
		}
		switch {
		case err == nil, ErrorCode(err) == ECONFLICT && closed != nil:
			// Closed, or found paid while closing (then the payment was applied). A close of our
			// own keeps its check once more (checkClosed).
			r.log().Info("expired order closed", "app", a.Name, "out_trade_no", o.OutTradeNo, "status", closed.Status)
			return checkOutcome{next: closed.NextCheckAt}, &CheckResult{Order: closed}, nil
		case ErrorCode(err) == EPROVIDER || ErrorCode(err) == ECONFLICT:
			// A signed refusal, or an answer that disagrees with the order (a payment of another
			// amount): someone must look; ask again later, less often as the close gets older.
			next := now.Add(closeRetryAfter(a.Reconcile.WithDefaults().ThenEvery, now.Sub(closeAt)))
			r.log().Error("expired order could not be closed", "app", a.Name, "out_trade_no", o.OutTradeNo, "err", err, "retry_at", next)
			return checkOutcome{next: &next}, nil, nil
		default:
			return checkOutcome{}, nil, err
		}
	}
	res, err := s.CheckOrder(ctx, a, o, false)
	switch {
	case errors.Is(err, ErrNoQueryService):
		next := CloseAt(a.Provider, o.CreatedAt, o.ExpiresAt)
		return checkOutcome{next: &next}, nil, nil
	case err != nil:
		at := CloseAt(a.Provider, o.CreatedAt, o.ExpiresAt)
		return checkOutcome{closeAt: &at}, nil, err
	}
	out := checkOutcome{counted: true}
	switch {
	case res.Order.Status == StatusPending:
		next := a.Reconcile.NextOrderCheck(a.Provider, res.Order, c.Checks+1, now)
		out.next = &next
	case res.Order.Status == StatusClosed && res.Order.NextCheckAt != nil:
		// Closed by a close of our own while this check ran: its check once more is kept.
		next := LocalCloseCheckAt(res.Order, now)
		out.next = &next
	}
	return out, res, nil
}

// checkClosed is the check of an order closed by a close of our own (Fact.Local: the provider
// did not know its trade), asked about once more after its expiry (LocalCloseCheckAt): a payment
// made before the expiry the provider enforces, whose notification was lost, is found and
// applied (a payment after close: late_payment). A check that comes before that time (a claim
// of the pending order that a local close overtook) gives the order back to it. An answer that
// does not verify, a provider that does not answer or refuses, and a trade still open (which is
// then closed at the provider, as at a pending order's expiry) are asked about again at the
// schedule's pace until LocalCloseWindow after the expiry.
func (r *Reconciler) checkClosed(ctx context.Context, a *App, o *Order, now time.Time) (checkOutcome, *CheckResult, error) {
	if at := o.ExpiresAt.Add(LocalCloseGrace); now.Before(at) {
		return checkOutcome{next: &at, unasked: true}, &CheckResult{Order: o}, nil
	}
	log := r.log().With("app", a.Name, "out_trade_no", o.OutTradeNo)
	until := o.ExpiresAt.Add(LocalCloseWindow)
	// again asks about the order again at the schedule's pace, until the window ends; past it
	// the check fails, and run logs that its retries are over.
	again := func(why string) (checkOutcome, error) {
		if !now.Before(until) {
			return checkOutcome{until: &until, counted: true}, fmt.Errorf("%w: %s", errLocalCloseUnconfirmed, why)
		}
		next := now.Add(r.thenEvery(a.Name))
		if next.After(until) {
			next = until
		}
		log.Warn("order closed locally asked about again", "why", why, "retry_at", next)
		return checkOutcome{next: &next, counted: true}, nil
	}
	res, err := r.Service.CheckOrder(ctx, a, o, false)
	switch {
	case errors.Is(err, ErrNoQueryService):
		return checkOutcome{}, &CheckResult{Order: o}, nil
	case err != nil:
		return checkOutcome{until: &until}, nil, err
	case res.Verdict == VerdictRejected:
		// Nothing verified was said: not an answer (a reviewer helper's finding).
		out, err := again("the answer was rejected: " + res.Reason)
		return out, res, err
	case res.Order != nil && res.Order.Status != StatusClosed:
		log.Warn("order closed locally found paid at the provider", "status", res.Order.Status)
		return checkOutcome{counted: true}, res, nil
	case res.Fact == nil && !res.NotFound:
		// The trade exists at the provider and is still open (its expiry not enforced yet, or a
		// clock apart from ours): closed there now, as a pending order at its expiry.
		// A close or an apply that fails is the check's failure, as a query's: run gives it back
		// at shutdown, backs off an unreachable provider (a reviewer helper's finding).
		f, cerr := a.Gateway.Close(ctx, o)
		if cerr != nil {
			return checkOutcome{until: &until, counted: true}, nil, fmt.Errorf("the trade is open at the provider (%s), and closing it failed: %w", res.State, cerr)
		}
		applied, cerr := r.Service.applyAnswered(ctx, a, f, nil)
		switch {
		case cerr != nil:
			return checkOutcome{until: &until, counted: true}, nil, fmt.Errorf("the trade is open at the provider (%s); its close's answer was not applied: %w", res.State, cerr)
		case applied.Verdict == VerdictAnomaly && !Acknowledged(applied.Reason) || applied.Order == nil:
			out, err := again(fmt.Sprintf("the trade is open at the provider (%s); its close's answer disagrees with the order: %s", res.State, applied.Reason))
			return out, res, err
		}
		if applied.Order.Status != StatusClosed {
			log.Warn("order closed locally found paid at the provider while closing its trade", "status", applied.Order.Status)
		}
		return checkOutcome{counted: true}, &CheckResult{Order: applied.Order, State: res.State, Fact: &f, Verdict: applied.Verdict, Reason: applied.Reason}, nil
	}
	return checkOutcome{counted: true}, res, nil
}

// checkRefund settles a pending refund, or confirms the amount of a succeeded one.
func (r *Reconciler) checkRefund(ctx context.Context, c *Check, wasPendingP *bool) (out checkOutcome, _ *CheckResult, _ error) {
	s := r.Service
	var wasPending bool
	defer func() { out.wasPending = wasPending }()
	a, o, err := r.target(ctx, c)
	if errors.Is(err, errUnknownApp) {
		return r.unknownAppOutcome(), nil, nil
	}
	if a == nil || o == nil {
		return checkOutcome{}, nil, err
	}
	rf, err := s.refund(ctx, a.Name, c.OutTradeNo, c.OutRequestNo)
	if ErrorCode(err) == ENOTFOUND {
		return checkOutcome{}, nil, nil
	} else if err != nil {
		return checkOutcome{}, nil, err
	}
	if rf.Status == RefundFailed {
		return checkOutcome{}, &CheckResult{Order: o, Refund: rf}, nil
	}
	wasPending = rf.Status == RefundPending
	*wasPendingP = wasPending // a panic below ends this call without its outcome (check)
	now := s.now()
	res, err := s.CheckRefund(ctx, a, o, rf, false)
	switch {
	case errors.Is(err, ErrNoQueryService):
		return checkOutcome{}, nil, nil
	case err != nil && ErrorCode(err) == EPROVIDER:
		// A signed refusal: of the refund asked for again (then it is failed now), or of the
		// query. Either way the provider answered: the refund as it now stands decides.
		res = &CheckResult{Order: o, Refund: s.currentRefund(ctx, rf)}
	case err != nil && res != nil && res.NotFound && ctx.Err() == nil:
		// The provider answered the query (no such refund); asking for it again failed with an
		// unknown outcome (WeChat Pay's NOT_ENOUGH, Alipay's ACQ.SELLER_BALANCE_NOT_ENOUGH, or
		// the request lost). Not an outage of the app: the refund stays pending and is checked
		// on its schedule, and needs attention at the end of its window, instead of being asked
		// for again at the outage backoff's pace for ever (a reviewer helper's finding).
		r.log().Warn("refund asked for again failed", "app", a.Name, "out_trade_no", o.OutTradeNo,
			"out_request_no", rf.OutRequestNo, "err", err)
		res.Refund = s.currentRefund(ctx, rf)
	case err != nil:
		return checkOutcome{}, nil, err
	}
	out = checkOutcome{counted: true}
	switch cur := res.Refund; {
	case cur != nil && cur.Status == RefundPending && res.Reason == ReasonRefundAbnormal:
		// WeChat Pay's ABNORMAL: someone must settle it in the merchant platform, now, not at
		// the end of the window (a reviewer helper's finding). Asked every abnormalEvery for as
		// long as it stays pending, so that its settlement is seen: a person settles it in hours
		// or days, and each answer is an evidence record (hourly, they filled the inbox's 100).
		out.attention = true
		next := now.Add(max(abnormalEvery, a.Reconcile.WithDefaults().ThenEvery))
		out.next = &next
		r.log().Warn("refund ABNORMAL at the provider: settle it in the merchant platform", "app", a.Name, "out_trade_no", o.OutTradeNo,
			"out_request_no", rf.OutRequestNo)
	case cur != nil && cur.Status == RefundPending:
		next, ok := a.Reconcile.NextRefundCheck(cur.CreatedAt, c.Checks+1, now)
		if ok {
			out.next = &next
		} else {
			out.attention = true
			r.log().Error("refund still pending after its checks: needs attention", "app", a.Name, "out_trade_no", o.OutTradeNo,
				"out_request_no", rf.OutRequestNo, "created_at", rf.CreatedAt)
		}
	case rf.Status == RefundSucceeded && cur != nil && cur.Status == RefundSucceeded && cur.NextCheckAt != nil:
		// An inferred amount the answer did not confirm (rejected, about another refund, or no
		// such refund). A refund without a next check counts as certain (Processor.load): it is
		// asked about again on its schedule and, after its window, at the policy's slowest pace,
		// needing attention, until an answer confirms it (a reviewer helper's finding: a rejected
		// confirmation made the inferred amount certain, and the order's total too high).
		next, ok := a.Reconcile.NextRefundCheck(cur.CreatedAt, c.Checks+1, now)
		if !ok {
			next, out.attention = now.Add(a.Reconcile.WithDefaults().ThenEvery), true
			r.log().Error("refund amount still unconfirmed after its checks: needs attention", "app", a.Name, "out_trade_no", o.OutTradeNo,
				"out_request_no", rf.OutRequestNo, "amount", int64(cur.Amount), "created_at", cur.CreatedAt)
		}
		out.next = &next
	}
	return out, res, nil
}
