package sandbox

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestGatewayAnswerNoActiveContent: an API answer the sandbox serves as text/html, as Alipay's
// gateway does, can quote what the request sent, markup included; a browser must not run it (in
// the demo the sandbox shares its origin with the console).
func TestGatewayAnswerNoActiveContent(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	mark := "<img src=x onerror=alert(1)>"
	name := url.QueryEscape(mark)
	resp, err := http.Post(b.srv.URL+"/sandbox/alipay/gateway.do?"+name+"=1", "application/x-www-form-urlencoded", strings.NewReader(name+"=2"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "<img") {
		t.Fatalf("the answer does not quote the markup (%s): the test no longer shows the case", body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("a %s answer quoting markup without CSP sandbox and nosniff: %v", resp.Header.Get("Content-Type"), resp.Header)
	}
}
