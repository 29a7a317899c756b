package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paynotify/paynotify"
)

// The NATS tests run against the machine's NATS server with JetStream on 127.0.0.1:4222 (.ci/run
// starts it). They fail, never skip, when it is unreachable. Each test has a stream and a subject
// prefix of its own and deletes its stream at the end.

const testNATSURL = "nats://127.0.0.1:4222"

// natsTest returns a config with a stream and prefix of the test's own, and a JetStream handle
// (its own connection) to inspect the stream; the stream is deleted at the end.
func natsTest(t *testing.T) (NATSConfig, jetstream.JetStream) {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	suffix := hex.EncodeToString(b)
	cfg := NATSConfig{
		URL:           testNATSURL,
		Stream:        "PAYNOTIFY_TEST_" + suffix,
		SubjectPrefix: "pntest." + suffix,
	}
	nc, err := nats.Connect(testNATSURL, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("NATS is not reachable on %s (start it: start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server): %v", testNATSURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, cfg.Stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("delete stream %s: %v", cfg.Stream, err)
		}
		nc.Close()
	})
	return cfg, js
}

func openNATS(t *testing.T, cfg NATSConfig) *NATS {
	t.Helper()
	n, err := OpenNATS(t.Context(), cfg)
	if err != nil {
		t.Fatalf("OpenNATS: %v", err)
	}
	t.Cleanup(n.Close)
	return n
}

func streamConfig(t *testing.T, js jetstream.JetStream, name string) (jetstream.Stream, *jetstream.StreamInfo) {
	t.Helper()
	s, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return s, info
}

func TestNATSCreatesStream(t *testing.T) {
	for _, window := range []time.Duration{0, 90 * time.Minute} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			cfg, js := natsTest(t)
			cfg.DuplicateWindow = window
			n := openNATS(t, cfg)
			want := window
			if want == 0 {
				want = 24 * time.Hour
			}
			_, info := streamConfig(t, js, cfg.Stream)
			if info.Config.Duplicates != want {
				t.Errorf("duplicate window %v, want %v", info.Config.Duplicates, want)
			}
			if got := info.Config.Subjects; len(got) != 1 || got[0] != cfg.SubjectPrefix+".>" {
				t.Errorf("subjects %v, want [%s.>]", got, cfg.SubjectPrefix)
			}
			if n.DuplicateWindow() != want {
				t.Errorf("DuplicateWindow() = %v", n.DuplicateWindow())
			}
			// Opening it again (a second process, a restart) finds it as it is.
			openNATS(t, cfg)
		})
	}
}

func TestNATSExistingStreamUntouched(t *testing.T) {
	cfg, js := natsTest(t)
	orig := jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "made by the operator",
		Subjects:    []string{cfg.SubjectPrefix + ".>", "other." + cfg.Stream},
		Duplicates:  5 * time.Minute,
		MaxMsgs:     1000,
		Storage:     jetstream.MemoryStorage,
	}
	if _, err := js.CreateStream(t.Context(), orig); err != nil {
		t.Fatal(err)
	}
	cfg.DuplicateWindow = time.Hour
	n := openNATS(t, cfg)
	_, info := streamConfig(t, js, cfg.Stream)
	c := info.Config
	if c.Duplicates != 5*time.Minute || c.Description != orig.Description || c.MaxMsgs != 1000 ||
		c.Storage != jetstream.MemoryStorage || strings.Join(c.Subjects, ",") != strings.Join(orig.Subjects, ",") {
		t.Errorf("the existing stream was changed: %+v", c)
	}
	if n.DuplicateWindow() != 5*time.Minute {
		t.Errorf("DuplicateWindow() = %v, want the stream's own 5m", n.DuplicateWindow())
	}
	if err := n.Publish(t.Context(), "shop", paynotify.EventOrderPaid, "evt_1", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
}

func TestNATSExistingStreamNotCovering(t *testing.T) {
	cfg, js := natsTest(t)
	orig := jetstream.StreamConfig{
		Name:       cfg.Stream,
		Subjects:   []string{cfg.SubjectPrefix + ".shop.>"}, // only one app
		Duplicates: 5 * time.Minute,
		Storage:    jetstream.MemoryStorage,
	}
	if _, err := js.CreateStream(t.Context(), orig); err != nil {
		t.Fatal(err)
	}
	_, err := OpenNATS(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "do not cover "+cfg.SubjectPrefix+".>") {
		t.Fatalf("OpenNATS = %v, want an error about the subjects", err)
	}
	_, info := streamConfig(t, js, cfg.Stream)
	if strings.Join(info.Config.Subjects, ",") != orig.Subjects[0] || info.Config.Duplicates != 5*time.Minute {
		t.Errorf("the existing stream was changed: %+v", info.Config)
	}
}

func TestNATSDeduplicates(t *testing.T) {
	cfg, js := natsTest(t)
	n := openNATS(t, cfg)
	payload := []byte(`{"id":"evt_dup","type":"order.paid"}`)
	for range 2 {
		if err := n.Publish(t.Context(), "shop", paynotify.EventOrderPaid, "evt_dup", payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Publish(t.Context(), "shop", paynotify.EventOrderPaid, "evt_other", payload); err != nil {
		t.Fatal(err)
	}
	s, info := streamConfig(t, js, cfg.Stream)
	if info.State.Msgs != 2 {
		t.Fatalf("%d messages in the stream, want 2 (evt_dup once, evt_other)", info.State.Msgs)
	}
	m, err := s.GetMsg(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if id := m.Header.Get(jetstream.MsgIDHeader); id != "evt_dup" || string(m.Data) != string(payload) {
		t.Errorf("message 1: Nats-Msg-Id %q, data %s", id, m.Data)
	}
}

func TestNATSSubjects(t *testing.T) {
	cfg, js := natsTest(t)
	n := openNATS(t, cfg)
	p := cfg.SubjectPrefix
	tests := []struct {
		app     string
		typ     paynotify.EventType
		subject string
	}{
		{"shop", paynotify.EventOrderPaid, p + ".shop.order.paid"},
		{"wx-2", paynotify.EventRefundFailed, p + ".wx-2.refund.failed"},
		{"", paynotify.EventEndpointDisabled, p + "._.endpoint.disabled"},
		{"_", paynotify.EventOrderPaid, p + ".%5F.order.paid"},
		{"a.b", paynotify.EventOrderPaid, p + ".a%2Eb.order.paid"},
		{"a*b>c d\te%", paynotify.EventOrderPaid, p + ".a%2Ab%3Ec%20d%09e%25.order.paid"},
		{"shop", "x y.z*", p + ".shop.x%20y.z%2A"},
	}
	for i, tt := range tests {
		got, err := n.Subject(tt.app, tt.typ)
		if err != nil || got != tt.subject {
			t.Errorf("Subject(%q, %q) = %q, %v; want %q", tt.app, tt.typ, got, err, tt.subject)
			continue
		}
		id := fmt.Sprintf("evt_subj_%d", i)
		if err := n.Publish(t.Context(), tt.app, tt.typ, id, []byte(id)); err != nil {
			t.Fatalf("Publish(%q, %q): %v", tt.app, tt.typ, err)
		}
		s, _ := streamConfig(t, js, cfg.Stream)
		m, err := s.GetLastMsgForSubject(t.Context(), tt.subject)
		if err != nil {
			t.Fatalf("last message on %s: %v", tt.subject, err)
		}
		if string(m.Data) != id || m.Header.Get(jetstream.MsgIDHeader) != id {
			t.Errorf("on %s: data %q, Nats-Msg-Id %q; want %q", tt.subject, m.Data, m.Header.Get(jetstream.MsgIDHeader), id)
		}
	}
	for _, typ := range []paynotify.EventType{"", "order..paid", ".paid", "order."} {
		if err := n.Publish(t.Context(), "shop", typ, "evt_bad", nil); err == nil {
			t.Errorf("Publish with type %q: no error", typ)
		}
	}
	if err := n.Publish(t.Context(), "shop", paynotify.EventOrderPaid, "", nil); err == nil {
		t.Error("Publish without an event id: no error")
	}
}

func TestNATSOrder(t *testing.T) {
	cfg, js := natsTest(t)
	n := openNATS(t, cfg)
	types := []paynotify.EventType{paynotify.EventOrderPaid, paynotify.EventOrderRefunded, paynotify.EventRefundFailed,
		paynotify.EventOrderRefunded, paynotify.EventOrderFinished}
	var ids []string
	for i, typ := range types {
		id := fmt.Sprintf("evt_order_%02d", i)
		ids = append(ids, id)
		if err := n.Publish(t.Context(), "shop", typ, id, []byte(`{"out_trade_no":"T1","version":`+fmt.Sprint(i+1)+`}`)); err != nil {
			t.Fatal(err)
		}
	}
	s, info := streamConfig(t, js, cfg.Stream)
	if info.State.Msgs != uint64(len(ids)) {
		t.Fatalf("%d messages, want %d", info.State.Msgs, len(ids))
	}
	for i, id := range ids {
		m, err := s.GetMsg(t.Context(), uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(jetstream.MsgIDHeader); got != id {
			t.Errorf("message %d is %s, want %s", i+1, got, id)
		}
		if want := cfg.SubjectPrefix + ".shop." + string(types[i]); m.Subject != want {
			t.Errorf("message %d on %s, want %s", i+1, m.Subject, want)
		}
	}
}

func TestNATSConfigErrors(t *testing.T) {
	ok := NATSConfig{URL: testNATSURL, Stream: "S", SubjectPrefix: "p"}
	for _, tt := range []struct {
		mod  func(*NATSConfig)
		want string
	}{
		{func(c *NATSConfig) { c.URL = "" }, "nats: url is required"},
		{func(c *NATSConfig) { c.Stream = "" }, "nats: stream is required"},
		{func(c *NATSConfig) { c.Stream = "a.b" }, `nats: stream "a.b"`},
		{func(c *NATSConfig) { c.SubjectPrefix = "" }, "nats: subject_prefix is required"},
		{func(c *NATSConfig) { c.SubjectPrefix = "a.*" }, `nats: subject_prefix "a.*"`},
		{func(c *NATSConfig) { c.SubjectPrefix = "a." }, `nats: subject_prefix "a."`},
		{func(c *NATSConfig) { c.SubjectPrefix = "a b" }, `nats: subject_prefix "a b"`},
		{func(c *NATSConfig) { c.DuplicateWindow = -time.Second }, "duplicate_window"},
	} {
		cfg := ok
		tt.mod(&cfg)
		if _, err := OpenNATS(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("OpenNATS(%+v) = %v, want %q", cfg, err, tt.want)
		}
	}
}

func TestNATSFilterCovers(t *testing.T) {
	for _, tt := range []struct {
		filter, want string
		ok           bool
	}{
		{"p.>", "p.>", true},
		{">", "p.>", true},
		{"*.>", "p.>", true},
		{"p.*", "p.>", false},
		{"p.a.>", "p.>", false},
		{"q.>", "p.>", false},
		{"a.>", "a.b.>", true},
		{"a.*.>", "a.b.>", true},
		{"a.b", "a.b.>", false},
	} {
		if got := filterCovers(tt.filter, tt.want); got != tt.ok {
			t.Errorf("filterCovers(%q, %q) = %v", tt.filter, tt.want, got)
		}
	}
}

// TestNATSUnreachable: a NATS server that does not answer at start is not an error (the sink is
// optional: serve refused to start, and the payment server was down with NATS; a reviewer
// helper's finding). Publications fail at once until it answers, without repeating the URL's
// credentials; once a server listens there, the connection is made in the background, the
// stream is created at the next publication, and the event is stored. The server is a
// nats-server of the test's own on a loopback port (the machine's binary, /usr/sbin/nats-server).
func TestNATSUnreachable(t *testing.T) {
	port := freePort(t)
	cfg := NATSConfig{URL: fmt.Sprintf("nats://user:s3cret@127.0.0.1:%d", port), Stream: "PAYNOTIFY_LATE", SubjectPrefix: "late"}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	n, err := OpenNATS(ctx, cfg)
	if err != nil {
		t.Fatalf("OpenNATS to a closed port: %v, want no error", err)
	}
	defer n.Close()
	if n.Ready() {
		t.Fatal("Ready before the server answered")
	}
	if err := n.StartError(); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("StartError = %v, want why it is not connected, without the password", err)
	}
	start := time.Now()
	err = n.Publish(ctx, "shop", "order.paid", "evt_1", []byte(`{}`))
	if err == nil || strings.Contains(err.Error(), "s3cret") || time.Since(start) > time.Second {
		t.Fatalf("Publish without a server: %v after %s, want an error at once without the password", err, time.Since(start))
	}

	startNATSServer(t, port, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", t.TempDir(), "--user", "user", "--pass", "s3cret")
	deadline := time.Now().Add(20 * time.Second)
	for {
		pctx, pcancel := context.WithTimeout(t.Context(), 2*time.Second)
		err = n.Publish(pctx, "shop", "order.paid", "evt_1", []byte(`{"id":"evt_1"}`))
		pcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Publish after the server started: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !n.Ready() || n.DuplicateWindow() != DefaultDuplicateWindow {
		t.Errorf("Ready %v, window %s after the stream was created", n.Ready(), n.DuplicateWindow())
	}
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), nats.UserInfo("user", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, info := streamConfig(t, js, "PAYNOTIFY_LATE")
	if info.State.Msgs != 1 || len(info.Config.Subjects) != 1 || info.Config.Subjects[0] != "late.>" {
		t.Errorf("stream: %d messages, subjects %v; want 1 on late.>", info.State.Msgs, info.Config.Subjects)
	}
}
