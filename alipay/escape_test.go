package alipay

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// phpURLEncode is PHP's urlencode, written from its documentation and independent of
// queryEscape: "-_." and alphanumerics stay, space becomes '+', every other byte is %XX with
// upper-case hex. The official PHP SDK's AopClient builds page-pay URLs with urlencode
// (pageExecute, GET) and app-pay orderStrings with http_build_query (sdkExecute), whose default
// PHP_QUERY_RFC1738 is urlencode; not rawurlencode, which would leave '~' raw and write space as
// %20. Java's URLEncoder agrees except for '*', which it leaves raw.
func phpURLEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// phpOrderString is http_build_query over ksort'ed params: the PHP SDK's sdkExecute.
func phpOrderString(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = phpURLEncode(k) + "=" + phpURLEncode(params[k])
	}
	return strings.Join(parts, "&")
}

func TestQueryEscape_PHPURLEncode(t *testing.T) {
	// Known PHP answers: php -r 'echo urlencode("…");'
	for in, want := range map[string]string{
		"~":                         "%7E",
		"Coffee ~ tea*/é":           "Coffee+%7E+tea%2A%2F%C3%A9",
		"https://a.example/~me?x=1": "https%3A%2F%2Fa.example%2F%7Eme%3Fx%3D1",
		"a-b_c.d!'()":               "a-b_c.d%21%27%28%29",
	} {
		if got := queryEscape(in); got != want {
			t.Errorf("queryEscape(%q) = %q, want %q", in, got, want)
		}
	}
	var all strings.Builder
	for c := 0; c < 256; c++ {
		all.WriteByte(byte(c))
	}
	if got, want := queryEscape(all.String()), phpURLEncode(all.String()); got != want {
		t.Errorf("every byte:\n got %s\nwant %s", got, want)
	}
}

// TestPayEncoding_PHPSDKBytes: an app-pay orderString and a page-pay URL with '~' (and space, '*',
// non-ASCII) in their values are byte-identical to the PHP SDK's; the signature is over the
// unencoded canonical string and does not change.
func TestPayEncoding_PHPSDKBytes(t *testing.T) {
	c := testClient(t, nil)
	p := TradeAppPay{OutTradeNo: "T~1", TotalAmount: 100, Subject: "Coffee ~ tea*/é", NotifyURL: "https://shop.example/~me/notify"}
	s, err := c.AppPay(p)
	if err != nil {
		t.Fatal(err)
	}
	params, err := c.signedPay("alipay.trade.app.pay", bizPay{OutTradeNo: p.OutTradeNo, TotalAmount: FormatAmount(p.TotalAmount), Subject: p.Subject,
		ProductCode: ProductAppPay}, p.NotifyURL, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := phpOrderString(params); s != want {
		t.Errorf("orderString:\n got %s\nwant %s", s, want)
	}
	if !strings.Contains(s, "%7E") || strings.Contains(s, "~") {
		t.Errorf("orderString leaves '~' raw: %s", s)
	}

	c = testClient(t, func(cfg *Config) {
		cfg.Gateway = "https://openapi.alipay.com/gateway.do"
	})
	pr, err := c.PagePay(TradePagePay{OutTradeNo: "T2", TotalAmount: 100, Subject: "s", ReturnURL: "https://shop.example/~me/return?a=b c"})
	if err != nil {
		t.Fatal(err)
	}
	// pageExecute with GET: gateway?getSignContentUrlencode(params): ksort'ed, values urlencode'd.
	if want := "https://openapi.alipay.com/gateway.do?" + phpOrderString(pr.Params); pr.URL != want {
		t.Errorf("page pay URL:\n got %s\nwant %s", pr.URL, want)
	}
	if !strings.Contains(pr.URL, "return_url=https%3A%2F%2Fshop.example%2F%7Eme%2Freturn%3Fa%3Db+c") {
		t.Errorf("page pay URL's return_url: %s", pr.URL)
	}
	_, pub := testKeys(t)
	if err := verify(pub, RSA2, []byte(alipaywire.CanonicalRequest(pr.Params)), pr.Params["sign"]); err != nil {
		t.Errorf("signature: %v", err)
	}
}
