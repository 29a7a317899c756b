package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/sandbox"
	"github.com/paynotify/paynotify/wechatpay"
)

// TestSandboxQueriesCommand drives `paynotify sandbox queries` (and the double_pay and query
// faults through `faults` and `trades`) against a sandbox on a real socket.
func TestSandboxQueriesCommand(t *testing.T) {
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	sb, err := sandbox.New(sandbox.Config{StateDir: t.TempDir(), BaseURL: srv.URL, TimeScale: 1000, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h = sb.Handler()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done := make(chan struct{})
	go func() { sb.Start(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if err := sb.Close(); err != nil {
			t.Error(err)
		}
	})
	merchant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	t.Cleanup(merchant.Close)
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
		code := m.Run(context.Background(), args)
		return code, out.String(), errb.String()
	}

	k := sb.Keys()
	priv, err := wechatpay.ParsePrivateKey([]byte(k.WechatMerchantPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := wechatpay.ParsePublicKey([]byte(k.WechatPlatformPublicKey))
	if err != nil {
		t.Fatal(err)
	}
	wc, err := wechatpay.NewClient(wechatpay.Config{MchID: k.WechatMchID, AppID: k.WechatAppID, MerchantPrivateKey: priv,
		MerchantSerialNo: k.WechatMerchantSerialNo, APIv3Key: []byte(k.WechatAPIv3Key), PlatformPublicKey: pub,
		PlatformPublicKeyID: k.WechatPlatformPublicKeyID, BaseURL: srv.URL + "/sandbox/wechatpay"})
	if err != nil {
		t.Fatal(err)
	}
	c := &sandbox.Client{BaseURL: srv.URL}
	if _, err := c.CreateOrder(ctx, sandbox.OrderRequest{Provider: "wechatpay", Product: "native", OutTradeNo: "cliq_w_1", Amount: 100, NotifyURL: merchant.URL}); err != nil {
		t.Fatal(err)
	}
	if tx, err := wc.QueryByOutTradeNo(ctx, "cliq_w_1"); err != nil || tx.TradeState != "NOTPAY" {
		t.Fatalf("query: %+v %v", tx, err)
	}
	if _, err := wc.QueryByOutTradeNo(ctx, "cliq_none"); err == nil {
		t.Fatal("query of an unknown order succeeded")
	}

	code, out, errs := run("sandbox", "queries", "--sandbox", srv.URL, "--out-trade-no", "cliq_w_1")
	if code != 0 || strings.Count(out, "\n") != 1 || !strings.Contains(out, " wechatpay.query ") || !strings.Contains(out, "mchid="+k.WechatMchID) ||
		!strings.Contains(out, "out_trade_no=cliq_w_1 result=NOTPAY") || strings.Contains(out, "failed") {
		t.Fatalf("queries: %d %q %s", code, out, errs)
	}
	code, out, errs = run("sandbox", "queries", "--sandbox", srv.URL, "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("queries --json: %d %q %s", code, out, errs)
	}
	var recs []sandbox.QueryRecord
	for _, l := range lines {
		var r sandbox.QueryRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		recs = append(recs, r)
	}
	if recs[0].Result != "NOTPAY" || recs[1].OutTradeNo != "cliq_none" || recs[1].Result != "ORDER_NOT_EXIST" || !recs[1].Failed || recs[1].ID <= recs[0].ID {
		t.Fatalf("records %+v", recs)
	}
	if code, out, errs := run("sandbox", "queries", "--sandbox", srv.URL, "--provider", "alipay"); code != 0 || out != "" {
		t.Fatalf("queries --provider alipay: %d %q %s", code, out, errs)
	}
	if code, out, _ := run("sandbox", "queries", "--sandbox", srv.URL, "--api", "wechatpay.close"); code != 0 || out != "" {
		t.Fatalf("queries --api: %d %q", code, out)
	}

	// The new faults through the CLI: an unknown query fault is refused, double_pay shows in trades.
	if code, _, errs := run("sandbox", "faults", "--sandbox", srv.URL, "--out-trade-no", "cliq_w_1", "--set", `{"query":"nope"}`); code != 1 || !strings.Contains(errs, "unknown query fault") {
		t.Fatalf("bad query fault: %d %s", code, errs)
	}
	if code, out, errs := run("sandbox", "faults", "--sandbox", srv.URL, "--out-trade-no", "cliq_w_1", "--set", `{"double_pay":true,"query":"wrong_amount"}`); code != 0 ||
		!strings.Contains(out, `"double_pay": true`) || !strings.Contains(out, `"query": "wrong_amount"`) {
		t.Fatalf("faults: %d %s %s", code, out, errs)
	}
	if code, out, errs := run("sandbox", "pay", "--sandbox", srv.URL, "--out-trade-no", "cliq_w_1"); code != 0 || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("pay: %d %s %s", code, out, errs)
	}
	ts, err := c.Trades(ctx, "cliq_w_1")
	if err != nil || len(ts) != 1 || ts[0].DoublePay == nil {
		t.Fatalf("trades %+v %v", ts, err)
	}
	if code, out, errs := run("sandbox", "trades", "--sandbox", srv.URL, "--out-trade-no", "cliq_w_1"); code != 0 || !strings.Contains(out, "double_pay="+ts[0].DoublePay.TradeNo) {
		t.Fatalf("trades: %d %q %s", code, out, errs)
	}
	if tx, err := wc.QueryByOutTradeNo(ctx, "cliq_w_1"); err != nil || tx.Amount.Total != 101 {
		t.Fatalf("query with wrong_amount: %+v %v", tx, err)
	}
	if code, out, _ := run("sandbox", "queries", "--sandbox", srv.URL, "--out-trade-no", "cliq_w_1"); code != 0 || !strings.Contains(out, "result=SUCCESS fault=wrong_amount") {
		t.Fatalf("queries after the fault: %d %q", code, out)
	}
}
