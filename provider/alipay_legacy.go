package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipaylegacy"
)

// AlipayLegacy is the paynotify.Provider of one legacy Alipay app (mapi gateway and the old WAP
// pair; docs/alipay-legacy.md §15.2). paynotify implements no query, close or refund service for these
// merchants: their orders are settled by notifications only, expire locally, and close and refund
// are refused with a message that says so.
type AlipayLegacy struct {
	Client *alipaylegacy.Client
	// NotifyVerify asks Alipay (notify_verify) whether each notification's notify_id is genuine
	// and current before it counts. On by default in the config; off only for a merchant whose
	// Alipay no longer answers it, which the doc warns against.
	NotifyVerify bool
	// Timeout bounds a notify_verify call made while verifying a notification. Defaults to 10 s.
	Timeout time.Duration
	// Seller is the app's seller as facts name it: the configured seller_id, else seller_email,
	// else the partner (the paynotify.App's SellerIDs holds the same).
	Seller string
}

var (
	_ paynotify.Provider       = (*AlipayLegacy)(nil)
	_ paynotify.ReturnVerifier = (*AlipayLegacy)(nil)
)

// EndpointNotifyVerify names the notify_verify call in evidence.
const EndpointNotifyVerify = "notify_verify"

// ReasonNotifyIDUnconfirmed: a legacy notification's signature held, but Alipay did not answer
// exactly "true" for its notify_id (forged with a leaked key, replayed, or expired).
const ReasonNotifyIDUnconfirmed = "notify_id_unconfirmed"

// Verifier returns the verifier of notifications at /notify/alipay-legacy/{app}.
func (g *AlipayLegacy) Verifier(endpoint string) paynotify.Verifier {
	if endpoint != paynotify.ProviderAlipayLegacy {
		return nil
	}
	return legacyVerifier{g}
}

// VerifyReturn checks the signature of a return_url or call_back_url visit.
func (g *AlipayLegacy) VerifyReturn(rawQuery string) error {
	_, err := g.Client.VerifyReturn(rawQuery)
	return err
}

// legacyVerifier verifies a mapi or WAP notification, then confirms its notify_id with Alipay.
type legacyVerifier struct{ g *AlipayLegacy }

func (v legacyVerifier) Verify(h http.Header, body []byte, _ time.Time) (paynotify.Fact, error) {
	c := v.g.Client
	n, err := c.VerifyNotification(body)
	if err != nil {
		var ve *alipaylegacy.VerifyError
		if errors.As(err, &ve) {
			otn := ve.OutTradeNo
			if otn == "" {
				otn = legacyClaimedOutTradeNo(body)
			}
			return paynotify.Fact{}, &paynotify.RejectError{Reason: ve.Reason, Detail: ve.Detail, OutTradeNo: otn}
		}
		return paynotify.Fact{}, &paynotify.RejectError{Reason: paynotify.ReasonMalformed, Detail: err.Error(), OutTradeNo: claimedOutTradeNo(body)}
	}
	if v.g.NotifyVerify {
		timeout := v.g.Timeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := c.NotifyVerify(ctx, n.NotifyID)
		cancel()
		switch {
		case errors.Is(err, alipaylegacy.ErrNotConfirmed):
			return paynotify.Fact{}, &paynotify.RejectError{Reason: ReasonNotifyIDUnconfirmed,
				Detail: "the signature held, but notify_verify did not answer exactly \"true\": " + err.Error(), OutTradeNo: n.OutTradeNo}
		case err != nil:
			// Not a verdict on the notification: fail it so that Alipay retries.
			return paynotify.Fact{}, fmt.Errorf("%w: notify_verify for %s: %w", paynotify.ErrVerifyUnavailable, n.OutTradeNo,
				&paynotify.RejectError{Reason: paynotify.ReasonVerifyUnavailable, Detail: err.Error(), OutTradeNo: n.OutTradeNo})
		}
	}
	return legacyFact(v.g, n), nil
}

// legacyFact maps a verified notification to the fact it states (docs/alipay-legacy.md
// §9.2): TRADE_SUCCESS and TRADE_FINISHED (instant pay, WAP) and WAIT_SELLER_SEND_GOODS
// (escrow: the money is held by Alipay) and WAIT_BUYER_CONFIRM_GOODS are a payment; TRADE_FINISHED
// after a payment is the end of the trade; TRADE_CLOSED is a close, or a full refund when it
// reports refund_status REFUND_SUCCESS; WAIT_BUYER_PAY moves nothing.
func legacyFact(g *AlipayLegacy, n *alipaylegacy.Notification) paynotify.Fact {
	f := paynotify.Fact{
		OutTradeNo: n.OutTradeNo, ProviderTradeNo: n.TradeNo, Amount: paynotify.Amount(n.TotalFee), HasAmount: true,
		NotificationID: n.NotifyID, At: n.GmtPayment,
	}
	// The seller: the configured one when it matches, what the message says otherwise (then the
	// Processor raises seller_mismatch; a message that names no seller must not skip that check).
	// The one compared: an app configured by seller_email is compared by the message's (the
	// anomaly's detail showed the message's seller_id, the merchant's own PID, beside the
	// configured email: a reviewer helper's finding).
	f.SellerID = n.SellerID
	if f.SellerID == "" || !alipaylegacy.IsPID(g.Seller) {
		f.SellerID = n.SellerEmail
	}
	if f.SellerID == "" {
		f.SellerID = "(none)"
	}
	if g.Client.SellerMatches(n) {
		f.SellerID = g.Seller
	}
	if n.RefundStatus != "" && n.TradeStatus != alipaylegacy.TradeClosed {
		// A refund reported on a trade that stays open (a partial refund, an escrow buyer's
		// request): its amount is not in the message, and nothing is booked; the record says so
		// instead of passing for a plain duplicate (a reviewer helper's finding).
		at, _ := n.Get("gmt_refund")
		f.Detail = "refund_status " + paynotify.ClipText(n.RefundStatus, 32) + " (gmt_refund " + paynotify.ClipText(at, 32) +
			"): a refund made or asked for on this trade; the message carries no refund amount and nothing is booked: see the trade in Alipay's portal"
	}
	switch n.TradeStatus {
	case alipaylegacy.TradeSuccess, alipaylegacy.TradeWaitSellerSendGoods, alipaylegacy.TradeWaitBuyerConfirmGoods:
		// Escrow: the money is held by Alipay from WAIT_SELLER_SEND_GOODS on; a
		// WAIT_BUYER_CONFIRM_GOODS whose predecessor was lost still proves the payment.
		f.Kind = paynotify.FactPaid
	case alipaylegacy.TradeFinished:
		// Paid (instant pay on the basic contract sends only this), or the end of a paid trade:
		// the state machine treats a finish of a pending order as its payment.
		f.Kind = paynotify.FactFinished
	case alipaylegacy.TradeClosed:
		switch {
		case n.RefundStatus == "REFUND_SUCCESS":
			f.Kind, f.RefundTotal = paynotify.FactRefund, paynotify.Amount(n.TotalFee)
			if f.At.IsZero() { // At stamps paid_at when the refund implies the payment: gmt_payment first
				f.At = n.GmtRefund
			}
		case n.RefundStatus != "":
			// Another refund_status (REFUND_CLOSED: a refund that was closed, an escrow dispute's
			// steps) is no refund made: booked as a full refund, it moved money that did not
			// move (a reviewer helper's finding). A close, which the state machine raises as
			// unexpected_close on a paid order, for someone to look at the trade.
			f.Kind, f.At = paynotify.FactClosed, n.GmtClose
			f.Detail = "TRADE_CLOSED with refund_status " + paynotify.ClipText(n.RefundStatus, 32) +
				", not REFUND_SUCCESS: no refund is booked; see the trade in Alipay's portal"
		default:
			f.Kind, f.At = paynotify.FactClosed, n.GmtClose
		}
	default:
		f.Kind = paynotify.FactIgnored
	}
	return f
}

// Pay builds the order's payment: the create_direct_pay_by_user URL and form, or, for the WAP
// pair, a request_token from Alipay and the authAndExecute URL.
func (g *AlipayLegacy) Pay(ctx context.Context, o *paynotify.Order, notifyURL, returnURL string) (json.RawMessage, error) {
	minutes := int(math.Ceil(time.Until(o.ExpiresAt).Minutes()))
	if minutes < 1 {
		minutes = 1
	}
	var pay any
	switch o.Channel {
	case paynotify.ChannelAlipayDirect:
		p := &alipaylegacy.DirectPay{OutTradeNo: o.OutTradeNo, Subject: o.Subject, Body: o.Body, TotalFee: int64(o.Amount),
			NotifyURL: notifyURL, ReturnURL: returnURL, ItBPay: fmt.Sprintf("%dm", minutes)}
		u, err := g.Client.DirectPayURL(p)
		if err != nil {
			return nil, paynotify.Errorf(paynotify.EINVALID, "%v", err)
		}
		form, err := g.Client.DirectPayForm(p)
		if err != nil {
			return nil, paynotify.Errorf(paynotify.EINVALID, "%v", err)
		}
		pay = map[string]string{"url": u, "form": form}
	case paynotify.ChannelAlipayWapDirect:
		token, err := g.Client.WAPCreateDirect(ctx, &alipaylegacy.WAPTrade{OutTradeNo: o.OutTradeNo, Subject: o.Subject,
			TotalFee: int64(o.Amount), NotifyURL: notifyURL, CallBackURL: returnURL, MerchantURL: returnURL, PayExpire: minutes})
		if err != nil {
			var we *alipaylegacy.WAPError
			if errors.As(err, &we) {
				return nil, &paynotify.Error{Code: paynotify.EPROVIDER, ProviderCode: we.Code, Message: "Alipay refused the WAP trade: " + we.Error()}
			}
			var ue *url.Error
			var ve *alipaylegacy.VerifyError
			if errors.As(err, &ue) || errors.As(err, &ve) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return nil, paynotify.Errorf(paynotify.EPROVIDERUNAVAILABLE, "Alipay's WAP gateway: %v", err)
			}
			// Not sent, or an answer that could not be used: retrying the same request will not
			// help (a seller_id-only app has no seller_account_name, say).
			return nil, paynotify.Errorf(paynotify.EINVALID, "alipay.wap_direct: %v", err)
		}
		u, err := g.Client.WAPAuthURL(token)
		if err != nil {
			return nil, paynotify.Errorf(paynotify.EINVALID, "%v", err)
		}
		pay = map[string]string{"url": u, "request_token": token}
	default:
		return nil, paynotify.Errorf(paynotify.EINVALID, "Channel %q is not a legacy Alipay channel.", o.Channel)
	}
	b, err := json.Marshal(pay)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Close is refused: legacy Alipay documents no close service. An expired order is closed locally
// (paynotify.ErrNoCloseService).
func (g *AlipayLegacy) Close(ctx context.Context, o *paynotify.Order) (paynotify.Fact, error) {
	return paynotify.Fact{}, &legacyRefusal{msg: "Legacy Alipay has no close service: the order closes locally at its expiry, and a payment after it is still applied (a late_payment: the pay URL's it_b_pay counts from when the buyer opens the page).", err: paynotify.ErrNoCloseService}
}

// Refund is refused: legacy Alipay documents no refund API for these merchants.
func (g *AlipayLegacy) Refund(ctx context.Context, o *paynotify.Order, r *paynotify.Refund, _ string) (*paynotify.Fact, error) {
	return nil, paynotify.Errorf(paynotify.EPROVIDER, "Legacy Alipay has no refund service that paynotify can call: refund in the Alipay merchant portal, or move the app to the OpenAPI (docs/migrate-legacy-alipay.md).")
}

// Query: no query service.
func (g *AlipayLegacy) Query(ctx context.Context, o *paynotify.Order) (*paynotify.Answer, error) {
	return nil, paynotify.ErrNoQueryService
}

// QueryRefund: no query service.
func (g *AlipayLegacy) QueryRefund(ctx context.Context, o *paynotify.Order, r *paynotify.Refund) (*paynotify.Answer, error) {
	return nil, paynotify.ErrNoQueryService
}

// legacyRefusal is an EPROVIDER error that also matches paynotify.ErrNoCloseService.
type legacyRefusal struct {
	msg string
	err error
}

func (e *legacyRefusal) Error() string { return e.msg }

// Unwrap gives both the *paynotify.Error (EPROVIDER, for the API's 422) and the sentinel.
func (e *legacyRefusal) Unwrap() []error {
	return []error{paynotify.Errorf(paynotify.EPROVIDER, "%s", e.msg), e.err}
}

// legacyClaimedOutTradeNo reads the out_trade_no a rejected body claims, leniently (the first one,
// or the one inside a plaintext WAP notify_data), so that its evidence can be found by order. It
// is never used for anything but that search.
func legacyClaimedOutTradeNo(body []byte) string {
	q, _ := url.ParseQuery(string(body))
	s, found := "", false
	if v := q["out_trade_no"]; len(v) > 0 {
		s, found = v[0], true
	} else if v := q["notify_data"]; len(v) > 0 {
		_, rest, ok := strings.Cut(v[0], "<out_trade_no>")
		s, _, _ = strings.Cut(rest, "</out_trade_no>")
		found = ok
	}
	if found && utf8.ValidString(s) && len(s) <= 64 {
		return s
	}
	return ""
}
