// Command loadreconcile measures `paynotify reconcile`: N pending orders (half Alipay precreate,
// half WeChat Pay native) at an in-process sandbox on loopback, a share of them paid there but
// never notified, then the real binary's `paynotify reconcile` over all of them, timed, on SQLite
// or PostgreSQL. It also measures, in the same run, the machine's RSA-2048 signing rate on all
// cores: each check costs two signatures (the request, and the sandbox's answer, on this same
// machine) and two verifications, so half the signing rate bounds the checks per second.
//
//	go run ./tools/loadreconcile -store sqlite -n 10000
//	go run ./tools/loadreconcile -store postgres -n 10000
//
// It builds ./cmd/paynotify into a temporary directory (or uses -bin).
package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/loadstore"
	"github.com/paynotify/paynotify/internal/sandboxapps"
	"github.com/paynotify/paynotify/sandbox"
)

func main() {
	storeKind := flag.String("store", "sqlite", "sqlite or postgres")
	n := flag.Int("n", 10000, "pending orders")
	paidShare := flag.Float64("paid", 0.5, "share of the orders paid at the sandbox (never notified)")
	bin := flag.String("bin", "", "the paynotify binary (default: build ./cmd/paynotify)")
	pgURL := flag.String("pg", envOr("PAYNOTIFY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL server (a fresh database is created and dropped)")
	flag.Parse()
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "loadreconcile")
	check(err)
	defer os.RemoveAll(dir)

	if *bin == "" {
		*bin = filepath.Join(dir, "paynotify")
		out, err := exec.Command("go", "build", "-o", *bin, "./cmd/paynotify").CombinedOutput()
		if err != nil {
			log.Fatalf("go build: %v\n%s", err, out)
		}
	}

	// The sandbox, on loopback, never notifying.
	quiet := slog.New(slog.DiscardHandler)
	var h http.Handler = http.NotFoundHandler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	defer srv.Close()
	sb, err := sandbox.New(sandbox.Config{StateDir: filepath.Join(dir, "sandbox"), BaseURL: srv.URL, Logger: quiet})
	check(err)
	defer sb.Close()
	h = sb.Handler()
	check(sb.SetFaults("", sandbox.Faults{NeverNotify: true}))

	dsn, store, cleanup := openStore(ctx, *storeKind, *pgURL)
	defer cleanup()

	apps, err := sandboxapps.Apps(sb.Keys(), srv.URL, "")
	check(err)
	svc := &paynotify.Service{Store: store, Processor: &paynotify.Processor{Store: store, Logger: quiet}, Apps: apps,
		PublicURL: "http://127.0.0.1:1", Logger: quiet}

	log.Printf("creating %d orders at the sandbox (%s)", *n, *storeKind)
	start := time.Now()
	paid := int(float64(*n) * *paidShare)
	var created atomic.Int64
	parallel(*n, 8, func(i int) {
		app, channel := sandboxapps.Alipay, paynotify.ChannelAlipayPrecreate
		if i%2 == 1 {
			app, channel = sandboxapps.Wechat, paynotify.ChannelWechatNative
		}
		o, _, err := svc.CreateOrder(ctx, paynotify.CreateOrderRequest{App: app, OutTradeNo: fmt.Sprintf("LR%08d", i), Amount: 8888,
			Subject: "load", Channel: channel, ExpiresIn: 2 * time.Hour})
		check(err)
		if i < paid {
			var pay map[string]string
			check(json.Unmarshal(o.Pay, &pay))
			_, err := sb.Act("pay", sandbox.ActionRequest{URL: pay["qr_code"] + pay["code_url"]})
			check(err)
		}
		if c := created.Add(1); c%2000 == 0 {
			log.Printf("%d orders", c)
		}
	})
	log.Printf("created in %s", time.Since(start).Round(time.Second))

	config := writeConfig(dir, dsn, sb, srv.URL)
	signRate := signCeiling(2 * time.Second)

	log.Printf("paynotify reconcile over %d pending orders", *n)
	cmd := exec.Command(*bin, "reconcile", "--config", config, "--since", "24h")
	cmd.Env = append(os.Environ(), "PAYNOTIFY_API_TOKEN=load-token-0123456789")
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	out, err := cmd.Output()
	elapsed := time.Since(t0)
	check(err)
	line := strings.TrimSpace(string(out))
	var checked, p, cl, rf, pe, sk, er int
	_, err = fmt.Sscanf(line, "checked=%d paid=%d closed=%d refunded=%d pending=%d skipped=%d errors=%d", &checked, &p, &cl, &rf, &pe, &sk, &er)
	check(err)
	if checked != *n || p != paid || er != 0 {
		log.Fatalf("reconcile said %q, want %d checked, %d paid, no errors", line, *n, paid)
	}
	rate := float64(checked) / elapsed.Seconds()
	fmt.Printf("store=%s n=%d paid=%d cores=%d concurrency=%d per app (2 apps)\n", *storeKind, *n, paid, runtime.GOMAXPROCS(0),
		paynotify.DefaultReconcile.Concurrency)
	fmt.Printf("rsa_sign_ceiling=%.0f/s (all cores, same run): at most %.0f checks/s with both sides on this machine\n", signRate, signRate/2)
	fmt.Printf("reconcile: %s in %s = %.0f checks/s (%.0f%% of that bound)\n", line, elapsed.Round(10*time.Millisecond), rate, 100*rate/(signRate/2))
}

// writeConfig writes the sandbox apps' keys and a config naming them, on database dsn.
func writeConfig(dir, dsn string, sb *sandbox.Sandbox, sbURL string) string {
	k := sb.Keys()
	for name, content := range map[string]string{"alipay_app.pem": k.AlipayAppPrivateKey, "alipay_public.pem": k.AlipayPublicKey,
		"wx_merchant.pem": k.WechatMerchantPrivateKey, "wx_platform.pem": k.WechatPlatformPublicKey, "wx_apiv3.key": k.WechatAPIv3Key} {
		check(os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	cfg := fmt.Sprintf(`database: %q
public_url: "http://127.0.0.1:1"
api_token: "${PAYNOTIFY_API_TOKEN}"
apps:
  - {name: %s, provider: alipay, app_id: %q, seller_id: %q, gateway: "%s/sandbox/alipay/gateway.do",
     app_private_key_file: alipay_app.pem, alipay_public_key_file: alipay_public.pem}
  - {name: %s, provider: wechatpay, mchid: %q, appid: %q, api_base: "%s/sandbox/wechatpay", merchant_private_key_file: wx_merchant.pem,
     merchant_serial_no: %q, apiv3_key_file: wx_apiv3.key, platform_public_key_file: wx_platform.pem, platform_public_key_id: %q}
`, dsn, sandboxapps.Alipay, k.AlipayAppID, k.AlipaySellerID, sbURL, sandboxapps.Wechat, k.WechatMchID, k.WechatAppID, sbURL,
		k.WechatMerchantSerialNo, k.WechatPlatformPublicKeyID)
	path := filepath.Join(dir, "paynotify.yaml")
	check(os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

// openStore creates a fresh database (ours and River's schema, internal/loadstore) and returns
// its DSN and store.
func openStore(ctx context.Context, kind, pgURL string) (string, paynotify.Store, func()) {
	s, err := loadstore.Open(ctx, kind, pgURL, "loadreconcile")
	check(err)
	return s.DSN, s.Store, s.Close // the store itself: the wrapper would hide its OrderCommitter
}

// parallel runs f(0…n-1) on w goroutines.
func parallel(n, w int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// signCeiling is how many RSA-2048 SHA-256 signatures per second the machine makes on all cores.
func signCeiling(d time.Duration) float64 {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	h := sha256.Sum256([]byte("reconcile"))
	var count atomic.Int64
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, h[:]); err != nil {
					panic(err)
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(count.Load()) / time.Since(start).Seconds()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
