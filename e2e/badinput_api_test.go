package e2e_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
)

// rawRequest sends a request with exactly the given headers (nothing added) and returns the
// answer. path is sent as written (not cleaned).
func (e *env) rawRequest(method, path string, header http.Header, body []byte) (int, string) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, method, e.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	// No redirect is followed: a redirect is the answer.
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, trim(path), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read the answer: %v", method, trim(path), err)
	}
	return resp.StatusCode, string(b)
}

// TestBadInputAPI: the merchant API under bad input. Tokens missing, wrong, in another scheme,
// in the query string or very long are refused 401 (a header over the server's limit 431) and
// reach nothing; path traversal and SQL metacharacters in ids and filters find nothing and change
// nothing; negative, zero, fractional, huge and non-number amounts, unknown, duplicate and
// case-variant JSON keys, control characters in text, bodies not UTF-8, and oversize bodies are
// refused 400 naming the problem. No row creates
// or changes an order, an event or a refund; the last rows, well-formed, do.
func TestBadInputAPI(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		const otn = "bad_api_target"
		e.create(paynotify.ChannelAlipayPage, otn, 8888)
		auth := func(token string) http.Header {
			return http.Header{"Authorization": {"Bearer " + token}, "Content-Type": {"application/json"}}
		}
		ok := auth(apiToken)
		n := 0
		// create is a create-order body for a fresh out_trade_no, with the fields of extra
		// (raw JSON members) after the usual ones.
		create := func(amount string, extra ...string) []byte {
			n++
			members := []string{`"app":"` + alipayApp + `"`, fmt.Sprintf(`"out_trade_no":"bad_api_%d"`, n), `"subject":"s"`, `"channel":"alipay.page"`}
			if amount != "" {
				members = append(members, `"amount":`+amount)
			}
			return []byte("{" + strings.Join(append(members, extra...), ",") + "}")
		}
		req := func(method, path string, h http.Header, body []byte) func() (int, string) {
			return func() (int, string) { return e.rawRequest(method, path, h, body) }
		}
		unauthorized := apiErr(http.StatusUnauthorized, paynotify.EUNAUTHORIZED)
		invalid := apiErr(http.StatusBadRequest, paynotify.EINVALID)
		notFound := apiErr(http.StatusNotFound, paynotify.ENOTFOUND)
		noOrders := answer{status: http.StatusOK, body: `{"orders":[]`, bodyPrefix: true}
		refunds := "/v1/orders/" + alipayApp + "/" + otn + "/refunds"
		long := strings.Repeat("t", 60<<10)

		rows := []row{
			// Tokens.
			{name: "no token", send: req("POST", "/v1/orders", http.Header{"Content-Type": {"application/json"}}, create("100")), want: unauthorized},
			{name: "wrong token", send: req("POST", "/v1/orders", auth("e2e-token-0123456789abcdeX"), create("100")), want: unauthorized},
			{name: "the token's prefix", send: req("POST", "/v1/orders", auth(apiToken[:len(apiToken)-1]), create("100")), want: unauthorized},
			{name: "the token and more", send: req("POST", "/v1/orders", auth(apiToken+"0"), create("100")), want: unauthorized},
			{name: "a stored token's shape, unknown", send: req("POST", "/v1/orders", auth("pn_"+strings.Repeat("a", 40)), create("100")), want: unauthorized},
			{name: "scheme in lower case", send: req("POST", "/v1/orders", http.Header{"Authorization": {"bearer " + apiToken}}, create("100")), want: unauthorized},
			{name: "Basic scheme", send: req("POST", "/v1/orders", http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(apiToken+":"))}}, create("100")), want: unauthorized},
			{name: "token without a scheme", send: req("POST", "/v1/orders", http.Header{"Authorization": {apiToken}}, create("100")), want: unauthorized},
			{name: "token in the query (access_token)", send: req("POST", "/v1/orders?access_token="+apiToken, nil, create("100")), want: unauthorized},
			{name: "token in the query (token)", send: req("GET", "/v1/orders?token="+apiToken, nil, nil), want: unauthorized},
			{name: "token in the query (api_token)", send: req("GET", "/v1/orders/"+alipayApp+"/"+otn+"?api_token="+apiToken, nil, nil), want: unauthorized},
			{name: "token in a cookie", send: req("GET", "/v1/orders", http.Header{"Cookie": {"token=" + apiToken}}, nil), want: unauthorized},
			{name: "very long token (60 KiB)", send: req("POST", "/v1/orders", auth(long), create("100")), want: unauthorized},
			{name: "token over the header limit (100 KiB)", send: req("POST", "/v1/orders", auth(strings.Repeat("t", 100<<10)), create("100")),
				want: answer{status: http.StatusRequestHeaderFieldsTooLarge, body: "431 Request Header Fields Too Large", bodyPrefix: true}},
			// Ids: path traversal and SQL metacharacters.
			{name: "traversal in out_trade_no (encoded)", send: req("GET", "/v1/orders/"+alipayApp+"/..%2F..%2Fetc%2Fpasswd", ok, nil), want: notFound},
			{name: "traversal in app (encoded)", send: req("GET", "/v1/orders/..%2F"+alipayApp+"/"+otn, ok, nil), want: notFound},
			{name: "traversal in the path", send: req("GET", "/v1/orders/"+alipayApp+"/../../../etc/passwd", ok, nil),
				want: answer{status: http.StatusTemporaryRedirect, body: `<a href="/etc/passwd">Temporary Redirect</a>.`, bodyPrefix: true}},
			{name: "traversal in the path, followed", send: req("GET", "/etc/passwd", ok, nil), want: answer{status: http.StatusNotFound, body: "404 page not found"}},
			{name: "SQL in out_trade_no", send: req("GET", "/v1/orders/"+alipayApp+"/x'%20OR%20'1'%3D'1", ok, nil), want: notFound},
			{name: "SQL in app", send: req("GET", "/v1/orders/"+alipayApp+"'%20--/"+otn, ok, nil), want: notFound},
			{name: "SQL in the app filter", send: req("GET", "/v1/orders?app=x'%20OR%201%3D1%20--", ok, nil), want: noOrders},
			{name: "SQL in the evidence filter", send: req("GET", "/v1/notifications?out_trade_no=x'%20OR%20'1'%3D'1", ok, nil),
				want: answer{status: http.StatusOK, body: `{"notifications":[]`, bodyPrefix: true}},
			{name: "SQL in the status filter", send: req("GET", "/v1/orders?status=paid'%20OR%20'1'%3D'1", ok, nil), want: invalid.saying("Unknown status")},
			{name: "traversal as a new out_trade_no", send: req("POST", "/v1/orders", ok, []byte(`{"app":"`+alipayApp+`","out_trade_no":"../../etc/passwd","amount":100,"subject":"s","channel":"alipay.page"}`)), want: invalid},
			{name: "SQL as a new out_trade_no", send: req("POST", "/v1/orders", ok, []byte(`{"app":"`+alipayApp+`","out_trade_no":"x'); DROP TABLE orders; --","amount":100,"subject":"s","channel":"alipay.page"}`)), want: invalid},
			{name: "SQL as the app", send: req("POST", "/v1/orders", ok, []byte(`{"app":"x' OR '1'='1","out_trade_no":"bad_api_sql_app","amount":100,"subject":"s","channel":"alipay.page"}`)),
				want: answer{status: http.StatusBadRequest, body: `{"error":{"code":"invalid","message":"Unknown app \"x' OR '1'='1\"."}}`}},
			{name: "refund of an order named with SQL", send: req("POST", "/v1/orders/"+alipayApp+"/x'%20OR%20'1'%3D'1/refunds", ok, []byte(`{"amount":100,"out_request_no":"R123456"}`)), want: notFound},
			// Ids and filters no stored row can have (NUL, bytes that are not UTF-8): refused
			// alike on both stores, before any store is asked.
			{name: "NUL in out_trade_no", send: req("GET", "/v1/orders/"+alipayApp+"/x%00y", ok, nil), want: invalid.saying("The request's path holds NUL or bytes that are not UTF-8.")},
			{name: "not UTF-8 in app", send: req("GET", "/v1/orders/%FF/"+otn+"/refunds", ok, nil), want: invalid.saying("The request's path holds NUL")},
			{name: "NUL in a refund's order", send: req("POST", "/v1/orders/"+alipayApp+"/x%00/refunds", ok, []byte(`{"amount":100,"out_request_no":"R123456"}`)), want: invalid.saying("The request's path holds NUL")},
			{name: "NUL in the events filter", send: req("GET", "/v1/events?out_trade_no=%00", ok, nil), want: invalid.saying("The request's parameter out_trade_no holds NUL or bytes that are not UTF-8.")},
			{name: "not UTF-8 in the evidence filter", send: req("GET", "/v1/notifications?out_trade_no=caf%E9", ok, nil), want: invalid.saying("parameter out_trade_no holds NUL")},
			{name: "not UTF-8 in the orders filter", send: req("GET", "/v1/orders?app=%C3", ok, nil), want: invalid.saying("parameter app holds NUL")},
			{name: "NUL in a parameter's name", send: req("GET", "/v1/orders?a%00=1", ok, nil), want: invalid.saying("The request's query holds NUL")},
			{name: "NUL in an endpoint id", send: req("GET", "/v1/webhook-endpoints/we_%00", ok, nil), want: invalid.saying("The request's path holds NUL")},
			{name: "NUL in an event id", send: req("POST", "/v1/events/ev%00/resend", ok, nil), want: invalid.saying("The request's path holds NUL")},
			{name: "NUL in a resend's endpoint", send: req("POST", "/v1/events/evt_x/resend", ok, []byte(`{"endpoint_id":"we_\u0000"}`)), want: invalid.saying("endpoint_id: holds NUL")},
			// Amounts.
			{name: "negative amount", send: req("POST", "/v1/orders", ok, create("-1")), want: invalid.saying("amount must be a positive integer number of fen")},
			{name: "zero amount", send: req("POST", "/v1/orders", ok, create("0")), want: invalid.saying("amount must be a positive integer number of fen")},
			{name: "fractional amount", send: req("POST", "/v1/orders", ok, create("88.88")), want: invalid.saying("amount must be a positive integer number of fen")},
			{name: "exponent amount", send: req("POST", "/v1/orders", ok, create("1e3")), want: invalid.saying("amount must be a positive integer number of fen")},
			{name: "amount as a string", send: req("POST", "/v1/orders", ok, create(`"100"`)), want: invalid.saying("amount must be a positive integer number of fen")},
			{name: "amount null", send: req("POST", "/v1/orders", ok, create("null")), want: invalid.saying("amount must be a positive integer number of fen")},
			{name: "amount with a leading zero", send: req("POST", "/v1/orders", ok, create("0100")), want: invalid.saying("Invalid JSON body")},
			{name: "amount over int64", send: req("POST", "/v1/orders", ok, create("9223372036854775808")), want: invalid.saying("amount must be a positive integer number of fen")},
			{name: "amount of 20 digits", send: req("POST", "/v1/orders", ok, create("99999999999999999999")), want: invalid.saying("amount must be a positive integer number of fen")},
			{name: "amount over Alipay's bound", send: req("POST", "/v1/orders", ok, create("10000000001")), want: invalid.saying("total_amount must be 0.01 to 100000000.00 yuan")},
			{name: "no amount", send: req("POST", "/v1/orders", ok, create("")), want: invalid.saying("amount must be a positive integer number of fen")},
			{name: "negative refund", send: req("POST", refunds, ok, []byte(`{"amount":-1,"out_request_no":"R123456"}`)), want: invalid.saying("amount must be a positive integer number of fen")},
			{name: "zero refund", send: req("POST", refunds, ok, []byte(`{"amount":0,"out_request_no":"R123456"}`)), want: invalid.saying("amount must be a positive integer number of fen")},
			{name: "huge refund", send: req("POST", refunds, ok, []byte(`{"amount":99999999999999999999,"out_request_no":"R123456"}`)), want: invalid.saying("amount must be a positive integer number of fen")},
			// JSON keys.
			{name: "unknown key", send: req("POST", "/v1/orders", ok, create("100", `"amont":100`)), want: invalid.saying("amont: unknown field")},
			{name: "duplicate key", send: req("POST", "/v1/orders", ok, create("100", `"amount":1`)), want: invalid.saying("amount: duplicate key")},
			{name: "case-variant key", send: req("POST", "/v1/orders", ok, create("100", `"Amount":1`)), want: invalid.saying("keys are case-sensitive")},
			{name: "case-variant key alone", send: req("POST", "/v1/orders", ok, []byte(`{"APP":"`+alipayApp+`","out_trade_no":"bad_api_case","amount":100,"subject":"s","channel":"alipay.page"}`)), want: invalid.saying("keys are case-sensitive")},
			{name: "duplicate key in a refund", send: req("POST", refunds, ok, []byte(`{"amount":1,"amount":100,"out_request_no":"R123456"}`)), want: invalid.saying("amount: duplicate key")},
			{name: "trailing data", send: req("POST", "/v1/orders", ok, append(create("100"), `{}`...)), want: invalid.saying("trailing data")},
			{name: "an array", send: req("POST", "/v1/orders", ok, []byte(`[`+string(create("100"))+`]`)), want: invalid},
			{name: "not JSON", send: req("POST", "/v1/orders", ok, []byte("app=alipay-demo&amount=100")), want: invalid},
			// Text that no store or provider takes.
			{name: "NUL in the subject", send: req("POST", "/v1/orders", ok, []byte(`{"app":"`+alipayApp+`","out_trade_no":"bad_api_nul","amount":100,"subject":"a\u0000b","channel":"alipay.page"}`)),
				want: invalid.saying("subject holds the control character U+0000.")},
			{name: "a body that is not UTF-8", send: req("POST", "/v1/orders", ok, []byte(`{"app":"`+alipayApp+`","out_trade_no":"bad_api_latin1","amount":100,"subject":"caf`+"\xe9"+`","channel":"alipay.page"}`)),
				want: invalid.saying("Invalid JSON body: not valid UTF-8.")},
			{name: "a control character in a refund reason", send: req("POST", refunds, ok, []byte(`{"amount":1,"out_request_no":"R123456","reason":"a\u001bb"}`)),
				want: invalid.saying("reason holds the control character U+001B.")},
			{name: "a bidi override in the subject", send: req("POST", "/v1/orders", ok, []byte(`{"app":"`+alipayApp+`","out_trade_no":"bad_api_bidi","amount":100,"subject":"fee \u202e00.1","channel":"alipay.page"}`)),
				want: invalid.saying("subject holds the bidirectional control character U+202E.")},
			{name: "a bidi isolate in a refund reason", send: req("POST", refunds, ok, []byte(`{"amount":1,"out_request_no":"R123456","reason":"a\u2067b"}`)),
				want: invalid.saying("reason holds the bidirectional control character U+2067.")},
			// Oversize bodies (the limit is 1 MiB).
			{name: "2 MiB body", send: req("POST", "/v1/orders", ok, create("100", `"body":"`+strings.Repeat("x", 2<<20)+`"`)), want: invalid.saying("request body too large")},
			{name: "10 MB body", send: req("POST", "/v1/orders", ok, create("100", `"body":"`+strings.Repeat("x", 10<<20)+`"`)), want: invalid.saying("request body too large")},
			{name: "10 MB refund", send: req("POST", refunds, ok, []byte(`{"amount":1,"out_request_no":"R123456","reason":"`+strings.Repeat("x", 10<<20)+`"}`)), want: invalid.saying("request body too large")},
		}
		// Well-formed, the same requests do what they say.
		rows = append(rows,
			row{name: "a well-formed create", send: req("POST", "/v1/orders", ok, []byte(`{"app":"`+alipayApp+`","out_trade_no":"bad_api_ok","amount":100,"subject":"s","channel":"alipay.page"}`)),
				want: answer{status: http.StatusCreated, body: `{"app":"` + alipayApp + `","out_trade_no":"bad_api_ok"`, bodyPrefix: true},
				eff:  effect{orders: map[string]string{alipayApp + "/bad_api_ok": "pending@v1"}}},
			row{name: "a read with the token", send: req("GET", "/v1/orders/"+alipayApp+"/"+otn, ok, nil),
				want: answer{status: http.StatusOK, body: `{"app":"` + alipayApp + `","out_trade_no":"` + otn + `"`, bodyPrefix: true}},
		)
		e.runRows(rows)
	})
}
