package paynotify

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Service holds the workflows that the merchant API, the reconciliation jobs and the CLI share:
// create, close and refund an order, query it and apply the answer, reprocess kept evidence.
// Each call is short and holds no transaction across a provider call: it reads, calls the
// provider, then commits what the verified answer says through the Processor.
type Service struct {
	Store     Store
	Processor *Processor
	Apps      map[string]*App
	// PublicURL is the base of the notify and return URLs sent to providers, without a trailing
	// slash.
	PublicURL string
	Logger    *slog.Logger
	// Now returns the current time; defaults to time.Now.
	Now func() time.Time

	// CheckWebhookURL validates a webhook endpoint's URL (scheme, host, the networks allowed);
	// nil accepts absolute https URLs.
	CheckWebhookURL func(url string) error
	// WakeWebhooks, if set, is called when deliveries were queued, so that the dispatcher
	// starts them without waiting for its next poll.
	WakeWebhooks func()
}

// creatingOrders serialises the creations of one order (an app's out_trade_no) in this process
// (CreateOrder). Package-level, so that a Service stays a plain value to copy.
var creatingOrders keyedLocks

// keyedLocks is a lock per key, held by one caller at a time; the zero value is ready.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	ch      chan struct{} // holds a token while the key is locked
	waiters int
}

// lock takes key's lock, or returns ctx's error; unlock releases it.
func (k *keyedLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.waiters++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		if l.waiters--; l.waiters == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// App returns the configured app, or ENOTFOUND.
func (s *Service) App(name string) (*App, error) {
	a, ok := s.Apps[name]
	if !ok {
		return nil, Errorf(ENOTFOUND, "Unknown app %q.", name)
	}
	return a, nil
}

// NotifyURL is where the provider posts its notifications for app: never with a query string.
func (s *Service) NotifyURL(a *App) string {
	return s.PublicURL + "/notify/" + a.Provider + "/" + a.Name
}

// CreateOrderRequest is a new order as the merchant asks for it.
type CreateOrderRequest struct {
	App string
	// OutTradeNo is the merchant's order number; "" generates one (NewTradeNo).
	OutTradeNo string
	Amount     Amount
	// Currency defaults to CNY, the only one accepted.
	Currency string
	Subject  string
	Body     string
	Channel  string
	// ExpiresIn is how long the order can be paid, 1m to 15 days. Defaults to 2h.
	ExpiresIn time.Duration
	// PayerOpenID is required for wechatpay.jsapi.
	PayerOpenID string
	// PayerClientIP is the buyer's IP address, required for wechatpay.h5.
	PayerClientIP string
}

var (
	alipayTradeNo = regexp.MustCompile(`^[0-9A-Za-z_]{1,64}$`)
	// WechatTradeNo is what both providers accept as an out_trade_no or a refund number.
	WechatTradeNo = regexp.MustCompile(`^[0-9A-Za-z_\-|*]{6,32}$`)
)

// checkText refuses a free-text field (an order's subject, a refund's reason, …) that is not valid
// UTF-8 or holds a control character (U+0000 to U+001F, U+007F to U+009F): PostgreSQL cannot
// store U+0000 at all, and the providers refuse or mangle the others. It refuses the
// bidirectional embeddings, overrides and isolates too (U+202A to U+202E, U+2066 to U+2069),
// which make the text around them read in another order wherever it is shown (the console, a
// provider's cashier): a subject could make an amount beside it read otherwise.
func checkText(name, v string) error {
	if !utf8.ValidString(v) {
		return Errorf(EINVALID, "%s is not valid UTF-8.", name)
	}
	if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(v[i:])
		return Errorf(EINVALID, "%s holds the control character %U.", name, r)
	}
	if i := strings.IndexFunc(v, bidiControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString(v[i:])
		return Errorf(EINVALID, "%s holds the bidirectional control character %U.", name, r)
	}
	return nil
}

// bidiControl reports whether r is a bidirectional embedding, override or isolate (or their
// terminators). The marks U+200E, U+200F and U+061C, which only set a direction, are allowed.
func bidiControl(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069
}

// MaxExpiresIn is the longest an order can be payable.
const MaxExpiresIn = 15 * 24 * time.Hour

const tradeNoAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// NewTradeNo returns 24 random characters of [0-9A-Za-z], valid for both providers.
func NewTradeNo() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = tradeNoAlphabet[int(b[i])%len(tradeNoAlphabet)] // 256 % 62 bias is irrelevant for an id
	}
	return string(b[:])
}

// newOrder checks a create request and returns the new order, with its first check scheduled.
func (s *Service) newOrder(req *CreateOrderRequest) (*App, *Order, error) {
	invalid := func(format string, args ...any) error { return Errorf(EINVALID, format, args...) }
	if req.App == "" {
		return nil, nil, invalid("app is required: the name of an app of the config file.")
	}
	a, ok := s.Apps[req.App]
	if !ok {
		return nil, nil, invalid("Unknown app %q.", req.App)
	}
	if req.Amount <= 0 {
		return nil, nil, invalid("amount must be a positive integer number of fen (1 yuan = 100).")
	}
	if req.Currency == "" {
		req.Currency = "CNY"
	}
	if req.Currency != "CNY" {
		return nil, nil, invalid("currency must be CNY.")
	}
	if req.Subject == "" || len([]rune(req.Subject)) > 127 {
		return nil, nil, invalid("subject is required, at most 127 characters.")
	}
	if len([]rune(req.Body)) > 128 {
		return nil, nil, invalid("body is at most 128 characters.")
	}
	for _, f := range []struct{ name, v string }{{"subject", req.Subject}, {"body", req.Body},
		{"payer_openid", req.PayerOpenID}, {"payer_client_ip", req.PayerClientIP}} {
		if err := checkText(f.name, f.v); err != nil {
			return nil, nil, err
		}
	}
	switch p := ChannelProvider(req.Channel); {
	case p == "":
		return nil, nil, invalid("Unknown channel %q.", req.Channel)
	case p != a.Provider:
		return nil, nil, invalid("Channel %s does not belong to app %s (a %s app).", req.Channel, a.Name, a.Provider)
	}
	if a.Provider == ProviderAlipay || a.Provider == ProviderAlipayLegacy {
		// Alipay signs its parameters joined as name=value with "&", not where each ends: a
		// subject holding "&total_fee=0.01&x=" regroups the legacy request paynotify signs
		// into another amount or notify_url under the same signature, and a notification
		// whose subject or body holds "&name=" is refused (docs/alipay.md, "Canonical
		// strings"), the payment left to the reconciliation (a reviewer's finding).
		for _, f := range []struct{ name, v string }{{"subject", req.Subject}, {"body", req.Body}} {
			if i := strings.IndexByte(f.v, '&'); i >= 0 && strings.Contains(f.v[i:], "=") {
				return nil, nil, invalid("%s holds \"&\" followed by \"=\", which Alipay's signature cannot tell from another parameter: leave one of them out.", f.name)
			}
		}
	}
	if req.Channel == ChannelWechatH5 && net.ParseIP(req.PayerClientIP) == nil {
		return nil, nil, invalid("payer_client_ip (the buyer's IP address) is required for wechatpay.h5.")
	}
	if req.Channel == ChannelWechatJSAPI && req.PayerOpenID == "" {
		return nil, nil, invalid("payer_openid is required for wechatpay.jsapi.")
	}
	expiresIn := req.ExpiresIn
	if expiresIn == 0 {
		expiresIn = 2 * time.Hour
	}
	if expiresIn < time.Minute || expiresIn > MaxExpiresIn {
		return nil, nil, invalid("expires_in must be a duration from 1m to 360h (15 days), like \"30m\".")
	}
	if req.OutTradeNo == "" {
		req.OutTradeNo = NewTradeNo()
	}
	re := alipayTradeNo
	if a.Provider == ProviderWechatpay {
		re = WechatTradeNo
	}
	if !re.MatchString(req.OutTradeNo) {
		return nil, nil, invalid("out_trade_no %q is not valid for %s (%s).", req.OutTradeNo, a.Provider, re)
	}
	now := s.now().UTC().Truncate(time.Second)
	o := &Order{
		App: a.Name, OutTradeNo: req.OutTradeNo, Channel: req.Channel, Status: StatusPending,
		Amount: req.Amount, Currency: req.Currency, Subject: req.Subject, Body: req.Body,
		PayerOpenID: req.PayerOpenID, PayerClientIP: req.PayerClientIP, Version: 1, CreatedAt: now, ExpiresAt: now.Add(expiresIn),
	}
	next := a.Reconcile.FirstOrderCheck(a.Provider, o)
	o.NextCheckAt = &next
	return a, o, nil
}

// CreateOrder creates an order: it signs (or asks the provider for) the payment parameters, then
// stores the order with them and its first reconciliation check. The same request again returns
// the stored order and created false, without calling the provider; an order that exists with
// other content is ECONFLICT. An order the provider says is paid already (ErrPaidAtProvider) is
// stored and queried, and returned with an ECONFLICT error that carries the provider's code
// (createPaidAtProvider), then and on every repeat of the request.
func (s *Service) CreateOrder(ctx context.Context, req CreateOrderRequest) (o *Order, created bool, err error) {
	a, o, err := s.newOrder(&req)
	if err != nil {
		return nil, false, err
	}
	// Concurrent creations of one order wait for each other here, so that the later ones find
	// the first one's order (the same request, or 409) instead of reaching the provider with it:
	// WeChat Pay refuses a second prepay of one out_trade_no with other terms as a definitive
	// 422, and the docs promise 409 (a reviewer helper raced 20 of them). Another instance's
	// creation is found again below when the provider refuses.
	unlock, err := creatingOrders.lock(ctx, o.App+"\x00"+o.OutTradeNo)
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	if existing, err := s.Store.GetOrder(ctx, o.App, o.OutTradeNo); err == nil {
		return sameOrder(a, existing, o)
	} else if ErrorCode(err) != ENOTFOUND {
		return nil, false, err
	}
	returnURL := ""
	switch o.Channel {
	case ChannelAlipayPage, ChannelAlipayWap:
		returnURL = s.PublicURL + "/return/alipay/" + a.Name
	case ChannelAlipayDirect, ChannelAlipayWapDirect:
		returnURL = s.PublicURL + "/return/alipay-legacy/" + a.Name
	}
	pay, err := a.Gateway.Pay(ctx, o, s.NotifyURL(a), returnURL)
	if err != nil {
		// A creation of the same order by another instance may have won meanwhile (the provider
		// then refuses this one as a duplicate number): answer as for a stored order.
		if existing, gerr := s.Store.GetOrder(ctx, o.App, o.OutTradeNo); gerr == nil {
			return sameOrder(a, existing, o)
		}
		if errors.Is(err, ErrPaidAtProvider) {
			return s.createPaidAtProvider(ctx, a, o, err)
		}
		s.logger().Warn("create order at provider", "app", a.Name, "out_trade_no", o.OutTradeNo, "err", err)
		return nil, false, err
	}
	o.Pay = pay
	stored, created, err := s.Store.CreateOrder(ctx, o)
	if err != nil {
		return nil, false, err
	}
	if !created { // a concurrent create won
		return sameOrder(a, stored, o)
	}
	s.logger().Info("order created", "app", a.Name, "out_trade_no", o.OutTradeNo, "channel", o.Channel, "amount", int64(o.Amount))
	return stored, true, nil
}

// createPaidAtProvider stores an order whose payment the provider refused to create because a
// trade of its out_trade_no is paid already (ErrPaidAtProvider): created and paid before, and the
// store does not have it (restored from an older backup), or the number used by another system.
// A 422 with nothing stored left that payment, whose notifications named an order the store did
// not have, recorded nowhere. The order is stored without payment parameters, due for a check a
// minute later, and queried now: a verified payment is applied as any query's (an amount that differs
// from this request's is an anomaly, never a payment); if the query fails, the next sweep asks
// again. The create is answered with the order as the query left it and paidAtProviderError, not
// as created: that trade proves a payment of this out_trade_no, not that this request's buyer
// made it (a reviewer helper's finding: "201 paid" to a new buyer of a reused number).
func (s *Service) createPaidAtProvider(ctx context.Context, a *App, o *Order, refusal error) (*Order, bool, error) {
	// Checked by the sweep a minute later if the query below fails (not at once: the sweep would
	// ask beside it).
	next := s.now().Add(time.Minute)
	o.Pay, o.NextCheckAt = nil, &next
	stored, created, err := s.Store.CreateOrder(ctx, o)
	if err != nil {
		return nil, false, err
	}
	if !created { // a concurrent create won
		return sameOrder(a, stored, o)
	}
	log := s.logger().With("app", a.Name, "out_trade_no", o.OutTradeNo)
	log.Warn("the provider says this order is paid already: it was created before and the store did not have it (restored from an older backup?), "+
		"or the number was used elsewhere; stored without payment parameters and queried", "err", refusal)
	res, err := s.CheckOrder(ctx, a, stored, false)
	if err != nil {
		log.Warn("order paid at the provider: query failed, the next sweep asks again", "err", err)
	} else {
		stored = res.Order
	}
	return stored, false, paidAtProviderError(a)
}

// paidAtProviderError is the answer to a create of an order stored by createPaidAtProvider, the
// first time and every time the same request comes again: ECONFLICT, with the provider's code.
func paidAtProviderError(a *App) error {
	code := "ACQ.TRADE_HAS_SUCCESS"
	if a.Provider == ProviderWechatpay {
		code = "ORDERPAID"
	}
	return &Error{Code: ECONFLICT, ProviderCode: code, Message: "The provider says a trade of this out_trade_no was paid before this order was created here: " +
		"nothing is to be paid, and the payment is not necessarily this request's buyer's (a database restored from an older backup, or the number used elsewhere). " +
		"The order is stored without payment parameters and set by the provider's verified answers only (queried now, and by the reconciliation if that failed); check it before delivering anything."}
}

// createsAtProvider reports whether an order of channel is created at the provider, by a call
// that answers its payment parameters (whose order stored without them came from
// createPaidAtProvider).
func createsAtProvider(channel string) bool {
	return channel == ChannelAlipayPrecreate || ChannelProvider(channel) == ProviderWechatpay
}

// sameOrder answers a create for an order that exists: the stored order when it is the same
// request (amount, currency, subject, body, channel and the payer's openid: JSAPI parameters
// bound to one buyer must not go to another), with paidAtProviderError when createPaidAtProvider
// stored it; ECONFLICT otherwise. The expiry is not compared (a
// retry computes it again from its own time), nor payer_client_ip, which the stores do not keep
// (an H5 URL is not bound to the buyer's address).
func sameOrder(a *App, existing, req *Order) (*Order, bool, error) {
	if existing.Amount != req.Amount || existing.Currency != req.Currency || existing.Subject != req.Subject || existing.Channel != req.Channel ||
		existing.Body != req.Body || existing.PayerOpenID != req.PayerOpenID {
		return nil, false, Errorf(ECONFLICT, "Order %s exists with different content.", req.OutTradeNo)
	}
	if existing.Pay == nil && createsAtProvider(existing.Channel) {
		// Stored by createPaidAtProvider: answered as the first time, never as a plain order.
		return existing, false, paidAtProviderError(a)
	}
	return existing, false, nil
}

// CloseOrder closes a pending order at the provider, then locally. A closed order is returned as
// it is. An order that is paid (or found paid while closing: the payment is applied) is returned
// with an ECONFLICT error; so is a provider answer that disagrees with the order (nothing changes).
func (s *Service) CloseOrder(ctx context.Context, app, outTradeNo string) (*Order, error) {
	a, err := s.App(app)
	if err != nil {
		return nil, err
	}
	o, err := s.Store.GetOrder(ctx, a.Name, outTradeNo)
	if err != nil {
		return nil, err
	}
	return s.closeOrder(ctx, a, o)
}

func (s *Service) closeOrder(ctx context.Context, a *App, o *Order) (*Order, error) {
	switch o.Status {
	case StatusClosed:
		return o, nil
	case StatusPending:
	default:
		return o, Errorf(ECONFLICT, "Order %s is %s: only a pending order can be closed.", o.OutTradeNo, o.Status)
	}
	log := s.logger().With("app", a.Name, "out_trade_no", o.OutTradeNo)
	fact, err := a.Gateway.Close(ctx, o)
	if err != nil {
		if errors.Is(err, ErrNoCloseService) {
			// Expected for such a provider (legacy Alipay): not a warning at every expiry.
			log.Info("close at provider: the provider has no close service", "err", err)
		} else {
			log.Warn("close at provider", "err", err)
		}
		return nil, err
	}
	if fact.Kind == FactClosed && fact.Local {
		// The provider closed nothing (the buyer had not opened the trade): the buyer can still
		// pay until the expiry it enforces. Asked once more after it (docs/reconciliation.md,
		// "A close of our own").
		at := LocalCloseCheckAt(o, s.now())
		fact.CheckAt = &at
	}
	res, err := s.applyAnswered(ctx, a, fact, nil)
	if err != nil {
		return nil, err
	}
	if res.Verdict == VerdictAnomaly {
		// The provider's answer disagrees with our order (say, another amount): nothing changed.
		log.Warn("close: provider fact disagrees with the order", "reason", res.Reason)
		return nil, Errorf(ECONFLICT, "The provider's state of order %s disagrees with ours (%s): nothing was changed.", o.OutTradeNo, res.Reason)
	}
	o = res.Order
	switch {
	case o == nil || o.Status == StatusPending:
		return nil, Errorf(EINTERNAL, "close not applied")
	case o.Status != StatusClosed:
		return o, Errorf(ECONFLICT, "Order %s was paid: it cannot be closed.", o.OutTradeNo)
	}
	log.Info("order closed")
	return o, nil
}

// expireLocally closes an expired order of a provider without a close service: with no provider
// call, as a fact of our own (the pay parameters we signed carried the same expiry). A payment
// notified later is applied as a payment after close (an anomaly to look at).
func (s *Service) expireLocally(ctx context.Context, a *App, o *Order) (*Order, error) {
	res, err := s.Processor.Apply(ctx, a, Fact{Kind: FactClosed, OutTradeNo: o.OutTradeNo, Local: true}, nil)
	if err != nil {
		return nil, err
	}
	if res.Order == nil || res.Order.Status != StatusClosed {
		return res.Order, Errorf(ECONFLICT, "Order %s was not closed at its expiry (%s).", o.OutTradeNo, res.Reason)
	}
	s.logger().Info("expired order closed locally (the provider has no close service)", "app", a.Name, "out_trade_no", o.OutTradeNo)
	return res.Order, nil
}

// RefundRequest is a refund as the merchant asks for it.
type RefundRequest struct {
	Amount Amount
	// OutRequestNo is the merchant's refund number; "" generates one. The same number again is
	// the same refund.
	OutRequestNo string
	Reason       string
}

// Refund records a refund as pending, then asks the provider for it, and returns the refund as
// stored afterwards (created says whether this call recorded it). Recording comes first, so that
// a crash or a retry never refunds twice: both providers are idempotent by refund number. A
// signed, final refusal fails the refund (and is returned as EPROVIDER); an unknown outcome leaves
// it pending (EPROVIDERUNAVAILABLE), for the merchant to retry with the same number and for the
// reconciliation to settle.
func (s *Service) Refund(ctx context.Context, app, outTradeNo string, req RefundRequest) (rf *Refund, created bool, err error) {
	a, err := s.App(app)
	if err != nil {
		return nil, false, err
	}
	if req.Amount <= 0 {
		return nil, false, Errorf(EINVALID, "amount must be a positive integer number of fen.")
	}
	if req.OutRequestNo == "" {
		req.OutRequestNo = NewTradeNo()
	}
	if !WechatTradeNo.MatchString(req.OutRequestNo) {
		return nil, false, Errorf(EINVALID, "out_request_no must match %s.", WechatTradeNo)
	}
	if len([]rune(req.Reason)) > 80 {
		return nil, false, Errorf(EINVALID, "reason is at most 80 characters.")
	}
	if err := checkText("reason", req.Reason); err != nil {
		return nil, false, err
	}
	o, err := s.Store.GetOrder(ctx, a.Name, outTradeNo)
	if err != nil {
		return nil, false, err
	}
	refunds, err := s.Store.ListRefunds(ctx, a.Name, o.OutTradeNo)
	if err != nil {
		return nil, false, err
	}
	var existing *Refund
	var outstanding, pending Amount // refunds not failed, and pending, other than this one
	for _, x := range refunds {
		switch {
		case x.OutRequestNo == req.OutRequestNo:
			existing = x
		case x.Status == RefundPending:
			pending += x.Amount
			outstanding += x.Amount
		case x.Status == RefundSucceeded:
			outstanding += x.Amount
		}
	}
	// A fast answer for the usual case; the store checks again, atomically with the insert.
	if existing == nil {
		if o.Status != StatusPaid && o.Status != StatusFinished {
			return nil, false, Errorf(ECONFLICT, "Order %s is %s: only a paid order can be refunded.", o.OutTradeNo, o.Status)
		}
		if err := RefundBound(int64(o.Amount), int64(o.RefundedAmount), int64(outstanding), int64(pending), int64(req.Amount)); err != nil {
			return nil, false, err
		}
	}
	now := s.now().UTC()
	next := now.Add(a.Reconcile.WithDefaults().Schedule[0])
	// Recorded before the provider is called: a crash or a retry never refunds twice.
	rf, created, err = s.Store.CreateRefund(ctx, &Refund{App: a.Name, OutTradeNo: o.OutTradeNo, OutRequestNo: req.OutRequestNo,
		Amount: req.Amount, Reason: req.Reason, Status: RefundPending, CreatedAt: now, UpdatedAt: now, NextCheckAt: &next})
	if err != nil {
		return nil, false, err
	}
	if rf.Amount != req.Amount {
		return nil, false, Errorf(ECONFLICT, "Refund %s exists with a different amount.", rf.OutRequestNo)
	}
	if rf.Status != RefundPending {
		return rf, created, nil
	}
	// Pending: ask the provider (again). Both providers are idempotent by out_request_no.
	if err := s.requestRefund(ctx, a, o, rf); err != nil {
		return nil, created, err
	}
	rf, err = s.refund(ctx, a.Name, o.OutTradeNo, rf.OutRequestNo)
	return rf, created, err
}

// requestRefund asks the provider for a pending refund and applies what it answers: a
// confirmation, or a signed final refusal (then the refusal is returned too).
func (s *Service) requestRefund(ctx context.Context, a *App, o *Order, rf *Refund) error {
	all, err := s.Store.ListRefunds(ctx, a.Name, o.OutTradeNo)
	if err != nil {
		return err
	}
	asked := *rf
	for _, x := range all {
		if x.OutRequestNo != rf.OutRequestNo && x.Status != RefundFailed {
			asked.PriorRefunds += x.Amount
		}
	}
	fact, err := a.Gateway.Refund(ctx, o, &asked, s.NotifyURL(a))
	if err != nil {
		s.logger().Warn("refund at provider", "app", a.Name, "out_trade_no", o.OutTradeNo, "out_request_no", rf.OutRequestNo, "err", err)
		var pe *Error
		if errors.As(err, &pe) && pe.Code == EPROVIDER {
			// Refused: record the failure, then report it.
			failed := Fact{Kind: FactRefundFailed, OutTradeNo: o.OutTradeNo, RefundRequestNo: rf.OutRequestNo, RefundAmount: rf.Amount}
			if _, aerr := s.applyAnswered(ctx, a, failed, nil); aerr != nil {
				return aerr
			}
		}
		return err
	}
	if fact != nil {
		if _, err := s.applyAnswered(ctx, a, *fact, nil); err != nil {
			return err
		}
	}
	return nil
}

// applyAnswered applies what a provider answered (a close, a refund, a query) on a context the
// caller's end does not cut short: the provider has acted, so its answer is recorded even when
// the API client hung up or a check's deadline is near. Bounded by applyTimeout.
func (s *Service) applyAnswered(ctx context.Context, a *App, fact Fact, ev *Evidence) (*Result, error) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()
	return s.Processor.Apply(actx, a, fact, ev)
}

// applyTimeout bounds applyAnswered's commit.
const applyTimeout = 10 * time.Second

// refund returns one refund as stored now.
func (s *Service) refund(ctx context.Context, app, outTradeNo, outRequestNo string) (*Refund, error) {
	refunds, err := s.Store.ListRefunds(ctx, app, outTradeNo)
	if err != nil {
		return nil, err
	}
	for _, x := range refunds {
		if x.OutRequestNo == outRequestNo {
			return x, nil
		}
	}
	return nil, Errorf(ENOTFOUND, "Refund %s not found.", outRequestNo)
}

// ListRefunds returns the refunds of an order in the order they were recorded; ENOTFOUND for an
// unknown order.
func (s *Service) ListRefunds(ctx context.Context, app, outTradeNo string) ([]*Refund, error) {
	if _, err := s.Store.GetOrder(ctx, app, outTradeNo); err != nil {
		return nil, err
	}
	return s.Store.ListRefunds(ctx, app, outTradeNo)
}
