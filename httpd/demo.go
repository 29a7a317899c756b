package httpd

import (
	"embed"
	"html/template"
	"net/http"
	"sort"

	"github.com/paynotify/paynotify"
)

//go:embed templates/demo.html
var templates embed.FS

var demoTemplate = template.Must(template.ParseFS(templates, "templates/demo.html"))

// DemoPage serves the demo mode's start page: create an order (any channel of any app, the legacy
// Alipay ones included), pay it in the sandbox, watch the notification and the paid order. It embeds the API token, which is why it exists only in demo
// mode (the token is a local demo credential there).
func (s *Server) DemoPage() http.Handler {
	type channel struct{ App, Channel string }
	var channels []channel
	for name, a := range s.Service.Apps {
		for _, c := range []string{paynotify.ChannelAlipayPage, paynotify.ChannelAlipayWap, paynotify.ChannelAlipayPrecreate, paynotify.ChannelAlipayApp,
			paynotify.ChannelWechatNative, paynotify.ChannelWechatH5, paynotify.ChannelWechatJSAPI, paynotify.ChannelWechatApp,
			paynotify.ChannelAlipayDirect, paynotify.ChannelAlipayWapDirect} {
			if paynotify.ChannelProvider(c) == a.Provider {
				channels = append(channels, channel{App: name, Channel: c})
			}
		}
	}
	sort.SliceStable(channels, func(i, j int) bool { return channels[i].App < channels[j].App })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		data := map[string]any{"Token": s.APIToken, "Channels": channels}
		// The Alipay page cashier returns the buyer to /?app=&out_trade_no=: show that order.
		if app, otn := r.URL.Query().Get("app"), r.URL.Query().Get("out_trade_no"); app != "" && otn != "" {
			if o, err := s.Service.Store.GetOrder(r.Context(), app, otn); err == nil {
				data["Order"] = o
			} else {
				data["Missing"] = app + "/" + otn
			}
		}
		if err := demoTemplate.Execute(w, data); err != nil {
			s.log(r).Error("render demo page", "err", err)
		}
	})
}
