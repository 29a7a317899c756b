package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/httpd"
	"github.com/paynotify/paynotify/internal/sandboxapps"
	"github.com/paynotify/paynotify/internal/teststore"
	"github.com/paynotify/paynotify/jobs"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/sandbox"
	"github.com/paynotify/paynotify/sqlite"
)

const (
	apiToken  = "e2e-token-0123456789abcdef"
	alipayApp = "alipay-demo"
	wechatApp = "wechatpay-demo"
	// waitFor bounds every wait of a test on something the sandbox or the server will do.
	waitFor = 20 * time.Second
)

// forEachStore runs fn on a fresh SQLite file and on a fresh PostgreSQL schema, in parallel.
func forEachStore(t *testing.T, fn func(t *testing.T, s paynotify.Store)) { teststore.ForEach(t, fn) }

// options tune an env.
type options struct {
	// scale is the sandbox's TimeScale; default 1000 (Alipay's +4m retry comes after 240 ms).
	scale float64
	// middleware, if set, wraps the server's handler (to play a server that fails or is slow).
	middleware func(http.Handler) http.Handler
	// sandboxNow, if set, is the sandbox's clock (of its trades and signed timestamps).
	sandboxNow func() time.Time
	// serverNow, if set, is the server's clock (of orders, expiry and the reconciliation).
	serverNow func() time.Time
	// reconcile, if set, is both apps' reconciliation policy, and the server runs its jobs (River,
	// a sweep every second) on the store.
	reconcile *paynotify.ReconcilePolicy
	// wechatV2Key, if set, is wechatpay-demo's APIv2 key (apiv2_key_file): the server takes
	// APIv2 notifications at /notify/wechatpay-v2/wechatpay-demo, its refunds confirmed with the
	// sandbox's refund query as serve confirms them.
	wechatV2Key string
}

// env is a paynotify server and a sandbox, each on its own loopback port, wired as demo mode
// wires them (cmd/paynotify/demo.go): the apps alipay-demo and wechatpay-demo on the sandbox's
// default Alipay app and WeChat merchant.
type env struct {
	t     *testing.T
	ctx   context.Context
	store paynotify.Store
	keys  sandbox.Keys

	sb    *sandbox.Sandbox
	sbURL string
	sbc   *sandbox.Client

	svc     *paynotify.Service
	h       *httpd.Server
	handler http.Handler
	addr    string // the server's host:port, kept across a stop and restart
	URL     string // the server's base URL: its PublicURL
	mu      sync.Mutex
	hs      *http.Server

	browser *http.Client // the buyer's browser: follows no redirects
}

func logger() *slog.Logger {
	if os.Getenv("PAYNOTIFY_E2E_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newEnv(t *testing.T, store paynotify.Store, o options) *env {
	t.Helper()
	if o.scale == 0 {
		o.scale = 1000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	t.Cleanup(cancel)
	e := &env{t: t, ctx: ctx, store: store,
		browser: &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}

	// The sandbox, on its own port; its BaseURL is its own server's URL.
	var sbHandler http.Handler = http.NotFoundHandler()
	sbSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sbHandler.ServeHTTP(w, r) }))
	t.Cleanup(sbSrv.Close)
	sb, err := sandbox.New(sandbox.Config{StateDir: newStateDir(t), BaseURL: sbSrv.URL, TimeScale: o.scale, Logger: logger(), Now: o.sandboxNow})
	if err != nil {
		t.Fatal(err)
	}
	sbHandler = sb.Handler()
	e.sb, e.sbURL, e.sbc, e.keys = sb, sbSrv.URL, &sandbox.Client{BaseURL: sbSrv.URL}, sb.Keys()

	// The server, on its own port: notify_url is its PublicURL + /notify/{provider}/{app}.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	e.URL = "http://" + e.addr
	apps := demoApps(t, e.keys, e.sbURL, e.URL)
	if o.wechatV2Key != "" {
		gw := apps[wechatApp].Gateway.(*provider.Wechat)
		gw.V2 = &provider.WechatV2{APIKey: []byte(o.wechatV2Key), Refunds: gw.Client}
	}
	log := logger()
	e.svc = &paynotify.Service{
		Store:     store,
		Processor: &paynotify.Processor{Store: store, Logger: log, Now: o.serverNow},
		Apps:      apps,
		PublicURL: e.URL,
		Logger:    log,
		Now:       o.serverNow,
	}
	if o.reconcile != nil {
		for _, a := range apps {
			a.Reconcile = *o.reconcile
		}
		e.startJobs()
	}
	e.h = &httpd.Server{
		Service:      e.svc,
		APIToken:     apiToken,
		Logger:       log,
		PollInterval: 50 * time.Millisecond,
	}
	e.handler = e.h.Handler()
	if o.middleware != nil {
		e.handler = o.middleware(e.handler)
	}
	e.serve(ln)
	t.Cleanup(e.stopServer)

	sctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sb.Start(sctx) }()
	t.Cleanup(func() {
		stop()
		<-done
		sb.Close()
	})
	return e
}

// startJobs runs the server's background jobs (River) on the env's store, stopped at cleanup.
func (e *env) startJobs() {
	e.t.Helper()
	cfg := jobs.Config{Reconciler: &paynotify.Reconciler{Service: e.svc}, SweepInterval: time.Second, Logger: logger()}
	var r *jobs.Runner
	var err error
	switch db := e.store.(type) {
	case *sqlite.DB:
		if err = jobs.MigrateSQLite(e.ctx, db.SQL()); err == nil {
			r, err = jobs.NewSQLite(db.SQL(), cfg)
		}
	case *postgres.DB:
		if err = jobs.MigratePostgres(e.ctx, db.Pool()); err == nil {
			r, err = jobs.NewPostgres(db.Pool(), cfg)
		}
	default:
		err = fmt.Errorf("no jobs for %T", e.store)
	}
	if err == nil {
		err = r.Start(e.ctx)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { r.Stop(context.Background()) })
}

// serve starts the server on ln.
func (e *env) serve(ln net.Listener) {
	hs := httpd.NewHTTPServer(e.addr, e.handler)
	e.mu.Lock()
	e.hs = hs
	e.mu.Unlock()
	go hs.Serve(ln)
}

// stopServer closes the server's listener and connections: the port refuses connections.
func (e *env) stopServer() {
	e.mu.Lock()
	hs := e.hs
	e.hs = nil
	e.mu.Unlock()
	if hs != nil {
		hs.Close()
	}
}

// restartServer listens again on the same address, with the same store and apps.
func (e *env) restartServer() {
	e.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", e.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		e.t.Fatalf("listen again on %s: %v", e.addr, err)
	}
	e.serve(ln)
}

// demoApps builds alipay-demo and wechatpay-demo on the sandbox's default app and merchant,
// exactly as demo mode does (the gateway is the sandbox's own port here).
func demoApps(t *testing.T, k sandbox.Keys, sbURL, serverURL string) map[string]*paynotify.App {
	t.Helper()
	apps, err := sandboxapps.Apps(k, sbURL, serverURL+"/shop/paid")
	if err != nil {
		t.Fatal(err)
	}
	return apps
}

// ---- the merchant API ----

// order is the order JSON of the API.
type order struct {
	App             string          `json:"app"`
	OutTradeNo      string          `json:"out_trade_no"`
	Channel         string          `json:"channel"`
	Status          string          `json:"status"`
	Amount          int64           `json:"amount"`
	RefundedAmount  int64           `json:"refunded_amount"`
	Currency        string          `json:"currency"`
	ProviderTradeNo string          `json:"provider_trade_no"`
	Version         int64           `json:"version"`
	PaidAt          *time.Time      `json:"paid_at"`
	ExpiresAt       time.Time       `json:"expires_at"`
	Pay             json.RawMessage `json:"pay"`
}

type refund struct {
	OutTradeNo       string `json:"out_trade_no"`
	OutRequestNo     string `json:"out_request_no"`
	Amount           int64  `json:"amount"`
	Status           string `json:"status"`
	ProviderRefundNo string `json:"provider_refund_no"`
}

type event struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Version int64  `json:"version"`
	Data    struct {
		OutTradeNo     string `json:"out_trade_no"`
		Status         string `json:"status"`
		RefundedAmount int64  `json:"refunded_amount"`
		Refund         *struct {
			OutRequestNo  string `json:"out_request_no"`
			Amount        int64  `json:"amount"`
			RefundedTotal int64  `json:"refunded_total"`
		} `json:"refund"`
		Anomaly *struct {
			Reason         string `json:"reason"`
			NotificationID string `json:"notification_id"`
		} `json:"anomaly"`
	} `json:"data"`
}

type evidence struct {
	ID           string `json:"id"`
	Verdict      string `json:"verdict"`
	Reason       string `json:"reason"`
	Detail       string `json:"detail"`
	OutTradeNo   string `json:"out_trade_no"`
	OrderVersion int64  `json:"order_version"`
	Answer       string `json:"answer"`
	// Repeats: byte-identical duplicates counted on this record (docs/api.md, "Repeated
	// duplicates").
	Repeats int `json:"repeats"`
}

type apiError struct {
	Error struct {
		Code         string `json:"code"`
		Message      string `json:"message"`
		ProviderCode string `json:"provider_code"`
	} `json:"error"`
	Order *order `json:"order"`
}

// api calls the merchant API, decodes the JSON answer into out (when not nil) and returns the
// status.
func (e *env) api(method, path string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(e.ctx, method, e.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: HTTP %d, decode %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

func appOf(channel string) string {
	if strings.HasPrefix(channel, "alipay.") {
		return alipayApp
	}
	return wechatApp
}

// create creates an order through the API (201 expected).
func (e *env) create(channel, otn string, amount int64, extra ...string) order {
	e.t.Helper()
	body := map[string]any{"app": appOf(channel), "out_trade_no": otn, "amount": amount, "subject": "e2e " + otn, "channel": channel}
	switch channel {
	case paynotify.ChannelWechatJSAPI:
		body["payer_openid"] = "oE2Etestopenid0123456789"
	case paynotify.ChannelWechatH5:
		body["payer_client_ip"] = "203.0.113.7"
	}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i]] = extra[i+1]
	}
	var o order
	if code := e.api("POST", "/v1/orders", body, &o); code != http.StatusCreated {
		e.t.Fatalf("create %s %s: HTTP %d", channel, otn, code)
	}
	if o.Status != "pending" || o.Version != 1 || len(o.Pay) == 0 {
		e.t.Fatalf("create %s: got %+v", otn, o)
	}
	return o
}

// get reads an order; wait > 0 long-polls while it is pending.
func (e *env) get(app, otn string, wait time.Duration) order {
	e.t.Helper()
	path := "/v1/orders/" + app + "/" + otn
	if wait > 0 {
		path += "?wait=" + wait.String()
	}
	var o order
	if code := e.api("GET", path, nil, &o); code != http.StatusOK {
		e.t.Fatalf("get %s: HTTP %d", otn, code)
	}
	return o
}

// waitStatus long-polls the order out of pending and checks its status.
func (e *env) waitStatus(app, otn, want string) order {
	e.t.Helper()
	o := e.get(app, otn, waitFor)
	if o.Status != want {
		e.t.Fatalf("order %s: status %s, want %s (%+v)\nattempts: %s", otn, o.Status, want, o, e.attemptSummary(otn))
	}
	return o
}

// events returns the events of one order, in log order.
func (e *env) events(otn string) []event {
	e.t.Helper()
	var out struct {
		Events []event `json:"events"`
	}
	if code := e.api("GET", "/v1/events?limit=1000", nil, &out); code != http.StatusOK {
		e.t.Fatalf("events: HTTP %d", code)
	}
	var evs []event
	for _, ev := range out.Events {
		if ev.Data.OutTradeNo == otn {
			evs = append(evs, ev)
		}
	}
	return evs
}

// evidence returns the evidence records of one order (newest first, as the API lists them).
func (e *env) evidence(otn string) []evidence {
	e.t.Helper()
	return e.evidenceQuery("out_trade_no=" + url.QueryEscape(otn))
}

// evidenceQuery lists evidence records with a query (app=, out_trade_no=, verdict=).
func (e *env) evidenceQuery(query string) []evidence {
	e.t.Helper()
	var out struct {
		Notifications []evidence `json:"notifications"`
	}
	if code := e.api("GET", "/v1/notifications?limit=1000&"+query, nil, &out); code != http.StatusOK {
		e.t.Fatalf("notifications: HTTP %d", code)
	}
	return out.Notifications
}

func (e *env) refunds(app, otn string) []refund {
	e.t.Helper()
	var out struct {
		Refunds []refund `json:"refunds"`
	}
	if code := e.api("GET", "/v1/orders/"+app+"/"+otn+"/refunds", nil, &out); code != http.StatusOK {
		e.t.Fatalf("refunds: HTTP %d", code)
	}
	return out.Refunds
}

func types(evs []event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, fmt.Sprintf("%s@v%d", ev.Type, ev.Version))
	}
	return strings.Join(s, " ")
}

// verdicts counts evidence records by "verdict" or "verdict/reason".
// verdicts counts the requests the records stand for (a record and its repeats), by
// verdict[/reason].
func verdicts(evs []evidence) map[string]int {
	m := map[string]int{}
	for _, ev := range evs {
		k := ev.Verdict
		if ev.Reason != "" {
			k += "/" + ev.Reason
		}
		m[k] += 1 + ev.Repeats
	}
	return m
}

func countType(evs []event, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

// checkEvents checks the order's events, in log order, as "type@vN" strings.
func (e *env) checkEvents(otn string, want ...string) []event {
	e.t.Helper()
	evs := e.events(otn)
	if got := types(evs); got != strings.Join(want, " ") {
		e.t.Fatalf("events of %s: %s, want %s", otn, got, strings.Join(want, " "))
	}
	return evs
}

// checkVerdicts checks the order's evidence, the requests counted by verdict[/reason].
func (e *env) checkVerdicts(otn string, want map[string]int) []evidence {
	e.t.Helper()
	evs := e.evidence(otn)
	got := verdicts(evs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Fatalf("evidence of %s: %v, want %v\nattempts: %s", otn, got, want, e.attemptSummary(otn))
	}
	return evs
}

// ---- the sandbox ----

func (e *env) waitCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(e.ctx, waitFor)
}

// waitAttempts waits for at least n delivery attempts matching f.
func (e *env) waitAttempts(f sandbox.AttemptFilter, n int) []*sandbox.Attempt {
	e.t.Helper()
	ctx, cancel := e.waitCtx()
	defer cancel()
	as, err := e.sb.WaitAttempts(ctx, f, n)
	if err != nil {
		e.t.Fatalf("waiting for %d attempts of %+v: %v\nattempts: %s", n, f, err, summary(as))
	}
	return as
}

// waitAcked waits for n acknowledged attempts matching f.
func (e *env) waitAcked(f sandbox.AttemptFilter, n int) []*sandbox.Attempt {
	e.t.Helper()
	ctx, cancel := e.waitCtx()
	defer cancel()
	as, err := e.sb.WaitAcked(ctx, f, n)
	if err != nil {
		e.t.Fatalf("waiting for %d acknowledged attempts of %+v: %v\nattempts: %s", n, f, err, summary(as))
	}
	return as
}

func (e *env) attempts(otn string) []*sandbox.Attempt {
	e.t.Helper()
	as, err := e.sb.Attempts(sandbox.AttemptFilter{OutTradeNo: otn})
	if err != nil {
		e.t.Fatal(err)
	}
	return as
}

func (e *env) attemptSummary(otn string) string {
	as, _ := e.sb.Attempts(sandbox.AttemptFilter{OutTradeNo: otn})
	return summary(as)
}

// summary renders attempts one per line, for failure messages.
func summary(as []*sandbox.Attempt) string {
	var b strings.Builder
	for _, a := range as {
		fmt.Fprintf(&b, "\n  %s n=%d copy=%d status=%d acked=%t fault=%q err=%q answer=%q", a.Kind, a.N, a.Copy, a.Status, a.Acked, a.Fault, a.Error, trim(a.Response))
	}
	return b.String()
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func (e *env) trade(otn string) *sandbox.Trade {
	e.t.Helper()
	ts, err := e.sb.Trades("", otn)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(ts) != 1 {
		e.t.Fatalf("sandbox trades of %s: %d, want 1", otn, len(ts))
	}
	return ts[0]
}

func (e *env) faults(otn string, f sandbox.Faults) {
	e.t.Helper()
	if err := e.sb.SetFaults(otn, f); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) act(action string, req sandbox.ActionRequest) *sandbox.Trade {
	e.t.Helper()
	tr, err := e.sb.Act(action, req)
	if err != nil {
		e.t.Fatalf("sandbox %s %+v: %v", action, req, err)
	}
	return tr
}

// ---- the buyer ----

var formAction = regexp.MustCompile(`<form method="post" action="([^"]+)"><button>([^<]*)</button>`)

// pageActions reads the buttons of a sandbox cashier or payer page: label → POST URL.
func pageActions(page string) map[string]string {
	m := map[string]string{}
	for _, sm := range formAction.FindAllStringSubmatch(page, -1) {
		m[html.UnescapeString(sm[2])] = html.UnescapeString(sm[1])
	}
	return m
}

// browse makes the buyer's browser request and returns the response and its body.
func (e *env) browse(method, rawURL, contentType string, body io.Reader) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, method, rawURL, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.browser.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// click posts a page's button (by its label, or the one label starting so) and returns the response.
func (e *env) click(page, label string) (*http.Response, string) {
	e.t.Helper()
	actions := pageActions(page)
	if u, ok := actions[label]; ok {
		return e.browse("POST", u, "", nil)
	}
	var match []string
	for l, u := range actions {
		if strings.HasPrefix(l, label) {
			match = append(match, u)
		}
	}
	if len(match) == 1 {
		return e.browse("POST", match[0], "", nil)
	}
	e.t.Fatalf("no single %q button on the page:\n%s", label, page)
	return nil, ""
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
var punchoutAction = regexp.MustCompile(`<form name="punchout_form" method="post" action="([^"]+)">`)

// pay plays the buyer paying a just-created order of channel with its pay parameters, the way a
// buyer's app, browser or phone would reach the sandbox.
func (e *env) pay(channel string, payJSON json.RawMessage) {
	e.t.Helper()
	var p map[string]string
	if err := json.Unmarshal(payJSON, &p); err != nil {
		e.t.Fatalf("pay parameters %s: %v", payJSON, err)
	}
	expectPage := func(resp *http.Response, page string) {
		e.t.Helper()
		if resp.StatusCode != http.StatusOK {
			e.t.Fatalf("HTTP %d: %s", resp.StatusCode, page)
		}
	}
	switch channel {
	case paynotify.ChannelAlipayApp:
		// The app hands the orderString to the Alipay SDK.
		resp, body := e.browse("POST", e.sbURL+"/sandbox/alipay/app-sdk?result=9000", "text/plain", strings.NewReader(p["order_string"]))
		var r struct{ ResultStatus, Result, Memo string }
		if err := json.Unmarshal([]byte(body), &r); err != nil || resp.StatusCode != 200 || r.ResultStatus != "9000" {
			e.t.Fatalf("app SDK: HTTP %d %s", resp.StatusCode, body)
		}
	case paynotify.ChannelAlipayPage:
		// The browser is redirected to the signed GET URL: the cashier; the buyer pays, Alipay
		// sends them to return_url (ours), which sends them on to the app's return page.
		resp, page := e.browse("GET", p["url"], "", nil)
		expectPage(resp, page)
		resp, _ = e.click(page, "Pay")
		e.followReturn(resp)
	case paynotify.ChannelAlipayWap:
		// The auto-submit form POSTs biz_content to the gateway URL holding the other parameters.
		m := punchoutAction.FindStringSubmatch(p["form"])
		if m == nil {
			e.t.Fatalf("no punchout form in %q", p["form"])
		}
		form := url.Values{}
		for _, in := range hiddenInput.FindAllStringSubmatch(p["form"], -1) {
			form.Set(html.UnescapeString(in[1]), html.UnescapeString(in[2]))
		}
		resp, page := e.browse("POST", html.UnescapeString(m[1]), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		expectPage(resp, page)
		resp, _ = e.click(page, "Pay")
		e.followReturn(resp)
	case paynotify.ChannelAlipayPrecreate:
		// The buyer scans the QR code (a cashier link), logs in, pays.
		resp, page := e.browse("GET", p["qr_code"], "", nil)
		expectPage(resp, page)
		resp, page = e.click(page, "Scan")
		expectPage(resp, page)
		resp, page = e.click(page, "Pay")
		expectPage(resp, page)
	case paynotify.ChannelWechatNative, paynotify.ChannelWechatApp, paynotify.ChannelWechatJSAPI, paynotify.ChannelWechatH5:
		var u string
		switch channel {
		case paynotify.ChannelWechatNative:
			u = e.sbURL + "/sandbox/wechatpay/pay?code_url=" + url.QueryEscape(p["code_url"])
		case paynotify.ChannelWechatApp:
			u = e.sbURL + "/sandbox/wechatpay/pay?prepay_id=" + url.QueryEscape(p["prepayid"])
		case paynotify.ChannelWechatJSAPI:
			u = e.sbURL + "/sandbox/wechatpay/pay?prepay_id=" + url.QueryEscape(p["package"])
		case paynotify.ChannelWechatH5:
			u = p["h5_url"]
		}
		resp, page := e.browse("GET", u, "", nil)
		if resp.StatusCode == http.StatusFound {
			resp, page = e.browse("GET", resp.Header.Get("Location"), "", nil)
		}
		expectPage(resp, page)
		resp, page = e.click(page, "Pay")
		expectPage(resp, page)
		if !strings.Contains(page, "Paid.") {
			e.t.Fatalf("WeChat payer page after pay:\n%s", page)
		}
	default:
		e.t.Fatalf("unknown channel %s", channel)
	}
}

// followReturn follows the cashier's redirect to our return URL, which must check nothing into
// the order and send the buyer on to the app's return page with app and out_trade_no.
func (e *env) followReturn(resp *http.Response) {
	e.t.Helper()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, e.URL+"/return/alipay/"+alipayApp+"?") {
		e.t.Fatalf("after paying: HTTP %d to %q, want a redirect to our return URL", resp.StatusCode, loc)
	}
	resp, _ = e.browse("GET", loc, "", nil)
	next, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || next.Path != "/shop/paid" || next.Query().Get("app") != alipayApp || next.Query().Get("out_trade_no") == "" {
		e.t.Fatalf("return URL: HTTP %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// notifyFails returns a middleware that answers the first n notification requests with the
// given failure (and lets everything else through): "abort" closes the connection without an
// answer, a number answers that status.
func notifyFails(fail func(i int, w http.ResponseWriter) bool) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		var mu sync.Mutex // per server
		i := 0
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/notify/") {
				mu.Lock()
				i++
				n := i
				mu.Unlock()
				if fail(n, w) {
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	}
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}
