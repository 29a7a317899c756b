package e2e_test

import (
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sandbox"
)

var channels = []string{
	paynotify.ChannelAlipayApp, paynotify.ChannelAlipayPage, paynotify.ChannelAlipayWap, paynotify.ChannelAlipayPrecreate,
	paynotify.ChannelWechatNative, paynotify.ChannelWechatApp, paynotify.ChannelWechatJSAPI, paynotify.ChannelWechatH5,
}

// TestChannels: for every channel, create through the merchant API → the buyer pays in the
// sandbox (app SDK stand-in, cashier pages, payer pages) → the notification arrives over HTTP →
// the order is paid → exactly one order.paid event → evidence accepted; the sandbox's first
// attempt is the acknowledged one.
func TestChannels(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		for i, ch := range channels {
			otn := "e2e_" + strings.ReplaceAll(ch, ".", "_")
			o := e.create(ch, otn, int64(100+i))
			e.pay(ch, o.Pay)

			paid := e.waitStatus(o.App, otn, "paid")
			tr := e.trade(otn)
			if paid.Version != 2 || paid.PaidAt == nil || paid.ProviderTradeNo == "" || paid.ProviderTradeNo != tr.TradeNo || paid.Amount != int64(100+i) {
				t.Errorf("%s: paid order %+v, sandbox trade no %s", ch, paid, tr.TradeNo)
			}
			as := e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn}, 1)
			if len(as) != 1 || as[0].N != 1 || !as[0].Acked || as[0].Kind != "payment" || !strings.HasPrefix(as[0].URL, e.URL+"/notify/"+tr.Provider+"/"+o.App) {
				t.Errorf("%s: attempts %s", ch, summary(as))
			}
			if strings.Contains(as[0].URL, "?") {
				t.Errorf("%s: notify_url %q has a query string", ch, as[0].URL)
			}
			evs := e.checkEvents(otn, "order.paid@v2")
			if evs[0].Data.Status != "paid" {
				t.Errorf("%s: event data %+v", ch, evs[0].Data)
			}
			ev := e.checkVerdicts(otn, map[string]int{"accepted": 1})
			wantAnswer := "success"
			if tr.Provider == sandbox.ProviderWechatpay {
				wantAnswer = "204"
			}
			if ev[0].Answer != wantAnswer || ev[0].OrderVersion != 2 {
				t.Errorf("%s: evidence %+v", ch, ev[0])
			}
		}
		// The expiry went to the provider as time_expire.
		for _, otn := range []string{"e2e_alipay_page", "e2e_wechatpay_native"} {
			app := alipayApp
			if strings.Contains(otn, "wechat") {
				app = wechatApp
			}
			o := e.get(app, otn, 0)
			if tr := e.trade(otn); !tr.TimeExpire.Equal(o.ExpiresAt) {
				t.Errorf("%s: sandbox time_expire %v, order expires_at %v", otn, tr.TimeExpire, o.ExpiresAt)
			}
		}
	})
}
