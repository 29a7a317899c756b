package webhook_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/teststore"
	"github.com/paynotify/paynotify/storetest"
	"github.com/paynotify/paynotify/webhook"
)

// TestDispatcher_NATS: every event lands in the stream once (by Nats-Msg-Id), in order per
// order, through the same dispatcher as the HTTP endpoints; a resend is de-duplicated by
// JetStream.
func TestDispatcher_NATS(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		b := make([]byte, 6)
		rand.Read(b)
		cfg := webhook.NATSConfig{URL: "nats://127.0.0.1:4222", Stream: "PAYNOTIFY_DISPATCH_" + hex.EncodeToString(b),
			SubjectPrefix: "pndispatch." + hex.EncodeToString(b)}
		nc, err := nats.Connect(cfg.URL, nats.Timeout(5*time.Second))
		if err != nil {
			t.Fatalf("NATS is not reachable on %s (.ci/run starts it): %v", cfg.URL, err)
		}
		t.Cleanup(nc.Close) // after the stream's deletion below (cleanups run last first)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := js.DeleteStream(context.Background(), cfg.Stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				t.Errorf("delete stream: %v", err)
			}
		})
		sink, err := webhook.OpenNATS(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer sink.Close()
		e := newEnv(t, st)
		if err := webhook.EnsureNATSEndpoint(e.ctx, st, cfg.Stream); err != nil {
			t.Fatal(err)
		}
		if err := webhook.EnsureNATSEndpoint(e.ctx, st, cfg.Stream); err != nil { // a second process
			t.Fatal(err)
		}
		if list, _ := e.svc.ListWebhookEndpoints(e.ctx); len(list) != 0 {
			t.Errorf("the API lists the NATS sink: %v", list)
		}
		e.start(webhook.Config{}, sink)
		var want []string
		for i := range 30 {
			want = append(want, e.order("shop", fmt.Sprintf("nats_%02d", i), true)...)
		}
		stream, err := js.Stream(t.Context(), cfg.Stream)
		if err != nil {
			t.Fatal(err)
		}
		count := func() uint64 {
			info, err := stream.Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			return info.State.Msgs
		}
		waitFor(t, 20*time.Second, "every event in the stream", func() bool { return count() >= uint64(len(want)) })
		// A resend of every event publishes again; JetStream drops the duplicates by id.
		n, err := e.svc.ResendEvent(e.ctx, want[0], "")
		if err != nil || n != 1 {
			t.Fatalf("resend: %d, %v; want 1 delivery (the NATS sink)", n, err)
		}
		waitFor(t, 10*time.Second, "the resend published", func() bool {
			ds, _ := st.ListWebhookDeliveries(e.ctx, want[0])
			return len(ds) == 1 && ds[0].Status == paynotify.DeliveryDelivered && ds[0].Attempts == 1 && ds[0].UpdatedAt.After(ds[0].CreatedAt)
		})
		time.Sleep(200 * time.Millisecond)
		if c := count(); c != uint64(len(want)) {
			t.Fatalf("%d messages for %d events, want each once", c, len(want))
		}
		seen := map[string]bool{}
		version := map[string]int64{}
		for seq := uint64(1); seq <= uint64(len(want)); seq++ {
			m, err := stream.GetMsg(t.Context(), seq)
			if err != nil {
				t.Fatal(err)
			}
			id := m.Header.Get(jetstream.MsgIDHeader)
			var ev struct {
				ID      string `json:"id"`
				Type    string `json:"type"`
				Version int64  `json:"version"`
				Data    struct {
					App        string `json:"app"`
					OutTradeNo string `json:"out_trade_no"`
				} `json:"data"`
			}
			if err := json.Unmarshal(m.Data, &ev); err != nil || ev.ID != id {
				t.Fatalf("message %d: id header %s, body %s (%v)", seq, id, m.Data, err)
			}
			if seen[id] {
				t.Errorf("event %s in the stream twice", id)
			}
			seen[id] = true
			if wantSubject := cfg.SubjectPrefix + "." + ev.Data.App + "." + ev.Type; m.Subject != wantSubject {
				t.Errorf("message %d on %s, want %s", seq, m.Subject, wantSubject)
			}
			k := ev.Data.OutTradeNo
			if ev.Version <= version[k] {
				t.Errorf("%s: version %d after %d", k, ev.Version, version[k])
			}
			version[k] = ev.Version
		}
		for _, id := range want {
			if !seen[id] {
				t.Errorf("event %s not in the stream", id)
			}
		}
	})
}

// TestDispatcher_GuardRefusesLoopback: an endpoint whose name resolves to loopback (the
// rebinding case: accepted when created, loopback when connecting) is refused at connect time
// without allow_private_networks; the receiver is never reached and the attempt says why.
func TestDispatcher_GuardRefusesLoopback(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		rc := newReceiver(t)
		u := strings.Replace(rc.url(), "127.0.0.1", "localhost", 1)
		ep, err := e.svc.CreateWebhookEndpoint(e.ctx, &paynotify.WebhookEndpointRequest{URL: &u})
		if err != nil {
			t.Fatal(err)
		}
		d := &webhook.Dispatcher{Store: st, Config: webhook.Config{Poll: 50 * time.Millisecond, Schedule: fast, AllowHTTP: true},
			Client: webhook.NewClient(false, 5*time.Second)}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); d.Run(ctx) }()
		defer func() { cancel(); <-done }()
		ids := e.order("shop", "guarded", false)
		var attempts []*paynotify.WebhookAttempt
		waitFor(t, 10*time.Second, "two refused attempts", func() bool {
			attempts, _ = st.ListWebhookAttempts(e.ctx, paynotify.WebhookAttemptFilter{EndpointID: ep.ID, EventID: ids[0]})
			return len(attempts) >= 2
		})
		if n := len(rc.all()); n != 0 {
			t.Errorf("the receiver on loopback got %d requests", n)
		}
		for _, a := range attempts {
			if a.Status != 0 || !strings.Contains(a.Error, "loopback") || !strings.Contains(a.Error, "allow_private_networks") {
				t.Errorf("attempt %d %q, want no answer and the guard's refusal", a.Status, a.Error)
			}
		}
	})
}

// TestDispatcher_HTTPRefusedWhenNotAllowed: allow_http is checked at each attempt, so an http://
// endpoint saved while it was on is not delivered to once it is off. Without the nats block the
// sink's endpoint is disabled.
func TestDispatcher_HTTPRefusedWhenNotAllowed(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		rc := newReceiver(t)
		ep := e.endpoint(rc, nil, nil)
		d := &webhook.Dispatcher{Store: st, Config: webhook.Config{Poll: 50 * time.Millisecond, Schedule: fast},
			Client: webhook.NewClient(true, 5*time.Second)}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); d.Run(ctx) }()
		defer func() { cancel(); <-done }()
		ids := e.order("shop", "http_off", false)
		var attempts []*paynotify.WebhookAttempt
		waitFor(t, 10*time.Second, "a refused attempt", func() bool {
			attempts, _ = st.ListWebhookAttempts(e.ctx, paynotify.WebhookAttemptFilter{EndpointID: ep.ID, EventID: ids[0]})
			return len(attempts) >= 1
		})
		if n := len(rc.all()); n != 0 || !strings.Contains(attempts[0].Error, "allow_http") {
			t.Errorf("%d requests reached the receiver; attempt error %q", n, attempts[0].Error)
		}

		if err := webhook.EnsureNATSEndpoint(e.ctx, st, "S p"); err != nil {
			t.Fatal(err)
		}
		if err := webhook.DisableNATSEndpoint(e.ctx, st); err != nil {
			t.Fatal(err)
		}
		if got, err := st.GetWebhookEndpoint(e.ctx, paynotify.EndpointNATSID); err != nil || got.Status != paynotify.EndpointDisabled {
			t.Errorf("NATS endpoint after DisableNATSEndpoint: %+v, %v", got, err)
		}
		if err := webhook.EnsureNATSEndpoint(e.ctx, st, "S p"); err != nil {
			t.Fatal(err)
		}
		if got, _ := st.GetWebhookEndpoint(e.ctx, paynotify.EndpointNATSID); got.Status != paynotify.EndpointEnabled {
			t.Errorf("NATS endpoint not enabled again by EnsureNATSEndpoint")
		}
	})
}

// failingPublisher is a NATS sink that never takes a message.
type failingPublisher struct{}

func (failingPublisher) Publish(context.Context, string, paynotify.EventType, string, []byte) error {
	return errors.New("nats: no responders available for request")
}

// TestDispatcher_NATSDisabledNamesItsStream: the NATS sink, failing for five days, is disabled
// like an endpoint, and its endpoint.disabled names its stream and subject prefix (its "URL",
// which holds no secret), not the empty string that redacting it as a URL gives.
func TestDispatcher_NATSDisabledNamesItsStream(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		var offset atomic.Int64
		e.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		if err := webhook.EnsureNATSEndpoint(e.ctx, st, "PAYNOTIFY paynotify"); err != nil {
			t.Fatal(err)
		}
		e.start(webhook.Config{Schedule: []time.Duration{}}, failingPublisher{})
		e.order("shop", "nats_fail_1", false)
		waitFor(t, 10*time.Second, "a failed publication", func() bool {
			got, _ := st.GetWebhookEndpoint(e.ctx, paynotify.EndpointNATSID)
			return got.FailingSince != nil
		})
		offset.Store(int64(webhook.DisableAfter + time.Minute))
		e.order("shop", "nats_fail_2", false)
		waitFor(t, 10*time.Second, "the sink disabled", func() bool {
			got, _ := st.GetWebhookEndpoint(e.ctx, paynotify.EndpointNATSID)
			return got.Status == paynotify.EndpointDisabled
		})
		var found bool
		for _, ev := range storetest.MustListEvents(t, e.ctx, st, paynotify.EventFilter{Limit: 100}) {
			if ev.Type != paynotify.EventEndpointDisabled {
				continue
			}
			var d paynotify.EndpointDisabledData
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				t.Fatal(err)
			}
			found = true
			if d.EndpointID != paynotify.EndpointNATSID || d.URL != "PAYNOTIFY paynotify" {
				t.Errorf("endpoint.disabled data %+v, want the sink's id and its stream and prefix", d)
			}
		}
		if !found {
			t.Error("no endpoint.disabled")
		}
	})
}

// panickyPublisher panics at its first publication (a sink's bug), then takes every message.
type panickyPublisher struct {
	calls atomic.Int32
	ids   chan string
}

func (p *panickyPublisher) Publish(_ context.Context, _ string, _ paynotify.EventType, id string, _ []byte) error {
	if p.calls.Add(1) == 1 {
		panic("a sink's bug")
	}
	p.ids <- id
	return nil
}

// TestDispatcher_PanicInAttempt: an attempt that panics is logged and kept as a failed attempt,
// retried on the schedule as any; the process goes on and the retry delivers (a reviewer helper's
// finding: the panic on a worker's goroutine ended the whole process, notification path
// included).
func TestDispatcher_PanicInAttempt(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		if err := webhook.EnsureNATSEndpoint(e.ctx, st, "PAYNOTIFY paynotify"); err != nil {
			t.Fatal(err)
		}
		p := &panickyPublisher{ids: make(chan string, 10)}
		e.start(webhook.Config{}, p) // the fast schedule: the retry follows at once
		want := e.order("shop", "nats_panic_1", false)
		select {
		case id := <-p.ids:
			if id != want[0] {
				t.Fatalf("published %s, want %s", id, want[0])
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the delivery was not made after the panic")
		}
		// The attempt that panicked is kept, failed, as any.
		list, err := st.ListWebhookAttempts(e.ctx, paynotify.WebhookAttemptFilter{EndpointID: paynotify.EndpointNATSID, EventID: want[0], Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var failed int
		for _, a := range list {
			if strings.Contains(a.Error, "a bug") {
				failed++
			}
		}
		if failed != 1 {
			t.Fatalf("attempts %+v: want the one that panicked kept", list)
		}
	})
}
