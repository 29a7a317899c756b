package alipay

import (
	"bytes"
	"encoding/json"
	"errors"
	"html"
	"slices"
	"strings"
	"time"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// Product codes of the pay methods: the product_code each sends in biz_content.
const (
	ProductAppPay       = "QUICK_MSECURITY_PAY"
	ProductPagePay      = "FAST_INSTANT_TRADE_PAY"
	ProductWapPay       = "QUICK_WAP_WAY"
	ProductFaceToFace   = "FACE_TO_FACE_PAYMENT"
	maxRequestAmountFen = 100_000_000_00
)

// TradeAppPay is an alipay.trade.app.pay order, turned into an orderString by [Client.AppPay].
type TradeAppPay struct {
	OutTradeNo     string    // out_trade_no, required: [A-Za-z0-9_]{1,64} recommended
	TotalAmount    int64     // total_amount in fen, required, 1 … 100000000_00
	Subject        string    // subject, required
	ProductCode    string    // product_code. Defaults to ProductAppPay.
	TimeoutExpress string    // timeout_express, relative ("30m", "2h", "1d")
	TimeExpire     time.Time // time_expire, absolute deadline (sent in Beijing time); wins over TimeoutExpress
	Body           string    // body, order description
	PassbackParams string    // passback_params, returned in notifications; URL-encode it yourself
	GoodsType      string    // goods_type: "0" virtual, "1" physical
	NotifyURL      string    // notify_url. Defaults to Config.NotifyURL.
}

// TradePagePay is an alipay.trade.page.pay order (desktop cashier), see [Client.PagePay].
type TradePagePay struct {
	OutTradeNo     string    // out_trade_no, required
	TotalAmount    int64     // total_amount in fen, required
	Subject        string    // subject, required
	ProductCode    string    // product_code. Defaults to ProductPagePay.
	TimeoutExpress string    // timeout_express, relative
	TimeExpire     time.Time // time_expire, absolute deadline (Beijing time on the wire)
	Body           string    // body
	PassbackParams string    // passback_params
	QRPayMode      string    // qr_pay_mode, "0" … "4"
	QRCodeWidth    string    // qrcode_width, with QRPayMode "4"
	NotifyURL      string    // notify_url. Defaults to Config.NotifyURL.
	ReturnURL      string    // return_url. Defaults to Config.ReturnURL.
}

// TradeWapPay is an alipay.trade.wap.pay order (mobile browser), see [Client.WapPay].
type TradeWapPay struct {
	OutTradeNo     string    // out_trade_no, required
	TotalAmount    int64     // total_amount in fen, required
	Subject        string    // subject, required
	ProductCode    string    // product_code. Defaults to ProductWapPay ("QUICK_WAP_WAY").
	TimeoutExpress string    // timeout_express, relative
	TimeExpire     time.Time // time_expire, absolute deadline (Beijing time on the wire)
	Body           string    // body
	PassbackParams string    // passback_params
	QuitURL        string    // quit_url: where the buyer goes on cancel
	NotifyURL      string    // notify_url. Defaults to Config.NotifyURL.
	ReturnURL      string    // return_url. Defaults to Config.ReturnURL.
}

// bizPay is the biz_content of the pay methods; field order is the JSON order.
type bizPay struct {
	OutTradeNo     string `json:"out_trade_no"`
	TotalAmount    string `json:"total_amount"`
	Subject        string `json:"subject"`
	ProductCode    string `json:"product_code,omitempty"`
	TimeoutExpress string `json:"timeout_express,omitempty"`
	TimeExpire     string `json:"time_expire,omitempty"`
	Body           string `json:"body,omitempty"`
	PassbackParams string `json:"passback_params,omitempty"`
	GoodsType      string `json:"goods_type,omitempty"`
	QRPayMode      string `json:"qr_pay_mode,omitempty"`
	QRCodeWidth    string `json:"qrcode_width,omitempty"`
	QuitURL        string `json:"quit_url,omitempty"`
	StoreID        string `json:"store_id,omitempty"`
	OperatorID     string `json:"operator_id,omitempty"`
	TerminalID     string `json:"terminal_id,omitempty"`
}

// PayRequest is a signed page or wap pay request, in both delivery forms.
type PayRequest struct {
	// URL is the gateway URL with every parameter, sign included: redirect the browser to it (GET).
	URL string
	// Form is an HTML fragment that POSTs the same request and submits itself on load.
	Form string
	// Params are the signed parameters, sign included.
	Params map[string]string
}

var errNoPrivateKey = errors.New("alipay: no app private key configured (verify-only client)")

func checkOrder(outTradeNo string, fen int64, subject string) error {
	switch {
	case outTradeNo == "" || len(outTradeNo) > 64:
		return invalidRequest("alipay: out_trade_no must be 1 to 64 characters")
	case fen < 1 || fen > maxRequestAmountFen:
		return invalidRequest("alipay: total_amount must be 0.01 to 100000000.00 yuan")
	case strings.TrimSpace(subject) == "":
		return invalidRequest("alipay: subject is required")
	}
	return nil
}

// formatExpire formats time_expire, "" for the zero time.
func formatExpire(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return FormatTime(t)
}

// marshalBiz serializes biz_content without HTML escaping ('<' stays '<'): the signed string and the
// sent string are the same bytes either way, this is only for readability.
func marshalBiz(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", errors.New("alipay: biz_content: " + err.Error())
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// commonParams returns the public parameters of a request to method (docs/alipay.md, "Canonical
// strings").
func (c *Client) commonParams(method string) map[string]string {
	p := map[string]string{
		"app_id":    c.appID,
		"method":    method,
		"format":    "JSON",
		"charset":   "utf-8",
		"sign_type": string(c.signType),
		"timestamp": FormatTime(c.now()),
		"version":   "1.0",
	}
	if c.appCertSN != "" {
		p["app_cert_sn"] = c.appCertSN
		p["alipay_root_cert_sn"] = c.rootCertSN
	}
	return p
}

// SignParams adds sign to params (a complete request, sign_type included) with the app private key.
// Empty values are left out of the signature; callers should not send them.
func (c *Client) SignParams(params map[string]string) error {
	if c.priv == nil {
		return errNoPrivateKey
	}
	delete(params, "sign")
	sig, err := signWith(c.priv, c.signType, []byte(alipaywire.CanonicalRequest(params)))
	if err != nil {
		return err
	}
	params["sign"] = sig
	return nil
}

// encodeParams form-encodes params in key order, leaving out empty values: the orderString and URL
// query format of Alipay's SDKs (space becomes '+').
func encodeParams(params map[string]string) string {
	keys := make([]string, 0, len(params))
	n := 0
	for k, v := range params {
		if v == "" {
			continue
		}
		keys = append(keys, k)
		n += len(k) + 3*len(v) + 2
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(n)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(queryEscape(k))
		b.WriteByte('=')
		b.WriteString(queryEscape(params[k]))
	}
	return b.String()
}

// signedPay builds, signs and returns the parameters of a pay request.
func (c *Client) signedPay(method string, biz bizPay, notifyURL, returnURL string) (map[string]string, error) {
	if c.priv == nil {
		return nil, errNoPrivateKey
	}
	if c.appID == "" {
		return nil, errors.New("alipay: AppID is not configured")
	}
	bc, err := marshalBiz(biz)
	if err != nil {
		return nil, err
	}
	p := c.commonParams(method)
	p["biz_content"] = bc
	if notifyURL == "" {
		notifyURL = c.notifyURL
	}
	if notifyURL != "" {
		p["notify_url"] = notifyURL
	}
	if returnURL != "" {
		p["return_url"] = returnURL
	}
	if err := c.SignParams(p); err != nil {
		return nil, err
	}
	return p, nil
}

// AppPay returns the orderString of an alipay.trade.app.pay order: every parameter, sign included,
// sorted and form-encoded, to hand untouched to the Alipay app SDK. The app's result (resultStatus
// 9000) proves nothing: wait for the notification or query.
func (c *Client) AppPay(p TradeAppPay) (string, error) {
	if err := checkOrder(p.OutTradeNo, p.TotalAmount, p.Subject); err != nil {
		return "", err
	}
	if p.ProductCode == "" {
		p.ProductCode = ProductAppPay
	}
	params, err := c.signedPay("alipay.trade.app.pay", bizPay{
		OutTradeNo: p.OutTradeNo, TotalAmount: FormatAmount(p.TotalAmount), Subject: p.Subject,
		ProductCode: p.ProductCode, TimeoutExpress: p.TimeoutExpress, TimeExpire: formatExpire(p.TimeExpire),
		Body: p.Body, PassbackParams: p.PassbackParams, GoodsType: p.GoodsType,
	}, p.NotifyURL, "")
	if err != nil {
		return "", err
	}
	return encodeParams(params), nil
}

// PagePay signs an alipay.trade.page.pay request and returns it as a GET URL and an auto-submit form.
func (c *Client) PagePay(p TradePagePay) (*PayRequest, error) {
	if err := checkOrder(p.OutTradeNo, p.TotalAmount, p.Subject); err != nil {
		return nil, err
	}
	if p.ProductCode == "" {
		p.ProductCode = ProductPagePay
	}
	if p.ReturnURL == "" {
		p.ReturnURL = c.returnURL
	}
	params, err := c.signedPay("alipay.trade.page.pay", bizPay{
		OutTradeNo: p.OutTradeNo, TotalAmount: FormatAmount(p.TotalAmount), Subject: p.Subject,
		ProductCode: p.ProductCode, TimeoutExpress: p.TimeoutExpress, TimeExpire: formatExpire(p.TimeExpire),
		Body: p.Body, PassbackParams: p.PassbackParams, QRPayMode: p.QRPayMode, QRCodeWidth: p.QRCodeWidth,
	}, p.NotifyURL, p.ReturnURL)
	if err != nil {
		return nil, err
	}
	return c.payRequest(params), nil
}

// WapPay signs an alipay.trade.wap.pay request and returns it as a GET URL and an auto-submit form.
func (c *Client) WapPay(p TradeWapPay) (*PayRequest, error) {
	if err := checkOrder(p.OutTradeNo, p.TotalAmount, p.Subject); err != nil {
		return nil, err
	}
	if p.ProductCode == "" {
		p.ProductCode = ProductWapPay
	}
	if p.ReturnURL == "" {
		p.ReturnURL = c.returnURL
	}
	params, err := c.signedPay("alipay.trade.wap.pay", bizPay{
		OutTradeNo: p.OutTradeNo, TotalAmount: FormatAmount(p.TotalAmount), Subject: p.Subject,
		ProductCode: p.ProductCode, TimeoutExpress: p.TimeoutExpress, TimeExpire: formatExpire(p.TimeExpire),
		Body: p.Body, PassbackParams: p.PassbackParams, QuitURL: p.QuitURL,
	}, p.NotifyURL, p.ReturnURL)
	if err != nil {
		return nil, err
	}
	return c.payRequest(params), nil
}

// payRequest renders signed params as a GET URL and a POST form (Java SDK shape: the public
// parameters in the action URL, biz_content as a hidden field).
func (c *Client) payRequest(params map[string]string) *PayRequest {
	sys := make(map[string]string, len(params))
	for k, v := range params {
		if k != "biz_content" {
			sys[k] = v
		}
	}
	action := c.gateway + "?" + encodeParams(sys)
	var b strings.Builder
	b.WriteString(`<form name="punchout_form" method="post" action="`)
	b.WriteString(html.EscapeString(action))
	b.WriteString("\">\n")
	if bc := params["biz_content"]; bc != "" {
		b.WriteString(`<input type="hidden" name="biz_content" value="`)
		b.WriteString(html.EscapeString(bc))
		b.WriteString("\">\n")
	}
	b.WriteString("<input type=\"submit\" value=\"Pay\" style=\"display:none\">\n</form>\n<script>document.forms[0].submit();</script>\n")
	return &PayRequest{URL: c.gateway + "?" + encodeParams(params), Form: b.String(), Params: params}
}
