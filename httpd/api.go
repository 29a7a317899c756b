package httpd

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/paynotify/paynotify"
)

// createOrderRequest is the body of POST /v1/orders.
type createOrderRequest struct {
	App         string           `json:"app"`
	OutTradeNo  string           `json:"out_trade_no"`
	Amount      *json.RawMessage `json:"amount"`
	Currency    string           `json:"currency"`
	Subject     string           `json:"subject"`
	Body        string           `json:"body"`
	Channel     string           `json:"channel"`
	ExpiresIn   string           `json:"expires_in"`
	PayerOpenID string           `json:"payer_openid"`
	// PayerClientIP is the buyer's IP address: required for wechatpay.h5 (WeChat asks for it).
	PayerClientIP string `json:"payer_client_ip"`
}

// orderJSON is an order as the API shows it, with its payment parameters when just created.
type orderJSON struct {
	*paynotify.Order
	Pay json.RawMessage `json:"pay,omitempty"`
}

var (
	alipayTradeNo = regexp.MustCompile(`^[0-9A-Za-z_]{1,64}$`)
	wechatTradeNo = regexp.MustCompile(`^[0-9A-Za-z_\-|*]{6,32}$`)
	intAmount     = regexp.MustCompile(`^[1-9][0-9]{0,14}$`)
)

const tradeNoAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newTradeNo returns 24 random characters of [0-9A-Za-z], valid for both providers.
func newTradeNo() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = tradeNoAlphabet[int(b[i])%len(tradeNoAlphabet)] // 256 % 62 bias is irrelevant for an id
	}
	return string(b[:])
}

// marshalPay encodes payment parameters without HTML-escaping (a form stays readable as "<form"):
// they are data for the merchant, never embedded in our own HTML.
func marshalPay(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// decodeJSON reads a JSON body strictly: unknown fields and trailing data are errors.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.maxBody()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return paynotify.Errorf(paynotify.EINVALID, "Invalid JSON body: %v.", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return paynotify.Errorf(paynotify.EINVALID, "Invalid JSON body: trailing data.")
	}
	return nil
}

func (s *Server) maxBody() int64 {
	if s.MaxBodyBytes > 0 {
		return s.MaxBodyBytes
	}
	return 1 << 20
}

func (s *Server) app(name string) (*App, error) {
	a, ok := s.Apps[name]
	if !ok {
		return nil, paynotify.Errorf(paynotify.ENOTFOUND, "Unknown app %q.", name)
	}
	return a, nil
}

// notifyURL is where the provider posts its notifications for app: never with a query string.
func (s *Server) notifyURL(a *App) string {
	return s.PublicURL + "/notify/" + a.Provider + "/" + a.Name
}

func (s *Server) handleCreateOrder(w http.ResponseWriter, r *http.Request) {
	var req createOrderRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	o, err := s.validateOrder(&req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := s.Apps[o.App]
	log := s.log(r).With("app", o.App, "out_trade_no", o.OutTradeNo)

	// The same request again returns the stored order and pay, without calling the provider.
	if existing, err := s.Store.GetOrder(r.Context(), o.App, o.OutTradeNo); err == nil {
		s.answerExisting(w, r, existing, o)
		return
	} else if paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
		s.writeError(w, r, err)
		return
	}

	returnURL := ""
	if a.Provider == paynotify.ProviderAlipay && (o.Channel == paynotify.ChannelAlipayPage || o.Channel == paynotify.ChannelAlipayWap) {
		returnURL = s.PublicURL + "/return/alipay/" + a.Name
	}
	pay, err := a.Gateway.Pay(r.Context(), o, s.notifyURL(a), returnURL)
	if err != nil {
		log.Warn("create order at provider", "err", err)
		s.writeError(w, r, err)
		return
	}
	o.Pay = pay
	stored, created, err := s.Store.CreateOrder(r.Context(), o)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !created { // a concurrent create won
		s.answerExisting(w, r, stored, o)
		return
	}
	log.Info("order created", "channel", o.Channel, "amount", int64(o.Amount))
	writeJSON(w, http.StatusCreated, orderJSON{Order: stored, Pay: stored.Pay})
}

// answerExisting answers a create for an order that exists: 200 when it is the same request,
// 409 otherwise.
func (s *Server) answerExisting(w http.ResponseWriter, r *http.Request, existing, req *paynotify.Order) {
	if existing.Amount != req.Amount || existing.Currency != req.Currency || existing.Subject != req.Subject || existing.Channel != req.Channel {
		s.writeError(w, r, paynotify.Errorf(paynotify.ECONFLICT, "Order %s exists with different content.", req.OutTradeNo))
		return
	}
	writeJSON(w, http.StatusOK, orderJSON{Order: existing, Pay: existing.Pay})
}

// validateOrder checks a create request and returns the new order.
func (s *Server) validateOrder(req *createOrderRequest) (*paynotify.Order, error) {
	invalid := func(format string, args ...any) error { return paynotify.Errorf(paynotify.EINVALID, format, args...) }
	a, ok := s.Apps[req.App]
	if !ok {
		return nil, invalid("Unknown app %q.", req.App)
	}
	if req.Amount == nil || !intAmount.Match(*req.Amount) {
		return nil, invalid("amount must be a positive integer number of fen (1 yuan = 100).")
	}
	amount, _ := strconv.ParseInt(string(*req.Amount), 10, 64)
	if req.Currency == "" {
		req.Currency = "CNY"
	}
	if req.Currency != "CNY" {
		return nil, invalid("currency must be CNY.")
	}
	if req.Subject == "" || len([]rune(req.Subject)) > 127 {
		return nil, invalid("subject is required, at most 127 characters.")
	}
	if len([]rune(req.Body)) > 128 {
		return nil, invalid("body is at most 128 characters.")
	}
	if paynotify.ChannelProvider(req.Channel) == "" {
		return nil, invalid("Unknown channel %q.", req.Channel)
	}
	if paynotify.ChannelProvider(req.Channel) != a.Provider {
		return nil, invalid("Channel %s does not belong to app %s (a %s app).", req.Channel, a.Name, a.Provider)
	}
	if req.Channel == paynotify.ChannelWechatH5 && net.ParseIP(req.PayerClientIP) == nil {
		return nil, invalid("payer_client_ip (the buyer's IP address) is required for wechatpay.h5.")
	}
	if req.Channel == paynotify.ChannelWechatJSAPI && req.PayerOpenID == "" {
		return nil, invalid("payer_openid is required for wechatpay.jsapi.")
	}
	expiresIn := 2 * time.Hour
	if req.ExpiresIn != "" {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d < time.Minute || d > 15*24*time.Hour {
			return nil, invalid("expires_in must be a duration from 1m to 360h (15 days), like \"30m\".")
		}
		expiresIn = d
	}
	if req.OutTradeNo == "" {
		req.OutTradeNo = newTradeNo()
	}
	re := alipayTradeNo
	if a.Provider == paynotify.ProviderWechatpay {
		re = wechatTradeNo
	}
	if !re.MatchString(req.OutTradeNo) {
		return nil, invalid("out_trade_no %q is not valid for %s (%s).", req.OutTradeNo, a.Provider, re)
	}
	now := s.now().UTC().Truncate(time.Second)
	return &paynotify.Order{
		App: a.Name, OutTradeNo: req.OutTradeNo, Channel: req.Channel, Status: paynotify.StatusPending,
		Amount: paynotify.Amount(amount), Currency: req.Currency, Subject: req.Subject, Body: req.Body,
		PayerOpenID: req.PayerOpenID, PayerClientIP: req.PayerClientIP, Version: 1, CreatedAt: now, ExpiresAt: now.Add(expiresIn),
	}, nil
}

func (s *Server) handleGetOrder(w http.ResponseWriter, r *http.Request) {
	app, otn := r.PathValue("app"), r.PathValue("out_trade_no")
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 60*time.Second {
			s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "wait must be a duration up to 60s, like \"30s\"."))
			return
		}
		wait = d
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := s.PollInterval
	if poll <= 0 {
		poll = time.Second
	}
	stopping := s.stopped()
	for {
		select {
		case <-stopping:
			wait = 0 // shutting down: answer with the order as it is
		default:
		}
		changed := s.waitChange(app, otn) // registered before the read, so no change is missed
		o, err := s.Store.GetOrder(r.Context(), app, otn)
		if err != nil || o.Status != paynotify.StatusPending || wait == 0 {
			s.dropWaiter(app, otn, changed)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, orderJSON{Order: o})
			return
		}
		tick := time.NewTimer(poll)
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
			wait = 0
		case <-stopping:
			wait = 0
		case <-r.Context().Done():
			tick.Stop()
			s.dropWaiter(app, otn, changed)
			return
		}
		tick.Stop()
		s.dropWaiter(app, otn, changed)
	}
}

// dropWaiter forgets a long-poll channel that is no longer waited on.
func (s *Server) dropWaiter(app, outTradeNo string, c chan struct{}) {
	key := app + "\x00" + outTradeNo
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	chans := s.waiters[key]
	for i, x := range chans {
		if x == c {
			chans = append(chans[:i], chans[i+1:]...)
			break
		}
	}
	if len(chans) == 0 {
		delete(s.waiters, key)
	} else {
		s.waiters[key] = chans
	}
}

func (s *Server) handleListOrders(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"), 100, 1000)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	orders, err := s.Store.ListOrders(r.Context(), paynotify.OrderFilter{App: q.Get("app"), Status: paynotify.OrderStatus(q.Get("status")), Limit: limit})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if orders == nil {
		orders = []*paynotify.Order{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"orders": orders})
}

func (s *Server) handleCloseOrder(w http.ResponseWriter, r *http.Request) {
	a, err := s.app(r.PathValue("app"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	o, err := s.Store.GetOrder(r.Context(), a.Name, r.PathValue("out_trade_no"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	switch o.Status {
	case paynotify.StatusClosed:
		writeJSON(w, http.StatusOK, orderJSON{Order: o})
		return
	case paynotify.StatusPending:
	default:
		s.writeError(w, r, paynotify.Errorf(paynotify.ECONFLICT, "Order %s is %s: only a pending order can be closed.", o.OutTradeNo, o.Status))
		return
	}
	fact, err := a.Gateway.Close(r.Context(), o)
	if err != nil {
		s.log(r).Warn("close at provider", "app", a.Name, "out_trade_no", o.OutTradeNo, "err", err)
		s.writeError(w, r, err)
		return
	}
	res, err := s.Processor.ApplyFact(r.Context(), &a.App, fact)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if res.Verdict == paynotify.VerdictAnomaly {
		// The provider's answer disagrees with our order (say, another amount): nothing changed.
		s.log(r).Warn("close: provider fact disagrees with the order", "app", a.Name, "out_trade_no", o.OutTradeNo, "reason", res.Reason)
		s.writeError(w, r, &paynotify.Error{Code: paynotify.ECONFLICT, Message: fmt.Sprintf("The provider's state of order %s disagrees with ours (%s): nothing was changed.", o.OutTradeNo, res.Reason)})
		return
	}
	o = res.Order
	if o == nil || o.Status == paynotify.StatusPending {
		s.writeError(w, r, paynotify.Errorf(paynotify.EINTERNAL, "close not applied"))
		return
	}
	if o.Status != paynotify.StatusClosed {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		writeJSON(w, http.StatusConflict, map[string]any{
			"error": map[string]any{"code": paynotify.ECONFLICT, "message": fmt.Sprintf("Order %s was paid: it cannot be closed.", o.OutTradeNo)},
			"order": o,
		})
		return
	}
	writeJSON(w, http.StatusOK, orderJSON{Order: o})
}

type createRefundRequest struct {
	Amount       *json.RawMessage `json:"amount"`
	OutRequestNo string           `json:"out_request_no"`
	Reason       string           `json:"reason"`
}

func (s *Server) handleCreateRefund(w http.ResponseWriter, r *http.Request) {
	a, err := s.app(r.PathValue("app"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req createRefundRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Amount == nil || !intAmount.Match(*req.Amount) {
		s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "amount must be a positive integer number of fen."))
		return
	}
	amount, _ := strconv.ParseInt(string(*req.Amount), 10, 64)
	if req.OutRequestNo == "" {
		req.OutRequestNo = newTradeNo()
	}
	if !wechatTradeNo.MatchString(req.OutRequestNo) {
		s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "out_request_no must match %s.", wechatTradeNo))
		return
	}
	if len([]rune(req.Reason)) > 80 {
		s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "reason is at most 80 characters."))
		return
	}
	ctx := r.Context()
	o, err := s.Store.GetOrder(ctx, a.Name, r.PathValue("out_trade_no"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	refunds, err := s.Store.ListRefunds(ctx, a.Name, o.OutTradeNo)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var existing *paynotify.Refund
	var outstanding, pending paynotify.Amount // refunds not failed, and pending, other than this one
	for _, x := range refunds {
		switch {
		case x.OutRequestNo == req.OutRequestNo:
			existing = x
		case x.Status == paynotify.RefundPending:
			pending += x.Amount
			outstanding += x.Amount
		case x.Status == paynotify.RefundSucceeded:
			outstanding += x.Amount
		}
	}
	// A fast answer for the usual case; the store checks again, atomically with the insert.
	if existing == nil {
		if o.Status != paynotify.StatusPaid && o.Status != paynotify.StatusFinished {
			s.writeError(w, r, paynotify.Errorf(paynotify.ECONFLICT, "Order %s is %s: only a paid order can be refunded.", o.OutTradeNo, o.Status))
			return
		}
		if paynotify.RefundWouldExceed(int64(o.Amount), int64(o.RefundedAmount), int64(outstanding), int64(pending), amount) {
			s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "Refunds would exceed the order amount (%d fen, %d already refunded or pending).", o.Amount, max(outstanding, o.RefundedAmount+pending)))
			return
		}
	}
	now := s.now().UTC()
	// Recorded before the provider is called: a crash or a retry never refunds twice.
	rf, created, err := s.Store.CreateRefund(ctx, &paynotify.Refund{App: a.Name, OutTradeNo: o.OutTradeNo, OutRequestNo: req.OutRequestNo,
		Amount: paynotify.Amount(amount), Reason: req.Reason, Status: paynotify.RefundPending, CreatedAt: now, UpdatedAt: now})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if rf.Amount != paynotify.Amount(amount) {
		s.writeError(w, r, paynotify.Errorf(paynotify.ECONFLICT, "Refund %s exists with a different amount.", rf.OutRequestNo))
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	if rf.Status != paynotify.RefundPending {
		writeJSON(w, status, rf)
		return
	}
	// Pending: ask the provider (again). Both providers are idempotent by out_request_no.
	fact, err := a.Gateway.Refund(ctx, o, rf)
	if err != nil {
		s.log(r).Warn("refund at provider", "app", a.Name, "out_trade_no", o.OutTradeNo, "out_request_no", rf.OutRequestNo, "err", err)
		var pe *paynotify.Error
		if errors.As(err, &pe) && pe.Code == paynotify.EPROVIDER {
			// Refused: record the failure, then report it.
			failed := paynotify.Fact{Kind: paynotify.FactRefundFailed, OutTradeNo: o.OutTradeNo, RefundRequestNo: rf.OutRequestNo, RefundAmount: rf.Amount}
			if _, aerr := s.Processor.ApplyFact(ctx, &a.App, failed); aerr != nil {
				s.writeError(w, r, aerr)
				return
			}
		}
		s.writeError(w, r, err)
		return
	}
	if fact != nil {
		if _, err := s.Processor.ApplyFact(ctx, &a.App, *fact); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	s.writeRefund(w, r, status, a.Name, o.OutTradeNo, rf.OutRequestNo)
}

// writeRefund answers with the refund as stored now.
func (s *Server) writeRefund(w http.ResponseWriter, r *http.Request, status int, app, otn, no string) {
	refunds, err := s.Store.ListRefunds(r.Context(), app, otn)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	for _, x := range refunds {
		if x.OutRequestNo == no {
			writeJSON(w, status, x)
			return
		}
	}
	s.writeError(w, r, paynotify.Errorf(paynotify.EINTERNAL, "refund %s vanished", no))
}

func (s *Server) handleListRefunds(w http.ResponseWriter, r *http.Request) {
	app, otn := r.PathValue("app"), r.PathValue("out_trade_no")
	if _, err := s.Store.GetOrder(r.Context(), app, otn); err != nil {
		s.writeError(w, r, err)
		return
	}
	refunds, err := s.Store.ListRefunds(r.Context(), app, otn)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if refunds == nil {
		refunds = []*paynotify.Refund{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"refunds": refunds})
}

func parseLimit(v string, def, max int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, paynotify.Errorf(paynotify.EINVALID, "limit must be 1 to %d.", max)
	}
	return n, nil
}

func (s *Server) handleListEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"), 100, 1000)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	after := q.Get("after")
	var seq int64
	if after != "" {
		seq, err = strconv.ParseInt(after, 10, 64)
		if err != nil || seq < 0 {
			s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "after must be a cursor returned as next."))
			return
		}
	}
	events, err := s.Store.ListEvents(r.Context(), paynotify.EventFilter{After: seq, App: q.Get("app"), Limit: limit})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	next := after
	if next == "" {
		next = "0"
	}
	if len(events) > 0 {
		next = strconv.FormatInt(events[len(events)-1].Seq, 10)
	} else {
		events = []*paynotify.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "next": next})
}

func (s *Server) handleListNotifications(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"), 100, 1000)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	verdict := paynotify.Verdict(q.Get("verdict"))
	switch verdict {
	case "", paynotify.VerdictAccepted, paynotify.VerdictDuplicate, paynotify.VerdictRejected, paynotify.VerdictAnomaly, paynotify.VerdictError:
	default:
		s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "Unknown verdict %q.", verdict))
		return
	}
	list, err := s.Store.ListEvidence(r.Context(), paynotify.EvidenceFilter{App: q.Get("app"), OutTradeNo: q.Get("out_trade_no"), Verdict: verdict, Limit: limit})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []*paynotify.Evidence{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"notifications": list})
}
