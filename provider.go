package paynotify

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Provider is one app's payment provider, as the workflows need it. The provider package
// implements it over the alipay and wechatpay packages (docs/architecture.md).
//
// Every fact a Provider returns has been verified: it comes from a signed answer whose signature
// held. Errors are *Error with EPROVIDERUNAVAILABLE (not reached, not answered, or an answer that
// could not be verified: the outcome is unknown) or EPROVIDER (a signed, definitive refusal), or
// EINVALID for a request that cannot be sent.
type Provider interface {
	// Verifier returns the verifier of the provider's notifications to this app at endpoint (the
	// path segment of /notify/{endpoint}/{app}: "alipay", "wechatpay" or "wechatpay-v2"), or nil
	// when the app does not take notifications there.
	Verifier(endpoint string) Verifier
	// Pay signs (or requests from the provider) the payment parameters of a new order, as the
	// JSON object returned under "pay".
	Pay(ctx context.Context, o *Order, notifyURL, returnURL string) (json.RawMessage, error)
	// Close closes the trade at the provider and returns the verified fact to apply: FactClosed,
	// or FactPaid / FactFinished when the provider says the order was paid meanwhile.
	Close(ctx context.Context, o *Order) (Fact, error)
	// Refund asks the provider for refund r and returns the fact to apply: FactRefund when it is
	// confirmed, nil while it is still processing. A signed, final refusal is an EPROVIDER error;
	// any other failure leaves the outcome unknown (EPROVIDERUNAVAILABLE): the refund stays pending.
	// notifyURL is where the provider is to send the refund's notifications, for a provider
	// that takes it with the refund (WeChat Pay: without it, they go to the URL set in the
	// merchant platform, not to paynotify); the others send them to the payment's.
	Refund(ctx context.Context, o *Order, r *Refund, notifyURL string) (*Fact, error)
	// Query asks the provider for the trade of o by out_trade_no. The answer is returned as
	// received (for evidence) also when its verification failed: then the error wraps a
	// *RejectError and Answer.Fact is nil.
	Query(ctx context.Context, o *Order) (*Answer, error)
	// QueryRefund asks the provider for refund r of o, like Query.
	QueryRefund(ctx context.Context, o *Order, r *Refund) (*Answer, error)
}

// ReturnVerifier is the optional power of a Provider whose buyers come back through a signed
// redirect (Alipay's return_url): it checks the redirect's query string. The result is only
// logged: a return never changes state.
type ReturnVerifier interface {
	VerifyReturn(rawQuery string) error
}

// Answer is a provider's answer to a query, with the fact it states.
type Answer struct {
	// Fact is the verified fact; nil when the answer states nothing to apply: the trade does not
	// exist (the buyer never opened it), waits for the buyer, or the refund is still processing.
	Fact *Fact
	// State is the provider's own word for the trade or refund ("WAIT_BUYER_PAY",
	// "ACQ.TRADE_NOT_EXIST", "NOTPAY", "ORDER_NOT_EXIST", "PROCESSING", …), for logs and evidence.
	State string
	// NotFound says the provider does not know the trade or the refund (Alipay ACQ.TRADE_NOT_EXIST
	// or a refund query without a status, WeChat ORDER_NOT_EXIST or RESOURCE_NOT_EXISTS): a
	// pending refund it does not know is asked for again.
	NotFound bool
	// Endpoint names the API that answered ("alipay.trade.query", "wechatpay.query", …).
	Endpoint string
	// Header and Body are the answer exactly as received: the signed bytes kept as evidence.
	Header http.Header
	Body   []byte
}

// Verifier checks that a callback request really comes from the provider and turns it into a
// verified Fact. It works on the raw header and body bytes. Time windows (WeChat Pay's five
// minutes) are checked against the verifier's own clock when at is zero (a request just
// received), and against at otherwise: a request kept as evidence verifies later as it did when
// it arrived. A request that fails returns an error wrapping a *RejectError, whose Reason is one
// of the rejection reasons (ReasonSignatureInvalid…).
type Verifier interface {
	Verify(header http.Header, body []byte, at time.Time) (Fact, error)
}

// SignedTexter is the optional power of a notification Verifier to say which bytes a request's
// signature covers, built by its protocol package exactly as verification builds them, and how
// they are checked: the operator console shows them (docs/console.md). It verifies nothing and
// calls no one. A secret that the signature appends (a key under MD5 or APIv2) is never in text.
type SignedTexter interface {
	SignedText(header http.Header, body []byte) (text []byte, how string, err error)
}

// Acker is the power of a notification Verifier to answer the provider in its exact wire format.
// The provider package implements it over the ack helpers of the alipay, alipaylegacy and
// wechatpay packages, so that the answers' bytes have one home.
type Acker interface {
	// AckText is the answer WriteAck writes for res, as the evidence records it: the body, or
	// for an answer whose status matters (WeChat Pay APIv3) the status and the body.
	AckText(res *Result) string
	// WriteAck writes the answer to a notification the Processor has handled with res.
	WriteAck(w http.ResponseWriter, res *Result)
}

// RejectError is why a verifier refused a request or a provider's answer. Its Error is
// deliberately vague; Detail is for evidence and logs (it never holds a secret).
type RejectError struct {
	Reason string
	Detail string
	// OutTradeNo is the order the request claims, when it could be parsed. It is never trusted:
	// it only lets the evidence be found by order.
	OutTradeNo string
}

func (e *RejectError) Error() string { return "paynotify: rejected: " + e.Reason }
