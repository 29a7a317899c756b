package paynotify

import (
	"context"
	"errors"
	"time"
)

// ErrVersionConflict is returned by Store.Commit when the order's version is no longer the one
// the change was decided from: another change won the race. The caller reloads and decides again.
var ErrVersionConflict = errors.New("paynotify: order version conflict")

// ErrRepeatMissed is returned by Store.Commit for a repeat conditioned on the order's version
// (Change.RepeatVersion) when the order is no longer at that version or the record is gone:
// nothing was written, and the caller decides the request in full.
var ErrRepeatMissed = errors.New("paynotify: repeat missed")

// Store keeps orders, refunds, events and evidence. Implementations: sqlite.DB and postgres.DB,
// both checked by the storetest conformance suite.
type Store interface {
	OrderStore
	EventStore
	EvidenceStore
	CheckStore
	WebhookStore
	APITokenStore
	StatsStore
	OverviewStore
}

// OrderStore keeps orders and their refunds.
type OrderStore interface {
	// CreateOrder inserts o (Version 1, with its NextCheckAt and Checks) unless an order with the
	// same (App, OutTradeNo) exists. It returns the stored order and whether it was created; an
	// existing order is returned unchanged, for the caller to compare.
	CreateOrder(ctx context.Context, o *Order) (stored *Order, created bool, err error)

	// GetOrder returns the order, or an *Error with code ENOTFOUND.
	GetOrder(ctx context.Context, app, outTradeNo string) (*Order, error)

	// ListOrders returns orders, newest first.
	ListOrders(ctx context.Context, filter OrderFilter) ([]*Order, error)

	// CreateRefund records r (normally pending, with its NextCheckAt) unless a refund with the same
	// (App, OutTradeNo, OutRequestNo) exists; it returns the stored refund and whether it was
	// created. The order
	// must exist (ENOTFOUND otherwise). A new refund that would take the order's refunds past its
	// amount is refused with RefundBound's error (EINVALID, or ECONFLICT while pending refunds
	// leave it uncertain), checked atomically with the insert, so that two concurrent refunds
	// cannot both pass.
	CreateRefund(ctx context.Context, r *Refund) (stored *Refund, created bool, err error)

	// ListRefunds returns the refunds of an order in the order they were recorded (their first
	// write), whatever their CreatedAt: the Processor reads that order as which came first.
	ListRefunds(ctx context.Context, app, outTradeNo string) ([]*Refund, error)

	// ConfirmRefundAmount sets the amount of a succeeded refund (App, OutTradeNo, OutRequestNo of
	// r) to what the provider's refund query verified; a refund that is not succeeded is left
	// alone. The order's refunded total is not touched: it came from the provider's totals.
	ConfirmRefundAmount(ctx context.Context, r *Refund, amount Amount) error

	// ListPendingRefunds returns the pending refunds created at or after since, of app ("" for
	// every app), oldest first.
	ListPendingRefunds(ctx context.Context, app string, since time.Time) ([]*Refund, error)

	// ListAttentionRefunds returns the refunds created at or after since that need attention
	// (NeedsAttention): pending ones whose checks ran out, and succeeded ones whose amount,
	// inferred from Alipay's running total, no refund query confirmed within the window (still
	// checked: they have a NextCheckAt); oldest first.
	ListAttentionRefunds(ctx context.Context, since time.Time) ([]*Refund, error)

	// Commit applies c atomically: the order change (compare-and-set on the version it was decided
	// from), the refund upsert, the events, the anomaly and the evidence, all in one transaction,
	// durable when Commit returns nil. It returns ErrVersionConflict when the order moved since,
	// and reports whether c.Anomaly was new (its event is appended only then). An order that
	// leaves pending loses its NextCheckAt, unless it is closed with one (ClosedCheckAt: a close
	// of our own, asked about once more); Commit never writes NextCheckAt or Checks otherwise.
	Commit(ctx context.Context, c *Change) (anomalyNew bool, err error)
}

// OrderCommitter is implemented by a store that can read an order inside its write path: both
// stores, in their group-commit writer (docs/storage.md, "Deciding in the writer"). The
// Processor uses it, when the store has it, instead of GetOrder then Commit, so that deciding a
// fact takes no read of its own: on SQLite none on the read pool, on PostgreSQL one statement
// for a whole batch's orders instead of a round trip each.
type OrderCommitter interface {
	// CommitOrder reads the order (app, outTradeNo) in the transaction its change will be written
	// in, calls build with it (nil when there is no such order) and commits the Change build
	// returns as Commit would, with the same answers (ErrVersionConflict included: a store may
	// read before other writes of the batch, as PostgreSQL does); a nil Change writes nothing and a build
	// error is returned as it is, nothing written. ev, when not nil, is the Evidence the Change
	// will carry (the store may prepare it beforehand). build runs on the writer, while other
	// callers' writes wait: it must be quick, must not call the store, and runs at most once (not
	// at all when ctx ends before its turn, the store is closed or the batch cannot begin: then
	// CommitOrder returns that error).
	CommitOrder(ctx context.Context, app, outTradeNo string, ev *Evidence, build func(o *Order) (*Change, error)) (anomalyNew bool, err error)
}

// Change is everything one decision writes, committed together by Store.Commit.
type Change struct {
	// Order, when set, is the new state of the stored order whose version is PrevVersion: its
	// Status, RefundedAmount, ProviderTradeNo, Version and PaidAt are written. The rest of an
	// order (channel, amount, currency, subject, body, payer, times, pay parameters) is fixed when
	// it is created, and Commit leaves it as stored.
	Order       *Order
	PrevVersion int64
	// Refund, when set, is inserted or, if it exists, has its Status, ProviderRefundNo (when
	// not empty), NextCheckAt and UpdatedAt replaced; a succeeded refund stays succeeded (and
	// keeps its NextCheckAt, unless RefundConfirmed). Its NeedsAttention is cleared when it
	// leaves pending or RefundConfirmed (the refund is settled, or its amount confirmed).
	Refund *Refund
	// RefundConfirmed says that Refund confirms a succeeded refund's inferred amount (the
	// recount of Service.confirmRefund): its NextCheckAt (nil) replaces the stored one, in the
	// same transaction as the order's total, so that the next recount of the order counts the
	// amount as certain.
	RefundConfirmed bool
	// Events are appended in order.
	Events []*Event
	// Anomaly, when set, is recorded once per (App, OutTradeNo, Key); its Event is appended only
	// the first time.
	Anomaly *Anomaly
	// OrderAt, when Order is nil and Anomaly is set, conditions the change (0: not) on the
	// anomaly's order (Anomaly.App, Anomaly.OutTradeNo) being at version OrderAt still; otherwise
	// nothing is written and Commit returns ErrVersionConflict (ENOTFOUND without the order). The
	// anomaly's event carries the order at the version it was decided on: written after an event
	// of a later version (a refund committed meanwhile), it would show the order going back in the
	// event log, whose events of one order come in version order (a reviewer helper's finding).
	// The Processor sets it for an anomaly about an order its change does not move.
	OrderAt int64
	// Evidence, when set, is inserted.
	Evidence *Evidence
	// Repeat says that Evidence, a duplicate, repeats the stored duplicate record with the same
	// ID byte for byte: that record's Repeats grows by one and its LastReceivedAt becomes
	// Evidence.ReceivedAt (if later), instead of a new record. When no record has that ID
	// (pruned since), Evidence is inserted as it is. A repeat writes nothing else: a Change
	// with Repeat and anything but a VerdictDuplicate Evidence is refused (EINVALID).
	Repeat bool
	// RepeatVersion, when not 0, conditions a repeat on the order it is about (Evidence.App,
	// Evidence.OutTradeNo) being at this version still, the version its verdict was decided at:
	// then the record is counted as for Repeat; otherwise, or when the record is gone, nothing is
	// written and Commit returns ErrRepeatMissed. The Processor counts a repeat this way without
	// reading the order first.
	RepeatVersion int64
}

// CheckRepeat returns the EINVALID error a store answers a Change with Repeat set that is not a
// repeat (Change.Repeat), or nil.
func (c *Change) CheckRepeat() error {
	if !c.Repeat {
		if c.RepeatVersion != 0 {
			return Errorf(EINVALID, "A repeat version without a repeat.")
		}
		return nil
	}
	if !c.duplicateEvidenceOnly() {
		return Errorf(EINVALID, "A repeat is a duplicate's evidence alone.")
	}
	return nil
}

// duplicateEvidenceOnly reports whether c writes a duplicate's evidence and nothing else.
func (c *Change) duplicateEvidenceOnly() bool {
	return c.Evidence != nil && c.Evidence.Verdict == VerdictDuplicate && c.Order == nil && c.Refund == nil &&
		c.Anomaly == nil && len(c.Events) == 0
}

// Anomaly is a distinct disagreement between a verified fact and our order or config.
type Anomaly struct {
	App        string
	OutTradeNo string
	Reason     string
	// Key identifies the anomaly across retries of the same message.
	Key   string
	Event *Event
}

// OrderFilter selects orders; empty fields match everything.
type OrderFilter struct {
	App     string
	Status  OrderStatus
	Channel string
	// TradeNo, when set, matches an order whose OutTradeNo or ProviderTradeNo is exactly it.
	TradeNo string
	Since   time.Time // created at or after
	Until   time.Time // created before
	Limit   int       // 0 means 100
	// Offset skips this many of the matching orders, newest first (paging).
	Offset int
}

// EventStore reads the event log.
type EventStore interface {
	// ListEvents returns up to filter.Limit events with Seq > filter.After, oldest first.
	ListEvents(ctx context.Context, filter EventFilter) ([]*Event, error)
	// GetEvent returns the event with id, or an *Error with code ENOTFOUND.
	GetEvent(ctx context.Context, id string) (*Event, error)
}

// EventFilter selects events.
type EventFilter struct {
	After int64  // only events with Seq > After
	App   string // "" for every app
	// OutTradeNo, with App, selects the events of one order.
	OutTradeNo string
	Limit      int // at most this many; 0 means 100
}

// OverviewStore answers the operator console's overview with bounded queries: each reads one time
// range through an index.
type OverviewStore interface {
	// PaidSince returns, per app, the orders paid (an order.paid event) at or after since: their
	// count and the sum of their amounts, by app name.
	PaidSince(ctx context.Context, since time.Time) ([]AppPaid, error)
	// CountEvidence returns how many requests of each verdict were received in [since, until):
	// each evidence record received then, and its repeats (Change.Repeat), which are counted at
	// the record's first arrival (ReceivedAt).
	CountEvidence(ctx context.Context, since, until time.Time) (map[Verdict]int, error)
}

// AppPaid is one app's paid orders in a time range (OverviewStore.PaidSince).
type AppPaid struct {
	App    string
	Count  int
	Amount Amount
}

// EvidenceStore keeps and lists evidence records.
type EvidenceStore interface {
	// InsertEvidence stores one evidence record outside any order change (rejected requests,
	// failures).
	InsertEvidence(ctx context.Context, e *Evidence) error
	// ListEvidence returns evidence records, newest first.
	ListEvidence(ctx context.Context, filter EvidenceFilter) ([]*Evidence, error)
	// GetEvidence returns one evidence record, or an *Error with code ENOTFOUND.
	GetEvidence(ctx context.Context, id string) (*Evidence, error)
	// PruneEvidence deletes the evidence records received before before, except those an
	// order.anomaly event names (its anomaly.notification_id): anomalies and events are kept, and
	// so is the record each anomaly was raised on. It deletes at most batch records (at least 1)
	// per transaction, oldest first, and loops until none is left or ctx ends; it returns how many
	// it deleted, also when it stops on an error.
	PruneEvidence(ctx context.Context, before time.Time, batch int) (int64, error)
	// PruneRejectedEvidence deletes the rejected notifications received before before (verdict
	// rejected, source notification: requests that did not verify, which anyone can post to a
	// notify URL), as PruneEvidence does (no anomaly is raised on a rejected record), except
	// legacy Alipay's notify_id_unconfirmed ones, whose signature held (a leaked key's trace);
	// and the notifications whose check could not be made (verdict error, reason
	// verify_unavailable), which come under the same cap, as anyone can cause one by replaying a
	// message while a check fails. Query answers and reprocesses are left to PruneEvidence. A
	// shorter period than the other evidence's, so that junk does not fill the disk for months.
	PruneRejectedEvidence(ctx context.Context, before time.Time, batch int) (int64, error)
}

// EvidenceFilter selects evidence records; empty fields match everything.
type EvidenceFilter struct {
	App        string
	OutTradeNo string
	Verdict    Verdict
	Reason     string
	Source     string
	Since      time.Time // received at or after
	Limit      int       // 0 means 100
	// BodyBudget, when above 0, bounds the bytes of bodies and headers loaded: the newest records
	// carry theirs while their running sum stays within it, the others come without (Body and
	// Headers nil, BodyOmitted set), never read from the database. A list of a thousand records
	// of 64 KiB bodies (junk anyone can post, kept as rejected evidence) loaded them all before
	// the API's answer dropped most (a reviewer helper's finding).
	BodyBudget int
}

// CheckKind is what a reconciliation check looks at.
type CheckKind string

const (
	// CheckOrder: a pending order, queried at the provider (or closed at expiry).
	CheckOrder CheckKind = "order"
	// CheckRefund: a refund, queried with the refund query.
	CheckRefund CheckKind = "refund"
)

// Check is one claimed reconciliation check: an order or a refund whose NextCheckAt fell due.
type Check struct {
	Kind         CheckKind
	App          string
	OutTradeNo   string
	OutRequestNo string // CheckRefund only
	// Checks is how many checks it had before this one.
	Checks int
	// Token identifies the claim: FinishCheck does nothing once another claim has replaced it.
	Token string
}

// CheckStore keeps the reconciliation's schedule, the NextCheckAt of orders and refunds, so that
// one periodic sweep finds what is due through an index instead of a job per order.
type CheckStore interface {
	// ClaimChecks claims up to limit orders and refunds whose NextCheckAt is at or before now,
	// earliest first within each kind, in the steps of ClaimParts: each moves to now+lease under a new Token, so that a concurrent sweep (of
	// this or another process) skips it, and a claimer that dies leaves it due again at the end
	// of the lease.
	ClaimChecks(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]*Check, error)
	// ClaimChecksOf is ClaimChecks of the rows of apps only (nil: every app): a process claims
	// the checks of the apps its config has, and leaves the others' to the processes that have
	// them (claimed, they took its pace and were given back for an hour: a reviewer helper's
	// finding).
	ClaimChecksOf(ctx context.Context, now time.Time, lease time.Duration, limit int, apps []string) ([]*Check, error)
	// CountDueChecks returns, by app, how many orders and refunds of the apps not in except were
	// due at before (NextCheckAt at or before it) and are still unclaimed: a sweep passes an hour
	// ago and the apps of its config, and warns about the apps whose checks nobody has claimed for
	// an hour (a reviewer's finding: an app dropped from every config went silent). Not on the
	// write path: on SQLite it reads on the read pool.
	CountDueChecks(ctx context.Context, before time.Time, except []string) (map[string]int64, error)
	// FinishCheck ends a claim, if c.Token still holds it: Checks grows by one when counted,
	// NextCheckAt becomes next (nil: never again; an order that is no longer pending gets nil
	// whatever next says, but for a closed one whose NextCheckAt was not cleared: a close of
	// our own, asked about once more), and a refund's NeedsAttention becomes attention. A claim
	// that no longer holds is left alone and FinishCheck returns nil.
	FinishCheck(ctx context.Context, c *Check, next *time.Time, counted, attention bool) error
	// FinishChecks is FinishCheck for several claims in one transaction (one durable write for a
	// batch of checks): each is ended as FinishCheck would, independently of the others.
	FinishChecks(ctx context.Context, done []CheckDone) error
}

// RefundClaimShare is the part of a claim's limit that due refunds take first (ClaimParts): with
// the orders first, a queue of due orders left no room for a refund in any claim for as long as
// it lasted, and a pending refund (money that may have left) went unchecked, never reaching
// needs_attention (a reviewer helper's finding).
const RefundClaimShare = 4 // a quarter

// ClaimPart is one step of a claim: up to Limit rows of Kind, of what is left of the limit.
type ClaimPart struct {
	Kind  CheckKind
	Limit int
}

// ClaimParts is the order in which a claim of limit rows takes them (CheckStore.ClaimChecks): the
// due refunds up to a share of limit (at least one), then the due orders, then more refunds.
func ClaimParts(limit int) []ClaimPart {
	return []ClaimPart{{CheckRefund, max(1, limit/RefundClaimShare)}, {CheckOrder, limit}, {CheckRefund, limit}}
}

// WriteHealther is a store that can tell whether its writes are failing now (both stores): the
// Processor asks it when a provider hung up before its change was committed, to tell a store's
// failure (store_error) from a provider's impatience (client_gone).
type WriteHealther interface {
	// WriteHealth returns why the store's writes are failing now, nil when they are not.
	WriteHealth() error
}

// CheckDone is how one check ends its claim (CheckStore.FinishChecks).
type CheckDone struct {
	Check     *Check
	Next      *time.Time
	Counted   bool
	Attention bool
	// KeepAttention: the check got no answer (it failed, was released, or its app was backing
	// off): a refund's NeedsAttention stays as it was, whatever Attention says. An outage
	// cleared the flag an operator relies on (a reviewer helper's finding).
	KeepAttention bool
	// WasPending: the check read the refund pending. If it is no longer pending when the claim
	// ends (a notification settled it meanwhile), its next check and needs_attention stay as that
	// settlement wrote them: the check's next time on a succeeded refund made it read as an
	// inferred, unconfirmed amount (a reviewer helper's finding). A check that panicked, or a
	// claim given back before its check read the refund, does not say so: the refund settled
	// meanwhile gets the claim's next time, and is asked about again then (not for ever: it is
	// read succeeded then).
	WasPending bool
}

// RefundBound says whether a new refund of amount fits an order of orderAmount, given the order's
// confirmed refunded total and the sums of its refunds that have not failed and that are pending
// (refunds confirmed without a record of ours, from a portal, count through refunded; pending ones
// may still succeed, so they count too): nil, or the error the request gets: EINVALID when the
// refund does not fit even beside what is certainly refunded (the refunds of ours that succeeded,
// or the provider's refunded total, whichever is more), ECONFLICT when it fits that but not beside
// that plus the pending refunds: a pending one may still fail, and a provider that reports a running
// total (Alipay's refund_fee) may already count in it a refund whose own answer has not come back,
// still pending here, so that sum can count one twice. Such a refund may fit once those are
// settled, and is worth asking again (a reviewer helper's finding: concurrent Alipay refunds that
// fitted were refused 400, "10800 already refunded or pending" on an order of 10000).
func RefundBound(orderAmount, refunded, nonFailed, pending, amount int64) error {
	// Compared with what is left, not summed: the sum could pass int64 (a refund of nearly
	// MaxInt64 fen, from Go) and wrap.
	// Certainly refunded: the refunds of ours that succeeded (nonFailed less the pending ones),
	// or the provider's total, whichever is more (a portal refund counts only in the latter; a
	// refund of ours can be succeeded while the order's total is held back, an Alipay amount not
	// yet confirmed). The pending ones come on top of it.
	sure := max(nonFailed-pending, refunded)
	switch {
	case amount > orderAmount || sure > orderAmount-amount:
		return Errorf(EINVALID, "Refunds would exceed the order amount (%d fen: %d refunded; %d asked).",
			orderAmount, sure, amount)
	case sure+pending > orderAmount-amount:
		return Errorf(ECONFLICT, "Refunds may exceed the order amount (%d fen: %d refunded and %d pending; %d asked): ask again once the pending refunds are settled.",
			orderAmount, sure, pending, amount)
	}
	return nil
}
