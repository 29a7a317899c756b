package wechatpay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/paynotify/paynotify/internal/rawresp"
	wire "github.com/paynotify/paynotify/internal/wechatpaywire"
)

// maxResponse caps an API answer; WeChat Pay's are a few KiB.
const maxResponse = 4 << 20

// ErrNoMerchantKey is returned by calls that need the merchant private key when none is configured.
var ErrNoMerchantKey = errors.New("wechatpay: no merchant private key configured")

// do sends a signed request and decodes a verified 2xx answer into out (when out is non-nil).
// path may carry a query; it is appended to the base URL's path as is (callers escape segments).
// A non-2xx answer is an *Error; a 2xx answer whose signature does not verify is a *VerifyError.
func (c *Client) do(ctx context.Context, method, path string, in, out any) (int, error) {
	status, h, rb, err := c.send(ctx, method, path, in)
	if err != nil {
		return status, err
	}
	// A 2xx answer without a valid signature must be treated as forged.
	verr := c.verifyWith(c.keys.Load(), h, rb)
	if verr != nil && c.refreshOnMiss(ctx, verr, h) {
		// Signed with a platform certificate not downloaded yet (WeChat Pay signs with the next
		// one from five days before the old one ends): the same bytes again, with the new
		// certificates (every query failed until the periodic refresh ran: a reviewer helper's
		// finding).
		verr = c.verifyWith(c.keys.Load(), h, rb)
	}
	if verr != nil {
		return status, verr
	}
	return status, decodeAnswer(method, path, status, rb, out)
}

// refreshOnMiss downloads the platform certificates when err is an unknown certificate serial
// (not a PUB_KEY_ID_…) and a merchant key is configured, at most once per MissRefreshInterval,
// and reports whether it did.
func (c *Client) refreshOnMiss(ctx context.Context, err error, h http.Header) bool {
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Reason != ReasonUnknownSerial || c.signer == nil ||
		strings.HasPrefix(h.Get(wire.HeaderSerial), wire.PublicKeyIDPrefix) || !c.missRefreshDue() {
		return false
	}
	// The download's answer is not recorded as the call's (WithRawResponse): the caller keeps the
	// answer it verifies as evidence (a reviewer helper's finding: it kept the certificates).
	return c.RefreshCertificates(rawresp.With(ctx, nil)) == nil
}

// decodeAnswer decodes a verified 2xx answer into out. When out is nil no result is expected
// (a close, answered 204); otherwise an answer without a body (204, or 200 with none) is
// malformed, not a result whose fields are all empty.
func decodeAnswer(method, path string, status int, rb []byte, out any) error {
	if out != nil {
		if status == http.StatusNoContent || len(bytes.TrimSpace(rb)) == 0 {
			return &VerifyError{Reason: ReasonMalformed, Check: CheckDecode, Detail: fmt.Sprintf("%s %s: answer %d has no body", method, path, status), err: ErrMalformed}
		}
		if err := json.Unmarshal(rb, out); err != nil {
			return &VerifyError{Reason: ReasonMalformed, Check: CheckDecode, Detail: fmt.Sprintf("%s %s: answer: %s", method, path, jsonErr(err)), err: ErrMalformed}
		}
	}
	return nil
}

// send signs and sends a request and returns a 2xx answer unverified; a non-2xx answer is an *Error.
func (c *Client) send(ctx context.Context, method, path string, in any) (int, http.Header, []byte, error) {
	if c.signer == nil {
		return 0, nil, nil, ErrNoMerchantKey
	}
	var body []byte
	if in != nil {
		var err error
		if body, err = wire.EncodeCompact(in); err != nil {
			return 0, nil, nil, fmt.Errorf("wechatpay: encode request: %w", err)
		}
	}
	u, err := url.Parse(c.base.String() + path)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("wechatpay: request URL: %w", err)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("wechatpay: %s %s: %w", method, path, err)
	}
	nonce, err := newNonce(c.rand)
	if err != nil {
		return 0, nil, nil, err
	}
	ts := strconv.FormatInt(c.now().Unix(), 10)
	auth, err := signRequest(c.signer, c.cfg.MchID, c.cfg.MerchantSerialNo, method, req.URL.RequestURI(), ts, nonce, body)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", auth.String())
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	ua := c.cfg.UserAgent
	if ua == "" {
		ua = "paynotify-wechatpay"
	}
	req.Header.Set("User-Agent", ua)
	if s := c.preferredSerial(); s != "" {
		req.Header.Set(wire.HeaderSerial, s)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("wechatpay: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return resp.StatusCode, nil, nil, fmt.Errorf("wechatpay: %s %s: read answer: %w", method, path, err)
	}
	if len(rb) > maxResponse {
		return resp.StatusCode, nil, nil, fmt.Errorf("wechatpay: %s %s: answer larger than %d bytes", method, path, maxResponse)
	}
	rawresp.Record(ctx, resp.StatusCode, resp.Header, rb)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &Error{StatusCode: resp.StatusCode}
		var answer struct {
			Code    string          `json:"code"`
			Message string          `json:"message"`
			Detail  json.RawMessage `json:"detail"`
		}
		if json.Unmarshal(rb, &answer) == nil {
			e.Code, e.Message, e.Detail = answer.Code, answer.Message, answer.Detail
		}
		// WeChat Pay signs error answers once it has accepted the request's signature (not 401s):
		// only a signed refusal is WeChat Pay's word.
		if resp.Header.Get(wire.HeaderSignature) != "" {
			e.Signed = c.VerifyResponse(resp.Header, rb) == nil
		}
		return resp.StatusCode, nil, nil, e
	}
	return resp.StatusCode, resp.Header, rb, nil
}

// PrepayRequest is the order of a prepay call. Amounts are integer fen.
type PrepayRequest struct {
	// AppID defaults to Config.AppID. The pay parameters (JSAPIPayParams, AppPayParams) sign
	// Config.AppID: for another appid bound to the merchant, prepay and sign with the Client
	// of WithAppID instead, so that both name the same one.
	AppID string
	// Description is shown on the payer's bill (≤127 characters, no 4-byte UTF-8).
	Description string
	// OutTradeNo is the merchant order number: 6–32 of [0-9A-Za-z_-|*].
	OutTradeNo string
	// TimeExpire is the last moment the payer can pay; zero leaves WeChat Pay's default (7 days).
	// It is sent in RFC 3339 in Beijing time (+08:00), whole seconds.
	TimeExpire time.Time
	// Attach is echoed back in the query and the notification (≤128 characters).
	Attach string
	// NotifyURL receives the notification: https, no query string.
	NotifyURL string
	// GoodsTag is the optional coupon tag.
	GoodsTag string
	// Amount is the order amount.
	Amount struct {
		Total    int64  // fen, ≥ 1
		Currency string // defaults to CNY
	}
	// Payer is required for JSAPI.
	Payer struct{ OpenID string }
	// SceneInfo is required for H5 (with H5Info), optional otherwise.
	SceneInfo *SceneInfo
}

// SceneInfo is the payment scene; H5 payments need PayerClientIP and H5Info.
type SceneInfo struct {
	PayerClientIP string  `json:"payer_client_ip"`
	DeviceID      string  `json:"device_id,omitempty"`
	H5Info        *H5Info `json:"h5_info,omitempty"`
}

// H5Info describes the H5 scene: Type is "iOS", "Android" or "Wap".
type H5Info struct {
	Type        string `json:"type"`
	AppName     string `json:"app_name,omitempty"`
	AppURL      string `json:"app_url,omitempty"`
	BundleID    string `json:"bundle_id,omitempty"`
	PackageName string `json:"package_name,omitempty"`
}

type wirePrepay struct {
	AppID       string     `json:"appid"`
	MchID       string     `json:"mchid"`
	Description string     `json:"description"`
	OutTradeNo  string     `json:"out_trade_no"`
	TimeExpire  string     `json:"time_expire,omitempty"`
	Attach      string     `json:"attach,omitempty"`
	NotifyURL   string     `json:"notify_url"`
	GoodsTag    string     `json:"goods_tag,omitempty"`
	Amount      wireAmount `json:"amount"`
	Payer       *wirePayer `json:"payer,omitempty"`
	SceneInfo   *SceneInfo `json:"scene_info,omitempty"`
}

type wireAmount struct {
	Total    int64  `json:"total"`
	Currency string `json:"currency"`
}

type wirePayer struct {
	OpenID string `json:"openid"`
}

// FormatTime writes t as WeChat Pay expects it: RFC 3339, whole seconds, Beijing time (+08:00).
func FormatTime(t time.Time) string { return t.In(beijing).Truncate(time.Second).Format(time.RFC3339) }

func (c *Client) prepayBody(req PrepayRequest) (*wirePrepay, error) {
	if c.signer == nil {
		return nil, ErrNoMerchantKey
	}
	w := &wirePrepay{AppID: req.AppID, MchID: c.cfg.MchID, Description: req.Description, OutTradeNo: req.OutTradeNo,
		Attach: req.Attach, NotifyURL: req.NotifyURL, GoodsTag: req.GoodsTag, SceneInfo: req.SceneInfo,
		Amount: wireAmount{Total: req.Amount.Total, Currency: req.Amount.Currency}}
	if w.AppID == "" {
		w.AppID = c.cfg.AppID
	}
	if w.Amount.Currency == "" {
		w.Amount.Currency = "CNY"
	}
	if !req.TimeExpire.IsZero() {
		w.TimeExpire = FormatTime(req.TimeExpire)
	}
	if req.Payer.OpenID != "" {
		w.Payer = &wirePayer{OpenID: req.Payer.OpenID}
	}
	switch {
	case w.AppID == "":
		return nil, errors.New("wechatpay: prepay: no appid")
	case req.OutTradeNo == "":
		return nil, errors.New("wechatpay: prepay: no out_trade_no")
	case req.Amount.Total < 1:
		return nil, errors.New("wechatpay: prepay: amount must be at least 1 fen")
	case req.NotifyURL == "":
		return nil, errors.New("wechatpay: prepay: no notify_url")
	}
	return w, nil
}

// PrepayNative creates a Native (QR code) order: POST /v3/pay/transactions/native. It returns the
// code_url to render as a QR code (usable about 2 hours).
func (c *Client) PrepayNative(ctx context.Context, req PrepayRequest) (codeURL string, err error) {
	w, err := c.prepayBody(req)
	if err != nil {
		return "", err
	}
	var out struct {
		CodeURL string `json:"code_url"`
	}
	if _, err := c.do(ctx, http.MethodPost, "/v3/pay/transactions/native", w, &out); err != nil {
		return "", err
	}
	if out.CodeURL == "" {
		return "", verifyErr(ErrMalformed, CheckDecode, "answer has no code_url")
	}
	return out.CodeURL, nil
}

// PrepayApp creates an APP order: POST /v3/pay/transactions/app. Hand AppPayParams(prepayID) to
// the app.
func (c *Client) PrepayApp(ctx context.Context, req PrepayRequest) (prepayID string, err error) {
	return c.prepayID(ctx, "/v3/pay/transactions/app", req)
}

// PrepayJSAPI creates a JSAPI / mini-program order: POST /v3/pay/transactions/jsapi (Payer.OpenID
// required). Hand JSAPIPayParams(prepayID) to the page.
func (c *Client) PrepayJSAPI(ctx context.Context, req PrepayRequest) (prepayID string, err error) {
	if req.Payer.OpenID == "" {
		return "", errors.New("wechatpay: prepay: JSAPI needs payer openid")
	}
	return c.prepayID(ctx, "/v3/pay/transactions/jsapi", req)
}

func (c *Client) prepayID(ctx context.Context, path string, req PrepayRequest) (string, error) {
	w, err := c.prepayBody(req)
	if err != nil {
		return "", err
	}
	var out struct {
		PrepayID string `json:"prepay_id"`
	}
	if _, err := c.do(ctx, http.MethodPost, path, w, &out); err != nil {
		return "", err
	}
	if out.PrepayID == "" {
		return "", verifyErr(ErrMalformed, CheckDecode, "answer has no prepay_id")
	}
	return out.PrepayID, nil
}

// PrepayH5 creates an H5 (mobile browser) order: POST /v3/pay/transactions/h5 (SceneInfo with
// PayerClientIP and H5Info required). It returns the h5_url to send the payer to.
func (c *Client) PrepayH5(ctx context.Context, req PrepayRequest) (h5URL string, err error) {
	if req.SceneInfo == nil || req.SceneInfo.H5Info == nil || req.SceneInfo.PayerClientIP == "" {
		return "", errors.New("wechatpay: prepay: H5 needs scene_info with payer_client_ip and h5_info")
	}
	w, err := c.prepayBody(req)
	if err != nil {
		return "", err
	}
	var out struct {
		H5URL string `json:"h5_url"`
	}
	if _, err := c.do(ctx, http.MethodPost, "/v3/pay/transactions/h5", w, &out); err != nil {
		return "", err
	}
	if out.H5URL == "" {
		return "", verifyErr(ErrMalformed, CheckDecode, "answer has no h5_url")
	}
	return out.H5URL, nil
}

// AppPayParams are the signed parameters of the WeChat OpenSDK PayReq for an APP payment.
type AppPayParams struct {
	AppID     string `json:"appid"`
	PartnerID string `json:"partnerid"` // the mchid
	PrepayID  string `json:"prepayid"`  // bare, without "prepay_id="
	Package   string `json:"package"`   // always "Sign=WXPay"
	NonceStr  string `json:"noncestr"`
	Timestamp string `json:"timestamp"` // Unix seconds
	Sign      string `json:"sign"`      // over appid, timestamp, noncestr, prepayid
}

// JSAPIPayParams are the signed parameters of WeixinJSBridge getBrandWCPayRequest and
// wx.requestPayment.
type JSAPIPayParams struct {
	AppID     string `json:"appId"`
	TimeStamp string `json:"timeStamp"` // Unix seconds, a string (mini programs reject a number)
	NonceStr  string `json:"nonceStr"`
	Package   string `json:"package"`  // "prepay_id=…"
	SignType  string `json:"signType"` // always "RSA"
	PaySign   string `json:"paySign"`  // over appId, timeStamp, nonceStr, package
}

// WithAppID returns a Client that shares c's configuration, keys and platform certificates but
// names appID (another AppID bound to the same mchid: a mini program beside an official account,
// a second app): in its prepay requests and in the pay parameters it signs, which must name the
// appid the prepay_id was made for.
func (c *Client) WithAppID(appID string) *Client {
	d := *c
	d.cfg.AppID = appID
	return &d
}

// AppPayParams signs the APP payment parameters for prepayID with the merchant key, for
// Config.AppID (see WithAppID).
func (c *Client) AppPayParams(prepayID string) (AppPayParams, error) {
	if c.signer == nil {
		return AppPayParams{}, ErrNoMerchantKey
	}
	nonce, err := newNonce(c.rand)
	if err != nil {
		return AppPayParams{}, err
	}
	p := AppPayParams{AppID: c.cfg.AppID, PartnerID: c.cfg.MchID, PrepayID: prepayID, Package: "Sign=WXPay", NonceStr: nonce,
		Timestamp: strconv.FormatInt(c.now().Unix(), 10)}
	p.Sign, err = signWith(c.signer, wire.Lines(p.AppID, p.Timestamp, p.NonceStr, p.PrepayID))
	return p, err
}

// JSAPIPayParams signs the JSAPI / mini-program payment parameters for prepayID with the merchant
// key, for Config.AppID (see WithAppID).
func (c *Client) JSAPIPayParams(prepayID string) (JSAPIPayParams, error) {
	if c.signer == nil {
		return JSAPIPayParams{}, ErrNoMerchantKey
	}
	nonce, err := newNonce(c.rand)
	if err != nil {
		return JSAPIPayParams{}, err
	}
	p := JSAPIPayParams{AppID: c.cfg.AppID, TimeStamp: strconv.FormatInt(c.now().Unix(), 10), NonceStr: nonce,
		Package: "prepay_id=" + prepayID, SignType: "RSA"}
	p.PaySign, err = signWith(c.signer, wire.Lines(p.AppID, p.TimeStamp, p.NonceStr, p.Package))
	return p, err
}

// QueryByOutTradeNo queries an order: GET /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=…
// An unknown order is an *Error with Code "ORDER_NOT_EXIST" (404).
func (c *Client) QueryByOutTradeNo(ctx context.Context, outTradeNo string) (*Transaction, error) {
	return c.queryTx(ctx, "/v3/pay/transactions/out-trade-no/"+url.PathEscape(outTradeNo)+"?mchid="+url.QueryEscape(c.cfg.MchID))
}

// QueryByTransactionID queries an order by WeChat Pay's transaction_id.
func (c *Client) QueryByTransactionID(ctx context.Context, transactionID string) (*Transaction, error) {
	return c.queryTx(ctx, "/v3/pay/transactions/id/"+url.PathEscape(transactionID)+"?mchid="+url.QueryEscape(c.cfg.MchID))
}

func (c *Client) queryTx(ctx context.Context, path string) (*Transaction, error) {
	var w wireTransaction
	if _, err := c.do(ctx, http.MethodGet, path, nil, &w); err != nil {
		return nil, err
	}
	t, err := w.typed()
	if err != nil {
		return nil, verifyErr(ErrMalformed, CheckDecode, "%v", err)
	}
	return t, nil
}

// Close closes an unpaid order: POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close,
// answered 204. A paid order is an *Error (403, e.g. ORDERPAID); query it.
func (c *Client) Close(ctx context.Context, outTradeNo string) error {
	body := struct {
		MchID string `json:"mchid"`
	}{c.cfg.MchID}
	_, err := c.do(ctx, http.MethodPost, "/v3/pay/transactions/out-trade-no/"+url.PathEscape(outTradeNo)+"/close", body, nil)
	return err
}

// RefundRequest is a refund: POST /v3/refund/domestic/refunds. Amounts are integer fen. Retry a
// failed call with the same OutRefundNo, never a new one.
type RefundRequest struct {
	// OutTradeNo or TransactionID names the payment (one of them).
	OutTradeNo    string
	TransactionID string
	// OutRefundNo is the merchant refund number: 1–64 of [0-9A-Za-z_-|*@].
	OutRefundNo string
	// Reason is shown to the payer (≤80 characters).
	Reason string
	// NotifyURL receives the refund notifications; empty uses the merchant platform setting.
	NotifyURL string
	Amount    struct {
		Refund   int64  // this refund
		Total    int64  // the original order total
		Currency string // defaults to CNY
	}
}

// CreateRefund requests a refund. The answer usually says PROCESSING; the final state comes from
// the refund notification or QueryRefund.
func (c *Client) CreateRefund(ctx context.Context, req RefundRequest) (*Refund, error) {
	if req.OutRefundNo == "" || (req.OutTradeNo == "") == (req.TransactionID == "") {
		return nil, errors.New("wechatpay: refund: need out_refund_no and one of out_trade_no, transaction_id")
	}
	if req.Amount.Refund < 1 || req.Amount.Total < req.Amount.Refund {
		return nil, errors.New("wechatpay: refund: need 1 ≤ refund ≤ total")
	}
	cur := req.Amount.Currency
	if cur == "" {
		cur = "CNY"
	}
	body := struct {
		TransactionID string `json:"transaction_id,omitempty"`
		OutTradeNo    string `json:"out_trade_no,omitempty"`
		OutRefundNo   string `json:"out_refund_no"`
		Reason        string `json:"reason,omitempty"`
		NotifyURL     string `json:"notify_url,omitempty"`
		Amount        struct {
			Refund   int64  `json:"refund"`
			Total    int64  `json:"total"`
			Currency string `json:"currency"`
		} `json:"amount"`
	}{TransactionID: req.TransactionID, OutTradeNo: req.OutTradeNo, OutRefundNo: req.OutRefundNo, Reason: req.Reason, NotifyURL: req.NotifyURL}
	body.Amount.Refund, body.Amount.Total, body.Amount.Currency = req.Amount.Refund, req.Amount.Total, cur
	return c.refund(ctx, http.MethodPost, "/v3/refund/domestic/refunds", body)
}

// QueryRefund queries a refund: GET /v3/refund/domestic/refunds/{out_refund_no}.
func (c *Client) QueryRefund(ctx context.Context, outRefundNo string) (*Refund, error) {
	return c.refund(ctx, http.MethodGet, "/v3/refund/domestic/refunds/"+url.PathEscape(outRefundNo), nil)
}

func (c *Client) refund(ctx context.Context, method, path string, in any) (*Refund, error) {
	var w wireRefund
	if _, err := c.do(ctx, method, path, in, &w); err != nil {
		return nil, err
	}
	r, err := w.typed()
	if err != nil {
		return nil, verifyErr(ErrMalformed, CheckDecode, "%v", err)
	}
	return r, nil
}
