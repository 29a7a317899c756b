package httpd_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/httpd"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/internal/testsign"
	"github.com/paynotify/paynotify/internal/teststore"
	"github.com/paynotify/paynotify/provider"
)

const (
	testToken     = "test-token-0123456789"
	alipayAppID   = "2021000000000001"
	alipaySeller  = "2088000000000002"
	alipayKeyFile = "testdata/alipay_private.pem" // plays Alipay; used by openssl only
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// forEachStore runs fn on a fresh SQLite file and on a fresh PostgreSQL schema, in parallel.
func forEachStore(t *testing.T, fn func(t *testing.T, s paynotify.Store)) { teststore.ForEach(t, fn) }

var (
	appKeyOnce sync.Once
	appKey     *rsa.PrivateKey
)

// testAppKey is the merchant's app private key: generated once per test binary.
func testAppKey(tb testing.TB) *rsa.PrivateKey {
	appKeyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		appKey = k
	})
	return appKey
}

// env is a running server on a real socket, whose API requests and answers are checked against
// docs/openapi.yaml (specCheck).
type env struct {
	t     *testing.T
	store paynotify.Store
	srv   *httptest.Server
	http  *httpd.Server
	logs  *syncBuffer
}

// newEnv starts a server with one Alipay app "shop" (plus the apps given) on store.
func newEnv(t *testing.T, store paynotify.Store, extra ...*paynotify.App) *env {
	t.Helper()
	pub, err := os.ReadFile("testdata/alipay_public.pem")
	if err != nil {
		t.Fatal(err)
	}
	alipayPub, err := alipay.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	client, err := alipay.NewClient(alipay.Config{AppID: alipayAppID, PrivateKey: testAppKey(t), AlipayPublicKey: alipayPub,
		Gateway: "http://127.0.0.1:1/gateway.do"})
	if err != nil {
		t.Fatal(err)
	}
	apps := map[string]*paynotify.App{
		"shop": {Name: "shop", Provider: paynotify.ProviderAlipay, AppID: alipayAppID, SellerIDs: []string{alipaySeller},
			Gateway: &provider.Alipay{Client: client}},
	}
	for _, a := range extra {
		apps[a.Name] = a
	}
	logs := &syncBuffer{}
	var out io.Writer = logs
	if testing.Verbose() {
		out = io.MultiWriter(logs, os.Stderr)
	}
	logger := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := &httpd.Server{
		Service: &paynotify.Service{
			Store:     store,
			Processor: &paynotify.Processor{Store: store, Logger: logger},
			Apps:      apps,
			PublicURL: "https://pay.example.com",
			Logger:    logger,
		},
		APIToken:     testToken,
		Logger:       logger,
		PollInterval: 50 * time.Millisecond,
	}
	srv := httptest.NewServer(specCheck(t, h.Handler())) // docs/openapi.yaml checks every API call
	t.Cleanup(srv.Close)
	return &env{t: t, store: store, srv: srv, http: h, logs: logs}
}

// syncBuffer collects the server's logs, for tests that check what they never contain.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// api calls the merchant API and decodes the JSON answer into out (when not nil).
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
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// order is the order JSON of the API.
type order struct {
	App             string          `json:"app"`
	OutTradeNo      string          `json:"out_trade_no"`
	Channel         string          `json:"channel"`
	Status          string          `json:"status"`
	Amount          int64           `json:"amount"`
	RefundedAmount  int64           `json:"refunded_amount"`
	Currency        string          `json:"currency"`
	Subject         string          `json:"subject"`
	ProviderTradeNo string          `json:"provider_trade_no"`
	Version         int64           `json:"version"`
	CreatedAt       time.Time       `json:"created_at"`
	PaidAt          *time.Time      `json:"paid_at"`
	ExpiresAt       time.Time       `json:"expires_at"`
	NextCheckAt     *time.Time      `json:"next_check_at"`
	Pay             json.RawMessage `json:"pay"`
}

type event struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Version int64           `json:"version"`
	Data    json.RawMessage `json:"data"`
}

type evidence struct {
	ID           string `json:"id"`
	App          string `json:"app"`
	Verdict      string `json:"verdict"`
	Reason       string `json:"reason"`
	Detail       string `json:"detail"`
	OutTradeNo   string `json:"out_trade_no"`
	OrderVersion int64  `json:"order_version"`
	Answer       string `json:"answer"`
	BodyBase64   string `json:"body_base64"`
	Repeats      int    `json:"repeats"`
}

// requests counts the requests the records stand for: each record and its repeats.
func requests(evs []evidence) int {
	n := 0
	for _, e := range evs {
		n += 1 + e.Repeats
	}
	return n
}

func (e *env) createOrder(body map[string]any) order {
	e.t.Helper()
	var o order
	if code := e.api("POST", "/v1/orders", body, &o); code != http.StatusCreated {
		e.t.Fatalf("create order: status %d", code)
	}
	return o
}

func (e *env) getOrder(app, otn string) order {
	e.t.Helper()
	var o order
	if code := e.api("GET", "/v1/orders/"+app+"/"+otn, nil, &o); code != http.StatusOK {
		e.t.Fatalf("get order: status %d", code)
	}
	return o
}

// events returns every event of the log.
func (e *env) events() []event {
	e.t.Helper()
	var out struct {
		Events []event `json:"events"`
		Next   string  `json:"next"`
	}
	if code := e.api("GET", "/v1/events?limit=1000", nil, &out); code != http.StatusOK {
		e.t.Fatalf("events: status %d", code)
	}
	return out.Events
}

func (e *env) evidence(query string) []evidence {
	e.t.Helper()
	var out struct {
		Notifications []evidence `json:"notifications"`
	}
	if code := e.api("GET", "/v1/notifications?"+query, nil, &out); code != http.StatusOK {
		e.t.Fatalf("notifications: status %d", code)
	}
	return out.Notifications
}

func eventTypes(evs []event) []string {
	var s []string
	for _, ev := range evs {
		s = append(s, ev.Type)
	}
	return s
}

// postNotify posts a provider callback and returns status and body.
func (e *env) postNotify(path, contentType string, header http.Header, body []byte) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// alipayContentType is what Alipay sends; Go's mime parser rejects it.
const alipayContentType = "application/x-www-form-urlencoded; text/html; charset=utf-8"

// alipayNotify signs a notification with the test Alipay key through openssl.
func alipayNotify(tb testing.TB, fields map[string]string) []byte {
	return testsign.AlipayNotify(tb, alipayKeyFile, fields)
}

// paidFields are the fields of a TRADE_SUCCESS payment notification for order otn of amount yuan.
func paidFields(otn, yuan string) map[string]string {
	return testsign.AlipayPaid(alipayAppID, alipaySeller, otn, yuan)
}

func with(fields map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(fields))
	for k, v := range fields {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(out, kv[i])
		} else {
			out[kv[i]] = kv[i+1]
		}
	}
	return out
}
