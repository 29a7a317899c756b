package paynotify

import (
	"fmt"
	"time"
)

// App is one configured merchant app: the identities a verified fact must carry to be ours, the
// provider behind it, and how its pending orders are reconciled.
type App struct {
	Name string
	// Provider is ProviderAlipay, ProviderWechatpay or ProviderAlipayLegacy.
	Provider string
	// AppID is Alipay's app_id or WeChat's appid; "" skips the check.
	AppID string
	// MchID is WeChat's merchant id; "" skips the check.
	MchID string
	// SellerIDs are the Alipay seller ids (收款方) allowed for this app; empty skips the check.
	SellerIDs []string

	// Gateway calls the provider. It is nil only in tests of the callback path alone.
	Gateway Provider
	// ReturnURL is where GET /return/alipay/{app} (or /return/alipay-legacy/{app}) sends the
	// buyer; "" shows a plain page.
	ReturnURL string
	// Reconcile is when pending orders and refunds are checked at the provider. The zero value
	// means DefaultReconcile.
	Reconcile ReconcilePolicy
}

// ReconcilePolicy says when a pending order is queried at the provider (docs/reconciliation.md).
// Query k (0-based) is due at CreatedAt+Schedule[k]; after the schedule, every ThenEvery; at most
// MaxChecks queries in all; at expiry the order is closed (not counted). Pending refunds follow
// the same schedule, without MaxChecks, for at most RefundWindow.
type ReconcilePolicy struct {
	// Schedule is the offsets after creation of the first queries. Default 1m, 3m, 10m, 30m.
	Schedule []time.Duration
	// ThenEvery is the interval of the queries after Schedule, until expiry. Default 1h.
	ThenEvery time.Duration
	// MaxChecks caps the queries of one order (the expiry close not counted). Default 24.
	MaxChecks int
	// Concurrency caps the queries of this app in flight at once, per process. Default 4.
	Concurrency int
}

// DefaultReconcile is the policy of an app whose config says nothing.
var DefaultReconcile = ReconcilePolicy{
	Schedule:    []time.Duration{time.Minute, 3 * time.Minute, 10 * time.Minute, 30 * time.Minute},
	ThenEvery:   time.Hour,
	MaxChecks:   24,
	Concurrency: 4,
}

// RefundWindow is how long a pending refund is checked before it is marked as needing attention.
const RefundWindow = 7 * 24 * time.Hour

// WechatCloseDelay is how soon after creation WeChat Pay lets a merchant close an order: it asks
// not to close within five minutes of it.
const WechatCloseDelay = 5 * time.Minute

// WithDefaults returns p with every zero field set to DefaultReconcile's.
func (p ReconcilePolicy) WithDefaults() ReconcilePolicy {
	if len(p.Schedule) == 0 {
		p.Schedule = DefaultReconcile.Schedule
	}
	if p.ThenEvery == 0 {
		p.ThenEvery = DefaultReconcile.ThenEvery
	}
	if p.MaxChecks == 0 {
		p.MaxChecks = DefaultReconcile.MaxChecks
	}
	if p.Concurrency == 0 {
		p.Concurrency = DefaultReconcile.Concurrency
	}
	return p
}

// Validate checks a policy read from a config: offsets positive and increasing, positive interval
// and counts.
func (p ReconcilePolicy) Validate() error {
	for i, d := range p.Schedule {
		if d <= 0 || (i > 0 && d <= p.Schedule[i-1]) {
			return fmt.Errorf("schedule: offsets must be positive and increasing (%s)", d)
		}
	}
	switch {
	case p.ThenEvery < 0:
		return fmt.Errorf("then_every: must be positive")
	case p.MaxChecks < 0:
		return fmt.Errorf("max_checks: must be positive")
	case p.Concurrency < 0:
		return fmt.Errorf("concurrency: must be positive")
	}
	return nil
}

// slot returns when query k (0-based) of an order created at created falls due.
func (p ReconcilePolicy) slot(created time.Time, k int) time.Time {
	if k < len(p.Schedule) {
		return created.Add(p.Schedule[k])
	}
	last := p.Schedule[len(p.Schedule)-1]
	return created.Add(last + time.Duration(k-len(p.Schedule)+1)*p.ThenEvery)
}

// CloseAt returns when a pending order of provider is closed for expiry: at its expiry, but for
// WeChat Pay not within WechatCloseDelay of its creation.
func CloseAt(provider string, created, expires time.Time) time.Time {
	if provider == ProviderWechatpay && expires.Before(created.Add(WechatCloseDelay)) {
		return created.Add(WechatCloseDelay)
	}
	return expires
}

// LocalCloseGrace is how long after an order's expiry a close of our own (Fact.Local: the
// provider did not know the trade yet) asks the provider about the order once more: the buyer
// could still open and pay the trade until the expiry the provider enforces (the pay request
// carried it), on the provider's clock, and the notification of that payment may be lost.
const LocalCloseGrace = 10 * time.Minute

// LocalCloseWindow is how long after its expiry an order closed by a close of our own is asked
// about again when its check once more gets no verified answer (the provider unreachable or
// refusing, an answer that does not verify) or finds the trade still open: past it the checks end,
// logged as an error (look in the provider's portal).
const LocalCloseWindow = 7 * 24 * time.Hour

// LocalCloseCheckAt returns when an order closed locally at now is asked about once more:
// LocalCloseGrace after its expiry, or after now if that is later (an expiry long past).
func LocalCloseCheckAt(o *Order, now time.Time) time.Time {
	at := o.ExpiresAt
	if at.Before(now) {
		at = now
	}
	return at.Add(LocalCloseGrace)
}

// ClosedCheckAt is the NextCheckAt a Commit writes for a step's order o that is not pending: a
// closed order's (set by a close of our own, LocalCloseCheckAt), none for the others. A pending
// order's is the reconciliation's, which a Commit leaves as stored.
func ClosedCheckAt(o *Order) *time.Time {
	if o.Status != StatusClosed {
		return nil
	}
	return o.NextCheckAt
}

// NextOrderCheck returns when a pending order that has had checks queries (the last of them at or
// before now) is next due: the first slot of the schedule after now, or its close at expiry when
// the queries are used up or the next slot would come at or after it. Missed slots (downtime) are
// not made up one by one: one query at start covers them.
func (p ReconcilePolicy) NextOrderCheck(provider string, o *Order, checks int, now time.Time) time.Time {
	p = p.WithDefaults()
	closeAt := CloseAt(provider, o.CreatedAt, o.ExpiresAt)
	if checks >= p.MaxChecks {
		return closeAt
	}
	k := checks
	for !p.slot(o.CreatedAt, k).After(now) {
		k++
	}
	if at := p.slot(o.CreatedAt, k); at.Before(closeAt) {
		return at
	}
	return closeAt
}

// FirstOrderCheck returns when a new order is first due: its first query, or its close at expiry
// if that comes first.
func (p ReconcilePolicy) FirstOrderCheck(provider string, o *Order) time.Time {
	p = p.WithDefaults()
	closeAt := CloseAt(provider, o.CreatedAt, o.ExpiresAt)
	if provider == ProviderAlipayLegacy {
		return closeAt // no query service: nothing to ask before the expiry
	}
	if at := p.slot(o.CreatedAt, 0); at.Before(closeAt) {
		return at
	}
	return closeAt
}

// NextRefundCheck returns when a pending refund created at created is next due after now, and
// false when its RefundWindow is over: then it needs attention.
func (p ReconcilePolicy) NextRefundCheck(created time.Time, checks int, now time.Time) (time.Time, bool) {
	p = p.WithDefaults()
	k := checks
	for !p.slot(created, k).After(now) {
		k++
	}
	at := p.slot(created, k)
	if at.After(created.Add(RefundWindow)) {
		return time.Time{}, false
	}
	return at, true
}
