package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/paynotify/paynotify/internal/wechatpaywire"
	"github.com/paynotify/paynotify/wechatpay"
)

// WeChat Pay trade states (docs/wechatpay.md, "Trade and refund states").
const (
	wxNotPay   = "NOTPAY"
	wxSuccess  = "SUCCESS"
	wxRefund   = "REFUND"
	wxClosed   = "CLOSED"
	wxPayError = "PAYERROR"
)

var (
	wxOutTradeNoRE  = regexp.MustCompile(`^[0-9A-Za-z_\-|*]{6,32}$`)
	wxOutRefundNoRE = regexp.MustCompile(`^[0-9A-Za-z_\-|*@]{1,64}$`)
	wxNotifyURLRE   = regexp.MustCompile(`^https?://([^\s/?#\[\]\@]+\@)?([^\s/?#\@:]+)(?::\d{2,5})?([^\s?#\[\]]*)$`)
)

// wxAPIv3Routes serves the APIv3 under prefix: "/sandbox/wechatpay" (…/v3/…), and "" for the real
// paths /v3/…, so that an SDK that always signs /v3/… (wechatpay-go, gopay's SetProxyHost) works
// through a transport that only rewrites scheme and host. wxAuth checks the signature over the
// request target as received, so each path is signed over itself.
func (s *Sandbox) wxAPIv3Routes(m *http.ServeMux, prefix string) {
	m.HandleFunc("POST "+prefix+"/v3/pay/transactions/{product}", s.handleWxPrepay)
	m.HandleFunc("GET "+prefix+"/v3/pay/transactions/out-trade-no/{no}", s.handleWxQuery)
	m.HandleFunc("GET "+prefix+"/v3/pay/transactions/id/{id}", s.handleWxQuery)
	m.HandleFunc("POST "+prefix+"/v3/pay/transactions/out-trade-no/{no}/close", s.handleWxClose)
	m.HandleFunc("POST "+prefix+"/v3/refund/domestic/refunds", s.handleWxRefund)
	m.HandleFunc("GET "+prefix+"/v3/refund/domestic/refunds/{no}", s.handleWxRefundQuery)
	m.HandleFunc("GET "+prefix+"/v3/certificates", s.handleWxCertificates)
}

// wxError is an APIv3 error answer.
type wxError struct {
	status        int
	code, message string
	detail        any
}

func (e *wxError) Error() string { return e.code + ": " + e.message }

func wxErr(status int, code, msg string) *wxError {
	return &wxError{status: status, code: code, message: msg}
}

func paramErr(field, value, msg string) *wxError {
	return &wxError{status: 400, code: "PARAM_ERROR", message: msg, detail: map[string]string{"location": "body", "value": value, "field": field}}
}

// wxReply writes a signed APIv3 answer (docs/wechatpay.md, "API client"), or an error (signed too,
// except SIGN_ERROR, which WeChat never signs).
func (s *Sandbox) wxReply(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	s.wxAnswer(w, r, status, body, false)
}

// wxAnswer is wxReply; with badSig (the bad_signature query fault) Wechatpay-Signature is made over
// other bytes and does not verify. Callers do not hold s.mu: an RSA signature takes about a
// millisecond, and concurrent queries must not queue for it behind the sandbox's lock.
func (s *Sandbox) wxAnswer(w http.ResponseWriter, r *http.Request, status int, body []byte, badSig bool) {
	serial := s.keys.pubKeyID
	if a, err := wechatpaywire.ParseAuthorization(r.Header.Get("Authorization")); err == nil {
		serial = s.wxSerial(a.MchID) // the merchant's platform key mode
	}
	if r.Header.Get(wechatpaywire.HeaderSerial) == s.keys.certSerial {
		serial = s.keys.certSerial
	}
	if h := s.signHook.Load(); h != nil {
		(*h)()
	}
	msg := body
	if badSig {
		msg = append(bytes.Clone(body), ' ')
	}
	h, err := wechatpaywire.SignHeaders(s.keys.platform, serial, s.now().Unix(), randAlnum(32), msg)
	if err != nil {
		http.Error(w, "sign", http.StatusInternalServerError)
		return
	}
	for k, v := range h {
		w.Header()[k] = v
	}
	w.Header().Set(wechatpaywire.HeaderRequestID, randHex(16))
	if len(body) > 0 {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
	}
	w.WriteHeader(status)
	w.Write(body)
}

func (s *Sandbox) wxFail(w http.ResponseWriter, r *http.Request, e *wxError) {
	m := []kv{{"code", e.code}, {"message", e.message}}
	if e.detail != nil {
		m = append(m, kv{"detail", json.RawMessage(mustJSON(e.detail))})
	}
	body := jsonObject(m, false)
	if e.code == "SIGN_ERROR" {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set(wechatpaywire.HeaderRequestID, randHex(16))
		w.WriteHeader(e.status)
		w.Write(body)
		return
	}
	s.wxReply(w, r, e.status, body)
}

// wxAuth verifies a merchant request's Authorization (docs/sandbox.md §2) over the raw request
// target and body, and returns the merchant and the body.
func (s *Sandbox) wxAuth(r *http.Request) (*wechatMerchant, []byte, *wxError) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, nil, wxErr(400, "INVALID_REQUEST", "读取请求失败")
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, nil, wxErr(401, "SIGN_ERROR", "错误的签名，验签失败: 缺少Authorization")
	}
	a, err := wechatpaywire.ParseAuthorization(h)
	if err != nil {
		return nil, nil, wxErr(401, "SIGN_ERROR", "Authorization 格式错误")
	}
	m, err := s.wechatMerchant(a.MchID)
	if err != nil {
		return nil, nil, wxErr(400, "MCH_NOT_EXISTS", "商户号不存在")
	}
	if a.SerialNo != m.SerialNo {
		return nil, nil, wxErr(401, "SIGN_ERROR", "商户证书序列号有误。请使用签名私钥匹配的证书序列号")
	}
	ts, err := strconv.ParseInt(a.Timestamp, 10, 64)
	if err != nil || len(a.Timestamp) != 10 {
		return nil, nil, wxErr(401, "SIGN_ERROR", "Http头Authorization中的timestamp格式错误")
	}
	if d := s.now().Sub(time.Unix(ts, 0)); d > wechatpay.MaxSkew || d < -wechatpay.MaxSkew {
		return nil, nil, wxErr(401, "SIGN_ERROR", "Http头Authorization中的timestamp与发起请求的时间不得超过5分钟")
	}
	if err := wechatpaywire.VerifyAuthorization(m.pub, a, r.Method, r.RequestURI, body); err != nil {
		e := wxErr(401, "SIGN_ERROR", "签名错误，请检查后再试")
		msg := string(wechatpaywire.RequestMessage(r.Method, r.RequestURI, a.Timestamp, a.NonceStr, body))
		trunc := msg
		if len(trunc) > 64 {
			trunc = trunc[:64]
		}
		e.detail = map[string]any{"detail": map[string]string{"issue": "sign not match"}, "field": "signature", "location": "authorization",
			"sign_information": map[string]any{"method": r.Method, "sign_message_length": len(msg), "truncated_sign_message": trunc, "url": r.RequestURI}}
		return nil, nil, e
	}
	return m, body, nil
}

// prepayBody is the prepay request: the JSON body of
// POST /v3/pay/transactions/{native,app,jsapi,h5}.
type prepayBody struct {
	AppID       string `json:"appid"`
	MchID       string `json:"mchid"`
	Description string `json:"description"`
	OutTradeNo  string `json:"out_trade_no"`
	TimeExpire  string `json:"time_expire"`
	Attach      string `json:"attach"`
	NotifyURL   string `json:"notify_url"`
	Amount      *struct {
		Total    *int64 `json:"total"`
		Currency string `json:"currency"`
	} `json:"amount"`
	Payer *struct {
		OpenID string `json:"openid"`
	} `json:"payer"`
	SceneInfo *struct {
		PayerClientIP string          `json:"payer_client_ip"`
		H5Info        json.RawMessage `json:"h5_info"`
	} `json:"scene_info"`
}

func hasFourByteUTF8(s string) bool {
	for _, r := range s {
		if r > 0xFFFF {
			return true
		}
	}
	return false
}

// handleWxPrepay serves POST /sandbox/wechatpay/v3/pay/transactions/{product}.
func (s *Sandbox) handleWxPrepay(w http.ResponseWriter, r *http.Request) {
	product := r.PathValue("product")
	if product != "native" && product != "app" && product != "jsapi" && product != "h5" {
		s.wxFail(w, r, wxErr(404, "NOT_FOUND", "未找到"))
		return
	}
	m, body, e := s.wxAuth(r)
	if e != nil {
		s.wxFail(w, r, e)
		return
	}
	var p prepayBody
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(&p); err != nil {
		s.wxFail(w, r, paramErr("", "", "请求体不是合法的JSON: "+err.Error()))
		return
	}
	if e := s.validatePrepay(m, product, &p); e != nil {
		s.wxFail(w, r, e)
		return
	}
	var expire time.Time
	if p.TimeExpire != "" {
		expire, _ = time.Parse(time.RFC3339, p.TimeExpire)
	}
	s.mu.Lock()
	t, err := s.st.tradeWhere("WHERE provider = ? AND app_id = ? AND out_trade_no = ?", ProviderWechatpay, p.MchID, p.OutTradeNo)
	request := map[string]string{"appid": p.AppID, "description": p.Description, "total": strconv.FormatInt(*p.Amount.Total, 10),
		"product": product, "notify_url": p.NotifyURL, "attach": p.Attach}
	switch {
	case errors.Is(err, errNotFound):
		t = &Trade{Provider: ProviderWechatpay, AppID: p.AppID, MchID: p.MchID, OutTradeNo: p.OutTradeNo, Product: product,
			Status: wxNotPay, Amount: *p.Amount.Total, Subject: p.Description, NotifyURL: p.NotifyURL, Passback: p.Attach,
			Token: randAlnum(24), CreatedAt: s.now(), TimeExpire: expire, Request: request}
		if t.TimeExpire.IsZero() {
			t.TimeExpire = s.now().Add(7 * 24 * time.Hour)
		}
		if p.Payer != nil {
			t.PayerOpenID = p.Payer.OpenID
		}
		t.PrepayID = "wx" + s.now().In(wechatpay.Beijing()).Format("02150405") + randDigits(24)
		t.CodeURL = "weixin://wxpay/bizpayurl?pr=" + randAlnum(10)
		t.CashierURL = s.cfg.BaseURL + "/sandbox/wechatpay/pay/" + t.Token
		err = s.st.saveTrade(t)
	case err != nil:
	default:
		s.expireIfDue(t)
		switch {
		case t.Status == wxSuccess || t.Status == wxRefund:
			e = wxErr(400, "ORDERPAID", "该订单已支付")
		case t.Status == wxClosed:
			e = wxErr(400, "ORDER_CLOSED", "该订单已关闭")
		case !sameRequest(t.Request, request):
			e = wxErr(400, "INVALID_REQUEST", "201 商户订单号重复")
		}
	}
	s.mu.Unlock()
	if err != nil {
		s.wxFail(w, r, wxErr(500, "SYSTEM_ERROR", "系统错误"))
		return
	}
	if e != nil {
		s.wxFail(w, r, e)
		return
	}
	var out []kv
	switch product {
	case "native":
		out = []kv{{"code_url", t.CodeURL}}
	case "h5":
		out = []kv{{"h5_url", t.CashierURL}}
	default:
		out = []kv{{"prepay_id", t.PrepayID}}
	}
	s.wxReply(w, r, http.StatusOK, jsonObject(out, false))
}

func sameRequest(a, b map[string]string) bool {
	for _, k := range []string{"appid", "description", "total", "product", "notify_url", "attach"} {
		if a[k] != b[k] {
			return false
		}
	}
	return true
}

func (s *Sandbox) validatePrepay(m *wechatMerchant, product string, p *prepayBody) *wxError {
	switch {
	case p.AppID == "":
		return paramErr("appid", "", "输入源“/body/appid”映射到值字段“公众号ID”字符串规则校验失败，值不能为空")
	case p.MchID == "":
		return paramErr("mchid", "", "输入源“/body/mchid”映射到值字段“直连商户号”字符串规则校验失败，值不能为空")
	case p.MchID != m.MchID:
		return wxErr(400, "INVALID_REQUEST", "请求中的mchid与Authorization中的商户号不一致")
	case p.Description == "" || len([]rune(p.Description)) > 127:
		return paramErr("description", p.Description, "输入源“/body/description”映射到值字段“商品描述”字符串规则校验失败，长度须为1-127")
	case hasFourByteUTF8(p.Description) || hasFourByteUTF8(p.Attach):
		return paramErr("description", p.Description, "字符串中不能包含4字节UTF-8字符")
	case !wxOutTradeNoRE.MatchString(p.OutTradeNo):
		return paramErr("out_trade_no", p.OutTradeNo, "输入源“/body/out_trade_no”映射到值字段“商户订单号”字符串规则校验失败，字符串必须匹配正则表达式“^[0-9A-Za-z_\\-|*]{6,32}$”")
	case !wxNotifyURLRE.MatchString(p.NotifyURL) || len(p.NotifyURL) > 255:
		return paramErr("notify_url", p.NotifyURL, "输入源“/body/notify_url”映射到值字段“通知地址”字符串规则校验失败，字符串必须匹配正则表达式“^https?://([^\\s/?#\\[\\]\\@]+\\@)?([^\\s/?#\\@:]+)(?::\\d{2,5})?([^\\s?#\\[\\]]*)$”")
	case p.Amount == nil || p.Amount.Total == nil || *p.Amount.Total < 1:
		return paramErr("amount.total", "", "输入源“/body/amount/total”映射到值字段“总金额”数值规则校验失败，值必须大于等于1")
	case p.Amount.Currency != "" && p.Amount.Currency != "CNY":
		return paramErr("amount.currency", p.Amount.Currency, "币种须为CNY")
	case len([]rune(p.Attach)) > 128:
		return paramErr("attach", p.Attach, "附加数据长度须不超过128")
	case product == "jsapi" && (p.Payer == nil || p.Payer.OpenID == ""):
		return paramErr("payer.openid", "", "JSAPI下单须传入 payer.openid")
	case product == "h5" && (p.SceneInfo == nil || p.SceneInfo.PayerClientIP == "" || len(p.SceneInfo.H5Info) == 0):
		return paramErr("scene_info", "", "H5下单须传入 scene_info.payer_client_ip 与 scene_info.h5_info")
	}
	if p.TimeExpire != "" {
		if _, err := time.Parse(time.RFC3339, p.TimeExpire); err != nil {
			return paramErr("time_expire", p.TimeExpire, "输入源“/body/time_expire”映射到值字段“交易结束时间”字符串规则校验失败，字符串必须是符合 RFC3339 日期时间格式")
		}
	}
	bound := false
	for _, a := range m.AppIDs {
		bound = bound || a == p.AppID
	}
	if !bound {
		return wxErr(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
	}
	return nil
}

// wxTransaction is the query answer and the payment notification's resource (docs/wechatpay.md,
// "Trade and refund states").
func (s *Sandbox) wxTransaction(t *Trade, f Faults) []byte {
	appid := t.AppID
	if f.WrongAppID {
		appid = otherWechatAppID
	}
	total := t.Amount
	if f.WrongAmount {
		total++
	}
	if t.Status == wxNotPay || t.Status == wxClosed || t.Status == wxPayError {
		amount := []kv{{"payer_currency", "CNY"}, {"total", total}}
		m := []kv{{"amount", amount}, {"appid", appid}, {"mchid", t.MchID}, {"out_trade_no", t.OutTradeNo},
			{"promotion_detail", json.RawMessage("[]")}, {"scene_info", []kv{{"device_id", ""}}}, {"trade_state", t.Status},
			{"trade_state_desc", map[string]string{wxNotPay: "订单未支付", wxClosed: "订单已关闭", wxPayError: "支付失败，请重新下单支付"}[t.Status]}}
		if t.Passback != "" && t.Status == wxPayError {
			m = append(m, kv{"attach", t.Passback})
		}
		return jsonObject(m, false)
	}
	tradeType := map[string]string{"native": "NATIVE", "app": "APP", "jsapi": "JSAPI", "h5": "MWEB"}[t.Product]
	state := wxSuccess
	desc := "支付成功"
	if t.Status == wxRefund {
		state, desc = wxRefund, "订单发生过退款"
	}
	m := []kv{{"amount", []kv{{"currency", "CNY"}, {"payer_currency", "CNY"}, {"payer_total", total}, {"total", total}}},
		{"appid", appid}, {"attach", t.Passback}, {"bank_type", "OTHERS"}, {"mchid", t.MchID}, {"out_trade_no", t.OutTradeNo},
		{"payer", []kv{{"openid", t.PayerOpenID}}}, {"promotion_detail", json.RawMessage("[]")},
		{"success_time", wechatpay.FormatTime(t.PaidAt)}, {"trade_state", state}, {"trade_state_desc", desc},
		{"trade_type", tradeType}, {"transaction_id", t.TradeNo}}
	return jsonObject(m, false)
}

// handleWxQuery serves GET …/v3/pay/transactions/out-trade-no/{no} and …/id/{id}.
func (s *Sandbox) handleWxQuery(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec := newWxQueryRecord(r, APIWechatQuery)
	rec.OutTradeNo = r.PathValue("no")
	if id != "" {
		rec.API, rec.TradeNo = APIWechatQueryByID, id
	}
	fail := func(e *wxError) {
		s.logWxQuery(rec, e)
		s.wxFail(w, r, e)
	}
	m, _, e := s.wxAuth(r)
	if e != nil {
		fail(e)
		return
	}
	rec.MchID = m.MchID
	if mch := r.URL.Query().Get("mchid"); mch != m.MchID {
		fail(paramErr("mchid", mch, "输入源“/query/mchid”映射到值字段“直连商户号”字符串规则校验失败"))
		return
	}
	s.mu.Lock()
	var t *Trade
	var err error
	if id != "" {
		t, err = s.st.tradeWhere("WHERE provider = ? AND app_id = ? AND trade_no = ?", ProviderWechatpay, m.MchID, id)
	} else {
		t, err = s.st.tradeWhere("WHERE provider = ? AND app_id = ? AND out_trade_no = ?", ProviderWechatpay, m.MchID, rec.OutTradeNo)
	}
	if err == nil {
		s.expireIfDue(t)
	}
	s.mu.Unlock()
	if err != nil && id != "" {
		// The second payment of the double_pay fault is a transaction of its own.
		if d, derr := s.doublePayment(ProviderWechatpay, m.MchID, id); derr == nil {
			t, err = d, nil
		}
	}
	if err != nil {
		fail(wxErr(404, "ORDER_NOT_EXIST", "订单不存在"))
		return
	}
	rec.OutTradeNo, rec.TradeNo, rec.Result = t.OutTradeNo, t.TradeNo, t.Status
	badSig := false
	if id == "" {
		t, badSig, rec.Fault = s.applyQueryFault(t)
	}
	s.logQuery(rec)
	s.wxAnswer(w, r, http.StatusOK, s.wxTransaction(t, Faults{}), badSig)
}

// handleWxClose serves POST …/v3/pay/transactions/out-trade-no/{no}/close.
func (s *Sandbox) handleWxClose(w http.ResponseWriter, r *http.Request) {
	rec := newWxQueryRecord(r, APIWechatClose)
	rec.OutTradeNo = r.PathValue("no")
	fail := func(e *wxError) {
		s.logWxQuery(rec, e)
		s.wxFail(w, r, e)
	}
	m, body, e := s.wxAuth(r)
	if e != nil {
		fail(e)
		return
	}
	rec.MchID = m.MchID
	var b struct {
		MchID string `json:"mchid"`
	}
	if json.Unmarshal(body, &b) != nil || b.MchID != m.MchID {
		fail(paramErr("mchid", b.MchID, "输入源“/body/mchid”映射到值字段“直连商户号”字符串规则校验失败"))
		return
	}
	s.mu.Lock()
	t, err := s.st.tradeWhere("WHERE provider = ? AND app_id = ? AND out_trade_no = ?", ProviderWechatpay, m.MchID, rec.OutTradeNo)
	if err == nil {
		s.expireIfDue(t)
		switch t.Status {
		case wxSuccess, wxRefund:
			e = wxErr(400, "ORDERPAID", "该订单已支付")
		case wxNotPay, wxPayError:
			t.Status, t.ClosedAt = wxClosed, s.now()
			err = s.st.saveTrade(t)
		}
	}
	s.mu.Unlock()
	switch {
	case errors.Is(err, errNotFound):
		fail(wxErr(404, "ORDER_NOT_EXIST", "订单不存在"))
	case err != nil:
		fail(wxErr(500, "SYSTEM_ERROR", "系统错误"))
	case e != nil:
		rec.TradeNo = t.TradeNo
		fail(e)
	default:
		rec.TradeNo, rec.Result = t.TradeNo, t.Status
		s.logQuery(rec)
		s.wxReply(w, r, http.StatusNoContent, nil) // closing a closed order is a no-op, 204 again
	}
}

// payWxTrade pays a NOTPAY (or PAYERROR) trade. Caller holds s.mu.
func (s *Sandbox) payWxTrade(t *Trade) error {
	s.expireIfDue(t)
	switch t.Status {
	case wxNotPay, wxPayError:
	case wxClosed:
		return errors.New("the order is closed")
	default:
		return errors.New("the order is already paid")
	}
	now := s.now()
	t.Status, t.PaidAt = wxSuccess, now
	t.TradeNo = newWxTransactionID(now)
	if t.PayerOpenID == "" {
		t.PayerOpenID = "oSandbox" + randAlnum(20)
	}
	if s.faultsFor(t.OutTradeNo).DoublePay {
		t.DoublePay = &Payment{TradeNo: newWxTransactionID(now), Amount: t.Amount, PaidAt: s.now()}
	}
	if err := s.st.saveTrade(t); err != nil {
		return err
	}
	return s.notifyPayment(t, s.wxNotification)
}

// newWxTransactionID makes a WeChat Pay transaction_id: "42000", the Beijing date, 15 digits.
func newWxTransactionID(now time.Time) string {
	return "42000" + now.In(wechatpay.Beijing()).Format("20060102") + randDigits(15)
}

// failWxTrade marks a NOTPAY trade PAYERROR (no notification: WeChat only notifies successes).
func (s *Sandbox) failWxTrade(t *Trade) error {
	if t.Status != wxNotPay {
		return fmt.Errorf("only a NOTPAY order can fail (it is %s)", t.Status)
	}
	t.Status = wxPayError
	return s.st.saveTrade(t)
}

// refundBody is the refund request: the JSON body of POST /v3/refund/domestic/refunds.
type refundBody struct {
	TransactionID string `json:"transaction_id"`
	OutTradeNo    string `json:"out_trade_no"`
	OutRefundNo   string `json:"out_refund_no"`
	Reason        string `json:"reason"`
	NotifyURL     string `json:"notify_url"`
	Amount        *struct {
		Refund   *int64 `json:"refund"`
		Total    *int64 `json:"total"`
		Currency string `json:"currency"`
	} `json:"amount"`
}

// wxRefundJSON is the Refund object of the refund APIs.
func wxRefundJSON(t *Trade, r *Refund) []byte {
	m := []kv{{"amount", []kv{{"currency", "CNY"}, {"discount_refund", int64(0)}, {"from", json.RawMessage("[]")},
		{"payer_refund", r.Amount}, {"payer_total", t.Amount}, {"refund", r.Amount}, {"settlement_refund", r.Amount},
		{"settlement_total", t.Amount}, {"total", t.Amount}}},
		{"channel", "ORIGINAL"}, {"create_time", wechatpay.FormatTime(r.CreatedAt)}, {"funds_account", "AVAILABLE"},
		{"out_refund_no", r.OutRequestNo}, {"out_trade_no", t.OutTradeNo}, {"promotion_detail", json.RawMessage("[]")},
		{"refund_id", r.RefundID}, {"status", r.Status}}
	if r.Status == wxSuccess {
		m = append(m, kv{"success_time", wechatpay.FormatTime(r.SucceededAt)})
	}
	m = append(m, kv{"transaction_id", t.TradeNo}, kv{"user_received_account", "支付用户零钱"})
	return jsonObject(m, false)
}

// handleWxRefund serves POST …/v3/refund/domestic/refunds.
func (s *Sandbox) handleWxRefund(w http.ResponseWriter, r *http.Request) {
	m, body, e := s.wxAuth(r)
	if e != nil {
		s.wxFail(w, r, e)
		return
	}
	var b refundBody
	if err := json.Unmarshal(body, &b); err != nil {
		s.wxFail(w, r, paramErr("", "", "请求体不是合法的JSON"))
		return
	}
	switch {
	case b.OutTradeNo == "" && b.TransactionID == "":
		s.wxFail(w, r, paramErr("out_trade_no", "", "transaction_id 和 out_trade_no 必须二选一"))
		return
	case !wxOutRefundNoRE.MatchString(b.OutRefundNo):
		s.wxFail(w, r, paramErr("out_refund_no", b.OutRefundNo, "输入源“/body/out_refund_no”映射到值字段“商户退款单号”字符串规则校验失败"))
		return
	case b.Amount == nil || b.Amount.Refund == nil || b.Amount.Total == nil || *b.Amount.Refund < 1:
		s.wxFail(w, r, paramErr("amount", "", "amount.refund 与 amount.total 必填，且退款金额须大于0"))
		return
	case b.Amount.Currency != "CNY":
		// Required, and only CNY (docs/sandbox.md): a client that leaves it out fails in production.
		s.wxFail(w, r, paramErr("amount.currency", b.Amount.Currency, "amount.currency 必填，且只能为 CNY"))
		return
	case utf8.RuneCountInString(b.Reason) > 80:
		s.wxFail(w, r, paramErr("reason", "", "输入源“/body/reason”映射到值字段“退款原因”字符串长度不能超过80"))
		return
	case b.NotifyURL != "" && !wxNotifyURLRE.MatchString(b.NotifyURL):
		s.wxFail(w, r, paramErr("notify_url", b.NotifyURL, "输入源“/body/notify_url”映射到值字段“通知地址”字符串规则校验失败"))
		return
	}
	s.mu.Lock()
	var t *Trade
	var err error
	if b.TransactionID != "" {
		t, err = s.st.tradeWhere("WHERE provider = ? AND app_id = ? AND trade_no = ?", ProviderWechatpay, m.MchID, b.TransactionID)
	} else {
		t, err = s.st.tradeWhere("WHERE provider = ? AND app_id = ? AND out_trade_no = ?", ProviderWechatpay, m.MchID, b.OutTradeNo)
	}
	var ref *Refund
	if err == nil {
		if *b.Amount.Total != t.Amount {
			e = paramErr("amount.total", strconv.FormatInt(*b.Amount.Total, 10), "订单金额与原订单金额不一致")
		} else {
			ref, e = s.wxRefundTrade(t, *b.Amount.Refund, b.OutRefundNo, b.Reason, b.NotifyURL)
		}
	}
	s.mu.Unlock()
	switch {
	case errors.Is(err, errNotFound):
		s.wxFail(w, r, wxErr(404, "RESOURCE_NOT_EXISTS", "订单不存在"))
	case err != nil:
		s.wxFail(w, r, wxErr(500, "SYSTEM_ERROR", "系统错误"))
	case e != nil:
		s.wxFail(w, r, e)
	default:
		s.wxReply(w, r, http.StatusOK, wxRefundJSON(t, ref))
	}
}

// wxRefundTrade creates (idempotently by out_refund_no) a PROCESSING refund. Unless the
// manual_refund fault is set, it succeeds on its own a moment later. Caller holds s.mu.
func (s *Sandbox) wxRefundTrade(t *Trade, amount int64, outRefundNo, reason, notifyURL string) (*Refund, *wxError) {
	if old, err := s.st.refundsWhere("WHERE trade_id = ? AND out_request_no = ?", t.ID, outRefundNo); err == nil && len(old) > 0 {
		if old[0].Amount != amount {
			return nil, wxErr(400, "INVALID_REQUEST", "退款单号重复，但退款金额与原请求不一致")
		}
		return old[0], nil
	}
	// out_refund_no is unique per merchant, not per order: the number of another order's refund
	// is refused.
	if rs, err := s.st.refundsWhere("WHERE out_request_no = ? AND trade_id <> ?", outRefundNo, t.ID); err == nil {
		for _, x := range rs {
			if x.Provider != ProviderWechatpay {
				continue
			}
			if ts, _ := s.st.tradesWhere("WHERE id = ? AND app_id = ?", x.TradeID, t.MchID); len(ts) == 1 {
				return nil, wxErr(400, "INVALID_REQUEST", "退款单号已用于其他订单")
			}
		}
	}
	if t.Status != wxSuccess && t.Status != wxRefund {
		return nil, wxErr(403, "TRADE_ERROR", "订单未支付或已关闭，不能退款")
	}
	if amount < 1 || amount > t.Amount { // as WeChat Pay: a refund is 1 fen to the order's amount
		return nil, wxErr(400, "PARAM_ERROR", "退款金额不合法")
	}
	var pending int64
	rs, _ := s.st.refundsWhere("WHERE trade_id = ?", t.ID)
	for _, r := range rs {
		// An ABNORMAL refund's money has left the merchant: it still holds its amount.
		if r.Status == wxSuccess || r.Status == "PROCESSING" || r.Status == "ABNORMAL" {
			pending += r.Amount
		}
	}
	if pending+amount > t.Amount {
		// A refusal on the order's refundable amount (INVALID_REQUEST); NOT_ENOUGH is WeChat
		// Pay's "the merchant's balance is too low", which a retry may pass.
		return nil, wxErr(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
	}
	// Without the refund's notify_url, WeChat Pay sends its notifications to the URL set in the
	// merchant platform, never to the payment's: the sandbox, which has no such setting, sends
	// none (it fell back to the payment's, which hid a client sending no notify_url).
	now := s.now()
	r := &Refund{TradeID: t.ID, Provider: ProviderWechatpay, OutTradeNo: t.OutTradeNo, OutRequestNo: outRefundNo,
		RefundID: "50" + randDigits(27), Amount: amount, Status: "PROCESSING", Reason: reason, NotifyURL: notifyURL, CreatedAt: now}
	if err := s.st.saveRefund(r); err != nil {
		return nil, wxErr(500, "SYSTEM_ERROR", "系统错误")
	}
	t.Status = wxRefund
	s.st.saveTrade(t)
	if !s.faultsFor(t.OutTradeNo).ManualRefund {
		id := r.ID
		time.AfterFunc(50*time.Millisecond, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.completeWxRefundLocked(id, wxSuccess)
		})
	}
	return r, nil
}

// completeWxRefundLocked moves a PROCESSING refund to SUCCESS, CLOSED or ABNORMAL, or an
// ABNORMAL one (settled by hand in the merchant platform) to SUCCESS or CLOSED, and notifies.
// Caller holds s.mu.
func (s *Sandbox) completeWxRefundLocked(refundID int64, status string) error {
	rs, err := s.st.refundsWhere("WHERE id = ?", refundID)
	if err != nil || len(rs) == 0 {
		return errNotFound
	}
	r := rs[0]
	if r.Status != "PROCESSING" && (r.Status != "ABNORMAL" || status == "ABNORMAL") {
		return fmt.Errorf("refund %s is %s: only a PROCESSING refund completes, and an ABNORMAL one to SUCCESS or CLOSED", r.OutRequestNo, r.Status)
	}
	ts, err := s.st.tradesWhere("WHERE id = ?", r.TradeID)
	if err != nil || len(ts) == 0 {
		return errNotFound
	}
	t := ts[0]
	r.Status = status
	if status == wxSuccess {
		r.SucceededAt = s.now()
		t.RefundedAmount += r.Amount
		r.RefundFee = t.RefundedAmount
		if err := s.st.saveTrade(t); err != nil {
			return err
		}
	}
	if err := s.st.saveRefund(r); err != nil {
		return err
	}
	return s.wxNotify(t, "refund", r)
}

// handleWxRefundQuery serves GET …/v3/refund/domestic/refunds/{no}. The answer is signed after
// s.mu is released.
func (s *Sandbox) handleWxRefundQuery(w http.ResponseWriter, r *http.Request) {
	rec := newWxQueryRecord(r, APIWechatRefundQuery)
	rec.OutRequestNo = r.PathValue("no")
	fail := func(e *wxError) {
		s.logWxQuery(rec, e)
		s.wxFail(w, r, e)
	}
	m, _, e := s.wxAuth(r)
	if e != nil {
		fail(e)
		return
	}
	rec.MchID = m.MchID
	var t *Trade
	var ref *Refund
	s.mu.Lock()
	rs, err := s.st.refundsWhere("WHERE out_request_no = ? AND json_extract(data, '$.provider') = ?", rec.OutRequestNo, ProviderWechatpay)
	for _, x := range rs {
		if ts, _ := s.st.tradesWhere("WHERE id = ? AND app_id = ?", x.TradeID, m.MchID); len(ts) == 1 {
			t, ref = ts[0], x
			break
		}
	}
	s.mu.Unlock()
	switch {
	case ref != nil:
		rec.OutTradeNo, rec.TradeNo, rec.Result = t.OutTradeNo, t.TradeNo, ref.Status
		s.logQuery(rec)
		s.wxReply(w, r, http.StatusOK, wxRefundJSON(t, ref))
	case err != nil:
		fail(wxErr(500, "SYSTEM_ERROR", "系统错误"))
	default:
		fail(wxErr(404, "RESOURCE_NOT_EXISTS", "退款单不存在"))
	}
}

// handleWxCertificates serves GET …/v3/certificates: the platform certificate encrypted with the
// APIv3 key.
func (s *Sandbox) handleWxCertificates(w http.ResponseWriter, r *http.Request) {
	if _, _, e := s.wxAuth(r); e != nil {
		s.wxFail(w, r, e)
		return
	}
	nonce := randAlnum(wechatpaywire.NonceSize)
	ct, err := wechatpaywire.EncryptGCM(s.keys.apiv3Key, nonce, "certificate", s.keys.platformCertPEM)
	if err != nil {
		s.wxFail(w, r, wxErr(500, "SYSTEM_ERROR", "系统错误"))
		return
	}
	c := s.keys.platformCert
	body := jsonObject([]kv{{"data", json.RawMessage("[" + string(jsonObject([]kv{
		{"effective_time", wechatpay.FormatTime(c.NotBefore)},
		{"encrypt_certificate", []kv{{"algorithm", wechatpaywire.Algorithm}, {"associated_data", "certificate"}, {"ciphertext", ct}, {"nonce", nonce}}},
		{"expire_time", wechatpay.FormatTime(c.NotAfter)}, {"serial_no", s.keys.certSerial}}, false)) + "]")}}, false)
	s.wxReply(w, r, http.StatusOK, body)
}

// wxNotify builds the encrypted notification of t (payment) or r (refund) and enqueues it.
// Caller holds s.mu.
func (s *Sandbox) wxNotify(t *Trade, kind string, r *Refund) error {
	note, err := s.wxNotification(t, kind, r)
	if err != nil || note == nil {
		return err
	}
	return s.n.enqueue(note)
}

// wxNotification builds the encrypted notification of t (payment) or r (refund), or returns nil
// when there is no notify_url.
func (s *Sandbox) wxNotification(t *Trade, kind string, r *Refund) (*Notification, error) {
	f := s.faultsFor(t.OutTradeNo)
	now := s.now()
	p := wechatpaywire.NotificationParams{ID: newUUID(), CreateTime: now}
	url := t.NotifyURL
	if kind == "payment" {
		p.EventType, p.Summary, p.OriginalType = wechatpay.EventTransactionSuccess, "支付成功", "transaction"
		p.Plaintext = s.wxTransaction(t, f)
	} else {
		url = r.NotifyURL
		ev := map[string]string{wxSuccess: wechatpay.EventRefundSuccess, "CLOSED": wechatpay.EventRefundClosed, "ABNORMAL": wechatpay.EventRefundAbnormal}[r.Status]
		p.EventType, p.Summary, p.OriginalType = ev, map[string]string{wxSuccess: "退款成功", "CLOSED": "退款关闭", "ABNORMAL": "退款异常"}[r.Status], "refund"
		total, refund := t.Amount, r.Amount
		if f.WrongAmount {
			total++
			refund++
		}
		m := []kv{{"mchid", t.MchID}, {"out_trade_no", t.OutTradeNo}, {"transaction_id", t.TradeNo}, {"out_refund_no", r.OutRequestNo},
			{"refund_id", r.RefundID}, {"refund_status", r.Status}}
		if r.Status == wxSuccess {
			m = append(m, kv{"success_time", wechatpay.FormatTime(r.SucceededAt)})
		}
		m = append(m, kv{"amount", []kv{{"total", total}, {"refund", refund}, {"payer_total", total}, {"payer_refund", refund}}},
			kv{"user_received_account", "支付用户零钱"})
		p.Plaintext = jsonObject(m, false)
	}
	if url == "" {
		return nil, nil
	}
	serial := s.wxSerial(t.MchID)
	_, body, err := wechatpaywire.BuildNotification(s.keys.platform, serial, s.keys.apiv3Key, p)
	if err != nil {
		return nil, err
	}
	note := &Notification{TradeID: t.ID, Provider: ProviderWechatpay, OutTradeNo: t.OutTradeNo, Kind: kind, NotifyID: p.ID,
		EventType: p.EventType, URL: url, ContentType: "application/json", Body: body, BodyText: string(body), Faults: f,
		TradeNo: t.TradeNo, WechatpaySerial: serial}
	if r != nil {
		note.OutRequestNo = r.OutRequestNo
	}
	return note, nil
}

func newUUID() string {
	h := randHex(16)
	b := []byte(strings.ToLower(h))
	b[12] = '4'
	return fmt.Sprintf("%s-%s-%s-%s-%s", b[0:8], b[8:12], b[12:16], b[16:20], b[20:32])
}
