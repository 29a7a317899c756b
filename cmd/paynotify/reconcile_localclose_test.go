package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// openAtAlipay is an Alipay app's gateway whose trade T1 the buyer opened after paynotify closed
// the order alone: the close answered ACQ.TRADE_NOT_EXIST (Local), the query now WAIT_BUYER_PAY.
type openAtAlipay struct{ paynotify.Provider }

func (openAtAlipay) Close(_ context.Context, o *paynotify.Order) (paynotify.Fact, error) {
	return paynotify.Fact{Kind: paynotify.FactClosed, OutTradeNo: o.OutTradeNo, Local: true}, nil
}

func (openAtAlipay) Query(_ context.Context, o *paynotify.Order) (*paynotify.Answer, error) {
	return &paynotify.Answer{State: "WAIT_BUYER_PAY", Endpoint: "test.query", Body: []byte(`{"trade_status":"WAIT_BUYER_PAY"}`)}, nil
}

// TestReconcile_LocallyClosedOpenTradePending: paynotify reconcile counts an order paynotify
// closed alone whose trade is open at Alipay (WAIT_BUYER_PAY: the buyer can pay it until Alipay
// enforces the expiry) as pending, as a pending order with the same answer, not as closed
// ("orders found closed at the provider"), which it used to.
func TestReconcile_LocallyClosedOpenTradePending(t *testing.T) {
	ctx := t.Context()
	st, err := openStore(ctx, "sqlite:"+filepath.Join(t.TempDir(), "paynotify.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	app := &paynotify.App{Name: "shop", Provider: paynotify.ProviderAlipay, AppID: "2021000000000001", Gateway: openAtAlipay{}}
	svc := &paynotify.Service{Store: st, Processor: &paynotify.Processor{Store: st, Logger: logger}, Logger: logger,
		Apps: map[string]*paynotify.App{"shop": app}}
	now := time.Now()
	if _, _, err := st.CreateOrder(ctx, &paynotify.Order{App: "shop", OutTradeNo: "T1", Channel: paynotify.ChannelAlipayApp,
		Status: paynotify.StatusPending, Amount: 1000, Currency: "CNY", Subject: "s", Version: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	o, err := svc.CloseOrder(ctx, "shop", "T1")
	if err != nil || o.Status != paynotify.StatusClosed || o.NextCheckAt == nil {
		t.Fatalf("close: %+v, %v", o, err)
	}
	var stats reconcileStats
	reconcileCommand{}.check(ctx, svc, reconcileItem{app: app, order: o}, false, &stats)
	if stats.closed != 0 || stats.pending != 1 {
		t.Errorf("summary %q: the trade is open at the provider (WAIT_BUYER_PAY), counted closed (\"orders found closed at the provider\")", stats.String())
	}
}
