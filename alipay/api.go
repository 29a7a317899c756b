package alipay

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/paynotify/paynotify/internal/rawresp"
)

// maxResponse bounds a gateway response body.
const maxResponse = 4 << 20

// VerifyResponse verifies a gateway response body for method over the raw bytes of its node
// (docs/alipay.md, "Canonical strings") and returns the node. A success must be signed. An error
// node without a sign is returned unverified with signed false: it must never cause a state change.
// In certificate mode the key is the one whose SN the response names in alipay_cert_sn. When the
// node contains "\/" and the signature fails over the exact bytes, it is tried once more with "\/"
// replaced by "/", as the official SDKs do.
func (c *Client) VerifyResponse(body []byte, method string) (node []byte, signed bool, err error) {
	r, err := extractResponse(body, method)
	if err != nil {
		return nil, false, err
	}
	if r.Sign == "" {
		var head struct {
			Code string `json:"code"`
		}
		if json.Unmarshal(r.Node, &head) == nil && head.Code != "" && head.Code != "10000" {
			return r.Node, false, nil
		}
		return nil, false, sigInvalid("response " + r.Name + " is not signed")
	}
	key := c.alipayKey
	if c.alipayKeys != nil && r.CertSN != "" {
		if key = c.certKey(r.CertSN); key == nil {
			return nil, false, &VerifyError{Reason: ReasonUnknownSerial, Detail: "response alipay_cert_sn " + quoteShort(r.CertSN) + " is not the configured Alipay certificate (" + c.alipaySN + ")", err: ErrSignature}
		}
	}
	if err := verify(key, c.signType, r.Node, r.Sign); err == nil {
		return r.Node, true, nil
	}
	if r.CertSN == "" {
		// No alipay_cert_sn, and several certificates configured (a rotation): the others' keys.
		for _, others := range [2][]*rsa.PublicKey{c.otherKeys, c.downloadedList()} {
			for _, other := range others {
				if verify(other, c.signType, r.Node, r.Sign) == nil {
					return r.Node, true, nil
				}
			}
		}
	}
	if bytes.Contains(r.Node, []byte(`\/`)) {
		alt := bytes.ReplaceAll(r.Node, []byte(`\/`), []byte("/"))
		if verify(key, c.signType, alt, r.Sign) == nil {
			return r.Node, true, nil
		}
	}
	ve := sigInvalid(string(c.signType) + " signature of " + r.Name + " does not verify with the configured Alipay key")
	ve.Message = r.Node
	return nil, false, ve
}

// Call sends a signed request for method with biz (marshalled to biz_content, nil for none) and the
// extra public parameters sys (e.g. notify_url, app_auth_token), verifies the response and decodes
// its node into out (nil to skip). A node whose code is not 10000 is returned as *Error. Public
// parameters travel in the URL query, biz_content in the POST body.
func (c *Client) Call(ctx context.Context, method string, biz any, sys map[string]string, out any) error {
	body, err := c.send(ctx, method, biz, sys)
	if err != nil {
		return err
	}
	node, signed, err := c.VerifyResponse(body, method)
	if sn := unknownSN(err, body, method); sn != "" && c.dl != nil && c.dl.roots != nil {
		// Alipay renewed its certificate: the answer names one the configuration does not have.
		if derr := c.FetchAlipayCert(ctx, sn); derr != nil {
			return fmt.Errorf("%w; %w", err, derr)
		}
		node, signed, err = c.VerifyResponse(body, method)
	}
	if err != nil {
		return err
	}
	var head Error
	var h struct {
		Code       string `json:"code"`
		Msg        string `json:"msg"`
		SubCode    string `json:"sub_code"`
		SubMsg     string `json:"sub_msg"`
		OutTradeNo string `json:"out_trade_no"`
	}
	if err := json.Unmarshal(node, &h); err != nil {
		return malformed("response node: " + err.Error())
	}
	head = Error{Code: h.Code, Msg: h.Msg, SubCode: h.SubCode, SubMsg: h.SubMsg, Signed: signed, OutTradeNo: h.OutTradeNo}
	if head.Code != "10000" {
		return &head
	}
	if out != nil {
		if err := json.Unmarshal(node, out); err != nil {
			return malformed("response node: " + err.Error())
		}
	}
	return nil
}

// send sends a signed request for method (Call) and returns the answer's body, unverified.
func (c *Client) send(ctx context.Context, method string, biz any, sys map[string]string) ([]byte, error) {
	if c.priv == nil {
		return nil, errNoPrivateKey
	}
	p := c.commonParams(method)
	for k, v := range sys {
		if v != "" {
			p[k] = v
		}
	}
	var bc string
	if biz != nil {
		var err error
		if bc, err = marshalBiz(biz); err != nil {
			return nil, err
		}
		p["biz_content"] = bc
	}
	if err := c.SignParams(p); err != nil {
		return nil, err
	}
	delete(p, "biz_content")
	u := c.gateway + "?" + encodeParams(p)
	var form string
	if bc != "" {
		form = "biz_content=" + queryEscape(bc)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form))
	if err != nil {
		return nil, fmt.Errorf("alipay: %s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded;charset=utf-8")
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("alipay: %s: %w", method, redactURL(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("alipay: %s: read response: %w", method, err)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("alipay: %s: response larger than %d bytes", method, maxResponse)
	}
	rawresp.Record(ctx, resp.StatusCode, resp.Header, body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("alipay: %s: HTTP %d", method, resp.StatusCode)
	}
	return body, nil
}

// redactURL drops the request URL (it carries the signature and parameters) from transport errors.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

// amountField parses an optional amount of a response.
func amountField(name, s string, dst *int64) error {
	if s == "" {
		return nil
	}
	v, err := ParseAmount(s)
	if err != nil {
		return malformed(name + ": " + strings.TrimPrefix(err.Error(), "alipay: "))
	}
	*dst = v
	return nil
}

func timeField(name, s string, dst *time.Time) error {
	if s == "" {
		return nil
	}
	v, err := ParseTime(s)
	if err != nil {
		return malformed(name + ": " + strings.TrimPrefix(err.Error(), "alipay: "))
	}
	*dst = v
	return nil
}

// TradeQuery asks for alipay.trade.query.
type TradeQuery struct {
	OutTradeNo   string   // out_trade_no (or TradeNo)
	TradeNo      string   // trade_no; wins when both are set
	QueryOptions []string // query_options, e.g. "fund_bill_list"
}

// TradeQueryResponse is a verified alipay.trade.query success.
type TradeQueryResponse struct {
	TradeNo        string
	OutTradeNo     string
	TradeStatus    string // TradeWaitBuyerPay, TradeClosed, TradeSuccess or TradeFinished
	TotalAmount    int64  // fen
	BuyerPayAmount int64  // fen
	PointAmount    int64  // fen
	InvoiceAmount  int64  // fen
	ReceiptAmount  int64  // fen
	BuyerLogonID   string
	BuyerUserID    string
	BuyerOpenID    string
	SendPayDate    time.Time // Beijing time; zero when absent
	FundBills      []FundBill
	Subject        string
	Body           string
	PassbackParams string
	// Raw is the verified node, exactly as received.
	Raw json.RawMessage
}

type wireQuery struct {
	TradeNo        string `json:"trade_no"`
	OutTradeNo     string `json:"out_trade_no"`
	TradeStatus    string `json:"trade_status"`
	TotalAmount    string `json:"total_amount"`
	BuyerPayAmount string `json:"buyer_pay_amount"`
	PointAmount    string `json:"point_amount"`
	InvoiceAmount  string `json:"invoice_amount"`
	ReceiptAmount  string `json:"receipt_amount"`
	BuyerLogonID   string `json:"buyer_logon_id"`
	BuyerUserID    string `json:"buyer_user_id"`
	BuyerOpenID    string `json:"buyer_open_id"`
	SendPayDate    string `json:"send_pay_date"`
	Subject        string `json:"subject"`
	Body           string `json:"body"`
	PassbackParams string `json:"passback_params"`
	FundBillList   []struct {
		FundChannel string `json:"fund_channel"`
		Amount      string `json:"amount"`
		RealAmount  string `json:"real_amount"`
	} `json:"fund_bill_list"`
}

type tradeRef struct {
	OutTradeNo   string   `json:"out_trade_no,omitempty"`
	TradeNo      string   `json:"trade_no,omitempty"`
	QueryOptions []string `json:"query_options,omitempty"`
}

func checkRef(outTradeNo, tradeNo string) error {
	if outTradeNo == "" && tradeNo == "" {
		return invalidRequest("alipay: out_trade_no or trade_no is required")
	}
	return nil
}

// TradeQuery calls alipay.trade.query. A trade the buyer has not opened yet is the *Error with
// SubCode "ACQ.TRADE_NOT_EXIST".
func (c *Client) TradeQuery(ctx context.Context, q TradeQuery) (*TradeQueryResponse, error) {
	if err := checkRef(q.OutTradeNo, q.TradeNo); err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if err := c.Call(ctx, "alipay.trade.query", tradeRef{q.OutTradeNo, q.TradeNo, q.QueryOptions}, nil, &raw); err != nil {
		return nil, err
	}
	return decodeTradeQuery(raw)
}

func decodeTradeQuery(raw json.RawMessage) (*TradeQueryResponse, error) {
	var w wireQuery
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, malformed("alipay_trade_query_response: " + err.Error())
	}
	r := &TradeQueryResponse{TradeNo: w.TradeNo, OutTradeNo: w.OutTradeNo, TradeStatus: w.TradeStatus,
		BuyerLogonID: w.BuyerLogonID, BuyerUserID: w.BuyerUserID, BuyerOpenID: w.BuyerOpenID,
		Subject: w.Subject, Body: w.Body, PassbackParams: w.PassbackParams, Raw: raw}
	for _, a := range []struct {
		n, s string
		d    *int64
	}{{"total_amount", w.TotalAmount, &r.TotalAmount}, {"buyer_pay_amount", w.BuyerPayAmount, &r.BuyerPayAmount},
		{"point_amount", w.PointAmount, &r.PointAmount}, {"invoice_amount", w.InvoiceAmount, &r.InvoiceAmount},
		{"receipt_amount", w.ReceiptAmount, &r.ReceiptAmount}} {
		if err := amountField(a.n, a.s, a.d); err != nil {
			return nil, err
		}
	}
	if err := timeField("send_pay_date", w.SendPayDate, &r.SendPayDate); err != nil {
		return nil, err
	}
	for _, b := range w.FundBillList {
		fb := FundBill{FundChannel: b.FundChannel}
		if err := amountField("fund_bill_list.amount", b.Amount, &fb.Amount); err != nil {
			return nil, err
		}
		if err := amountField("fund_bill_list.real_amount", b.RealAmount, &fb.RealAmount); err != nil {
			return nil, err
		}
		r.FundBills = append(r.FundBills, fb)
	}
	return r, nil
}

// TradeClose asks for alipay.trade.close.
type TradeClose struct {
	OutTradeNo string // out_trade_no (or TradeNo)
	TradeNo    string // trade_no
	OperatorID string // operator_id
	NotifyURL  string // notify_url (public parameter)
}

// TradeCloseResponse is a verified alipay.trade.close success.
type TradeCloseResponse struct {
	TradeNo    string          `json:"trade_no"`
	OutTradeNo string          `json:"out_trade_no"`
	Raw        json.RawMessage `json:"-"`
}

// TradeClose calls alipay.trade.close. Only WAIT_BUYER_PAY trades close; a trade the buyer never
// opened gives the *Error with SubCode "ACQ.TRADE_NOT_EXIST".
func (c *Client) TradeClose(ctx context.Context, q TradeClose) (*TradeCloseResponse, error) {
	if err := checkRef(q.OutTradeNo, q.TradeNo); err != nil {
		return nil, err
	}
	biz := struct {
		OutTradeNo string `json:"out_trade_no,omitempty"`
		TradeNo    string `json:"trade_no,omitempty"`
		OperatorID string `json:"operator_id,omitempty"`
	}{q.OutTradeNo, q.TradeNo, q.OperatorID}
	var raw json.RawMessage
	if err := c.Call(ctx, "alipay.trade.close", biz, map[string]string{"notify_url": q.NotifyURL}, &raw); err != nil {
		return nil, err
	}
	r := &TradeCloseResponse{Raw: raw}
	if err := json.Unmarshal(raw, r); err != nil {
		return nil, malformed("alipay_trade_close_response: " + err.Error())
	}
	return r, nil
}

// TradeRefund asks for alipay.trade.refund.
type TradeRefund struct {
	OutTradeNo   string // out_trade_no (or TradeNo)
	TradeNo      string // trade_no
	RefundAmount int64  // refund_amount in fen, required
	OutRequestNo string // out_request_no: required for partial refunds, unique per refund of a trade
	RefundReason string // refund_reason
}

// TradeRefundResponse is a verified alipay.trade.refund success. Code 10000 only means accepted:
// the refund succeeded when FundChange is true; otherwise ask alipay.trade.fastpay.refund.query.
type TradeRefundResponse struct {
	TradeNo      string
	OutTradeNo   string
	BuyerLogonID string
	FundChange   bool  // fund_change == "Y": money moved in this call
	RefundFee    int64 // refund_fee in fen: cumulative refunded total of the trade
	GmtRefundPay time.Time
	Raw          json.RawMessage
}

// TradeRefund calls alipay.trade.refund. Repeating a call with the same OutRequestNo and amount is
// idempotent at Alipay (FundChange false the second time).
func (c *Client) TradeRefund(ctx context.Context, q TradeRefund) (*TradeRefundResponse, error) {
	if err := checkRef(q.OutTradeNo, q.TradeNo); err != nil {
		return nil, err
	}
	if q.RefundAmount < 1 || q.RefundAmount > maxRequestAmountFen {
		return nil, invalidRequest("alipay: refund_amount must be 0.01 to 100000000.00 yuan")
	}
	biz := struct {
		OutTradeNo   string `json:"out_trade_no,omitempty"`
		TradeNo      string `json:"trade_no,omitempty"`
		RefundAmount string `json:"refund_amount"`
		OutRequestNo string `json:"out_request_no,omitempty"`
		RefundReason string `json:"refund_reason,omitempty"`
	}{q.OutTradeNo, q.TradeNo, FormatAmount(q.RefundAmount), q.OutRequestNo, q.RefundReason}
	var raw json.RawMessage
	if err := c.Call(ctx, "alipay.trade.refund", biz, nil, &raw); err != nil {
		return nil, err
	}
	var w struct {
		TradeNo      string `json:"trade_no"`
		OutTradeNo   string `json:"out_trade_no"`
		BuyerLogonID string `json:"buyer_logon_id"`
		FundChange   string `json:"fund_change"`
		RefundFee    string `json:"refund_fee"`
		GmtRefundPay string `json:"gmt_refund_pay"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, malformed("alipay_trade_refund_response: " + err.Error())
	}
	r := &TradeRefundResponse{TradeNo: w.TradeNo, OutTradeNo: w.OutTradeNo, BuyerLogonID: w.BuyerLogonID,
		FundChange: w.FundChange == "Y", Raw: raw}
	if err := amountField("refund_fee", w.RefundFee, &r.RefundFee); err != nil {
		return nil, err
	}
	if err := timeField("gmt_refund_pay", w.GmtRefundPay, &r.GmtRefundPay); err != nil {
		return nil, err
	}
	return r, nil
}

// TradeFastpayRefundQuery asks for alipay.trade.fastpay.refund.query.
type TradeFastpayRefundQuery struct {
	OutTradeNo   string   // out_trade_no (or TradeNo)
	TradeNo      string   // trade_no
	OutRequestNo string   // out_request_no, required (the refund's; out_trade_no if the refund had none)
	QueryOptions []string // query_options
}

// TradeFastpayRefundQueryResponse is a verified alipay.trade.fastpay.refund.query success. When
// RefundStatus is empty the refund is unknown or failed: retry it with the same out_request_no.
type TradeFastpayRefundQueryResponse struct {
	TradeNo      string
	OutTradeNo   string
	OutRequestNo string
	TotalAmount  int64  // fen, of the trade
	RefundAmount int64  // fen, of this refund request
	RefundStatus string // "REFUND_SUCCESS" or empty
	GmtRefundPay time.Time
	Raw          json.RawMessage
}

// TradeFastpayRefundQuery calls alipay.trade.fastpay.refund.query.
func (c *Client) TradeFastpayRefundQuery(ctx context.Context, q TradeFastpayRefundQuery) (*TradeFastpayRefundQueryResponse, error) {
	if err := checkRef(q.OutTradeNo, q.TradeNo); err != nil {
		return nil, err
	}
	if q.OutRequestNo == "" {
		return nil, invalidRequest("alipay: out_request_no is required")
	}
	biz := struct {
		OutTradeNo   string   `json:"out_trade_no,omitempty"`
		TradeNo      string   `json:"trade_no,omitempty"`
		OutRequestNo string   `json:"out_request_no"`
		QueryOptions []string `json:"query_options,omitempty"`
	}{q.OutTradeNo, q.TradeNo, q.OutRequestNo, q.QueryOptions}
	var raw json.RawMessage
	if err := c.Call(ctx, "alipay.trade.fastpay.refund.query", biz, nil, &raw); err != nil {
		return nil, err
	}
	var w struct {
		TradeNo      string `json:"trade_no"`
		OutTradeNo   string `json:"out_trade_no"`
		OutRequestNo string `json:"out_request_no"`
		TotalAmount  string `json:"total_amount"`
		RefundAmount string `json:"refund_amount"`
		RefundStatus string `json:"refund_status"`
		GmtRefundPay string `json:"gmt_refund_pay"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, malformed("alipay_trade_fastpay_refund_query_response: " + err.Error())
	}
	r := &TradeFastpayRefundQueryResponse{TradeNo: w.TradeNo, OutTradeNo: w.OutTradeNo, OutRequestNo: w.OutRequestNo,
		RefundStatus: w.RefundStatus, Raw: raw}
	if err := amountField("total_amount", w.TotalAmount, &r.TotalAmount); err != nil {
		return nil, err
	}
	if err := amountField("refund_amount", w.RefundAmount, &r.RefundAmount); err != nil {
		return nil, err
	}
	if err := timeField("gmt_refund_pay", w.GmtRefundPay, &r.GmtRefundPay); err != nil {
		return nil, err
	}
	return r, nil
}

// TradePrecreate asks for alipay.trade.precreate (a QR code the buyer scans).
type TradePrecreate struct {
	OutTradeNo     string    // out_trade_no, required
	TotalAmount    int64     // total_amount in fen, required
	Subject        string    // subject, required
	ProductCode    string    // product_code. Defaults to ProductFaceToFace.
	TimeoutExpress string    // timeout_express, relative
	TimeExpire     time.Time // time_expire, absolute deadline (Beijing time on the wire)
	Body           string    // body
	StoreID        string    // store_id
	OperatorID     string    // operator_id
	TerminalID     string    // terminal_id
	NotifyURL      string    // notify_url. Defaults to Config.NotifyURL.
}

// TradePrecreateResponse is a verified alipay.trade.precreate success.
type TradePrecreateResponse struct {
	OutTradeNo string          `json:"out_trade_no"`
	QRCode     string          `json:"qr_code"` // "https://qr.alipay.com/…", unescaped
	Raw        json.RawMessage `json:"-"`
}

// TradePrecreate calls alipay.trade.precreate. The trade exists at Alipay only once the code is
// scanned: until then query and close answer ACQ.TRADE_NOT_EXIST.
func (c *Client) TradePrecreate(ctx context.Context, p TradePrecreate) (*TradePrecreateResponse, error) {
	if err := checkOrder(p.OutTradeNo, p.TotalAmount, p.Subject); err != nil {
		return nil, err
	}
	if p.ProductCode == "" {
		p.ProductCode = ProductFaceToFace
	}
	notify := p.NotifyURL
	if notify == "" {
		notify = c.notifyURL
	}
	biz := bizPay{OutTradeNo: p.OutTradeNo, TotalAmount: FormatAmount(p.TotalAmount), Subject: p.Subject,
		ProductCode: p.ProductCode, TimeoutExpress: p.TimeoutExpress, TimeExpire: formatExpire(p.TimeExpire),
		Body: p.Body, StoreID: p.StoreID, OperatorID: p.OperatorID, TerminalID: p.TerminalID}
	var raw json.RawMessage
	if err := c.Call(ctx, "alipay.trade.precreate", biz, map[string]string{"notify_url": notify}, &raw); err != nil {
		return nil, err
	}
	r := &TradePrecreateResponse{Raw: raw}
	if err := json.Unmarshal(raw, r); err != nil {
		return nil, malformed("alipay_trade_precreate_response: " + err.Error())
	}
	return r, nil
}
