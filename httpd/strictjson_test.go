package httpd_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/httpd"
)

// TestStrictJSON: merchant JSON with a duplicate key or a key spelled with other letter cases is
// refused with 400 naming the key, and nothing is created (encoding/json alone would match keys
// without case and keep the last one: {"AMOUNT":1,"amount":8888,"Amount":5} made an order of 5
// fen); a create without app says app is required.
func TestStrictJSON(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		for _, tt := range []struct{ name, path, body, want string }{
			{"ErrCaseVariants", "/v1/orders", `{"app":"shop","out_trade_no":"J1","AMOUNT":1,"amount":8888,"Amount":5,"subject":"s","channel":"alipay.app"}`,
				"AMOUNT: unknown field (did you mean amount? keys are case-sensitive)."},
			{"ErrCaseVariantAlone", "/v1/orders", `{"App":"shop","out_trade_no":"J1","amount":8888,"subject":"s","channel":"alipay.app"}`,
				"App: unknown field (did you mean app? keys are case-sensitive)."},
			{"ErrDuplicate", "/v1/orders", `{"app":"shop","out_trade_no":"J1","amount":5,"amount":8888,"subject":"s","channel":"alipay.app"}`,
				"amount: duplicate key."},
			// encoding/json alone decodes null into a struct as nothing: an empty request.
			{"ErrNull", "/v1/orders", `null`, "Invalid JSON body: must be a JSON object."},
			{"ErrNoApp", "/v1/orders", `{"out_trade_no":"J1","amount":8888,"subject":"s","channel":"alipay.app"}`,
				"app is required"},
			// Over Alipay's bound: refused before anything is sent, so 400, not 502.
			{"ErrAlipayAmountBound", "/v1/orders", `{"app":"shop","out_trade_no":"J1","amount":10000000001,"subject":"s","channel":"alipay.app"}`,
				"total_amount must be 0.01 to 100000000.00 yuan."},
			{"ErrRefundCase", "/v1/orders/shop/J0/refunds", `{"out_request_no":"R1","Amount":1,"amount":100}`,
				"Amount: unknown field (did you mean amount? keys are case-sensitive)."},
			// A null member decoded as a field left out: out_trade_no null made a new order with a
			// number of paynotify's at every call ("" is refused for that reason), and endpoint_id
			// null or "" resent to every endpoint (a reviewer helper's finding).
			{"ErrNullField", "/v1/orders", `{"app":"shop","out_trade_no":null,"amount":8888,"subject":"s","channel":"alipay.app"}`,
				"out_trade_no: null is not accepted; leave the field out."},
			{"ErrNullInList", "/v1/webhook-endpoints", `{"url":"https://hooks.example/x","events":["order.paid",null]}`,
				"events: null is not accepted"},
			{"ErrNullEndpoint", "/v1/events/evt_x/resend", `{"endpoint_id":null}`, "endpoint_id: null is not accepted"},
			{"ErrEmptyEndpoint", "/v1/events/evt_x/resend", `{"endpoint_id":""}`, "endpoint_id: empty; leave it out"},
			// Half a surrogate pair: encoding/json stored U+FFFD, and the subject was signed so.
			{"ErrLoneSurrogate", "/v1/orders", `{"app":"shop","out_trade_no":"J1","amount":1,"subject":"a\ud800b","channel":"alipay.app"}`,
				`\ud800 is half of a UTF-16 surrogate pair`},
			{"ErrLowSurrogateFirst", "/v1/orders", `{"app":"shop","out_trade_no":"J1","amount":1,"subject":"a\udc00\ud800","channel":"alipay.app"}`,
				`\udc00 is half`},
		} {
			t.Run(tt.name, func(t *testing.T) {
				var out struct {
					Error struct{ Message string } `json:"error"`
				}
				code := e.api("POST", tt.path, json.RawMessage(tt.body), &out)
				msg := out.Error.Message
				if code != http.StatusBadRequest || !strings.Contains(msg, tt.want) {
					t.Fatalf("%d %v; want 400 with %q", code, out, tt.want)
				}
			})
		}
		if _, err := s.GetOrder(t.Context(), "shop", "J1"); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
			t.Fatalf("an order was created by a refused request: %v", err)
		}
		var list struct {
			Orders []json.RawMessage `json:"orders"`
		}
		if code := e.api("GET", "/v1/orders?app=shop", nil, &list); code != http.StatusOK || len(list.Orders) != 0 {
			t.Fatalf("orders after the refused requests: %d %d, want none", code, len(list.Orders))
		}
		// Elsewhere null is an optional field left out, as JSON libraries send an unset one.
		if code := e.api("POST", "/v1/orders", json.RawMessage(`{"app":"shop","out_trade_no":"J3","amount":1,"subject":"s","body":null,"expires_in":null,"channel":"alipay.app"}`), nil); code != http.StatusCreated {
			t.Fatalf("optional fields null: %d, want 201", code)
		}
		// A whole pair is the character it encodes; an escaped backslash before a u is no escape.
		var o struct{ Subject string }
		if code := e.api("POST", "/v1/orders", json.RawMessage(`{"app":"shop","out_trade_no":"J2","amount":1,"subject":"\ud83d\ude00 \\ud800","channel":"alipay.app"}`), &o); code != http.StatusCreated || o.Subject != "😀 \\ud800" {
			t.Fatalf("a surrogate pair: %d %q", code, o.Subject)
		}
	})
}

// TestAllowHost: with AllowHost set (the demo), a request whose Host is not a loopback name is
// answered 421 and reaches nothing; loopback names pass. The decision is tested on names only:
// every request goes to the loopback listener.
func TestAllowHost(t *testing.T) {
	for host, want := range map[string]bool{"localhost": true, "LOCALHOST": true, "127.0.0.1": true, "127.8.9.10": true,
		"::1": true, "[::1]": true, "evil.example": false, "localhost.evil.example": false, "10.0.0.1": false, "0.0.0.0": false, "": false} {
		if got := httpd.LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v", host, got)
		}
	}
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		e.http.AllowHost = httpd.LoopbackHost
		srv := httptest.NewServer(e.http.Handler())
		t.Cleanup(srv.Close)
		for host, want := range map[string]int{"rebind.evil.example:8080": http.StatusMisdirectedRequest, "localhost:8080": http.StatusOK,
			"127.0.0.1": http.StatusOK} {
			req, _ := http.NewRequest("GET", srv.URL+"/healthz", nil)
			req.Host = host
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, want)
			}
		}
	})
}

// TestTextFields: free-text fields holding U+0000 (which PostgreSQL cannot store: it answered 500
// there) or another control character, and bodies that are not UTF-8 (encoding/json replaced the
// bytes with U+FFFD and created the order), are refused with 400 naming the field, and nothing is
// created or changed.
func TestTextFields(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		newAlipayOrder(e, "T0001", 100)
		for _, tt := range []struct{ name, method, path, body, want string }{
			{"NULSubject", "POST", "/v1/orders", `{"app":"shop","out_trade_no":"J1","amount":100,"subject":"a\u0000b","channel":"alipay.app"}`,
				"subject holds the control character U+0000."},
			{"NewlineBody", "POST", "/v1/orders", `{"app":"shop","out_trade_no":"J1","amount":100,"subject":"s","body":"a\nb","channel":"alipay.app"}`,
				"body holds the control character U+000A."},
			{"NULClientIP", "POST", "/v1/orders", `{"app":"shop","out_trade_no":"J1","amount":100,"subject":"s","payer_client_ip":"\u0000","channel":"alipay.app"}`,
				"payer_client_ip holds the control character U+0000."},
			{"NotUTF8", "POST", "/v1/orders", "{\"app\":\"shop\",\"out_trade_no\":\"J1\",\"amount\":100,\"subject\":\"caf\xe9\",\"channel\":\"alipay.app\"}",
				"Invalid JSON body: not valid UTF-8."},
			{"NULRefundReason", "POST", "/v1/orders/shop/T0001/refunds", `{"amount":1,"out_request_no":"R000001","reason":"\u0000"}`,
				"reason holds the control character U+0000."},
			{"NULWebhookDescription", "POST", "/v1/webhook-endpoints", `{"url":"https://example.com/hook","description":"x\u0000"}`,
				"description holds the control character U+0000."},
		} {
			t.Run(tt.name, func(t *testing.T) {
				var out struct {
					Error struct{ Message string } `json:"error"`
				}
				code := e.api(tt.method, tt.path, json.RawMessage(tt.body), &out)
				if code != http.StatusBadRequest || out.Error.Message != tt.want {
					t.Fatalf("%d %q; want 400 %q", code, out.Error.Message, tt.want)
				}
			})
		}
		if _, err := s.GetOrder(t.Context(), "shop", "J1"); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
			t.Fatalf("an order was created by a refused request: %v", err)
		}
		if rs, err := s.ListRefunds(t.Context(), "shop", "T0001"); err != nil || len(rs) != 0 {
			t.Fatalf("refunds %v %v", rs, err)
		}
		var eps struct {
			Endpoints []json.RawMessage `json:"endpoints"`
		}
		if code := e.api("GET", "/v1/webhook-endpoints", nil, &eps); code != http.StatusOK || len(eps.Endpoints) != 0 {
			t.Fatalf("webhook endpoints: %d %s", code, eps.Endpoints)
		}
	})
}

// TestAPINotRouted (a reviewer helper's finding): a /v1/ request that no route takes is answered
// with the API's error JSON, not the mux's text: 404 not_found for a path of no route, 405
// method_not_allowed with the route's Allow header for another method, 400 for a query parameter
// the route does not read. Paths outside /v1/ keep the mux's answers.
func TestAPINotRouted(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		srv := httptest.NewServer(e.http.Handler())
		t.Cleanup(srv.Close)
		for _, tc := range []struct {
			method, path string
			status       int
			code, allow  string
		}{
			{"PUT", "/v1/orders", http.StatusMethodNotAllowed, "method_not_allowed", "GET, HEAD, POST"},
			{"DELETE", "/v1/orders/shop/T1", http.StatusMethodNotAllowed, "method_not_allowed", "GET, HEAD"},
			{"GET", "/v1/orders/", http.StatusNotFound, "not_found", ""},
			{"GET", "/v1/nothing", http.StatusNotFound, "not_found", ""},
			{"GET", "/nothing", http.StatusNotFound, "", ""},
			// A query parameter the route does not read is refused, not ignored: ?offset= gave
			// the first page again, ?out_trade_no= on the events every order's.
			{"GET", "/v1/orders?app=shop&offset=2", http.StatusBadRequest, "invalid", ""},
			{"GET", "/v1/events?out_trade_no=T1", http.StatusBadRequest, "invalid", ""},
			{"POST", "/v1/orders?dry_run=1", http.StatusBadRequest, "invalid", ""},
			{"GET", "/v1/orders?app=shop&limit=5", http.StatusOK, "", ""},
			// Pairs URL.Query drops, and a filter given twice: refused, not read otherwise.
			{"GET", "/v1/orders?app=nosuch;status=paid", http.StatusBadRequest, "invalid", ""},
			{"GET", "/v1/orders?status=paid&status=closed", http.StatusBadRequest, "invalid", ""},
		} {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			jerr := json.NewDecoder(resp.Body).Decode(&out)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Allow") != tc.allow {
				t.Errorf("%s %s: %d Allow %q, want %d Allow %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Allow"), tc.status, tc.allow)
			}
			if tc.code != "" && (jerr != nil || out.Error.Code != tc.code || out.Error.Message == "") {
				t.Errorf("%s %s: %+v (%v), want the error JSON with code %s", tc.method, tc.path, out, jerr, tc.code)
			}
			if tc.code == "" && tc.status == http.StatusNotFound && jerr == nil {
				t.Errorf("%s %s: JSON outside the API", tc.method, tc.path)
			}
			if tc.code == "invalid" && !strings.Contains(out.Error.Message, "uery") {
				t.Errorf("%s %s: %q, want the parameter named", tc.method, tc.path, out.Error.Message)
			}
		}
	})
}
