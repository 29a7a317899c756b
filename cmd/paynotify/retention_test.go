package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/storetest"
)

// TestServe_Retention: serve's jobs prune what the config's retention block says, at start, and
// log the counts (and only the counts).
func TestServe_Retention(t *testing.T) {
	c, err := ParseConfig([]byte(validConfig+"retention:\n  evidence: 2d\n  webhook_attempts: off\n"),
		env(map[string]string{"TOKEN": "0123456789abcdef0123"}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	st, err := openStore(ctx, "sqlite:"+filepath.Join(t.TempDir(), "paynotify.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	o := storetest.NewOrder("shop", "T1", time.Now())
	now := time.Now()
	for id, at := range map[string]time.Time{"ntf-old": now.Add(-3 * day), "ntf-new": now.Add(-day)} {
		if err := st.InsertEvidence(ctx, storetest.NewEvidence(id, o, at)); err != nil {
			t.Fatal(err)
		}
	}
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	svc := &paynotify.Service{Store: st, Processor: &paynotify.Processor{Store: st, Logger: logger}, Logger: logger}
	r, err := newJobs(st, svc, c.Jobs, c.Retention, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop(context.Background())
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "retention prune") {
		if time.Now().After(deadline) {
			t.Fatalf("no prune logged:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if want := `msg="retention prune" evidence=1 rejected_evidence=0 webhook_attempts=0 webhook_deliveries=0`; !strings.Contains(logs.String(), want) {
		t.Fatalf("log:\n%s\nwant %q", logs.String(), want)
	}
	if _, err := st.GetEvidence(ctx, "ntf-old"); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
		t.Fatalf("ntf-old (3 days old, retention 2d): %v, want it deleted", err)
	}
	if _, err := st.GetEvidence(ctx, "ntf-new"); err != nil {
		t.Fatalf("ntf-new (1 day old): %v", err)
	}
}
