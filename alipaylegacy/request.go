package alipaylegacy

import (
	"errors"
	"html"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/paynotify/paynotify/internal/alipaywire"
	"github.com/paynotify/paynotify/internal/regroup"
)

// The mapi services this package builds requests for (docs/alipay-legacy.md §8).
const (
	// ServiceDirectPay is 即时到账: the buyer pays at once (DirectPay).
	ServiceDirectPay = "create_direct_pay_by_user"
	// ServiceTradeCreateByBuyer is 标准双接口 / 双功能: the buyer chooses direct or escrow payment
	// (EscrowTrade).
	ServiceTradeCreateByBuyer = "trade_create_by_buyer"
	// ServiceCreatePartnerTradeByBuyer is 纯担保交易: escrow; Alipay holds the money until the buyer
	// confirms receipt (EscrowTrade).
	ServiceCreatePartnerTradeByBuyer = "create_partner_trade_by_buyer"
)

// maxFen is the largest amount Alipay accepts in a request, 100000000.00 yuan.
const maxFen = 100000000_00

// DirectPay is a create_direct_pay_by_user request (即时到账, docs/alipay-legacy.md §8.2): the browser
// is sent to the mapi gateway, pays, comes back to ReturnURL, and Alipay notifies NotifyURL.
// Strings are UTF-8; they are converted to the configured charset before signing. Empty fields are
// not sent.
type DirectPay struct {
	// AntiPhishingKey is the encrypt_key of a query_timestamp call (anti_phishing_key), optional.
	AntiPhishingKey string
	// Body is the order description (body), optional (≤ 400 characters).
	Body string
	// DefaultBank is the bank code of 网银直连 (defaultbank, e.g. "ICBCB2C"), with PayMethod
	// "bankPay"; optional.
	DefaultBank string
	// ExterInvokeIP is the buyer's public IP (exter_invoke_ip), optional.
	ExterInvokeIP string
	// Extra holds other documented parameters (qr_pay_mode, royalty_type, extend_param, …). It may
	// not name a parameter this type or the client sets.
	Extra map[string]string
	// ExtraCommonParam is the passback (extra_common_param), returned unchanged in the notification
	// and the return; optional.
	ExtraCommonParam string
	// ItBPay is the payment timeout (it_b_pay), e.g. "30m", "2h", "1d"; optional.
	ItBPay string
	// NotifyURL is the async notification URL (notify_url): absolute http(s), no query string
	// (docs/alipay-legacy.md §14.9). Optional, but without it there are no notifications.
	NotifyURL string
	// OutTradeNo is the merchant's order number (out_trade_no), 1 to 64 characters. Required.
	OutTradeNo string
	// PayMethod is the payment method (paymethod), e.g. "bankPay"; optional.
	PayMethod string
	// ReturnURL is the browser return URL (return_url): absolute http(s), no query string.
	// Optional.
	ReturnURL string
	// ShowURL is the product page (show_url), optional.
	ShowURL string
	// Subject is the order title (subject), required (≤ 256 characters).
	Subject string
	// TotalFee is the amount in fen (total_fee, sent as "88.88"): 1 (0.01 yuan) to 10000000000.
	TotalFee int64
}

// EscrowTrade is a trade_create_by_buyer (双功能) or create_partner_trade_by_buyer (纯担保) request
// (docs/alipay-legacy.md §8.2): price × quantity plus logistics instead of total_fee. Its
// notifications go through WAIT_BUYER_PAY, WAIT_SELLER_SEND_GOODS (paid into escrow),
// WAIT_BUYER_CONFIRM_GOODS and TRADE_FINISHED. One type serves both services, which take the same
// parameters.
type EscrowTrade struct {
	// Body is the order description (body), optional.
	Body string
	// Extra holds other documented parameters; it may not name a parameter this type or the client
	// sets.
	Extra map[string]string
	// LogisticsFee is the shipping fee in fen (logistics_fee), 0 or more; sent even when 0
	// ("0.00").
	LogisticsFee int64
	// LogisticsPayment says who pays the shipping (logistics_payment): "SELLER_PAY" or "BUYER_PAY".
	// Required.
	LogisticsPayment string
	// LogisticsType is the carrier type (logistics_type): "EXPRESS", "POST" or "EMS". Required.
	LogisticsType string
	// NotifyURL is the async notification URL: absolute http(s), no query string. Optional.
	NotifyURL string
	// OutTradeNo is the merchant's order number, 1 to 64 characters. Required.
	OutTradeNo string
	// Price is the unit price in fen (price), 1 to 10000000000. Required.
	Price int64
	// Quantity is the number of units (quantity), 1 or more. Required.
	Quantity int64
	// ReceiveAddress, ReceiveMobile, ReceiveName, ReceivePhone and ReceiveZip are the buyer's
	// address (receive_*), optional.
	ReceiveAddress, ReceiveMobile, ReceiveName, ReceivePhone, ReceiveZip string
	// ReturnURL is the browser return URL: absolute http(s), no query string. Optional.
	ReturnURL string
	// Service is ServiceTradeCreateByBuyer or ServiceCreatePartnerTradeByBuyer. Required.
	Service string
	// ShowURL is the product page (show_url), optional.
	ShowURL string
	// Subject is the order title, required.
	Subject string
}

// DirectPayURL returns the signed create_direct_pay_by_user URL to send the buyer's browser to
// (GET): the gateway, the parameters sorted by name and form-encoded, then sign and sign_type
// (docs/alipay-legacy.md §8.1).
func (c *Client) DirectPayURL(p *DirectPay) (string, error) {
	r, err := c.directPay(p)
	if err != nil {
		return "", err
	}
	return r.url(), nil
}

// DirectPayForm returns the same request as an HTML fragment: a GET form with one hidden input per
// parameter (values HTML-escaped, unlike the demos' form, docs/alipay-legacy.md §13.7) that submits
// itself. Under a GBK charset the form asks the browser to submit GBK (accept-charset); the URL of
// DirectPayURL needs no such help and is the safer choice there. A value holding a line break is
// refused (a browser submits it as CR LF, which the sign does not cover): use DirectPayURL.
func (c *Client) DirectPayForm(p *DirectPay) (string, error) {
	r, err := c.directPay(p)
	if err != nil {
		return "", err
	}
	return r.form()
}

// EscrowURL returns the signed URL of an escrow request, as DirectPayURL does.
func (c *Client) EscrowURL(p *EscrowTrade) (string, error) {
	r, err := c.escrow(p)
	if err != nil {
		return "", err
	}
	return r.url(), nil
}

// EscrowForm returns an escrow request as an auto-submitting HTML form, as DirectPayForm does.
func (c *Client) EscrowForm(p *EscrowTrade) (string, error) {
	r, err := c.escrow(p)
	if err != nil {
		return "", err
	}
	return r.form()
}

func (c *Client) directPay(p *DirectPay) (*request, error) {
	if err := checkOrder(p.OutTradeNo, p.Subject, p.NotifyURL, p.ReturnURL); err != nil {
		return nil, err
	}
	if p.TotalFee < 1 || p.TotalFee > maxFen {
		return nil, errors.New("alipaylegacy: total_fee must be 0.01 to 100000000.00 yuan")
	}
	fs := []Field{
		{"payment_type", "1"}, {"out_trade_no", p.OutTradeNo}, {"subject", p.Subject},
		{"total_fee", formatFen(p.TotalFee)}, {"body", p.Body}, {"show_url", p.ShowURL},
		{"notify_url", p.NotifyURL}, {"return_url", p.ReturnURL}, {"paymethod", p.PayMethod},
		{"defaultbank", p.DefaultBank}, {"anti_phishing_key", p.AntiPhishingKey},
		{"exter_invoke_ip", p.ExterInvokeIP}, {"extra_common_param", p.ExtraCommonParam},
		{"it_b_pay", p.ItBPay},
	}
	return c.mapiRequest(ServiceDirectPay, append(fs, c.seller()...), p.Extra)
}

func (c *Client) escrow(p *EscrowTrade) (*request, error) {
	if p.Service != ServiceTradeCreateByBuyer && p.Service != ServiceCreatePartnerTradeByBuyer {
		return nil, errors.New("alipaylegacy: EscrowTrade.Service must be " + ServiceTradeCreateByBuyer + " or " + ServiceCreatePartnerTradeByBuyer)
	}
	if err := checkOrder(p.OutTradeNo, p.Subject, p.NotifyURL, p.ReturnURL); err != nil {
		return nil, err
	}
	switch {
	case p.Price < 1 || p.Price > maxFen:
		return nil, errors.New("alipaylegacy: price must be 0.01 to 100000000.00 yuan")
	case p.Quantity < 1:
		return nil, errors.New("alipaylegacy: quantity must be 1 or more")
	case p.LogisticsFee < 0 || p.LogisticsFee > maxFen:
		return nil, errors.New("alipaylegacy: logistics_fee must be 0.00 to 100000000.00 yuan")
	case p.LogisticsType == "":
		return nil, errors.New("alipaylegacy: logistics_type is required (EXPRESS, POST or EMS)")
	case p.LogisticsPayment == "":
		return nil, errors.New("alipaylegacy: logistics_payment is required (SELLER_PAY or BUYER_PAY)")
	}
	fs := []Field{
		{"payment_type", "1"}, {"out_trade_no", p.OutTradeNo}, {"subject", p.Subject},
		{"price", formatFen(p.Price)}, {"quantity", strconv.FormatInt(p.Quantity, 10)},
		{"logistics_fee", formatFen(p.LogisticsFee)}, {"logistics_type", p.LogisticsType},
		{"logistics_payment", p.LogisticsPayment}, {"body", p.Body}, {"show_url", p.ShowURL},
		{"notify_url", p.NotifyURL}, {"return_url", p.ReturnURL},
		{"receive_name", p.ReceiveName}, {"receive_address", p.ReceiveAddress},
		{"receive_zip", p.ReceiveZip}, {"receive_phone", p.ReceivePhone},
		{"receive_mobile", p.ReceiveMobile},
	}
	return c.mapiRequest(p.Service, append(fs, c.seller()...), p.Extra)
}

// seller returns the receiving-account parameter: seller_id, else seller_email, else seller_id =
// partner (the demos' default).
func (c *Client) seller() []Field {
	switch {
	case c.sellerID != "":
		return []Field{{"seller_id", c.sellerID}}
	case c.sellerEmail != "":
		return []Field{{"seller_email", c.sellerEmail}}
	}
	return []Field{{"seller_id", c.partner}}
}

func checkOrder(outTradeNo, subject, notifyURL, returnURL string) error {
	switch {
	case outTradeNo == "" || len(outTradeNo) > 64:
		return errors.New("alipaylegacy: out_trade_no must be 1 to 64 characters")
	case strings.TrimSpace(subject) == "":
		return errors.New("alipaylegacy: subject is required")
	}
	for _, u := range []struct{ name, v string }{{"notify_url", notifyURL}, {"return_url", returnURL}} {
		if u.v == "" {
			continue
		}
		if err := checkURL(u.v, false); err != nil {
			return errors.New("alipaylegacy: " + u.name + ": " + err.Error() + " (Alipay drops or refuses a query string there: route by path)")
		}
	}
	return nil
}

func formatFen(fen int64) string { return string(alipaywire.AppendAmount(nil, fen)) }

// request is a signed request: its parameters sorted by name, then sign (and sign_type on mapi).
type request struct {
	action string  // where the browser goes
	query  string  // a query the demos put on the form action ("_input_charset=utf-8"), or ""
	wire   []Field // the parameters in the configured charset: what the URL carries
	text   []Field // the same in UTF-8: what the HTML form carries
	cs     string
}

// mapiRequest builds and signs a mapi request: service, partner and _input_charset, the given
// fields and extra (empty values dropped), sorted, then sign and sign_type.
func (c *Client) mapiRequest(service string, fs []Field, extra map[string]string) (*request, error) {
	all := append([]Field{{"service", service}, {"partner", c.partner}, {"_input_charset", c.charset}}, fs...)
	all, err := addExtra(all, extra)
	if err != nil {
		return nil, err
	}
	r, err := c.signFields(all)
	if err != nil {
		return nil, err
	}
	r.action = c.gateway
	r.query = "_input_charset=" + c.charset
	r.wire = append(r.wire, Field{"sign_type", string(c.signType)})
	r.text = append(r.text, Field{"sign_type", string(c.signType)})
	return r, nil
}

// addExtra appends extra's fields to fs, refusing a name fs already has or a reserved one.
func addExtra(fs []Field, extra map[string]string) ([]Field, error) {
	if len(extra) == 0 {
		return fs, nil
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" || k == "sign" || k == "sign_type" || k == "sec_id" {
			return nil, errors.New("alipaylegacy: Extra may not set " + strconv.Quote(k))
		}
		for _, f := range fs {
			if f.Key == k {
				return nil, errors.New("alipaylegacy: Extra may not set " + strconv.Quote(k) + ", which the request sets")
			}
		}
		fs = append(fs, Field{k, extra[k]})
	}
	return fs, nil
}

// requestNames are the mapi and WAP request parameters Alipay acts on: no value of a request
// this package signs may hold "&name=" for one of them, nor for a parameter of the request itself.
// The sorted rule signs the fields joined with "&", not where each one ends (docs/alipay-legacy.md
// §5.1), so a subject "gift&total_fee=0.01&x=" in a request of 100.00 makes a signed request that
// can be regrouped into subject=gift, total_fee=0.01 and x=&total_fee=100.00 under the same sign
// (a reviewer helper's finding).
var requestNames = []string{"_input_charset", "anti_phishing_key", "body", "buyer_account_name", "buyer_email", "buyer_id",
	"call_back_url", "defaultbank", "exter_invoke_ip", "extra_common_param", "format", "it_b_pay", "logistics_fee",
	"logistics_payment", "logistics_type", "merchant_url", "notify_url", "out_trade_no", "out_user", "partner", "pay_expire",
	"payment_type", "paymethod", "price", "quantity", "receive_address", "receive_mobile", "receive_name", "receive_phone",
	"receive_zip", "req_data", "req_id", "return_url", "royalty_parameters", "royalty_type", "sec_id", "seller_account_name",
	"seller_email", "seller_id", "service", "show_url", "sign", "sign_type", "subject", "token", "total_fee", "v"}

// signFields drops empty values, sorts fs by name, converts the values to the configured charset,
// and signs them (sorted rule) with the configured algorithm; sign is appended last. A field
// whose value holds "&name=" for a parameter Alipay acts on (requestNames, or one of fs), or whose
// name holds "&" or "=", is refused: the signature would not say where it ends.
func (c *Client) signFields(fs []Field) (*request, error) {
	names := slices.Clone(requestNames)
	text := make([]Field, 0, len(fs)+2)
	for _, f := range fs {
		names = append(names, f.Key)
		if f.Value != "" {
			text = append(text, f)
		}
	}
	if field, name, found := regroup.Find(names, func(yield func(k, v string) bool) {
		for _, f := range text {
			if !yield(f.Key, f.Value) {
				return
			}
		}
	}); found {
		if name == "" {
			return nil, errors.New("alipaylegacy: a parameter's name holds \"&\" or \"=\"")
		}
		return nil, errors.New("alipaylegacy: " + field + " holds \"&" + name + "=\", which the sorted rule's signature cannot tell from another parameter (docs/alipay-legacy.md §5.1)")
	}
	slices.SortFunc(text, func(a, b Field) int { return strings.Compare(a.Key, b.Key) })
	enc, _ := alipaywire.Encoder(c.charset)
	wire := make([]Field, len(text), len(text)+2)
	for i, f := range text {
		v, ok := alipaywire.FromUTF8(enc, f.Value)
		if !ok {
			return nil, errors.New("alipaylegacy: " + f.Key + " is not valid UTF-8 or holds a character " + c.charset + " cannot represent")
		}
		wire[i] = Field{f.Key, v}
	}
	sign, err := c.sign(CanonicalSorted(wire))
	if err != nil {
		return nil, err
	}
	return &request{wire: append(wire, Field{"sign", sign}), text: append(text, Field{"sign", sign}), cs: c.charset}, nil
}

// encode form-encodes fields in their order (space as '+').
func encode(fs []Field) string {
	var b strings.Builder
	for i, f := range fs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(f.Key))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(f.Value))
	}
	return b.String()
}

func (r *request) url() string { return r.action + "?" + encode(r.wire) }

// form renders the auto-submitting GET form of the demos' buildRequestForm, escaped.
// form writes r as an auto-submitting HTML form. A value holding CR or LF is refused: a browser
// submits a form's line breaks as CR LF (the HTML standard's form data set), which the sign,
// made over the value as it is, does not cover (a reviewer helper's finding); the URL form
// carries such a value as signed.
func (r *request) form() (string, error) {
	for _, f := range r.text {
		if strings.ContainsAny(f.Value, "\r\n") {
			return "", errors.New("alipaylegacy: " + f.Key + " holds a line break, which a browser submits as CR LF, not as signed: use the URL form")
		}
	}
	var b strings.Builder
	action := r.action
	if r.query != "" {
		action += "?" + r.query
	}
	b.WriteString(`<form id="alipaysubmit" name="alipaysubmit" method="get" action="`)
	b.WriteString(html.EscapeString(action))
	b.WriteString(`" accept-charset="`)
	b.WriteString(html.EscapeString(r.cs))
	b.WriteString("\">\n")
	for _, f := range r.text {
		b.WriteString(`<input type="hidden" name="`)
		b.WriteString(html.EscapeString(f.Key))
		b.WriteString(`" value="`)
		b.WriteString(html.EscapeString(f.Value))
		b.WriteString("\">\n")
	}
	b.WriteString("<input type=\"submit\" value=\"Pay\" style=\"display:none\">\n</form>\n<script>document.forms['alipaysubmit'].submit();</script>\n")
	return b.String(), nil
}
