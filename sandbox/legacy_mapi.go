package sandbox

import (
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/internal/alipaywire"
)

// APILegacyNotifyVerify is the QueryRecord.API of a notify_verify call (provider alipay-legacy):
// NotifyID is the notify_id as the sandbox received it (after one URL decoding), Result the
// answer (true, false, invalid, or "timeout" when the notify_verify fault held it back).
const APILegacyNotifyVerify = "notify_verify"

// legacyVerifyHold is how long the notify_verify timeout fault holds a call before it drops the
// connection without an answer (sooner when the caller gives up).
const legacyVerifyHold = 30 * time.Second

// legacyReturnIDValidity is the validity of the notify_id of a return_url visit
// (docs/alipay-legacy.md §9.4, §10: "notify_id一分钟失效").
const legacyReturnIDValidity = time.Minute

// legacyServices maps the mapi pay services to products.
var legacyServices = map[string]string{
	"create_direct_pay_by_user":            LegacyProductDirect,
	"alipay.wap.create.direct.pay.by.user": LegacyProductDirect,
	"trade_create_by_buyer":                LegacyProductDual,
	"create_partner_trade_by_buyer":        LegacyProductEscrow,
}

// legacyErrMsg are the descriptions of the mapi error codes the simulator answers
// (docs/alipay-legacy.md §12).
var legacyErrMsg = map[string]string{
	"ILLEGAL_SIGN":             "签名不正确",
	"ILLEGAL_ARGUMENT":         "参数不正确",
	"ILLEGAL_SERVICE":          "Service参数不正确",
	"ILLEGAL_PARTNER":          "合作伙伴ID不正确",
	"ILLEGAL_SECURITY_PROFILE": "未找到匹配的密钥配置",
	"ILLEGAL_SIGN_TYPE":        "签名类型不正确",
	"ILLEGAL_CHARSET":          "字符集不合法",
	"ILLEGAL_ENCRYPT":          "加密不正确",
	"SYSTEM_ERROR":             "支付宝系统错误",
	"TRADE_HAS_SUCCESS":        "交易已经支付", // not in the common table of docs/alipay-legacy.md §12 (our assumption)
	"TRADE_HAS_CLOSED":         "交易已经关闭", // likewise
}

// legacyError is a refused legacy request: a mapi error code and what was wrong.
type legacyError struct{ code, detail string }

func (e *legacyError) Error() string { return e.code + " " + legacyErrMsg[e.code] + ": " + e.detail }

func legacyErr(code, format string, args ...any) *legacyError {
	return &legacyError{code: code, detail: fmt.Sprintf(format, args...)}
}

// legacyParams reads a legacy request's parameters as raw decoded bytes: the query and, for a POST,
// an application/x-www-form-urlencoded or multipart/form-data body (the 3.3 PHP demos post with
// curl and an array, i.e. multipart; the 2.0 demo form-encodes by hand). A name twice in one part
// is refused (docs/alipay-legacy.md §13.6); a name in both the query and the body must carry the
// same value there (the demos append ?_input_charset=… to the gateway URL and send it as a
// parameter too).
func legacyParams(r *http.Request) (map[string]string, error) {
	params := map[string]string{}
	q, err := parseForm(r.URL.RawQuery)
	if err != nil {
		return nil, err
	}
	for _, f := range q {
		params[f.Key] = f.Value
	}
	if r.Method != http.MethodPost {
		return params, nil
	}
	var body []field
	mt, mp, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "multipart/form-data":
		if mp["boundary"] == "" {
			return nil, errors.New("multipart body without boundary")
		}
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			return nil, fmt.Errorf("multipart body: %v", err)
		}
		for k, vs := range r.MultipartForm.Value {
			if len(vs) != 1 {
				return nil, fmt.Errorf("parameter %s appears twice", k)
			}
			body = append(body, field{k, vs[0]})
		}
	case "", "application/x-www-form-urlencoded":
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return nil, err
		}
		if body, err = parseForm(string(b)); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unsupported Content-Type %q", mt)
	}
	for _, f := range body {
		if old, dup := params[f.Key]; dup && old != f.Value {
			return nil, fmt.Errorf("parameter %s differs between the query and the body", f.Key)
		}
		params[f.Key] = f.Value
	}
	return params, nil
}

func legacyFields(params map[string]string) []field {
	out := make([]field, 0, len(params))
	for k, v := range params {
		out = append(out, field{k, v})
	}
	return out
}

// legacyCharset normalises _input_charset: utf-8 or gbk (gb2312 is read as GBK). Empty selects
// def.
func legacyCharset(cs, def string) (string, bool) {
	if cs == "" {
		return def, true
	}
	switch c, _ := alipaywire.Charset(cs); c {
	case alipaywire.UTF8:
		return "utf-8", true
	case alipaywire.GBK, alipaywire.GB2312:
		return "gbk", true
	}
	return "", false
}

// handleLegacyGateway serves the mapi gateway.do: the pay services (verify, then the cashier
// page, or an error page) and service=notify_verify.
func (s *Sandbox) handleLegacyGateway(w http.ResponseWriter, r *http.Request) {
	raw, err := legacyParams(r)
	if err != nil {
		s.legacyErrorPage(w, legacyErr("ILLEGAL_ARGUMENT", "%v", err))
		return
	}
	if raw["service"] == "notify_verify" {
		s.legacyNotifyVerify(w, r, raw["partner"], raw["notify_id"])
		return
	}
	t, lerr := s.legacyMapiOrder(raw)
	if lerr != nil {
		s.log.Info("sandbox: legacy request refused", "service", raw["service"], "partner", raw["partner"], "code", lerr.code, "detail", lerr.detail)
		s.legacyErrorPage(w, lerr)
		return
	}
	s.renderLegacyCashier(w, t, "")
}

// handleLegacyNotifyQuery serves notify_query.do?partner=…&notify_id=… (transport=http).
func (s *Sandbox) handleLegacyNotifyQuery(w http.ResponseWriter, r *http.Request) {
	raw, err := legacyParams(r)
	if err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "invalid")
		return
	}
	s.legacyNotifyVerify(w, r, raw["partner"], raw["notify_id"])
}

// legacyErrorPage answers a refused browser request as Alipay does: an HTML error page (HTTP
// 200) naming the code. The code is also in the X-Sandbox-Error header.
func (s *Sandbox) legacyErrorPage(w http.ResponseWriter, e *legacyError) {
	w.Header().Set("X-Sandbox-Error", e.code)
	renderPage(w, pageData{Title: "支付宝 sandbox: 错误", Msg: "错误代码 " + e.code + " " + legacyErrMsg[e.code] + ": " + e.detail})
}

// legacyVerifyRequest checks the common parameters and the merchant's signature of a mapi (st
// from sign_type) or WAP (st from sec_id) request and returns the partner and the charset.
func (s *Sandbox) legacyVerifyRequest(raw map[string]string, st, defCharset string) (*legacyPartner, string, *legacyError) {
	if raw["partner"] == "" {
		return nil, "", legacyErr("ILLEGAL_PARTNER", "partner is missing")
	}
	p, err := s.legacyPartner(raw["partner"])
	if err != nil {
		return nil, "", legacyErr("ILLEGAL_PARTNER", "partner %s is not registered", raw["partner"])
	}
	cs, ok := legacyCharset(raw["_input_charset"], defCharset)
	if !ok {
		return nil, "", legacyErr("ILLEGAL_CHARSET", "_input_charset %q", raw["_input_charset"])
	}
	if raw["sign"] == "" {
		return nil, "", legacyErr("ILLEGAL_SIGN", "sign is missing")
	}
	msg := legacySortedString(legacyFields(raw))
	if code := legacyVerifyMerchant(p, st, msg, raw["sign"]); code != "" {
		return nil, "", legacyErr(code, "the string the gateway verified (charset %s): %s", cs, fromCharset(string(msg), cs))
	}
	return p, cs, nil
}

// legacyMapiParsed is a verified mapi pay request.
type legacyMapiParsed struct {
	partner *legacyPartner
	product string
	charset string
	st      string
	p       map[string]string // UTF-8
	amount  int64
}

// legacyParseMapi verifies a mapi pay request (docs/alipay-legacy.md §8).
func (s *Sandbox) legacyParseMapi(raw map[string]string) (*legacyMapiParsed, *legacyError) {
	product, ok := legacyServices[raw["service"]]
	if !ok {
		return nil, legacyErr("ILLEGAL_SERVICE", "service %q is not a mapi pay service of this sandbox", raw["service"])
	}
	st := raw["sign_type"]
	if st != "MD5" && st != "RSA" {
		return nil, legacyErr("ILLEGAL_SIGN_TYPE", "sign_type %q (want MD5 or RSA)", st)
	}
	// Without _input_charset the gateway reads GBK, as the OpenAPI gateway does (an assumption).
	partner, cs, lerr := s.legacyVerifyRequest(raw, st, "gbk")
	if lerr != nil {
		return nil, lerr
	}
	m := &legacyMapiParsed{partner: partner, product: product, charset: cs, st: st, p: map[string]string{}}
	for k, v := range raw {
		if k != "sign" && k != "sign_type" {
			m.p[k] = fromCharset(v, cs)
		}
	}
	p := m.p
	switch {
	case p["out_trade_no"] == "" || len(p["out_trade_no"]) > 64:
		return nil, legacyErr("ILLEGAL_ARGUMENT", "out_trade_no is required, at most 64 characters")
	case p["subject"] == "" || utf8.RuneCountInString(p["subject"]) > 256:
		return nil, legacyErr("ILLEGAL_ARGUMENT", "subject is required, at most 256 characters")
	case p["payment_type"] == "":
		return nil, legacyErr("ILLEGAL_ARGUMENT", "payment_type is required")
	}
	for _, k := range []string{"notify_url", "return_url"} {
		if strings.Contains(p[k], "?") {
			// The demos: "不能加?id=123这类自定义参数" (docs/alipay-legacy.md §8.2, §14.9).
			return nil, legacyErr("ILLEGAL_ARGUMENT", "%s must not carry a query string", k)
		}
	}
	if e := legacySellerCheck(partner, p["seller_email"], p["seller_id"], p["seller_account_name"]); e != nil {
		return nil, e
	}
	amount, e := legacyAmount(product, p)
	if e != nil {
		return nil, e
	}
	m.amount = amount
	return m, nil
}

// legacySellerCheck requires one seller field, naming the partner's account or PID.
func legacySellerCheck(p *legacyPartner, values ...string) *legacyError {
	given := false
	for _, v := range values {
		if v == "" {
			continue
		}
		given = true
		if v != p.Partner && (p.SellerEmail == "" || v != p.SellerEmail) {
			return legacyErr("ILLEGAL_ARGUMENT", "seller %q is not the account of partner %s", v, p.Partner)
		}
	}
	if !given {
		return legacyErr("ILLEGAL_ARGUMENT", "one of seller_email, seller_id or seller_account_name is required")
	}
	return nil
}

// legacyParseYuan reads an amount in yuan (at most two decimals) as fen.
func legacyParseYuan(name, v string) (int64, *legacyError) {
	fen, err := alipay.ParseAmount(v)
	if err != nil {
		return 0, legacyErr("ILLEGAL_ARGUMENT", "%s %q is not an amount in yuan", name, v)
	}
	return fen, nil
}

// legacyAmount computes the trade amount in fen: total_fee, or price × quantity (+ logistics_fee
// for the escrow services), within 0.01 … 100000000.00.
func legacyAmount(product string, p map[string]string) (int64, *legacyError) {
	var total int64
	switch {
	case product == LegacyProductDirect && p["total_fee"] != "":
		v, e := legacyParseYuan("total_fee", p["total_fee"])
		if e != nil {
			return 0, e
		}
		total = v
	case p["price"] != "" && p["quantity"] != "":
		price, e := legacyParseYuan("price", p["price"])
		if e != nil {
			return 0, e
		}
		var qty int64
		if _, err := fmt.Sscanf(p["quantity"], "%d", &qty); err != nil || qty < 1 || fmt.Sprint(qty) != p["quantity"] {
			return 0, legacyErr("ILLEGAL_ARGUMENT", "quantity %q", p["quantity"])
		}
		if price > 0 && qty > math.MaxInt64/price {
			return 0, legacyErr("ILLEGAL_ARGUMENT", "price %q × quantity %q is out of range", p["price"], p["quantity"])
		}
		total = price * qty
	default:
		if product == LegacyProductDirect {
			return 0, legacyErr("ILLEGAL_ARGUMENT", "total_fee (or price and quantity) is required")
		}
		return 0, legacyErr("ILLEGAL_ARGUMENT", "price and quantity are required")
	}
	if product != LegacyProductDirect {
		for _, k := range []string{"logistics_fee", "logistics_type", "logistics_payment"} {
			if p[k] == "" {
				return 0, legacyErr("ILLEGAL_ARGUMENT", "%s is required", k)
			}
		}
		fee, e := legacyParseYuan("logistics_fee", p["logistics_fee"])
		if e != nil {
			return 0, e
		}
		total += fee
	}
	if total < 1 || total > 100000000_00 {
		return 0, legacyErr("ILLEGAL_ARGUMENT", "the amount must be 0.01 … 100000000.00")
	}
	return total, nil
}

// legacyMapiOrder verifies a mapi pay request and creates its trade at Alipay (the buyer's
// browser is on the cashier: the trade exists, WAIT_BUYER_PAY; the escrow services notify that),
// or finds the trade an earlier visit created.
func (s *Sandbox) legacyMapiOrder(raw map[string]string) (*Trade, *legacyError) {
	m, lerr := s.legacyParseMapi(raw)
	if lerr != nil {
		return nil, lerr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.st.tradeWhere("WHERE provider = ? AND app_id = ? AND out_trade_no = ?", ProviderAlipayLegacy, m.partner.Partner, m.p["out_trade_no"])
	switch {
	case errors.Is(err, errNotFound):
	case err != nil:
		return nil, legacyErr("SYSTEM_ERROR", "%v", err)
	default:
		if e := legacyReuse(t, m.product, m.amount); e != nil {
			return nil, e
		}
		return t, nil
	}
	now := s.now()
	p := m.p
	t = &Trade{Provider: ProviderAlipayLegacy, AppID: m.partner.Partner, SellerID: m.partner.Partner, OutTradeNo: p["out_trade_no"],
		Product: m.product, Status: StatusNotCreated, Amount: m.amount, Subject: p["subject"], Body: p["body"],
		NotifyURL: p["notify_url"], ReturnURL: p["return_url"], Charset: m.charset, SignType: m.st, Passback: p["extra_common_param"],
		Token: randAlnum(24), CreatedAt: now, Request: p}
	if v := p["it_b_pay"]; v != "" {
		t.TimeoutExpress = v
	}
	t.CashierURL = s.cfg.BaseURL + "/sandbox/alipay-legacy/cashier/" + t.Token
	if err := s.legacyOpen(t); err != nil {
		return nil, legacyErr("SYSTEM_ERROR", "%v", err)
	}
	return t, nil
}

// legacyReuse decides whether a second request for an existing trade may show it again.
func legacyReuse(t *Trade, product string, amount int64) *legacyError {
	switch {
	case t.Product != product:
		return legacyErr("ILLEGAL_ARGUMENT", "out_trade_no %s belongs to a %s trade", t.OutTradeNo, t.Product)
	case legacyPaid(t.Status):
		return legacyErr("TRADE_HAS_SUCCESS", "out_trade_no %s is paid", t.OutTradeNo)
	case t.Status == alipay.TradeClosed:
		return legacyErr("TRADE_HAS_CLOSED", "out_trade_no %s is closed", t.OutTradeNo)
	case t.Amount != amount:
		return legacyErr("ILLEGAL_ARGUMENT", "交易信息被篡改: out_trade_no %s was created for %s", t.OutTradeNo, alipay.FormatAmount(t.Amount))
	}
	return nil
}

// legacyNotifyVerify answers notify_verify (docs/alipay-legacy.md §9.4): "true" for a notify_id the
// sandbox issued to partner that is still valid (an async notification's until the merchant
// acknowledges it, a return visit's for one minute), "false" otherwise, "invalid" when partner or
// notify_id is missing; the notify_verify faults of the notification's trade falsify it.
func (s *Sandbox) legacyNotifyVerify(w http.ResponseWriter, r *http.Request, partner, notifyID string) {
	rec := &QueryRecord{Provider: ProviderAlipayLegacy, API: APILegacyNotifyVerify, AppID: partner, NotifyID: notifyID}
	answer := "false"
	var outTradeNo string
	if partner == "" || notifyID == "" {
		answer = "invalid"
	} else {
		var ok bool
		ok, outTradeNo, rec.TradeNo = s.legacyNotifyIDValid(partner, notifyID)
		if ok {
			answer = "true"
		}
	}
	rec.OutTradeNo = outTradeNo
	if notifyID != "" && outTradeNo != "" {
		// Counted for the notify_ids the sandbox issued only: any caller can send any, and the
		// map kept them all (a reviewer helper's finding).
		s.legacy.mu.Lock()
		s.legacy.verifyCalls[notifyID]++
		n := s.legacy.verifyCalls[notifyID]
		s.legacy.mu.Unlock()
		if outTradeNo != "" {
			f := s.faultsFor(outTradeNo)
			if f.NotifyVerify != "" && (f.NotifyVerifyTimes == 0 || n <= f.NotifyVerifyTimes) {
				rec.Fault = "notify_verify:" + f.NotifyVerify
				switch f.NotifyVerify {
				case NotifyVerifyFalse, NotifyVerifyInvalid:
					answer = f.NotifyVerify
				case NotifyVerifyTimeout:
					rec.Result = "timeout"
					s.logQuery(rec)
					timer := time.NewTimer(legacyVerifyHold)
					defer timer.Stop()
					select {
					case <-r.Context().Done():
					case <-timer.C:
					}
					panic(http.ErrAbortHandler) // close the connection without an answer
				}
			}
		}
	}
	rec.Result = answer
	s.logQuery(rec)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, answer)
}

// legacyReturnID is a notify_id issued in a return_url visit.
type legacyReturnID struct {
	NotifyID   string    `json:"notify_id"`
	Partner    string    `json:"partner"`
	TradeID    int64     `json:"trade_id"`
	OutTradeNo string    `json:"out_trade_no"`
	TradeNo    string    `json:"trade_no"`
	IssuedAt   time.Time `json:"issued_at"`
}

// legacyNotifyIDValid looks notifyID up: an async notification of partner's not yet
// acknowledged, or a return visit's issued less than a minute ago (Config.Now).
func (s *Sandbox) legacyNotifyIDValid(partner, notifyID string) (valid bool, outTradeNo, tradeNo string) {
	notes, err := s.st.notificationsWhere("WHERE json_extract(data, '$.notify_id') = ? AND json_extract(data, '$.provider') = ?", notifyID, ProviderAlipayLegacy)
	if err == nil && len(notes) > 0 {
		n := notes[0]
		ts, err := s.st.tradesWhere("WHERE id = ?", n.TradeID)
		if err != nil || len(ts) == 0 || ts[0].AppID != partner {
			return false, "", ""
		}
		return n.Status == NotePending, n.OutTradeNo, n.TradeNo
	}
	var rid legacyReturnID
	if err := s.st.getKV("legacy_return_ids", "notify_id", notifyID, &rid); err != nil || rid.Partner != partner {
		return false, "", ""
	}
	if ts, err := s.st.tradesWhere("WHERE id = ?", rid.TradeID); err != nil || len(ts) == 0 {
		return false, "", "" // the trade was reset
	}
	return s.now().Sub(rid.IssuedAt) < legacyReturnIDValidity, rid.OutTradeNo, rid.TradeNo
}
