package sqlite_test

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/storetest"
)

var benchProfile = flag.String("benchprofile", "", "BenchmarkCommitOrderConcurrent: write a CPU profile of its timed part (not the orders' creation) to this file")

// parallel runs fn(i) for i in [0, n) from conc goroutines.
func parallel(n, conc int, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// BenchmarkCommitOrderConcurrent: 64 callers paying b.N orders through CommitOrder, as the
// notification path does (the order read, the decision, the order's compare-and-set, its
// order.paid event, the evidence with a 1.2 KiB body and five headers): the group-commit
// writer's ceiling on the notification path, without HTTP or verification
// (docs/performance.md, "Stores: the writer's ceiling").
func BenchmarkCommitOrderConcurrent(b *testing.B) {
	db := MustOpen(b, tempPath(b))
	ctx := b.Context()
	if err := parallel(b.N, 64, func(i int) error {
		_, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", fmt.Sprintf("B%08d", i), storetest.T0))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("gmt_create=2026-12-06+12%3A00%3A00&"), 35)
	hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}, "User-Agent": {"Mozilla/4.0"},
		"Content-Length": {"1225"}, "Connection": {"keep-alive"}, "Host": {"127.0.0.1:8083"}}
	if *benchProfile != "" {
		out, err := os.Create(*benchProfile)
		if err != nil {
			b.Fatal(err)
		}
		pprof.StartCPUProfile(out)
		defer func() { pprof.StopCPUProfile(); out.Close() }()
	}
	b.ResetTimer()
	err := parallel(b.N, 64, func(i int) error {
		ev := &paynotify.Evidence{ID: fmt.Sprintf("nt%08d", i), App: "app1", Provider: paynotify.ProviderAlipay,
			ReceivedAt: storetest.T0, Verdict: paynotify.VerdictAccepted, Detail: "applied", OutTradeNo: fmt.Sprintf("B%08d", i),
			Answer: "success", DurationMS: 3, Headers: hdr, Body: body}
		_, err := db.CommitOrder(ctx, "app1", fmt.Sprintf("B%08d", i), ev, func(o *paynotify.Order) (*paynotify.Change, error) {
			c := storetest.PaidChange(o, fmt.Sprintf("ev%08d", i), ev.ID, storetest.T0)
			c.Order.ProviderTradeNo = fmt.Sprintf("20261206220014%014d", i*7919%1000003)
			c.Evidence = ev
			return c, nil
		})
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

// BenchmarkClaimBeside: a sweep's claim and finish of 100 due checks of app1, with 0 and 50,000
// due orders of an app the sweep does not claim beside them (storetest.BenchClaimBeside).
func BenchmarkClaimBeside(b *testing.B) {
	for _, others := range []int{0, 50000} {
		b.Run(fmt.Sprint("others=", others), func(b *testing.B) {
			storetest.BenchClaimBeside(b, MustOpen(b, tempPath(b)), others)
		})
	}
}
