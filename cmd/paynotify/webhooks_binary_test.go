package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/storetest"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// hookReceiver counts verified deliveries by webhook-id (the Standard Webhooks reference
// library verifies each), optionally slowly.
type hookReceiver struct {
	srv      *httptest.Server
	secret   atomic.Value
	delay    atomic.Int64
	inflight atomic.Int32
	// gate, while set, holds every request until it is closed.
	gate  atomic.Pointer[chan struct{}]
	mu    sync.Mutex
	count map[string]int
	bad   int
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{count: map[string]int{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.inflight.Add(1)
		defer h.inflight.Add(-1)
		body, _ := io.ReadAll(r.Body)
		if g := h.gate.Load(); g != nil {
			select {
			case <-*g:
			case <-r.Context().Done(): // the sender died: nothing was answered
				return
			}
		}
		time.Sleep(time.Duration(h.delay.Load()))
		wh, err := standardwebhooks.NewWebhook(h.secret.Load().(string))
		if err == nil {
			err = wh.Verify(body, r.Header)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if err != nil {
			h.bad++
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.count[r.Header.Get("webhook-id")]++
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) counts() (map[string]int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := make(map[string]int, len(h.count))
	for k, v := range h.count {
		c[k] = v
	}
	return c, h.bad
}

// TestBinary_WebhooksTwoInstances: two servers on one PostgreSQL deliver every event once in
// normal operation; one killed with -9 during delivery loses none (its claims are delivered by
// the other after the lease, with the same webhook-id).
func TestBinary_WebhooksTwoInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildBinary(t)
	dsn := pgtest.NewDatabase(t)
	sb := newTestSandbox(t, 1)
	addrA, addrB := freeAddr(t), freeAddr(t)
	top := "webhooks: {allow_http: true, allow_private_networks: true}"
	cfgA := writeSandboxConfig(t, t.TempDir(), addrA, dsn, sb, "", top)
	cfgB := writeSandboxConfig(t, t.TempDir(), addrB, dsn, sb, "", top)
	startBinary(t, bin, cfgA, addrA)
	b := startBinary(t, bin, cfgB, addrB)
	rc := newHookReceiver(t)

	code, ep := binAPI(t, "POST", "http://"+addrA+"/v1/webhook-endpoints", map[string]any{"url": rc.srv.URL + "/hook"})
	if code != http.StatusCreated {
		t.Fatalf("create endpoint: %d %v", code, ep)
	}
	rc.secret.Store(ep["secret"].(string))

	ctx := context.Background()
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	commit := func(prefix string, n int) []string {
		var ids []string
		for i := range n {
			o := storetest.MustCreateOrder(t, ctx, st, storetest.NewOrder("alipay-demo", fmt.Sprintf("%s%04d", prefix, i), time.Now()))
			c := storetest.PaidChange(o, paynotify.NewID("evt"), paynotify.NewID("ntf"), time.Now())
			storetest.MustCommit(t, ctx, st, c)
			ids = append(ids, c.Events[0].ID)
		}
		return ids
	}
	waitAll := func(ids []string, d time.Duration) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			c, bad := rc.counts()
			missing := 0
			for _, id := range ids {
				if c[id] == 0 {
					missing++
				}
			}
			if bad > 0 {
				t.Fatalf("%d deliveries failed verification", bad)
			}
			if missing == 0 {
				return time.Since(start)
			}
			if time.Since(start) > d {
				t.Fatalf("%d of %d events not delivered within %s", missing, len(ids), d)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Normal operation: each event once.
	first := commit("WH1_", 150)
	waitAll(first, 30*time.Second)
	time.Sleep(2 * time.Second) // room for a duplicate to show
	c, _ := rc.counts()
	for _, id := range first {
		if c[id] != 1 {
			t.Errorf("event %s delivered %d times by two servers, want once", id, c[id])
		}
	}

	// kill -9 of B during delivery: the receiver holds every request, so both servers have
	// deliveries in flight (8 each) and more claimed in their queues when B dies.
	gate := make(chan struct{})
	rc.gate.Store(&gate)
	second := commit("WH2_", 150)
	deadline := time.Now().Add(20 * time.Second)
	for rc.inflight.Load() < 16 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d deliveries in flight", rc.inflight.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// And B holds claims beyond those in flight: a process claims at most 8 in flight and 32
	// queued (webhook.Dispatcher's lane), so with 56 claimed between them B holds at least 16,
	// 8 of them queued. (Killing B as soon as 16 were in flight, a loaded machine once found B
	// with nothing queued, and nothing then waited for its lease.)
	held := countClaimedDeliveries(t, dsn)
	for held < 56 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d deliveries claimed, want 56", held)
		}
		time.Sleep(50 * time.Millisecond)
		held = countClaimedDeliveries(t, dsn)
	}
	if err := b.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b.Wait()
	killed := time.Now()
	rc.gate.Store(nil)
	close(gate)
	waitAll(second, 90*time.Second)
	took := time.Since(killed)
	t.Logf("%d deliveries claimed at the kill", held)
	c, _ = rc.counts()
	dups := 0
	for _, id := range second {
		dups += c[id] - 1
	}
	t.Logf("after kill -9: all %d events delivered %s later; %d delivered twice (same webhook-id)", len(second), took.Round(time.Second), dups)
	if took < 50*time.Second {
		t.Errorf("everything delivered %s after the kill: B's claims were not held until their lease ended?", took)
	}
	// Every delivery's attempt is recorded (the last ones a moment after they were answered).
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, out := binAPI(t, "GET", "http://"+addrA+"/v1/webhook-endpoints/"+ep["id"].(string)+"/attempts?limit=1000", nil)
		list, _ := out["attempts"].([]any)
		if code == 200 && len(list) >= len(first)+len(second) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("attempts listing: %d, %d attempts for %d events", code, len(list), len(first)+len(second))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// countClaimedDeliveries counts the deliveries held by a claim right now.
func countClaimedDeliveries(t *testing.T, dsn string) int {
	t.Helper()
	out, err := exec.Command("psql", "-XAtq", dsn, "-c", "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending' AND claim_token <> ''").CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v %s", err, out)
	}
	var n int
	fmt.Sscan(strings.TrimSpace(string(out)), &n)
	return n
}
