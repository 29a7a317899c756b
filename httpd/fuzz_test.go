package httpd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/httpd"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/sqlite"
)

// The merchant API's JSON bodies, fuzzed through the real handler on a real SQLite store. The
// committed tests run only the seeds; run it for longer with (docs/reliability.md):
//
//	go test -run='^$' -fuzz='^FuzzMerchantJSON$' -fuzztime=10m ./httpd

// fuzzRoute is an API route that reads a JSON object body, with the keys the API documents for
// it (docs/openapi.yaml), written here rather than read from the code under test.
type fuzzRoute struct {
	method, path string
	keys         []string
}

// FuzzMerchantJSON posts fuzzed bodies to every route that reads a JSON object: never a panic,
// never a 500; a body with a key that is not one of the route's documented keys exactly (unknown,
// case variant, or spelled with escapes that decode to a variant) or with a duplicated key at any
// depth is answered 400; and a body that is accepted (2xx) is a JSON object with only documented
// keys, each once.
func FuzzMerchantJSON(f *testing.F) {
	h, routes := fuzzServer(f)
	seeds := []string{
		`{"app":"shop","out_trade_no":"S1","amount":100,"subject":"s","channel":"alipay.app"}`,
		`{"app":"shop","out_trade_no":"S2","amount":100,"currency":"CNY","subject":"s","body":"b","channel":"alipay.page","expires_in":"15m"}`,
		`{"app":"shop","out_trade_no":"J1","AMOUNT":1,"amount":8888,"Amount":5,"subject":"s","channel":"alipay.app"}`,
		`{"App":"shop","out_trade_no":"J1","amount":8888,"subject":"s","channel":"alipay.app"}`,
		`{"app":"shop","out_trade_no":"J1","amount":5,"amount":8888,"subject":"s","channel":"alipay.app"}`,
		`{"\u0061pp":"shop","out_trade_no":"J2","amount":1,"ſubject":"s","channel":"alipay.app"}`,
		`{"app":"shop","out_trade_no":"J3","amount":1e2,"subject":"s","channel":"alipay.app"}`,
		`{"app":"shop","out_trade_no":"../../x","amount":-1,"subject":"'; DROP TABLE orders;--","channel":"alipay.app"}`,
		`{"out_request_no":"R1","amount":1,"reason":"r"}`,
		`{"out_request_no":"R1","Amount":1,"amount":100}`,
		`{"url":"https://hooks.example.com/a","events":["order.paid"],"apps":["shop"],"description":"d"}`,
		`{"url":"https://hooks.example.com/a","events":["order.paid","order.paid"],"status":"disabled"}`,
		`{"url":"https://hooks.example.com/a","events":[{"a":1,"a":2}]}`,
		`{"endpoint_id":"we_1"}`,
		`{"since":"2026-01-01T00:00:00Z"}`,
		``, `{}`, `[]`, `null`, `{"app":"shop"} {}`, `{"app":`, "{\"app\":\"\xff\"}",
	}
	for i := range routes {
		for _, s := range seeds {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := routes[int(route)%len(routes)]
		req := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		code := rec.Code
		if code >= 500 && code != http.StatusBadGateway {
			t.Fatalf("%s %s %q: %d %s", rt.method, rt.path, body, code, rec.Body)
		}
		keys, dup, isObject := jsonKeys(body)
		var stray string
		for _, k := range keys {
			if !slices.Contains(rt.keys, k) {
				stray = k
				break
			}
		}
		if (dup || stray != "") && code != http.StatusBadRequest {
			t.Fatalf("%s %s %q (duplicate %v, undocumented key %q): %d %s, want 400", rt.method, rt.path, body, dup, stray, code, rec.Body)
		}
		if code < 300 && (!isObject || dup || stray != "") {
			t.Fatalf("%s %s %q accepted: %d %s", rt.method, rt.path, body, code, rec.Body)
		}
	})
}

// jsonKeys reads body as the API's JSON object: its top-level keys (decoded), whether any object
// at any depth has a key twice, and whether body is one JSON object (an empty body counts as {}).
func jsonKeys(body []byte) (keys []string, dup, isObject bool) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, false, true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	var walk func(depth int) bool
	walk = func(depth int) bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return false
				}
				k, _ := kt.(string)
				if seen[k] {
					dup = true
				}
				seen[k] = true
				if depth == 0 {
					keys = append(keys, k)
				}
				if !walk(depth + 1) {
					return false
				}
			}
			_, err = dec.Token()
			return err == nil
		case json.Delim('['):
			for dec.More() {
				if !walk(depth + 1) {
					return false
				}
			}
			_, err = dec.Token()
			return err == nil
		}
		return true
	}
	ok := bytes.TrimSpace(body)[0] == '{' && walk(0)
	if ok {
		if _, err := dec.Token(); err != io.EOF {
			ok = false
		}
	}
	return keys, dup, ok
}

// fuzzServer is the API's handler with the Alipay app "shop" (its gateway refuses connections) on
// a fresh SQLite store, a pending order F0 and a webhook endpoint; and the routes to fuzz.
func fuzzServer(f *testing.F) (http.Handler, []fuzzRoute) {
	ctx := context.Background()
	db, err := sqlite.Open(filepath.Join(f.TempDir(), "paynotify.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		f.Fatal(err)
	}
	pub, err := os.ReadFile("testdata/alipay_public.pem")
	if err != nil {
		f.Fatal(err)
	}
	alipayPub, err := alipay.ParsePublicKey(pub)
	if err != nil {
		f.Fatal(err)
	}
	client, err := alipay.NewClient(alipay.Config{AppID: alipayAppID, PrivateKey: testAppKey(f), AlipayPublicKey: alipayPub,
		Gateway: "http://127.0.0.1:1/gateway.do"})
	if err != nil {
		f.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	s := &httpd.Server{
		Service: &paynotify.Service{
			Store:     db,
			Processor: &paynotify.Processor{Store: db, Logger: log},
			Apps: map[string]*paynotify.App{"shop": {Name: "shop", Provider: paynotify.ProviderAlipay, AppID: alipayAppID,
				SellerIDs: []string{alipaySeller}, Gateway: &provider.Alipay{Client: client}}},
			PublicURL: "https://pay.example.com",
			Logger:    log,
		},
		APIToken: testToken,
		Logger:   log,
	}
	h := s.Handler()
	call := func(method, path, body string) map[string]any {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var out map[string]any
		if rec.Code >= 300 || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
			f.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
		}
		return out
	}
	call("POST", "/v1/orders", `{"app":"shop","out_trade_no":"F0","amount":100,"subject":"s","channel":"alipay.app"}`)
	ep := call("POST", "/v1/webhook-endpoints", `{"url":"https://hooks.example.com/f"}`)
	id, _ := ep["id"].(string)
	endpointKeys := []string{"url", "events", "apps", "description", "status"}
	return h, []fuzzRoute{
		{"POST", "/v1/orders", []string{"app", "out_trade_no", "amount", "currency", "subject", "body", "channel", "expires_in", "payer_openid", "payer_client_ip"}},
		{"POST", "/v1/orders/shop/F0/refunds", []string{"amount", "out_request_no", "reason"}},
		{"POST", "/v1/webhook-endpoints", endpointKeys},
		{"PATCH", "/v1/webhook-endpoints/" + id, endpointKeys},
		{"POST", "/v1/events/evt_none/resend", []string{"endpoint_id"}},
		{"POST", "/v1/webhook-endpoints/" + id + "/recover", []string{"since"}},
	}
}
