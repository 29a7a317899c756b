package alipaylegacy

import (
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/encoding"

	"github.com/paynotify/paynotify/internal/alipaywire"
	"github.com/paynotify/paynotify/internal/regroup"
)

// Kind says which protocol family a message belongs to.
type Kind string

// The kinds.
const (
	// KindMAPI is the mapi gateway (create_direct_pay_by_user, trade_create_by_buyer,
	// create_partner_trade_by_buyer): a flat form signed with the sorted rule.
	KindMAPI Kind = "mapi"
	// KindWAP is the old WAP pair (alipay.wap.trade.create.direct): an XML notify_data signed
	// with the fixed-order rule, and the call_back_url return.
	KindWAP Kind = "wap"
)

// Trade statuses (trade_status, docs/alipay-legacy.md §9.2).
const (
	TradeWaitBuyerPay          = "WAIT_BUYER_PAY"
	TradeSuccess               = "TRADE_SUCCESS"
	TradeFinished              = "TRADE_FINISHED"
	TradeClosed                = "TRADE_CLOSED"
	TradePending               = "TRADE_PENDING"
	TradeWaitSellerSendGoods   = "WAIT_SELLER_SEND_GOODS"
	TradeWaitBuyerConfirmGoods = "WAIT_BUYER_CONFIRM_GOODS"
)

// ServiceWAPCreateDirect and ServiceWAPAuthAndExecute are the two services of the old WAP pair.
const (
	ServiceWAPCreateDirect   = "alipay.wap.trade.create.direct"
	ServiceWAPAuthAndExecute = "alipay.wap.auth.authAndExecute"
)

// Notification is a verified legacy message: an async notification (mapi or WAP) or a browser
// return (mapi return_url, WAP call_back_url; Return is true). Values are UTF-8; amounts are int64
// fen (0 when absent); times are in Beijing time (zero when absent).
//
// A verified Notification is not yet a payment: an async notification counts only after
// Client.NotifyVerify(ctx, n.NotifyID) returns nil, and a return never counts (it is a browser
// redirect, display only).
type Notification struct {
	Kind   Kind // KindMAPI or KindWAP
	Return bool // a return_url or call_back_url visit, not an async notification

	NotifyID   string    // notify_id: the input of NotifyVerify, exactly as signed (a return's keeps its %2F)
	NotifyType string    // notify_type: "trade_status_sync"
	NotifyTime time.Time // notify_time

	OutTradeNo  string // out_trade_no: the merchant's order number
	TradeNo     string // trade_no: Alipay's trade number
	TradeStatus string // trade_status: TradeSuccess, TradeFinished, TradeWaitSellerSendGoods, …

	TotalFee int64 // total_fee in fen
	Price    int64 // price in fen, 0 when absent
	Quantity int64 // quantity, 0 when absent

	Subject          string // subject
	Body             string // body
	PaymentType      string // payment_type: "1"
	SellerID         string // seller_id: the receiving account's user id
	SellerEmail      string // seller_email
	BuyerID          string // buyer_id
	BuyerEmail       string // buyer_email (may be a phone number or masked)
	Discount         string // discount, as sent ("0.00")
	IsTotalFeeAdjust string // is_total_fee_adjust: "N" or "Y"
	UseCoupon        string // use_coupon: "N" or "Y"
	ExtraCommonParam string // extra_common_param: the request's passback, unchanged
	RefundStatus     string // refund_status, after a refund (e.g. "REFUND_SUCCESS")

	GmtCreate  time.Time // gmt_create
	GmtPayment time.Time // gmt_payment
	GmtClose   time.Time // gmt_close
	GmtRefund  time.Time // gmt_refund

	Exterface    string // exterface (mapi return): the service that was paid, e.g. "create_direct_pay_by_user"
	IsSuccess    string // is_success (mapi return): "T"
	Result       string // result (WAP call_back_url): "success"
	RequestToken string // request_token (WAP call_back_url)

	// Fields holds every field of the form with a value (an empty one is signed by no rule), in
	// the order received, as UTF-8. For a WAP notification only the four fields its signature
	// covers (service, v, sec_id, notify_data) and sign are kept, notify_data as the plaintext
	// XML (decrypted under `0001`), and NotifyData holds its elements: any other field of the
	// form was signed by no one.
	Fields []Field
	// NotifyData holds the elements of a WAP notification's notify_data in document order; nil
	// otherwise.
	NotifyData []Field
	// Canonical is the string the signature was checked over, in the configured charset: the
	// sorted rule, or the fixed-order rule for a WAP notification. For MD5 it is without the key.
	Canonical []byte
	// Charset is the charset the message was read in (the configured one).
	Charset string
	// SignType is the algorithm that verified the message, the configured one (SignRSA is sec_id
	// 0001 on the WAP pair).
	SignType SignType
}

// Get returns the value of a field: for a WAP notification the notify_data element, else the form
// field (of a WAP notification, one of the four it signs).
func (n *Notification) Get(key string) (string, bool) {
	if v, ok := xmlGet(n.NotifyData, key); ok {
		return v, true
	}
	return xmlGet(n.Fields, key)
}

// IsPaid reports whether trade_status says the buyer has paid: TRADE_SUCCESS or TRADE_FINISHED
// (create_direct_pay_by_user, WAP), WAIT_SELLER_SEND_GOODS or WAIT_BUYER_CONFIRM_GOODS (escrow: the
// money is held by Alipay). TRADE_FINISHED of an escrow trade is the buyer's confirmation.
func (n *Notification) IsPaid() bool {
	switch n.TradeStatus {
	case TradeSuccess, TradeFinished, TradeWaitSellerSendGoods, TradeWaitBuyerConfirmGoods:
		return true
	}
	return false
}

// VerifyNotification verifies an async notification from its raw POST body: a mapi notification
// (create_direct_pay_by_user or an escrow service), or a WAP notification, recognised by its
// notify_data, sec_id or service field. It does not call the network.
//
// mapi (docs/alipay-legacy.md §9.3): the sign over the sorted string (§5.1) with the configured
// algorithm; the declared sign_type must be the configured one. WAP (docs/alipay-legacy.md §11.5):
// service, v, sec_id and notify_data must all be present and sec_id must be the configured one;
// under `0001` notify_data is decrypted with the merchant key (§7); the sign is checked over the
// fixed-order string with the plaintext (§5.2), before the XML is parsed. The charset is the
// configured one (the notification does not say). Then notify_id, out_trade_no, trade_no,
// trade_status and total_fee are required.
//
// The result is NOT yet a payment: call NotifyVerify with n.NotifyID and act only when it returns
// nil. Failures are *VerifyError; a `0001` notification without Config.MerchantPrivateKey is a
// plain error (could not check, not invalid).
func (c *Client) VerifyNotification(body []byte) (*Notification, error) {
	w, verr := parseForm(body)
	if verr != nil {
		return nil, verr
	}
	if isWAPNotify(w) {
		return c.verifyWAPNotify(w)
	}
	return c.verifyMAPI(w, false)
}

// VerifyReturn verifies the query string (with or without its leading '?') of a browser return: a
// mapi return_url visit (it carries sign_type) or a WAP call_back_url visit (out_trade_no,
// request_token, result, trade_no, sign; no sign_type). Both use the sorted rule
// (docs/alipay-legacy.md §10, §11.4). It does not call the network.
//
// A return is display only: never mark an order paid from it. A mapi return's notify_id is kept
// exactly as signed, after one decoding, still holding its %2F and %2B (Alipay double-encodes it);
// pass n.NotifyID unchanged to NotifyVerify if you check it (it is valid for about a minute).
func (c *Client) VerifyReturn(rawQuery string) (*Notification, error) {
	w, verr := parseForm([]byte(strings.TrimPrefix(rawQuery, "?")))
	if verr != nil {
		return nil, verr
	}
	if _, ok := w.Lookup("sign_type"); !ok {
		if _, ok := w.Lookup("request_token"); ok {
			return c.verifyWAPCallback(w)
		}
		if _, ok := w.Lookup("result"); ok {
			return c.verifyWAPCallback(w)
		}
	}
	return c.verifyMAPI(w, true)
}

// isWAPNotify recognises a WAP async notification by the fields only it has.
func isWAPNotify(w *alipaywire.Form) bool {
	if _, ok := w.Lookup("notify_data"); ok {
		return true
	}
	if _, ok := w.Lookup("sec_id"); ok {
		return true
	}
	v, _ := w.Lookup("service")
	return string(v) == ServiceWAPCreateDirect
}

// claimed returns a form field as claimed by an unverified message, made printable.
func (c *Client) claimed(w *alipaywire.Form, key string) string {
	v, _ := w.Lookup(key)
	return c.claimedText(string(v))
}

func (c *Client) claimedText(v string) string {
	if len(v) > 128 {
		v = v[:128]
	}
	d, _ := alipaywire.Decoder(c.charset)
	if s, ok := alipaywire.ToUTF8(d, v); ok {
		return s
	}
	return strings.ToValidUTF8(v, "?")
}

// checkSign returns the form's sign or why it is unusable.
func checkSign(w *alipaywire.Form) (string, *VerifyError) {
	sig, ok := w.Lookup("sign")
	if !ok || len(sig) == 0 {
		return "", verr(ReasonUnsigned, "sign is missing or empty")
	}
	return string(sig), nil
}

// mapiDecisionFields are the fields of a mapi notification that VerifyNotification makes sure no
// other field's value takes in or makes up. The sorted rule signs the fields joined as name=value
// with "&", not where each one ends (docs/alipay-legacy.md §5.1): a verified notification one of
// whose values holds "&name=" for one of these names, or a field name holding "&" or "=", may be
// a genuine one regrouped (its out_trade_no or seller_id folded into the value before it, or a
// buyer's subject "礼物&out_trade_no=L2" split into another order's number) and is refused
// (ReasonMalformed). A program deciding by another field (subject, body, extra_common_param)
// must not trust where its value ends.
//
// exterface and is_success are a return_url visit's, which a notification must not hold (below):
// named here too, or folded into the value before them (buyer_id) they passed that check (a
// reviewer's finding).
var mapiDecisionFields = []string{"exterface", "gmt_close", "gmt_payment", "gmt_refund", "is_success", "notify_id", "notify_type", "out_trade_no", "partner",
	"price", "quantity", "refund_status", "seller_email", "seller_id", "total_fee", "trade_no", "trade_status"}

// verifyMAPI verifies a mapi notification (ret false) or return_url visit (ret true).
func (c *Client) verifyMAPI(w *alipaywire.Form, ret bool) (*Notification, error) {
	fail := func(e *VerifyError) (*Notification, error) {
		e.OutTradeNo = c.claimed(w, "out_trade_no")
		return nil, e
	}
	sig, e := checkSign(w)
	if e != nil {
		e.Canonical = canonicalForm(w, "", "")
		return fail(e)
	}
	st, ok := w.Lookup("sign_type")
	if !ok || len(st) == 0 {
		return fail(missing("sign_type"))
	}
	if !strings.EqualFold(string(st), string(c.signType)) {
		return fail(verr(ReasonUnsupportedSignType, "the message declares sign_type="+short(string(st))+" but "+string(c.signType)+" is configured"))
	}
	canon := canonicalForm(w, "", "")
	if why := c.verify(canon, sig); why != "" {
		e := verr(ReasonSignatureInvalid, why+" (sorted rule)")
		e.Canonical = canon
		return fail(e)
	}
	fields, e := c.decodeFields(w.Received())
	if e != nil {
		return fail(e)
	}
	if !ret {
		// A return_url visit's query carries is_success and exterface, which no asynchronous
		// notification has: POSTed to the notify URL (anyone holding the buyer's URL can), it
		// verified, and its notify_id confirmed for a minute, so that a return paid an order
		// (a reviewer helper's finding; only the asynchronous notification changes an order).
		for _, f := range fields {
			if f.Key == "is_success" || f.Key == "exterface" {
				return fail(verr(ReasonMalformed, "a return_url visit's query ("+f.Key+"), not an asynchronous notification: a return changes no order"))
			}
		}
		if field, name, found := regroup.Find(mapiDecisionFields, func(yield func(k, v string) bool) {
			for _, f := range fields {
				if !yield(f.Key, f.Value) {
					return
				}
			}
		}); found {
			return fail(verr(ReasonMalformed, regroup.Detail(field, name)))
		}
	}
	n := &Notification{Kind: KindMAPI, Return: ret, Fields: fields, Canonical: canon, Charset: c.charset, SignType: c.signType}
	required := []string{"notify_id", "out_trade_no", "trade_no", "trade_status", "total_fee"}
	if ret {
		required = []string{"out_trade_no"}
	}
	if e := n.fill(fields, required); e != nil {
		e.OutTradeNo = n.OutTradeNo
		return nil, e
	}
	if p, ok := xmlGet(fields, "partner"); ok && p != c.partner {
		return nil, &VerifyError{Reason: ReasonWrongPartner, Detail: "partner " + short(p) + " is not the configured " + c.partner, OutTradeNo: n.OutTradeNo, err: ErrWrongPartner}
	}
	return n, nil
}

// verifyWAPCallback verifies a WAP call_back_url visit (docs/alipay-legacy.md §11.4).
func (c *Client) verifyWAPCallback(w *alipaywire.Form) (*Notification, error) {
	fail := func(e *VerifyError) (*Notification, error) {
		e.OutTradeNo = c.claimed(w, "out_trade_no")
		return nil, e
	}
	canon := canonicalForm(w, "", "")
	sig, e := checkSign(w)
	if e != nil {
		e.Canonical = canon
		return fail(e)
	}
	if why := c.verify(canon, sig); why != "" {
		e := verr(ReasonSignatureInvalid, why+" (sorted rule)")
		e.Canonical = canon
		return fail(e)
	}
	fields, e := c.decodeFields(w.Received())
	if e != nil {
		return fail(e)
	}
	n := &Notification{Kind: KindWAP, Return: true, Fields: fields, Canonical: canon, Charset: c.charset, SignType: c.signType}
	if e := n.fill(fields, []string{"out_trade_no", "result"}); e != nil {
		e.OutTradeNo = n.OutTradeNo
		return nil, e
	}
	return n, nil
}

// verifyWAPNotify verifies a WAP async notification (docs/alipay-legacy.md §11.5).
func (c *Client) verifyWAPNotify(w *alipaywire.Form) (*Notification, error) {
	var plain string // notify_data in plaintext, once known
	fail := func(e *VerifyError) (*Notification, error) {
		// For logs only: the claimed order number, found by a plain search (unverified XML is
		// not given to the parser).
		if _, after, ok := strings.Cut(plain, "<out_trade_no>"); ok {
			if v, _, ok := strings.Cut(after, "</out_trade_no>"); ok {
				e.OutTradeNo = c.claimedText(v)
			}
		}
		return nil, e
	}
	if raw, _ := w.Lookup("notify_data"); len(raw) > 0 && raw[0] == '<' {
		plain = string(raw)
	}
	sig, e := checkSign(w)
	if e != nil {
		return fail(e)
	}
	var vals [4]string
	for i, k := range [4]string{"service", "v", "sec_id", "notify_data"} {
		v, ok := w.Lookup(k)
		if !ok || len(v) == 0 {
			return fail(missing(k))
		}
		vals[i] = string(v)
	}
	service, v, secID, data := vals[0], vals[1], vals[2], vals[3]
	if service != ServiceWAPCreateDirect {
		return fail(verr(ReasonMalformed, "service "+short(service)+" of a WAP notification is not "+ServiceWAPCreateDirect))
	}
	if secID != c.signType.SecID() && !(c.signType == SignMD5 && strings.EqualFold(secID, "MD5")) {
		return fail(verr(ReasonUnsupportedSignType, "the message declares sec_id="+short(secID)+" but "+c.signType.SecID()+" is configured"))
	}
	plain, decrypted := data, true
	if c.signType == SignRSA && !strings.HasPrefix(data, "<") {
		// Under 0001 notify_data is encrypted to the merchant key. A value that starts with '<' is
		// not base64: it is verified as plaintext, and the signature decides (docs/alipay-legacy.md
		// §7: whether Alipay ever does so is unsettled).
		if c.merchantKey == nil {
			return nil, errNoMerchantKey
		}
		p, ok, err := decryptBlinded(c.merchantKey, data)
		if err != nil {
			return fail(verr(ReasonDecryptFailed, "notify_data: "+strings.TrimPrefix(err.Error(), "alipaylegacy: ")))
		}
		plain, decrypted = string(p), ok
	}
	canon := CanonicalWAPNotify(service, v, secID, plain)
	// Past a failed padding the same checks run, over random plaintext, as for a bad signature
	// (decryptBlinded), and the reason is the same: it becomes a metrics label, which the server
	// may serve to anyone. Only the detail says which.
	if why := c.verify(canon, sig); why != "" || !decrypted {
		why += " (WAP fixed-order string service&v&sec_id&notify_data, notify_data in plaintext)"
		// The two classic signer mistakes, named for operators (failure path only).
		sorted := CanonicalSorted([]Field{{"service", service}, {"v", v}, {"sec_id", secID}, {"notify_data", plain}})
		if c.verify(sorted, sig) == "" {
			why += "; it verifies over the sorted string instead: the WAP notification is signed in the fixed order"
		}
		if plain != data && c.verify(CanonicalWAPNotify(service, v, secID, data), sig) == "" {
			why += "; it verifies over the encrypted notify_data: the sign must cover the plaintext"
		}
		if !decrypted {
			return fail(verr(ReasonSignatureInvalid, "notify_data does not decrypt with the merchant key: a forged message, "+
				"or a merchant key that is not the one Alipay encrypts to (reported as signature_invalid, docs/alipay-legacy.md §7)"))
		}
		e := verr(ReasonSignatureInvalid, why)
		e.Canonical = canon
		return fail(e)
	}
	// Verified: now decode, then parse the XML with a real parser.
	xmlText, ok := c.toUTF8(plain)
	if !ok {
		return fail(verr(ReasonBadCharset, "notify_data is not valid "+c.charset))
	}
	// Only what the fixed-order rule signs (and the sign): any other form field is the sender's
	// alone, and Fields and Get must not hand it out as part of a verified notification.
	var data0 []alipaywire.Field
	for _, f := range w.Received() {
		switch f.Key {
		case "notify_data":
			f.Value = plain
		case "service", "v", "sec_id", "sign":
		default:
			continue
		}
		data0 = append(data0, f)
	}
	fields, e := c.decodeFields(data0)
	if e != nil {
		return fail(e)
	}
	nd, err := parseFlatXML([]byte(xmlText), "notify")
	if err != nil {
		return fail(xmlError("notify_data", err))
	}
	n := &Notification{Kind: KindWAP, Fields: fields, NotifyData: nd, Canonical: canon, Charset: c.charset, SignType: c.signType}
	if e := n.fill(nd, []string{"notify_id", "out_trade_no", "trade_no", "trade_status", "total_fee"}); e != nil {
		e.OutTradeNo = n.OutTradeNo
		return nil, e
	}
	return n, nil
}

func (c *Client) decoder() *encoding.Decoder {
	d, _ := alipaywire.Decoder(c.charset)
	return d
}

func (c *Client) toUTF8(s string) (string, bool) { return alipaywire.ToUTF8(c.decoder(), s) }

// decodeFields converts verified fields from the configured charset to UTF-8. A field with an
// empty value is left out: the sorted rule leaves it out of the signed string, so anyone can add
// one to a genuine message, and Get would have answered ("", true) for it.
func (c *Client) decodeFields(in []alipaywire.Field) ([]Field, *VerifyError) {
	d := c.decoder()
	out := make([]Field, 0, len(in))
	for _, f := range in {
		if f.Value == "" {
			continue
		}
		k, ok1 := alipaywire.ToUTF8(d, f.Key)
		v, ok2 := alipaywire.ToUTF8(d, f.Value)
		if !ok1 || !ok2 {
			return nil, verr(ReasonBadCharset, "field "+short(f.Key)+" is not valid "+c.charset)
		}
		out = append(out, Field{Key: k, Value: v})
	}
	return out, nil
}

// fill sets the typed fields from fs (UTF-8) and checks that the required ones are present and not
// empty.
func (n *Notification) fill(fs []Field, required []string) *VerifyError {
	get := func(k string) string { v, _ := xmlGet(fs, k); return v }
	n.OutTradeNo = get("out_trade_no")
	for _, k := range required {
		if get(k) == "" {
			return missing(k)
		}
	}
	strs := []struct {
		dst *string
		key string
	}{
		{&n.NotifyID, "notify_id"}, {&n.NotifyType, "notify_type"}, {&n.TradeNo, "trade_no"},
		{&n.TradeStatus, "trade_status"}, {&n.Subject, "subject"}, {&n.Body, "body"},
		{&n.PaymentType, "payment_type"}, {&n.SellerID, "seller_id"}, {&n.SellerEmail, "seller_email"},
		{&n.BuyerID, "buyer_id"}, {&n.BuyerEmail, "buyer_email"}, {&n.Discount, "discount"},
		{&n.IsTotalFeeAdjust, "is_total_fee_adjust"}, {&n.UseCoupon, "use_coupon"},
		{&n.ExtraCommonParam, "extra_common_param"}, {&n.RefundStatus, "refund_status"},
		{&n.Exterface, "exterface"}, {&n.IsSuccess, "is_success"}, {&n.Result, "result"},
		{&n.RequestToken, "request_token"},
	}
	for _, s := range strs {
		*s.dst = get(s.key)
	}
	amounts := []struct {
		dst *int64
		key string
	}{{&n.TotalFee, "total_fee"}, {&n.Price, "price"}}
	for _, a := range amounts {
		v := get(a.key)
		if v == "" {
			continue
		}
		fen, ok := alipaywire.ParseAmount(v)
		if !ok {
			return verr(ReasonBadAmount, a.key+" "+short(v)+" is not a yuan amount with at most two decimals")
		}
		*a.dst = fen
	}
	if v := get("quantity"); v != "" {
		q, err := strconv.ParseInt(v, 10, 64)
		if err != nil || q < 0 || v[0] == '+' {
			return verr(ReasonMalformed, "quantity "+short(v)+" is not a whole number")
		}
		n.Quantity = q
	}
	times := []struct {
		dst *time.Time
		key string
	}{
		{&n.NotifyTime, "notify_time"}, {&n.GmtCreate, "gmt_create"}, {&n.GmtPayment, "gmt_payment"},
		{&n.GmtClose, "gmt_close"}, {&n.GmtRefund, "gmt_refund"},
	}
	for _, t := range times {
		v := get(t.key)
		if v == "" {
			continue
		}
		tt, ok := alipaywire.ParseTime(v)
		if !ok {
			return verr(ReasonMalformed, t.key+" "+short(v)+" is not a yyyy-MM-dd HH:mm:ss time")
		}
		*t.dst = tt
	}
	return nil
}
