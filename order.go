package paynotify

import (
	"encoding/json"
	"time"
)

// OrderStatus is the state of an order (docs/state_machine.md). Only Decide moves an order between
// states, and stores apply its moves with compare-and-set on the order's version.
type OrderStatus string

const (
	// StatusPending: created, not paid. Moved by a verified payment, finish, close or refund fact.
	StatusPending OrderStatus = "pending"
	// StatusPaid: paid, refundable. Partial refunds keep it paid and grow RefundedAmount.
	StatusPaid OrderStatus = "paid"
	// StatusFinished: paid, no more refunds possible (Alipay TRADE_FINISHED).
	StatusFinished OrderStatus = "finished"
	// StatusClosed: never paid, closed by the merchant, the provider or expiry.
	StatusClosed OrderStatus = "closed"
	// StatusRefunded: paid, then fully refunded. Terminal.
	StatusRefunded OrderStatus = "refunded"
)

// Provider names.
const (
	ProviderAlipay    = "alipay"
	ProviderWechatpay = "wechatpay"
	// ProviderAlipayLegacy is Alipay's legacy mapi gateway and old WAP pair (docs/alipay-legacy.md).
	ProviderAlipayLegacy = "alipay-legacy"
)

// Channels: how the buyer pays (docs/api.md, "POST /v1/orders").
const (
	ChannelAlipayApp       = "alipay.app"
	ChannelAlipayPage      = "alipay.page"
	ChannelAlipayWap       = "alipay.wap"
	ChannelAlipayPrecreate = "alipay.precreate"
	ChannelWechatNative    = "wechatpay.native"
	ChannelWechatApp       = "wechatpay.app"
	ChannelWechatJSAPI     = "wechatpay.jsapi"
	ChannelWechatH5        = "wechatpay.h5"
	// ChannelAlipayDirect is the legacy create_direct_pay_by_user (即时到账): a pay URL and form.
	ChannelAlipayDirect = "alipay.direct"
	// ChannelAlipayWapDirect is the legacy WAP pair: a request_token, then the authAndExecute URL.
	ChannelAlipayWapDirect = "alipay.wap_direct"
)

// ChannelProvider returns the provider of a channel, or "" for an unknown channel.
func ChannelProvider(channel string) string {
	switch channel {
	case ChannelAlipayApp, ChannelAlipayPage, ChannelAlipayWap, ChannelAlipayPrecreate:
		return ProviderAlipay
	case ChannelWechatNative, ChannelWechatApp, ChannelWechatJSAPI, ChannelWechatH5:
		return ProviderWechatpay
	case ChannelAlipayDirect, ChannelAlipayWapDirect:
		return ProviderAlipayLegacy
	}
	return ""
}

// Order is one merchant order, identified by (App, OutTradeNo).
type Order struct {
	App            string      `json:"app"`
	OutTradeNo     string      `json:"out_trade_no"`
	Channel        string      `json:"channel"`
	Status         OrderStatus `json:"status"`
	Amount         Amount      `json:"amount"`
	RefundedAmount Amount      `json:"refunded_amount"`
	Currency       string      `json:"currency"`
	Subject        string      `json:"subject"`
	Body           string      `json:"body,omitempty"`
	PayerOpenID    string      `json:"payer_openid,omitempty"`
	// PayerClientIP is the buyer's IP address, required by WeChat Pay H5 orders. It is handed to
	// the provider when the order is created and is not stored: not part of the order JSON (nor
	// of events), as the stores do not keep it.
	PayerClientIP   string `json:"-"`
	ProviderTradeNo string `json:"provider_trade_no"`
	// Version starts at 1 and grows by one with every change; events carry the version they produced.
	Version   int64      `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	PaidAt    *time.Time `json:"paid_at"`
	ExpiresAt time.Time  `json:"expires_at"`
	// Pay holds the signed payment parameters handed to the buyer's app or page, kept so that an
	// idempotent re-create returns them again. Not part of the order JSON.
	Pay json.RawMessage `json:"-"`
	// NextCheckAt is when the reconciliation next looks at a pending order (a query, or the close
	// at expiry); nil when it never will (not pending, or created without a schedule). Checks is
	// how many queries it has had. Both belong to the reconciliation (docs/reconciliation.md):
	// CreateOrder writes them, Store.Commit never does, and they are not in events.
	NextCheckAt *time.Time `json:"-"`
	Checks      int        `json:"-"`
}

// RefundStatus is the state of one refund request.
type RefundStatus string

const (
	RefundPending   RefundStatus = "pending"
	RefundSucceeded RefundStatus = "succeeded"
	RefundFailed    RefundStatus = "failed"
)

// Refund is one refund request of an order, identified by (App, OutTradeNo, OutRequestNo). It is
// recorded as pending before the provider is called, so that a crash or a retry never refunds twice.
// OutRequestNo is Alipay's out_request_no and WeChat's out_refund_no.
type Refund struct {
	App              string       `json:"app"`
	OutTradeNo       string       `json:"out_trade_no"`
	OutRequestNo     string       `json:"out_request_no"`
	Amount           Amount       `json:"amount"`
	Reason           string       `json:"reason,omitempty"`
	Status           RefundStatus `json:"status"`
	ProviderRefundNo string       `json:"provider_refund_no,omitempty"`
	CreatedAt        time.Time    `json:"created_at"`
	UpdatedAt        time.Time    `json:"updated_at"`
	// NextCheckAt is when the reconciliation next asks the provider about this refund: while it
	// is pending, and for a refund whose amount was inferred (an Alipay portal refund) until a
	// refund query confirms that amount; nil otherwise.
	NextCheckAt *time.Time `json:"next_check_at,omitempty"`
	// NeedsAttention is set on a refund still pending when its checks ran out (RefundWindow), and
	// on a succeeded refund whose inferred amount no refund query confirmed within that window
	// (it is still asked about, every ThenEvery): someone must look at it in the provider's
	// portal.
	NeedsAttention bool `json:"needs_attention,omitempty"`
	// PriorRefunds, set by the Service on the refund it hands Provider.Refund, is the total of
	// the order's other refunds that may have been made before this one (succeeded or pending):
	// for a provider whose answer names no refund but gives the trade's running total (Alipay's
	// fund_change=Y and refund_fee), the least that total must hold for the answer to be this
	// refund's. Not stored.
	PriorRefunds Amount `json:"-"`
}
