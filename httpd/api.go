package httpd

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/paynotify/paynotify"
)

// createOrderRequest is the body of POST /v1/orders.
type createOrderRequest struct {
	App string `json:"app"`
	// OutTradeNo and Currency may be left out (a generated number, CNY); present, they must
	// not be empty, as docs/openapi.yaml says.
	OutTradeNo  *string          `json:"out_trade_no"`
	Amount      *json.RawMessage `json:"amount"`
	Currency    *string          `json:"currency"`
	Subject     string           `json:"subject"`
	Body        string           `json:"body"`
	Channel     string           `json:"channel"`
	ExpiresIn   string           `json:"expires_in"`
	PayerOpenID string           `json:"payer_openid"`
	// PayerClientIP is the buyer's IP address: required for wechatpay.h5 (WeChat asks for it).
	PayerClientIP string `json:"payer_client_ip"`
}

// orderJSON is an order as the API shows it: with its reconciliation schedule, and with its
// payment parameters when just created or read while pending.
type orderJSON struct {
	*paynotify.Order
	// NextCheckAt is when the reconciliation next looks at the order (docs/reconciliation.md).
	NextCheckAt *time.Time `json:"next_check_at"`
	// Checks is how many times the provider was queried about it.
	Checks int             `json:"checks"`
	Pay    json.RawMessage `json:"pay,omitempty"`
}

// orderView is the JSON of an order, with pay (nil for none).
func orderView(o *paynotify.Order, pay json.RawMessage) orderJSON {
	return orderJSON{Order: o, NextCheckAt: o.NextCheckAt, Checks: o.Checks, Pay: pay}
}

// deref returns *p, or "" for nil.
func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// intAmount is a JSON amount: a positive integer of fen, nothing else (no fraction, no exponent).
var intAmount = regexp.MustCompile(`^[1-9][0-9]{0,14}$`)

func (s *Server) maxBody() int64 {
	if s.MaxBodyBytes > 0 {
		return s.MaxBodyBytes
	}
	return 1 << 20
}

// parseAmount reads a JSON amount: a positive integer number of fen.
func parseAmount(raw *json.RawMessage, what string) (paynotify.Amount, error) {
	if raw == nil || !intAmount.Match(*raw) {
		return 0, paynotify.Errorf(paynotify.EINVALID, "%s must be a positive integer number of fen (1 yuan = 100).", what)
	}
	n, _ := strconv.ParseInt(string(*raw), 10, 64)
	return paynotify.Amount(n), nil
}

func (s *Server) handleCreateOrder(w http.ResponseWriter, r *http.Request) {
	var req createOrderRequest
	if err := s.decodeObject(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	amount, err := parseAmount(req.Amount, "amount")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var expiresIn time.Duration
	if req.ExpiresIn != "" {
		if expiresIn, err = time.ParseDuration(req.ExpiresIn); err != nil || expiresIn <= 0 {
			s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "expires_in must be a duration from 1m to 360h (15 days), like \"30m\"."))
			return
		}
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"out_trade_no", req.OutTradeNo}, {"currency", req.Currency}} {
		if f.v != nil && *f.v == "" {
			s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "%s is empty: leave it out for the default.", f.name))
			return
		}
	}
	o, created, err := s.Service.CreateOrder(r.Context(), paynotify.CreateOrderRequest{App: req.App, OutTradeNo: deref(req.OutTradeNo),
		Amount: amount, Currency: deref(req.Currency), Subject: req.Subject, Body: req.Body, Channel: req.Channel, ExpiresIn: expiresIn,
		PayerOpenID: req.PayerOpenID, PayerClientIP: req.PayerClientIP})
	if err != nil && o != nil && paynotify.ErrorCode(err) == paynotify.ECONFLICT {
		// Paid already at the provider: the conflict carries the order as stored.
		writeConflictWithOrder(w, err, o)
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	var pay json.RawMessage
	if o.Status == paynotify.StatusPending {
		// As GET: a repeated create of an order closed, paid or refunded since hands out no pay
		// parameters (a legacy direct-pay URL stays payable after the local close).
		pay = o.Pay
	}
	writeJSON(w, status, orderView(o, pay))
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
		o, err := s.Service.Store.GetOrder(r.Context(), app, otn)
		if err != nil || o.Status != paynotify.StatusPending || wait == 0 {
			s.dropWaiter(app, otn, changed)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			var pay json.RawMessage
			if o.Status == paynotify.StatusPending {
				pay = o.Pay // still payable: the buyer's side may need the parameters again
			}
			writeJSON(w, http.StatusOK, orderView(o, pay))
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
	status := paynotify.OrderStatus(q.Get("status"))
	switch status {
	case "", paynotify.StatusPending, paynotify.StatusPaid, paynotify.StatusFinished, paynotify.StatusClosed, paynotify.StatusRefunded:
	default:
		// Refused, like an unknown verdict of GET /v1/notifications: a typo would list nothing.
		s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "Unknown status %q: one of pending, paid, finished, closed, refunded.", status))
		return
	}
	orders, err := s.Service.Store.ListOrders(r.Context(), paynotify.OrderFilter{App: q.Get("app"), Status: status, Limit: limit})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	views := make([]orderJSON, len(orders))
	for i, o := range orders {
		views[i] = orderView(o, nil)
	}
	writeJSON(w, http.StatusOK, map[string]any{"orders": views})
}

func (s *Server) handleCloseOrder(w http.ResponseWriter, r *http.Request) {
	o, err := s.Service.CloseOrder(r.Context(), r.PathValue("app"), r.PathValue("out_trade_no"))
	if err != nil && o != nil && paynotify.ErrorCode(err) == paynotify.ECONFLICT {
		// Paid: the conflict carries the order as it is.
		writeConflictWithOrder(w, err, o)
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, orderView(o, nil))
}

// writeConflictWithOrder answers 409 conflict with the order it is about, as stored (without
// pay), beside the error (its provider_code when it has one).
func writeConflictWithOrder(w http.ResponseWriter, err error, o *paynotify.Order) {
	body := map[string]any{"code": paynotify.ECONFLICT, "message": paynotify.ErrorMessage(err)}
	if e := (*paynotify.Error)(nil); errors.As(err, &e) && e.ProviderCode != "" {
		body["provider_code"] = e.ProviderCode
	}
	writeJSON(w, http.StatusConflict, map[string]any{"error": body, "order": orderView(o, nil)})
}

type createRefundRequest struct {
	Amount       *json.RawMessage `json:"amount"`
	OutRequestNo string           `json:"out_request_no"`
	Reason       string           `json:"reason"`
}

func (s *Server) handleCreateRefund(w http.ResponseWriter, r *http.Request) {
	if _, err := s.Service.App(r.PathValue("app")); err != nil {
		s.writeError(w, r, err)
		return
	}
	var req createRefundRequest
	if err := s.decodeObject(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	amount, err := parseAmount(req.Amount, "amount")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.OutRequestNo == "" {
		// The idempotency key: without one, a retry after a lost answer would be a second refund
		// under a new number (a reviewer helper's finding: docs/api.md promised that a retry never
		// refunds twice).
		s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "out_request_no is required: your refund's own number, sent again on a retry, so that the retry cannot refund twice."))
		return
	}
	rf, created, err := s.Service.Refund(r.Context(), r.PathValue("app"), r.PathValue("out_trade_no"),
		paynotify.RefundRequest{Amount: amount, OutRequestNo: req.OutRequestNo, Reason: req.Reason})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, rf)
}

func (s *Server) handleListRefunds(w http.ResponseWriter, r *http.Request) {
	refunds, err := s.Service.ListRefunds(r.Context(), r.PathValue("app"), r.PathValue("out_trade_no"))
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
	events, err := s.Service.Store.ListEvents(r.Context(), paynotify.EventFilter{After: seq, App: q.Get("app"), Limit: limit})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	next := strconv.FormatInt(seq, 10) // the cursor as paynotify writes it ("+0" is 0)
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
	source := q.Get("source")
	switch source {
	case "", paynotify.SourceNotification, paynotify.SourceQuery, paynotify.SourceReprocess:
	default:
		s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "Unknown source %q.", source))
		return
	}
	// The store loads the bodies within the budget only (BodyBudget); the loop below keeps the
	// answer's own count, headers as JSON.
	list, err := s.Service.Store.ListEvidence(r.Context(), paynotify.EvidenceFilter{App: q.Get("app"), OutTradeNo: q.Get("out_trade_no"),
		Verdict: verdict, Reason: q.Get("reason"), Source: source, Limit: limit, BodyBudget: listBodyBudget})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []*paynotify.Evidence{}
	}
	// A budget of body bytes per answer: a thousand records of 64 KiB bodies (which anyone can
	// post to a notify URL, as rejected evidence) made an answer of hundreds of MB. The newest
	// records carry their bodies; past the budget, a record says body_omitted, and GET
	// /v1/notifications/{id} has it.
	spent := 0
	for _, e := range list {
		if spent += len(e.Body) + headerBytes(e.Headers); spent > listBodyBudget {
			e.BodyOmitted = true
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"notifications": list})
}

// listBodyBudget is how many bytes of bodies and headers a list of notifications carries (the
// JSON is up to about 3.3 times that: base64, and text whose quotes and backslashes are escaped).
const listBodyBudget = 4 << 20

// headerBytes is the size of h's names and values (a request's headers are kept, up to 64 KiB).
func headerBytes(h http.Header) int {
	n := 0
	for k, vs := range h {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return n
}

// handleGetNotification answers one evidence record, with its body.
func (s *Server) handleGetNotification(w http.ResponseWriter, r *http.Request) {
	ev, err := s.Service.Store.GetEvidence(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ev)
}

// handleReprocess runs a kept notification through verification and processing again and
// answers with the new evidence record.
func (s *Server) handleReprocess(w http.ResponseWriter, r *http.Request) {
	res, err := s.Service.Reprocess(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res.Evidence)
}
