package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/storetest"
)

// silencer forwards TCP connections to upstream on loopback; silence makes every connection open
// now stop forwarding in both directions without closing (a failover whose old server vanished
// without a reset), while new connections are forwarded.
type silencer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []*atomic.Bool
}

func newSilencer(t *testing.T, upstream string) *silencer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silencer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			silent := new(atomic.Bool)
			s.mu.Lock()
			s.conns = append(s.conns, silent)
			s.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				defer dst.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 && !silent.Load() {
						dst.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
	return s
}

func (s *silencer) silence() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.conns {
		f.Store(true)
	}
}

// TestWriterSilentConnection (from a reviewer helper's audit): when the connections the writer
// holds go silent (no answer, no reset), a batch is failed after BatchTimeout instead of holding
// every write of the instance for as long as the operating system keeps the socket; while it
// waits, Ping (serve's /readyz) reports the writer stuck; then writes go through on new
// connections, without a restart.
func TestWriterSilentConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := pgtest.NewDatabase(t)
	MustOpen(t, u) // migrated
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	s := newSilencer(t, pu.Host)
	pu.Host = s.ln.Addr().String()
	db, err := postgres.Open(ctx, pu.String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetWriterTimeouts(2*time.Second, 500*time.Millisecond)
	now := time.Now()
	var wg sync.WaitGroup
	for i := range 20 { // the pool's connections, the writers' among them
		wg.Go(func() {
			if _, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", fmt.Sprintf("W%02d", i), now)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s.silence()

	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", "SILENT", now))
		done <- err
	}()
	// While the batch waits on its silent connection: not ready.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := db.Ping(pctx)
		cancel()
		if err != nil && strings.Contains(err.Error(), "a batch of the writer has been running") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ping while the writer waits on a silent connection: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a write on a silent connection reported committed")
		}
		if d := time.Since(start); d < 1500*time.Millisecond {
			t.Errorf("failed after %v, before the batch timeout", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a write on a silent connection had no answer after 30 s")
	}
	// New connections are forwarded: the next writes go through, and Ping is well again.
	deadline = time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		_, _, err := db.CreateOrder(wctx, storetest.NewOrder("app1", fmt.Sprintf("AFTER%d", i), now))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write went through after the silent connections: %v", err)
		}
	}
	if err := db.Ping(ctx); err != nil {
		t.Errorf("Ping after the writer recovered: %v", err)
	}
}

// TestSessionKeepalives (from a reviewer helper's audit): paynotify's sessions get TCP keepalives
// and a user timeout of about a minute unless the URL sets them, so that the server ends a session
// whose client vanished in the middle of a batch (holding the event log's lock, "active", out of
// idle_in_transaction_session_timeout's reach) within a minute, not after the operating system's
// two hours.
func TestSessionKeepalives(t *testing.T) {
	ctx := t.Context()
	u := pgtest.NewDatabase(t)
	db := MustOpen(t, u)
	show := func(db *postgres.DB, name string) string {
		var v string
		if err := db.Pool().QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for name, want := range map[string]string{"tcp_keepalives_idle": "30", "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3", "tcp_user_timeout": "60000"} {
		if got := show(db, name); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := pu.Query()
	q.Set("tcp_keepalives_idle", "120")
	pu.RawQuery = q.Encode()
	own, err := postgres.Open(ctx, pu.String())
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if got := show(own, "tcp_keepalives_idle"); got != "120" {
		t.Errorf("the URL's tcp_keepalives_idle = %s, want 120 kept", got)
	}
}

// TestWriterTimeoutNoRerun (from a reviewer helper's review): a batch past BatchTimeout (here
// behind the event log's lock, held by another session) answers every write of it failed at
// once; they are not run again one by one, each waiting its own BatchTimeout (eight writes were
// answered after 9 s instead of 2). Nothing of them is committed.
func TestWriterTimeoutNoRerun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	u := pgtest.NewDatabase(t) // a database of its own: the event log's lock is the database's
	db := MustOpen(t, u)
	var orders []*paynotify.Order
	for i := range 8 {
		orders = append(orders, storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", fmt.Sprintf("T%02d", i), storetest.T0)))
	}
	db.SetWriterTimeouts(time.Second, 5*time.Second)
	holder, _ := openTx(t, u)
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, postgres.EventsLockKey); err != nil {
		t.Fatal(err)
	}
	before := db.Reruns()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(orders))
	for i, o := range orders {
		wg.Go(func() {
			_, errs[i] = db.Commit(ctx, storetest.PaidChange(o, fmt.Sprintf("evt_%d", i), fmt.Sprintf("ntf_%d", i), storetest.T0.Add(time.Minute)))
		})
	}
	wg.Wait()
	took := time.Since(start)
	for i, err := range errs {
		if err == nil {
			t.Errorf("write %d committed while the event log's lock was held", i)
		}
		// The store's failure, not the caller's cancellation (which the Processor reports as
		// client_gone, keeping store_error for the store's).
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			t.Errorf("write %d: %v reads as the caller's context ending", i, err)
		}
	}
	// Two batches at most (the writer's two goroutines), a second each, and some slack.
	if took > 4*time.Second || db.Reruns() != before {
		t.Errorf("answered after %v with %d reruns; want every write failed within a few seconds, none run again", took, db.Reruns()-before)
	}
	if err := holder.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for _, o := range orders {
		got, err := db.GetOrder(ctx, o.App, o.OutTradeNo)
		if err != nil || got.Status != paynotify.StatusPending {
			t.Errorf("%s after the failed writes: %+v, %v; want pending", o.OutTradeNo, got, err)
		}
	}
}
