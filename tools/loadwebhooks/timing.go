package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/paynotify/paynotify"
)

// timedStore wraps the store under test to time the dispatcher's calls (-timings): the CPU
// profile shows little of a run that waits on the disk and on the one SQLite connection, this
// shows the wall time of each call.
type timedStore struct {
	paynotify.Store
	mu    sync.Mutex
	calls map[string]*callStats
}

type callStats struct {
	n     int
	empty int // calls that returned no rows
	rows  int
	total time.Duration
	max   time.Duration
}

func (s *timedStore) record(name string, start time.Time, rows int) {
	d := time.Since(start)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = map[string]*callStats{}
	}
	c := s.calls[name]
	if c == nil {
		c = &callStats{}
		s.calls[name] = c
	}
	c.n++
	if rows == 0 {
		c.empty++
	}
	c.rows += rows
	c.total += d
	c.max = max(c.max, d)
}

// reset forgets what was recorded (the setup's calls).
func (s *timedStore) reset() {
	s.mu.Lock()
	s.calls = nil
	s.mu.Unlock()
}

func (s *timedStore) FanOutWebhooks(ctx context.Context, now time.Time, limit int) (int, error) {
	t := time.Now()
	n, err := s.Store.FanOutWebhooks(ctx, now, limit)
	s.record("FanOutWebhooks", t, n)
	return n, err
}

func (s *timedStore) ListWebhookEndpoints(ctx context.Context, kind string) ([]*paynotify.WebhookEndpoint, error) {
	t := time.Now()
	es, err := s.Store.ListWebhookEndpoints(ctx, kind)
	s.record("ListWebhookEndpoints", t, len(es))
	return es, err
}

func (s *timedStore) ClaimWebhookDeliveries(ctx context.Context, endpoint string, now time.Time, lease time.Duration, limit int) ([]*paynotify.WebhookDelivery, error) {
	t := time.Now()
	ds, err := s.Store.ClaimWebhookDeliveries(ctx, endpoint, now, lease, limit)
	s.record("ClaimWebhookDeliveries", t, len(ds))
	return ds, err
}

func (s *timedStore) FinishWebhookDeliveries(ctx context.Context, results []paynotify.WebhookResult) error {
	t := time.Now()
	err := s.Store.FinishWebhookDeliveries(ctx, results)
	s.record("FinishWebhookDeliveries", t, len(results))
	return err
}

func (s *timedStore) Commit(ctx context.Context, c *paynotify.Change) (bool, error) {
	t := time.Now()
	a, err := s.Store.Commit(ctx, c)
	s.record("Commit", t, len(c.Events))
	return a, err
}

// print writes one line per call: how many, how many returned no rows, the rows (deliveries added, endpoints, claimed,
// results, events), the wall time in all and per call, and the share of the run's wall time.
func (s *timedStore) print(w io.Writer, wall time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.calls))
	for k := range s.calls {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return s.calls[names[i]].total > s.calls[names[j]].total })
	fmt.Fprintf(w, "store calls during the delivery (wall time, the wait for a connection included; SQLite has one):\n")
	for _, k := range names {
		c := s.calls[k]
		fmt.Fprintf(w, "  %-24s calls=%-6d empty=%-6d rows=%-6d rows/call=%-6.1f total=%-8v (%3.0f%% of the run) mean=%-8v max=%v\n",
			k, c.n, c.empty, c.rows, float64(c.rows)/float64(c.n), c.total.Round(time.Millisecond), 100*c.total.Seconds()/wall.Seconds(),
			(c.total / time.Duration(c.n)).Round(10*time.Microsecond), c.max.Round(10*time.Microsecond))
	}
}
