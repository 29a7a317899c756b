// Package webhook delivers the event log to the merchant's systems: Standard Webhooks over HTTPS
// to the endpoints of the API, and optionally NATS JetStream (docs/webhooks.md).
//
// The event log is the outbox. A Dispatcher fans new events out to each endpoint by its cursor
// (WebhookStore.FanOutWebhooks), claims the due deliveries with a lease, in order per order,
// sends them with a bounded number in flight per endpoint, and ends the claims in batches. Several
// processes can run one each on the same database: the cursors are compared and set, the claims
// are leased, and a process killed mid-delivery leaves its claims due again at the end of the
// lease (the receiver may then see the same webhook-id twice; it never misses one).
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paynotify/paynotify"
)

// Schedule is the delay before each retry; a delivery is given up after its last retry (about
// three days after the first attempt). Each delay gets ±20 % jitter.
var Schedule = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute,
	30 * time.Minute, time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour, 24 * time.Hour}

// Limits of delivery (docs/webhooks.md).
const (
	// gather is how long a dispatcher woken by commits waits for more before its round: at most
	// 20 fan-outs a second, however many commits (on SQLite each is a write beside the
	// notification path's).
	gather = 50 * time.Millisecond
	// flushEvery is how long results wait to be recorded together (one transaction).
	flushEvery = 50 * time.Millisecond
	// claimTimeout bounds a claim, which the stop does not cancel (serve gives its jobs 25 s).
	claimTimeout = 10 * time.Second
	// MaxRetryAfter caps how long a Retry-After answer can delay the next attempt.
	MaxRetryAfter = time.Hour
	// DisableAfter is how long an endpoint may fail every attempt before it is disabled.
	DisableAfter = 5 * 24 * time.Hour
	// MaxResponse is how much of an answer's body an attempt keeps.
	MaxResponse = 4096
	// MaxError is how much of an attempt's error (which may quote the receiver's status line)
	// is kept, in bytes.
	MaxError = 1024
)

// Config tunes a Dispatcher; zero fields take the defaults.
type Config struct {
	// Concurrency is the number of deliveries in flight per endpoint and process (default 8).
	Concurrency int
	// Timeout bounds one attempt (default 10 s).
	Timeout time.Duration
	// Poll is how often the dispatcher looks for new events and due retries without being woken
	// (default 1 s): events committed by other processes are delivered within it.
	Poll time.Duration
	// Lease is how long a claim holds a delivery (default 1 min): a process killed with claims
	// leaves them due again after it. A claimed delivery waits in its endpoint's queue of
	// 4×Concurrency, so the lease covers 4 attempts that time out, and one more.
	Lease time.Duration
	// Batch is the number of events read per endpoint per fan-out (default 500).
	Batch int
	// Schedule is the delay before each retry (default the package's Schedule).
	Schedule []time.Duration
	// AllowHTTP lets deliveries go to http:// URLs (webhooks.allow_http); checked at each
	// attempt, so that turning it off stops an endpoint saved while it was on.
	AllowHTTP bool
}

func (c *Config) defaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.Lease <= 0 {
		c.Lease = time.Minute
	}
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.Schedule == nil {
		c.Schedule = Schedule
	}
}

// Publisher publishes one event to a message stream (the NATS sink).
type Publisher interface {
	Publish(ctx context.Context, app string, typ paynotify.EventType, eventID string, payload []byte) error
}

// Dispatcher delivers events. Start it with Run; Wake hurries it after a commit.
type Dispatcher struct {
	Store  paynotify.Store
	Config Config
	// Client sends the HTTP deliveries; NewClient's, with the networks the config allows.
	Client *http.Client
	// NATS, if set, receives the deliveries of the endpoint of kind EndpointNATS.
	NATS   Publisher
	Logger *slog.Logger
	// Now returns the current time; defaults to time.Now.
	Now func() time.Time
	// Metrics, if set, is told of every attempt and of every endpoint this dispatcher disables.
	Metrics Metrics

	once sync.Once
	wake chan struct{}
	// fresh is set by Wake (events were committed): the next round fans out; a round woken
	// only to claim (a queue running low, results recorded) does not.
	fresh atomic.Bool
	// refill is set when a queue runs low or results were recorded: the next round goes at once,
	// without gathering commits first, so that a steady stream of commits (each a Wake) cannot
	// hold the claims back by the gathering delay every round.
	refill   atomic.Bool
	results  chan paynotify.WebhookResult
	mu       sync.Mutex
	lanes    map[string]*lane
	sems     map[string]chan struct{} // by endpoint: lane.sem
	stopping atomic.Bool
}

// Metrics receives the dispatcher's measurements (metrics.Prometheus implements it).
type Metrics interface {
	// Attempt is called after each attempt with the endpoint's kind (EndpointHTTP, EndpointNATS)
	// and its outcome: OutcomeDelivered, OutcomeRetry or OutcomeFailed (given up, or 410 Gone).
	Attempt(kind, outcome string, status int, took time.Duration)
	// EndpointDisabled is called when this dispatcher disabled an endpoint, with why:
	// DisabledGone (410) or DisabledFailing (DisableAfter of failed attempts).
	EndpointDisabled(cause string)
}

// The outcomes and disabling causes Metrics is told of.
const (
	OutcomeDelivered = "delivered"
	OutcomeRetry     = "retry"
	OutcomeFailed    = "failed"
	DisabledGone     = "gone"
	DisabledFailing  = "failing"
)

// QueueDepth returns how many claimed deliveries wait in this process's queues for a worker.
func (d *Dispatcher) QueueDepth() int {
	d.init()
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, l := range d.lanes {
		n += len(l.queue)
	}
	return n
}

// lane is the queue and workers of one endpoint.
type lane struct {
	// sem bounds the endpoint's attempts in flight to Config.Concurrency. It is the endpoint's,
	// not the lane's: a lane retired while its workers still send (a disable) and started again
	// (an enable) shares it, or the two sets of workers sent up to twice the bound at once (a
	// reviewer helper's finding).
	sem      chan struct{}
	mu       sync.Mutex
	endpoint *paynotify.WebhookEndpoint // the latest known state
	queue    chan queued
	gone     bool
	// dirty: deliveries may have become claimable since the last claim came back short.
	dirty atomic.Bool
}

// queued is a claimed delivery in a lane's queue, with the endpoint's UpdatedAt as the lane knew
// it when the claim was made.
type queued struct {
	dl   *paynotify.WebhookDelivery
	seen time.Time
}

func (l *lane) current() *paynotify.WebhookEndpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.endpoint
}

func (d *Dispatcher) init() {
	d.once.Do(func() {
		d.Config.defaults()
		d.wake = make(chan struct{}, 1)
		d.results = make(chan paynotify.WebhookResult, 1024)
		d.lanes = map[string]*lane{}
		if d.Logger == nil {
			d.Logger = slog.Default()
		}
		if d.Client == nil {
			d.Client = NewClient(false, d.Config.Timeout)
		}
	})
}

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Wake makes the dispatcher look for new events and due deliveries now. It never blocks.
func (d *Dispatcher) Wake() {
	d.init()
	d.fresh.Store(true)
	d.wakeClaims()
}

// wakeRefill makes the dispatcher claim due deliveries at once, without gathering.
func (d *Dispatcher) wakeRefill() {
	d.refill.Store(true)
	d.wakeClaims()
}

// wakeClaims makes the dispatcher claim due deliveries now, without looking for new events.
func (d *Dispatcher) wakeClaims() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done, then lets the attempts in flight finish (each is bounded by the
// timeout), releases the claimed deliveries not yet attempted, records every result, and returns.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.init()
	var workers sync.WaitGroup
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		d.finisher()
	}()
	tick := time.NewTicker(d.Config.Poll)
	defer tick.Stop()
	fanOut, poll := true, true
	for ctx.Err() == nil {
		d.round(ctx, &workers, fanOut, poll)
		select {
		case <-ctx.Done():
		case <-d.wake:
			if d.fresh.Load() && !d.refill.Swap(false) {
				// Gather: the commits of the next few milliseconds share one round (one
				// fan-out and one claim transaction for many events). A wake to refill a
				// queue goes at once.
				select {
				case <-ctx.Done():
				case <-time.After(gather):
				}
			}
			fanOut, poll = d.fresh.Swap(false), false
		case <-tick.C:
			// Events committed by other processes, retries that fell due.
			fanOut, poll = true, true
			d.fresh.Store(false)
		}
	}
	// Stop: close the queues; workers release what they did not start and finish what they did.
	d.stopping.Store(true)
	d.mu.Lock()
	for _, l := range d.lanes {
		close(l.queue)
	}
	d.lanes = map[string]*lane{}
	d.mu.Unlock()
	workers.Wait()
	close(d.results)
	<-finished
	return nil
}

// round fans new events out and fills each endpoint's queue with what is due.
//
// An endpoint is asked for due deliveries only when some may have appeared since its last claim
// came back short: deliveries were added, results of its deliveries were recorded, or on every
// poll (retries that fell due): on SQLite every claim is a write transaction.
func (d *Dispatcher) round(ctx context.Context, workers *sync.WaitGroup, fanOut, poll bool) {
	// Woken by Wake (commits, or deliveries queued through the API) or polling: ask every
	// endpoint.
	fresh := poll || fanOut
	for i := 0; fanOut && i < 20; i++ { // bounded: a long backlog must not starve the claims
		n, err := d.Store.FanOutWebhooks(ctx, d.now(), d.Config.Batch)
		if err != nil {
			if ctx.Err() == nil {
				d.Logger.Error("webhooks: fan out", "err", err)
			}
			break
		}
		if n == 0 {
			break
		}
		fresh = true
	}
	endpoints, err := d.Store.ListWebhookEndpoints(ctx, "")
	if err != nil {
		if ctx.Err() == nil {
			d.Logger.Error("webhooks: list endpoints", "err", err)
		}
		return
	}
	seen := map[string]bool{}
	for _, e := range endpoints {
		seen[e.ID] = true
		if e.Status != paynotify.EndpointEnabled || e.Kind == paynotify.EndpointNATS && d.NATS == nil {
			d.retire(e)
			continue
		}
		l := d.lane(e, workers)
		room := cap(l.queue) - len(l.queue)
		if room < cap(l.queue)/2 || !fresh && !l.dirty.Load() {
			continue
		}
		if ctx.Err() != nil {
			return // stopping: claim nothing more
		}
		l.dirty.Store(false)
		// Not cancelled by the stop: a claim whose answer a cancel cut off may have committed,
		// and its deliveries would then wait out the lease. Bounded well inside serve's stop.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
		claimed, err := d.Store.ClaimWebhookDeliveries(cctx, e.ID, d.now(), d.Config.Lease, room)
		cancel()
		if err == nil && ctx.Err() != nil {
			// The stop came while the claim was answered: release what it took, due at once,
			// rather than queue it for workers that would still start it.
			for _, c := range claimed {
				d.results <- paynotify.WebhookResult{Delivery: c, Status: paynotify.DeliveryPending, Next: ptr(d.now())}
			}
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				d.Logger.Error("webhooks: claim", "endpoint", e.ID, "err", err)
			}
			continue
		}
		for _, c := range claimed {
			l.queue <- queued{dl: c, seen: e.UpdatedAt} // room was checked, and only this goroutine sends
		}
		if len(claimed) == room {
			l.dirty.Store(true) // there may be more
		}
	}
	// A deleted endpoint's lane ends: its workers release what is queued (the deliveries are
	// gone with the endpoint anyway) and exit.
	d.mu.Lock()
	for id, l := range d.lanes {
		if !seen[id] {
			l.mu.Lock()
			l.gone = true
			l.mu.Unlock()
			close(l.queue) // only round sends to it, and Run closes only the lanes left
			delete(d.lanes, id)
			delete(d.sems, id) // deleted: no lane will need it (workers still sending keep theirs)
		}
	}
	d.mu.Unlock()
}

// retire ends the lane of e, an endpoint that takes no deliveries (disabled, or the NATS sink of a
// process without NATS), once its queue is empty: its workers see e as it now stands and release
// what is still queued first. A lane is started again when e is enabled. Kept, every disabled
// endpoint held its workers (8 goroutines and a queue) until deleted (a reviewer helper's
// finding: 200 disabled endpoints, 1,600 goroutines).
func (d *Dispatcher) retire(e *paynotify.WebhookEndpoint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.lanes[e.ID]
	if !ok {
		return
	}
	l.mu.Lock()
	l.endpoint = e
	empty := len(l.queue) == 0 // only round sends to the queue: nothing comes in meanwhile
	if empty {
		l.gone = true
	}
	l.mu.Unlock()
	if empty {
		close(l.queue)
		delete(d.lanes, e.ID)
	}
}

// lane returns the lane of e, starting its workers the first time, with e as its latest state.
func (d *Dispatcher) lane(e *paynotify.WebhookEndpoint, workers *sync.WaitGroup) *lane {
	d.mu.Lock()
	defer d.mu.Unlock()
	l, ok := d.lanes[e.ID]
	if !ok {
		if d.sems == nil {
			d.sems = map[string]chan struct{}{}
		}
		sem := d.sems[e.ID]
		if sem == nil {
			sem = make(chan struct{}, d.Config.Concurrency)
			d.sems[e.ID] = sem
		}
		l = &lane{sem: sem, queue: make(chan queued, 4*d.Config.Concurrency)}
		d.lanes[e.ID] = l
		for range d.Config.Concurrency {
			workers.Add(1)
			go func() {
				defer workers.Done()
				d.work(l)
			}()
		}
	}
	l.mu.Lock()
	l.endpoint, l.gone = e, false
	l.mu.Unlock()
	return l
}

// work sends the deliveries of one lane until its queue is closed. Once the dispatcher stops,
// what is left in the queue is released unsent, due at once, for this or another process.
func (d *Dispatcher) work(l *lane) {
	for q := range l.queue {
		l.sem <- struct{}{} // the endpoint's state is read after: this may wait for an older lane
		d.workOne(l, q)
		<-l.sem
	}
}

// workOne sends, or releases, one queued delivery of l (work).
func (d *Dispatcher) workOne(l *lane, q queued) {
	dl := q.dl
	e := l.current()
	l.mu.Lock()
	gone := l.gone
	l.mu.Unlock()
	// An endpoint changed since this delivery was claimed (disabled and enabled again between
	// two passes, which this lane's snapshot never saw disabled) may have failed the delivery
	// and moved on: it is released, not sent; if its claim still holds it is claimed again
	// against the endpoint as it now stands (a reviewer helper's finding: a quick disable and
	// enable sent, for tens of seconds, deliveries the disable had failed). The endpoint's
	// UpdatedAt as the lane saw it at the claim is compared with what it sees now, not with
	// this process's clock, which another process's may be ahead of (a reviewer's finding).
	changed := !e.UpdatedAt.Equal(q.seen)
	if d.stopping.Load() || gone || e.Status != paynotify.EndpointEnabled || changed {
		d.results <- paynotify.WebhookResult{Delivery: dl, Status: paynotify.DeliveryPending, Next: ptr(d.now())}
		return
	}
	if len(l.queue) < cap(l.queue)/2 {
		l.dirty.Store(true)
		d.wakeRefill() // refill before the queue runs dry
	}
	began := time.Now() // the metric's duration, to the nanosecond (the kept attempt has ms)
	res := d.attemptRecovered(e, dl)
	took := time.Since(began)
	if d.Metrics != nil {
		outcome := OutcomeRetry
		switch res.Status {
		case paynotify.DeliveryDelivered:
			outcome = OutcomeDelivered
		case paynotify.DeliveryFailed:
			outcome = OutcomeFailed
		}
		d.Metrics.Attempt(e.Kind, outcome, res.Attempt.Status, took)
	}
	d.results <- res
}

// attemptRecovered is attempt, with a panic inside it (a sink's bug, a malformed record) logged
// with its stack and kept as a failed attempt, retried on the schedule as any (a panic in a
// worker's goroutine would end the whole process, notification path included, and the delivery
// claimed again after a restart would end it again: a reviewer helper's finding).
func (d *Dispatcher) attemptRecovered(e *paynotify.WebhookEndpoint, dl *paynotify.WebhookDelivery) (res paynotify.WebhookResult) {
	defer func() {
		if p := recover(); p != nil {
			d.Logger.Error("webhooks: attempt panicked", "endpoint", e.ID, "delivery", dl.ID, "event", dl.EventID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			a := &paynotify.WebhookAttempt{ID: paynotify.NewID("wha"), DeliveryID: dl.ID, EndpointID: dl.EndpointID,
				EventID: dl.EventID, EventType: dl.EventType, At: d.now().UTC(), Error: "paynotify failed on this attempt (a bug: its log has the stack)"}
			res = d.failed(e, dl, a, 0)
		}
	}()
	return d.attempt(e, dl)
}

// attempt makes one attempt and decides what follows.
func (d *Dispatcher) attempt(e *paynotify.WebhookEndpoint, dl *paynotify.WebhookDelivery) paynotify.WebhookResult {
	start := d.now()
	a := &paynotify.WebhookAttempt{ID: paynotify.NewID("wha"), DeliveryID: dl.ID, EndpointID: dl.EndpointID,
		EventID: dl.EventID, EventType: dl.EventType, At: start.UTC()}
	var retryAfter time.Duration
	if e.Kind == paynotify.EndpointNATS {
		ctx, cancel := context.WithTimeout(context.Background(), d.Config.Timeout)
		err := d.NATS.Publish(ctx, dl.App, dl.EventType, dl.EventID, dl.Payload)
		cancel()
		if err != nil {
			a.Error = err.Error()
		}
	} else {
		retryAfter = d.post(e, dl, a)
	}
	a.DurationMS = d.now().Sub(start).Milliseconds()
	// The error can hold the receiver's own text (its status line's reason phrase, which Go
	// does not check and which may fill the 64 KiB of a response's header): kept as text any
	// store holds, or PostgreSQL would refuse the whole batch of results it rides in, and at
	// most MaxError bytes, as the answer is kept at most MaxResponse.
	a.Error = paynotify.ClipText(paynotify.StorableText(a.Error), MaxError)
	res := paynotify.WebhookResult{Delivery: dl, Attempt: a}
	switch {
	case a.Error == "" && a.Status/100 == 2 || e.Kind == paynotify.EndpointNATS && a.Error == "":
		res.Status = paynotify.DeliveryDelivered
		return res
	case a.Status == http.StatusGone:
		res.Status, res.Failed = paynotify.DeliveryFailed, true
		d.disable(e, DisabledGone, "the endpoint answered 410 Gone", nil)
		return res
	}
	return d.failed(e, dl, a, retryAfter)
}

// failed is the result of attempt a, which failed: a retry at the schedule's next delay (or
// retryAfter, when longer), or the delivery given up after the schedule's last; and the endpoint
// disabled once every attempt failed for DisableAfter.
func (d *Dispatcher) failed(e *paynotify.WebhookEndpoint, dl *paynotify.WebhookDelivery, a *paynotify.WebhookAttempt, retryAfter time.Duration) paynotify.WebhookResult {
	res := paynotify.WebhookResult{Delivery: dl, Attempt: a, Failed: true}
	n := dl.Attempts + 1 // attempts made, this one included
	if n > len(d.Config.Schedule) {
		res.Status = paynotify.DeliveryFailed
	} else {
		delay := jitter(d.Config.Schedule[n-1])
		if retryAfter > delay {
			delay = retryAfter
		}
		res.Status, res.Next = paynotify.DeliveryPending, ptr(d.now().Add(delay))
	}
	// e was read before the attempt: the store disables only if the endpoint is still failing
	// since then, so that a delivery made meanwhile (by another lane or process) keeps it.
	if now := d.now(); e.FailingSince != nil && now.Sub(*e.FailingSince) >= DisableAfter {
		d.disable(e, DisabledFailing, fmt.Sprintf("every attempt failed since %s", e.FailingSince.UTC().Format(time.RFC3339)),
			ptr(now.Add(-DisableAfter)))
	}
	return res
}

// post sends one HTTP delivery, fills the attempt, and returns the Retry-After asked for (capped).
func (d *Dispatcher) post(e *paynotify.WebhookEndpoint, dl *paynotify.WebhookDelivery, a *paynotify.WebhookAttempt) time.Duration {
	now := d.now()
	ts := now.Unix()
	sig, err := SignatureHeader(e, now, dl.EventID, ts, dl.Payload)
	if err != nil {
		a.Error = "signing: " + err.Error()
		return 0
	}
	if !d.Config.AllowHTTP && !strings.HasPrefix(strings.ToLower(e.URL), "https://") {
		a.Error = "not an https URL, and webhooks.allow_http is off"
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.Config.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(dl.Payload))
	if err != nil {
		a.Error = "request: " + unwrapURLError(err).Error()
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "paynotify-webhooks/1")
	req.Header.Set("webhook-id", dl.EventID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", sig)
	resp, err := d.Client.Do(req)
	if err != nil {
		a.Error = unwrapURLError(err).Error()
		return 0
	}
	defer resp.Body.Close()
	a.Status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
	a.Response = body
	if err != nil && a.Status/100 != 2 {
		a.Error = "reading the answer: " + err.Error()
	}
	// Drain a little more so that the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	if a.Status/100 != 2 && a.Error == "" {
		a.Error = "answered " + resp.Status
	}
	return retryAfter(resp.Header.Get("Retry-After"), now)
}

// retryAfter parses a Retry-After header (seconds or an HTTP date), capped at MaxRetryAfter.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0
		}
		if s > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}

// unwrapURLError drops the *url.Error wrapper, whose message repeats the endpoint's URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return errors.New("timed out")
		}
		return ue.Err
	}
	return err
}

// disable disables e for failing and raises endpoint.disabled, once across processes; with
// failingBefore, only if the endpoint's stored FailingSince is still set and not after it.
func (d *Dispatcher) disable(e *paynotify.WebhookEndpoint, cause, reason string, failingBefore *time.Time) {
	now := d.now().UTC()
	u := paynotify.RedactURL(e.URL)
	if e.Kind == paynotify.EndpointNATS {
		u = e.URL // the stream and the subject prefix: no URL, nothing secret
	}
	data := paynotify.EndpointDisabledData{EndpointID: e.ID, URL: u, Reason: reason, FailingSince: e.FailingSince}
	ev := paynotify.NewEndpointDisabledEvent(paynotify.NewID("evt"), now, &data)
	status := paynotify.EndpointDisabled
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := d.Store.UpdateWebhookEndpoint(ctx, e.ID, &paynotify.WebhookEndpointUpdate{Status: &status,
		DisabledReason: reason, IfStatus: paynotify.EndpointEnabled, IfFailingBefore: failingBefore, Event: ev})
	switch {
	case paynotify.ErrorCode(err) == paynotify.ECONFLICT || paynotify.ErrorCode(err) == paynotify.ENOTFOUND:
		return // disabled, delivered to or deleted meanwhile
	case err != nil:
		d.Logger.Error("webhooks: disable endpoint", "endpoint", e.ID, "err", err)
		return
	}
	d.Logger.Warn("webhooks: endpoint disabled", "endpoint", e.ID, "reason", reason, "event", ev.ID)
	if d.Metrics != nil {
		d.Metrics.EndpointDisabled(cause)
	}
	d.Wake()
}

// finisher records results in batches: what ended in the last few milliseconds, in one
// transaction.
func (d *Dispatcher) finisher() {
	var batch []paynotify.WebhookResult
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := d.Store.FinishWebhookDeliveries(ctx, batch)
		cancel()
		switch {
		case err != nil && len(batch) > 1 && !errors.Is(err, context.DeadlineExceeded):
			// One result the store refuses must not cost the others theirs: each again on its
			// own. (A store that did not answer in time would not answer these either.)
			d.Logger.Warn("webhooks: record results; recording them one by one", "results", len(batch), "err", err)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // all of them, as the batch
			for _, r := range batch {
				if err := d.Store.FinishWebhookDeliveries(ctx, []paynotify.WebhookResult{r}); err != nil {
					d.Logger.Error("webhooks: record result", "delivery", r.Delivery.ID, "endpoint", r.Delivery.EndpointID, "err", err)
					if ctx.Err() != nil {
						break // out of time: the rest wait out their claims, as a failed batch's do
					}
				}
			}
			cancel()
		case err != nil:
			// The claims stay until their lease ends; the deliveries are then attempted again
			// (with the same webhook-id), never lost.
			d.Logger.Error("webhooks: record results", "results", len(batch), "err", err)
		}
		d.mu.Lock()
		for _, r := range batch {
			if l := d.lanes[r.Delivery.EndpointID]; l != nil {
				l.dirty.Store(true)
			}
		}
		d.mu.Unlock()
		batch = batch[:0]
		d.wakeRefill() // a finished delivery may let the next event of its order go
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case r, ok := <-d.results:
			if !ok {
				flush()
				return
			}
			if len(batch) == 0 {
				timer.Reset(flushEvery)
			}
			batch = append(batch, r)
			if len(batch) >= 256 {
				timer.Stop()
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func ptr[T any](v T) *T { return &v }
