package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/sandbox"
)

// The reconciliation and reprocessing commands, and several servers on one database, with the
// real binary against an in-process sandbox on loopback.

// testSandbox runs a sandbox on its own loopback port. While hold is set, trade queries wait until
// release is closed (or the client gives up).
type testSandbox struct {
	*sandbox.Sandbox
	URL     string
	hold    atomic.Bool
	release chan struct{}
	handler http.Handler
}

func newTestSandbox(t *testing.T, scale float64) *testSandbox {
	t.Helper()
	ts := &testSandbox{release: make(chan struct{}), handler: http.NotFoundHandler()}
	ts.URL, _ = ts.front(t)
	sb, err := sandbox.New(sandbox.Config{StateDir: t.TempDir(), BaseURL: ts.URL, TimeScale: scale,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts.handler = sb.Handler()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sb.Start(ctx) }()
	t.Cleanup(func() { stop(); <-done; sb.Close() })
	ts.Sandbox = sb
	return ts
}

// front serves the sandbox on another loopback port, and counts the queries held there: a server
// configured with this URL can be told apart from another.
func (ts *testSandbox) front(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	held := new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ts.hold.Load() && isQuery(r) {
			held.Add(1)
			select {
			case <-ts.release:
			case <-r.Context().Done():
				return
			}
		}
		ts.handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, held
}

// isQuery reports whether r is a trade query of either provider.
func isQuery(r *http.Request) bool {
	return r.URL.Query().Get("method") == "alipay.trade.query" ||
		(r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/v3/pay/transactions/out-trade-no/"))
}

// writeSandboxConfig writes the sandbox's keys and a config with its two default apps,
// alipay-demo and wechatpay-demo, on database dsn. extra is appended to each app (indented YAML).
func writeSandboxConfig(t *testing.T, dir, addr, dsn string, sb *testSandbox, appExtra, top string) string {
	return writeSandboxConfigAt(t, dir, addr, dsn, sb, sb.URL, appExtra, top)
}

// writeSandboxConfigAt is writeSandboxConfig with the providers' APIs reached at sbURL.
func writeSandboxConfigAt(t *testing.T, dir, addr, dsn string, sb *testSandbox, sbURL, appExtra, top string) string {
	t.Helper()
	k := sb.Keys()
	files := map[string]string{"alipay_app.pem": k.AlipayAppPrivateKey, "alipay_public.pem": k.AlipayPublicKey,
		"wx_merchant.pem": k.WechatMerchantPrivateKey, "wx_platform.pem": k.WechatPlatformPublicKey, "wx_apiv3.key": k.WechatAPIv3Key,
		"wrong_alipay_public.pem": k.WechatPlatformPublicKey}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`listen: %q
database: %q
public_url: "http://%s"
api_token: "${PAYNOTIFY_API_TOKEN}"
%s
apps:
  - name: alipay-demo
    provider: alipay
    app_id: %q
    seller_id: %q
    gateway: "%s/sandbox/alipay/gateway.do"
    app_private_key_file: alipay_app.pem
    alipay_public_key_file: alipay_public.pem
%s
  - name: wechatpay-demo
    provider: wechatpay
    mchid: %q
    appid: %q
    api_base: "%s/sandbox/wechatpay"
    merchant_private_key_file: wx_merchant.pem
    merchant_serial_no: %q
    apiv3_key_file: wx_apiv3.key
    platform_public_key_file: wx_platform.pem
    platform_public_key_id: %q
%s
`, addr, dsn, addr, top, k.AlipayAppID, k.AlipaySellerID, sbURL, appExtra, k.WechatMchID, k.WechatAppID, sbURL,
		k.WechatMerchantSerialNo, k.WechatPlatformPublicKeyID, appExtra)
	path := filepath.Join(dir, "paynotify.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCLI runs the binary with args and returns its stdout, stderr and exit code.
func runCLI(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PAYNOTIFY_API_TOKEN="+binToken)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// lastLine is the last line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// testOrder is an order the test created through the API, with its pay parameters.
type testOrder struct {
	app, otn, channel string
	pay               map[string]string
}

// createOrders creates n orders (alternately Alipay app pay and WeChat native) through base's API.
func createOrders(t *testing.T, base, prefix string, n int) []testOrder {
	t.Helper()
	var out []testOrder
	for i := range n {
		o := testOrder{app: "alipay-demo", channel: "alipay.app", otn: fmt.Sprintf("%sCLI%04d", prefix, i)}
		if i%2 == 1 {
			o.app, o.channel = "wechatpay-demo", "wechatpay.native"
		}
		code, body := binAPI(t, "POST", base+"/v1/orders", map[string]any{"app": o.app, "out_trade_no": o.otn, "amount": 100, "subject": "s", "channel": o.channel})
		if code != http.StatusCreated {
			t.Fatalf("create %s: %d %v", o.otn, code, body)
		}
		pay, _ := json.Marshal(body["pay"])
		if err := json.Unmarshal(pay, &o.pay); err != nil {
			t.Fatal(err)
		}
		out = append(out, o)
	}
	return out
}

// payAt has the buyer pay o at the sandbox.
func payAt(t *testing.T, sb *testSandbox, o testOrder) {
	t.Helper()
	req := sandbox.ActionRequest{OrderString: o.pay["order_string"], URL: o.pay["code_url"]}
	if _, err := sb.Act("pay", req); err != nil {
		t.Fatalf("pay %s: %v", o.otn, err)
	}
}

// status reads an order through base's API: its status and query count.
func status(t *testing.T, base string, o testOrder) (string, int) {
	t.Helper()
	code, body := binAPI(t, "GET", base+"/v1/orders/"+o.app+"/"+o.otn, nil)
	if code != http.StatusOK {
		t.Fatalf("get %s: %d %v", o.otn, code, body)
	}
	checks, _ := body["checks"].(float64)
	return body["status"].(string), int(checks)
}

// TestReconcileCommand: 100 orders paid at the sandbox but never notified (and 20 never paid)
// become paid by `paynotify reconcile`, run beside a server on the same database (whose own schedule is far off); a dry run
// changes nothing, a second run finds only the unpaid ones, an answer that does not verify is an
// error (exit 1).
func TestReconcileCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildBinary(t)
	for _, store := range []string{"SQLite", "PostgreSQL"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			dsn := "sqlite:" + filepath.Join(dir, "data", "paynotify.db")
			if store == "PostgreSQL" {
				dsn = pgtest.NewDatabase(t)
			}
			sb := newTestSandbox(t, 1)
			if err := sb.SetFaults("", sandbox.Faults{NeverNotify: true}); err != nil {
				t.Fatal(err)
			}
			addr := freeAddr(t)
			config := writeSandboxConfig(t, dir, addr, dsn, sb, "    reconcile: {schedule: [1h]}", "")
			startBinary(t, bin, config, addr)
			base := "http://" + addr

			orders := createOrders(t, base, "R", 120)
			for _, o := range orders[:100] {
				payAt(t, sb, o)
			}

			out, errOut, code := runCLI(t, bin, "reconcile", "--config", config, "--since", "1h", "--dry-run")
			if want := "checked=120 paid=100 closed=0 refunded=0 pending=20 skipped=0 errors=0"; code != 0 || lastLine(out) != want {
				t.Fatalf("dry run: exit %d, %q, want %q\n%s", code, lastLine(out), want, errOut)
			}
			for _, o := range orders {
				if st, _ := status(t, base, o); st != "pending" {
					t.Fatalf("the dry run changed %s: %s", o.otn, st)
				}
			}

			out, errOut, code = runCLI(t, bin, "reconcile", "--config", config, "--since", "1h")
			if want := "checked=120 paid=100 closed=0 refunded=0 pending=20 skipped=0 errors=0"; code != 0 || lastLine(out) != want {
				t.Fatalf("run: exit %d, %q, want %q\n%s", code, lastLine(out), want, errOut)
			}
			for i, o := range orders {
				want := "pending"
				if i < 100 {
					want = "paid"
				}
				if st, _ := status(t, base, o); st != want {
					t.Fatalf("%s is %s, want %s", o.otn, st, want)
				}
			}
			_, ev := binAPI(t, "GET", base+"/v1/events?limit=1000", nil)
			if evs, _ := ev["events"].([]any); len(evs) != 100 {
				t.Fatalf("%d events, want 100 order.paid", len(evs))
			}

			out, _, code = runCLI(t, bin, "reconcile", "--config", config, "--since", "1h")
			if want := "checked=20 paid=0 closed=0 refunded=0 pending=20 skipped=0 errors=0"; code != 0 || lastLine(out) != want {
				t.Fatalf("second run: exit %d, %q, want %q", code, lastLine(out), want)
			}
			_, ev = binAPI(t, "GET", base+"/v1/events?limit=1000", nil)
			if evs, _ := ev["events"].([]any); len(evs) != 100 {
				t.Fatalf("the second run changed something: %d events", len(evs))
			}

			// An Alipay order closed through the API before its buyer opened it (the sandbox
			// answers ACQ.TRADE_NOT_EXIST: a close of our own, asked about once more after its
			// expiry), then paid at the sandbox, never notified: found by the next run, a
			// payment after close (order.paid and its late_payment anomaly).
			late := orders[100]
			code, body := binAPI(t, "POST", base+"/v1/orders/"+late.app+"/"+late.otn+"/close", nil)
			if code != http.StatusOK || body["status"] != "closed" || body["next_check_at"] == nil {
				t.Fatalf("close %s: %d %v, want closed with a next check", late.otn, code, body)
			}
			payAt(t, sb, late)
			out, _, code = runCLI(t, bin, "reconcile", "--config", config, "--since", "1h")
			if want := "checked=20 paid=1 closed=0 refunded=0 pending=19 skipped=0 errors=0"; code != 0 || lastLine(out) != want {
				t.Fatalf("after a local close and a payment: exit %d, %q, want %q", code, lastLine(out), want)
			}
			if st, _ := status(t, base, late); st != "paid" {
				t.Fatalf("%s is %s, want paid", late.otn, st)
			}
			_, ev = binAPI(t, "GET", base+"/v1/events?limit=1000", nil)
			evs, _ := ev["events"].([]any)
			var types []string
			for _, e := range evs[min(100, len(evs)):] {
				types = append(types, fmt.Sprint(e.(map[string]any)["type"]))
			}
			if want := []string{"order.closed", "order.paid", "order.anomaly"}; !slices.Equal(types, want) {
				t.Fatalf("events after the first 100: %v, want %v", types, want)
			}

			// An answer that does not verify is an error: exit 1, and the order stays pending. (An
			// unpaid WeChat order: its trade exists at the sandbox from the prepay on.)
			if err := sb.SetFaults(orders[101].otn, sandbox.Faults{Query: sandbox.QueryFaultBadSignature}); err != nil {
				t.Fatal(err)
			}
			out, _, code = runCLI(t, bin, "reconcile", "--config", config, "--app", orders[101].app, "--since", "1h")
			if want := "checked=10 paid=0 closed=0 refunded=0 pending=9 skipped=0 errors=1"; code != 1 || lastLine(out) != want {
				t.Fatalf("bad signature: exit %d, %q, want exit 1 and %q", code, lastLine(out), want)
			}
		})
	}

	t.Run("Usage", func(t *testing.T) {
		if out, _, code := runCLI(t, bin, "reconcile", "--help"); code != 0 || !strings.Contains(out, "checked=N paid=N") {
			t.Fatalf("--help: exit %d\n%s", code, out)
		}
		if _, errOut, code := runCLI(t, bin, "reconcile", "--since", "1h"); code != 2 || !strings.Contains(errOut, "--config is required") {
			t.Fatalf("no --config: exit %d %s", code, errOut)
		}
		if _, errOut, code := runCLI(t, bin, "reconcile", "--config", "x.yaml", "--since", "soon"); code != 2 {
			t.Fatalf("bad --since: exit %d %s", code, errOut)
		}
		if out, _, code := runCLI(t, bin, "reprocess", "--help"); code != 0 || !strings.Contains(out, "reprocessed=N accepted=N") {
			t.Fatalf("reprocess --help: exit %d\n%s", code, out)
		}
		if _, _, code := runCLI(t, bin, "reprocess", "--config", "x.yaml"); code != 2 {
			t.Fatalf("reprocess without --since: exit %d", code)
		}
	})
}

// TestReprocessCommand: a server with a wrong Alipay public key rejects every notification of a
// paid order; with the key fixed in the config, `paynotify reprocess` pays it once.
func TestReprocessCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildBinary(t)
	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "data", "paynotify.db")
	sb := newTestSandbox(t, 1000) // Alipay's retries come after 240 ms, 840 ms, …
	addr := freeAddr(t)
	good := writeSandboxConfig(t, dir, addr, dsn, sb, "    reconcile: {schedule: [1h]}", "")
	cfg, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong.yaml")
	if err := os.WriteFile(wrong, bytes.Replace(cfg, []byte("alipay_public_key_file: alipay_public.pem"), []byte("alipay_public_key_file: wrong_alipay_public.pem"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startBinary(t, bin, wrong, addr)
	base := "http://" + addr
	o := createOrders(t, base, "W", 1)[0]
	payAt(t, sb, o)
	waitRejected(t, base, o.otn, 3)
	// Stop the server (its retries would be rejected anyway), then reprocess with the fixed key.
	srv.Process.Signal(syscall.SIGTERM)
	srv.Wait()
	out, errOut, code := runCLI(t, bin, "reprocess", "--config", good, "--since", "1h", "--reason", "signature_invalid")
	wantReprocessedOnce(t, 3, out, errOut, code)
	startBinary(t, bin, good, addr)
	if st, _ := status(t, base, o); st != "paid" {
		t.Fatalf("order %s", st)
	}
	_, ev := binAPI(t, "GET", base+"/v1/events", nil)
	if evs, _ := ev["events"].([]any); len(evs) != 1 {
		t.Fatalf("%d events, want one order.paid", len(evs))
	}
	// Again: every copy is a duplicate now.
	out, _, code = runCLI(t, bin, "reprocess", "--config", good, "--since", "1h")
	if code != 0 || !strings.Contains(out, "accepted=0") {
		t.Fatalf("second run: exit %d %q", code, out)
	}
}

// waitRejected waits until base lists at least n rejected notifications of otn.
func waitRejected(t *testing.T, base, otn string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, ev := binAPI(t, "GET", base+"/v1/notifications?verdict=rejected&out_trade_no="+otn, nil)
		if list, _ := ev["notifications"].([]any); len(list) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d rejected notifications of %s", n, otn)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wantReprocessedOnce checks a `paynotify reprocess` run (its stdout, stderr and exit code): at
// least min copies reprocessed, one accepted, the rest duplicates, exit 0.
func wantReprocessedOnce(t *testing.T, min int, out, errOut string, code int) {
	t.Helper()
	var n, accepted, duplicate, rejected, anomaly, errs int
	if _, err := fmt.Sscanf(lastLine(out), "reprocessed=%d accepted=%d duplicate=%d rejected=%d anomaly=%d errors=%d", &n, &accepted, &duplicate, &rejected, &anomaly, &errs); err != nil {
		t.Fatalf("output %q: %v\n%s", out, err, errOut)
	}
	if code != 0 || n < min || accepted != 1 || duplicate != n-1 || rejected+anomaly+errs != 0 {
		t.Fatalf("exit %d, %q: want every copy reprocessed, one accepted, the rest duplicates\n%s", code, lastLine(out), errOut)
	}
}

// TestBinary_TwoInstances: two servers on one PostgreSQL database reconcile together. Without
// failures each scheduled check is made once (the sandbox's query log has one query per check the
// order counts). Then, with queries held at the sandbox so that both servers hold claims, one
// server is killed with SIGKILL: every order is still paid, within a minute of the kill.
func TestBinary_TwoInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildBinary(t)
	dir := t.TempDir()
	dsn := pgtest.NewDatabase(t)
	sb := newTestSandbox(t, 1)
	if err := sb.SetFaults("", sandbox.Faults{NeverNotify: true}); err != nil {
		t.Fatal(err)
	}
	addrA, addrB := freeAddr(t), freeAddr(t)
	reconcile := "    reconcile: {schedule: [1s, 2s], then_every: 1s, max_checks: 100}"
	cfgA := writeSandboxConfig(t, dir, addrA, dsn, sb, reconcile, "jobs: {sweep_interval: 1s}")
	dirB := t.TempDir()
	urlB, heldB := sb.front(t) // B reaches the sandbox here: its held queries are counted apart
	cfgB := writeSandboxConfigAt(t, dirB, addrB, dsn, sb, urlB, reconcile, "jobs: {sweep_interval: 1s}")
	startBinary(t, bin, cfgA, addrA)
	b := startBinary(t, bin, cfgB, addrB)
	baseA := "http://" + addrA

	waitPaid := func(orders []testOrder, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for _, o := range orders {
			for {
				if st, _ := status(t, baseA, o); st == "paid" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s not paid within %s", o.otn, d)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}

	// Phase 1: both servers up, 60 orders paid but never notified.
	first := createOrders(t, baseA, "A", 60)
	for _, o := range first {
		payAt(t, sb, o)
	}
	waitPaid(first, 30*time.Second)
	time.Sleep(2 * time.Second) // let any duplicate query show
	for _, o := range first {
		_, checks := status(t, baseA, o)
		if q := len(sb.Queries(sandbox.QueryFilter{OutTradeNo: o.otn, API: queryAPI(o)})); q != checks || q == 0 {
			t.Errorf("%s: %d queries at the sandbox for %d checks", o.otn, q, checks)
		}
	}

	// Phase 2: queries hang at the sandbox, so both servers hold claims; kill B.
	sb.hold.Store(true)
	second := createOrders(t, baseA, "B", 40)
	for _, o := range second {
		payAt(t, sb, o)
	}
	deadline := time.Now().Add(30 * time.Second)
	for heldB.Load() < 2 { // wait until B's sweep is in queries, so that B holds claims
		if time.Now().After(deadline) {
			t.Fatalf("B never queried: %d claims held", countHeld(t, dsn))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	held := countHeld(t, dsn)
	if err := b.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b.Wait()
	killed := time.Now()
	close(sb.release)
	sb.hold.Store(false)
	waitPaid(second, 70*time.Second)
	took := time.Since(killed)
	t.Logf("%d claims held at the kill (B in %d queries); all %d orders paid %s after it", held, heldB.Load(), len(second), took.Round(time.Second))
	if took > time.Minute+5*time.Second {
		t.Fatalf("the killed server's checks were taken over after %s, want within a minute", took)
	}
	if took < 30*time.Second {
		t.Fatalf("all paid %s after the kill: B's claims were not held until their lease ran out?", took)
	}
}

// queryAPI is the sandbox's name of o's trade query.
func queryAPI(o testOrder) string {
	if o.app == "alipay-demo" {
		return sandbox.APIAlipayTradeQuery
	}
	return sandbox.APIWechatQuery
}

// countHeld counts the pending orders claimed right now (a check in flight), reading the
// database as an operator would.
func countHeld(t *testing.T, dsn string) int {
	t.Helper()
	out, err := exec.Command("psql", "-XAtq", dsn, "-c", "SELECT count(*) FROM orders WHERE status = 'pending' AND check_token <> ''").CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v %s", err, out)
	}
	var n int
	fmt.Sscan(strings.TrimSpace(string(out)), &n)
	return n
}
