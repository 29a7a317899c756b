package paynotify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// App is one configured merchant app as the Processor sees it: the identities a verified fact
// must carry to be ours.
type App struct {
	Name     string
	Provider string
	// AppID is Alipay's app_id or WeChat's appid; "" skips the check.
	AppID string
	// MchID is WeChat's merchant id; "" skips the check.
	MchID string
	// SellerIDs are the Alipay seller ids (收款方) allowed for this app; empty skips the check.
	SellerIDs []string
}

// Verifier checks that a callback request really comes from the provider and turns it into a
// verified Fact. It works on the raw header and body bytes. A request that fails returns an error
// wrapping a *RejectError, whose Reason is one of the rejection reasons (ReasonSignatureInvalid…).
type Verifier interface {
	Verify(header http.Header, body []byte) (Fact, error)
}

// RejectError is why a verifier refused a request. Its Error is deliberately vague; Detail is for
// evidence and logs (it never holds a secret).
type RejectError struct {
	Reason string
	Detail string
	// OutTradeNo is the order the request claims, when it could be parsed.
	OutTradeNo string
}

func (e *RejectError) Error() string { return "paynotify: callback rejected: " + e.Reason }

// Callback is one provider callback request, as received.
type Callback struct {
	App        *App
	Header     http.Header
	Body       []byte
	ReceivedAt time.Time
	// Answer renders the answer the provider will get for a verdict (for the evidence record): ok
	// is true for accepted and duplicate.
	Answer func(ok bool) string
	// Logger, if set, is the request's logger (carrying its request id); defaults to the
	// Processor's.
	Logger *slog.Logger
}

// Result is what the Processor did with a callback.
type Result struct {
	Verdict Verdict
	Reason  string
	// OK says whether the provider gets a success answer.
	OK bool
	// Order is the order after processing, when there is one.
	Order    *Order
	Evidence *Evidence
}

// Processor runs the callback path: verify → load → Decide → commit, with the evidence record,
// the order change and its events in one transaction; the caller answers the provider after
// Process returns, so the success answer always follows the commit.
type Processor struct {
	Store  Store
	Logger *slog.Logger
	// Now returns the current time; defaults to time.Now.
	Now func() time.Time
	// NewID returns a new unique id with the given prefix; defaults to 16 random bytes in hex.
	NewID func(prefix string) string
	// OnChange, if set, is called after a committed change to an order (for long-poll waiters).
	OnChange func(o *Order)
	// RejectedPerMinute caps the rejected requests stored per app per minute (the rest are only
	// counted). Defaults to 100.
	RejectedPerMinute int

	mu       sync.Mutex
	rejected map[string]*rejectWindow
}

type rejectWindow struct {
	start   time.Time
	stored  int
	dropped int64
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

// NewID returns prefix + "_" + 32 random hex digits.
func NewID(prefix string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + "_" + hex.EncodeToString(b[:])
}

// Process handles one provider callback to a known app. It never returns an error: failures are
// verdicts, and Result.OK says what to answer.
func (p *Processor) Process(ctx context.Context, cb *Callback, v Verifier) *Result {
	start := p.now()
	received := cb.ReceivedAt
	if received.IsZero() {
		received = start
	}
	body := cb.Body
	if len(body) > MaxEvidenceBody {
		body = body[:MaxEvidenceBody]
	}
	ev := &Evidence{
		ID:         p.newID("ntf"),
		App:        cb.App.Name,
		Provider:   cb.App.Provider,
		ReceivedAt: received.UTC(),
		Headers:    cb.Header.Clone(),
		Body:       append([]byte(nil), body...),
	}
	answer := func(ok bool) string {
		if cb.Answer == nil {
			return ""
		}
		return cb.Answer(ok)
	}
	log := cb.Logger
	if log == nil {
		log = p.logger()
	}
	log = log.With("app", cb.App.Name, "provider", cb.App.Provider, "notification_id", ev.ID)

	fact, err := v.Verify(cb.Header, cb.Body)
	if err != nil {
		var rej *RejectError
		if !errors.As(err, &rej) {
			rej = &RejectError{Reason: ReasonMalformed, Detail: err.Error()}
		}
		ev.Verdict, ev.Reason, ev.Detail, ev.OutTradeNo = VerdictRejected, rej.Reason, rej.Detail, rej.OutTradeNo
		ev.Answer = answer(false)
		ev.DurationMS = p.now().Sub(start).Milliseconds()
		log.Warn("callback rejected", "out_trade_no", rej.OutTradeNo, "reason", rej.Reason, "detail", rej.Detail)
		if p.admitRejected(cb.App.Name, start) {
			if err := p.Store.InsertEvidence(ctx, ev); err != nil {
				log.Error("store evidence", "err", err)
			}
		}
		return &Result{Verdict: VerdictRejected, Reason: rej.Reason, Evidence: ev}
	}
	ev.OutTradeNo = fact.OutTradeNo
	log = log.With("out_trade_no", fact.OutTradeNo)

	res, err := p.apply(ctx, cb.App, fact, ev, func(r *Result) {
		ev.Answer = answer(r.OK)
		ev.DurationMS = p.now().Sub(start).Milliseconds()
	})
	if err != nil {
		ev.Verdict, ev.Reason, ev.Detail = VerdictError, ReasonStoreError, err.Error()
		ev.OrderVersion = 0
		ev.Answer = answer(false)
		ev.DurationMS = p.now().Sub(start).Milliseconds()
		log.Error("callback failed", "err", err)
		// Best effort, on a context of its own: the request's may be what failed.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := p.Store.InsertEvidence(sctx, ev); err != nil {
			log.Error("store evidence", "err", err)
		}
		return &Result{Verdict: VerdictError, Reason: ReasonStoreError, Evidence: ev}
	}
	log.Info("callback", "verdict", res.Verdict, "reason", res.Reason)
	return res
}

// ApplyFact applies a verified fact that did not come through a callback (a provider's API
// response: a refund confirmed synchronously, a query showing payment). It keeps no evidence.
func (p *Processor) ApplyFact(ctx context.Context, app *App, fact Fact) (*Result, error) {
	return p.apply(ctx, app, fact, nil, nil)
}

// apply loads the order, decides and commits, retrying on version conflicts. finish, if set, is
// called with the result just before the commit, to complete the evidence record.
func (p *Processor) apply(ctx context.Context, app *App, fact Fact, ev *Evidence, finish func(*Result)) (*Result, error) {
	now := p.now()
	if fact.At.IsZero() {
		fact.At = now
	}
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		o, err := p.Store.GetOrder(ctx, app.Name, fact.OutTradeNo)
		if err != nil {
			if ErrorCode(err) != ENOTFOUND {
				return nil, fmt.Errorf("load order: %w", err)
			}
			o = nil
		}
		f := fact
		var prior *Refund // the stored refund this fact is about, if any
		if o != nil && f.RefundRequestNo != "" && (f.Kind == FactRefund || f.Kind == FactRefundFailed) {
			refunds, err := p.Store.ListRefunds(ctx, app.Name, f.OutTradeNo)
			if err != nil {
				return nil, fmt.Errorf("load refunds: %w", err)
			}
			var others Amount
			for _, r := range refunds {
				if r.OutRequestNo == f.RefundRequestNo {
					prior = r
				} else if r.Status == RefundSucceeded {
					others += r.Amount
				}
			}
			if prior != nil && f.RefundAmount == 0 {
				f.RefundAmount = prior.Amount // Alipay reports totals: this refund's own amount is ours
			}
			if f.Kind == FactRefund && f.RefundPerRequest {
				f.RefundTotal = others + f.RefundAmount
			}
		}

		var d Decision
		switch mismatch := checkApp(app, &f); {
		case mismatch != "":
			d = Decision{Anomaly: mismatch}
		case prior != nil && f.Kind == FactRefund && prior.Amount != f.RefundAmount:
			// Not the refund we recorded under this out_request_no.
			d = Decision{Anomaly: ReasonAmountMismatch}
		case f.Kind == FactIgnored:
			// Verified, but about nothing an order holds.
		default:
			d = Decide(o, f)
		}

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
		if o != nil && (d.Anomaly == "" || d.Changed()) { // an anomaly leaves refunds alone too
			c.Refund = refundChange(app, o, &f, prior, now)
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
		}
		if d.Anomaly != "" {
			an := &EventAnomaly{Reason: d.Anomaly}
			if ev != nil {
				an.NotificationID = ev.ID
			}
			var event *Event
			if res.Order != nil {
				event = NewEvent(p.newID("evt"), EventOrderAnomaly, now, res.Order, nil, an)
			} else {
				event = NewOrphanAnomalyEvent(p.newID("evt"), app.Name, f.OutTradeNo, now, an)
			}
			c.Anomaly = &Anomaly{App: app.Name, OutTradeNo: f.OutTradeNo, Reason: d.Anomaly, Key: d.Anomaly + "|" + f.key(), Event: event}
		}

		switch {
		case d.Changed():
			res.Verdict, res.OK = VerdictAccepted, true
		case d.Anomaly != "":
			res.Verdict = VerdictAnomaly
		case c.Refund != nil || len(c.Events) > 0 || f.Kind == FactIgnored:
			res.Verdict, res.OK = VerdictAccepted, true
		default:
			res.Verdict, res.OK = VerdictDuplicate, true
		}
		res.Reason = d.Anomaly
		if ev != nil {
			ev.Verdict, ev.Reason = res.Verdict, res.Reason
			if res.Order != nil {
				ev.OrderVersion = res.Order.Version
			}
			res.Evidence = ev
		}
		if finish != nil {
			finish(res)
		}
		if c.Order == nil && c.Refund == nil && len(c.Events) == 0 && c.Anomaly == nil && c.Evidence == nil {
			return res, nil // nothing to write
		}
		if _, err := p.Store.Commit(ctx, c); err != nil {
			if errors.Is(err, ErrVersionConflict) {
				continue
			}
			return nil, fmt.Errorf("commit: %w", err)
		}
		if c.Order != nil && p.OnChange != nil && d.Changed() {
			p.OnChange(c.Order)
		}
		return res, nil
	}
	return nil, fmt.Errorf("commit: %w after %d attempts", ErrVersionConflict, maxCommitAttempts)
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
// recorded too.
func refundChange(app *App, o *Order, f *Fact, prior *Refund, now time.Time) *Refund {
	if f.RefundRequestNo == "" {
		return nil
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
		r.Status, r.UpdatedAt = status, now
		if f.ProviderRefundNo != "" {
			r.ProviderRefundNo = f.ProviderRefundNo
		}
		return &r
	}
	amount := f.RefundAmount
	if amount == 0 && f.Kind == FactRefund {
		amount = f.RefundTotal - o.RefundedAmount
		if amount < 0 {
			amount = 0
		}
	}
	return &Refund{App: app.Name, OutTradeNo: o.OutTradeNo, OutRequestNo: f.RefundRequestNo, Amount: amount,
		Status: status, ProviderRefundNo: f.ProviderRefundNo, CreatedAt: now, UpdatedAt: now}
}

// admitRejected reports whether one more rejected request of app may be stored in the current
// minute.
func (p *Processor) admitRejected(app string, now time.Time) bool {
	limit := p.RejectedPerMinute
	if limit == 0 {
		limit = 100
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rejected == nil {
		p.rejected = make(map[string]*rejectWindow)
	}
	w := p.rejected[app]
	if w == nil || now.Sub(w.start) >= time.Minute {
		w = &rejectWindow{start: now}
		p.rejected[app] = w
	}
	if w.stored >= limit {
		w.dropped++
		return false
	}
	w.stored++
	return true
}
