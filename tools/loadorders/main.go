// Command loadorders measures order creation: POST /v1/orders for alipay.app (one RSA-2048
// SHA256withRSA signature of the orderString, then one commit) over HTTP with keep-alive to an
// in-process paynotify server, on SQLite or PostgreSQL, beside the machine's RSA-sign ceiling
// (crypto/rsa on all cores, measured in the same run before and after the load):
//
//	go run ./tools/loadorders -store sqlite -n 6000 -c 16
//	go run ./tools/loadorders -store postgres -n 6000 -c 16
//
// It prints orders per second and their share of the ceiling. The server and the load share the
// machine's cores, as they would on a small box.
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
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/httpd"
	"github.com/paynotify/paynotify/internal/gcpercent"
	"github.com/paynotify/paynotify/internal/loadstore"
	"github.com/paynotify/paynotify/provider"
)

const (
	appID = "2021000000000001"
	token = "load-token-0123456789"
)

func main() {
	storeKind := flag.String("store", "sqlite", "sqlite or postgres")
	n := flag.Int("n", 6000, "orders to create")
	conc := flag.Int("c", 16, "concurrent keep-alive connections")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the load (server and load together) to this file")
	pgURL := flag.String("pg", envOr("PAYNOTIFY_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), "PostgreSQL server (a fresh database is created and dropped)")
	flag.Parse()
	gcpercent.Apply(os.LookupEnv) // as serve runs (docs/performance.md, "The garbage collector")
	ctx := context.Background()

	store, err := loadstore.Open(ctx, *storeKind, *pgURL, "loadorders")
	check(err)
	defer store.Close()
	appKey, err := rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	alipayKey, err := rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	client, err := alipay.NewClient(alipay.Config{AppID: appID, PrivateKey: appKey, AlipayPublicKey: &alipayKey.PublicKey})
	check(err)

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := &httpd.Server{
		Service: &paynotify.Service{
			Store:     store.Store, // the store itself: the wrapper would hide its OrderCommitter
			Processor: &paynotify.Processor{Store: store.Store, Logger: logger},
			Apps: map[string]*paynotify.App{"shop": {Name: "shop", Provider: paynotify.ProviderAlipay, AppID: appID,
				SellerIDs: []string{"2088000000000002"}, Gateway: &provider.Alipay{Client: client}}},
			PublicURL: "https://pay.example.com",
			Logger:    logger,
		},
		APIToken: token, Logger: logger,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	hs := httpd.NewHTTPServer(ln.Addr().String(), srv.Handler())
	go hs.Serve(ln)
	defer hs.Close()
	target := "http://" + ln.Addr().String() + "/v1/orders"

	before := signCeiling(appKey, 3*time.Second)

	tr := &http.Transport{MaxIdleConns: *conc, MaxIdleConnsPerHost: *conc, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		mu     sync.Mutex
		lat    []time.Duration
		failed atomic.Int64
		next   atomic.Int64
		wg     sync.WaitGroup
	)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		check(err)
		check(pprof.StartCPUProfile(f))
		defer f.Close()
	}
	start := time.Now()
	for range *conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				body := fmt.Appendf(nil, `{"app":"shop","out_trade_no":"C%09d","amount":8888,"subject":"load test order","channel":"alipay.app"}`, i)
				req, err := http.NewRequest("POST", target, bytes.NewReader(body))
				check(err)
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if resp.StatusCode != http.StatusCreated {
					failed.Add(1)
					continue
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	pprof.StopCPUProfile()
	after := signCeiling(appKey, 3*time.Second)

	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(p*float64(len(lat)-1))].Round(10 * time.Microsecond)
	}
	rate := float64(len(lat)) / took.Seconds()
	ceiling := (before + after) / 2
	fmt.Printf("store=%s n=%d c=%d cores=%d\n", *storeKind, *n, *conc, runtime.GOMAXPROCS(0))
	fmt.Printf("rsa_sign_ceiling=%.0f/s (all cores; before %.0f, after %.0f)\n", ceiling, before, after)
	fmt.Printf("orders=%.0f/s (%.1f%% of the sign ceiling) p50=%v p99=%v failed=%d\n", rate, 100*rate/ceiling, pct(0.5), pct(0.99), failed.Load())
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

// signCeiling returns how many SHA256withRSA signatures of an orderString-sized message the
// machine makes per second on all cores with crypto/rsa.
func signCeiling(key *rsa.PrivateKey, d time.Duration) float64 {
	msg := bytes.Repeat([]byte("a"), 600)
	var total atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			n := int64(0)
			for time.Now().Before(deadline) {
				h := sha256.Sum256(msg)
				if _, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, h[:]); err != nil {
					panic(err)
				}
				n++
			}
			total.Add(n)
		})
	}
	wg.Wait()
	return float64(total.Load()) / d.Seconds()
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
