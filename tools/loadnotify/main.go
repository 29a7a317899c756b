// Command loadnotify measures the notification path: valid, first-delivery Alipay notifications
// posted over HTTP with keep-alive to an in-process paynotify server, on SQLite or PostgreSQL,
// beside the machine's RSA-verify ceiling measured in the same run on all cores.
//
//	go run ./tools/loadnotify -store sqlite -n 3000 -c 16
//	go run ./tools/loadnotify -store postgres -n 3000 -c 16
//
// It prints notifications per second, latency percentiles, and the verify ceiling. The server and
// the load share the machine's cores, as they would on a small box; figures on these shared
// 2-core machines are noisy: compare the ratio to the ceiling, not absolutes.
//
// With -rate R the notifications arrive at a fixed R per second (open loop, as providers send
// them) instead of as fast as -c connections allow. With -reconcile N the server also reconciles:
// N pending orders of the sandbox's two apps (an in-process sandbox on loopback), due again every
// second, swept by the server's own Reconciler as the jobs would, during every other -phase of the
// run; the latencies of the phases with and without reconciliation are reported apart, so that
// both come from the same run (the disk and the neighbours drift between runs):
//
//	go run ./tools/loadnotify -store sqlite -n 6000 -rate 400
//	go run ./tools/loadnotify -store sqlite -n 6000 -rate 400 -reconcile 2000
//
// With -webhooks the server also delivers every event as outgoing webhooks (a webhook.Dispatcher
// with the default config, woken by every commit, to one endpoint on an in-process receiver on
// loopback that answers 204 at once); at the end every order.paid must have reached the receiver
// (it waits up to 30 s for the tail). With -webhook-phase the endpoint is enabled in every other
// -phase and disabled in the others, through the API's workflow, and the latencies with and
// without deliveries are reported apart as for -reconcile (with both, both run in the same
// phases); disabling fails the pending deliveries, so that mode counts what was delivered
// without checking it:
//
//	go run ./tools/loadnotify -store sqlite -n 20000 -rate 1000 -webhooks
//	go run ./tools/loadnotify -store sqlite -n 20000 -rate 1000 -phase 2s -webhook-phase
//
// -receiver-nice N moves the receiver into a process of its own under nice N (19: it gets only
// the CPU the server and the load leave idle, as a receiver on another machine would take none
// of theirs), to tell the receiver's share of the cost from the server's:
//
//	go build -o /tmp/loadnotify ./tools/loadnotify && /tmp/loadnotify -n 33000 -rate 2740 -phase 2s -webhook-phase -receiver-nice 19
//
// With -seed N the store holds N more (filler, pending) orders before the run, so that the cost
// per notification can be compared between a small and a large orders table:
//
//	go run ./tools/loadnotify -store sqlite -n 5000 -c 64
//	go run ./tools/loadnotify -store sqlite -n 5000 -c 64 -seed 1000000
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/httpd"
	"github.com/paynotify/paynotify/internal/alipaywire"
	"github.com/paynotify/paynotify/internal/gcpercent"
	"github.com/paynotify/paynotify/internal/loadstore"
	"github.com/paynotify/paynotify/provider"
)

const (
	appID  = "2021000000000001"
	seller = "2088000000000002"
)

func main() {
	storeKind := flag.String("store", "sqlite", "sqlite or postgres")
	n := flag.Int("n", 3000, "notifications to send (each to its own order)")
	conc := flag.Int("c", 16, "concurrent keep-alive connections")
	rateFlag := flag.Float64("rate", 0, "fixed arrival rate per second (open loop); 0 sends as fast as -c allows")
	reconcileN := flag.Int("reconcile", 0, "pending orders reconciled all the while (0: no reconciliation)")
	reconcileConc := flag.Int("reconcile-concurrency", 4, "the reconciliation's queries in flight per app at most (reconcile.concurrency)")
	phase := flag.Duration("phase", 5*time.Second, "with -reconcile or -webhook-phase: the length of each phase with, then without, reconciliation or webhook deliveries")
	reconcileRate := flag.Float64("reconcile-rate", 10, "the reconciliation's checks per second at most (serve's default jobs.max_checks_per_second); 0 for no cap")
	webhooksFlag := flag.Bool("webhooks", false, "the server also delivers every event to a webhook endpoint on loopback; every order.paid must arrive")
	webhookPhase := flag.Bool("webhook-phase", false, "-webhooks with the endpoint enabled in every other -phase only; p99 reported with and without deliveries")
	receiverNice := flag.Int("receiver-nice", -1, "with -webhooks or -webhook-phase: run the receiver as a process of its own under nice at this niceness (0-19); -1 keeps it in this process")
	receiverChild := flag.Bool("receiver-child", false, "run as the receiver process of -receiver-nice (internal)")
	seed := flag.Int("seed", 0, "filler orders stored before the run (the cost per notification against a large table)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the load (server, load and reconciliation together) to this file")
	pgURL := flag.String("pg", envOr("PAYNOTIFY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL server (a fresh database is created and dropped)")
	flag.Parse()
	gcpercent.Apply(os.LookupEnv) // as serve runs (docs/performance.md, "The garbage collector")
	if *receiverChild {
		runReceiver()
		return
	}
	ctx := context.Background()

	store, cleanup := openStore(ctx, *storeKind, *pgURL)
	defer cleanup()

	alipayKey := mustKey()
	appKey := mustKey()
	client, err := alipay.NewClient(alipay.Config{AppID: appID, PrivateKey: appKey, AlipayPublicKey: &alipayKey.PublicKey})
	check(err)

	if *seed > 0 {
		log.Printf("seeding %d filler orders", *seed)
		check(store.Seed(ctx, "shop", *seed))
	}
	log.Printf("creating %d orders on %s", *n, *storeKind)
	createOrders(ctx, store, *n)
	log.Printf("signing %d notifications", *n)
	bodies := signNotifications(alipayKey, *n)

	ceiling := verifyCeiling(len(bodies[0]), 2*time.Second)

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &httpd.Server{
		Service: &paynotify.Service{
			Store:     store.Store, // the store itself: the wrapper would hide its OrderCommitter
			Processor: &paynotify.Processor{Store: store.Store, Logger: logger},
			Apps: map[string]*paynotify.App{"shop": {Name: "shop", Provider: paynotify.ProviderAlipay, AppID: appID,
				SellerIDs: []string{seller}, Gateway: &provider.Alipay{Client: client}}},
			PublicURL: "https://pay.example.com",
			Logger:    logger,
		},
		APIToken: "load-token-0123456789", Logger: logger,
	}
	var rec *reconciling
	if *reconcileN > 0 {
		rec = startReconciling(ctx, srv.Service, *reconcileN, *reconcileConc, *reconcileRate, logger)
	}
	var wh *webhooks
	if *webhooksFlag || *webhookPhase {
		wh = startWebhooks(ctx, srv.Service, logger, *receiverNice)
	}
	var ph *phases // the "on" and "off" phases, with -reconcile or -webhook-phase
	var work []phaser
	if rec != nil {
		work = append(work, rec)
	}
	if *webhookPhase {
		work = append(work, wh)
	}
	if len(work) > 0 {
		ph = &phases{}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	hs := httpd.NewHTTPServer(ln.Addr().String(), srv.Handler())
	go hs.Serve(ln)
	defer hs.Close()
	target := "http://" + ln.Addr().String() + "/notify/alipay/shop"

	tr := &http.Transport{MaxIdleConns: *conc, MaxIdleConnsPerHost: *conc, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	lat := make([]time.Duration, 0, len(bodies))
	answered := make([]time.Time, len(bodies)) // when each was answered "success"
	var mu sync.Mutex
	var failed atomic.Int64
	send := func(i int, body []byte) {
		t0 := time.Now()
		resp, err := hc.Post(target, "application/x-www-form-urlencoded; text/html; charset=utf-8", bytes.NewReader(body))
		if err != nil {
			failed.Add(1)
			return
		}
		ans, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
		ph.record(t0, d)
		if string(ans) != "success" {
			failed.Add(1)
		} else {
			answered[i] = t0.Add(d)
		}
	}
	var wg sync.WaitGroup
	if rec != nil {
		rec.begin()
	}
	if ph != nil {
		ph.begin(*phase, work...)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		check(err)
		check(pprof.StartCPUProfile(f))
		defer f.Close()
	}
	start := time.Now()
	if *rateFlag > 0 {
		// Open loop: notification i leaves at start + i/rate, whatever the earlier ones are doing.
		for i, body := range bodies {
			if d := time.Until(start.Add(time.Duration(float64(i) / *rateFlag * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
			wg.Add(1)
			go func() { defer wg.Done(); send(i, body) }()
		}
	} else {
		next := make(chan int, len(bodies))
		for i := range bodies {
			next <- i
		}
		close(next)
		for i := 0; i < *conc; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					send(i, bodies[i])
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	rate := float64(len(bodies)) / elapsed.Seconds()
	ph.end()
	checks := 0.0
	if rec != nil {
		checks = rec.end()
	}
	webhooksOn := ""
	switch {
	case *webhookPhase:
		webhooksOn = " webhooks=phases"
	case wh != nil:
		webhooksOn = " webhooks=on"
	}
	_, inWriter := srv.Service.Processor.Store.(paynotify.OrderCommitter)
	fmt.Printf("store=%s n=%d c=%d rate=%.0f reconcile=%d seed=%d cores=%d%s decided_in_writer=%v\n", *storeKind, len(bodies), *conc, *rateFlag,
		*reconcileN, *seed, runtime.GOMAXPROCS(0), webhooksOn, inWriter)
	fmt.Printf("rsa_verify_ceiling=%.0f/s (all cores, same run)\n", ceiling)
	fmt.Printf("notifications=%.0f/s (%.1f%% of the verify ceiling) p50=%v p99=%v max=%v failed=%d\n",
		rate, 100*rate/ceiling, pct(0.50).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond), failed.Load())
	if ph != nil {
		var what []string
		extra := ""
		if rec != nil {
			what = append(what, "reconciliation")
			extra = fmt.Sprintf("%.0f checks/s while on; ", checks)
		}
		if *webhookPhase {
			what = append(what, "webhook deliveries")
		}
		ph.report(strings.Join(what, " and "), extra)
	}
	if wh != nil && !wh.finish(answered, ph, 30*time.Second) {
		failed.Add(1)
	}
	if failed.Load() > 0 {
		hs.Close()
		cleanup() // os.Exit skips the deferred calls: the temporary database goes all the same
		os.Exit(1)
	}
	// Every notification must have landed: one paid order each.
	orders, err := store.ListOrders(ctx, paynotify.OrderFilter{App: "shop", Status: paynotify.StatusPaid, Limit: 1})
	check(err)
	if len(orders) == 0 {
		log.Fatal("no paid order after the run")
	}
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

func mustKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	return k
}

// openStore creates a fresh store (internal/loadstore); cleanup removes it.
func openStore(ctx context.Context, kind, pgURL string) (*loadstore.Store, func()) {
	s, err := loadstore.Open(ctx, kind, pgURL, "loadnotify")
	check(err)
	return s, s.Close
}

func tradeNo(i int) string { return fmt.Sprintf("L%09d", i) }

func createOrders(ctx context.Context, s paynotify.Store, n int) {
	now := time.Now().UTC()
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				_, _, err := s.CreateOrder(ctx, &paynotify.Order{App: "shop", OutTradeNo: tradeNo(i), Channel: paynotify.ChannelAlipayApp,
					Status: paynotify.StatusPending, Amount: 8888, Currency: "CNY", Subject: "load", Version: 1, CreatedAt: now, ExpiresAt: now.Add(2 * time.Hour)})
				check(err)
			}
		}()
	}
	wg.Wait()
}

// notification returns the fields of a realistic 25-field TRADE_SUCCESS notification.
func notification(i int) map[string]string {
	otn := tradeNo(i)
	return map[string]string{
		"gmt_create": "2026-11-29 09:59:50", "charset": "utf-8", "seller_email": "shop@example.com", "subject": "测试订单 load",
		"buyer_id": "2088102177846880", "invoice_amount": "88.88", "notify_id": "2026112900222100005" + otn, "fund_bill_list": `[{"amount":"88.88","fundChannel":"ALIPAYACCOUNT"}]`,
		"notify_type": "trade_status_sync", "trade_status": "TRADE_SUCCESS", "receipt_amount": "88.88", "buyer_pay_amount": "88.88",
		"app_id": appID, "notify_time": "2026-11-29 10:00:05", "point_amount": "0.00", "total_amount": "88.88",
		"trade_no": "2026112922001400" + otn, "auth_app_id": appID, "buyer_logon_id": "abc***@example.com", "gmt_payment": "2026-11-29 10:00:00",
		"seller_id": seller, "version": "1.0", "out_trade_no": otn, "body": "load test order",
	}
}

func signNotifications(key *rsa.PrivateKey, n int) [][]byte {
	out := make([][]byte, n)
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f := notification(i)
				keys := make([]string, 0, len(f))
				for k := range f {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				var canon, body strings.Builder
				for j, k := range keys {
					if j > 0 {
						canon.WriteByte('&')
						body.WriteByte('&')
					}
					canon.WriteString(k + "=" + f[k])
					body.WriteString(k + "=" + url.QueryEscape(f[k]))
				}
				sig, err := alipaywire.Sign(key, string(alipay.RSA2), []byte(canon.String()))
				check(err)
				body.WriteString("&sign=" + url.QueryEscape(sig) + "&sign_type=RSA2")
				out[i] = []byte(body.String())
			}
		}()
	}
	wg.Wait()
	return out
}

// verifyCeiling is how many RSA-2048 SHA-256 verifications per second the machine does on all
// cores, for a message of msgLen bytes with a pre-parsed key: the floor of the notification path.
func verifyCeiling(msgLen int, d time.Duration) float64 {
	key := mustKey()
	msg := bytes.Repeat([]byte("a"), msgLen)
	h := sha256.Sum256(msg)
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, h[:])
	check(err)
	var count atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				h := sha256.Sum256(msg)
				if rsa.VerifyPKCS1v15(&key.PublicKey, crypto.SHA256, h[:], sig) != nil {
					panic("verify")
				}
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(count.Load()) / time.Since(start).Seconds()
}
