package webhook_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/internal/teststore"
	"github.com/paynotify/paynotify/storetest"
	"github.com/paynotify/paynotify/webhook"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// fast is a retry schedule for tests: the real one is minutes to days.
var fast = []time.Duration{150 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond,
	150 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond,
	150 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond,
	150 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond}

// received is one request the receiver got.
type received struct {
	id, typ, app, outTradeNo string
	version                  int64
	body                     []byte
	header                   http.Header
	status                   int // what the receiver answered
	at                       time.Time
}

// receiver is a merchant's endpoint on loopback: it verifies every request with the Standard
// Webhooks reference library (not with our signing code), and answers what answer says.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	bad    []string
	secret atomic.Value // string
	// answer decides the status for a verified request; nil answers 204.
	answer   func(r received) int
	inflight atomic.Int32
	maxIn    atomic.Int32
	delay    time.Duration
	// clockAhead verifies signatures without the reference library's check of the timestamp
	// (5 minutes either way), for tests that move the dispatcher's clock by days.
	clockAhead bool
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url() string { return rc.srv.URL + "/hooks/paynotify" }

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	n := rc.inflight.Add(1)
	defer rc.inflight.Add(-1)
	for {
		m := rc.maxIn.Load()
		if n <= m || rc.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	body, _ := io.ReadAll(r.Body)
	if rc.delay > 0 {
		time.Sleep(rc.delay)
	}
	fail := func(format string, args ...any) {
		rc.mu.Lock()
		rc.bad = append(rc.bad, fmt.Sprintf(format, args...))
		rc.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.ContentLength != int64(len(body)) {
		fail("method %s, content type %q, length %d for %d bytes", r.Method, r.Header.Get("Content-Type"), r.ContentLength, len(body))
		return
	}
	secret, _ := rc.secret.Load().(string)
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		fail("secret: %v", err)
		return
	}
	verify := wh.Verify
	if rc.clockAhead {
		verify = wh.VerifyIgnoringTimestamp
	}
	if err := verify(body, r.Header); err != nil {
		fail("verify %s: %v", r.Header.Get("webhook-id"), err)
		return
	}
	var ev struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Version int64  `json:"version"`
		Data    struct {
			App        string `json:"app"`
			OutTradeNo string `json:"out_trade_no"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID != r.Header.Get("webhook-id") {
		fail("body %q: %v (webhook-id %s)", body, err, r.Header.Get("webhook-id"))
		return
	}
	got := received{id: ev.ID, typ: ev.Type, app: ev.Data.App, outTradeNo: ev.Data.OutTradeNo, version: ev.Version,
		body: body, header: r.Header.Clone(), at: time.Now()}
	got.status = http.StatusNoContent
	if rc.answer != nil {
		got.status = rc.answer(got)
	}
	rc.mu.Lock()
	rc.got = append(rc.got, got)
	rc.mu.Unlock()
	w.WriteHeader(got.status)
}

// delivered returns the requests answered 2xx.
func (rc *receiver) delivered() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []received
	for _, g := range rc.got {
		if g.status/100 == 2 {
			out = append(out, g)
		}
	}
	return out
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

func (rc *receiver) check() {
	rc.t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.bad) > 0 {
		rc.t.Errorf("receiver refused %d requests, first: %s", len(rc.bad), rc.bad[0])
	}
}

// env is a store, the workflows and a dispatcher delivering to loopback.
type env struct {
	t   *testing.T
	st  paynotify.Store
	svc *paynotify.Service
	ctx context.Context
	now func() time.Time
	// metrics records what the dispatchers started by start told their Metrics.
	metrics *metricsRecorder
}

// metricsRecorder is a webhook.Metrics that remembers what it was told.
type metricsRecorder struct {
	mu       sync.Mutex
	attempts []string // "kind outcome status"
	disabled []string // causes
	unTimed  int      // attempts told with a duration of 0
}

func (m *metricsRecorder) Attempt(kind, outcome string, status int, took time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.attempts = append(m.attempts, fmt.Sprintf("%s %s %d", kind, outcome, status))
	if took <= 0 {
		m.unTimed++
	}
}

func (m *metricsRecorder) EndpointDisabled(cause string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.disabled = append(m.disabled, cause)
}

func (m *metricsRecorder) snapshot() (attempts, disabled []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.attempts), slices.Clone(m.disabled)
}

func newEnv(t *testing.T, st paynotify.Store) *env {
	svc := &paynotify.Service{Store: st, Processor: &paynotify.Processor{Store: st},
		Apps:            map[string]*paynotify.App{"shop": {Name: "shop"}, "other": {Name: "other"}},
		CheckWebhookURL: func(u string) error { return webhook.CheckURL(u, true, true) }}
	return &env{t: t, st: st, svc: svc, ctx: context.Background(), metrics: &metricsRecorder{}}
}

// endpoint creates an endpoint at rc and gives rc its secret.
func (e *env) endpoint(rc *receiver, events []paynotify.EventType, apps []string) *paynotify.WebhookEndpoint {
	e.t.Helper()
	u := rc.url()
	req := &paynotify.WebhookEndpointRequest{URL: &u}
	if events != nil {
		req.Events = &events
	}
	if apps != nil {
		req.Apps = &apps
	}
	ep, err := e.svc.CreateWebhookEndpoint(e.ctx, req)
	if err != nil {
		e.t.Fatal(err)
	}
	rc.secret.Store(ep.Secret)
	return ep
}

// start runs a dispatcher until the test ends (or stop is called) and returns stop.
func (e *env) start(cfg webhook.Config, nats webhook.Publisher) (stop func()) {
	if cfg.Poll == 0 {
		cfg.Poll = 50 * time.Millisecond
	}
	if cfg.Schedule == nil {
		cfg.Schedule = fast
	}
	cfg.AllowHTTP = true // the receivers are http:// on loopback
	d := &webhook.Dispatcher{Store: e.st, Config: cfg, Client: webhook.NewClient(true, 5*time.Second), NATS: nats, Now: e.now, Metrics: e.metrics}
	e.svc.WakeWebhooks = d.Wake
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := d.Run(ctx); err != nil {
			e.t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return stop
}

// order creates an order of app and commits its events: order.paid (version 2), then
// order.finished (version 3) when finish is set. It returns the event ids in order.
func (e *env) order(app, no string, finish bool) []string {
	e.t.Helper()
	o := storetest.MustCreateOrder(e.t, e.ctx, e.st, storetest.NewOrder(app, no, time.Now()))
	paid := storetest.PaidChange(o, paynotify.NewID("evt"), paynotify.NewID("ntf"), time.Now())
	storetest.MustCommit(e.t, e.ctx, e.st, paid)
	ids := []string{paid.Events[0].ID}
	if finish {
		next := *paid.Order
		next.Status = paynotify.StatusFinished
		next.Version++
		ev := paynotify.NewEvent(paynotify.NewID("evt"), paynotify.EventOrderFinished, time.Now(), &next, nil, nil)
		storetest.MustCommit(e.t, e.ctx, e.st, &paynotify.Change{Order: &next, PrevVersion: paid.Order.Version, Events: []*paynotify.Event{ev}})
		ids = append(ids, ev.ID)
	}
	return ids
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// firstDelivered maps each event id to the index of its first 2xx answer in all.
func firstDelivered(all []received) map[string]int {
	m := map[string]int{}
	for i, g := range all {
		if _, ok := m[g.id]; !ok && g.status/100 == 2 {
			m[g.id] = i
		}
	}
	return m
}

// checkOrdered fails unless, for every order, no request about a later version came before the
// earlier version's first 2xx answer.
func checkOrdered(t *testing.T, all []received) {
	t.Helper()
	done := map[string]int64{} // order → highest version delivered
	for _, g := range all {
		if g.outTradeNo == "" {
			continue
		}
		k := g.app + "/" + g.outTradeNo
		if g.version > done[k]+1 && done[k] > 0 || done[k] == 0 && g.version > 2 {
			t.Errorf("%s: version %d sent before version %d was delivered", k, g.version, g.version-1)
		}
		if g.status/100 == 2 && g.version > done[k] {
			done[k] = g.version
		}
	}
}

func TestDispatcher_DeliversEveryEventInOrder(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		before := e.order("shop", "before_endpoint", false) // committed before the endpoint: not delivered
		rc := newReceiver(t)
		rc.delay = 2 * time.Millisecond
		ep := e.endpoint(rc, nil, nil)
		e.start(webhook.Config{}, nil)
		var want []string
		for i := range 60 {
			want = append(want, e.order("shop", fmt.Sprintf("order_%03d", i), true)...)
		}
		waitFor(t, 20*time.Second, "every event delivered", func() bool { return len(rc.delivered()) >= len(want) })
		time.Sleep(200 * time.Millisecond) // anything more would be a duplicate
		rc.check()
		got := rc.delivered()
		ids := map[string]received{}
		for _, g := range got {
			if _, dup := ids[g.id]; dup {
				t.Errorf("event %s delivered twice", g.id)
			}
			ids[g.id] = g
		}
		for _, id := range want {
			if _, ok := ids[id]; !ok {
				t.Errorf("event %s not delivered", id)
			}
		}
		if _, ok := ids[before[0]]; ok {
			t.Errorf("an event committed before the endpoint was created was delivered")
		}
		checkOrdered(t, rc.all())
		if m := rc.maxIn.Load(); m > 8 {
			t.Errorf("%d deliveries in flight at once, want at most 8", m)
		}
		// The body is the event exactly as the log serves it.
		evs := storetest.MustListEvents(t, e.ctx, st, paynotify.EventFilter{Limit: 1000})
		for _, ev := range evs {
			if g, ok := ids[ev.ID]; ok && !bytes.Equal(g.body, paynotify.EventJSON(ev)) {
				t.Errorf("event %s: body %s, the log has %s", ev.ID, g.body, paynotify.EventJSON(ev))
			}
		}
		// Headers: id, a timestamp of the attempt, one v1 signature.
		g := got[0]
		if sig := g.header.Get("webhook-signature"); !strings.HasPrefix(sig, "v1,") || strings.Contains(sig, " ") {
			t.Errorf("webhook-signature %q, want one v1 signature", sig)
		}
		if ts := g.header.Get("webhook-timestamp"); ts == "" || ts[0] == '-' {
			t.Errorf("webhook-timestamp %q", ts)
		}
		attempts, err := st.ListWebhookAttempts(e.ctx, paynotify.WebhookAttemptFilter{EndpointID: ep.ID, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(attempts) != len(want) {
			t.Errorf("%d attempts recorded, want %d", len(attempts), len(want))
		}
		for _, a := range attempts {
			if a.Status != http.StatusNoContent || a.Error != "" {
				t.Errorf("attempt %+v, want a 204 without error", a)
			}
		}
	})
}

func TestDispatcher_ReceiverDownRetriesInOrder(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		rc := newReceiver(t)
		var down atomic.Bool
		down.Store(true)
		rc.answer = func(r received) int {
			if down.Load() {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK
		}
		ep := e.endpoint(rc, nil, []string{"shop"})
		e.start(webhook.Config{}, nil)
		var want []string
		for i := range 10 {
			want = append(want, e.order("shop", fmt.Sprintf("down_%02d", i), true)...)
		}
		e.order("other", "not_subscribed", true) // another app: filtered out
		// Down for a while: every order's first event is tried several times, its second never.
		waitFor(t, 10*time.Second, "three failed attempts of each first event", func() bool {
			n := map[string]int{}
			for _, g := range rc.all() {
				n[g.id]++
			}
			for i := 0; i < len(want); i += 2 {
				if n[want[i]] < 3 {
					return false
				}
			}
			return true
		})
		down.Store(false)
		waitFor(t, 10*time.Second, "every event delivered", func() bool { return len(firstDelivered(rc.all())) == len(want) })
		rc.check()
		all := rc.all()
		checkOrdered(t, all)
		for _, g := range all {
			if g.app != "shop" {
				t.Errorf("event of app %q delivered to an endpoint of app shop", g.app)
			}
		}
		attempts, err := st.ListWebhookAttempts(e.ctx, paynotify.WebhookAttemptFilter{EndpointID: ep.ID, EventID: want[0]})
		if err != nil {
			t.Fatal(err)
		}
		if len(attempts) < 4 || attempts[0].Status != http.StatusOK || attempts[len(attempts)-1].Status != http.StatusServiceUnavailable ||
			!strings.Contains(attempts[len(attempts)-1].Error, "503") {
			t.Errorf("attempts of %s: %+v, want 503s then a 200 (newest first)", want[0], attempts)
		}
		ds, err := st.ListWebhookDeliveries(e.ctx, want[0])
		if err != nil || len(ds) != 1 || ds[0].Status != paynotify.DeliveryDelivered || ds[0].Attempts != len(attempts) {
			t.Errorf("deliveries of %s: %+v (%v), want one delivered after %d attempts", want[0], ds, err, len(attempts))
		}
		// The failing endpoint's FailingSince was set, and cleared by the deliveries.
		got, err := st.GetWebhookEndpoint(e.ctx, ep.ID)
		if err != nil || got.FailingSince != nil {
			t.Errorf("endpoint after recovery: failing since %v (%v), want nil", got.FailingSince, err)
		}
	})
}

func TestDispatcher_GivesUpAfterTheSchedule(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		rc := newReceiver(t)
		rc.answer = func(received) int { return http.StatusInternalServerError }
		ep := e.endpoint(rc, nil, nil)
		e.start(webhook.Config{Schedule: fast[:3]}, nil)
		ids := e.order("shop", "given_up", true)
		waitFor(t, 10*time.Second, "the first event given up", func() bool {
			ds, _ := st.ListWebhookDeliveries(e.ctx, ids[0])
			return len(ds) == 1 && ds[0].Status == paynotify.DeliveryFailed
		})
		ds, _ := st.ListWebhookDeliveries(e.ctx, ids[0])
		if ds[0].Attempts != 4 {
			t.Errorf("given up after %d attempts, want 4 (the first and 3 retries)", ds[0].Attempts)
		}
		// Given up, the order's next event goes.
		waitFor(t, 10*time.Second, "the second event tried", func() bool {
			for _, g := range rc.all() {
				if g.id == ids[1] {
					return true
				}
			}
			return false
		})
		got, _ := st.GetWebhookEndpoint(e.ctx, ep.ID)
		if got.FailingSince == nil || got.Status != paynotify.EndpointEnabled {
			t.Errorf("endpoint: failing since %v, status %s; want set, enabled", got.FailingSince, got.Status)
		}
		// Metrics: three retries, then the given-up attempt, of the first event.
		attempts, disabled := e.metrics.snapshot()
		if len(attempts) < 4 || !slices.Equal(attempts[:4], []string{"http retry 500", "http retry 500", "http retry 500", "http failed 500"}) {
			t.Errorf("metrics told of attempts %q, want 3 retries then failed, all 500", attempts)
		}
		if len(disabled) != 0 {
			t.Errorf("metrics told of disabled endpoints %q, want none", disabled)
		}
	})
}

// TestDispatcher_LongReasonPhraseClipped: a receiver's status line may carry a reason phrase
// filling the 64 KiB of a response's header, which the attempt's error quotes; the attempt and
// the delivery keep at most webhook.MaxError bytes of it (a reviewer's finding: 60 KiB per
// attempt, for 30 days).
func TestDispatcher_LongReasonPhraseClipped(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		reason := strings.Repeat("x", 60000)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					br := bufio.NewReader(c)
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					fmt.Fprintf(c, "HTTP/1.1 500 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", reason)
				}()
			}
		}()
		u := "http://" + ln.Addr().String() + "/hook"
		ep, err := e.svc.CreateWebhookEndpoint(e.ctx, &paynotify.WebhookEndpointRequest{URL: &u})
		if err != nil {
			t.Fatal(err)
		}
		e.start(webhook.Config{}, nil)
		ids := e.order("shop", "long_reason", false)
		var as []*paynotify.WebhookAttempt
		waitFor(t, 10*time.Second, "a failed attempt", func() bool {
			as, _ = st.ListWebhookAttempts(e.ctx, paynotify.WebhookAttemptFilter{EndpointID: ep.ID, EventID: ids[0]})
			return len(as) > 0
		})
		a := as[len(as)-1]
		if a.Status != 500 || !strings.HasPrefix(a.Error, "answered 500 xxx") || len(a.Error) > webhook.MaxError || !strings.HasSuffix(a.Error, "…") {
			t.Errorf("attempt: status %d, error of %d bytes %.40q…, want 500 and at most %d bytes ending in …", a.Status, len(a.Error), a.Error, webhook.MaxError)
		}
		ds, err := st.ListWebhookDeliveries(e.ctx, ids[0])
		if err != nil || len(ds) != 1 {
			t.Fatalf("deliveries: %d, %v", len(ds), err)
		}
		if len(ds[0].LastError) > webhook.MaxError || ds[0].LastError == "" {
			t.Errorf("delivery's last error: %d bytes", len(ds[0].LastError))
		}
	})
}

func TestDispatcher_GoneDisables(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		gone := newReceiver(t)
		var back atomic.Bool // the endpoint came back: answers 204
		gone.answer = func(received) int {
			if back.Load() {
				return http.StatusNoContent
			}
			return http.StatusGone
		}
		watcher := newReceiver(t)
		goneEP := e.endpoint(gone, nil, nil)
		watchEP := e.endpoint(watcher, []paynotify.EventType{paynotify.EventEndpointDisabled}, []string{"shop"})
		e.start(webhook.Config{}, nil)
		e.order("shop", "gone_1", true)
		waitFor(t, 10*time.Second, "endpoint.disabled at the other endpoint", func() bool { return len(watcher.delivered()) == 1 })
		time.Sleep(200 * time.Millisecond)
		gone.check()
		watcher.check()
		if n := len(gone.all()); n != 1 {
			t.Errorf("the gone endpoint got %d requests, want 1", n)
		}
		got, err := st.GetWebhookEndpoint(e.ctx, goneEP.ID)
		if err != nil || got.Status != paynotify.EndpointDisabled || !strings.Contains(got.DisabledReason, "410") {
			t.Fatalf("endpoint after 410: %+v (%v), want disabled for 410", got, err)
		}
		w := watcher.delivered()
		if len(w) != 1 || w[0].typ != string(paynotify.EventEndpointDisabled) || !bytes.Contains(w[0].body, []byte(goneEP.ID)) {
			t.Errorf("watcher got %v, want one endpoint.disabled naming %s", w, goneEP.ID)
		}
		if _, err := st.GetWebhookEndpoint(e.ctx, watchEP.ID); err != nil {
			t.Fatal(err)
		}
		// Disabled, it receives nothing more.
		e.order("shop", "gone_2", false)
		time.Sleep(300 * time.Millisecond)
		if n := len(gone.all()); n != 1 {
			t.Errorf("a disabled endpoint got %d requests, want still 1", n)
		}
		attempts, disabled := e.metrics.snapshot()
		slices.Sort(attempts)
		if want := []string{"http delivered 204", "http failed 410"}; !slices.Equal(attempts, want) {
			t.Errorf("metrics told of attempts %q, want %q", attempts, want)
		}
		// Timed to the nanosecond: a loopback answer within a millisecond was told as 0 (the
		// kept attempt's milliseconds), so the histogram's low buckets meant nothing.
		e.metrics.mu.Lock()
		if e.metrics.unTimed != 0 {
			t.Errorf("%d attempts told with no duration", e.metrics.unTimed)
		}
		e.metrics.mu.Unlock()
		if !slices.Equal(disabled, []string{webhook.DisabledGone}) {
			t.Errorf("metrics told of disabled endpoints %q, want [gone]", disabled)
		}
		// Enabled again, the endpoint gets neither a resend to all nor a recover of its own
		// endpoint.disabled: that goes to the others only.
		back.Store(true)
		enabled := paynotify.EndpointEnabled
		if _, err := e.svc.UpdateWebhookEndpoint(e.ctx, goneEP.ID, &paynotify.WebhookEndpointRequest{Status: &enabled}); err != nil {
			t.Fatal(err)
		}
		if n, err := e.svc.ResendEvent(e.ctx, w[0].id, ""); err != nil || n != 1 {
			t.Fatalf("ResendEvent of endpoint.disabled to all = %d, %v; want 1 (the watcher)", n, err)
		}
		if _, err := e.svc.RecoverWebhooks(e.ctx, goneEP.ID, time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "endpoint.disabled resent to the watcher", func() bool { return len(watcher.delivered()) == 2 })
		waitFor(t, 10*time.Second, "the recovered events", func() bool { return len(gone.delivered()) == 3 })
		time.Sleep(300 * time.Millisecond)
		for _, g := range gone.all() {
			if g.typ == string(paynotify.EventEndpointDisabled) {
				t.Errorf("the endpoint got its own endpoint.disabled (%s)", g.id)
			}
		}
		if n := len(gone.all()); n != 4 {
			t.Errorf("the endpoint got %d requests, want 4 (the 410, then gone_1's two events and gone_2's recovered)", n)
		}
	})
}

func TestDispatcher_FailingFiveDaysDisables(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		var offset atomic.Int64
		e.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		rc := newReceiver(t)
		rc.answer = func(received) int { return http.StatusBadGateway }
		ep := e.endpoint(rc, nil, nil)
		e.start(webhook.Config{}, nil)
		e.order("shop", "five_days_1", false)
		waitFor(t, 10*time.Second, "a failed attempt", func() bool {
			got, _ := st.GetWebhookEndpoint(e.ctx, ep.ID)
			return got.FailingSince != nil
		})
		if got, _ := st.GetWebhookEndpoint(e.ctx, ep.ID); got.Status != paynotify.EndpointEnabled {
			t.Fatalf("disabled after one failure")
		}
		offset.Store(int64(webhook.DisableAfter + time.Minute)) // five days later, still failing
		e.order("shop", "five_days_2", false)
		waitFor(t, 10*time.Second, "the endpoint disabled", func() bool {
			got, _ := st.GetWebhookEndpoint(e.ctx, ep.ID)
			return got.Status == paynotify.EndpointDisabled
		})
		evs := storetest.MustListEvents(t, e.ctx, st, paynotify.EventFilter{Limit: 100})
		n := 0
		for _, ev := range evs {
			if ev.Type == paynotify.EventEndpointDisabled {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d endpoint.disabled events, want 1", n)
		}
		// The metric counts the disabling (the log line and the event above are the others); it
		// is told just after the store's update that the wait above saw.
		waitFor(t, 10*time.Second, "the metric of the disabling", func() bool {
			_, disabled := e.metrics.snapshot()
			return len(disabled) > 0
		})
		if _, disabled := e.metrics.snapshot(); !slices.Equal(disabled, []string{webhook.DisabledFailing}) {
			t.Errorf("metrics told of disabled endpoints %q, want [failing]", disabled)
		}
	})
}

// TestDispatcher_DeliveredMeanwhileNotDisabled: an endpoint failing for five days answers one
// order's event 2xx while an attempt at another order's, started before on a copy of the
// endpoint that still said "failing since five days", is in flight; that attempt then fails.
// The store no longer says so: the endpoint stays enabled and no endpoint.disabled is logged (a
// reviewer's finding: it was disabled from the stale copy, on one process or two).
func TestDispatcher_DeliveredMeanwhileNotDisabled(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		var offset atomic.Int64
		e.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		rc := newReceiver(t)
		rc.clockAhead = true
		var healthy atomic.Bool
		slowIn, release := make(chan struct{}), make(chan struct{})
		rc.answer = func(r received) int {
			switch {
			case r.outTradeNo == "slow":
				close(slowIn)
				<-release
				return http.StatusServiceUnavailable
			case healthy.Load():
				return http.StatusNoContent
			}
			return http.StatusBadGateway
		}
		ep := e.endpoint(rc, nil, nil)
		// No retries: the first order's failure sets FailingSince and is given up, so that no
		// other failure than the slow order's comes after the five days.
		e.start(webhook.Config{Schedule: []time.Duration{}}, nil)
		e.order("shop", "first", false)
		waitFor(t, 10*time.Second, "a failed attempt", func() bool {
			got, _ := st.GetWebhookEndpoint(e.ctx, ep.ID)
			return got.FailingSince != nil
		})
		offset.Store(int64(webhook.DisableAfter + time.Minute)) // five days later
		ids := e.order("shop", "slow", false)
		select {
		case <-slowIn:
		case <-time.After(10 * time.Second):
			t.Fatal("the slow order's attempt never came")
		}
		healthy.Store(true)
		e.order("shop", "fast", false)
		waitFor(t, 10*time.Second, "a delivery clearing FailingSince", func() bool {
			got, _ := st.GetWebhookEndpoint(e.ctx, ep.ID)
			return got.FailingSince == nil
		})
		close(release)
		waitFor(t, 10*time.Second, "the slow order's failed attempt recorded", func() bool {
			as, _ := st.ListWebhookAttempts(e.ctx, paynotify.WebhookAttemptFilter{EndpointID: ep.ID, EventID: ids[0]})
			return len(as) > 0
		})
		if got, _ := st.GetWebhookEndpoint(e.ctx, ep.ID); got.Status != paynotify.EndpointEnabled {
			t.Errorf("endpoint %s (%q) after a failure that followed a delivery", got.Status, got.DisabledReason)
		}
		for _, ev := range storetest.MustListEvents(t, e.ctx, st, paynotify.EventFilter{Limit: 100}) {
			if ev.Type == paynotify.EventEndpointDisabled {
				t.Errorf("%s logged", ev.Type)
			}
		}
	})
}

func TestDispatcher_RotationSignsWithBothSecrets(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		rc := newReceiver(t)
		ep := e.endpoint(rc, nil, nil)
		old := ep.Secret
		rotated, err := e.svc.RotateWebhookSecret(e.ctx, ep.ID)
		if err != nil {
			t.Fatal(err)
		}
		if rotated.Secret == old || !strings.HasPrefix(rotated.Secret, "whsec_") {
			t.Fatalf("rotation gave no new whsec_ secret")
		}
		rc.secret.Store(rotated.Secret)
		e.start(webhook.Config{}, nil)
		e.order("shop", "rotated", false)
		waitFor(t, 10*time.Second, "a delivery", func() bool { return len(rc.delivered()) == 1 })
		rc.check() // verified with the new secret
		g := rc.delivered()[0]
		if n := len(strings.Fields(g.header.Get("webhook-signature"))); n != 2 {
			t.Errorf("%d signatures during the overlap, want 2", n)
		}
		whOld, err := standardwebhooks.NewWebhook(old)
		if err != nil {
			t.Fatal(err)
		}
		if err := whOld.Verify(g.body, g.header); err != nil {
			t.Errorf("a receiver with the old secret: %v, want verified during the overlap", err)
		}
	})
}

func TestDispatcher_TestEventOnlyToItsEndpoint(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		a, b := newReceiver(t), newReceiver(t)
		epA := e.endpoint(a, nil, nil)
		e.endpoint(b, nil, nil)
		e.start(webhook.Config{}, nil)
		ev, err := e.svc.TestWebhookEndpoint(e.ctx, epA.ID)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the test event", func() bool { return len(a.delivered()) == 1 })
		time.Sleep(200 * time.Millisecond)
		a.check()
		if g := a.delivered()[0]; g.id != ev.ID || g.typ != string(paynotify.EventWebhookTest) {
			t.Errorf("got %s %s, want %s webhook.test", g.id, g.typ, ev.ID)
		}
		if n := len(b.all()); n != 0 {
			t.Errorf("the other endpoint got %d requests", n)
		}
	})
}

func TestDispatcher_RedirectNotFollowed(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		var followed atomic.Int32
		target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed.Add(1) }))
		defer target.Close()
		var hits atomic.Int32
		redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
		}))
		defer redirect.Close()
		u := redirect.URL + "/hook"
		ep, err := e.svc.CreateWebhookEndpoint(e.ctx, &paynotify.WebhookEndpointRequest{URL: &u})
		if err != nil {
			t.Fatal(err)
		}
		e.start(webhook.Config{}, nil)
		ids := e.order("shop", "redirected", false)
		waitFor(t, 10*time.Second, "two attempts", func() bool { return hits.Load() >= 2 })
		if followed.Load() != 0 {
			t.Errorf("the redirect was followed")
		}
		attempts, _ := st.ListWebhookAttempts(e.ctx, paynotify.WebhookAttemptFilter{EndpointID: ep.ID, EventID: ids[0]})
		if len(attempts) == 0 || attempts[0].Status != http.StatusTemporaryRedirect || attempts[0].Error == "" {
			t.Errorf("attempts %+v, want a failed 307", attempts)
		}
	})
}

func TestDispatcher_ShutdownReleasesAndLosesNothing(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		rc := newReceiver(t)
		rc.delay = 300 * time.Millisecond
		e.endpoint(rc, nil, nil)
		var want []string
		for i := range 40 {
			want = append(want, e.order("shop", fmt.Sprintf("shutdown_%02d", i), false)...)
		}
		stop := e.start(webhook.Config{Lease: time.Minute}, nil)
		waitFor(t, 10*time.Second, "deliveries in flight", func() bool { return rc.inflight.Load() >= 4 })
		stop() // in-flight attempts finish; the claimed rest is released, due at once
		answered := len(rc.delivered())
		delivered := 0
		for _, id := range want {
			ds, err := st.ListWebhookDeliveries(e.ctx, id)
			if err != nil || len(ds) != 1 {
				t.Fatalf("deliveries of %s: %v %v", id, ds, err)
			}
			switch {
			case ds[0].Status == paynotify.DeliveryDelivered:
				delivered++
			case ds[0].Token != "" || ds[0].NextAttemptAt == nil || ds[0].NextAttemptAt.After(time.Now()):
				t.Errorf("%s left claimed after shutdown: %+v", id, ds[0])
			}
		}
		if delivered != answered {
			t.Errorf("%d marked delivered, the receiver answered 2xx %d times", delivered, answered)
		}
		if delivered == len(want) {
			t.Fatalf("everything was delivered before the stop: the test proves nothing")
		}
		// Another dispatcher (another process) takes the rest at once, not after the lease.
		rc.delay = 0
		e.start(webhook.Config{Lease: time.Minute}, nil)
		waitFor(t, 10*time.Second, "the rest delivered", func() bool { return len(firstDelivered(rc.all())) == len(want) })
		rc.check()
	})
}

func TestDispatcher_TwoProcessesDeliverOnce(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		rc := newReceiver(t)
		rc.delay = time.Millisecond
		e.endpoint(rc, nil, nil)
		// The second process is a second dispatcher on the same store; the stores' own tests
		// check claims across connections and processes.
		e.start(webhook.Config{}, nil)
		e.start(webhook.Config{}, nil)
		var want []string
		for i := range 100 {
			want = append(want, e.order("shop", fmt.Sprintf("two_%03d", i), i%2 == 0)...)
		}
		waitFor(t, 20*time.Second, "every event", func() bool { return len(firstDelivered(rc.all())) == len(want) })
		time.Sleep(300 * time.Millisecond)
		rc.check()
		if n := len(rc.all()); n != len(want) {
			t.Errorf("%d requests for %d events, want each once", n, len(want))
		}
		checkOrdered(t, rc.all())
	})
}

func TestRetryAfterAndJitter(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		header string
		want   time.Duration
	}{
		{"", 0}, {"0", 0}, {"120", 2 * time.Minute}, {"-5", 0}, {"99999", time.Hour}, {"soon", 0},
		{now.Add(30 * time.Minute).Format(http.TimeFormat), 30 * time.Minute},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(5 * time.Hour).Format(http.TimeFormat), time.Hour},
	} {
		if got := webhook.RetryAfter(c.header, now); got != c.want {
			t.Errorf("Retry-After %q: %s, want %s", c.header, got, c.want)
		}
	}
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for range 2000 {
		d := webhook.Jitter(10 * time.Second)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 8*time.Second || hi > 12*time.Second || hi-lo < 3*time.Second {
		t.Errorf("jitter of 10s ranged %s..%s, want within ±20%% and spread", lo, hi)
	}
}

func TestDispatcher_DisabledThenRecovered(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		rc := newReceiver(t)
		ep := e.endpoint(rc, nil, nil)
		e.start(webhook.Config{}, nil)
		first := e.order("shop", "rec_before", false)
		waitFor(t, 10*time.Second, "the first event", func() bool { return len(rc.delivered()) == 1 })
		disabled, enabled := paynotify.EndpointDisabled, paynotify.EndpointEnabled
		if _, err := e.svc.UpdateWebhookEndpoint(e.ctx, ep.ID, &paynotify.WebhookEndpointRequest{Status: &disabled}); err != nil {
			t.Fatal(err)
		}
		since := time.Now()
		missed := e.order("shop", "rec_missed", true)
		time.Sleep(300 * time.Millisecond)
		if n := len(rc.all()); n != 1 {
			t.Fatalf("a disabled endpoint got %d requests", n)
		}
		if _, err := e.svc.UpdateWebhookEndpoint(e.ctx, ep.ID, &paynotify.WebhookEndpointRequest{Status: &enabled}); err != nil {
			t.Fatal(err)
		}
		after := e.order("shop", "rec_after", false)
		waitFor(t, 10*time.Second, "the event after enabling", func() bool { return len(rc.delivered()) == 2 })
		time.Sleep(200 * time.Millisecond)
		if n := len(rc.delivered()); n != 2 {
			t.Fatalf("enabled again, %d deliveries: it did not continue from that moment", n)
		}
		n, err := e.svc.RecoverWebhooks(e.ctx, ep.ID, since)
		if err != nil || n != len(missed) {
			t.Fatalf("recover: %d, %v; want %d", n, err, len(missed))
		}
		waitFor(t, 10*time.Second, "the missed events", func() bool { return len(rc.delivered()) == 4 })
		got := map[string]bool{}
		for _, g := range rc.delivered() {
			got[g.id] = true
		}
		for _, id := range append(append(first, missed...), after...) {
			if !got[id] {
				t.Errorf("event %s not delivered", id)
			}
		}
		checkOrdered(t, rc.all())
		// Resend: the same webhook-id again.
		if n, err := e.svc.ResendEvent(e.ctx, first[0], ep.ID); err != nil || n != 1 {
			t.Fatalf("resend: %d, %v", n, err)
		}
		waitFor(t, 10*time.Second, "the resend", func() bool { return len(rc.delivered()) == 5 })
		if g := rc.delivered()[4]; g.id != first[0] {
			t.Errorf("resend delivered %s, want %s again", g.id, first[0])
		}
		rc.check()
	})
}

// TestDispatcher_DeletedEndpoint: a deleted endpoint gets nothing more (its lane ends), the others
// go on.
func TestDispatcher_DeletedEndpoint(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		keep, gone := newReceiver(t), newReceiver(t)
		e.endpoint(keep, nil, nil)
		goneEP := e.endpoint(gone, nil, nil)
		e.start(webhook.Config{}, nil)
		e.order("shop", "del_1", false)
		waitFor(t, 10*time.Second, "both endpoints served", func() bool { return len(keep.delivered()) == 1 && len(gone.delivered()) == 1 })
		if err := e.svc.DeleteWebhookEndpoint(e.ctx, goneEP.ID); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // a poll: the lane ends
		e.order("shop", "del_2", false)
		waitFor(t, 10*time.Second, "the kept endpoint served again", func() bool { return len(keep.delivered()) == 2 })
		time.Sleep(200 * time.Millisecond)
		if n := len(gone.all()); n != 1 {
			t.Errorf("a deleted endpoint got %d requests, want 1 (before its deletion)", n)
		}
		keep.check()
	})
}

// TestDispatcher_ReceiverTextStorable: a receiver whose status line's reason phrase is not UTF-8
// (a Latin-1 server) has its attempts kept, with that text made storable, and costs no other
// endpoint its results. On PostgreSQL such text failed the whole batch of results it rode in:
// no attempt of the batch was kept, and every delivery in it went out again once its claim ran
// out.
func TestDispatcher_ReceiverTextStorable(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		good := newReceiver(t)
		goodEP := e.endpoint(good, nil, nil)
		latin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			c, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			_, _ = buf.WriteString("HTTP/1.1 500 Erreur interne \xe9\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			_ = buf.Flush()
		}))
		t.Cleanup(latin.Close)
		u := latin.URL + "/hooks"
		latinEP, err := e.svc.CreateWebhookEndpoint(e.ctx, &paynotify.WebhookEndpointRequest{URL: &u})
		if err != nil {
			t.Fatal(err)
		}
		e.start(webhook.Config{}, nil)
		for i := range 5 {
			e.order("shop", fmt.Sprint("latin_", i), false)
		}
		attempts := func(ep string) []*paynotify.WebhookAttempt {
			as, err := st.ListWebhookAttempts(e.ctx, paynotify.WebhookAttemptFilter{EndpointID: ep, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			return as
		}
		waitFor(t, 10*time.Second, "the attempts of both endpoints", func() bool {
			return len(attempts(goodEP.ID)) == 5 && len(attempts(latinEP.ID)) >= 5
		})
		for _, a := range attempts(goodEP.ID) {
			if a.Status != http.StatusNoContent || a.Error != "" {
				t.Errorf("good endpoint's attempt %+v, want 204 without error", a)
			}
		}
		for _, a := range attempts(latinEP.ID) {
			if want := "answered 500 Erreur interne \uFFFD"; a.Status != 500 || a.Error != want {
				t.Errorf("Latin-1 endpoint's attempt: status %d, error %q; want 500, %q", a.Status, a.Error, want)
			}
		}
		good.check()
		if n := len(good.all()); n != 5 {
			t.Errorf("the good endpoint got %d requests, want 5 (one per event)", n)
		}
	})
}

// stopInClaim is a store whose first claim that takes something stops the dispatcher while its
// answer is on the way: the claim has committed, and an answer that goes by the cancelled
// context is lost with it.
type stopInClaim struct {
	paynotify.Store
	stop func()
	once sync.Once
}

func (s *stopInClaim) ClaimWebhookDeliveries(ctx context.Context, endpoint string, now time.Time, lease time.Duration, limit int) ([]*paynotify.WebhookDelivery, error) {
	ds, err := s.Store.ClaimWebhookDeliveries(ctx, endpoint, now, lease, limit)
	if err == nil && len(ds) > 0 {
		s.once.Do(s.stop)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return ds, err
}

// TestDispatcher_StopDuringClaim: a stop that arrives while a claim is answered releases what
// the claim took, due at once, instead of leaving it claimed for the lease.
func TestDispatcher_StopDuringClaim(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		rc := newReceiver(t)
		e.endpoint(rc, nil, nil)
		var want []string
		for i := range 3 {
			want = append(want, e.order("shop", fmt.Sprint("stopclaim_", i), false)...)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		d := &webhook.Dispatcher{Store: &stopInClaim{Store: st, stop: cancel},
			Config: webhook.Config{Poll: 50 * time.Millisecond, Schedule: fast, AllowHTTP: true, Lease: time.Hour},
			Client: webhook.NewClient(true, 5*time.Second)}
		if err := d.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(rc.all()); n != 0 {
			t.Errorf("the receiver got %d requests after the stop", n)
		}
		for _, id := range want {
			ds, err := st.ListWebhookDeliveries(e.ctx, id)
			if err != nil || len(ds) != 1 {
				t.Fatalf("deliveries of %s: %v %v", id, ds, err)
			}
			if d := ds[0]; d.Status != paynotify.DeliveryPending || d.Token != "" || d.NextAttemptAt == nil || d.NextAttemptAt.After(time.Now()) {
				t.Errorf("%s after the stop: %+v; want pending, released, due", id, d)
			}
		}
	})
}
