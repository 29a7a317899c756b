package e2e_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// TestExpiry: expires_in reaches the provider as time_expire, and the provider refuses a payment
// after it (the sandbox's clock is moved two minutes on). The orders stay pending (closing at
// expiry comes with reconciliation), and closing them through the API works: WeChat has closed
// the trade, Alipay never created it.
func TestExpiry(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		var skew atomic.Int64
		e := newEnv(t, s, options{sandboxNow: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
		native := e.create(paynotify.ChannelWechatNative, "e2e_expire_native", 100, "expires_in", "1m")
		app := e.create(paynotify.ChannelAlipayApp, "e2e_expire_app", 100, "expires_in", "1m")
		if d := native.ExpiresAt.Sub(time.Now()); d > time.Minute || d < 50*time.Second {
			t.Fatalf("expires_at %v", native.ExpiresAt)
		}
		skew.Store(int64(2 * time.Minute))

		// The WeChat payer page refuses.
		var p map[string]string
		mustUnmarshal(t, native.Pay, &p)
		resp, page := e.browse("GET", e.sbURL+"/sandbox/wechatpay/pay?code_url="+url.QueryEscape(p["code_url"]), "", nil)
		if resp.StatusCode == http.StatusFound {
			resp, page = e.browse("GET", resp.Header.Get("Location"), "", nil)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("payer page: HTTP %d", resp.StatusCode)
		}
		if _, after := e.click(page, "Pay"); !strings.Contains(after, "Refused: the order is closed") {
			t.Fatalf("an expired WeChat order was paid:\n%s", after)
		}
		// The Alipay app SDK refuses.
		mustUnmarshal(t, app.Pay, &p)
		_, body := e.browse("POST", e.sbURL+"/sandbox/alipay/app-sdk?result=9000", "text/plain", strings.NewReader(p["order_string"]))
		var r struct{ ResultStatus, Memo string }
		if err := json.Unmarshal([]byte(body), &r); err != nil || r.ResultStatus == "9000" {
			t.Fatalf("app SDK after time_expire: %s", body)
		}

		for _, o := range []order{native, app} {
			if got := e.get(o.App, o.OutTradeNo, 0); got.Status != "pending" || got.Version != 1 {
				t.Fatalf("%s: %+v", o.OutTradeNo, got)
			}
			var closed order
			if code := e.api("POST", "/v1/orders/"+o.App+"/"+o.OutTradeNo+"/close", nil, &closed); code != http.StatusOK || closed.Status != "closed" {
				t.Fatalf("close %s: HTTP %d %+v", o.OutTradeNo, code, closed)
			}
			if as := e.attempts(o.OutTradeNo); len(as) != 0 {
				t.Fatalf("%s: attempts %s", o.OutTradeNo, summary(as))
			}
			e.checkEvents(o.OutTradeNo, "order.closed@v2")
		}
		if tr := e.trade("e2e_expire_native"); tr.Status != "CLOSED" {
			t.Fatalf("sandbox WeChat trade %s", tr.Status)
		}
	})
}
