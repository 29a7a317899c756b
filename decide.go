package paynotify

import (
	"fmt"
	"time"
)

// FactKind is what a verified provider message says happened to a trade.
type FactKind string

const (
	// FactPaid: the buyer paid (Alipay TRADE_SUCCESS without refund, WeChat SUCCESS).
	FactPaid FactKind = "paid"
	// FactFinished: paid and no longer refundable (Alipay TRADE_FINISHED).
	FactFinished FactKind = "finished"
	// FactClosed: closed without payment (Alipay TRADE_CLOSED without refund_fee, WeChat CLOSED).
	FactClosed FactKind = "closed"
	// FactRefund: a refund succeeded; RefundTotal is the cumulative refunded amount after it.
	FactRefund FactKind = "refund"
	// FactRefundFailed: a refund request failed or was closed (WeChat REFUND.CLOSED, APIv2
	// REFUNDCLOSE, a signed final refusal).
	FactRefundFailed FactKind = "refund_failed"
	// FactRefundAbnormal: WeChat Pay's ABNORMAL (APIv2 CHANGE): the money left the merchant but
	// the buyer's account did not take it; the merchant platform settles it by hand, after which
	// the refund still succeeds (or closes). Neither a success nor a failure: the refund stays
	// pending, holding its amount, and the refund_abnormal anomaly is raised (docs/api.md).
	FactRefundAbnormal FactKind = "refund_abnormal"
	// FactIgnored: a verified message about nothing an order holds (another product's event): it
	// is kept as evidence, acknowledged, and changes nothing.
	FactIgnored FactKind = "ignored"
)

// Fact is a verified statement from a provider about one trade: the output of a protocol adapter
// after signature verification, the input of Decide. Values are as the provider reported them;
// nothing here has been checked against our own order yet.
type Fact struct {
	Kind            FactKind
	OutTradeNo      string
	ProviderTradeNo string
	// AppID, MchID and SellerID as reported; the Processor checks them against the app's config.
	AppID    string
	MchID    string
	SellerID string
	// Amount is the order's total as reported; HasAmount says whether the message carried it.
	Amount    Amount
	HasAmount bool
	// Currency as reported; "" when the message has none (Alipay: CNY).
	Currency string
	// At is when it happened at the provider (payment or refund time); zero if unknown.
	At time.Time
	// RefundTotal is the cumulative refunded amount after this refund (Alipay refund_fee). For
	// providers that report each refund separately (WeChat), set RefundPerRequest instead: the
	// Processor computes RefundTotal from the order's succeeded refunds.
	RefundTotal      Amount
	RefundPerRequest bool
	// RefundRequestNo is the refund's out_request_no / out_refund_no, if known.
	RefundRequestNo string
	// RefundAmount is this refund's own amount (WeChat), if known.
	RefundAmount Amount
	// ProviderRefundNo is the provider's id of the refund, if any.
	ProviderRefundNo string
	// NotificationID is the provider's id of the message (notify_id, event id): informational only,
	// never used for deduplication.
	NotificationID string
	// Detail is a note on how the message was verified, kept as the evidence's detail (e.g. which
	// canonical-string rule an Alipay signature matched); "" for none.
	Detail string
	// Local marks a close of our own, not the provider's: its trade does not exist (the buyer
	// never opened it) or it has no close service. Losing a race to a payment, it changes
	// nothing and raises no anomaly: the provider closed nothing, the payment stands.
	Local bool
	// CheckAt, on a Local close, is when the provider is to be asked about the order once more
	// (LocalCloseCheckAt): the buyer may still pay until the expiry the provider enforces, and
	// the notification of that payment may be lost. The closed order keeps it as its
	// NextCheckAt (docs/reconciliation.md, "A close of our own").
	CheckAt *time.Time
	// Recount marks a refund fact that only brings the order's refunded total up to the sum of
	// its certain refunds (an inferred amount confirmed: Service.confirmRefund); its own refund
	// was recorded and announced before. A step it makes announces the increase, of no refund
	// in particular.
	Recount bool
	// RefundedAtProvider marks a payment the provider reports as refunded since, of an amount
	// it does not say (WeChat Pay's trade_state REFUND, "转入退款"): the payment is applied, and
	// when the order has nothing refunded, an anomaly (ReasonRefundedAtProvider) says that money
	// went back (a refund made in the merchant platform, its notification sent elsewhere). The
	// Processor clears it when the order has any refund record (the REFUND state is about it).
	RefundedAtProvider bool
}

// isRefund reports whether f is about a refund: made, failed or abnormal.
func (f *Fact) isRefund() bool {
	return f.Kind == FactRefund || f.Kind == FactRefundFailed || f.Kind == FactRefundAbnormal
}

// key identifies what the fact says, for deduplicating anomalies across retries. A fact that
// reports refunds one by one says its own amount: its RefundTotal is derived from the order's
// other refunds (Processor.load), which move between the retries of one message.
func (f *Fact) key() string {
	total := f.RefundTotal
	if f.RefundPerRequest {
		total = f.RefundAmount
	}
	k := fmt.Sprintf("%s|%s|%d|%t|%s|%d|%s|%s|%s|%s", f.Kind, f.ProviderTradeNo, f.Amount, f.HasAmount,
		f.Currency, total, f.RefundRequestNo, f.AppID, f.MchID, f.SellerID)
	if f.RefundedAtProvider {
		k += "|refunded" // appended only when set: the other facts' keys stay as they were
	}
	return k
}

// Anomaly reasons (evidence reasons, docs/api.md, "Evidence"): a verified fact that disagrees with
// our order or our config.
const (
	ReasonAppIDMismatch    = "app_id_mismatch"
	ReasonSellerMismatch   = "seller_mismatch"
	ReasonUnknownOrder     = "unknown_order"
	ReasonAmountMismatch   = "amount_mismatch"
	ReasonCurrencyMismatch = "currency_mismatch"
	ReasonLatePayment      = "late_payment"
	ReasonUnexpectedClose  = "unexpected_close"
	// ReasonDuplicatePayment: a verified payment of an order already paid under another provider
	// trade number. Money arrived twice: acknowledged, raised once per trade number, and the
	// merchant refunds one of them.
	ReasonDuplicatePayment = "duplicate_payment"
	// ReasonDuplicatePaymentRefund: a verified refund, or refund failure, of another provider
	// trade number than the one that paid the order: the refund of a duplicate payment. The
	// order keeps its own payment; acknowledged, raised once per distinct message.
	ReasonDuplicatePaymentRefund = "duplicate_payment_refund"
	// ReasonRefundAbnormal: WeChat Pay reports a refund ABNORMAL (FactRefundAbnormal): someone
	// must settle it in the merchant platform. Acknowledged (no retry changes it), raised once
	// per distinct message; the refund stays pending.
	ReasonRefundAbnormal = "refund_abnormal"
	// ReasonRefundedAtProvider: the provider reports the order's payment as refunded since (WeChat
	// Pay's trade_state REFUND, of no stated amount: Fact.RefundedAtProvider) while the order has
	// no refund we know of: money went back that paynotify did not see (a refund made in the
	// merchant platform, whose notification went to another URL, or was lost). The payment is
	// applied (a pending order becomes paid: verdict accepted with this reason, as a late
	// payment); someone must check before shipping, and record the refund (its query by number).
	// Acknowledged.
	ReasonRefundedAtProvider = "refunded_at_provider"
)

// Acknowledged reports whether an anomaly of this reason is answered as success: a double
// payment (money that arrived), the refund of one, and an abnormal refund (which change nothing
// a retry could fix). Every other anomaly is answered as a failure, so that the provider retries.
func Acknowledged(reason string) bool {
	return reason == ReasonDuplicatePayment || reason == ReasonDuplicatePaymentRefund || reason == ReasonRefundAbnormal ||
		reason == ReasonRefundedAtProvider
}

// Rejection and failure reasons (unverified or failed requests).
const (
	ReasonSignatureInvalid = "signature_invalid"
	ReasonMalformed        = "malformed"
	ReasonDuplicateKey     = "duplicate_key"
	ReasonTimestampSkew    = "timestamp_skew"
	ReasonProbe            = "probe"
	ReasonUnknownSerial    = "unknown_serial"
	ReasonDecryptFailed    = "decrypt_failed"
	ReasonStoreError       = "store_error"
	// ReasonClientGone: the provider hung up before the change was committed; nothing was, and
	// the provider retries.
	ReasonClientGone = "client_gone"
	// ReasonOutTradeNoMismatch: a provider's signed answer to a query is about another order than
	// the one asked for (a provider fault, or a signed answer replayed): it is not applied.
	ReasonOutTradeNoMismatch = "out_trade_no_mismatch"
	// ReasonEndpointNotTaken and ReasonBodyUnreadable are reasons of callbacks that keep no
	// evidence, counted in metrics only: a callback to an endpoint its app does not take (WeChat
	// Pay APIv2 without an APIv2 key), answered 404; one whose body could not be read, 400.
	ReasonEndpointNotTaken = "endpoint_not_taken"
	ReasonBodyUnreadable   = "body_unreadable"
)

// Step is one version of an order produced by a decision, with the event that announces it.
type Step struct {
	Event EventType
	// Order is the order as it stands after this step (its Version is the event's version).
	Order Order
	// Refund is set on EventOrderRefunded: the refund this step confirmed.
	Refund *EventRefund
}

// Decision is what a verified fact does to an order: the steps it moves the order through (none
// when the fact is already applied or stale), and the anomaly it raises, if any.
type Decision struct {
	Steps   []Step
	Anomaly string
}

// Changed reports whether the decision moves the order.
func (d *Decision) Changed() bool { return len(d.Steps) > 0 }

// Final returns the order after the decision, or nil when it changes nothing.
func (d *Decision) Final() *Order {
	if len(d.Steps) == 0 {
		return nil
	}
	return &d.Steps[len(d.Steps)-1].Order
}

// Decide is the order state machine of docs/state_machine.md: the pure function from an order (nil
// when we have none) and a verified fact to the steps and the anomaly. It never moves an order
// backwards, never drops a verified payment, and returns no steps for a fact already applied, so
// that duplicates have no effect. Checks against the app's config (app id, seller) happen before
// it, in the Processor.
func Decide(o *Order, f Fact) Decision {
	if o == nil {
		return Decision{Anomaly: ReasonUnknownOrder}
	}
	if f.Amount < 0 || f.RefundAmount < 0 || f.RefundTotal < 0 {
		// No provider states a negative amount; a signed one (a provider fault, a simulator's)
		// would move the order's refunded total backwards.
		return Decision{Anomaly: ReasonAmountMismatch}
	}
	if f.HasAmount && f.Amount != o.Amount {
		return Decision{Anomaly: ReasonAmountMismatch}
	}
	if f.Currency != "" && o.Currency != "" && f.Currency != o.Currency {
		return Decision{Anomaly: ReasonCurrencyMismatch}
	}
	if (f.Kind == FactPaid || f.Kind == FactFinished) && f.ProviderTradeNo != "" && o.ProviderTradeNo != "" &&
		f.ProviderTradeNo != o.ProviderTradeNo && (o.Status == StatusPaid || o.Status == StatusFinished || o.Status == StatusRefunded) {
		return Decision{Anomaly: ReasonDuplicatePayment}
	}
	// The order's trade number is the payment it recorded (set by a payment, or by a refund that
	// implies one), so a refund naming another one is not of that payment, whatever its amounts
	// say: the order does not move, and no refund record is settled by it.
	if f.isRefund() && f.ProviderTradeNo != "" && o.ProviderTradeNo != "" && f.ProviderTradeNo != o.ProviderTradeNo {
		return Decision{Anomaly: ReasonDuplicatePaymentRefund}
	}
	d := decider{cur: *o, f: f}
	switch f.Kind {
	case FactPaid:
		switch o.Status {
		case StatusPending:
			d.pay()
		case StatusClosed:
			d.pay()
			d.anomaly = ReasonLatePayment
		}
	case FactFinished:
		switch o.Status {
		case StatusPending:
			d.pay()
			d.finish()
		case StatusPaid:
			d.finish()
		case StatusClosed:
			d.pay()
			d.finish()
			d.anomaly = ReasonLatePayment
		}
	case FactClosed:
		switch o.Status {
		case StatusPending:
			st := d.step(EventOrderClosed, func(o *Order) { o.Status = StatusClosed })
			if f.Local && f.CheckAt != nil {
				at := *f.CheckAt
				st.Order.NextCheckAt, d.cur.NextCheckAt = &at, &at
			}
		case StatusPaid, StatusFinished:
			if !f.Local {
				d.anomaly = ReasonUnexpectedClose
			}
		}
	case FactRefund:
		if f.RefundTotal <= 0 || f.RefundTotal > o.Amount {
			return Decision{Anomaly: ReasonAmountMismatch}
		}
		switch o.Status {
		case StatusPending:
			d.pay()
			d.refund()
		case StatusPaid, StatusFinished:
			if f.RefundTotal > o.RefundedAmount {
				d.refund()
			}
		case StatusClosed:
			d.pay()
			d.refund()
			d.anomaly = ReasonLatePayment
		}
	case FactRefundFailed:
		// Refund failures change no order state; the Processor records them on the refund.
	case FactRefundAbnormal:
		// Neither made nor failed: raised, and the refund left pending (the Processor); an
		// ABNORMAL arriving after the refund's success is stale (decideFor).
		d.anomaly = ReasonRefundAbnormal
	}
	if f.RefundedAtProvider && (f.Kind == FactPaid || f.Kind == FactFinished) && d.cur.RefundedAmount == 0 && d.cur.Status != StatusPending {
		// Before a late payment's anomaly: the money went back, which matters more than when
		// it came.
		d.anomaly = ReasonRefundedAtProvider
	}
	return Decision{Steps: d.steps, Anomaly: d.anomaly}
}

// decider accumulates the steps of one decision.
type decider struct {
	cur     Order
	f       Fact
	steps   []Step
	anomaly string
}

func (d *decider) step(ev EventType, move func(o *Order)) *Step {
	move(&d.cur)
	if d.cur.Status != StatusPending {
		// Only a pending order is checked, and a closed one that a close of our own left to be
		// asked about once more (the stores write a closed step's NextCheckAt and clear the
		// others'): the step's order is what answers the API (a close answered a check still
		// due).
		d.cur.NextCheckAt = nil
	}
	d.cur.Version++
	d.steps = append(d.steps, Step{Event: ev, Order: d.cur})
	return &d.steps[len(d.steps)-1]
}

func (d *decider) pay() {
	d.step(EventOrderPaid, func(o *Order) {
		o.Status = StatusPaid
		at := d.f.At.UTC() // the Processor stamps a zero At with its own clock before Decide
		o.PaidAt = &at
		if o.ProviderTradeNo == "" {
			o.ProviderTradeNo = d.f.ProviderTradeNo
		}
	})
}

func (d *decider) finish() {
	d.step(EventOrderFinished, func(o *Order) { o.Status = StatusFinished })
}

func (d *decider) refund() {
	prev := d.cur.RefundedAmount
	s := d.step(EventOrderRefunded, func(o *Order) {
		o.RefundedAmount = d.f.RefundTotal
		if o.RefundedAmount == o.Amount {
			o.Status = StatusRefunded
		}
	})
	amount := d.f.RefundTotal - prev
	if d.f.Recount {
		s.Refund = &EventRefund{Amount: amount, RefundedTotal: d.f.RefundTotal}
		return
	}
	if d.f.RefundAmount > 0 {
		amount = d.f.RefundAmount
	}
	s.Refund = &EventRefund{
		OutRequestNo:     d.f.RefundRequestNo,
		Amount:           amount,
		RefundedTotal:    d.f.RefundTotal,
		ProviderRefundNo: d.f.ProviderRefundNo,
	}
}
