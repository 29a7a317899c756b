package paynotify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Callback is one provider callback request, as received.
type Callback struct {
	App *App
	// Endpoint is the callback endpoint it came to ("alipay", "wechatpay", "wechatpay-v2"): it
	// picks the verifier again when the request is reprocessed.
	Endpoint   string
	Header     http.Header
	Body       []byte
	ReceivedAt time.Time
	// VerifyAt, if set, is the time the verifier checks time windows against, in place of its
	// clock: a reprocessed request is verified as of when it first arrived.
	VerifyAt time.Time
	// Source is the evidence source: SourceNotification (the default) or SourceReprocess.
	Source string
	// ReprocessedFrom is the id of the evidence record a reprocessed request was read from.
	ReprocessedFrom string
	// Answer renders the answer the provider will get for res (for the evidence record), exactly
	// as it will be written: Acker.AckText.
	Answer func(res *Result) string
	// Logger, if set, is the request's logger (carrying its request id); defaults to the
	// Processor's.
	Logger *slog.Logger
}

// Result is what the Processor did with a callback or a provider's answer.
type Result struct {
	Verdict Verdict
	Reason  string
	// OK says whether the provider gets a success answer.
	OK bool
	// Order is the order after processing, when there is one.
	Order    *Order
	Evidence *Evidence
}

// Processor applies verified facts: load → decide → commit, with the evidence record, the order
// change and its events in one transaction. On the callback path (Process) the caller answers the
// provider after Process returns, so the success answer always follows the commit.
type Processor struct {
	Store  Store
	Logger *slog.Logger
	// Now returns the current time; defaults to time.Now.
	Now func() time.Time
	// NewID returns a new unique id with the given prefix; defaults to 16 random bytes in hex.
	//
	// On a store that decides in its writer (OrderCommitter), Now, NewID and a Callback's Answer
	// run on the writer's goroutine while the batch's other writes wait: they must be quick and
	// must not call the store.
	NewID func(prefix string) string
	// OnChange, if set, is called after a committed change to an order (for long-poll waiters).
	OnChange func(o *Order)
	// OnEvents, if set, is called after a commit that appended events (to wake the webhook
	// dispatcher).
	OnEvents func()
	// RejectedPerMinute caps the rejected notifications stored per app per minute (the rest are
	// only counted). Defaults to 100.
	RejectedPerMinute int
	// RejectedBytesPerMinute caps their size too (body and headers, per app per minute): anyone
	// can send junk to a notify URL, up to the body limit each time. Defaults to 512 KiB, several
	// times the size of 100 genuine notifications.
	RejectedBytesPerMinute int
	// RejectedBytesPerDay caps their size per app per day (a day from the first stored), so
	// that junk sent all day long at the minute's cap (about 0.7 GiB a day) cannot fill the
	// disk over the evidence's retention. Defaults to 64 MiB: some 20,000 genuine notifications
	// rejected for a wrong key. The reconciliation finds the payments of those not kept.
	RejectedBytesPerDay int
	// Metrics, if set, is told of every callback and commit (metrics.Prometheus).
	Metrics Metrics

	mu       sync.Mutex
	rejected map[string]*rejectWindow
	repeats  repeats
}

type rejectWindow struct {
	start   time.Time
	stored  int
	bytes   int
	dropped int64
	// dayStart and dayBytes are the day's window, kept across the minutes.
	dayStart time.Time
	dayBytes int
}

const maxCommitAttempts = 50

func (p *Processor) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Processor) newID(prefix string) string {
	if p.NewID != nil {
		return p.NewID(prefix)
	}
	return NewID(prefix)
}

func (p *Processor) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// NewID returns prefix + "_" + 32 hex digits: the Unix time in milliseconds (12 digits), then 80
// random bits. IDs made later sort later (to the millisecond), so that a store's unique index on
// them grows at its end, like its time indexes, instead of touching a random page per insert:
// one batch's rows share a few pages (docs/performance.md). 80 random bits keep them unguessable
// and apart.
func NewID(prefix string) string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	if _, err := rand.Read(b[6:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}

// NewEvidence returns an evidence record of app for a request or answer received at received,
// with its raw header and body (the body capped at MaxEvidenceBody).
func (p *Processor) NewEvidence(app *App, source, endpoint string, received time.Time, header http.Header, body []byte) *Evidence {
	if len(body) > MaxEvidenceBody {
		body = body[:MaxEvidenceBody]
	}
	return &Evidence{
		ID:         p.newID("ntf"),
		App:        app.Name,
		Provider:   app.Provider,
		Source:     source,
		Endpoint:   endpoint,
		ReceivedAt: received.UTC(),
		Headers:    header.Clone(),
		Body:       append([]byte(nil), body...),
	}
}

// Process handles one provider callback to a known app. It never returns an error: failures are
// verdicts, and Result.OK says what to answer.
func (p *Processor) Process(ctx context.Context, cb *Callback, v Verifier) *Result {
	if p.Metrics == nil || cb.Source == SourceReprocess {
		// A reprocess is an operator's, not a provider's callback: the callback metrics
		// (docs/operations.md) do not count it (a reviewer helper's finding).
		return p.process(ctx, cb, v)
	}
	start := time.Now()
	res := p.process(ctx, cb, v)
	p.Metrics.Callback(cb.App, res.Verdict, res.Reason, time.Since(start))
	return res
}

func (p *Processor) process(ctx context.Context, cb *Callback, v Verifier) *Result {
	start := p.now()
	received := cb.ReceivedAt
	if received.IsZero() {
		received = start
	}
	source := cb.Source
	if source == "" {
		source = SourceNotification
	}
	ev := p.NewEvidence(cb.App, source, cb.Endpoint, received, cb.Header, cb.Body)
	ev.ReprocessedFrom = cb.ReprocessedFrom
	answer := func(res *Result) string {
		if cb.Answer == nil {
			return ""
		}
		return cb.Answer(res)
	}
	base := cb.Logger
	if base == nil {
		base = p.logger()
	}
	// The attributes every line of this callback carries. The accepted path logs one line with
	// them (LogAttrs: no Logger.With to pre-format them for lines that will not come); the
	// others, rarer, get a Logger with them.
	attrs := make([]slog.Attr, 0, 6)
	attrs = append(attrs, slog.String("app", cb.App.Name), slog.String("provider", cb.App.Provider), slog.String("notification_id", ev.ID))
	withAttrs := func() *slog.Logger { return base.With(attrsAny(attrs)...) }
	fact, err := v.Verify(cb.Header, cb.Body, cb.VerifyAt)
	if errors.Is(err, ErrVerifyUnavailable) {
		// Not a verdict on the message: answered as a failure, so that the provider retries.
		// The record says why (the RejectError's detail: the HTTP status, the timeout; its
		// Error() is the reason alone, and the cause was lost: a reviewer helper's finding), cut
		// short like a rejection's, and anyone can cause one (a replayed message while the check
		// fails), so it comes under the rejected requests' cap.
		detail := err.Error()
		var rej *RejectError
		if errors.As(err, &rej) {
			ev.OutTradeNo = ClipText(rej.OutTradeNo, maxClaimedOutTradeNo)
			if rej.Detail != "" {
				detail = rej.Detail
			}
		}
		ev.Verdict, ev.Reason, ev.Detail = VerdictError, ReasonVerifyUnavailable, ClipText(detail, maxRejectDetail)
		res := &Result{Verdict: VerdictError, Reason: ReasonVerifyUnavailable, Evidence: ev}
		ev.Answer = answer(res)
		ev.DurationMS = p.now().Sub(start).Milliseconds()
		admitted, firstDrop, droppedBefore := true, false, int64(0)
		if source == SourceNotification {
			admitted, firstDrop, droppedBefore = p.admitRejected(cb.App.Name, start, evidenceSize(ev))
		}
		if droppedBefore > 0 {
			base.Warn("rejected callbacks over the evidence cap were dropped, neither stored nor logged", "app", cb.App.Name,
				"dropped", droppedBefore)
		}
		log := withAttrs()
		switch {
		case admitted:
			log.Warn("callback not verified: a check could not be made", "out_trade_no", ev.OutTradeNo, "detail", ev.Detail)
			p.keepEvidence(ctx, ev, log)
		case firstDrop:
			log.Warn("callback not verified: a check could not be made; the app's rejected callbacks are over the evidence cap (of the minute or of the day): the rest are only counted until it has room",
				"out_trade_no", ev.OutTradeNo, "detail", ev.Detail)
		}
		return res
	}
	if err != nil {
		rej := AsReject(err)
		// Anyone can be rejected: what the rejection quotes of the request is cut short, so that
		// a request's size does not grow the record and the log line past its body's.
		detail, otn := ClipText(rej.Detail, maxRejectDetail), ClipText(rej.OutTradeNo, maxClaimedOutTradeNo)
		ev.Verdict, ev.Reason, ev.Detail, ev.OutTradeNo = VerdictRejected, rej.Reason, detail, otn
		res := &Result{Verdict: VerdictRejected, Reason: rej.Reason, Evidence: ev}
		ev.Answer = answer(res)
		ev.DurationMS = p.now().Sub(start).Milliseconds()
		// Reprocessing is asked for by an operator: its result is always kept. Past the app's cap
		// a rejected request is neither stored nor logged, but counted: one line when the cap is
		// reached, and the count with the app's next rejected notification after that minute.
		admitted, firstDrop, droppedBefore := true, false, int64(0)
		if source == SourceNotification {
			admitted, firstDrop, droppedBefore = p.admitRejected(cb.App.Name, start, evidenceSize(ev))
		}
		log := withAttrs()
		if droppedBefore > 0 {
			base.Warn("rejected callbacks over the evidence cap were dropped, neither stored nor logged", "app", cb.App.Name,
				"dropped", droppedBefore)
		}
		switch {
		case admitted:
			log.Warn("callback rejected", "out_trade_no", otn, "reason", rej.Reason, "detail", detail)
			p.keepEvidence(ctx, ev, log)
		case firstDrop:
			log.Warn("callback rejected; the app's rejected callbacks are over the evidence cap (of the minute or of the day): the rest are only counted until it has room",
				"out_trade_no", otn, "reason", rej.Reason, "detail", detail)
		}
		return res
	}
	ev.OutTradeNo, ev.Detail = fact.OutTradeNo, fact.Detail
	attrs = append(attrs, slog.String("out_trade_no", fact.OutTradeNo))

	res, err := p.apply(ctx, cb.App, fact, ev, func(r *Result) {
		ev.Answer = answer(r)
		ev.DurationMS = p.now().Sub(start).Milliseconds()
	})
	if err != nil {
		reason := ReasonStoreError
		if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			// The provider hung up before the change's turn in the writer: nothing was
			// committed (a write that started is decided by its batch), the provider retries.
			// Not the store's failure: an alert on store_error must not fire for it. Unless the
			// store says its writes are failing now (another process holding SQLite's write
			// lock, a PostgreSQL batch stuck): the provider hung up because of it, and the alert
			// must fire (a reviewer helper's finding: a locked database read as providers'
			// timeouts, its cause in River's log lines only).
			reason = ReasonClientGone
			if h, ok := p.Store.(WriteHealther); ok {
				if herr := h.WriteHealth(); herr != nil {
					reason, err = ReasonStoreError, fmt.Errorf("%w; the store's writes are failing: %v", err, herr)
				}
			}
		}
		res := &Result{Verdict: VerdictError, Reason: reason, Evidence: ev}
		ev.Answer = answer(res)
		ev.DurationMS = p.now().Sub(start).Milliseconds()
		log := withAttrs()
		if reason == ReasonClientGone {
			log.Warn("callback abandoned: the provider hung up before its change was committed", "err", err)
		} else {
			log.Error("callback failed", "err", err)
		}
		p.storeFailure(ctx, ev, err, reason, log)
		return res
	}
	attrs[2] = slog.String("notification_id", ev.ID) // a repeat's is the record it was counted on
	if res.Verdict == VerdictAnomaly {
		// With what disagreed. At Info, as every callback's line: a replayed signed message
		// raises the same anomaly at will (the anomaly inbox and the metrics are the alert).
		base.LogAttrs(ctx, slog.LevelInfo, "callback", append(attrs, slog.Any("verdict", res.Verdict), slog.String("reason", res.Reason),
			slog.String("detail", ev.Detail))...)
		return res
	}
	base.LogAttrs(ctx, slog.LevelInfo, "callback", append(attrs, slog.Any("verdict", res.Verdict), slog.String("reason", res.Reason))...)
	return res
}

// attrsAny passes attrs to Logger.With.
func attrsAny(attrs []slog.Attr) []any {
	out := make([]any, len(attrs))
	for i, a := range attrs {
		out[i] = a
	}
	return out
}

// storeFailure records ev as an error after its change could not be committed: best effort, on a
// context of its own (the request's may be what failed).
func (p *Processor) storeFailure(ctx context.Context, ev *Evidence, err error, reason string, log *slog.Logger) {
	ev.Verdict, ev.Reason, ev.Detail = VerdictError, reason, err.Error()
	ev.OrderVersion = 0
	p.keepEvidence(ctx, ev, log)
}

// keepEvidence inserts an evidence record that commits nothing else (a rejected request, one
// that could not be verified, a failure), also when the request's context has ended: a provider
// or client that hung up while it waited for the writer must not take the record with it.
func (p *Processor) keepEvidence(ctx context.Context, ev *Evidence, log *slog.Logger) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := p.Store.InsertEvidence(sctx, ev); err != nil {
		log.Error("store evidence", "err", err)
	}
}

// AsReject returns the *RejectError in err's chain, or a malformed rejection carrying err's text.
func AsReject(err error) *RejectError {
	var rej *RejectError
	if errors.As(err, &rej) {
		return rej
	}
	return &RejectError{Reason: ReasonMalformed, Detail: err.Error()}
}

// Apply applies a verified fact that did not come through a callback: a provider's answer to a
// query, a close or a refund. ev, when set, is the evidence record of the answer (source query):
// it is completed with the verdict and committed with the change; when the change cannot be
// committed it is kept as an error.
func (p *Processor) Apply(ctx context.Context, app *App, fact Fact, ev *Evidence) (*Result, error) {
	if ev != nil {
		ev.OutTradeNo = fact.OutTradeNo
	}
	res, err := p.apply(ctx, app, fact, ev, nil)
	if err != nil && ev != nil {
		p.storeFailure(ctx, ev, err, ReasonStoreError, p.logger().With("app", app.Name, "out_trade_no", fact.OutTradeNo))
	}
	return res, err
}

// Preview is Apply without writing anything: the order (and its refunds) read as Apply reads
// them, the fact decided by the same checks (app, amounts, the refund on record) and state
// machine, and the Result applying it would give now: Verdict, Reason, and the Order it would
// leave. No evidence is kept; another change may come between it and an Apply.
// `paynotify reconcile --dry-run` reports with it.
func (p *Processor) Preview(ctx context.Context, app *App, fact Fact) (*Result, error) {
	now := p.now()
	if fact.At.IsZero() {
		fact.At = now
	}
	st, err := p.load(ctx, app, fact)
	if err != nil {
		return nil, err
	}
	_, res := p.change(app, st, decideFor(app, st), nil, now)
	return res, nil
}

// apply loads the order, decides and commits, again on a version conflict. finish, if set, is
// called with the result just before the commit, to complete the evidence record.
func (p *Processor) apply(ctx context.Context, app *App, fact Fact, ev *Evidence, finish func(*Result)) (*Result, error) {
	now := p.now()
	if fact.At.IsZero() {
		fact.At = now
	}
	var (
		evID     string
		key      [32]byte
		keyed    bool // key is repeatKey(app, ev): digested once, and only when needed
		remember bool // a callback as received: the memory of repeats takes it
	)
	if ev != nil {
		evID = ev.ID
		// A body kept whole (shorter than the cap): the digest must cover every byte the
		// verdict was decided on.
		remember = finish != nil && rememberable(ev) && len(ev.Body) < MaxEvidenceBody
		if remember && !fact.readsRefunds() && p.repeats.holds(app.Name, fact.OutTradeNo) {
			key, keyed = repeatKey(app, ev), true
			if e, ok := p.repeats.lookup(key, now); ok && e.outTradeNo == fact.OutTradeNo {
				res, err := p.repeatAt(ctx, ev, e, finish)
				switch {
				case err == nil:
					return res, nil
				case !errors.Is(err, ErrRepeatMissed):
					return nil, fmt.Errorf("commit: %w", err)
				}
				ev.OrderVersion = 0 // the order moved, or the record is gone: decided in full below
			}
		}
	}
	oc, inWriter := p.Store.(OrderCommitter)
	inWriter = inWriter && !fact.readsRefunds()
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		if ev != nil {
			ev.ID = evID // an earlier attempt may have made it a repeat, with another record's id
		}
		var (
			c      *Change
			res    *Result
			d      Decision
			repeat bool
		)
		// decide is steps 2 and 3 on what the order read found, and the memory of repeats.
		decide := func(st *factState) {
			d = decideFor(app, st)
			c, res = p.change(app, st, d, ev, now)
			if finish != nil {
				finish(res)
			}
			if repeat = remember && repeatable(c); repeat {
				if !keyed {
					key, keyed = repeatKey(app, ev), true
				}
				if e, ok := p.repeats.lookup(key, now); ok && e.matches(ev) {
					ev.ID, c.Repeat = e.id, true
				}
			}
		}
		var err error
		if inWriter {
			// Read, decided and written in one op of the store's writer (OrderCommitter).
			err = p.commitOrder(ctx, oc, app, fact, ev, func(o *Order) (*Change, error) {
				decide(&factState{order: o, fact: fact})
				if c.empty() {
					return nil, nil
				}
				return c, nil
			})
			if err == nil && c == nil { // a store that answered without running build
				err = errors.New("the store committed without deciding")
			}
			if err == nil && c.empty() {
				return res, nil // nothing written
			}
		} else {
			var st *factState
			if st, err = p.load(ctx, app, fact); err != nil {
				return nil, err
			}
			decide(st)
			if c.empty() {
				return res, nil // nothing to write
			}
			_, err = p.commit(ctx, c)
		}
		if err != nil {
			if errors.Is(err, ErrVersionConflict) {
				continue
			}
			if ev != nil {
				ev.ID = evID // kept as a record of its own (storeFailure)
			}
			return nil, fmt.Errorf("commit: %w", err)
		}
		if repeat && !c.Repeat {
			p.repeats.remember(key, ev, now)
		}
		if c.Order != nil && p.OnChange != nil && d.Changed() {
			p.OnChange(c.Order)
		}
		if p.OnEvents != nil && (len(c.Events) > 0 || c.Anomaly != nil) {
			p.OnEvents()
		}
		return res, nil
	}
	if ev != nil {
		ev.ID = evID // kept as a record of its own (storeFailure)
	}
	return nil, fmt.Errorf("commit: %w after %d attempts", ErrVersionConflict, maxCommitAttempts)
}

// repeatAt counts ev on the duplicate record e, as long as the order is at the version e was
// decided at (Change.RepeatVersion): the same request meeting the same order meets the same
// verdict, so the order is not read. It returns ErrRepeatMissed, having written nothing, when
// the order moved, the record is gone, or the answer would differ.
func (p *Processor) repeatAt(ctx context.Context, ev *Evidence, e repeatEntry, finish func(*Result)) (*Result, error) {
	ev.Verdict, ev.Reason, ev.OrderVersion = VerdictDuplicate, e.reason, e.orderVersion
	res := &Result{Verdict: VerdictDuplicate, Reason: e.reason, OK: true, Evidence: ev}
	finish(res)
	if !e.matches(ev) {
		return nil, ErrRepeatMissed
	}
	id := ev.ID
	ev.ID = e.id
	if _, err := p.commit(ctx, &Change{Evidence: ev, Repeat: true, RepeatVersion: e.orderVersion}); err != nil {
		ev.ID = id // kept as a record of its own (storeFailure), or decided in full
		return nil, err
	}
	return res, nil
}

// readsRefunds reports whether deciding f reads the order's refunds (load), besides the order.
func (f *Fact) readsRefunds() bool {
	return f.RefundRequestNo != "" && f.isRefund() || f.RefundedAtProvider
}

// commitOrder runs build in the store's writer (OrderCommitter.CommitOrder) and tells Metrics
// how long it took, as commit does.
func (p *Processor) commitOrder(ctx context.Context, oc OrderCommitter, app *App, fact Fact, ev *Evidence, build func(*Order) (*Change, error)) error {
	if p.Metrics == nil {
		_, err := oc.CommitOrder(ctx, app.Name, fact.OutTradeNo, ev, build)
		return err
	}
	start := time.Now()
	_, err := oc.CommitOrder(ctx, app.Name, fact.OutTradeNo, ev, build)
	p.Metrics.Commit(time.Since(start), err)
	return err
}

// commit commits c and tells Metrics how long it took.
func (p *Processor) commit(ctx context.Context, c *Change) (bool, error) {
	if p.Metrics == nil {
		return p.Store.Commit(ctx, c)
	}
	start := time.Now()
	anomalyNew, err := p.Store.Commit(ctx, c)
	p.Metrics.Commit(time.Since(start), err)
	return anomalyNew, err
}

// factState is what a fact meets in the store: the order (nil when we have none), the refund the
// fact is about (nil when none is recorded), and the fact completed from them.
type factState struct {
	order *Order
	prior *Refund
	fact  Fact
	// heldBack says that amounts inferred since the fact's refund was asked for are not yet
	// certain (the unsure rule of load): they may hold its amount, or the total may not yet.
	heldBack bool
}

// load is step 1: read the order and, for a refund fact, the refunds it needs. A fact that
// reports refunds one by one (WeChat) gets its cumulative total from the other succeeded refunds;
// one that reports totals (Alipay) gets its own amount from the refund recorded under its number.
func (p *Processor) load(ctx context.Context, app *App, fact Fact) (*factState, error) {
	st := &factState{fact: fact}
	o, err := p.Store.GetOrder(ctx, app.Name, fact.OutTradeNo)
	switch {
	case ErrorCode(err) == ENOTFOUND:
		return st, nil
	case err != nil:
		return nil, fmt.Errorf("load order: %w", err)
	}
	st.order = o
	f := &st.fact
	if !f.readsRefunds() {
		return st, nil
	}
	refunds, err := p.Store.ListRefunds(ctx, app.Name, f.OutTradeNo)
	if err != nil {
		return nil, fmt.Errorf("load refunds: %w", err)
	}
	if f.RefundedAtProvider && slices.ContainsFunc(refunds, func(r *Refund) bool { return r.Status != RefundFailed }) {
		// A refund of the order is known, pending or made: the provider's REFUND state is about
		// it, not news (a reviewer's finding: a pending refund of ours raised
		// refunded_at_provider, "paynotify knows of no refund"). A failed one moved no money and
		// does not count (a reviewer's finding on that fix).
		f.RefundedAtProvider = false
	}
	if !f.isRefund() {
		return st, nil
	}
	priorAt := -1 // prior's place in refunds: the order they were recorded in
	for i, r := range refunds {
		if r.OutRequestNo == f.RefundRequestNo {
			st.prior, priorAt = r, i
		}
	}
	// others: the other succeeded refunds; unsure: those of them whose amount was inferred from
	// Alipay's cumulative total (refundChange) since this refund was asked for, and not yet
	// confirmed. Such an amount may already hold this refund's (made by Alipay while still
	// pending with us), so adding both could count it twice. Its confirmation (confirmRefund)
	// brings the order's total up to the certain sum. Only Alipay reports totals: WeChat Pay's
	// amounts are never inferred.
	var others, unsure Amount
	for i, r := range refunds {
		if r == st.prior || r.Status != RefundSucceeded {
			continue
		}
		others += r.Amount
		// A recount (an inferred amount's confirmation) counts no other inferred amount as
		// certain, whenever it was recorded: out of order, Alipay's totals inflate the earlier one.
		// "Since this refund was asked for" is by the order the store recorded them in
		// (Store.ListRefunds), not by their CreatedAt: those are the clocks of the processes that
		// wrote them, and one a few seconds ahead made an inferred amount recorded after this
		// refund look older, counted certain: the order was announced fully refunded where
		// Alipay had refunded three quarters (a reviewer helper's finding).
		if app.Provider == ProviderAlipay && r.NextCheckAt != nil && st.prior != nil && (f.Recount || i > priorAt) {
			unsure += r.Amount
		}
	}
	if st.prior != nil && f.RefundAmount == 0 {
		f.RefundAmount = st.prior.Amount // Alipay reports totals: this refund's own amount is ours
	}
	// With amounts inferred since this refund was asked for, the order's total may hold it
	// already, or not yet: it is not announced on its own (change), whatever the fact reports.
	st.heldBack = unsure > 0
	if f.Kind == FactRefund && f.RefundPerRequest {
		f.RefundTotal = others + f.RefundAmount
		if unsure > 0 {
			// Never more than is sure: the refunds known for certain plus this one, or the total
			// the provider last reported, whichever is higher. A provider's cumulative total
			// (Alipay's next notification) brings the rest.
			f.RefundTotal = max(o.RefundedAmount, others-unsure+f.RefundAmount)
		}
	}
	// Alipay's running total, in a message about one refund of ours, raises the order's total by
	// this refund's own amount at most: the rest is other refunds', announced by their own
	// messages. Credited to this one, a refund confirmed by its query and then notified with a
	// total that also held another was announced twice, and a portal refund made just before ours
	// never (a refund-audit helper's findings). The order's total may then lag Alipay's until the
	// other refunds' messages come: safe, as Alipay refuses a refund beyond what is left.
	if f.Kind == FactRefund && !f.RefundPerRequest && !f.Recount && st.prior != nil {
		if st.prior.Status == RefundSucceeded {
			f.RefundTotal = min(f.RefundTotal, o.RefundedAmount) // announced already
		} else {
			f.RefundTotal = max(min(f.RefundTotal, o.RefundedAmount+f.RefundAmount), others-unsure+f.RefundAmount)
		}
	}
	return st, nil
}

// decideFor is step 2: the checks against the app's config and the refund on record, then the
// state machine.
func decideFor(app *App, st *factState) Decision {
	f := &st.fact
	switch mismatch := checkApp(app, f); {
	case mismatch != "":
		return Decision{Anomaly: mismatch}
	case st.prior != nil && f.Kind == FactRefund && st.prior.Amount != f.RefundAmount:
		// Not the refund we recorded under this out_request_no.
		return Decision{Anomaly: ReasonAmountMismatch}
	case st.prior != nil && f.Kind == FactRefundAbnormal && st.prior.Status == RefundSucceeded:
		// Stale: the refund went through since (settled in the merchant platform).
		return Decision{}
	case f.Kind == FactIgnored:
		// Verified, but about nothing an order holds.
		return Decision{}
	default:
		return Decide(st.order, *f)
	}
}

// change is step 3: the Change that commits a decision (the order's steps with their events, the
// refund record, a refund failure's version bump, the anomaly, the evidence) and the Result it
// stands for.
func (p *Processor) change(app *App, st *factState, d Decision, ev *Evidence, now time.Time) (*Change, *Result) {
	o, f := st.order, &st.fact
	c := &Change{Evidence: ev}
	res := &Result{Order: o}
	if d.Changed() {
		c.Order = d.Final()
		c.PrevVersion = o.Version
		for _, s := range d.Steps {
			c.Events = append(c.Events, NewEvent(p.newID("evt"), s.Event, now, &s.Order, s.Refund, nil))
		}
		res.Order = c.Order
	}
	// An anomaly leaves refunds alone too. So does a refund of ours that the provider made from
	// the order's other payment (a duplicate_payment_refund under our out_request_no): marked
	// succeeded, it would count against the order's own payment in every later refund total; it
	// stays pending, raised as the anomaly, until it needs attention.
	if o != nil && (d.Anomaly == "" || d.Changed()) {
		c.Refund = refundChange(app, o, f, st.prior, now)
		c.RefundConfirmed = c.Refund != nil && f.Recount
		if c.Refund != nil && f.Kind == FactRefundFailed && c.Order == nil {
			// A refund failure changes the order's refunds: it bumps the version, so that the
			// compare-and-set admits one of several identical notifications, and one event.
			next := *o
			next.Version++
			c.Order, c.PrevVersion, res.Order = &next, o.Version, &next
			er := &EventRefund{OutRequestNo: f.RefundRequestNo, Amount: c.Refund.Amount, RefundedTotal: o.RefundedAmount,
				ProviderRefundNo: f.ProviderRefundNo, Status: string(RefundFailed)}
			c.Events = append(c.Events, NewEvent(p.newID("evt"), EventRefundFailed, now, &next, er, nil))
		}
		if r := c.Refund; r != nil && f.Kind == FactRefund && !f.Recount && !st.heldBack && c.Order == nil &&
			r.Status == RefundSucceeded && r.Amount > 0 && (st.prior == nil || st.prior.Status != RefundSucceeded) {
			// A refund confirmed without moving the order's total: the total already held it
			// (Alipay's running totals out of order: R2's 7.00 applied before R1's 3.00). It is
			// announced all the same, as each confirmed refund is, with the order's total as it
			// stands; the version moves, as for a failure. Not when amounts inferred since it was
			// asked for are unsure (heldBack): they may hold it, and announcing it would count it
			// twice; the recount that confirms them brings the total up, announcing the increase.
			next := *o
			next.Version++
			c.Order, c.PrevVersion, res.Order = &next, o.Version, &next
			er := &EventRefund{OutRequestNo: f.RefundRequestNo, Amount: r.Amount, RefundedTotal: o.RefundedAmount,
				ProviderRefundNo: f.ProviderRefundNo}
			c.Events = append(c.Events, NewEvent(p.newID("evt"), EventOrderRefunded, now, &next, er, nil))
		}
	}
	if d.Anomaly != "" {
		c.Anomaly = p.anomaly(app, f, d.Anomaly, res.Order, ev, now)
		if c.Order == nil && o != nil {
			c.OrderAt = o.Version // its event carries o: not after an event of a later version
		}
	}
	verdictOf(res, d, c, f)
	if ev != nil {
		// What disagreed, in the record: a WeChat Pay resource is encrypted, so the console could
		// read neither side from the body ("the message says nothing"), and the API's detail and
		// the log were empty (a reviewer helper's finding). From the detail as it came each time:
		// a version conflict runs the decision again on the same record.
		if !ev.detailSaved {
			ev.baseDetail, ev.detailSaved = ev.Detail, true
		}
		ev.Detail = ev.baseDetail
		if s := anomalyDetail(app, o, st.prior, f, d.Anomaly); s != "" {
			ev.Detail = strings.TrimPrefix(ev.Detail+"; "+s, "; ")
		}
		ev.Verdict, ev.Reason = res.Verdict, res.Reason
		if res.Order != nil {
			ev.OrderVersion = res.Order.Version
		}
		res.Evidence = ev
	}
	return c, res
}

// anomalyDetail says what disagreed for an anomaly of reason: the fact's values beside the
// order's or the app's. "" for other reasons.
func anomalyDetail(app *App, o *Order, prior *Refund, f *Fact, reason string) string {
	switch reason {
	case ReasonAmountMismatch:
		switch {
		case o == nil:
			return ""
		case f.Amount < 0 || f.RefundAmount < 0 || f.RefundTotal < 0:
			return "the message states a negative amount"
		case f.HasAmount && f.Amount != o.Amount:
			return fmt.Sprintf("the message states a total of %s, the order's is %s", f.Amount, o.Amount)
		case prior != nil && f.RefundAmount != prior.Amount:
			return fmt.Sprintf("the message states a refund of %s under %s, the refund recorded under it is %s", f.RefundAmount, f.RefundRequestNo, prior.Amount)
		case f.RefundTotal > o.Amount:
			return fmt.Sprintf("the message states refunds of %s in all, above the order's %s", f.RefundTotal, o.Amount)
		}
	case ReasonCurrencyMismatch:
		if o != nil {
			return fmt.Sprintf("the message states currency %q, the order's is %q", ClipText(f.Currency, 16), o.Currency)
		}
	case ReasonAppIDMismatch:
		return fmt.Sprintf("the message is for app id %q, mchid %q; the app's are %q, %q", ClipText(f.AppID, 64), ClipText(f.MchID, 64), app.AppID, app.MchID)
	case ReasonSellerMismatch:
		return fmt.Sprintf("the message's seller is %q; the app's seller_ids are %q", ClipText(f.SellerID, 64), app.SellerIDs)
	case ReasonRefundAbnormal:
		// Which refund: a WeChat Pay message is encrypted, and needs_attention waits for the
		// refund's next check (a reviewer helper's finding).
		d := fmt.Sprintf("refund %q of %s is ABNORMAL at the provider", ClipText(f.RefundRequestNo, 64), f.RefundAmount)
		if prior == nil {
			d += " (not a refund paynotify asked for)"
		}
		return d
	case ReasonDuplicatePaymentRefund:
		return fmt.Sprintf("a refund of trade %q; the order was paid under %q", ClipText(f.ProviderTradeNo, 64), orderTradeNo(o))
	case ReasonRefundedAtProvider:
		return fmt.Sprintf("the provider reports trade %q paid, then refunded (of an amount it does not say); paynotify knows of no refund of this order", ClipText(f.ProviderTradeNo, 64))
	}
	return ""
}

// orderTradeNo is o's provider trade number, "" without an order.
func orderTradeNo(o *Order) string {
	if o == nil {
		return ""
	}
	return o.ProviderTradeNo
}

// anomaly builds the anomaly record of a decision, with the order.anomaly event raised the first
// time it is seen. Its key makes retries of the same message one anomaly; a double payment is one
// anomaly per provider trade number, and an ABNORMAL refund one per refund, whichever message
// (notification or query) reports it.
func (p *Processor) anomaly(app *App, f *Fact, reason string, o *Order, ev *Evidence, now time.Time) *Anomaly {
	an := &EventAnomaly{Reason: reason}
	if ev != nil {
		an.NotificationID = ev.ID
	}
	// Without an order, the out_trade_no is the message's claim: kept as the stores keep the
	// evidence's (StorableText), as are the keys below.
	otn := StorableText(f.OutTradeNo)
	var event *Event
	if o != nil {
		event = NewEvent(p.newID("evt"), EventOrderAnomaly, now, o, nil, an)
	} else {
		event = NewOrphanAnomalyEvent(p.newID("evt"), app.Name, otn, now, an)
	}
	key := reason + "|" + f.key()
	switch reason {
	case ReasonDuplicatePayment, ReasonRefundedAtProvider:
		// One per provider trade number (a refunded trade is asked about again by "Query now").
		key = reason + "|" + f.ProviderTradeNo
	case ReasonRefundAbnormal:
		// One per refund: its notification names the merchant (mchid), the refund query's
		// answer does not, and both are asked again until it settles.
		key = reason + "|" + f.ProviderTradeNo + "|" + f.RefundRequestNo
	case ReasonDuplicatePaymentRefund:
		// One per refund message, whoever reports it: without the app id, mchid and seller,
		// which a notification names and a query's answer may not (a reviewer's finding).
		g := *f
		g.AppID, g.MchID, g.SellerID = "", "", ""
		key = reason + "|" + g.key()
	}
	return &Anomaly{App: app.Name, OutTradeNo: otn, Reason: reason, Key: StorableText(key), Event: event}
}

// verdictOf is step 4: the verdict and the answer. A change is accepted; an anomaly is answered
// as a failure so that the provider retries while someone fixes the cause, except a double
// payment, which is money that arrived (acknowledged, like a late payment), and the refund of
// one, which no retry changes.
func verdictOf(res *Result, d Decision, c *Change, f *Fact) {
	res.Reason = d.Anomaly
	switch {
	case d.Changed():
		res.Verdict, res.OK = VerdictAccepted, true
	case Acknowledged(d.Anomaly):
		res.Verdict, res.OK = VerdictAnomaly, true
	case d.Anomaly != "":
		res.Verdict = VerdictAnomaly
	case c.Refund != nil || len(c.Events) > 0 || f.Kind == FactIgnored:
		res.Verdict, res.OK = VerdictAccepted, true
	default:
		res.Verdict, res.OK = VerdictDuplicate, true
	}
}

// empty reports whether c writes nothing.
func (c *Change) empty() bool {
	return c.Order == nil && c.Refund == nil && len(c.Events) == 0 && c.Anomaly == nil && c.Evidence == nil
}

// checkApp checks the fact's identities against the app's config.
func checkApp(app *App, f *Fact) string {
	if app.AppID != "" && f.AppID != "" && f.AppID != app.AppID {
		return ReasonAppIDMismatch
	}
	if app.MchID != "" && f.MchID != "" && f.MchID != app.MchID {
		return ReasonAppIDMismatch
	}
	if len(app.SellerIDs) > 0 && f.SellerID != "" {
		for _, s := range app.SellerIDs {
			if s == f.SellerID {
				return ""
			}
		}
		return ReasonSellerMismatch
	}
	return ""
}

// refundChange returns the refund record a refund fact confirms or fails, or nil when the stored
// record already says so. A refund we never requested (started in the provider's portal) is
// recorded too; when its amount was inferred from cumulative totals (Alipay), a refund query is
// scheduled to confirm it (NextCheckAt).
func refundChange(app *App, o *Order, f *Fact, prior *Refund, now time.Time) *Refund {
	if f.RefundRequestNo == "" {
		return nil
	}
	if f.Recount {
		// The confirmation of prior's inferred amount (confirmRefund has set it): it is certain
		// from this commit on, for every later recount of the order (Processor.load), not only
		// once the reconciliation's claim is finished, which a sweep does in batches.
		if prior == nil || prior.Status != RefundSucceeded || prior.NextCheckAt == nil {
			return nil
		}
		r := *prior
		r.NextCheckAt = nil
		return &r
	}
	var status RefundStatus
	switch f.Kind {
	case FactRefund:
		if f.RefundTotal <= 0 || f.RefundTotal > o.Amount {
			return nil // an anomaly, not a refund
		}
		status = RefundSucceeded
	case FactRefundFailed:
		status = RefundFailed
	default:
		return nil
	}
	if prior != nil {
		if prior.Status == status || prior.Status == RefundSucceeded {
			return nil
		}
		r := *prior
		r.Status, r.UpdatedAt, r.NextCheckAt = status, now, nil
		if f.ProviderRefundNo != "" {
			r.ProviderRefundNo = f.ProviderRefundNo
		}
		return &r
	}
	r := &Refund{App: app.Name, OutTradeNo: o.OutTradeNo, OutRequestNo: f.RefundRequestNo, Amount: f.RefundAmount,
		Status: status, ProviderRefundNo: f.ProviderRefundNo, CreatedAt: now, UpdatedAt: now}
	if r.Amount == 0 && f.Kind == FactRefund {
		// Inferred from the totals: right when the notifications came in order. The refund query
		// confirms it (docs/reconciliation.md).
		r.Amount = max(f.RefundTotal-o.RefundedAmount, 0)
		confirm := now.Add(app.Reconcile.WithDefaults().Schedule[0])
		r.NextCheckAt = &confirm
	}
	return r
}

// maxRejectDetail and maxClaimedOutTradeNo bound what a rejection quotes of a request
// (Processor.Process).
const (
	maxRejectDetail      = 1024
	maxClaimedOutTradeNo = 128
)

// evidenceSize is about what a record of ev takes in the store: its body, its headers, and
// maxRejectDetail for its detail (clipped to that). The detail is counted at its most, not at its
// length: its length depends on the reason, and the reason of a legacy 0001 notification must
// not change when the budget runs out (docs/alipay-legacy.md §7).
func evidenceSize(ev *Evidence) int {
	n := len(ev.Body) + maxRejectDetail
	for k, vs := range ev.Headers {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// admitRejected reports whether one more rejected request of app, of size bytes, may be stored
// in the current minute; when not, whether it is the minute's first refused. droppedBefore is
// how many the app's previous minute refused, when this call starts a new one (0 otherwise).
func (p *Processor) admitRejected(app string, now time.Time, size int) (ok, firstDrop bool, droppedBefore int64) {
	limit := p.RejectedPerMinute
	if limit == 0 {
		limit = 100
	}
	budget := p.RejectedBytesPerMinute
	if budget == 0 {
		budget = 512 << 10
	}
	dayBudget := p.RejectedBytesPerDay
	if dayBudget == 0 {
		dayBudget = 64 << 20
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rejected == nil {
		p.rejected = make(map[string]*rejectWindow)
	}
	w := p.rejected[app]
	if w == nil {
		w = &rejectWindow{start: now, dayStart: now}
		p.rejected[app] = w
	}
	if now.Sub(w.start) >= time.Minute {
		droppedBefore = w.dropped
		w.start, w.stored, w.bytes, w.dropped = now, 0, 0, 0
	}
	if now.Sub(w.dayStart) >= 24*time.Hour {
		w.dayStart, w.dayBytes = now, 0
	}
	// The first of a minute is kept whatever its size, unless the day's budget is spent.
	if w.stored >= limit || w.stored > 0 && w.bytes+size > budget || w.dayBytes+size > dayBudget {
		w.dropped++
		return false, w.dropped == 1, droppedBefore
	}
	w.stored++
	w.bytes += size
	w.dayBytes += size
	return true, false, droppedBefore
}
