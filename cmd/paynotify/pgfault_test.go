package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/pgtest"
)

// TestBinary_PostgresFaults: the real binary on a PostgreSQL server of the test's own, under a
// steady stream of first-delivery notifications, while the server's sessions are killed
// (pg_terminate_backend) three times and then the server is stopped for two seconds and started
// again. Without restarting paynotify:
//   - no request that began after PostgreSQL was down and ended before it was back is answered
//     "success", and /readyz says 503 meanwhile;
//   - notifications are answered "success" again soon after PostgreSQL is back;
//   - every notification answered "success" is a paid order with one order.paid event in the
//     database, and no order is paid that was never notified;
//   - the provider's retries of all of them (to the same process) are all "success" and leave
//     every order paid once.
func TestBinary_PostgresFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary and a PostgreSQL server")
	}
	const (
		n         = 3000
		conns     = 16
		downFor   = 2 * time.Second
		terminate = 3
	)
	bin := buildBinary(t)
	cluster := pgtest.NewCluster(t)
	dsn := cluster.URL()
	key := lkAlipayKey(t)
	bodies := make([][]byte, n)
	lkParallel(n, runtime.GOMAXPROCS(0), func(i int) { bodies[i] = lkSignAlipay(t, key, lkNotification(i)) })

	ctx := context.Background()
	lkSeed(t, dsn, n, nil)

	dir := t.TempDir()
	addr := freeAddr(t)
	config := writeServerConfig(t, dir, addr, dsn)
	cmd := startBinary(t, bin, config, addr)
	base := "http://" + addr
	target := base + "/notify/alipay/shop"

	type answer struct {
		began, ended time.Time
		ok           bool
		text         string
	}
	var (
		answers = make([]answer, n)
		acked   atomic.Int64
		next    atomic.Int64
		wg      sync.WaitGroup
	)
	tr := &http.Transport{MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				a := answer{began: time.Now()}
				code, text, err := lkPost(hc, target, bodies[i])
				a.ended = time.Now()
				switch {
				case err != nil:
					a.text = "error: " + err.Error()
				case code == http.StatusOK && text == "success":
					a.ok = true
					acked.Add(1)
				default:
					a.text = fmt.Sprintf("%d %q", code, text)
				}
				answers[i] = a
				if !a.ok {
					time.Sleep(50 * time.Millisecond) // as a provider backs off: do not burn through the rest
				}
			}
		}()
	}
	waitAcked := func(k int64, what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for acked.Load() < k {
			if time.Now().After(deadline) {
				t.Fatalf("%s: only %d notifications answered \"success\" within 60s", what, acked.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
	ready := func() int {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	// Sessions killed under load.
	for k := 1; k <= terminate; k++ {
		waitAcked(int64(300*k), fmt.Sprintf("before termination %d", k))
		killed := cluster.TerminateSessions(ctx)
		t.Logf("terminated %d sessions with %d notifications acknowledged", killed, acked.Load())
		if killed == 0 {
			t.Errorf("termination %d: no session of paynotify's to terminate", k)
		}
	}

	// Stopped, then started again.
	waitAcked(1300, "before the stop")
	cluster.Stop("fast")
	down := time.Now()
	ackedDown := acked.Load()
	time.Sleep(downFor / 2)
	if code := ready(); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz with PostgreSQL down: %d, want 503", code)
	}
	time.Sleep(downFor / 2)
	up := time.Now()
	cluster.Start()
	t.Logf("PostgreSQL down %v with %d acknowledged before", up.Sub(down).Round(time.Millisecond), ackedDown)
	waitAcked(ackedDown+200, "after the restart")
	wg.Wait()
	if code := ready(); code != http.StatusOK {
		t.Errorf("GET /readyz after PostgreSQL came back: %d, want 200", code)
	}

	var duringDown, failed int
	var firstOK time.Time
	for i, a := range answers {
		if a.began.After(down) && a.ended.Before(up) {
			duringDown++
			if a.ok {
				t.Errorf("%s answered \"success\" while PostgreSQL was down (%v to %v)", lkTradeNo(i), a.began, a.ended)
			}
		}
		if !a.ok {
			failed++
		}
		if a.ok && a.began.After(up) && (firstOK.IsZero() || a.ended.Before(firstOK)) {
			firstOK = a.ended
		}
	}
	if duringDown == 0 {
		t.Errorf("no request was answered while PostgreSQL was down: the test did not test it")
	}
	if firstOK.IsZero() {
		t.Fatalf("nothing answered \"success\" after PostgreSQL came back")
	}
	t.Logf("%d answered while down (all failures), %d not acknowledged in all, first success %v after the start",
		duringDown, failed, firstOK.Sub(up).Round(time.Millisecond))
	if failed == 0 {
		t.Errorf("every notification acknowledged: the faults did not happen under load")
	}

	// What was acknowledged is committed.
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil { // frozen, not stopped: the same process goes on below
		t.Fatal(err)
	}
	lkCheckOrders(t, dsn, n, func(i int) string {
		if answers[i].ok {
			return "paid"
		}
		return "either"
	}, "after the faults")
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// The provider retries everything, to the same process.
	bad := 0
	var badMu sync.Mutex
	lkParallel(n, conns, func(i int) {
		code, text, err := lkPost(hc, target, bodies[i])
		if err != nil || code != http.StatusOK || text != "success" {
			badMu.Lock()
			if bad++; bad <= 10 {
				t.Errorf("retry of %s: %d %q %v", lkTradeNo(i), code, text, err)
			}
			badMu.Unlock()
		}
	})
	if bad > 0 {
		t.Fatalf("%d of %d retries not answered \"success\"", bad, n)
	}
	lkCheckOrders(t, dsn, n, func(int) string { return "paid" }, "after the retries")
}
