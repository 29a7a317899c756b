package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/internal/testsign"
)

const (
	binToken  = "binary-test-token-0123456789"
	binAppID  = "2021000000000001"
	binSeller = "2088000000000002"
	// alipayTestKey plays Alipay (the shared vectors' test key pair): openssl signs with it.
	alipayTestKey = "../../httpd/testdata/alipay_private.pem"
	alipayTestPub = "../../httpd/testdata/alipay_public.pem"
)

// buildBinary builds the real paynotify binary once per test.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "paynotify")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address with a port free at the time of the call, for a server
// the test starts as a process of its own. The port is not one the kernel hands out by itself:
// an address from "127.0.0.1:0" is free only until it is closed, and with many servers and
// clients in this package's parallel tests the kernel gave the same port to another test's
// server (or to a client connection) before this one bound it, so that a test waited for
// /healthz and was answered by another test's server. Ports below the ephemeral range
// (net.ipv4.ip_local_port_range, 32768–60999 by default) are never chosen by the kernel, and
// each is handed out once per test process; the start is random, so that two test processes on
// one machine (even with equal pids, in containers sharing a network) rarely walk the same ports.
func freeAddr(t *testing.T) string {
	t.Helper()
	freePorts.Lock()
	defer freePorts.Unlock()
	if freePorts.next == 0 {
		freePorts.next = freePortLow + rand.IntN(freePortHigh-freePortLow)
	}
	for range freePortHigh - freePortLow {
		port := freePorts.next
		freePorts.next++
		if freePorts.next >= freePortHigh {
			freePorts.next = freePortLow
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // in use by something else on the machine
		}
		ln.Close()
		return addr
	}
	t.Fatal("freeAddr: no free port below the ephemeral range")
	return ""
}

const freePortLow, freePortHigh = 20000, 32000

var freePorts struct {
	sync.Mutex
	next int
}

// waitHealthy waits until base/healthz answers 200, or fails the test.
func waitHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s never answered /healthz", base)
}

// writeServerConfig writes keys and a config for one Alipay app "shop" on database dsn. Its
// Alipay public key is the published test key, which the server takes only with a loopback
// gateway (a closed port: nothing here calls it).
func writeServerConfig(t *testing.T, dir, addr, dsn string) string {
	t.Helper()
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
		"-out", filepath.Join(dir, "app_private.pem")).CombinedOutput(); err != nil {
		t.Fatalf("openssl genpkey: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(alipayTestPub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alipay_public.pem"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`listen: %q
database: %q
public_url: "https://pay.example.com"
api_token: "${PAYNOTIFY_API_TOKEN}"
apps:
  - name: shop
    provider: alipay
    app_id: %q
    seller_id: %q
    app_private_key_file: app_private.pem
    alipay_public_key_file: alipay_public.pem
    gateway: "http://127.0.0.1:1/gateway.do"
`, addr, dsn, binAppID, binSeller)
	path := filepath.Join(dir, "paynotify.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startBinary starts `paynotify serve --config` and waits until it answers.
func startBinary(t *testing.T, bin, config, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--config", config)
	cmd.Env = append(os.Environ(), "PAYNOTIFY_API_TOKEN="+binToken)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("server did not start:\n%s", logs.String())
	return nil
}

func binAPI(t *testing.T, method, url string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+binToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestBinary_SurvivesSIGKILL starts the real binary, gets `success` for a notification, kills
// the process with SIGKILL, restarts it and finds the order paid: the answer followed the commit.
// (A killed process keeps what the OS already has; that the commit is also on disk is checked by
// the stores' OKDurable tests: synchronous=FULL, synchronous_commit=on.)
func TestBinary_SurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	for _, store := range []string{"SQLite", "PostgreSQL"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			dsn := "sqlite:" + filepath.Join(dir, "data", "paynotify.db")
			if store == "PostgreSQL" {
				dsn = pgtest.NewDatabase(t)
			}
			addr := freeAddr(t)
			config := writeServerConfig(t, dir, addr, dsn)
			cmd := startBinary(t, bin, config, addr)
			base := "http://" + addr

			code, o := binAPI(t, "POST", base+"/v1/orders", map[string]any{"app": "shop", "out_trade_no": "K0001", "amount": 8888, "subject": "kill me", "channel": "alipay.app"})
			if code != http.StatusCreated {
				t.Fatalf("create: %d %v", code, o)
			}
			body := testsign.AlipayNotify(t, alipayTestKey, testsign.AlipayPaid(binAppID, binSeller, "K0001", "88.88"))
			resp, err := http.Post(base+"/notify/alipay/shop", "application/x-www-form-urlencoded; text/html; charset=utf-8", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			ans, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(ans) != "success" {
				t.Fatalf("answer %q", ans)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()

			startBinary(t, bin, config, addr)
			code, o = binAPI(t, "GET", base+"/v1/orders/shop/K0001", nil)
			if code != http.StatusOK || o["status"] != "paid" || o["version"] != float64(2) {
				t.Fatalf("after restart: %d %v", code, o)
			}
			code, ev := binAPI(t, "GET", base+"/v1/events", nil)
			if evs, _ := ev["events"].([]any); code != http.StatusOK || len(evs) != 1 {
				t.Fatalf("events after restart: %d %v", code, ev)
			}
		})
	}
}

// TestBinary_GracefulShutdown checks that SIGTERM stops the server cleanly (exit 0).
func TestBinary_GracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	config := writeServerConfig(t, dir, addr, "sqlite:"+filepath.Join(dir, "paynotify.db"))
	cmd := startBinary(t, bin, config, addr)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit 15s after SIGTERM")
	}
}

// TestServe_ConfigErrors runs serve in-process on bad configs: exit 2 with the field named.
func TestServe_ConfigErrors(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	config := writeServerConfig(t, dir, addr, "sqlite:"+filepath.Join(dir, "paynotify.db"))
	t.Setenv("PAYNOTIFY_API_TOKEN", binToken)
	good, _ := os.ReadFile(config)
	tests := []struct {
		name, from, to, want string
	}{
		{"ErrMissingKeyFile", "app_private_key_file: app_private.pem", "app_private_key_file: nope.pem", "apps[0] (shop).app_private_key_file: open"},
		{"ErrOwnPublicKey", "alipay_public_key_file: alipay_public.pem", "alipay_public_key_file: app_public.pem", "apps[0] (shop).alipay_public_key_file: alipay: the configured Alipay public key is the app's own public key"},
		{"ErrGarbageKey", "alipay_public_key_file: alipay_public.pem", "alipay_public_key_file: paynotify.yaml", "apps[0] (shop).alipay_public_key_file:"},
	}
	if out, err := exec.Command("openssl", "pkey", "-in", filepath.Join(dir, "app_private.pem"), "-pubout", "-out", filepath.Join(dir, "app_public.pem")).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkey: %v\n%s", err, out)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name+".yaml")
			os.WriteFile(p, []byte(strings.Replace(string(good), tt.from, tt.to, 1)), 0o600)
			code, _, errs := runMain(t, "", "serve", "--config", p)
			if code != exitUsage || !strings.Contains(errs, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and %q", code, errs, tt.want)
			}
			if strings.Contains(errs, "PRIVATE KEY") {
				t.Fatalf("stderr shows key material: %q", errs)
			}
		})
	}
}

// TestServe_EmptyConfig: `--config ""` (a `--config "$PAYNOTIFY_CONFIG"` with the variable
// unset) is a usage error, not a request for the demo: the demo would start where a server runs.
func TestServe_EmptyConfig(t *testing.T) {
	t.Chdir(t.TempDir())
	code, _, errs := runMain(t, "", "serve", "--config", "")
	if code != exitUsage || !strings.Contains(errs, "--config is empty") {
		t.Fatalf("exit %d, stderr %q; want exit 2 naming the empty --config", code, errs)
	}
	if _, err := os.Stat(demoDataDir); err == nil {
		t.Fatal("the demo started")
	}
}

// TestBinary_Demo runs the real binary with no config, as a new user would, and pays a sandbox
// order end to end: create through the API, pay as the buyer, find it paid with its event.
func TestBinary_Demo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--listen", addr)
	cmd.Dir = dir
	var stdout, logs lockedBuffer // written by exec's copying goroutines while the test reads them
	cmd.Stdout, cmd.Stderr = &stdout, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("stdout:\n%s\nlog:\n%s", stdout.String(), logs.String())
		}
	})
	base := "http://" + addr
	waitHealthy(t, base)
	tokenBytes, err := os.ReadFile(filepath.Join(dir, "paynotify-data", "api_token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(tokenBytes))
	// The banner follows the listener's opening: /healthz can answer before it is printed.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stdout.String(), token) || !strings.Contains(stdout.String(), base+"/"); {
		if time.Now().After(deadline) {
			t.Fatalf("the demo does not say where to click and the token:\n%s", stdout.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The demo's database is not a config's default one (DefaultDatabase): a demo started by
	// mistake beside a server does not open its orders.
	if _, err := os.Stat(filepath.Join(dir, "paynotify-data", demoDatabase)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(DefaultDatabase, "sqlite:"))); err == nil {
		t.Fatal("the demo opened the config's default database")
	}
	for _, p := range []string{"paynotify-data", "paynotify-data/api_token"} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]os.FileMode{true: 0o700, false: 0o600}[fi.IsDir()]; fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	api := func(method, path string, body any) (int, map[string]any) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	checkRootV3(t, base, token)
	// The demo's sandbox keys need its token.
	if resp, err := http.Get(base + "/sandbox/api/keys"); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("demo sandbox keys without the token: %d, want 401", resp.StatusCode)
	}
	// The demo's start page, the console's overview, renders with both apps' channels.
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "alipay.page") || !strings.Contains(string(page), "wechatpay.native") {
		t.Fatalf("demo page lacks the channels")
	}
	for _, tc := range []struct{ app, channel, otn string }{{"alipay-demo", "alipay.precreate", "DEMO0001"}, {"wechatpay-demo", "wechatpay.native", "DEMO0002"}} {
		code, o := api("POST", "/v1/orders", map[string]any{"app": tc.app, "out_trade_no": tc.otn, "amount": 8888, "subject": "Coffee", "channel": tc.channel})
		if code != http.StatusCreated {
			t.Fatalf("create %s: %d %v", tc.channel, code, o)
		}
		payURL := ""
		if p, ok := o["pay"].(map[string]any); ok {
			for _, k := range []string{"qr_code", "code_url"} {
				if v, ok := p[k].(string); ok {
					payURL = v
				}
			}
		}
		if payURL == "" {
			t.Fatalf("no pay URL in %v", o)
		}
		out, err := exec.Command(bin, "sandbox", "pay", "--sandbox", base, "--url", payURL).CombinedOutput()
		if err != nil {
			t.Fatalf("sandbox pay: %v\n%s", err, out)
		}
		code, o = api("GET", "/v1/orders/"+tc.app+"/"+tc.otn+"?wait=20s", nil)
		if code != http.StatusOK || o["status"] != "paid" {
			t.Fatalf("%s: after paying: %d %v", tc.channel, code, o)
		}
	}
	// README's step 2 for every Alipay channel whose cashier was never opened: the sandbox never
	// saw these trades; `sandbox pay --app` reads the pending order's stored pay from paynotify.
	tokenFile := filepath.Join(dir, "paynotify-data", "api_token")
	for i, channel := range []string{"alipay.page", "alipay.wap", "alipay.app"} {
		otn := fmt.Sprintf("DEMO100%d", i)
		if code, o := api("POST", "/v1/orders", map[string]any{"app": "alipay-demo", "out_trade_no": otn, "amount": 100, "subject": "Tea", "channel": channel}); code != http.StatusCreated {
			t.Fatalf("create %s: %d %v", channel, code, o)
		}
		code, o := api("GET", "/v1/orders/alipay-demo/"+otn, nil)
		if p, _ := o["pay"].(map[string]any); code != http.StatusOK || len(p) == 0 {
			t.Fatalf("%s: GET of the pending order has no pay: %d %v", channel, code, o)
		}
		if out, err := exec.Command(bin, "sandbox", "pay", "--sandbox", base, "--out-trade-no", otn).CombinedOutput(); err == nil {
			t.Fatalf("%s: sandbox pay without --app found a trade the sandbox never saw:\n%s", channel, out)
		}
		out, err := exec.Command(bin, "sandbox", "pay", "--sandbox", base, "--server", base, "--token-file", tokenFile, "--app", "alipay-demo", "--out-trade-no", otn).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: sandbox pay --app: %v\n%s", channel, err, out)
		}
		code, o = api("GET", "/v1/orders/alipay-demo/"+otn+"?wait=20s", nil)
		if code != http.StatusOK || o["status"] != "paid" {
			t.Fatalf("%s: after paying: %d %v", channel, code, o)
		}
		if _, ok := o["pay"]; ok {
			t.Errorf("%s: a paid order still shows pay: %v", channel, o)
		}
	}
	_, ev := api("GET", "/v1/events", nil)
	if evs, _ := ev["events"].([]any); len(evs) != 5 {
		t.Fatalf("events = %v, want five order.paid", ev)
	}
}

// TestMigrate: `serve --no-migrate` refuses a database with pending migrations; `migrate` applies
// them, after which --no-migrate starts.
func TestMigrate(t *testing.T) {
	for _, store := range []string{"SQLite", "PostgreSQL"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			dsn := "sqlite:" + filepath.Join(dir, "paynotify.db")
			if store == "PostgreSQL" {
				dsn = pgtest.NewDatabase(t)
			}
			addr := freeAddr(t)
			config := writeServerConfig(t, dir, addr, dsn)
			t.Setenv("PAYNOTIFY_API_TOKEN", binToken)
			// A new PostgreSQL database has migrations pending; a SQLite file that does not
			// exist yet is refused as it is (not created empty first).
			want := "pending migrations"
			if store == "SQLite" {
				want = "does not exist"
			}
			// Pending migrations are exit 1, restarted by the unit until they are applied; a
			// file that is not there is a config error (2).
			wantCode := exitInvalid
			if store == "SQLite" {
				wantCode = exitUsage
			}
			code, _, errs := runMain(t, "", "serve", "--config", config, "--no-migrate")
			if code != wantCode || !strings.Contains(errs, want) {
				t.Fatalf("serve --no-migrate on a new database: exit %d, %q", code, errs)
			}
			code, out, errs := runMain(t, "", "migrate", "--database", dsn)
			if code != exitOK || !strings.Contains(out, "applied paynotify 0001_init\n") || !strings.Contains(out, "applied River 1 ") {
				t.Fatalf("migrate: exit %d, %q %q", code, out, errs)
			}
			// Now --no-migrate starts: run it until the context ends.
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan int, 1)
			go func() {
				var o, e bytes.Buffer
				m := &Main{Stdin: strings.NewReader(""), Stdout: &o, Stderr: &e}
				done <- m.Run(ctx, []string{"serve", "--config", config, "--no-migrate"})
			}()
			waitHealthy(t, "http://"+addr)
			cancel()
			if code := <-done; code != exitOK {
				t.Fatalf("serve --no-migrate after migrate: exit %d", code)
			}
		})
	}
}
