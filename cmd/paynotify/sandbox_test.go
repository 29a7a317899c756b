package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/sandbox"
)

// startSandbox runs `paynotify sandbox` on a free loopback port with args, its output to stdout,
// until ctx ends, and waits for its listener. done gets the exit code.
func startSandbox(t *testing.T, ctx context.Context, stdout io.Writer, args ...string) (base string, done <-chan int) {
	t.Helper()
	addr := freeAddr(t)
	exit := make(chan int, 1)
	go func() {
		m := &Main{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: io.Discard}
		exit <- m.Run(ctx, append([]string{"sandbox", "--listen", addr, "--state-dir", t.TempDir()}, args...))
	}()
	base = "http://" + addr
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/sandbox/api/trades")
		if err == nil {
			resp.Body.Close()
			return base, exit
		}
		if i > 200 {
			t.Fatal("sandbox did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSandboxCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var serveOut bytes.Buffer
	base, done := startSandbox(t, ctx, &serveOut, "--time-scale", "1000")
	addr := strings.TrimPrefix(base, "http://")
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exit %d", code)
		}
	})
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
		code := m.Run(context.Background(), args)
		return code, out.String() + errb.String()
	}

	// A web page on a name that points at 127.0.0.1 (DNS rebinding) gets nothing: the sandbox
	// answers loopback host names only, unless --allow-remote.
	req, _ := http.NewRequest(http.MethodGet, base+"/sandbox/api/keys", nil)
	req.Host = "rebind.example:" + strings.Split(addr, ":")[1]
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("keys asked as rebind.example: %d, want 421", resp.StatusCode)
	}
	checkRootV3(t, base, "")
	code, out := run("sandbox", "keys", "--sandbox", base, "--json")
	var k sandbox.Keys
	if code != 0 || json.Unmarshal([]byte(out), &k) != nil || !strings.HasPrefix(k.WechatPlatformPublicKeyID, "PUB_KEY_ID_") || len(k.WechatAPIv3Key) != 32 {
		t.Fatalf("keys: %d %s", code, out)
	}
	if code, out := run("sandbox", "pay", "--sandbox", base); code != 2 || !strings.Contains(out, "which trade") {
		t.Fatalf("pay without trade: %d %s", code, out)
	}
	if code, out := run("sandbox", "pay", "--sandbox", base, "--out-trade-no", "nothing"); code != 1 || !strings.Contains(out, "no trade") {
		t.Fatalf("pay unknown: %d %s", code, out)
	}

	merchant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			w.WriteHeader(204)
			return
		}
		io.WriteString(w, "success")
	}))
	defer merchant.Close()
	c := &sandbox.Client{BaseURL: base}
	if _, err := c.CreateOrder(context.Background(), sandbox.OrderRequest{Provider: "alipay", Product: "wap", OutTradeNo: "cli_1", Amount: 500, NotifyURL: merchant.URL}); err != nil {
		t.Fatal(err)
	}
	if code, out := run("sandbox", "faults", "--sandbox", base, "--out-trade-no", "cli_1", "--set", `{"duplicate":1}`); code != 0 || !strings.Contains(out, `"duplicate": 1`) {
		t.Fatalf("faults: %d %s", code, out)
	}
	if code, out := run("sandbox", "pay", "--sandbox", base, "--out-trade-no", "cli_1"); code != 0 || !strings.Contains(out, "TRADE_SUCCESS") {
		t.Fatalf("pay: %d %s", code, out)
	}
	if code, out := run("sandbox", "refund", "--sandbox", base, "--out-trade-no", "cli_1", "--amount", "100", "--out-request-no", "r1"); code != 0 || !strings.Contains(out, "refunded 100") {
		t.Fatalf("refund: %d %s", code, out)
	}
	if _, _, err := c.Attempts(context.Background(), sandbox.AttemptFilter{OutTradeNo: "cli_1"}, 3, 3, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if code, out := run("sandbox", "attempts", "--sandbox", base, "--out-trade-no", "cli_1"); code != 0 || strings.Count(out, "acked=true") < 3 {
		t.Fatalf("attempts: %d %s", code, out)
	}

	dir := t.TempDir()
	scenario := dir + "/s.yaml"
	yaml := "name: cli\nsteps:\n  - order: {provider: wechatpay, product: native, out_trade_no: cli_wx_1, amount: 1, notify_url: \"" + merchant.URL + "\"}\n" +
		"  - pay: {out_trade_no: cli_wx_1}\n  - wait: {out_trade_no: cli_wx_1, acked: 1, timeout: 10s}\n  - expect: {out_trade_no: cli_wx_1, trade_status: SUCCESS}\n"
	writeTestFile(t, scenario, yaml)
	if code, out := run("sandbox", "run", scenario, "--sandbox", base); code != 0 || !strings.Contains(out, "PASS cli") {
		t.Fatalf("run: %d %s", code, out)
	}
	writeTestFile(t, scenario, "name: failing\nsteps:\n  - expect: {out_trade_no: cli_wx_1, trade_status: CLOSED}\n")
	if code, out := run("sandbox", "run", scenario, "--sandbox", base); code != 1 || !strings.Contains(out, "FAIL failing") {
		t.Fatalf("failing run: %d %s", code, out)
	}
	if code, _ := run("sandbox", "reset", "--sandbox", base); code != 0 {
		t.Fatal("reset")
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSandboxCommand_ListenLoopbackOnly: the standalone sandbox refuses a non-loopback --listen
// without --allow-remote, before listening (the decision only: nothing listens or connects).
func TestSandboxCommand_ListenLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.10:8081", "[::]:0"} {
		code, _, errs := runMain(t, "", "sandbox", "--listen", addr, "--state-dir", t.TempDir())
		if code != exitUsage || !strings.Contains(errs, "is not a loopback address") || !strings.Contains(errs, "--allow-remote") {
			t.Errorf("--listen %s: exit %d, stderr %q; want a usage error naming --allow-remote", addr, code, errs)
		}
	}
}
