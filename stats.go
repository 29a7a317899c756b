package paynotify

import (
	"context"
	"time"
)

// StatsStore counts what the metrics show as gauges. Each call reads an index over a whole table,
// so it is for a refresher that runs at most once a minute, never for a request
// (docs/operations.md, "Metrics").
type StatsStore interface {
	// CountStatuses returns how many orders are in each status (statuses without orders are
	// absent), how many webhook deliveries are pending and how many refunds need attention.
	CountStatuses(ctx context.Context) (*StatusCounts, error)
}

// StatusCounts is what StatsStore.CountStatuses counted.
type StatusCounts struct {
	Orders            map[OrderStatus]int64
	PendingDeliveries int64
	// RefundsNeedingAttention: refunds with NeedsAttention, however old (the console lists them).
	RefundsNeedingAttention int64
}

// Metrics receives the Processor's measurements; Processor.Metrics, nil for none. The metrics
// package implements it for Prometheus.
type Metrics interface {
	// Callback is called once per callback that Process handled, when its result is decided and
	// its write is over: the app, the verdict and reason, and how long Process took.
	Callback(app *App, verdict Verdict, reason string, took time.Duration)
	// Commit is called after each Store.Commit the Processor made, with how long it took
	// (waiting for its batch included) and whether it failed (a version conflict included).
	Commit(took time.Duration, err error)
}
