package sandbox

import (
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/paynotify/paynotify/alipay"
)

var errMissingLegacyKey = errors.New("the partner has no RSA public key for 0001")

const legacyAuthService = "alipay.wap.auth.authAndExecute"

// newLegacyRequestToken makes a request_token: the Beijing date and 32 hex digits.
func newLegacyRequestToken(now time.Time) string {
	return now.In(alipay.Beijing()).Format("20060102") + strings.ToLower(randHex(16))
}

// legacyDirectReq is the req_data of alipay.wap.trade.create.direct (docs/alipay-legacy.md §11.1).
type legacyDirectReq struct {
	XMLName           xml.Name `xml:"direct_trade_create_req"`
	NotifyURL         string   `xml:"notify_url"`
	CallBackURL       string   `xml:"call_back_url"`
	SellerAccountName string   `xml:"seller_account_name"`
	OutTradeNo        string   `xml:"out_trade_no"`
	Subject           string   `xml:"subject"`
	TotalFee          string   `xml:"total_fee"`
	MerchantURL       string   `xml:"merchant_url"`
	OutUser           string   `xml:"out_user"`
	CashierCode       string   `xml:"cashier_code"`
	PayExpire         string   `xml:"pay_expire"`
}

// legacyAuthReq is the req_data of alipay.wap.auth.authAndExecute (docs/alipay-legacy.md §11.3).
type legacyAuthReq struct {
	XMLName      xml.Name `xml:"auth_and_execute_req"`
	RequestToken string   `xml:"request_token"`
}

// legacyParseXML decodes the XML document data (bytes in charset cs) into v, refusing DTDs and
// other directives.
func legacyParseXML(data, cs string, v any) error {
	text := fromCharset(data, cs)
	newDec := func() *xml.Decoder {
		d := xml.NewDecoder(strings.NewReader(text))
		d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil } // already UTF-8
		return d
	}
	d := newDec()
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if _, ok := tok.(xml.Directive); ok {
			return errors.New("DTDs and directives are not accepted")
		}
	}
	return newDec().Decode(v)
}

// handleLegacyWap serves the old WAP gateway rest.htm: the token request (a server POST,
// answered with the form-encoded token answer) and authAndExecute (the buyer's browser: the
// cashier page).
func (s *Sandbox) handleLegacyWap(w http.ResponseWriter, r *http.Request) {
	raw, err := legacyParams(r)
	if err != nil {
		if r.Method == http.MethodPost {
			s.legacyWapError(w, raw, "utf-8", legacyErr("ILLEGAL_ARGUMENT", "%v", err))
		} else {
			s.legacyErrorPage(w, legacyErr("ILLEGAL_ARGUMENT", "%v", err))
		}
		return
	}
	switch raw["service"] {
	case legacyWapService:
		s.legacyWapToken(w, raw)
	case legacyAuthService:
		t, lerr := s.legacyAuthExecute(raw)
		if lerr != nil {
			s.log.Info("sandbox: legacy authAndExecute refused", "partner", raw["partner"], "code", lerr.code, "detail", lerr.detail)
			s.legacyErrorPage(w, lerr)
			return
		}
		s.renderLegacyCashier(w, t, "")
	default:
		s.legacyErrorPage(w, legacyErr("ILLEGAL_SERVICE", "service %q is not a WAP service", raw["service"]))
	}
}

// legacyWapCommon checks what both WAP services share: sec_id (MD5 or 0001), no sign_type
// (docs/alipay-legacy.md §14.8), format=xml, v=2.0, and the merchant's signature.
func (s *Sandbox) legacyWapCommon(raw map[string]string) (*legacyPartner, string, *legacyError) {
	secID := raw["sec_id"]
	switch {
	case secID != "MD5" && secID != "0001":
		return nil, "", legacyErr("ILLEGAL_SIGN_TYPE", "sec_id %q (want MD5 or 0001)", secID)
	case raw["sign_type"] != "":
		return nil, "", legacyErr("ILLEGAL_ARGUMENT", "the WAP services name the algorithm in sec_id and carry no sign_type")
	case raw["format"] != "xml" || raw["v"] != "2.0":
		return nil, "", legacyErr("ILLEGAL_ARGUMENT", "format must be xml and v 2.0")
	case raw["req_data"] == "":
		return nil, "", legacyErr("ILLEGAL_ARGUMENT", "req_data is required")
	}
	// The 2.0 demo sends no _input_charset: its values are UTF-8.
	return s.legacyVerifyRequest(raw, secID, "utf-8")
}

// legacyWapError answers a refused token request with res_error (no sign, docs/alipay-legacy.md
// §11.2). An unknown partner gets the documented 0005 "partner illegal"; other refusals name the
// mapi code in code and sub_code (docs/alipay-legacy.md §12 knows no other WAP code).
func (s *Sandbox) legacyWapError(w http.ResponseWriter, raw map[string]string, cs string, e *legacyError) {
	code, msg, detail := e.code, legacyErrMsg[e.code], e.detail
	if e.code == "ILLEGAL_PARTNER" {
		code, msg, detail = "0005", "partner illegal", "合作伙伴没有开通接口访问权限"
	}
	res := `<?xml version="1.0" encoding="` + cs + `"?><err><code>` + xmlEscape(code) + `</code><sub_code>` + xmlEscape(code) +
		`</sub_code><msg>` + xmlEscape(msg) + `</msg><detail>` + xmlEscape(detail) + `</detail></err>`
	fs := []field{{"partner", raw["partner"]}, {"req_id", raw["req_id"]}, {"res_error", toCharset(res, cs)},
		{"sec_id", raw["sec_id"]}, {"service", legacyWapService}, {"v", "2.0"}}
	w.Header().Set("Content-Type", "text/html;charset="+cs)
	noActiveContent(w)
	w.Header().Set("X-Sandbox-Error", e.code)
	io.WriteString(w, encodeForm(fs))
}

// legacyWapToken answers alipay.wap.trade.create.direct (docs/alipay-legacy.md §11.1–11.2): it
// records the order (not yet created at Alipay) under a fresh request_token and answers partner,
// req_id, res_data (encrypted to the merchant's key under 0001), sec_id, service, v, signed over
// the sorted string with the plaintext res_data.
func (s *Sandbox) legacyWapToken(w http.ResponseWriter, raw map[string]string) {
	t, cs, lerr := s.legacyWapOrder(raw)
	if lerr != nil {
		s.log.Info("sandbox: legacy token request refused", "partner", raw["partner"], "code", lerr.code, "detail", lerr.detail)
		if cs == "" {
			cs, _ = legacyCharset(raw["_input_charset"], "utf-8")
			if cs == "" {
				cs = "utf-8"
			}
		}
		s.legacyWapError(w, raw, cs, lerr)
		return
	}
	p, err := s.legacyPartner(t.AppID)
	if err != nil {
		s.legacyWapError(w, raw, cs, legacyErr("SYSTEM_ERROR", "%v", err))
		return
	}
	res := toCharset(`<?xml version="1.0" encoding="`+cs+`"?><direct_trade_create_res><request_token>`+
		t.Request["request_token"]+`</request_token></direct_trade_create_res>`, cs)
	plain := []field{{"partner", raw["partner"]}, {"req_id", raw["req_id"]}, {"res_data", res}, {"sec_id", raw["sec_id"]},
		{"service", legacyWapService}, {"v", "2.0"}}
	sig, err := s.legacySignWith(p, raw["sec_id"], legacySortedString(plain))
	if err != nil {
		s.legacyWapError(w, raw, cs, legacyErr("SYSTEM_ERROR", "%v", err))
		return
	}
	wire := res
	if raw["sec_id"] == "0001" {
		if wire, err = legacyEncrypt0001(p.pub, []byte(res)); err != nil {
			s.legacyWapError(w, raw, cs, legacyErr("ILLEGAL_ENCRYPT", "%v", err))
			return
		}
	}
	sent := append([]field(nil), plain...)
	sent[2].Value = wire
	sent = append(sent, field{"sign", sig})
	w.Header().Set("Content-Type", "text/html;charset="+cs)
	noActiveContent(w)
	io.WriteString(w, encodeForm(sent))
}

// legacyWapOrder verifies a token request and records its trade. cs is the request's charset
// once known.
func (s *Sandbox) legacyWapOrder(raw map[string]string) (t *Trade, cs string, _ *legacyError) {
	p, cs, lerr := s.legacyWapCommon(raw)
	if lerr != nil {
		return nil, "", lerr
	}
	if raw["req_id"] == "" {
		return nil, cs, legacyErr("ILLEGAL_ARGUMENT", "req_id is required")
	}
	if raw["sec_id"] == "0001" && (p.pub == nil || p.pub.Size() != legacyBlock) {
		return nil, cs, legacyErr("ILLEGAL_ENCRYPT", "0001 needs the partner's 1024-bit RSA key")
	}
	var rd legacyDirectReq
	if err := legacyParseXML(raw["req_data"], cs, &rd); err != nil {
		return nil, cs, legacyErr("ILLEGAL_ARGUMENT", "req_data is not a direct_trade_create_req document: %v", err)
	}
	switch {
	case rd.CallBackURL == "" || rd.OutTradeNo == "" || rd.Subject == "" || rd.TotalFee == "":
		return nil, cs, legacyErr("ILLEGAL_ARGUMENT", "req_data needs call_back_url, seller_account_name, out_trade_no, subject and total_fee")
	case len(rd.OutTradeNo) > 64 || utf8.RuneCountInString(rd.Subject) > 256:
		return nil, cs, legacyErr("ILLEGAL_ARGUMENT", "out_trade_no (64) or subject (256) too long")
	case strings.Contains(rd.NotifyURL, "?") || strings.Contains(rd.CallBackURL, "?"):
		return nil, cs, legacyErr("ILLEGAL_ARGUMENT", "notify_url and call_back_url must not carry a query string")
	}
	if e := legacySellerCheck(p, rd.SellerAccountName); e != nil {
		return nil, cs, e
	}
	amount, e := legacyParseYuan("total_fee", rd.TotalFee)
	if e != nil {
		return nil, cs, e
	}
	if amount < 1 || amount > 100000000_00 {
		return nil, cs, legacyErr("ILLEGAL_ARGUMENT", "total_fee must be 0.01 … 100000000.00")
	}
	req := map[string]string{"service": legacyWapService, "partner": p.Partner, "sec_id": raw["sec_id"], "req_id": raw["req_id"],
		"_input_charset": raw["_input_charset"], "notify_url": rd.NotifyURL, "call_back_url": rd.CallBackURL,
		"seller_account_name": rd.SellerAccountName, "out_trade_no": rd.OutTradeNo, "subject": rd.Subject, "total_fee": rd.TotalFee,
		"merchant_url": rd.MerchantURL, "out_user": rd.OutUser, "cashier_code": rd.CashierCode, "pay_expire": rd.PayExpire,
		"request_token": newLegacyRequestToken(s.now())}
	for k, v := range req {
		if v == "" {
			delete(req, k)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.st.tradeWhere("WHERE provider = ? AND app_id = ? AND out_trade_no = ?", ProviderAlipayLegacy, p.Partner, rd.OutTradeNo)
	switch {
	case errors.Is(err, errNotFound):
		t = &Trade{Provider: ProviderAlipayLegacy, AppID: p.Partner, SellerID: p.Partner, OutTradeNo: rd.OutTradeNo, Product: LegacyProductWap,
			Status: StatusNotCreated, Token: randAlnum(24), CreatedAt: s.now()}
	case err != nil:
		return nil, cs, legacyErr("SYSTEM_ERROR", "%v", err)
	case t.Status == StatusNotCreated && t.Product == LegacyProductWap:
		// Not created at Alipay yet: the latest request defines the order; the old token dies.
	default:
		if e := legacyReuse(t, LegacyProductWap, amount); e != nil {
			return nil, cs, e
		}
	}
	if t.Status == StatusNotCreated {
		t.Amount, t.Subject = amount, rd.Subject
	}
	t.NotifyURL, t.ReturnURL, t.Charset, t.SignType, t.Request = rd.NotifyURL, rd.CallBackURL, cs, raw["sec_id"], req
	if rd.PayExpire != "" {
		t.TimeoutExpress = rd.PayExpire + "m"
	}
	t.CashierURL = s.cfg.BaseURL + "/sandbox/alipay-legacy/cashier/" + t.Token
	if err := s.st.saveTrade(t); err != nil {
		return nil, cs, legacyErr("SYSTEM_ERROR", "%v", err)
	}
	return t, cs, nil
}

// legacyAuthExecute verifies an authAndExecute request and opens the trade of its request_token.
func (s *Sandbox) legacyAuthExecute(raw map[string]string) (*Trade, *legacyError) {
	p, cs, lerr := s.legacyWapCommon(raw)
	if lerr != nil {
		return nil, lerr
	}
	var ar legacyAuthReq
	if err := legacyParseXML(raw["req_data"], cs, &ar); err != nil || ar.RequestToken == "" {
		return nil, legacyErr("ILLEGAL_ARGUMENT", "req_data is not an auth_and_execute_req with a request_token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.st.tradeWhere("WHERE provider = ? AND app_id = ? AND json_extract(data, '$.request.request_token') = ?", ProviderAlipayLegacy, p.Partner, ar.RequestToken)
	if err != nil {
		return nil, legacyErr("ILLEGAL_ARGUMENT", "request_token %s is unknown or replaced", ar.RequestToken)
	}
	if t.SignType != raw["sec_id"] {
		return nil, legacyErr("ILLEGAL_SIGN_TYPE", "the token was issued under sec_id %s", t.SignType)
	}
	s.legacyExpireIfDue(t)
	switch {
	case t.Status == alipay.TradeClosed:
		return nil, legacyErr("TRADE_HAS_CLOSED", "out_trade_no %s is closed", t.OutTradeNo)
	case legacyPaid(t.Status):
		return nil, legacyErr("TRADE_HAS_SUCCESS", "out_trade_no %s is paid", t.OutTradeNo)
	}
	if err := s.legacyOpen(t); err != nil {
		return nil, legacyErr("SYSTEM_ERROR", "%v", err)
	}
	return t, nil
}
