package httpd_test

import (
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
