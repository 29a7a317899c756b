package httpd

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
)

// AlipayGateway adapts an alipay.Client to the Gateway of one app.
type AlipayGateway struct {
	Client *alipay.Client
}

var _ Gateway = (*AlipayGateway)(nil)

// Verifier returns the notification verifier of the app.
func (g *AlipayGateway) Verifier() paynotify.Verifier { return alipayVerifier{g.Client} }

// alipayVerifier turns a verified Alipay notification into a Fact.
type alipayVerifier struct{ c *alipay.Client }

func (v alipayVerifier) Verify(h http.Header, body []byte) (paynotify.Fact, error) {
	n, err := v.c.VerifyNotification(body, h.Get("Content-Type"))
	if err != nil {
		var ve *alipay.VerifyError
		rej := &paynotify.RejectError{Reason: paynotify.ReasonMalformed, Detail: err.Error()}
		if errors.As(err, &ve) {
			rej = &paynotify.RejectError{Reason: ve.Reason, Detail: ve.Detail, OutTradeNo: ve.OutTradeNo}
		}
		if rej.OutTradeNo == "" {
			rej.OutTradeNo = claimedOutTradeNo(body)
		}
		return paynotify.Fact{}, rej
	}
	if n.AppID == "" || n.OutTradeNo == "" {
		// Alipay always sends both: a signed message without them is not a trade notification.
		return paynotify.Fact{}, &paynotify.RejectError{Reason: paynotify.ReasonMalformed, Detail: "verified, but no app_id or out_trade_no", OutTradeNo: n.OutTradeNo}
	}
	return AlipayFact(n), nil
}

// claimedOutTradeNo reads the out_trade_no a rejected body claims, leniently, so that its
// evidence can be found by order. It is never used for anything but that search.
func claimedOutTradeNo(body []byte) string {
	q, _ := url.ParseQuery(string(body))
	if v := q["out_trade_no"]; len(v) == 1 && utf8.ValidString(v[0]) && len(v[0]) <= 64 {
		return v[0]
	}
	return ""
}

// AlipayFact maps a verified notification to the fact it states (alipay.md §4.8): TRADE_SUCCESS
// is a payment, or a partial refund when it carries refund_fee; TRADE_CLOSED is a close, or a full
// refund when it carries refund_fee; TRADE_FINISHED is the end of the refund window.
// WAIT_BUYER_PAY (not sent by default) states nothing that moves an order.
func AlipayFact(n *alipay.Notification) paynotify.Fact {
	f := paynotify.Fact{
		OutTradeNo: n.OutTradeNo, ProviderTradeNo: n.TradeNo, AppID: n.AppID, SellerID: n.SellerID,
		Amount: paynotify.Amount(n.TotalAmount), HasAmount: true, NotificationID: n.NotifyID, At: n.GmtPayment,
	}
	switch {
	case n.IsRefund() && (n.TradeStatus == alipay.TradeSuccess || n.TradeStatus == alipay.TradeClosed):
		f.Kind = paynotify.FactRefund
		f.RefundTotal = paynotify.Amount(n.RefundFee)
		f.RefundRequestNo = n.OutBizNo
		if f.At.IsZero() { // At stamps paid_at when the refund implies the payment
			f.At = n.GmtRefund
		}
	case n.TradeStatus == alipay.TradeSuccess:
		f.Kind = paynotify.FactPaid
	case n.TradeStatus == alipay.TradeFinished:
		f.Kind = paynotify.FactFinished
	case n.TradeStatus == alipay.TradeClosed:
		f.Kind = paynotify.FactClosed
		f.At = n.GmtClose
	}
	return f
}

// Pay signs the order for its channel; precreate asks Alipay for the QR code.
func (g *AlipayGateway) Pay(ctx context.Context, o *paynotify.Order, notifyURL, returnURL string) (json.RawMessage, error) {
	var pay any
	switch o.Channel {
	case paynotify.ChannelAlipayApp:
		s, err := g.Client.AppPay(alipay.TradeAppPay{OutTradeNo: o.OutTradeNo, TotalAmount: int64(o.Amount), Subject: o.Subject,
			Body: o.Body, TimeExpire: o.ExpiresAt, NotifyURL: notifyURL})
		if err != nil {
			return nil, alipayError(err)
		}
		pay = map[string]string{"order_string": s}
	case paynotify.ChannelAlipayPage, paynotify.ChannelAlipayWap:
		var req *alipay.PayRequest
		var err error
		if o.Channel == paynotify.ChannelAlipayPage {
			req, err = g.Client.PagePay(alipay.TradePagePay{OutTradeNo: o.OutTradeNo, TotalAmount: int64(o.Amount), Subject: o.Subject,
				Body: o.Body, TimeExpire: o.ExpiresAt, NotifyURL: notifyURL, ReturnURL: returnURL})
		} else {
			req, err = g.Client.WapPay(alipay.TradeWapPay{OutTradeNo: o.OutTradeNo, TotalAmount: int64(o.Amount), Subject: o.Subject,
				Body: o.Body, TimeExpire: o.ExpiresAt, NotifyURL: notifyURL, ReturnURL: returnURL})
		}
		if err != nil {
			return nil, alipayError(err)
		}
		pay = map[string]string{"url": req.URL, "form": req.Form}
	case paynotify.ChannelAlipayPrecreate:
		r, err := g.Client.TradePrecreate(ctx, alipay.TradePrecreate{OutTradeNo: o.OutTradeNo, TotalAmount: int64(o.Amount),
			Subject: o.Subject, Body: o.Body, TimeExpire: o.ExpiresAt, NotifyURL: notifyURL})
		if err != nil {
			return nil, alipayError(err)
		}
		pay = map[string]string{"qr_code": r.QRCode}
	default:
		return nil, paynotify.Errorf(paynotify.EINVALID, "Channel %s is not an Alipay channel.", o.Channel)
	}
	return marshalPay(pay)
}

// Close closes the trade at Alipay. A trade the buyer never opened (ACQ.TRADE_NOT_EXIST) is closed
// locally; a trade that is no longer open is queried, and its verified state applied.
func (g *AlipayGateway) Close(ctx context.Context, o *paynotify.Order) (paynotify.Fact, error) {
	closed := paynotify.Fact{Kind: paynotify.FactClosed, OutTradeNo: o.OutTradeNo}
	_, err := g.Client.TradeClose(ctx, alipay.TradeClose{OutTradeNo: o.OutTradeNo})
	var ae *alipay.Error
	switch {
	case err == nil:
		return closed, nil
	case errors.As(err, &ae) && ae.Signed && ae.SubCode == "ACQ.TRADE_NOT_EXIST":
		return closed, nil
	case errors.As(err, &ae) && ae.Signed && ae.SubCode == "ACQ.TRADE_STATUS_ERROR":
		q, qerr := g.Client.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: o.OutTradeNo})
		if qerr != nil {
			return paynotify.Fact{}, alipayError(qerr)
		}
		f := paynotify.Fact{OutTradeNo: q.OutTradeNo, ProviderTradeNo: q.TradeNo, Amount: paynotify.Amount(q.TotalAmount), HasAmount: true, At: q.SendPayDate}
		switch q.TradeStatus {
		case alipay.TradeSuccess:
			f.Kind = paynotify.FactPaid
		case alipay.TradeFinished:
			f.Kind = paynotify.FactFinished
		case alipay.TradeClosed:
			f.Kind = paynotify.FactClosed
		default:
			return paynotify.Fact{}, alipayError(err)
		}
		return f, nil
	default:
		return paynotify.Fact{}, alipayError(err)
	}
}

// Refund asks Alipay to refund r. fund_change=Y confirms it; otherwise the refund query decides,
// and a refund still unconfirmed stays pending (its notification or a retry settles it). Only a
// signed refusal that Alipay documents as final fails a refund: anything else (ACQ.SYSTEM_ERROR,
// an unknown code, a timeout) leaves it pending, so that the same out_request_no is retried and the
// money is never sent twice.
func (g *AlipayGateway) Refund(ctx context.Context, o *paynotify.Order, r *paynotify.Refund) (*paynotify.Fact, error) {
	resp, err := g.Client.TradeRefund(ctx, alipay.TradeRefund{OutTradeNo: o.OutTradeNo, RefundAmount: int64(r.Amount),
		OutRequestNo: r.OutRequestNo, RefundReason: r.Reason})
	if err == nil && resp.FundChange {
		return &paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: o.OutTradeNo, ProviderTradeNo: resp.TradeNo,
			RefundTotal: paynotify.Amount(resp.RefundFee), RefundRequestNo: r.OutRequestNo, RefundAmount: r.Amount}, nil
	}
	// Not confirmed by the call: ask the refund query, which settles every outcome.
	q, qerr := g.Client.TradeFastpayRefundQuery(ctx, alipay.TradeFastpayRefundQuery{OutTradeNo: o.OutTradeNo, OutRequestNo: r.OutRequestNo})
	if qerr == nil && q.RefundStatus == "REFUND_SUCCESS" {
		return &paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: o.OutTradeNo, ProviderTradeNo: q.TradeNo,
			RefundPerRequest: true, RefundRequestNo: r.OutRequestNo, RefundAmount: paynotify.Amount(q.RefundAmount), At: q.GmtRefundPay}, nil
	}
	var ae *alipay.Error
	switch {
	case err == nil:
		return nil, nil // accepted, not yet confirmed: pending
	case errors.As(err, &ae) && ae.Signed && finalRefundErrors[ae.SubCode]:
		return nil, &paynotify.Error{Code: paynotify.EPROVIDER, Message: "Alipay refused the refund: " + ae.SubCode + " " + ae.SubMsg, ProviderCode: ae.SubCode}
	default:
		return nil, unknownOutcome(alipayError(err))
	}
}

// finalRefundErrors are the alipay.trade.refund sub codes after which the refund certainly did
// not happen (alipay.md §5.4). ACQ.SELLER_BALANCE_NOT_ENOUGH is not among them: the same
// out_request_no may succeed once the balance is topped up.
var finalRefundErrors = map[string]bool{
	"ACQ.TRADE_NOT_EXIST":             true,
	"ACQ.TRADE_STATUS_ERROR":          true,
	"ACQ.REFUND_AMT_NOT_EQUAL_TOTAL":  true,
	"ACQ.REASON_TRADE_REFUND_FEE_ERR": true,
	"ACQ.TRADE_HAS_FINISHED":          true,
	"ACQ.INVALID_PARAMETER":           true,
}

// unknownOutcome turns a provider error into provider_unavailable: the call's effect is unknown.
func unknownOutcome(err error) error {
	var pe *paynotify.Error
	if errors.As(err, &pe) && pe.Code == paynotify.EPROVIDER {
		return &paynotify.Error{Code: paynotify.EPROVIDERUNAVAILABLE, Message: pe.Message + " (outcome unknown: the refund stays pending; retry with the same out_request_no)", ProviderCode: pe.ProviderCode}
	}
	return err
}

// alipayError classifies an Alipay call's failure: a signed business refusal is provider_error
// (definitive); everything else (transport, code 20000, unsigned or unverifiable answers) leaves
// the outcome unknown: provider_unavailable.
func alipayError(err error) error {
	var ae *alipay.Error
	var ve *alipay.VerifyError
	switch {
	case errors.As(err, &ae) && ae.Signed && ae.Code != "20000" && ae.SubCode != "ACQ.SYSTEM_ERROR" && !strings.HasSuffix(ae.SubCode, "unknow-error"):
		return &paynotify.Error{Code: paynotify.EPROVIDER, Message: "Alipay refused: " + ae.SubCode + " " + ae.SubMsg, ProviderCode: ae.SubCode}
	case errors.As(err, &ae):
		return &paynotify.Error{Code: paynotify.EPROVIDERUNAVAILABLE, Message: "Alipay did not answer definitively: " + ae.Code + " " + ae.SubCode, ProviderCode: ae.SubCode}
	case errors.As(err, &ve):
		return paynotify.Errorf(paynotify.EPROVIDERUNAVAILABLE, "Alipay's answer could not be verified (%s).", ve.Reason)
	default:
		return paynotify.Errorf(paynotify.EPROVIDERUNAVAILABLE, "Alipay is unreachable: %v.", err)
	}
}
