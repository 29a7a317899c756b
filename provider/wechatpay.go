package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/wechatpay"
)

// Wechat is the paynotify.Provider of one WeChat Pay merchant app.
type Wechat struct {
	Client *wechatpay.Client
	// V2 verifies APIv2 XML notifications; nil when the app has no APIv2 key.
	V2 *WechatV2
	// MissRefresh, when set (an app verifying with platform certificates), makes a notification
	// signed with an unknown certificate serial start a download of the certificates in the
	// background (wechatpay.Client.RefreshAfterMiss, at most once a minute), so that WeChat Pay's
	// retry verifies after a rotation the periodic refresh has not seen yet. It is told each
	// such download's result.
	MissRefresh func(error)
}

// missRefreshTimeout bounds a download of the certificates that a notification started.
const missRefreshTimeout = 30 * time.Second

var _ paynotify.Provider = (*Wechat)(nil)

// WeChat Pay's API names, as Answer.Endpoint and evidence endpoints.
const (
	EndpointWechatQuery       = "wechatpay.query"
	EndpointWechatRefundQuery = "wechatpay.refund_query"
)

// Verifier returns the verifier of APIv3 notifications at /notify/wechatpay/{app}, and of APIv2
// ones at /notify/wechatpay-v2/{app} when the app has an APIv2 key.
func (g *Wechat) Verifier(endpoint string) paynotify.Verifier {
	switch {
	case endpoint == paynotify.ProviderWechatpay:
		return wechatVerifier{g.Client, g.MissRefresh}
	case endpoint == "wechatpay-v2" && g.V2 != nil:
		return g.V2
	}
	return nil
}

type wechatVerifier struct {
	c           *wechatpay.Client
	missRefresh func(error)
}

func (v wechatVerifier) Verify(h http.Header, body []byte, at time.Time) (paynotify.Fact, error) {
	var n *wechatpay.Notification
	var err error
	if at.IsZero() {
		n, err = v.c.VerifyNotification(h, body)
	} else {
		n, err = v.c.WithClock(func() time.Time { return at }).VerifyNotification(h, body)
	}
	if n != nil && errors.Is(err, wechatpay.ErrMchID) {
		// Signed by WeChat Pay for another merchant: the processor records it as an anomaly.
		err = nil
	}
	if err != nil {
		if at.IsZero() && v.missRefresh != nil {
			v.c.RefreshAfterMiss(err, h, missRefreshTimeout, v.missRefresh)
		}
		return paynotify.Fact{}, wechatReject(err)
	}
	switch {
	case n.Transaction != nil && (n.Transaction.MchID == "" || n.Transaction.OutTradeNo == ""),
		n.Refund != nil && (n.Refund.MchID == "" || n.Refund.OutTradeNo == ""):
		// WeChat Pay always sends both: a signed resource without them is not ours to apply.
		return paynotify.Fact{}, &paynotify.RejectError{Reason: paynotify.ReasonMalformed, Detail: "verified, but no mchid or out_trade_no"}
	case n.Transaction != nil:
		f := WechatTransactionFact(n.Transaction)
		f.NotificationID = n.ID
		return f, nil
	case n.Refund != nil && n.Refund.RefundStatus == "SUCCESS" && n.Refund.Amount.Refund == 0:
		// WeChat Pay always sends the refund's amount: a success without it is not ours to apply.
		return paynotify.Fact{}, &paynotify.RejectError{Reason: paynotify.ReasonMalformed,
			Detail: "verified, but a refund SUCCESS without amount.refund", OutTradeNo: n.Refund.OutTradeNo}
	case n.Refund != nil:
		f := WechatRefundFact(n.Refund)
		if f.Kind == "" {
			// A notification says SUCCESS, CLOSED or ABNORMAL; acknowledged as if applied, any
			// other status would be dropped: WeChat Pay retries while someone looks, as APIv2's.
			return paynotify.Fact{}, &paynotify.RejectError{Reason: paynotify.ReasonMalformed, OutTradeNo: n.Refund.OutTradeNo,
				Detail: fmt.Sprintf("verified, but a refund with refund_status %q, not one a notification carries", paynotify.ClipText(n.Refund.RefundStatus, 64))}
		}
		f.NotificationID = n.ID
		return f, nil
	default:
		// A verified event of another product: acknowledged, it moves no order.
		return paynotify.Fact{Kind: paynotify.FactIgnored, NotificationID: n.ID}, nil
	}
}

func wechatReject(err error) *paynotify.RejectError {
	var ve *wechatpay.VerifyError
	if errors.As(err, &ve) {
		// OutTradeNo is what the message claims: for finding the evidence by order only.
		return &paynotify.RejectError{Reason: ve.Reason, Detail: ve.Detail, OutTradeNo: ve.OutTradeNo}
	}
	return &paynotify.RejectError{Reason: paynotify.ReasonMalformed, Detail: err.Error()}
}

// WechatTransactionFact maps a verified transaction (notification or query) to its fact:
// SUCCESS and REFUND are paid (REFUND with RefundedAtProvider), CLOSED and REVOKED closed, anything else (NOTPAY, USERPAYING,
// PAYERROR) states nothing: Kind is empty.
func WechatTransactionFact(t *wechatpay.Transaction) paynotify.Fact {
	f := paynotify.Fact{OutTradeNo: t.OutTradeNo, ProviderTradeNo: t.TransactionID, AppID: t.AppID, MchID: t.MchID,
		Amount: paynotify.Amount(t.Amount.Total), HasAmount: true, Currency: t.Amount.Currency, At: t.SuccessTime}
	switch t.TradeState {
	case "SUCCESS":
		f.Kind = paynotify.FactPaid
	case "REFUND":
		// Paid, then refunded, of an amount the answer does not say: applied as paid, with an
		// anomaly when the order has no refund we know of (a reviewer helper's finding: booked as
		// a plain payment, the merchant shipped for money that went back).
		f.Kind, f.RefundedAtProvider = paynotify.FactPaid, true
	case "CLOSED", "REVOKED":
		f.Kind = paynotify.FactClosed
	}
	return f
}

// WechatRefundFact maps a verified refund (notification or API answer) to its fact. WeChat
// reports each refund's own amount: the Processor sums the distinct out_refund_no. ABNORMAL is
// FactRefundAbnormal, neither made nor failed. PROCESSING (and any other status) states nothing:
// Kind is empty; so does a SUCCESS without a refund amount (WeChat always sends
// one: the refund stays pending, to be queried). A trade amount that is there, however odd
// (negative), is checked against the order's.
func WechatRefundFact(r *wechatpay.Refund) paynotify.Fact {
	f := paynotify.Fact{OutTradeNo: r.OutTradeNo, ProviderTradeNo: r.TransactionID, MchID: r.MchID,
		Amount: paynotify.Amount(r.Amount.Total), HasAmount: r.Amount.Total != 0, RefundPerRequest: true,
		RefundRequestNo: r.OutRefundNo, RefundAmount: paynotify.Amount(r.Amount.Refund), ProviderRefundNo: r.RefundID, At: r.SuccessTime}
	switch r.RefundStatus {
	case "SUCCESS":
		if r.Amount.Refund == 0 {
			break
		}
		f.Kind = paynotify.FactRefund
	case "CLOSED":
		f.Kind = paynotify.FactRefundFailed
	case "ABNORMAL":
		f.Kind = paynotify.FactRefundAbnormal
	}
	return f
}

// Pay asks WeChat Pay for a prepay and returns what the buyer's side needs.
func (g *Wechat) Pay(ctx context.Context, o *paynotify.Order, notifyURL, _ string) (json.RawMessage, error) {
	req := wechatpay.PrepayRequest{Description: o.Subject, OutTradeNo: o.OutTradeNo, TimeExpire: o.ExpiresAt, NotifyURL: notifyURL}
	req.Amount.Total, req.Amount.Currency = int64(o.Amount), o.Currency
	var pay any
	switch o.Channel {
	case paynotify.ChannelWechatNative:
		codeURL, err := g.Client.PrepayNative(ctx, req)
		if err != nil {
			return nil, prepayError(err)
		}
		pay = map[string]string{"code_url": codeURL}
	case paynotify.ChannelWechatApp:
		id, err := g.Client.PrepayApp(ctx, req)
		if err != nil {
			return nil, prepayError(err)
		}
		p, err := g.Client.AppPayParams(id)
		if err != nil {
			return nil, err
		}
		pay = p
	case paynotify.ChannelWechatJSAPI:
		req.Payer.OpenID = o.PayerOpenID
		id, err := g.Client.PrepayJSAPI(ctx, req)
		if err != nil {
			return nil, prepayError(err)
		}
		p, err := g.Client.JSAPIPayParams(id)
		if err != nil {
			return nil, err
		}
		pay = p
	case paynotify.ChannelWechatH5:
		ip := o.PayerClientIP
		if ip == "" {
			return nil, paynotify.Errorf(paynotify.EINVALID, "payer_client_ip is required for wechatpay.h5.")
		}
		req.SceneInfo = &wechatpay.SceneInfo{PayerClientIP: ip, H5Info: &wechatpay.H5Info{Type: "Wap"}}
		h5URL, err := g.Client.PrepayH5(ctx, req)
		if err != nil {
			return nil, prepayError(err)
		}
		pay = map[string]string{"h5_url": h5URL}
	default:
		return nil, paynotify.Errorf(paynotify.EINVALID, "Channel %s is not a WeChat Pay channel.", o.Channel)
	}
	return marshalPay(pay)
}

// prepayError is wechatError of a prepay's failure; a signed ORDERPAID (the out_trade_no is paid
// already) also matches paynotify.ErrPaidAtProvider.
func prepayError(err error) error {
	if we := (*wechatpay.Error)(nil); errors.As(err, &we) && we.Signed && we.Code == "ORDERPAID" {
		return paidAtProvider(wechatError(err))
	}
	return wechatError(err)
}

// Close closes the order at WeChat Pay. ORDERPAID (or any refusal) is settled by a query: a paid
// order's payment is applied instead.
func (g *Wechat) Close(ctx context.Context, o *paynotify.Order) (paynotify.Fact, error) {
	err := g.Client.Close(ctx, o.OutTradeNo)
	if err == nil {
		return paynotify.Fact{Kind: paynotify.FactClosed, OutTradeNo: o.OutTradeNo}, nil
	}
	var we *wechatpay.Error
	if !errors.As(err, &we) || we.StatusCode >= 500 {
		return paynotify.Fact{}, wechatError(err)
	}
	t, qerr := g.Client.QueryByOutTradeNo(ctx, o.OutTradeNo)
	if qerr != nil {
		return paynotify.Fact{}, wechatError(qerr) // the query decides: its failure leaves the outcome unknown
	}
	if t.OutTradeNo != o.OutTradeNo {
		// Answered, about another order: not an outage, which the reconciliation backs off and
		// other answers reset (a reviewer helper's finding: the close was sent at every sweep).
		return paynotify.Fact{}, paynotify.Errorf(paynotify.EPROVIDER, "WeChat Pay answered a query about %s with another order.", o.OutTradeNo)
	}
	f := WechatTransactionFact(t)
	if f.Kind == "" {
		return paynotify.Fact{}, wechatError(err)
	}
	return f, nil
}

// Query asks WeChat Pay about o by out_trade_no. ORDER_NOT_EXIST, NOTPAY, USERPAYING and PAYERROR
// state nothing; only a signed answer counts.
func (g *Wechat) Query(ctx context.Context, o *paynotify.Order) (*paynotify.Answer, error) {
	var raw wechatpay.RawResponse
	t, err := g.Client.QueryByOutTradeNo(wechatpay.WithRawResponse(ctx, &raw), o.OutTradeNo)
	return wechatAnswer(EndpointWechatQuery, &raw, err, "ORDER_NOT_EXIST", func(ans *paynotify.Answer) {
		ans.State = t.TradeState
		if f := WechatTransactionFact(t); f.Kind != "" {
			ans.Fact = &f
		}
	})
}

// QueryRefund asks WeChat Pay about refund r. SUCCESS confirms it, CLOSED fails it, ABNORMAL
// raises refund_abnormal (the refund stays pending), PROCESSING and RESOURCE_NOT_EXISTS state
// nothing.
func (g *Wechat) QueryRefund(ctx context.Context, o *paynotify.Order, r *paynotify.Refund) (*paynotify.Answer, error) {
	var raw wechatpay.RawResponse
	rf, err := g.Client.QueryRefund(wechatpay.WithRawResponse(ctx, &raw), r.OutRequestNo)
	return wechatAnswer(EndpointWechatRefundQuery, &raw, err, "RESOURCE_NOT_EXISTS", func(ans *paynotify.Answer) {
		ans.State = rf.RefundStatus
		if f := WechatRefundFact(rf); f.Kind != "" {
			ans.Fact = &f
		}
	})
}

// wechatAnswer turns a query's outcome into an Answer: a verified answer (fill states it), a
// signed notFound code (states nothing), an answer that failed verification (rejected, kept as
// evidence), or an unknown outcome.
func wechatAnswer(endpoint string, raw *wechatpay.RawResponse, err error, notFound string, fill func(*paynotify.Answer)) (*paynotify.Answer, error) {
	ans := &paynotify.Answer{Endpoint: endpoint, Header: raw.Header, Body: raw.Body}
	var we *wechatpay.Error
	var ve *wechatpay.VerifyError
	switch {
	case err == nil:
		fill(ans)
		return ans, nil
	case errors.As(err, &we) && we.Signed && we.Code == notFound:
		ans.State, ans.NotFound = we.Code, true
		return ans, nil
	case errors.As(err, &ve) && raw.Body != nil:
		return ans, wechatReject(err)
	default:
		return nil, wechatError(err)
	}
}

// Refund asks WeChat Pay for refund r: SUCCESS confirms it, CLOSED fails it, ABNORMAL raises
// refund_abnormal, and PROCESSING leaves it pending until its notification. When the call fails,
// the refund query decides; only a signed refusal that is final, with a signed answer of the
// query that there is no such refund, fails the refund; anything else leaves it pending, so that
// the same out_refund_no is retried and the money is never sent twice.
func (g *Wechat) Refund(ctx context.Context, o *paynotify.Order, r *paynotify.Refund, notifyURL string) (*paynotify.Fact, error) {
	// With its notify_url, or WeChat Pay sends the refund's notifications to the URL set in the
	// merchant platform, not to paynotify (a reviewer helper's finding).
	req := wechatpay.RefundRequest{OutTradeNo: o.OutTradeNo, OutRefundNo: r.OutRequestNo, Reason: r.Reason, NotifyURL: notifyURL}
	req.Amount.Refund, req.Amount.Total, req.Amount.Currency = int64(r.Amount), int64(o.Amount), o.Currency
	rf, err := g.Client.CreateRefund(ctx, req)
	if err != nil {
		if q, qerr := g.Client.QueryRefund(ctx, r.OutRequestNo); qerr == nil {
			rf, err = q, nil // the refund exists at WeChat Pay: its verified state decides
		} else {
			// Final only when the query said, signed, that there is no such refund: a retry under
			// the same out_refund_no refused on the order's state (INVALID_REQUEST after other
			// refunds) may follow a first call that went through, and a query that timed out,
			// was rate limited or unsigned says nothing of it (as for Alipay: a reviewer
			// helper's finding).
			var we, qe *wechatpay.Error
			if errors.As(err, &we) && we.Signed && finalRefundErrorsWechat[we.Code] &&
				errors.As(qerr, &qe) && qe.Signed && qe.Code == "RESOURCE_NOT_EXISTS" {
				return nil, &paynotify.Error{Code: paynotify.EPROVIDER, Message: "WeChat Pay refused the refund: " + we.Code + " " + we.Message, ProviderCode: we.Code}
			}
			return nil, unknownOutcome(wechatError(err))
		}
	}
	if rf.OutRefundNo == r.OutRequestNo && rf.OutTradeNo != o.OutTradeNo {
		// A verified answer that this number is another order's refund: out_refund_no is unique
		// per merchant at WeChat Pay, so no refund of this order can be made under it. Final, so
		// that the refund is failed and its amount no longer held (left pending, it held the
		// order's refunds for ever: a reviewer helper's finding).
		return nil, &paynotify.Error{Code: paynotify.EPROVIDER, ProviderCode: "OUT_REFUND_NO_USED",
			Message: "WeChat Pay has refund " + r.OutRequestNo + " on another order: a refund number is unique per merchant there; use another."}
	}
	if rf.OutTradeNo != o.OutTradeNo || rf.OutRefundNo != r.OutRequestNo {
		return nil, paynotify.Errorf(paynotify.EPROVIDERUNAVAILABLE, "WeChat Pay answered refund %s with another refund.", r.OutRequestNo)
	}
	f := WechatRefundFact(rf)
	if f.Kind == "" {
		return nil, nil
	}
	return &f, nil
}

// finalRefundErrorsWechat are the signed refund refusals after which the refund certainly did not
// happen. NOT_ENOUGH (balance) is not among them: the same out_refund_no may succeed later.
var finalRefundErrorsWechat = map[string]bool{
	"PARAM_ERROR":           true,
	"INVALID_REQUEST":       true,
	"RESOURCE_NOT_EXISTS":   true,
	"MCH_NOT_EXISTS":        true,
	"NO_AUTH":               true,
	"USER_ACCOUNT_ABNORMAL": true,
}

// wechatError classifies a WeChat Pay call's failure: a signed 4xx business refusal is
// provider_error; transport errors, 5xx, rate limits, unsigned or unverifiable answers leave the
// outcome unknown: provider_unavailable.
func wechatError(err error) error {
	var we *wechatpay.Error
	var ve *wechatpay.VerifyError
	switch {
	case errors.As(err, &we) && we.Signed && we.StatusCode >= 400 && we.StatusCode < 500 && we.StatusCode != 429 &&
		we.Code != "SYSTEM_ERROR" && we.Code != "FREQUENCY_LIMITED":
		return &paynotify.Error{Code: paynotify.EPROVIDER, Message: "WeChat Pay refused: " + we.Code + " " + we.Message, ProviderCode: we.Code}
	case errors.As(err, &we):
		return &paynotify.Error{Code: paynotify.EPROVIDERUNAVAILABLE, Message: "WeChat Pay did not answer definitively: " + we.Code, ProviderCode: we.Code}
	case errors.As(err, &ve):
		return paynotify.Errorf(paynotify.EPROVIDERUNAVAILABLE, "WeChat Pay's answer could not be verified (%s).", ve.Reason)
	default:
		return paynotify.Errorf(paynotify.EPROVIDERUNAVAILABLE, "WeChat Pay is unreachable: %v.", err)
	}
}
