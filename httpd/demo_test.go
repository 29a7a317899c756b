package httpd_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
)

// TestGetOrder_PendingShowsPay: a pending order's GET carries its stored pay (what the creation
// answered), so the buyer's side (and `paynotify sandbox pay --app`) can pay it later.
func TestGetOrder_PendingShowsPay(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		for _, ch := range []string{"alipay.page", "alipay.wap", "alipay.app"} {
			created := e.createOrder(map[string]any{"app": "shop", "amount": 1, "subject": "s", "channel": ch})
			got := e.getOrder("shop", created.OutTradeNo)
			if len(got.Pay) == 0 || string(got.Pay) != string(created.Pay) {
				t.Errorf("%s: GET pay = %s, want the creation's %s", ch, got.Pay, created.Pay)
			}
		}
	})
}

// TestDemoPage_ShowsReturnedOrder: the Alipay page cashier returns the buyer to
// /?app=&out_trade_no=; the demo page shows that order (rendered, and watched by its script).
func TestDemoPage_ShowsReturnedOrder(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		o := e.createOrder(map[string]any{"app": "shop", "amount": 1, "subject": "s", "channel": "alipay.page"})
		page := func(query string) string {
			rec := httptest.NewRecorder()
			e.http.DemoPage().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/"+query, nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("GET /%s: %d", query, rec.Code)
			}
			return rec.Body.String()
		}
		body := page("?app=shop&out_trade_no=" + o.OutTradeNo)
		for _, want := range []string{`data-app="shop"`, `data-otn="` + o.OutTradeNo + `"`, `<code id="otn">` + o.OutTradeNo + `</code>`,
			`<span class="status pending" id="status">pending</span>`} {
			if !strings.Contains(body, want) {
				t.Errorf("the returned-to page lacks %s", want)
			}
		}
		if strings.Contains(body, `<div id="order" hidden>`) {
			t.Error("the order section is hidden")
		}
		// Without the parameters: hidden, as before. An unknown order is said so, escaped.
		if body := page(""); !strings.Contains(body, `<div id="order" hidden>`) {
			t.Error("the plain page shows an order section")
		}
		body = page("?app=shop&out_trade_no=%3Cb%3Enope")
		if !strings.Contains(body, `No order shop/&lt;b&gt;nope.`) || !strings.Contains(body, `<div id="order" hidden>`) {
			t.Errorf("an unknown order: %s", body[strings.Index(body, "<h2>1."):][:400])
		}
	})
}
