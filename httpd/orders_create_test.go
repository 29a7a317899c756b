package httpd_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/paynotify/paynotify"
)

// TestCreateOrder_PayTermsHeld (from a reviewer helper's audit of what a buyer is asked to pay):
//   - an Alipay order's subject or body holding "&" then "=" is refused: Alipay's signature does
//     not say where a parameter ends, so "Coffee&total_fee=0.01&zz=" regrouped the legacy request
//     paynotify signs into another amount, and a notification holding such text is refused;
//     "Tom & Jerry" passes (TestCreateOrder_SameBuyer: and such text in a WeChat Pay order);
//   - a repeated create of an order closed since hands out no pay parameters, as GET does (a
//     legacy direct-pay URL stays payable after the local close).
func TestCreateOrder_PayTermsHeld(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		var errOut struct {
			Error struct {
				Code, Message string
			} `json:"error"`
		}
		for _, tc := range []struct{ field, value string }{{"subject", "Coffee&total_fee=0.01&zz="}, {"body", "x&notify_url=https://evil.example/n"}} {
			req := map[string]any{"app": "shop", "out_trade_no": "A1", "amount": 1234, "subject": "s", "channel": "alipay.app"}
			req[tc.field] = tc.value
			if code := e.api("POST", "/v1/orders", req, &errOut); code != http.StatusBadRequest || errOut.Error.Code != "invalid" {
				t.Errorf("%s %q: %d %+v, want 400 invalid", tc.field, tc.value, code, errOut)
			}
		}
		e.createOrder(map[string]any{"app": "shop", "out_trade_no": "A2", "amount": 1234, "subject": "Tom & Jerry", "body": "1 = one", "channel": "alipay.app"})

		// Closed since its creation: the repeated create answers the order without pay.
		first := e.createOrder(map[string]any{"app": "shop", "out_trade_no": "A3", "amount": 1234, "subject": "s", "channel": "alipay.app"})
		if len(first.Pay) == 0 {
			t.Fatal("a new order without pay parameters")
		}
		if _, err := e.http.Service.Processor.Apply(context.Background(), e.http.Service.Apps["shop"],
			paynotify.Fact{Kind: paynotify.FactClosed, OutTradeNo: "A3"}, nil); err != nil {
			t.Fatal(err)
		}
		var again order
		if code := e.api("POST", "/v1/orders", map[string]any{"app": "shop", "out_trade_no": "A3", "amount": 1234, "subject": "s", "channel": "alipay.app"}, &again); code != http.StatusOK ||
			again.Status != "closed" || len(again.Pay) != 0 {
			t.Fatalf("repeated create of a closed order: %d, status %s, pay %s", code, again.Status, again.Pay)
		}

	})
}
