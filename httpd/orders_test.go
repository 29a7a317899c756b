package httpd_test

import (
	"net/http"
	"testing"

	"github.com/paynotify/paynotify"
)

// TestListOrders: GET /v1/orders lists an app's orders newest first, without pay, filtered by
// status and cut at limit; a limit out of 1..1000 is 400, and so is a status that is not one
// (a typo used to list nothing, as if no order had that status).
func TestListOrders(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		newAlipayOrder(e, "L0001", 100)
		newAlipayOrder(e, "L0002", 200)
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, paidFields("L0002", "2.00"))); ans != "success" {
			t.Fatalf("payment answer %q", ans)
		}
		list := func(query string) []order {
			t.Helper()
			var out struct {
				Orders []order `json:"orders"`
			}
			if code := e.api("GET", "/v1/orders?"+query, nil, &out); code != http.StatusOK {
				t.Fatalf("GET /v1/orders?%s: %d", query, code)
			}
			return out.Orders
		}
		all := list("app=shop")
		if len(all) != 2 || all[0].OutTradeNo != "L0002" || all[1].OutTradeNo != "L0001" {
			t.Fatalf("orders = %+v, want L0002 then L0001", all)
		}
		for _, o := range all {
			if o.Pay != nil {
				t.Errorf("%s: a listed order carries pay %s", o.OutTradeNo, o.Pay)
			}
		}
		if paid := list("app=shop&status=paid"); len(paid) != 1 || paid[0].OutTradeNo != "L0002" || paid[0].Amount != 200 {
			t.Errorf("paid orders = %+v", paid)
		}
		if one := list("app=shop&limit=1"); len(one) != 1 {
			t.Errorf("limit=1: %d orders", len(one))
		}
		if other := list("app=other"); len(other) != 0 {
			t.Errorf("another app's orders: %+v", other)
		}
		for _, st := range []string{"pending", "paid", "finished", "closed", "refunded"} {
			list("status=" + st)
		}
		for _, q := range []string{"limit=0", "limit=1001", "limit=x", "status=payed", "status=PAID", "status=paid'%20OR%20'1'%3D'1"} {
			if code := e.api("GET", "/v1/orders?"+q, nil, nil); code != http.StatusBadRequest {
				t.Errorf("GET /v1/orders?%s: %d, want 400", q, code)
			}
		}
	})
}

// TestCloseOrder: POST …/close closes a pending order that Alipay closed (200, and 200 again);
// when Alipay says the order was paid, the payment is applied and the answer is 409 with the
// paid order; an order paid here is 409 with it too; an unreachable provider is 502 and leaves
// the order pending; an unknown order is 404.
func TestCloseOrder(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		fake, app := newFakeAlipayApp(t, "shop2")
		e := newEnv(t, s, app)
		create := func(appName, otn string) {
			t.Helper()
			e.createOrder(map[string]any{"app": appName, "out_trade_no": otn, "amount": 500, "subject": "s", "channel": "alipay.app"})
		}
		type closeAnswer struct {
			order
			Error struct{ Code string } `json:"error"`
			Order *order                `json:"order"`
		}
		closeOrder := func(appName, otn string) (int, closeAnswer) {
			t.Helper()
			var out closeAnswer
			code := e.api("POST", "/v1/orders/"+appName+"/"+otn+"/close", nil, &out)
			return code, out
		}

		t.Run("OK", func(t *testing.T) {
			create("shop2", "K0001")
			fake.set("alipay.trade.close", `{"code":"10000","msg":"Success","out_trade_no":"K0001"}`, true)
			for i := range 2 {
				code, out := closeOrder("shop2", "K0001")
				if code != http.StatusOK || out.Status != "closed" || out.OutTradeNo != "K0001" {
					t.Fatalf("close #%d: %d %+v", i+1, code, out)
				}
				// A closed order is checked no more: the answer says so, as a GET does (a
				// reviewer helper's finding: the first answer carried the check still due).
				if out.NextCheckAt != nil {
					t.Errorf("close #%d answered next_check_at %v, want null", i+1, out.NextCheckAt)
				}
			}
			if n := fake.count("alipay.trade.close"); n != 1 {
				t.Errorf("alipay.trade.close called %d times, want 1 (the second close finds it closed)", n)
			}
		})
		t.Run("ErrPaidAtProvider", func(t *testing.T) {
			create("shop2", "K0002")
			fake.set("alipay.trade.close", `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_STATUS_ERROR","sub_msg":"status error"}`, true)
			fake.set("alipay.trade.query", `{"code":"10000","msg":"Success","trade_no":"2026112922001400000000009","out_trade_no":"K0002",`+
				`"trade_status":"TRADE_SUCCESS","total_amount":"5.00","send_pay_date":"2026-11-29 10:00:00"}`, true)
			code, out := closeOrder("shop2", "K0002")
			if code != http.StatusConflict || out.Error.Code != "conflict" || out.Order == nil || out.Order.Status != "paid" ||
				out.Order.ProviderTradeNo != "2026112922001400000000009" || out.Order.NextCheckAt != nil {
				t.Fatalf("close of an order paid at Alipay: %d %+v", code, out)
			}
			if o := e.getOrder("shop2", "K0002"); o.Status != "paid" {
				t.Errorf("order after close = %+v, want paid", o)
			}
		})
		t.Run("ErrPaid", func(t *testing.T) {
			newAlipayOrder(e, "K0003", 500)
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, paidFields("K0003", "5.00"))); ans != "success" {
				t.Fatalf("payment answer %q", ans)
			}
			code, out := closeOrder("shop", "K0003")
			if code != http.StatusConflict || out.Error.Code != "conflict" || out.Order == nil || out.Order.Status != "paid" {
				t.Fatalf("close of a paid order: %d %+v", code, out)
			}
		})
		t.Run("ErrProviderUnavailable", func(t *testing.T) {
			create("shop", "K0004") // shop's gateway is 127.0.0.1:1: nothing listens
			code, out := closeOrder("shop", "K0004")
			if code != http.StatusBadGateway || out.Error.Code != "provider_unavailable" {
				t.Fatalf("close with the provider unreachable: %d %+v", code, out)
			}
			if o := e.getOrder("shop", "K0004"); o.Status != "pending" {
				t.Errorf("order after a failed close = %+v, want pending", o)
			}
		})
		t.Run("ErrNotFound", func(t *testing.T) {
			if code, out := closeOrder("shop", "NOPE1"); code != http.StatusNotFound || out.Error.Code != "not_found" {
				t.Fatalf("close of an unknown order: %d %+v", code, out)
			}
		})
	})
}
