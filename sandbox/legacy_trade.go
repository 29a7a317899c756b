package sandbox

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/paynotify/paynotify/alipay"
)

// legacyPaid reports whether a legacy trade status means the buyer has paid.
func legacyPaid(status string) bool {
	switch status {
	case alipay.TradeSuccess, alipay.TradeFinished, LegacyWaitSellerSendGoods, LegacyWaitBuyerConfirmGoods:
		return true
	}
	return false
}

func legacyEscrow(t *Trade) bool {
	return t.Product == LegacyProductEscrow || t.Product == LegacyProductDual
}

// newLegacyTradeNo makes a 28-digit trade_no: the Beijing date, "21001004", 12 digits.
func newLegacyTradeNo(now time.Time) string {
	return now.In(alipay.Beijing()).Format("20060102") + "21001004" + randDigits(12)
}

// newLegacyNotifyID makes an async notification's notify_id: 34 characters (docs/alipay-legacy.md
// §9.1).
func newLegacyNotifyID() string {
	return strings.ToLower(randHex(16)) + randFrom("0123456789abcdefghijklmnopqrstuvwxyz", 2)
}

// newLegacyReturnID makes a return visit's notify_id: base64 text holding '/' and '+', which the
// return URL carries double-encoded (docs/alipay-legacy.md §10).
func newLegacyReturnID() string {
	for {
		b := make([]byte, 45)
		rand.Read(b)
		id := base64.StdEncoding.EncodeToString(b)
		if strings.Contains(id, "/") && strings.Contains(id, "+") {
			return id
		}
	}
}

// legacyOpen creates the trade at Alipay (the buyer is on the cashier): WAIT_BUYER_PAY with a
// trade_no; the escrow services notify it. A trade already created is left alone. Caller holds
// s.mu.
func (s *Sandbox) legacyOpen(t *Trade) error {
	if t.Status != StatusNotCreated {
		if t.ID == 0 {
			return s.st.saveTrade(t)
		}
		return nil
	}
	if !t.ClosedAt.IsZero() {
		return errors.New("the order is closed")
	}
	now := s.now()
	t.Status, t.OpenedAt, t.TradeNo = alipay.TradeWaitBuyerPay, now, newLegacyTradeNo(now)
	t.BuyerID, t.BuyerLogonID = "2088"+randDigits(12), "buyer"+randDigits(4)+"@sandbox.example"
	if t.TimeoutExpress != "" && t.TimeExpire.IsZero() {
		t.TimeExpire = now.Add(parseTimeoutExpress(t.TimeoutExpress))
	}
	if err := s.st.saveTrade(t); err != nil {
		return err
	}
	if legacyEscrow(t) {
		return s.legacyNotify(t, "create")
	}
	return nil
}

// legacyExpireIfDue closes an unpaid trade whose it_b_pay / pay_expire has passed. Caller holds
// s.mu.
func (s *Sandbox) legacyExpireIfDue(t *Trade) {
	if !t.TimeExpire.IsZero() && !s.now().Before(t.TimeExpire) && (t.Status == alipay.TradeWaitBuyerPay || t.Status == StatusNotCreated) {
		s.legacyClose(t)
	}
}

// legacyClose closes an unpaid trade: TRADE_CLOSED, notified for the escrow services (即时到账 notifies
// a close only when the merchant asked for it, docs/alipay-legacy.md §9.2). Caller holds s.mu.
func (s *Sandbox) legacyClose(t *Trade) error {
	opened := t.Status == alipay.TradeWaitBuyerPay
	if !opened && t.Status != StatusNotCreated {
		return fmt.Errorf("a %s trade cannot be closed", t.Status)
	}
	t.Status, t.ClosedAt = alipay.TradeClosed, s.now()
	if err := s.st.saveTrade(t); err != nil {
		return err
	}
	if opened && legacyEscrow(t) {
		return s.legacyNotify(t, "close")
	}
	return nil
}

// legacyAct performs action on a legacy trade (see Act). Caller holds s.mu.
func (s *Sandbox) legacyAct(t *Trade, action string) error {
	s.legacyExpireIfDue(t)
	switch action {
	case "open", "fail":
		// fail: the buyer's payment fails; the trade exists and waits, nothing is notified.
		return s.legacyOpen(t)
	case "pay":
		return s.legacyPay(t, false)
	case "pay_instant":
		if t.Product != LegacyProductDual {
			return fmt.Errorf("%w: pay_instant is for trade_create_by_buyer trades", errBadAction)
		}
		return s.legacyPay(t, true)
	case "send", "send_goods":
		if !legacyEscrow(t) {
			return fmt.Errorf("%w: send is for escrow trades", errBadAction)
		}
		if t.Status != LegacyWaitSellerSendGoods {
			return fmt.Errorf("a %s trade cannot be shipped", t.Status)
		}
		t.Status = LegacyWaitBuyerConfirmGoods
		if err := s.st.saveTrade(t); err != nil {
			return err
		}
		return s.legacyNotify(t, "send")
	case "confirm", "confirm_goods", "finish":
		switch {
		case legacyEscrow(t) && t.Status == LegacyWaitBuyerConfirmGoods:
		case !legacyEscrow(t) && t.Status == alipay.TradeSuccess:
		default:
			return fmt.Errorf("a %s %s trade cannot finish", t.Status, t.Product)
		}
		t.Status, t.ClosedAt = alipay.TradeFinished, s.now()
		if err := s.st.saveTrade(t); err != nil {
			return err
		}
		return s.legacyNotify(t, "finish")
	case "close", "expire":
		return s.legacyClose(t)
	case "refund":
		return fmt.Errorf("%w: the legacy sandbox has no refund service (the spec documents none for these merchants)", errBadAction)
	}
	return fmt.Errorf("%w: unknown action %q for a legacy trade (open, pay, pay_instant, fail, send, confirm, finish, close)", errBadAction, action)
}

// legacyPay pays an open (or not yet open) trade: TRADE_SUCCESS for 即时到账 and WAP,
// WAIT_SELLER_SEND_GOODS for the escrow services, TRADE_FINISHED for a trade_create_by_buyer
// paid instantly. Caller holds s.mu.
func (s *Sandbox) legacyPay(t *Trade, instant bool) error {
	if err := s.legacyOpen(t); err != nil {
		return err
	}
	switch {
	case t.Status == alipay.TradeClosed:
		return errors.New("the trade is closed")
	case t.Status != alipay.TradeWaitBuyerPay:
		return errors.New("the trade is already paid")
	}
	now := s.now()
	t.PaidAt = now
	switch {
	case instant:
		t.Status, t.ClosedAt = alipay.TradeFinished, now
	case legacyEscrow(t):
		t.Status = LegacyWaitSellerSendGoods
	default:
		t.Status = alipay.TradeSuccess
	}
	if s.faultsFor(t.OutTradeNo).DoublePay {
		t.DoublePay = &Payment{TradeNo: newLegacyTradeNo(now), Amount: t.Amount, PaidAt: now}
	}
	if err := s.st.saveTrade(t); err != nil {
		return err
	}
	first, err := s.legacyNotification(t, "payment")
	if err != nil || first == nil {
		return err
	}
	if err := s.n.enqueue(first); err != nil {
		return err
	}
	if t.DoublePay == nil {
		return nil
	}
	// The double_pay fault's second payment: its own trade_no and notify_id, sent once the
	// first payment's notification has made its first attempt.
	c := *t
	c.TradeNo, c.PaidAt, c.DoublePay = t.DoublePay.TradeNo, t.DoublePay.PaidAt, nil
	second, err := s.legacyNotification(&c, "payment")
	if err != nil {
		return err
	}
	second.DoublePay, second.AfterID = true, first.ID
	return s.n.enqueue(second)
}

// legacyNotify builds and enqueues a notification of t. Caller holds s.mu.
func (s *Sandbox) legacyNotify(t *Trade, kind string) error {
	note, err := s.legacyNotification(t, kind)
	if err != nil || note == nil {
		return err
	}
	return s.n.enqueue(note)
}

// legacyReturnURL builds the signed browser return of a paid trade: the mapi return_url
// (docs/alipay-legacy.md §10) or the WAP call_back_url (docs/alipay-legacy.md §11.4); "" when the
// trade has none. Caller holds s.mu.
func (s *Sandbox) legacyReturnURL(t *Trade) (string, error) {
	if t.ReturnURL == "" {
		return "", nil
	}
	p, err := s.legacyPartner(t.AppID)
	if err != nil {
		return "", err
	}
	cs := t.Charset
	var fs []field
	if t.Product == LegacyProductWap {
		fs = []field{{"out_trade_no", t.OutTradeNo}, {"request_token", t.Request["request_token"]}, {"result", "success"}, {"trade_no", t.TradeNo}}
	} else {
		rid := legacyReturnID{NotifyID: newLegacyReturnID(), Partner: t.AppID, TradeID: t.ID, OutTradeNo: t.OutTradeNo, TradeNo: t.TradeNo, IssuedAt: s.now()}
		if err := s.st.putKV("legacy_return_ids", "notify_id", rid.NotifyID, rid); err != nil {
			return "", err
		}
		fs = []field{{"body", t.Body}, {"buyer_email", t.BuyerLogonID}, {"buyer_id", t.BuyerID}, {"exterface", t.Request["service"]},
			{"extra_common_param", t.Passback}, {"is_success", "T"},
			// The value (once decoded) is the id URL-encoded: on the wire it is encoded twice.
			{"notify_id", url.QueryEscape(rid.NotifyID)},
			{"notify_time", alipay.FormatTime(s.now())}, {"notify_type", "trade_status_sync"}, {"out_trade_no", t.OutTradeNo},
			{"payment_type", legacyOr(t.Request["payment_type"], "1")}, {"seller_email", p.SellerEmail}, {"seller_id", t.SellerID},
			{"subject", t.Subject}, {"total_fee", alipay.FormatAmount(t.Amount)}, {"trade_no", t.TradeNo}, {"trade_status", t.Status}}
	}
	var sent []field
	for _, f := range fs {
		if f.Value != "" {
			sent = append(sent, field{f.Key, toCharset(f.Value, cs)})
		}
	}
	st := t.SignType
	sig, err := s.legacySignWith(p, st, legacySortedString(sent))
	if err != nil {
		return "", err
	}
	sent = append(sent, field{"sign", sig})
	if t.Product != LegacyProductWap {
		sent = append(sent, field{"sign_type", st})
	}
	sep := "?"
	if strings.Contains(t.ReturnURL, "?") {
		sep = "&"
	}
	return t.ReturnURL + sep + encodeForm(sent), nil
}

func legacyOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// ---- cashier ----

func (s *Sandbox) renderLegacyCashier(w http.ResponseWriter, t *Trade, msg string) {
	base := s.cfg.BaseURL + "/sandbox/alipay-legacy/cashier/" + t.Token + "/"
	d := pageData{Title: "Alipay sandbox cashier (legacy " + t.Product + ")", Msg: msg, Trade: t}
	switch t.Status {
	case StatusNotCreated:
		d.Actions = []pageAction{{base + "open", "Log in (creates the trade)"}, {base + "pay", "Pay"}, {base + "cancel", "Cancel"}, {base + "close", "Let it expire"}}
	case alipay.TradeWaitBuyerPay:
		d.Actions = []pageAction{{base + "pay", "Pay"}}
		if t.Product == LegacyProductDual {
			d.Actions = []pageAction{{base + "pay", "Pay into escrow (担保交易)"}, {base + "pay_instant", "Pay at once (即时到账)"}}
		}
		d.Actions = append(d.Actions, pageAction{base + "cancel", "Cancel"}, pageAction{base + "close", "Let it expire"})
	case LegacyWaitSellerSendGoods:
		d.Actions = []pageAction{{base + "send", "Seller ships the goods"}}
	case LegacyWaitBuyerConfirmGoods:
		d.Actions = []pageAction{{base + "confirm", "Buyer confirms receipt"}}
	case alipay.TradeSuccess:
		d.Actions = []pageAction{{base + "finish", "End the refund period (TRADE_FINISHED)"}}
	}
	renderPage(w, d)
}

func (s *Sandbox) handleLegacyCashier(w http.ResponseWriter, r *http.Request) {
	t, err := s.tradeByToken(r.PathValue("token"))
	if err != nil || t.Provider != ProviderAlipayLegacy {
		http.NotFound(w, r)
		return
	}
	s.renderLegacyCashier(w, t, "")
}

func (s *Sandbox) handleLegacyCashierAction(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	s.mu.Lock()
	t, err := s.tradeByToken(r.PathValue("token"))
	if err != nil || t.Provider != ProviderAlipayLegacy {
		s.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	var msg, redirect string
	switch action {
	case "cancel":
		msg = "The buyer left the cashier; the order can still be paid."
		redirect = t.Request["merchant_url"] // WAP: "用户付款中途退出返回商户的地址"
	default:
		err = s.legacyAct(t, action)
		msg = "Done: " + t.Status
		if err == nil && (action == "pay" || action == "pay_instant") {
			redirect, err = s.legacyReturnURL(t)
		}
	}
	s.mu.Unlock()
	if err != nil {
		msg = "Refused: " + err.Error()
	} else if redirect != "" {
		http.Redirect(w, r, redirect, http.StatusFound)
		return
	}
	s.renderLegacyCashier(w, t, msg)
}

// LegacyPay pays a legacy order as its buyer's browser would, without a browser: payURL is a
// create_direct_pay_by_user (or escrow service) gateway.do URL signed by the merchant, a WAP
// authAndExecute URL, or a legacy cashier URL. It returns the trade and the signed return_url /
// call_back_url the browser would be sent to ("" when the order has none). Sandbox.Act("pay",
// ActionRequest{URL: payURL}) does the same without the return URL.
func (s *Sandbox) LegacyPay(payURL string) (*Trade, string, error) {
	u, err := url.Parse(payURL)
	if err != nil {
		return nil, "", fmt.Errorf("%w: bad url", errBadAction)
	}
	t, err := s.legacyTradeFromURL(u)
	if err != nil {
		return nil, "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ts, err := s.st.tradesWhere("WHERE id = ?", t.ID)
	if err != nil || len(ts) == 0 {
		return nil, "", errNotFound
	}
	t = ts[0]
	if err := s.legacyAct(t, "pay"); err != nil {
		return t, "", err
	}
	ret, err := s.legacyReturnURL(t)
	return t, ret, err
}

// legacyTradeFromURL finds (and for a gateway URL, creates and opens, as the buyer's visit
// would) the trade a legacy buyer-facing URL points at. Called by tradeFromURL.
func (s *Sandbox) legacyTradeFromURL(u *url.URL) (*Trade, error) {
	const prefix = "/sandbox/alipay-legacy/"
	i := strings.Index(u.Path, prefix)
	if i < 0 {
		return nil, fmt.Errorf("%w: not a legacy sandbox url", errBadAction)
	}
	rest := u.Path[i+len(prefix):]
	if tok, ok := strings.CutPrefix(rest, "cashier/"); ok {
		t, err := s.tradeByToken(strings.Trim(tok, "/"))
		if err != nil || t.Provider != ProviderAlipayLegacy {
			return nil, fmt.Errorf("%w: no legacy trade at %s", errNotFound, u.Path)
		}
		return t, nil
	}
	f, err := parseForm(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: bad query: %v", errBadAction, err)
	}
	raw := map[string]string{}
	for _, fl := range f {
		raw[fl.Key] = fl.Value
	}
	var t *Trade
	var lerr *legacyError
	switch rest {
	case "gateway.do":
		t, lerr = s.legacyMapiOrder(raw)
	case "wap/rest.htm":
		if raw["service"] != "alipay.wap.auth.authAndExecute" {
			return nil, fmt.Errorf("%w: a WAP pay URL is an alipay.wap.auth.authAndExecute request", errBadAction)
		}
		t, lerr = s.legacyAuthExecute(raw)
	default:
		return nil, fmt.Errorf("%w: not a legacy pay url", errBadAction)
	}
	if lerr != nil {
		return nil, fmt.Errorf("%w: %v", errBadAction, lerr)
	}
	return t, nil
}

// legacyCreateOrder records a legacy order as if the merchant had sent it, without a signature
// (Sandbox.CreateOrder with provider alipay-legacy; products direct, dual, escrow, wap). The mapi
// products start WAIT_BUYER_PAY (as after the buyer's first visit), wap NOT_CREATED with a
// request_token. Orders are signed MD5 when the partner has an MD5 key, else RSA (0001).
func (s *Sandbox) legacyCreateOrder(o OrderRequest) (*Trade, error) {
	switch o.Product {
	case LegacyProductDirect, LegacyProductDual, LegacyProductEscrow, LegacyProductWap:
	default:
		return nil, fmt.Errorf("%w: alipay-legacy product must be direct, dual, escrow or wap", errBadAction)
	}
	if o.AppID == "" {
		o.AppID = s.keys.legacy.partner
	}
	p, err := s.legacyPartner(o.AppID)
	if err != nil {
		return nil, fmt.Errorf("%w: unknown partner %q", errNotFound, o.AppID)
	}
	cs, ok := legacyCharset(o.Charset, "utf-8")
	if !ok {
		return nil, fmt.Errorf("%w: charset must be utf-8 or gbk", errBadAction)
	}
	st := "MD5"
	if p.MD5Key == "" {
		st = "RSA"
		if o.Product == LegacyProductWap {
			st = "0001"
		}
	}
	amt := alipay.FormatAmount(o.Amount)
	req := map[string]string{"partner": p.Partner, "out_trade_no": o.OutTradeNo, "subject": o.Subject, "payment_type": "1",
		"notify_url": o.NotifyURL, "return_url": o.ReturnURL, "seller_email": p.SellerEmail, "_input_charset": cs}
	switch o.Product {
	case LegacyProductDirect:
		req["service"], req["total_fee"] = "create_direct_pay_by_user", amt
	case LegacyProductDual, LegacyProductEscrow:
		req["service"] = map[string]string{LegacyProductDual: "trade_create_by_buyer", LegacyProductEscrow: "create_partner_trade_by_buyer"}[o.Product]
		req["price"], req["quantity"], req["logistics_fee"], req["logistics_type"], req["logistics_payment"] = amt, "1", "0.00", "EXPRESS", "SELLER_PAY"
	case LegacyProductWap:
		req = map[string]string{"partner": p.Partner, "service": "alipay.wap.trade.create.direct", "sec_id": st, "out_trade_no": o.OutTradeNo,
			"subject": o.Subject, "total_fee": amt, "notify_url": o.NotifyURL, "call_back_url": o.ReturnURL, "seller_account_name": p.SellerEmail,
			"_input_charset": cs, "request_token": newLegacyRequestToken(s.now())}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &Trade{Provider: ProviderAlipayLegacy, AppID: p.Partner, SellerID: p.Partner, OutTradeNo: o.OutTradeNo, Product: o.Product,
		Status: StatusNotCreated, Amount: o.Amount, Subject: o.Subject, NotifyURL: o.NotifyURL, ReturnURL: o.ReturnURL, Charset: cs,
		SignType: st, Token: randAlnum(24), CreatedAt: s.now(), Request: req}
	t.CashierURL = s.cfg.BaseURL + "/sandbox/alipay-legacy/cashier/" + t.Token
	if err := s.st.saveTrade(t); err != nil {
		return nil, fmt.Errorf("%w: out_trade_no %q exists", errBadAction, o.OutTradeNo)
	}
	if o.Product != LegacyProductWap {
		if err := s.legacyOpen(t); err != nil {
			return nil, err
		}
	}
	return t, nil
}
