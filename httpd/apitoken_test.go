package httpd_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/httpd"
)

// countingStore counts the store's token lookups, so that a test sees when the server asks.
type countingStore struct {
	paynotify.Store
	finds atomic.Int64
}

func (s *countingStore) FindAPIToken(ctx context.Context, hash []byte) (*paynotify.APIToken, error) {
	s.finds.Add(1)
	return s.Store.FindAPIToken(ctx, hash)
}

// fakeClock is the server's clock in these tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// tokenEnv is a running server (a real socket) whose stored tokens are cached for ttl, on the
// clock returned.
func tokenEnv(t *testing.T, s paynotify.Store, ttl time.Duration) (*env, *countingStore, *fakeClock) {
	t.Helper()
	cs := &countingStore{Store: s}
	e := newEnv(t, cs)
	clock := &fakeClock{now: time.Date(2026, 12, 6, 9, 30, 0, 123456000, time.UTC)}
	h := &httpd.Server{Service: e.http.Service, APIToken: testToken, Logger: e.http.Logger, TokenCacheTTL: ttl, Now: clock.Now}
	srv := httptest.NewServer(specCheck(t, h.Handler())) // docs/openapi.yaml checks every API call
	t.Cleanup(srv.Close)
	e.srv, e.http = srv, h
	return e, cs, clock
}

// issue makes a stored token.
func issue(t *testing.T, st paynotify.APITokenStore, name, scope string) string {
	t.Helper()
	tok, err := paynotify.IssueAPIToken(t.Context(), st, rand.Reader, name, scope, time.Now())
	if err != nil {
		t.Fatalf("IssueAPIToken(%s): %v", name, err)
	}
	return tok
}

// call makes an API call with the Authorization header auth ("" for none) and returns the status,
// the error code of the answer ("" when it is not an error) and the body.
func (e *env) call(auth, method, path, body string) (int, string, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
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
	var ae struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(b, &ae)
	if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
		e.t.Errorf("%s %s: 401 without WWW-Authenticate", method, path)
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		e.t.Errorf("%s %s: a JSON answer without X-Content-Type-Options: nosniff", method, path)
	}
	return resp.StatusCode, ae.Error.Code, string(b)
}

func orderBody(otn string) string {
	return `{"app":"shop","out_trade_no":"` + otn + `","amount":100,"subject":"s","channel":"alipay.app"}`
}

// TestAPITokenScopes: the config's api_token and write tokens may do everything, read tokens
// only GET (403 forbidden otherwise, changing nothing); anything else is 401.
func TestAPITokenScopes(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e, _, _ := tokenEnv(t, s, -1)
		read := issue(t, s, "reporting", paynotify.ScopeRead)
		write := issue(t, s, "shop-backend", paynotify.ScopeWrite)

		t.Run("ConfigToken", func(t *testing.T) {
			if code, _, body := e.call("Bearer "+testToken, "POST", "/v1/orders", orderBody("CFG1")); code != http.StatusCreated {
				t.Fatalf("POST with the config's api_token: %d %s", code, body)
			}
			if code, _, body := e.call("Bearer "+testToken, "GET", "/v1/orders/shop/CFG1", ""); code != http.StatusOK {
				t.Fatalf("GET with the config's api_token: %d %s", code, body)
			}
		})
		t.Run("Write", func(t *testing.T) {
			if code, _, body := e.call("Bearer "+write, "POST", "/v1/orders", orderBody("W1")); code != http.StatusCreated {
				t.Fatalf("POST with a write token: %d %s", code, body)
			}
			if code, _, body := e.call("Bearer "+write, "GET", "/v1/orders/shop/W1", ""); code != http.StatusOK {
				t.Fatalf("GET with a write token: %d %s", code, body)
			}
			if code, _, body := e.call("Bearer "+write, "POST", "/v1/orders/shop/W1/close", ""); code != http.StatusOK && code != http.StatusBadGateway {
				// The gateway is unreachable: 502 means the call got past authentication.
				t.Fatalf("POST close with a write token: %d %s", code, body)
			}
		})
		t.Run("Read", func(t *testing.T) {
			for _, path := range []string{"/v1/orders/shop/CFG1", "/v1/orders", "/v1/events", "/v1/notifications", "/v1/webhook-endpoints"} {
				if code, _, body := e.call("Bearer "+read, "GET", path, ""); code != http.StatusOK {
					t.Errorf("GET %s with a read token: %d %s", path, code, body)
				}
			}
			for _, c := range []struct{ method, path, body string }{
				{"POST", "/v1/orders", orderBody("R1")},
				{"POST", "/v1/orders/shop/CFG1/close", ""},
				{"POST", "/v1/orders/shop/CFG1/refunds", `{"out_request_no":"RF1","amount":1}`},
				{"POST", "/v1/webhook-endpoints", `{"url":"https://merchant.example/hooks"}`},
				{"DELETE", "/v1/webhook-endpoints/whe_x", ""},
				{"PATCH", "/v1/webhook-endpoints/whe_x", `{}`},
			} {
				code, errCode, body := e.call("Bearer "+read, c.method, c.path, c.body)
				if code != http.StatusForbidden || errCode != paynotify.EFORBIDDEN {
					t.Errorf("%s %s with a read token: %d %s, want 403 %s", c.method, c.path, code, body, paynotify.EFORBIDDEN)
				}
				if !strings.Contains(body, "reporting") || !strings.Contains(body, "scope read") {
					t.Errorf("%s %s: the answer %s does not name the token and its scope", c.method, c.path, body)
				}
			}
			if _, err := s.GetOrder(t.Context(), "shop", "R1"); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
				t.Errorf("the read token's POST created order R1 (err %v)", err)
			}
			if eps, err := s.ListWebhookEndpoints(t.Context(), ""); err != nil || len(eps) != 0 {
				t.Errorf("webhook endpoints after the read token's POST: %d, %v; want none", len(eps), err)
			}
		})
		t.Run("Unauthorized", func(t *testing.T) {
			wrong, err := paynotify.NewAPIToken(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer " + wrong, "Bearer " + testToken + "x",
				"Bearer " + read[:len(read)-1], "Bearer " + read + "A", "bearer " + write, "Basic " + write, "Bearer  " + write} {
				if code, errCode, body := e.call(auth, "GET", "/v1/orders", ""); code != http.StatusUnauthorized || errCode != paynotify.EUNAUTHORIZED {
					t.Errorf("Authorization %q: %d %s, want 401", auth, code, body)
				}
			}
		})
		if logs := e.logs.String(); strings.Contains(logs, read) || strings.Contains(logs, write) || strings.Contains(logs, testToken) {
			t.Errorf("a token value is in the server's logs:\n%s", logs)
		}
	})
}

// TestAPITokenRevocation: a revoked token is refused without a restart, at once when the server
// does not cache, within TokenCacheTTL when it does; lookups happen once per TTL, and a use is
// recorded at most once a minute.
func TestAPITokenRevocation(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		t.Run("NoCache", func(t *testing.T) {
			e, cs, _ := tokenEnv(t, s, -1)
			tok := issue(t, s, "nocache", paynotify.ScopeWrite)
			for i := range 2 {
				if code, _, body := e.call("Bearer "+tok, "GET", "/v1/orders", ""); code != http.StatusOK {
					t.Fatalf("call %d before revocation: %d %s", i, code, body)
				}
			}
			if n := cs.finds.Load(); n != 2 {
				t.Errorf("store lookups = %d, want 2 (one per request without a cache)", n)
			}
			if err := s.RevokeAPIToken(t.Context(), "nocache", time.Now()); err != nil {
				t.Fatal(err)
			}
			if code, errCode, body := e.call("Bearer "+tok, "GET", "/v1/orders", ""); code != http.StatusUnauthorized || errCode != paynotify.EUNAUTHORIZED {
				t.Fatalf("after revocation: %d %s, want 401", code, body)
			}
			// The config's token is not affected.
			if code, _, body := e.call("Bearer "+testToken, "GET", "/v1/orders", ""); code != http.StatusOK {
				t.Fatalf("config token after a revocation: %d %s", code, body)
			}
		})
		t.Run("Cache", func(t *testing.T) {
			e, cs, clock := tokenEnv(t, s, 0) // the default TTL
			tok := issue(t, s, "cached", paynotify.ScopeRead)
			get := func() int {
				code, _, _ := e.call("Bearer "+tok, "GET", "/v1/orders", "")
				return code
			}
			if code := get(); code != http.StatusOK {
				t.Fatalf("first call: %d", code)
			}
			first := clock.Now()
			clock.Add(httpd.DefaultTokenCacheTTL - time.Millisecond)
			if code := get(); code != http.StatusOK {
				t.Fatalf("second call: %d", code)
			}
			if n := cs.finds.Load(); n != 1 {
				t.Errorf("store lookups within the TTL = %d, want 1", n)
			}
			if err := s.RevokeAPIToken(t.Context(), "cached", time.Now()); err != nil {
				t.Fatal(err)
			}
			// Within the documented delay the cached token still works; once it is over, not.
			if code := get(); code != http.StatusOK {
				t.Fatalf("within the TTL after revocation: %d, want 200 (cached)", code)
			}
			clock.Add(time.Millisecond)
			if code := get(); code != http.StatusUnauthorized {
				t.Fatalf("TTL after the first lookup, revoked: %d, want 401", code)
			}
			if n := cs.finds.Load(); n != 2 {
				t.Errorf("store lookups = %d, want 2", n)
			}
			// Random well-shaped tokens are looked up each time (only found tokens are cached);
			// other values never.
			wrong, _ := paynotify.NewAPIToken(rand.Reader)
			e.call("Bearer "+wrong, "GET", "/v1/orders", "")
			e.call("Bearer not-a-token-of-ours-at-all", "GET", "/v1/orders", "")
			if n := cs.finds.Load(); n != 3 {
				t.Errorf("store lookups = %d, want 3", n)
			}

			toks, err := s.ListAPITokens(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			want := first.Truncate(time.Microsecond)
			for _, tk := range toks {
				if tk.Name == "cached" && (tk.LastUsedAt == nil || !tk.LastUsedAt.Equal(want)) {
					t.Errorf("LastUsedAt = %v, want %v (the first use; the next within a minute not recorded)", tk.LastUsedAt, want)
				}
			}
		})
		t.Run("LastUsed", func(t *testing.T) {
			e, _, clock := tokenEnv(t, s, -1)
			tok := issue(t, s, "used", paynotify.ScopeRead)
			lastUsed := func() *time.Time {
				toks, err := s.ListAPITokens(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				for _, tk := range toks {
					if tk.Name == "used" {
						return tk.LastUsedAt
					}
				}
				t.Fatal("token used not listed")
				return nil
			}
			if lu := lastUsed(); lu != nil {
				t.Fatalf("LastUsedAt before any use = %v", lu)
			}
			e.call("Bearer "+tok, "GET", "/v1/orders", "")
			first := clock.Now()
			clock.Add(59 * time.Second)
			e.call("Bearer "+tok, "GET", "/v1/orders", "")
			if lu := lastUsed(); lu == nil || !lu.Equal(first.Truncate(time.Microsecond)) {
				t.Fatalf("LastUsedAt = %v, want %v (one write a minute)", lu, first)
			}
			clock.Add(time.Second)
			e.call("Bearer "+tok, "GET", "/v1/orders", "")
			if lu := lastUsed(); lu == nil || !lu.Equal(clock.Now().Truncate(time.Microsecond)) {
				t.Fatalf("LastUsedAt = %v, want %v (a minute later)", lu, clock.Now())
			}
		})
	})
}

// TestAPITokenScopes_WebhookURLHidden (from a reviewer helper's audit): a read token sees an
// endpoint's URL as its scheme, host and port only (a receiver may keep its own token in the path
// or query, with which a read token could post forged events); write tokens and the config's
// api_token see it whole.
func TestAPITokenScopes_WebhookURLHidden(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e, _, _ := tokenEnv(t, s, -1)
		read := issue(t, s, "reporting", paynotify.ScopeRead)
		write := issue(t, s, "ops", paynotify.ScopeWrite)
		const full = "https://hooks.example.com/services/T000/s3cr3t-path?key=query-secret"
		code, _, body := e.call("Bearer "+testToken, "POST", "/v1/webhook-endpoints", `{"url":"`+full+`"}`)
		if code != http.StatusCreated {
			t.Fatalf("create: %d %s", code, body)
		}
		var ep struct {
			ID  string `json:"id"`
			URL string `json:"url"`
		}
		if err := json.Unmarshal([]byte(body), &ep); err != nil || ep.URL != full {
			t.Fatalf("create answered %s (%v)", body, err)
		}
		for _, tc := range []struct{ who, auth, want string }{
			{"read", read, "https://hooks.example.com/…"}, {"write", write, full}, {"config", testToken, full},
		} {
			for _, path := range []string{"/v1/webhook-endpoints/" + ep.ID, "/v1/webhook-endpoints"} {
				code, _, body := e.call("Bearer "+tc.auth, "GET", path, "")
				if code != http.StatusOK || !strings.Contains(body, `"url":"`+tc.want+`"`) || tc.who == "read" && strings.Contains(body, "s3cr3t") {
					t.Errorf("%s token, GET %s: %d %s; want url %s", tc.who, path, code, body, tc.want)
				}
			}
		}
	})
}

// TestCursorAsWritten (from a reviewer helper's audit): a cursor sent as "+0" came back as
// next "+0", echoed as sent; next is written as paynotify writes cursors.
func TestCursorAsWritten(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e, _, _ := tokenEnv(t, s, -1)
		code, _, body := e.call("Bearer "+testToken, "GET", "/v1/events?after=%2B0", "")
		if code != http.StatusOK || !strings.Contains(body, `"next":"0"`) {
			t.Errorf("after=+0: %d %s, want next \"0\"", code, body)
		}
	})
}
