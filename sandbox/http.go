package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/paynotify/paynotify/alipay"
)

func (s *Sandbox) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /sandbox/{$}", s.handleIndex)
	m.HandleFunc("/sandbox/alipay/gateway.do", s.handleGateway)
	m.HandleFunc("GET /sandbox/alipay/cashier/{token}", s.handleAlipayCashier)
	m.HandleFunc("POST /sandbox/alipay/cashier/{token}/{action}", s.handleAlipayCashierAction)
	m.HandleFunc("POST /sandbox/alipay/app-sdk", s.handleAppSDK)

	s.wxAPIv3Routes(m, "/sandbox/wechatpay")
	s.wxAPIv3Routes(m, "") // the APIv3 at its real paths, /v3/… (wechatpay.go)
	m.HandleFunc("GET /sandbox/wechatpay/pay", s.handleWxPayLookup)
	m.HandleFunc("GET /sandbox/wechatpay/pay/{token}", s.handleWxPayPage)
	m.HandleFunc("POST /sandbox/wechatpay/pay/{token}/{action}", s.handleWxPayAction)

	m.HandleFunc("GET /sandbox/api/keys", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, s.Keys()) })
	m.HandleFunc("GET /sandbox/api/trades", s.apiTrades)
	m.HandleFunc("GET /sandbox/api/refunds", s.apiRefunds)
	m.HandleFunc("GET /sandbox/api/notifications", s.apiNotifications)
	m.HandleFunc("GET /sandbox/api/attempts", s.apiAttempts)
	m.HandleFunc("GET /sandbox/api/queries", s.apiQueries)
	m.HandleFunc("POST /sandbox/api/order", s.apiOrder)
	m.HandleFunc("POST /sandbox/api/{action}", s.apiAction)
	m.HandleFunc("POST /sandbox/api/refund/complete", s.apiRefundComplete)
	m.HandleFunc("GET /sandbox/api/faults", s.apiGetFaults)
	m.HandleFunc("PUT /sandbox/api/faults", s.apiPutFaults)
	m.HandleFunc("DELETE /sandbox/api/faults", s.apiDeleteFaults)
	m.HandleFunc("POST /sandbox/api/alipay/apps", s.apiRegisterApp)
	m.HandleFunc("POST /sandbox/api/wechatpay/merchants", s.apiRegisterMerchant)
	s.legacyRoutes(m)
	// The control API only: a merchant's page posts to the provider's gateway from its own origin
	// by design (page pay's auto-submitted form), and the pay pages' actions need their token.
	api := http.NewCrossOriginProtection().Handler(m)
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/sandbox/api/") {
			api.ServeHTTP(w, r)
			return
		}
		m.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func apiError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"message": fmt.Sprintf(format, args...)}})
}

// ---- pages ----

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}form{display:inline}button{margin:.3em;padding:.5em 1em}.msg{background:#ffd;padding:.5em}</style>
</head><body><h1>{{.Title}}</h1>
{{if .Msg}}<p class="msg">{{.Msg}}</p>{{end}}
{{with .Trade}}<table>
<tr><th>out_trade_no</th><td>{{.OutTradeNo}}</td></tr>
<tr><th>product</th><td>{{.Product}}</td></tr>
<tr><th>subject</th><td>{{.Subject}}</td></tr>
<tr><th>amount</th><td>¥{{$.Yuan}}</td></tr>
<tr><th>status</th><td>{{.Status}}</td></tr>
{{if .TradeNo}}<tr><th>trade no</th><td>{{.TradeNo}}</td></tr>{{end}}
{{if $.QR}}<tr><th>code</th><td>{{$.QR}}</td></tr>{{end}}
</table>{{end}}
{{range .Actions}}<form method="post" action="{{.URL}}"><button>{{.Label}}</button></form>{{end}}
{{if .Trades}}<table><tr><th>provider</th><th>out_trade_no</th><th>product</th><th>amount</th><th>status</th><th></th></tr>
{{range .Trades}}<tr><td>{{.Provider}}</td><td>{{.OutTradeNo}}</td><td>{{.Product}}</td><td>{{.Amount}}</td><td>{{.Status}}</td><td>{{if .CashierURL}}<a href="{{.CashierURL}}">open</a>{{end}}</td></tr>{{end}}
</table>{{end}}
<p><small>paynotify sandbox: nothing here moves real money. Control API: <a href="/sandbox/api/trades">/sandbox/api/trades</a></small></p>
</body></html>`))

type pageAction struct{ URL, Label string }

type pageData struct {
	Title   string
	Msg     string
	Trade   *Trade
	Yuan    string
	QR      string
	Actions []pageAction
	Trades  []*Trade
}

func renderPage(w http.ResponseWriter, d pageData) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if d.Trade != nil {
		d.Yuan = alipay.FormatAmount(d.Trade.Amount)
	}
	if err := pageTmpl.Execute(w, d); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func (s *Sandbox) handleIndex(w http.ResponseWriter, r *http.Request) {
	ts, _ := s.Trades("", "")
	if len(ts) > 50 {
		ts = ts[:50]
	}
	renderPage(w, pageData{Title: "paynotify sandbox", Trades: ts})
}

func (s *Sandbox) tradeByToken(token string) (*Trade, error) {
	if token == "" {
		return nil, errNotFound
	}
	return s.st.tradeWhere("WHERE token = ?", token)
}

func (s *Sandbox) renderAlipayCashier(w http.ResponseWriter, r *http.Request, t *Trade, msg string) {
	base := s.cfg.BaseURL + "/sandbox/alipay/cashier/" + t.Token + "/"
	d := pageData{Title: "Alipay sandbox cashier", Msg: msg, Trade: t}
	if t.Product == "precreate" {
		d.QR = t.CashierURL
	}
	switch {
	case t.Status == StatusNotCreated && !t.ClosedAt.IsZero():
		d.Msg += " This order has expired."
	case t.Status == StatusNotCreated:
		d.Actions = []pageAction{{base + "open", "Scan / log in (creates the trade)"}, {base + "pay", "Pay"}, {base + "cancel", "Cancel"}, {base + "expire", "Let it expire"}}
	case t.Status == alipay.TradeWaitBuyerPay:
		d.Actions = []pageAction{{base + "pay", "Pay"}, {base + "cancel", "Cancel"}, {base + "expire", "Let it expire"}}
	}
	renderPage(w, d)
}

func (s *Sandbox) handleAlipayCashier(w http.ResponseWriter, r *http.Request) {
	t, err := s.tradeByToken(r.PathValue("token"))
	if err != nil || t.Provider != ProviderAlipay {
		http.NotFound(w, r)
		return
	}
	s.renderAlipayCashier(w, r, t, "")
}

func (s *Sandbox) handleAlipayCashierAction(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	t, err := s.tradeByToken(r.PathValue("token"))
	if err != nil || t.Provider != ProviderAlipay {
		s.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	var msg string
	switch r.PathValue("action") {
	case "open":
		err = s.openAlipayTrade(t)
		msg = "The trade exists at Alipay now (WAIT_BUYER_PAY)."
	case "pay":
		err = s.payAlipayTrade(t)
		msg = "Paid."
	case "cancel":
		msg = "The buyer left the cashier; the order can still be paid until it expires."
	case "expire":
		err = s.expireTrade(t)
		msg = "Expired."
	default:
		err = errors.New("unknown action")
	}
	s.mu.Unlock()
	if err != nil {
		msg = "Refused: " + err.Error()
	}
	if r.PathValue("action") == "pay" && err == nil {
		if u := s.alipayReturnURL(t); u != "" {
			http.Redirect(w, r, u, http.StatusFound)
			return
		}
	}
	s.renderAlipayCashier(w, r, t, msg)
}

// expireTrade plays the order's timeout. Caller holds s.mu.
func (s *Sandbox) expireTrade(t *Trade) error {
	switch {
	case t.Provider == ProviderAlipay && t.Status == StatusNotCreated:
		t.ClosedAt = s.now()
		return s.st.saveTrade(t)
	case t.Provider == ProviderAlipay && t.Status == alipay.TradeWaitBuyerPay:
		return s.closeAlipayTrade(t)
	case t.Provider == ProviderWechatpay && (t.Status == wxNotPay || t.Status == wxPayError):
		t.Status, t.ClosedAt = wxClosed, s.now()
		return s.st.saveTrade(t)
	}
	return fmt.Errorf("a %s trade cannot expire", t.Status)
}

func (s *Sandbox) handleWxPayLookup(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var t *Trade
	var err error
	switch {
	case q.Get("code_url") != "":
		t, err = s.st.tradeWhere("WHERE provider = ? AND json_extract(data, '$.code_url') = ?", ProviderWechatpay, q.Get("code_url"))
	case q.Get("prepay_id") != "":
		t, err = s.st.tradeWhere("WHERE provider = ? AND json_extract(data, '$.prepay_id') = ?", ProviderWechatpay, strings.TrimPrefix(q.Get("prepay_id"), "prepay_id="))
	default:
		err = errNotFound
	}
	if err != nil {
		http.NotFound(w, r)
		return
	}
	http.Redirect(w, r, t.CashierURL, http.StatusFound)
}

func (s *Sandbox) renderWxPay(w http.ResponseWriter, t *Trade, msg string) {
	base := s.cfg.BaseURL + "/sandbox/wechatpay/pay/" + t.Token + "/"
	d := pageData{Title: "WeChat Pay sandbox", Msg: msg, Trade: t, QR: t.CodeURL}
	if t.Status == wxNotPay || t.Status == wxPayError {
		d.Actions = []pageAction{{base + "pay", "Pay"}, {base + "fail", "Payment fails (PAYERROR)"}, {base + "expire", "Let it expire"}}
	}
	renderPage(w, d)
}

func (s *Sandbox) handleWxPayPage(w http.ResponseWriter, r *http.Request) {
	t, err := s.tradeByToken(r.PathValue("token"))
	if err != nil || t.Provider != ProviderWechatpay {
		http.NotFound(w, r)
		return
	}
	s.renderWxPay(w, t, "")
}

func (s *Sandbox) handleWxPayAction(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	t, err := s.tradeByToken(r.PathValue("token"))
	if err != nil || t.Provider != ProviderWechatpay {
		s.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	var msg string
	switch r.PathValue("action") {
	case "pay":
		err, msg = s.payWxTrade(t), "Paid."
	case "fail":
		err, msg = s.failWxTrade(t), "The payment failed."
	case "expire":
		err, msg = s.expireTrade(t), "Expired."
	default:
		err = errors.New("unknown action")
	}
	s.mu.Unlock()
	if err != nil {
		msg = "Refused: " + err.Error()
	}
	s.renderWxPay(w, t, msg)
}

// ---- control API ----

func (s *Sandbox) apiTrades(w http.ResponseWriter, r *http.Request) {
	ts, err := s.Trades(r.URL.Query().Get("provider"), r.URL.Query().Get("out_trade_no"))
	if err != nil {
		apiError(w, 500, "%v", err)
		return
	}
	if ts == nil {
		ts = []*Trade{}
	}
	writeJSON(w, 200, map[string]any{"trades": ts})
}

func (s *Sandbox) apiRefunds(w http.ResponseWriter, r *http.Request) {
	rs, err := s.Refunds(r.URL.Query().Get("out_trade_no"))
	if err != nil {
		apiError(w, 500, "%v", err)
		return
	}
	if rs == nil {
		rs = []*Refund{}
	}
	writeJSON(w, 200, map[string]any{"refunds": rs})
}

func (s *Sandbox) apiNotifications(w http.ResponseWriter, r *http.Request) {
	ns, err := s.Notifications(r.URL.Query().Get("out_trade_no"))
	if err != nil {
		apiError(w, 500, "%v", err)
		return
	}
	if ns == nil {
		ns = []*Notification{}
	}
	writeJSON(w, 200, map[string]any{"notifications": ns})
}

// apiAttempts lists attempts; with min=N (or acked=N) and wait=DURATION it long-polls until at
// least N attempts (acknowledged attempts) match, then answers; on timeout it answers with what
// there is and "complete": false.
func (s *Sandbox) apiAttempts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := AttemptFilter{Provider: q.Get("provider"), OutTradeNo: q.Get("out_trade_no"), Kind: q.Get("kind")}
	wait, _ := time.ParseDuration(q.Get("wait"))
	if wait > 10*time.Minute {
		wait = 10 * time.Minute
	}
	minN, _ := strconv.Atoi(q.Get("min"))
	minAcked, _ := strconv.Atoi(q.Get("acked"))
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	go func() {
		select {
		case <-s.stopped(): // shutting down: answer now, as at the deadline
			cancel()
		case <-ctx.Done():
		}
	}()
	as, err := s.waitFor(ctx, func() ([]*Attempt, bool, error) {
		as, err := s.Attempts(f)
		acked := 0
		for _, a := range as {
			if a.Acked {
				acked++
			}
		}
		return as, len(as) >= minN && acked >= minAcked, err
	})
	complete := err == nil
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !(errors.Is(err, context.Canceled) && r.Context().Err() == nil) {
		apiError(w, 500, "%v", err)
		return
	}
	if as == nil {
		as = []*Attempt{}
	}
	writeJSON(w, 200, map[string]any{"attempts": as, "complete": complete})
}

// apiQueries lists the query log, oldest first. Unlike the other listings it writes one record
// per line: the log holds up to 200,000 of them.
func (s *Sandbox) apiQueries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	qs := s.Queries(QueryFilter{Provider: q.Get("provider"), API: q.Get("api"), OutTradeNo: q.Get("out_trade_no")})
	var b bytes.Buffer
	b.WriteString("{\"queries\": [")
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for i := range qs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n  ")
		if err := enc.Encode(&qs[i]); err != nil {
			apiError(w, 500, "%v", err)
			return
		}
		b.Truncate(b.Len() - 1) // Encode's newline
	}
	if len(qs) > 0 {
		b.WriteByte('\n')
	}
	b.WriteString("]}\n")
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(b.Bytes())
}

// ActionRequest is the body of the control API's POST actions.
type ActionRequest struct {
	Provider     string `json:"provider,omitempty" yaml:"provider"`
	OutTradeNo   string `json:"out_trade_no,omitempty" yaml:"out_trade_no"`
	URL          string `json:"url,omitempty" yaml:"url"`                   // pay/open: a page or wap pay URL, a cashier URL, a qr_code, a code_url or h5_url
	OrderString  string `json:"order_string,omitempty" yaml:"order_string"` // pay: an Alipay app pay orderString
	PrepayID     string `json:"prepay_id,omitempty" yaml:"prepay_id"`       // pay: a WeChat prepay_id
	Amount       int64  `json:"amount,omitempty" yaml:"amount"`             // refund: fen (default: what is left)
	OutRequestNo string `json:"out_request_no,omitempty" yaml:"out_request_no"`
	Reason       string `json:"reason,omitempty" yaml:"reason"`
	Status       string `json:"status,omitempty" yaml:"status"` // refund/complete: SUCCESS, CLOSED or ABNORMAL
}

func (s *Sandbox) apiAction(w http.ResponseWriter, r *http.Request) {
	var req ActionRequest
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			apiError(w, 400, "bad JSON: %v", err)
			return
		}
	}
	action := r.PathValue("action")
	switch action {
	case "reset":
		if err := s.Reset(req.OutTradeNo); err != nil {
			apiError(w, 500, "%v", err)
			return
		}
		writeJSON(w, 200, map[string]any{"reset": true})
		return
	case "retry":
		var id int64
		if req.OutTradeNo != "" {
			t, err := s.findTrade(req.Provider, req.OutTradeNo)
			if err != nil {
				apiError(w, 404, "no trade %q", req.OutTradeNo)
				return
			}
			id = t.ID
		}
		writeJSON(w, 200, map[string]any{"due_now": s.n.retryNow(id)})
		return
	}
	t, err := s.Act(action, req)
	if err != nil {
		status := 409
		if errors.Is(err, errNotFound) {
			status = 404
		} else if errors.Is(err, errBadAction) {
			status = 400
		}
		apiError(w, status, "%v", err)
		return
	}
	writeJSON(w, 200, map[string]any{"trade": t})
}

var errBadAction = errors.New("sandbox: bad request")

func (s *Sandbox) findTrade(provider, outTradeNo string) (*Trade, error) {
	if outTradeNo == "" {
		return nil, fmt.Errorf("%w: out_trade_no is required", errBadAction)
	}
	where, args := "WHERE out_trade_no = ?", []any{outTradeNo}
	if provider != "" {
		where += " AND provider = ?"
		args = append(args, provider)
	}
	t, err := s.st.tradeWhere(where, args...)
	if errors.Is(err, errNotFound) {
		return nil, fmt.Errorf("%w: no trade %q", errNotFound, outTradeNo)
	}
	return t, err
}

// Act performs a buyer's or provider's action on a trade: "open", "pay", "fail", "close" (the
// order's timeout), "finish" (Alipay: the refund period ends), "refund". It is what the control
// API and the CLI call.
func (s *Sandbox) Act(action string, req ActionRequest) (*Trade, error) {
	if action == "pay" && req.OrderString != "" {
		status, _, memo, err := s.AlipayAppPay(req.OrderString, "9000")
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadAction, err)
		}
		if status != "9000" {
			return nil, fmt.Errorf("app pay refused: %s %s", status, memo)
		}
		f, _ := url.ParseQuery(req.OrderString)
		var bc struct {
			OutTradeNo string `json:"out_trade_no"`
		}
		json.Unmarshal([]byte(f.Get("biz_content")), &bc)
		return s.findTrade(ProviderAlipay, bc.OutTradeNo)
	}
	var t *Trade
	var err error
	switch {
	case req.URL != "":
		t, err = s.tradeFromURL(req.URL)
	case req.PrepayID != "":
		t, err = s.st.tradeWhere("WHERE provider = ? AND json_extract(data, '$.prepay_id') = ?", ProviderWechatpay, strings.TrimPrefix(req.PrepayID, "prepay_id="))
	default:
		t, err = s.findTrade(req.Provider, req.OutTradeNo)
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Reload under the lock.
	ts, err := s.st.tradesWhere("WHERE id = ?", t.ID)
	if err != nil || len(ts) == 0 {
		return nil, errNotFound
	}
	t = ts[0]
	if t.Provider == ProviderAlipayLegacy {
		return t, s.legacyAct(t, action)
	}
	switch action {
	case "open":
		if t.Provider != ProviderAlipay {
			return t, nil // WeChat orders exist from prepay on
		}
		err = s.openAlipayTrade(t)
	case "pay":
		if t.Provider == ProviderAlipay {
			err = s.payAlipayTrade(t)
		} else {
			err = s.payWxTrade(t)
		}
	case "fail":
		if t.Provider == ProviderAlipay {
			// The buyer's payment fails: the trade exists and waits (Alipay sends nothing).
			err = s.openAlipayTrade(t)
		} else {
			err = s.failWxTrade(t)
		}
	case "close", "expire":
		err = s.expireTrade(t)
	case "finish":
		if t.Provider != ProviderAlipay {
			return nil, fmt.Errorf("%w: finish is for Alipay trades", errBadAction)
		}
		err = s.finishAlipayTrade(t)
	case "refund":
		err = s.refundFromControl(t, req)
	default:
		return nil, fmt.Errorf("%w: unknown action %q", errBadAction, action)
	}
	return t, err
}

// refundFromControl refunds as if the merchant had asked (through the merchant platform).
// Caller holds s.mu.
func (s *Sandbox) refundFromControl(t *Trade, req ActionRequest) error {
	amount := req.Amount
	if amount == 0 {
		amount = t.Amount - t.RefundedAmount
	}
	if t.Provider == ProviderAlipay {
		reqNo := req.OutRequestNo
		if reqNo == "" && amount != t.Amount {
			reqNo = "sandbox" + randDigits(12)
		}
		_, _, aerr := s.alipayRefundTrade(t, amount, reqNo, req.Reason)
		if aerr != nil {
			return errors.New(aerr.subCode + " " + aerr.subMsg)
		}
		return nil
	}
	no := req.OutRequestNo
	if no == "" {
		no = "sandbox" + randDigits(12)
	}
	// A refund made at the provider (the merchant platform) is notified to the platform's refund
	// URL, which the sandbox stands in for with the payment's notify_url. (A refund asked for
	// through the API without notify_url is not notified: wxRefundTrade.)
	_, e := s.wxRefundTrade(t, amount, no, req.Reason, t.NotifyURL)
	if e != nil {
		return errors.New(e.code + " " + e.message)
	}
	return nil
}

// tradeFromURL finds (or, for an Alipay page or wap pay URL, records) the trade a buyer-facing
// URL points at.
func (s *Sandbox) tradeFromURL(raw string) (*Trade, error) {
	if strings.HasPrefix(raw, "weixin://") {
		return s.st.tradeWhere("WHERE provider = ? AND json_extract(data, '$.code_url') = ?", ProviderWechatpay, raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: bad url", errBadAction)
	}
	if strings.Contains(u.Path, "/sandbox/alipay-legacy/") {
		return s.legacyTradeFromURL(u)
	}
	for _, p := range []string{"/sandbox/alipay/cashier/", "/sandbox/wechatpay/pay/"} {
		if i := strings.Index(u.Path, p); i >= 0 {
			return s.tradeByToken(strings.Trim(u.Path[i+len(p):], "/"))
		}
	}
	if strings.HasSuffix(u.Path, "gateway.do") {
		f, err := parseForm(u.RawQuery)
		if err != nil {
			return nil, fmt.Errorf("%w: bad gateway url", errBadAction)
		}
		params := map[string]string{}
		for _, fl := range f {
			params[fl.Key] = fl.Value
		}
		req, aerr := s.verifyAlipayRequest(params)
		if aerr != nil {
			return nil, fmt.Errorf("%w: %s %s", errBadAction, aerr.subCode, aerr.subMsg)
		}
		if req.method != "alipay.trade.page.pay" && req.method != "alipay.trade.wap.pay" {
			return nil, fmt.Errorf("%w: %s is not a page or wap pay", errBadAction, req.method)
		}
		t, aerr := s.alipayOrder(req)
		if aerr != nil {
			return nil, fmt.Errorf("%w: %s %s", errBadAction, aerr.subCode, aerr.subMsg)
		}
		return t, nil
	}
	return nil, fmt.Errorf("%w: not a sandbox payment url", errBadAction)
}

func (s *Sandbox) apiRefundComplete(w http.ResponseWriter, r *http.Request) {
	var req ActionRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		apiError(w, 400, "bad JSON: %v", err)
		return
	}
	if err := s.CompleteRefund(req.OutTradeNo, req.OutRequestNo, req.Status); err != nil {
		apiError(w, 409, "%v", err)
		return
	}
	writeJSON(w, 200, map[string]any{"completed": true})
}

// CompleteRefund moves a PROCESSING WeChat refund to status (SUCCESS, CLOSED or ABNORMAL; default
// SUCCESS), or an ABNORMAL one to SUCCESS or CLOSED (as the merchant platform settles it), and
// sends its notification.
func (s *Sandbox) CompleteRefund(outTradeNo, outRefundNo, status string) error {
	if status == "" {
		status = wxSuccess
	}
	if status != wxSuccess && status != "CLOSED" && status != "ABNORMAL" {
		return fmt.Errorf("status must be SUCCESS, CLOSED or ABNORMAL")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	where, args := "WHERE out_request_no = ? AND json_extract(data, '$.provider') = ?", []any{outRefundNo, ProviderWechatpay}
	if outTradeNo != "" {
		where += " AND json_extract(data, '$.out_trade_no') = ?"
		args = append(args, outTradeNo)
	}
	rs, err := s.st.refundsWhere(where, args...)
	if err != nil {
		return err
	}
	if len(rs) == 0 {
		return fmt.Errorf("no WeChat refund %q", outRefundNo)
	}
	return s.completeWxRefundLocked(rs[len(rs)-1].ID, status)
}

func (s *Sandbox) apiGetFaults(w http.ResponseWriter, r *http.Request) {
	f, err := s.GetFaults(r.URL.Query().Get("out_trade_no"))
	if err != nil {
		apiError(w, 500, "%v", err)
		return
	}
	writeJSON(w, 200, f)
}

func (s *Sandbox) apiPutFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		apiError(w, 400, "bad faults: %v", err)
		return
	}
	if err := s.SetFaults(r.URL.Query().Get("out_trade_no"), f); err != nil {
		status := 500
		if errors.Is(err, errBadAction) {
			status = 400
		}
		apiError(w, status, "%v", err)
		return
	}
	writeJSON(w, 200, f)
}

func (s *Sandbox) apiDeleteFaults(w http.ResponseWriter, r *http.Request) {
	if err := s.SetFaults(r.URL.Query().Get("out_trade_no"), Faults{}); err != nil {
		apiError(w, 500, "%v", err)
		return
	}
	writeJSON(w, 200, Faults{})
}

func (s *Sandbox) apiRegisterApp(w http.ResponseWriter, r *http.Request) {
	var b struct {
		AppID     string `json:"app_id"`
		PublicKey string `json:"public_key"`
		SellerID  string `json:"seller_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		apiError(w, 400, "bad JSON: %v", err)
		return
	}
	pub, err := alipay.ParsePublicKey([]byte(b.PublicKey))
	if err != nil {
		apiError(w, 400, "public_key: %v", err)
		return
	}
	if err := s.RegisterAlipayApp(b.AppID, pub, b.SellerID); err != nil {
		apiError(w, 400, "%v", err)
		return
	}
	writeJSON(w, 200, map[string]any{"registered": b.AppID})
}

func (s *Sandbox) apiRegisterMerchant(w http.ResponseWriter, r *http.Request) {
	var b struct {
		MchID     string `json:"mchid"`
		AppID     string `json:"appid"`
		SerialNo  string `json:"serial_no"`
		PublicKey string `json:"public_key"`
		KeyMode   string `json:"platform_key_mode"` // public_key | certificate; omitted: unchanged (public_key if new)
	}
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		apiError(w, 400, "bad JSON: %v", err)
		return
	}
	if b.KeyMode != "" && b.KeyMode != PlatformKeyPublicKey && b.KeyMode != PlatformKeyCertificate {
		apiError(w, 400, "platform_key_mode %q: want %q or %q", b.KeyMode, PlatformKeyPublicKey, PlatformKeyCertificate)
		return
	}
	pub, err := alipay.ParsePublicKey([]byte(b.PublicKey))
	if err != nil {
		apiError(w, 400, "public_key: %v", err)
		return
	}
	if err := s.RegisterWechatMerchant(b.MchID, b.AppID, b.SerialNo, pub); err != nil {
		apiError(w, 400, "%v", err)
		return
	}
	if b.KeyMode != "" {
		if err := s.SetWechatPlatformKeyMode(b.MchID, b.KeyMode); err != nil {
			apiError(w, 400, "%v", err)
			return
		}
	}
	m, _ := s.wechatMerchant(b.MchID)
	mode := PlatformKeyPublicKey
	if m != nil && m.PlatformKeyMode != "" {
		mode = m.PlatformKeyMode
	}
	writeJSON(w, 200, map[string]any{"registered": b.MchID, "platform_key_mode": mode, "wechatpay_serial": s.wxSerial(b.MchID)})
}

// OrderRequest creates a trade directly in the sandbox, as the default app or merchant (or the
// one named) would through the provider API: for testing a notify endpoint without a merchant
// server. Products: alipay app, page, wap, precreate; wechatpay native, app, jsapi, h5.
type OrderRequest struct {
	Provider   string `json:"provider" yaml:"provider"`
	Product    string `json:"product" yaml:"product"`
	AppID      string `json:"app_id,omitempty" yaml:"app_id"` // Alipay app_id / WeChat mchid; default: the default app/merchant
	OutTradeNo string `json:"out_trade_no" yaml:"out_trade_no"`
	Amount     int64  `json:"amount" yaml:"amount"` // fen
	Subject    string `json:"subject,omitempty" yaml:"subject"`
	NotifyURL  string `json:"notify_url" yaml:"notify_url"`
	ReturnURL  string `json:"return_url,omitempty" yaml:"return_url"`
	Charset    string `json:"charset,omitempty" yaml:"charset"` // Alipay: utf-8 (default) or GBK
}

// CreateOrder records an order as if the merchant had sent it (no signature involved). Alipay
// orders start NOT_CREATED, as at Alipay, until opened or paid; WeChat orders start NOTPAY.
func (s *Sandbox) CreateOrder(o OrderRequest) (*Trade, error) {
	if o.OutTradeNo == "" || o.Amount < 1 || o.NotifyURL == "" {
		return nil, fmt.Errorf("%w: out_trade_no, amount and notify_url are required", errBadAction)
	}
	if o.Subject == "" {
		o.Subject = "sandbox order " + o.OutTradeNo
	}
	switch o.Provider {
	case ProviderAlipay:
		method := map[string]string{"app": "alipay.trade.app.pay", "page": "alipay.trade.page.pay", "wap": "alipay.trade.wap.pay", "precreate": "alipay.trade.precreate"}[o.Product]
		if method == "" {
			return nil, fmt.Errorf("%w: alipay product must be app, page, wap or precreate", errBadAction)
		}
		if o.AppID == "" {
			o.AppID = s.keys.appID
		}
		app, err := s.alipayApp(o.AppID)
		if err != nil {
			return nil, fmt.Errorf("%w: unknown app %q", errNotFound, o.AppID)
		}
		cs := o.Charset
		if cs == "" {
			cs = "utf-8"
		}
		req := &alipayReq{method: method, charset: cs, signType: "RSA2", app: app,
			params: map[string]string{"notify_url": o.NotifyURL, "return_url": o.ReturnURL},
			biz:    map[string]string{"out_trade_no": o.OutTradeNo, "total_amount": alipay.FormatAmount(o.Amount), "subject": o.Subject}}
		t, aerr := s.alipayOrder(req)
		if aerr != nil {
			return nil, fmt.Errorf("%w: %s %s", errBadAction, aerr.subCode, aerr.subMsg)
		}
		return t, nil
	case ProviderWechatpay:
		if o.Product != "native" && o.Product != "app" && o.Product != "jsapi" && o.Product != "h5" {
			return nil, fmt.Errorf("%w: wechatpay product must be native, app, jsapi or h5", errBadAction)
		}
		if o.AppID == "" {
			o.AppID = s.keys.mchID
		}
		m, err := s.wechatMerchant(o.AppID)
		if err != nil {
			return nil, fmt.Errorf("%w: unknown merchant %q", errNotFound, o.AppID)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		now := s.now()
		t := &Trade{Provider: ProviderWechatpay, AppID: m.AppIDs[0], MchID: m.MchID, OutTradeNo: o.OutTradeNo, Product: o.Product,
			Status: wxNotPay, Amount: o.Amount, Subject: o.Subject, NotifyURL: o.NotifyURL, Token: randAlnum(24), CreatedAt: now,
			TimeExpire: now.Add(7 * 24 * time.Hour), PrepayID: "wx" + now.In(alipay.Beijing()).Format("02150405") + randDigits(24),
			CodeURL: "weixin://wxpay/bizpayurl?pr=" + randAlnum(10)}
		t.CashierURL = s.cfg.BaseURL + "/sandbox/wechatpay/pay/" + t.Token
		t.Request = map[string]string{"appid": t.AppID, "description": t.Subject, "total": strconv.FormatInt(t.Amount, 10), "product": t.Product, "notify_url": t.NotifyURL}
		if err := s.st.saveTrade(t); err != nil {
			return nil, fmt.Errorf("%w: out_trade_no %q exists", errBadAction, o.OutTradeNo)
		}
		return t, nil
	case ProviderAlipayLegacy:
		return s.legacyCreateOrder(o)
	}
	return nil, fmt.Errorf("%w: provider must be alipay, wechatpay or alipay-legacy", errBadAction)
}

func (s *Sandbox) apiOrder(w http.ResponseWriter, r *http.Request) {
	var o OrderRequest
	if err := json.NewDecoder(r.Body).Decode(&o); err != nil {
		apiError(w, 400, "bad JSON: %v", err)
		return
	}
	t, err := s.CreateOrder(o)
	if err != nil {
		status := 409
		if errors.Is(err, errBadAction) {
			status = 400
		} else if errors.Is(err, errNotFound) {
			status = 404
		}
		apiError(w, status, "%v", err)
		return
	}
	writeJSON(w, 200, map[string]any{"trade": t})
}
