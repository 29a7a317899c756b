package sandbox

import (
	"net/http"
	"strings"
	"testing"
)

// TestCrossOriginRefused: a page of another site, opened in the developer's browser, cannot
// drive the sandbox (create or pay orders, change faults): the browser says where the request
// comes from, and a change from elsewhere is refused. Programs, the sandbox's own pages and safe
// methods pass.
func TestCrossOriginRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	order := `{"provider":"alipay","product":"page","out_trade_no":"CSRF1","amount":100,"notify_url":"http://127.0.0.1:1/notify"}`
	post := func(path, body string, header map[string]string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, b.srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "text/plain") // a form any page may post without asking
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, h := range map[string]map[string]string{
		"Origin":         {"Origin": "https://evil.example"},
		"Sec-Fetch-Site": {"Sec-Fetch-Site": "cross-site"},
	} {
		if code := post("/sandbox/api/order", order, h); code != http.StatusForbidden {
			t.Errorf("%s from another site: %d, want 403", name, code)
		}
	}
	if ts, err := b.sb.Trades(ProviderAlipay, "CSRF1"); err != nil || len(ts) != 0 {
		t.Fatalf("a refused request created %v (%v)", ts, err)
	}
	if code := post("/sandbox/api/order", order, map[string]string{"Origin": b.srv.URL}); code >= 300 {
		t.Fatalf("same origin: %d", code)
	}
	if code := post("/sandbox/api/order", strings.Replace(order, "CSRF1", "CSRF2", 1), nil); code >= 300 {
		t.Fatalf("a program's request: %d", code)
	}
	// A gateway takes the merchant page's auto-submitted form, from the merchant's origin.
	if code := post("/sandbox/alipay/gateway.do", "method=alipay.trade.page.pay", map[string]string{"Sec-Fetch-Site": "cross-site"}); code == http.StatusForbidden {
		t.Fatal("the gateway refused a cross-origin form post")
	}
}
