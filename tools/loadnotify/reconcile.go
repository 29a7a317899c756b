package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/sandboxapps"
	"github.com/paynotify/paynotify/sandbox"
)

// reconciling keeps the server's Reconciler busy during the "on" phases of the load: n pending
// orders of the sandbox's two apps, each due again every second, swept every second (as the jobs
// would).
type reconciling struct {
	r       *paynotify.Reconciler
	checked atomic.Int64
	started time.Time
	onTime  atomic.Int64 // nanoseconds of phases with reconciliation, ended
	cleanup func()
}

// startReconciling adds the sandbox's apps to svc and creates their orders (not yet due).
func startReconciling(ctx context.Context, svc *paynotify.Service, n, conc int, rate float64, logger *slog.Logger) *reconciling {
	dir, err := os.MkdirTemp(os.Getenv("LOADNOTIFY_SANDBOX_DIR"), "loadnotify-sandbox")
	check(err)
	var h http.Handler = http.NotFoundHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	sb, err := sandbox.New(sandbox.Config{StateDir: filepath.Join(dir, "sandbox"), BaseURL: srv.URL, Logger: logger})
	check(err)
	h = sb.Handler()
	apps, err := sandboxapps.Apps(sb.Keys(), srv.URL, "")
	check(err)
	policy := paynotify.ReconcilePolicy{Schedule: []time.Duration{time.Hour}, ThenEvery: time.Second, MaxChecks: 1 << 30, Concurrency: conc}
	for name, a := range apps {
		a.Reconcile = policy
		svc.Apps[name] = a
	}
	log.Printf("creating %d orders to reconcile", n)
	for i := range n {
		app, channel := sandboxapps.Alipay, paynotify.ChannelAlipayPrecreate
		if i%2 == 1 {
			app, channel = sandboxapps.Wechat, paynotify.ChannelWechatNative
		}
		_, _, err := svc.CreateOrder(ctx, paynotify.CreateOrderRequest{App: app, OutTradeNo: fmt.Sprintf("RC%08d", i), Amount: 100,
			Subject: "reconcile", Channel: channel, ExpiresIn: 2 * time.Hour})
		check(err)
	}
	rec := &reconciling{cleanup: func() { srv.Close(); sb.Close(); os.RemoveAll(dir) }, r: &paynotify.Reconciler{Service: svc, MaxPerSecond: rate}}
	rec.r.OnCheck = func(*paynotify.Check, *paynotify.CheckResult, error) { rec.checked.Add(1) }
	return rec
}

// begin makes every order due at once; the sweeps run in the "on" phases (phase).
func (rec *reconciling) begin() {
	// Everything due now: the first query slot (an hour away) is brought forward.
	rec.r.Service.Now = func() time.Time { return time.Now().Add(time.Hour) }
	rec.started = time.Now()
}

// phase sweeps every second until ctx ends (the end of the phase, or of the run) if on.
func (rec *reconciling) phase(ctx context.Context, on bool) {
	if !on {
		return
	}
	began := time.Now()
	defer func() { rec.onTime.Add(int64(time.Since(began))) }()
	for ctx.Err() == nil {
		if _, err := rec.r.Sweep(ctx); err != nil && ctx.Err() == nil {
			log.Fatal(err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// end returns the checks per second made while reconciliation ran (call it after the phases end).
func (rec *reconciling) end() float64 {
	defer rec.cleanup()
	on := time.Duration(rec.onTime.Load())
	if on == 0 {
		on = time.Since(rec.started)
	}
	return float64(rec.checked.Load()) / on.Seconds()
}
