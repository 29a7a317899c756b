package paynotify

import (
	"context"
	"errors"
	"time"
)

// ErrNoQueryService is returned by a Provider whose provider has no query API: its orders are
// settled by notifications only, and reconciliation skips them.
var ErrNoQueryService = errors.New("paynotify: the provider has no query service")

// ErrVerifyUnavailable is wrapped by a Verifier's error when a check it must make could not be
// made now (legacy Alipay's notify_verify did not answer): the callback is answered as a failure
// and recorded with ReasonVerifyUnavailable, so that the provider sends it again.
var ErrVerifyUnavailable = errors.New("paynotify: a verification check could not be made")

// ReasonVerifyUnavailable is the evidence reason of a callback whose verification could not be
// completed (ErrVerifyUnavailable).
const ReasonVerifyUnavailable = "verify_unavailable"

// ErrNoCloseService is wrapped by the Close error of a Provider whose provider has no close
// service (legacy Alipay): an expired order is closed locally, with no provider call; a close asked
// for through the API is refused with that error (EPROVIDER).
var ErrNoCloseService = errors.New("paynotify: the provider has no close service")

// ErrPaidAtProvider is wrapped by a Gateway's Pay error when the provider refused to create the
// payment because a trade of that out_trade_no is already paid (a signed Alipay precreate
// ACQ.TRADE_HAS_SUCCESS, WeChat Pay's ORDERPAID): the order was created and paid before, and the
// store does not have it (restored from an older backup, or the number reused by another
// system). Service.CreateOrder then stores the order without payment parameters and asks the
// provider about it at once; nothing is taken from the refusal itself.
var ErrPaidAtProvider = errors.New("paynotify: the provider says a trade of this out_trade_no is already paid")

// CheckResult is what one query of an order or a refund found, and what was done with it.
type CheckResult struct {
	// Order is the order after the check.
	Order *Order
	// Refund is the refund after a refund check.
	Refund *Refund
	// State is the provider's word for the trade or refund ("TRADE_SUCCESS", "NOTPAY", …).
	State string
	// Fact is the verified fact the answer stated, nil when it stated nothing to apply.
	Fact *Fact
	// Verdict and Reason are the Processor's, when the answer was applied or rejected (on a dry
	// run, what applying it would give: Processor.Preview); "" when there was nothing to apply
	// (the order is still pending at the provider).
	Verdict Verdict
	Reason  string
	// Evidence is the record kept of the answer, if any.
	Evidence *Evidence
	// NotFound says the provider does not know the trade or the refund asked about
	// (Answer.NotFound). A refund is then asked for again, idempotently under its number, unless
	// on a dry run.
	NotFound bool
}

// CheckOrder queries the provider for order o of app and, unless dryRun, applies a verified
// answer through the Processor, exactly as a notification: the same checks (app, amount,
// currency), state machine, events and anomalies, with the signed answer kept as evidence (source
// query). An answer that does not verify, or that is about another order, changes nothing and is
// kept as rejected evidence. An answer that states nothing (the trade does not exist or waits
// for the buyer) changes nothing and keeps no evidence. The error is the provider's
// (EPROVIDERUNAVAILABLE: the check is to be tried again) or the store's.
func (s *Service) CheckOrder(ctx context.Context, a *App, o *Order, dryRun bool) (*CheckResult, error) {
	received := s.now()
	ans, err := a.Gateway.Query(ctx, o)
	if err == nil && !dryRun && ans != nil && ans.Fact != nil && ans.Fact.Kind == FactRefund && ans.Fact.RefundRequestNo == "" &&
		!ans.Fact.RefundPerRequest && ans.Fact.OutTradeNo == o.OutTradeNo {
		s.settlePendingRefunds(ctx, a, o)
	}
	return s.applyAnswer(ctx, a, o, nil, ans, err, received, dryRun)
}

// settlePendingRefunds checks the pending refunds of o with the refund query before a query's
// answer that states only the order's refunded total (Alipay's TRADE_CLOSED after refunds) is
// applied: applied first, the total announced its increase in an order.refunded of no refund in
// particular, and each refund of ours confirmed afterwards was announced again with its own
// amount, the events adding up to twice what was refunded (a reviewer helper's finding). A check
// that fails leaves its refund pending, as before; the total then counts it.
func (s *Service) settlePendingRefunds(ctx context.Context, a *App, o *Order) {
	refunds, err := s.Store.ListRefunds(ctx, o.App, o.OutTradeNo)
	if err != nil {
		s.logger().Warn("list refunds before applying a refunded total", "app", a.Name, "out_trade_no", o.OutTradeNo, "err", err)
		return
	}
	for _, rf := range refunds {
		if rf.Status != RefundPending {
			continue
		}
		if _, err := s.CheckRefund(ctx, a, o, rf, false); err != nil {
			s.logger().Warn("check a pending refund before applying a refunded total", "app", a.Name, "out_trade_no", o.OutTradeNo,
				"out_request_no", rf.OutRequestNo, "err", err)
		}
	}
}

// applyAnswer is the common end of a query: reject, apply, or note that nothing is to be done.
func (s *Service) applyAnswer(ctx context.Context, a *App, o *Order, rf *Refund, ans *Answer, err error, received time.Time, dryRun bool) (*CheckResult, error) {
	res := &CheckResult{Order: o, Refund: rf}
	var rej *RejectError
	switch {
	case err != nil && errors.As(err, &rej) && ans != nil:
		res.Verdict, res.Reason = VerdictRejected, rej.Reason
		if res.Evidence, err = s.keepRejected(ctx, a, o, ans, received, rej.Reason, rej.Detail, dryRun); err != nil {
			return nil, err
		}
		s.logger().Warn("query answer rejected", "app", a.Name, "out_trade_no", o.OutTradeNo, "reason", rej.Reason, "detail", rej.Detail)
		return res, nil
	case err != nil:
		return nil, err
	}
	res.State, res.NotFound = ans.State, ans.NotFound
	if ans.Fact == nil {
		return res, nil
	}
	res.Fact = ans.Fact
	if ans.Fact.OutTradeNo != o.OutTradeNo || (rf != nil && ans.Fact.RefundRequestNo != rf.OutRequestNo) {
		// Signed, but not an answer to our question: a provider fault or a replayed answer (the
		// providers' answer signatures do not cover the question). A refund's answer must name
		// the refund asked about.
		res.Verdict, res.Reason = VerdictRejected, ReasonOutTradeNoMismatch
		detail := "asked about " + o.OutTradeNo + ", answered about " + ans.Fact.OutTradeNo
		if rf != nil {
			detail = "asked about refund " + rf.OutRequestNo + " of " + o.OutTradeNo + ", answered about refund " +
				ans.Fact.RefundRequestNo + " of " + ans.Fact.OutTradeNo
		}
		if res.Evidence, err = s.keepRejected(ctx, a, o, ans, received, ReasonOutTradeNoMismatch, detail, dryRun); err != nil {
			return nil, err
		}
		s.logger().Warn("query answer about another order", "app", a.Name, "out_trade_no", o.OutTradeNo, "answered", ans.Fact.OutTradeNo)
		return res, nil
	}
	if dryRun {
		r, err := s.Processor.Preview(ctx, a, *ans.Fact)
		if err != nil {
			return nil, err
		}
		res.Verdict, res.Reason = r.Verdict, r.Reason
		if r.Order != nil {
			res.Order = r.Order
		}
		return res, nil
	}
	ev := s.answerEvidence(a, ans, received)
	r, err := s.applyAnswered(ctx, a, *ans.Fact, ev)
	if err != nil {
		return nil, err
	}
	res.Verdict, res.Reason, res.Evidence = r.Verdict, r.Reason, r.Evidence
	if r.Order != nil {
		res.Order = r.Order
	}
	s.logger().Info("query answer applied", "app", a.Name, "out_trade_no", o.OutTradeNo, "state", ans.State, "verdict", r.Verdict, "reason", r.Reason)
	return res, nil
}

// keepRejected records a rejected answer about order o as evidence (nothing on a dry run).
func (s *Service) keepRejected(ctx context.Context, a *App, o *Order, ans *Answer, received time.Time, reason, detail string, dryRun bool) (*Evidence, error) {
	if dryRun {
		return nil, nil
	}
	ev := s.answerEvidence(a, ans, received)
	ev.Verdict, ev.Reason, ev.Detail, ev.OutTradeNo = VerdictRejected, reason, detail, o.OutTradeNo
	if err := s.Store.InsertEvidence(ctx, ev); err != nil {
		return nil, err
	}
	return ev, nil
}

func (s *Service) answerEvidence(a *App, ans *Answer, received time.Time) *Evidence {
	ev := s.Processor.NewEvidence(a, SourceQuery, ans.Endpoint, received, ans.Header, ans.Body)
	ev.DurationMS = s.now().Sub(received).Milliseconds()
	return ev
}

// CheckRefund settles a refund with the provider's refund query. A pending refund that the
// provider confirms or fails is applied (with the answer as evidence); one the provider does not
// know (Answer.NotFound: a crash before the request reached it) is requested again, idempotently
// under its number; one still processing is left pending. On an error the result is nil, but for
// an error of the refund asked for again, which comes with the result (res.NotFound).
// A succeeded refund is checked once to confirm its own amount, which was inferred when it was
// recorded from cumulative totals (an Alipay refund started in the portal).
func (s *Service) CheckRefund(ctx context.Context, a *App, o *Order, rf *Refund, dryRun bool) (*CheckResult, error) {
	received := s.now()
	ans, err := a.Gateway.QueryRefund(ctx, o, rf)
	if rf.Status == RefundSucceeded {
		return s.confirmRefund(ctx, a, o, rf, ans, err, received, dryRun)
	}
	if err == nil && ans != nil && ans.Fact != nil && a.Provider == ProviderWechatpay && ans.Fact.RefundRequestNo == rf.OutRequestNo &&
		ans.Fact.OutTradeNo != o.OutTradeNo {
		// A verified answer that this number is another order's refund: out_refund_no is unique
		// per merchant at WeChat Pay, so no refund of this order exists or can be made under it.
		// Failed, as the refund call fails it (OUT_REFUND_NO_USED); rejected as an answer about
		// another order, it stayed pending for good, holding the order's amount (a refund-audit
		// helper's finding). The answer is kept as the evidence of that.
		failed := *ans
		failed.Fact = &Fact{Kind: FactRefundFailed, OutTradeNo: o.OutTradeNo, RefundPerRequest: true, RefundRequestNo: rf.OutRequestNo}
		ans = &failed
	}
	notFound := ans != nil && ans.NotFound
	res, err := s.applyAnswer(ctx, a, o, rf, ans, err, received, dryRun)
	if res != nil {
		res.NotFound = notFound
	}
	if err != nil || dryRun || !notFound {
		if err == nil {
			res.Refund = s.currentRefund(ctx, rf)
		}
		return res, err
	}
	// The provider has no such refund: the request never reached it (or failed there). Ask again.
	// Its error comes with res (NotFound): a signed refusal (EPROVIDER) is then of the refund
	// asked for again, which requestRefund has recorded failed, not of the query.
	if err := s.requestRefund(ctx, a, o, rf); err != nil {
		return res, err
	}
	res.Refund = s.currentRefund(ctx, rf)
	return res, nil
}

// confirmRefund corrects a succeeded refund's amount to what the provider's verified refund query
// says.
func (s *Service) confirmRefund(ctx context.Context, a *App, o *Order, rf *Refund, ans *Answer, err error, received time.Time, dryRun bool) (*CheckResult, error) {
	var rej *RejectError
	switch {
	case err != nil && errors.As(err, &rej) && ans != nil:
		// Kept as rejected evidence, as applyAnswer keeps a rejected order query's answer. The
		// amount stays unconfirmed: the reconciliation asks again (Reconciler.checkRefund).
		res := &CheckResult{Order: o, Refund: rf, Verdict: VerdictRejected, Reason: rej.Reason}
		if res.Evidence, err = s.keepRejected(ctx, a, o, ans, received, rej.Reason, rej.Detail, dryRun); err != nil {
			return nil, err
		}
		s.logger().Warn("refund query answer rejected", "app", a.Name, "out_trade_no", o.OutTradeNo, "reason", rej.Reason, "detail", rej.Detail)
		return res, nil
	case err != nil:
		return nil, err
	}
	res := &CheckResult{Order: o, Refund: rf, State: ans.State, Fact: ans.Fact}
	f := ans.Fact
	if f != nil && (f.OutTradeNo != o.OutTradeNo || f.RefundRequestNo != rf.OutRequestNo) {
		// Not about this refund (another refund of the order, replayed): its amount is not ours.
		res.Verdict, res.Reason = VerdictRejected, ReasonOutTradeNoMismatch
		detail := "asked about refund " + rf.OutRequestNo + " of " + o.OutTradeNo + ", answered about refund " +
			f.RefundRequestNo + " of " + f.OutTradeNo
		if res.Evidence, err = s.keepRejected(ctx, a, o, ans, received, ReasonOutTradeNoMismatch, detail, dryRun); err != nil {
			return nil, err
		}
		s.logger().Warn("refund query answer about another refund", "app", a.Name, "out_trade_no", o.OutTradeNo,
			"out_request_no", rf.OutRequestNo, "answered", f.OutTradeNo+"/"+f.RefundRequestNo)
		return res, nil
	}
	if f == nil || f.Kind != FactRefund || f.RefundAmount <= 0 || dryRun {
		return res, nil
	}
	if f.RefundAmount != rf.Amount {
		if err := s.Store.ConfirmRefundAmount(ctx, rf, f.RefundAmount); err != nil {
			return nil, err
		}
		s.logger().Info("refund amount confirmed", "app", a.Name, "out_trade_no", o.OutTradeNo, "out_request_no", rf.OutRequestNo,
			"recorded", int64(rf.Amount), "confirmed", int64(f.RefundAmount))
	}
	// With this amount certain, the order's refunded total may be known to be higher than the
	// provider last reported it (a refund of ours confirmed meanwhile left this inferred amount
	// out: Processor.load): the answer goes through the Processor as any refund fact, kept as
	// query evidence, and raises the total to the sum of the certain refunds if that is more.
	recount := *f
	recount.Recount = true
	r, err := s.applyAnswered(ctx, a, recount, s.answerEvidence(a, ans, received))
	if err != nil {
		return nil, err
	}
	res.Verdict, res.Reason, res.Evidence = r.Verdict, r.Reason, r.Evidence
	if r.Order != nil {
		res.Order = r.Order
	}
	res.Refund = s.currentRefund(ctx, rf)
	return res, nil
}

// currentRefund re-reads rf, or returns it as it was when that fails.
func (s *Service) currentRefund(ctx context.Context, rf *Refund) *Refund {
	if cur, err := s.refund(ctx, rf.App, rf.OutTradeNo, rf.OutRequestNo); err == nil {
		return cur
	}
	return rf
}
