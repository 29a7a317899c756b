package alipay

import (
	"encoding/json"
	"maps"
	"mime"
	"strings"
	"time"

	"golang.org/x/text/encoding"

	"github.com/paynotify/paynotify/internal/alipaywire"
	"github.com/paynotify/paynotify/internal/regroup"
)

// Trade statuses (trade_status).
const (
	TradeWaitBuyerPay = "WAIT_BUYER_PAY"
	TradeClosed       = "TRADE_CLOSED"
	TradeSuccess      = "TRADE_SUCCESS"
	TradeFinished     = "TRADE_FINISHED"
)

// Notification is a verified asynchronous trade notification (notify_type trade_status_sync;
// docs/alipay.md, "Trade statuses"), its values converted to UTF-8. Amounts are fen; an absent
// amount is 0. Times are in [Beijing]; an absent time is the zero time.Time. Fields Alipay adds
// later are in Raw.
type Notification struct {
	NotifyTime time.Time // notify_time: when this notification was sent
	NotifyType string    // notify_type: "trade_status_sync" for trade notifications
	NotifyID   string    // notify_id: stable across retries of one notification
	AppID      string    // app_id: the appid that created the trade
	AuthAppID  string    // auth_app_id: the authorising merchant's appid (ISV mode), else = AppID
	Charset    string    // charset: the declared charset of the wire values ("utf-8", "gbk")
	Version    string    // version: "1.0"
	SignType   string    // sign_type as the message declares it (not signed, not used to verify)
	Sign       string    // sign: base64 signature

	TradeNo      string // trade_no: Alipay's trade number
	OutTradeNo   string // out_trade_no: the merchant's order number
	OutBizNo     string // out_biz_no: the out_request_no of the refund that caused this notification
	BuyerID      string // buyer_id: "2088…" buyer user id
	BuyerOpenID  string // buyer_open_id: the buyer's open id (newer apps)
	BuyerLogonID string // buyer_logon_id: masked buyer login
	SellerID     string // seller_id: "2088…" payee user id
	SellerEmail  string // seller_email: payee login
	TradeStatus  string // trade_status: TradeWaitBuyerPay, TradeClosed, TradeSuccess or TradeFinished

	TotalAmount    int64 // total_amount in fen
	ReceiptAmount  int64 // receipt_amount in fen: what the seller receives
	InvoiceAmount  int64 // invoice_amount in fen
	BuyerPayAmount int64 // buyer_pay_amount in fen
	PointAmount    int64 // point_amount in fen
	RefundFee      int64 // refund_fee in fen: the cumulative refunded amount of the trade

	Subject string // subject: order title
	Body    string // body: order description

	GmtCreate  time.Time // gmt_create: trade creation
	GmtPayment time.Time // gmt_payment: payment
	GmtRefund  time.Time // gmt_refund: refund (millisecond precision)
	GmtClose   time.Time // gmt_close: close (timeout close or full refund)

	// FundBillList is the raw fund_bill_list JSON string; FundBills is its decoding, nil when it is
	// absent or is not the expected JSON (a malformed list does not fail the notification).
	FundBillList      string
	FundBills         []FundBill
	PassbackParams    string // passback_params: exactly as the merchant sent it (still %-encoded)
	VoucherDetailList string // voucher_detail_list: raw JSON string

	// Raw holds every field of the notification, sign included, as UTF-8.
	Raw map[string]string

	// SignedWithEmpty: the signature verified only over the canonical string that keeps
	// empty-valued parameters as "k=" (the official PHP SDK's rule since its commit 49ca4518b),
	// not over the usual one that drops them (the Java SDK's).
	SignedWithEmpty bool
}

// FundBill is one entry of a notification's fund_bill_list.
type FundBill struct {
	FundChannel string // fundChannel, e.g. "ALIPAYACCOUNT", "PCREDIT", "POINT"
	Amount      int64  // amount in fen
	RealAmount  int64  // realAmount in fen, when present
}

// IsRefund reports whether the notification reports a refund: refund_fee above zero or gmt_refund
// set. (The docs' sample payment notification carries refund_fee=0.00.)
func (n *Notification) IsRefund() bool { return n.RefundFee > 0 || !n.GmtRefund.IsZero() }

// IsPaid reports whether trade_status says the buyer has paid (TRADE_SUCCESS or TRADE_FINISHED).
func (n *Notification) IsPaid() bool {
	return n.TradeStatus == TradeSuccess || n.TradeStatus == TradeFinished
}

// checkContentType accepts an empty Content-Type and any application/x-www-form-urlencoded one,
// including Alipay's "application/x-www-form-urlencoded; text/html; charset=utf-8", which
// mime.ParseMediaType rejects.
func checkContentType(ct string) error {
	if ct == "" {
		return nil
	}
	mt := ct
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.TrimSpace(mt)
	if strings.EqualFold(mt, "application/x-www-form-urlencoded") {
		return nil
	}
	if m, _, err := mime.ParseMediaType(ct); err == nil && m == "application/x-www-form-urlencoded" {
		return nil
	}
	return malformed("Content-Type " + quoteShort(ct) + " is not application/x-www-form-urlencoded")
}

func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

// charsetDecoder returns the decoder for a declared charset, nil for UTF-8.
func charsetDecoder(cs string) (*encoding.Decoder, bool) { return alipaywire.Decoder(cs) }

// toUTF8 converts raw bytes in charset cs (decoder d, nil for UTF-8) to UTF-8.
func toUTF8(d *encoding.Decoder, s string) (string, bool) { return alipaywire.ToUTF8(d, s) }

// claimedOutTradeNo returns out_trade_no as claimed by an unverified form, made printable.
func claimedOutTradeNo(f *form) string {
	v := f.Value("out_trade_no")
	if len(v) > 128 {
		v = v[:128]
	}
	return strings.ToValidUTF8(v, "?")
}

// notificationDecisionFields are the fields of a trade notification that VerifyNotification
// makes sure no other field's value takes in or makes up (docs/alipay.md lists them): the identities, the status, the
// amounts and the times. The signature covers the fields joined as name=value with "&", not
// where each one ends (docs/alipay.md, "Canonical strings"), so a verified notification one of
// whose values holds "&name=" for one of these names, or a field name holding "&" or "=", is
// refused (ErrMalformed): it may be a genuine notification regrouped, its real out_trade_no or
// seller_id folded into the value before it, or a buyer's subject "Gift&out_trade_no=T2" split
// into another order's number. A genuine notification holding such text is refused too: query
// the trade (TradeQuery answers in signed JSON). A program deciding by a field not listed here
// (subject, body, passback_params) must not trust where its value ends.
var notificationDecisionFields = []string{"app_id", "auth_app_id", "buyer_pay_amount", "gmt_close", "gmt_payment", "gmt_refund",
	"invoice_amount", "notify_id", "notify_type", "out_biz_no", "out_trade_no", "point_amount", "receipt_amount", "refund_fee",
	"seller_email", "seller_id", "total_amount", "trade_no", "trade_status"}

// decodeNotification converts a verified form (see [Client.verifyNotificationForm]) to UTF-8 and
// parses its typed fields. Amounts must match ^(0|[1-9]\d*)(\.\d{1,2})?$ and times the Alipay
// layout; otherwise it returns a *VerifyError wrapping ErrMalformed. Call it only on a verified form.
func decodeNotification(f *form) (*Notification, error) {
	d, ok := charsetDecoder(f.Charset())
	if !ok {
		return nil, &VerifyError{Reason: ReasonMalformed, Detail: "unsupported charset " + quoteShort(f.Charset()), OutTradeNo: claimedOutTradeNo(f), err: ErrMalformed}
	}
	n := &Notification{Raw: make(map[string]string, f.Len())}
	for _, fl := range f.Fields() {
		k, ok1 := toUTF8(d, fl.Key)
		v, ok2 := toUTF8(d, fl.Value)
		if !ok1 || !ok2 {
			return nil, &VerifyError{Reason: ReasonMalformed, Detail: "field " + quoteShort(fl.Key) + " is not valid " + f.Charset(), OutTradeNo: claimedOutTradeNo(f), err: ErrMalformed}
		}
		n.Raw[k] = v
	}
	if field, name, found := regroup.Find(notificationDecisionFields, maps.All(n.Raw)); found {
		return nil, &VerifyError{Reason: ReasonMalformed, Detail: regroup.Detail(field, name), OutTradeNo: n.Raw["out_trade_no"], err: ErrMalformed}
	}
	if err := n.fill(); err != nil {
		err.OutTradeNo = n.Raw["out_trade_no"]
		return nil, err
	}
	n.SignedWithEmpty = f.signedWithEmpty
	return n, nil
}

// fill sets the typed fields from Raw.
func (n *Notification) fill() *VerifyError {
	r := n.Raw
	strs := []struct {
		dst *string
		key string
	}{
		{&n.NotifyType, "notify_type"}, {&n.NotifyID, "notify_id"}, {&n.AppID, "app_id"},
		{&n.AuthAppID, "auth_app_id"}, {&n.Charset, "charset"}, {&n.Version, "version"},
		{&n.SignType, "sign_type"}, {&n.Sign, "sign"}, {&n.TradeNo, "trade_no"},
		{&n.OutTradeNo, "out_trade_no"}, {&n.OutBizNo, "out_biz_no"}, {&n.BuyerID, "buyer_id"},
		{&n.BuyerOpenID, "buyer_open_id"}, {&n.BuyerLogonID, "buyer_logon_id"},
		{&n.SellerID, "seller_id"}, {&n.SellerEmail, "seller_email"},
		{&n.TradeStatus, "trade_status"}, {&n.Subject, "subject"}, {&n.Body, "body"},
		{&n.FundBillList, "fund_bill_list"}, {&n.PassbackParams, "passback_params"},
		{&n.VoucherDetailList, "voucher_detail_list"},
	}
	for _, s := range strs {
		*s.dst = r[s.key]
	}
	amounts := []struct {
		dst *int64
		key string
	}{
		{&n.TotalAmount, "total_amount"}, {&n.ReceiptAmount, "receipt_amount"},
		{&n.InvoiceAmount, "invoice_amount"}, {&n.BuyerPayAmount, "buyer_pay_amount"},
		{&n.PointAmount, "point_amount"}, {&n.RefundFee, "refund_fee"},
	}
	for _, a := range amounts {
		v, ok := r[a.key]
		if !ok {
			continue
		}
		fen, err := ParseAmount(v)
		if err != nil {
			return malformed(a.key + ": " + strings.TrimPrefix(err.Error(), "alipay: "))
		}
		*a.dst = fen
	}
	times := []struct {
		dst *time.Time
		key string
	}{
		{&n.NotifyTime, "notify_time"}, {&n.GmtCreate, "gmt_create"}, {&n.GmtPayment, "gmt_payment"},
		{&n.GmtRefund, "gmt_refund"}, {&n.GmtClose, "gmt_close"},
	}
	for _, t := range times {
		v, ok := r[t.key]
		if !ok {
			continue
		}
		tt, err := ParseTime(v)
		if err != nil {
			return malformed(t.key + ": " + strings.TrimPrefix(err.Error(), "alipay: "))
		}
		*t.dst = tt
	}
	if n.FundBillList != "" {
		n.FundBills = parseFundBills(n.FundBillList)
	}
	return nil
}

func parseFundBills(s string) []FundBill {
	var raw []struct {
		FundChannel string `json:"fundChannel"`
		Amount      string `json:"amount"`
		RealAmount  string `json:"realAmount"`
	}
	if json.Unmarshal([]byte(s), &raw) != nil {
		return nil
	}
	out := make([]FundBill, 0, len(raw))
	for _, b := range raw {
		a, err := ParseAmount(b.Amount)
		if err != nil {
			return nil
		}
		fb := FundBill{FundChannel: b.FundChannel, Amount: a}
		if b.RealAmount != "" {
			if fb.RealAmount, err = ParseAmount(b.RealAmount); err != nil {
				return nil
			}
		}
		out = append(out, fb)
	}
	return out
}
