// Package metrics shows paynotify's measurements in the Prometheus text format
// (docs/operations.md, "Metrics"): notifications by verdict, processing and commit latencies,
// orders by status, reconciliation checks, webhook attempts and queues, and Go's runtime.
//
// Prometheus implements paynotify.Metrics (for the Processor) and webhook.Metrics (for the
// dispatcher), and its Sweep method is the jobs runner's OnSweep. Every label takes its values from
// a bounded set: the configured apps, the verdicts and reasons of the domain, statuses; never an
// order number, an id or a URL. Gauges that need a count over a table are refreshed by
// RefreshCounts, at most once a minute (RunCounts): a scrape never runs a query.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// latencyBuckets (seconds) resolve the notification path, a few milliseconds when all is well,
// up to the seconds of a stalled database.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// statuses are the order statuses, each shown even when no order has it.
var statuses = []paynotify.OrderStatus{paynotify.StatusPending, paynotify.StatusPaid, paynotify.StatusFinished,
	paynotify.StatusClosed, paynotify.StatusRefunded}

// Prometheus holds paynotify's metrics in a registry of their own, with Go's runtime and process
// collectors.
type Prometheus struct {
	reg *prometheus.Registry

	notifications *prometheus.CounterVec
	processing    *prometheus.HistogramVec
	commits       *prometheus.HistogramVec

	orders            *prometheus.GaugeVec
	pendingDeliveries prometheus.Gauge
	attentionRefunds  prometheus.Gauge
	countsAt          prometheus.Gauge
	countErrors       prometheus.Counter

	sweeps *prometheus.CounterVec
	checks *prometheus.CounterVec

	attempts        *prometheus.CounterVec
	attemptDuration *prometheus.HistogramVec
	disabled        *prometheus.CounterVec
}

// New returns the metrics, registered.
func New() *Prometheus {
	m := &Prometheus{reg: prometheus.NewRegistry()}
	m.notifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paynotify_notifications_total",
		Help: "Provider callbacks handled, by provider, app, verdict and reason.",
	}, []string{"provider", "app", "verdict", "reason"})
	m.processing = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "paynotify_notification_duration_seconds",
		Help:    "Time to handle a provider callback: verify, load, decide, commit (the answer follows).",
		Buckets: latencyBuckets,
	}, []string{"provider"})
	m.commits = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "paynotify_commit_duration_seconds",
		Help:    "Time of the store commits of order changes, waiting for their batch included, by result (ok, conflict, repeat_missed, error).",
		Buckets: latencyBuckets,
	}, []string{"result"})
	m.orders = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "paynotify_orders",
		Help: "Orders by status, as counted at paynotify_counts_refreshed_timestamp_seconds.",
	}, []string{"status"})
	m.pendingDeliveries = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "paynotify_webhook_deliveries_pending",
		Help: "Webhook deliveries not yet delivered nor given up, across all instances, as counted at paynotify_counts_refreshed_timestamp_seconds.",
	})
	m.attentionRefunds = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "paynotify_refunds_needing_attention",
		Help: "Refunds that need someone (pending past their checks, ABNORMAL at the provider, an inferred amount unconfirmed), as counted at paynotify_counts_refreshed_timestamp_seconds.",
	})
	m.countsAt = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "paynotify_counts_refreshed_timestamp_seconds",
		Help: "When paynotify_orders, paynotify_webhook_deliveries_pending and paynotify_refunds_needing_attention were last counted (Unix time); 0 before the first count.",
	})
	m.countErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paynotify_counts_refresh_errors_total",
		Help: "Counts of orders, deliveries and refunds needing attention that failed (the gauges keep their last values).",
	})
	m.sweeps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paynotify_reconcile_sweeps_total",
		Help: "Reconciliation sweeps run by this process, by result (ok, error).",
	}, []string{"result"})
	m.checks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paynotify_reconcile_checks_total",
		Help: "Reconciliation checks by result: checked (the provider answered), released (given back unchecked), error.",
	}, []string{"result"})
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paynotify_webhook_attempts_total",
		Help: "Webhook delivery attempts by endpoint kind (http, nats), outcome (delivered, retry, failed) and answer class (2xx … 5xx, none).",
	}, []string{"kind", "outcome", "status"})
	m.attemptDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "paynotify_webhook_attempt_duration_seconds",
		Help:    "Time of webhook delivery attempts, by endpoint kind.",
		Buckets: latencyBuckets,
	}, []string{"kind"})
	m.disabled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paynotify_webhook_endpoints_disabled_total",
		Help: "Webhook endpoints this process disabled, by cause: gone (410) or failing (every attempt for 5 days).",
	}, []string{"cause"})
	m.reg.MustRegister(m.notifications, m.processing, m.commits, m.orders, m.pendingDeliveries, m.attentionRefunds, m.countsAt,
		m.countErrors, m.sweeps, m.checks, m.attempts, m.attemptDuration, m.disabled,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, s := range statuses {
		m.orders.WithLabelValues(string(s))
	}
	for _, r := range []string{"ok", "error"} {
		m.sweeps.WithLabelValues(r)
	}
	for _, r := range []string{"checked", "released", "error"} {
		m.checks.WithLabelValues(r)
	}
	// Counters shown at 0 from the start, so that rate() and increase() see their first event:
	// a series that appears at 1 reads as no increase (the alert of docs/operations.md on
	// disabled endpoints missed the first disable of each cause in a process's life).
	for _, c := range []string{"gone", "failing"} {
		m.disabled.WithLabelValues(c)
	}
	m.attempts.WithLabelValues("http", "delivered", "2xx")
	m.attempts.WithLabelValues("nats", "delivered", "none")
	for _, outcome := range []string{"retry", "failed"} {
		for _, class := range []string{"3xx", "4xx", "5xx", "none"} {
			m.attempts.WithLabelValues("http", outcome, class)
		}
		m.attempts.WithLabelValues("nats", outcome, "none")
	}
	return m
}

// Apps shows paynotify_notifications_total at 0 for every app of apps with each verdict and
// reason that outcomes says a callback to an app of its provider can end with
// (provider.CallbackOutcomes), so that the first rejection, anomaly or error of an app after a
// start is seen by rate() and increase() (a series that appears at 1 reads as no increase).
func (m *Prometheus) Apps(apps map[string]*paynotify.App, outcomes func(provider string) [][2]string) {
	for _, a := range apps {
		for _, o := range outcomes(a.Provider) {
			m.notifications.WithLabelValues(a.Provider, a.Name, o[0], o[1])
		}
	}
}

// Unprocessed counts a callback to app a that never reached the Processor, as rejected with
// reason (httpd: an endpoint the app does not take, a body that could not be read). Its time is
// not observed: a client that dribbles a body, then hangs up, would fill the latency histogram.
func (m *Prometheus) Unprocessed(a *paynotify.App, reason string) {
	m.notifications.WithLabelValues(a.Provider, a.Name, string(paynotify.VerdictRejected), reason).Inc()
}

// WatchQueue shows depth, read at each scrape, as paynotify_webhook_queue_depth
// (webhook.Dispatcher.QueueDepth). Call it once.
func (m *Prometheus) WatchQueue(depth func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "paynotify_webhook_queue_depth",
		Help: "Claimed webhook deliveries waiting in this process's queues for a worker.",
	}, func() float64 { return float64(depth()) }))
}

// Handler serves the metrics in the Prometheus text format (or OpenMetrics when asked for).
func (m *Prometheus) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Callback counts one callback the Processor handled (paynotify.Metrics).
func (m *Prometheus) Callback(app *paynotify.App, verdict paynotify.Verdict, reason string, took time.Duration) {
	m.notifications.WithLabelValues(app.Provider, app.Name, string(verdict), reason).Inc()
	m.processing.WithLabelValues(app.Provider).Observe(took.Seconds())
}

// Commit times one commit of the Processor (paynotify.Metrics).
func (m *Prometheus) Commit(took time.Duration, err error) {
	result := "ok"
	switch {
	case err == nil:
	case isConflict(err):
		result = "conflict"
	case errors.Is(err, paynotify.ErrRepeatMissed):
		result = "repeat_missed" // nothing written: the request is decided in full next
	default:
		result = "error"
	}
	m.commits.WithLabelValues(result).Observe(took.Seconds())
}

// Sweep counts one reconciliation sweep and its checks (jobs.Config.OnSweep).
func (m *Prometheus) Sweep(stats paynotify.SweepStats, err error) {
	if err != nil {
		m.sweeps.WithLabelValues("error").Inc()
	} else {
		m.sweeps.WithLabelValues("ok").Inc()
	}
	m.checks.WithLabelValues("checked").Add(float64(stats.Checked))
	m.checks.WithLabelValues("released").Add(float64(stats.Released))
	m.checks.WithLabelValues("error").Add(float64(stats.Errors))
}

// Attempt counts one webhook delivery attempt (webhook.Metrics).
func (m *Prometheus) Attempt(kind, outcome string, status int, took time.Duration) {
	class := "none"
	if status >= 100 && status <= 599 {
		class = strconv.Itoa(status/100) + "xx"
	}
	m.attempts.WithLabelValues(kind, outcome, class).Inc()
	m.attemptDuration.WithLabelValues(kind).Observe(took.Seconds())
}

// EndpointDisabled counts one endpoint the dispatcher disabled (webhook.Metrics).
func (m *Prometheus) EndpointDisabled(cause string) {
	m.disabled.WithLabelValues(cause).Inc()
}

// RefreshCounts counts the orders by status and the pending deliveries now.
func (m *Prometheus) RefreshCounts(ctx context.Context, st paynotify.StatsStore) error {
	c, err := st.CountStatuses(ctx)
	if err != nil {
		m.countErrors.Inc()
		return err
	}
	for _, s := range statuses {
		m.orders.WithLabelValues(string(s)).Set(float64(c.Orders[s]))
	}
	for s, n := range c.Orders {
		m.orders.WithLabelValues(string(s)).Set(float64(n)) // a status this list does not know yet
	}
	m.pendingDeliveries.Set(float64(c.PendingDeliveries))
	m.attentionRefunds.Set(float64(c.RefundsNeedingAttention))
	m.countsAt.Set(float64(time.Now().Unix()))
	return nil
}

// RunCounts refreshes the counts every interval (at least a minute: a count reads a whole
// index) until ctx ends; failures are logged and the gauges keep their values. Call
// RefreshCounts first for counts from the start.
func (m *Prometheus) RunCounts(ctx context.Context, st paynotify.StatsStore, interval time.Duration, logger *slog.Logger) {
	t := time.NewTicker(max(interval, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := m.RefreshCounts(cctx, st); err != nil && ctx.Err() == nil {
			logger.Warn("metrics: count orders", "err", err)
		}
		cancel()
	}
}

func isConflict(err error) bool { return errors.Is(err, paynotify.ErrVersionConflict) }
