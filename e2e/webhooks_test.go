package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/webhook"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// TestWebhooksAfterRealPayments: payments made at the sandbox, notified and committed by the
// server, reach a merchant's endpoint created through the API, signed (checked by the Standard
// Webhooks reference library), with the event's bytes exactly as GET /v1/events serves them,
// within 5 s of the commit.
func TestWebhooksAfterRealPayments(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		e.svc.CheckWebhookURL = func(u string) error { return webhook.CheckURL(u, true, true) }
		type got struct {
			body []byte
			at   time.Time
		}
		var mu sync.Mutex
		var secret string
		deliveries := map[string]got{}
		var bad []string
		rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			defer mu.Unlock()
			wh, err := standardwebhooks.NewWebhook(secret)
			if err == nil {
				err = wh.Verify(body, r.Header)
			}
			if err != nil {
				bad = append(bad, err.Error())
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			deliveries[r.Header.Get("webhook-id")] = got{body: body, at: time.Now()}
			w.WriteHeader(http.StatusNoContent)
		}))
		defer rc.Close()
		var ep struct {
			ID     string `json:"id"`
			Secret string `json:"secret"`
		}
		if code := e.api("POST", "/v1/webhook-endpoints", map[string]any{"url": rc.URL + "/paid", "events": []string{"order.paid"}}, &ep); code != http.StatusCreated {
			t.Fatalf("create endpoint: HTTP %d", code)
		}
		mu.Lock()
		secret = ep.Secret
		mu.Unlock()

		d := &webhook.Dispatcher{Store: s, Config: webhook.Config{AllowHTTP: true}, Client: webhook.NewClient(true, 5*time.Second), Logger: logger()}
		e.svc.WakeWebhooks = d.Wake
		e.svc.Processor.OnEvents = d.Wake
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); d.Run(ctx) }()
		defer func() { cancel(); <-done }()

		orders := []order{e.create(paynotify.ChannelAlipayApp, "wh_alipay_1", 888), e.create(paynotify.ChannelWechatNative, "wh_wechat_1", 999)}
		for _, o := range orders {
			e.pay(o.Channel, o.Pay)
		}
		for _, o := range orders {
			e.waitStatus(appOf(o.Channel), o.OutTradeNo, "paid")
		}
		// The log as the API serves it, each event's bytes kept.
		var page struct {
			Events []json.RawMessage `json:"events"`
		}
		if code := e.api("GET", "/v1/events?limit=100", nil, &page); code != http.StatusOK {
			t.Fatalf("events: HTTP %d", code)
		}
		deadline := time.Now().Add(10 * time.Second)
		checked := 0
		for _, raw := range page.Events {
			var ev struct {
				ID        string    `json:"id"`
				Type      string    `json:"type"`
				Timestamp time.Time `json:"timestamp"`
			}
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Type != "order.paid" {
				continue
			}
			var g got
			for {
				mu.Lock()
				g = deliveries[ev.ID]
				mu.Unlock()
				if g.body != nil || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if g.body == nil {
				t.Fatalf("order.paid %s not delivered", ev.ID)
			}
			if !bytes.Equal(g.body, raw) {
				t.Errorf("delivered %s\nthe log serves %s", g.body, raw)
			}
			if lag := g.at.Sub(ev.Timestamp); lag > 5*time.Second {
				t.Errorf("%s delivered %s after its commit, want within 5 s", ev.ID, lag)
			}
			checked++
		}
		// Every order's order.paid was checked against its delivery, none skipped by the filter.
		if checked != len(orders) {
			t.Fatalf("%d order.paid events in the log checked, want %d (one per order)", checked, len(orders))
		}
		mu.Lock()
		defer mu.Unlock()
		if len(deliveries) != len(orders) || len(bad) > 0 {
			t.Errorf("%d deliveries for %d payments, %d refused: %v", len(deliveries), len(orders), len(bad), bad)
		}
	})
}
