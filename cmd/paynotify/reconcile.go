package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/provider"
)

func init() {
	commands["reconcile"] = reconcileCommand{}
	commands["reprocess"] = reprocessCommand{}
}

// reconcileCommand is `paynotify reconcile`: one pass of the reconciliation over recent pending
// orders and refunds, beside a running server or without one.
type reconcileCommand struct{}

const reconcileTry = "paynotify reconcile --config paynotify.yaml --since 48h"

func (reconcileCommand) Usage() string {
	return `Usage: paynotify reconcile --config FILE [--app NAME] [--since DURATION] [--dry-run]

Queries the provider about every pending order, every order paynotify closed alone (the provider
did not know its trade) still to be asked about again, and every pending refund, created
within --since (default 48h), and applies what the verified answers say, as a notification would
be applied. It
does not close expired orders (serve does). It works while serve runs on the same database.
Ends with one line:
  checked=N paid=N closed=N refunded=N pending=N skipped=N errors=N
(closed counts refunds found failed too; skipped, apps whose provider has no query service;
errors, unreachable providers, answers that did not verify or disagree with the order, store
failures; a refund the provider made from another payment of the order stays pending, with
a warning, while one it reports failed on another payment is an error).
Exit 0 when errors=0, 1 otherwise, 2 on usage or config errors.

  --config FILE      the server's config file
  --app NAME         only this app
  --since DURATION   how far back orders and refunds were created (Go duration, default 48h)
  --dry-run          query and report, change nothing
`
}

// offlineService opens the store and the apps of a config for a command that runs beside the
// server: it never migrates (it refuses an old schema, as serve --no-migrate does).
func offlineService(ctx context.Context, m *Main, configPath, app string) (*paynotify.Service, func(), error) {
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return nil, nil, &configError{err: err}
	}
	apps, err := buildApps(cfg)
	if err != nil {
		return nil, nil, &configError{err: err}
	}
	if app != "" {
		a, ok := apps[app]
		if !ok {
			return nil, nil, usagef("", "--app %q is not an app of %s", app, configPath)
		}
		apps = map[string]*paynotify.App{app: a}
	}
	st, err := openStore(ctx, cfg.Database, false)
	if err != nil {
		return nil, nil, err
	}
	logger := slog.New(slog.NewTextHandler(m.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	downloadPlatformCerts(ctx, cfg, apps, logger)
	return newService(cfg, st, apps, logger), func() { st.Close() }, nil
}

// downloadPlatformCerts downloads, once, the platform certificates of the WeChat Pay apps that
// verify with them, as serve does when it starts: platform_cert_files may predate a rotation,
// and without the current certificate the answers to queries and the notifications reprocessed
// would not verify. The downloaded certificates are added to the configured ones, expired ones
// included (a notification reprocessed is verified as at its arrival, when the certificate that
// signed it was valid). A failed download is a warning; the configured certificates are used.
func downloadPlatformCerts(ctx context.Context, cfg *Config, apps map[string]*paynotify.App, logger *slog.Logger) {
	for _, ac := range cfg.Apps {
		a, ok := apps[ac.Name]
		if !ok || len(ac.PlatformCertFiles) == 0 {
			continue
		}
		gw, ok := a.Gateway.(*provider.Wechat)
		if !ok {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		certs, err := gw.Client.DownloadCertificates(dctx)
		cancel()
		if err != nil {
			logger.Warn("download WeChat Pay platform certificates; verifying with platform_cert_files only", "app", ac.Name, "err", err)
			continue
		}
		gw.Client.SetPlatformCertificates(append(gw.Client.PlatformCertificates(), certs...))
	}
}

// reconcileStats is the last line of `paynotify reconcile`.
type reconcileStats struct {
	mu                                                      sync.Mutex
	checked, paid, closed, refunded, pending, skipped, errs int
}

func (s *reconcileStats) String() string {
	return fmt.Sprintf("checked=%d paid=%d closed=%d refunded=%d pending=%d skipped=%d errors=%d",
		s.checked, s.paid, s.closed, s.refunded, s.pending, s.skipped, s.errs)
}

// item is one order or refund to check.
type reconcileItem struct {
	app    *paynotify.App
	order  *paynotify.Order
	refund *paynotify.Refund
}

func (cmd reconcileCommand) Run(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	configPath := fs.String("config", "", "")
	app := fs.String("app", "", "")
	since := fs.Duration("since", 48*time.Hour, "")
	dryRun := fs.Bool("dry-run", false, "")
	if err := parseCommandFlags(m, fs, cmd.Usage(), reconcileTry, args); err != nil {
		return err
	}
	if *configPath == "" {
		return usagef(reconcileTry, "reconcile: --config is required")
	}
	if *since <= 0 {
		return usagef(reconcileTry, "reconcile: --since must be a positive duration")
	}
	svc, closeStore, err := offlineService(ctx, m, *configPath, *app)
	if err != nil {
		return err
	}
	defer closeStore()

	from := time.Now().Add(-*since)
	var items []reconcileItem
	for _, a := range svc.Apps {
		orders, err := svc.Store.ListOrders(ctx, paynotify.OrderFilter{App: a.Name, Status: paynotify.StatusPending, Since: from, Limit: 10_000_000})
		if err != nil {
			return err
		}
		for _, o := range orders {
			items = append(items, reconcileItem{app: a, order: o})
		}
		// And the orders closed by a close of our own (the provider did not know the trade)
		// that are still to be asked about again: their buyer may have paid before the
		// expiry the provider enforces, and its notification been lost (docs/reconciliation.md).
		closed, err := svc.Store.ListOrders(ctx, paynotify.OrderFilter{App: a.Name, Status: paynotify.StatusClosed, Since: from, Limit: 10_000_000})
		if err != nil {
			return err
		}
		for _, o := range closed {
			if o.NextCheckAt != nil {
				items = append(items, reconcileItem{app: a, order: o})
			}
		}
		refunds, err := svc.Store.ListPendingRefunds(ctx, a.Name, from)
		if err != nil {
			return err
		}
		for _, r := range refunds {
			items = append(items, reconcileItem{app: a, refund: r})
		}
	}

	var st reconcileStats
	prog := newProgress(m.Stderr, len(items))
	sems := map[string]chan struct{}{}
	for _, a := range svc.Apps {
		sems[a.Name] = make(chan struct{}, a.Reconcile.WithDefaults().Concurrency)
	}
	var wg sync.WaitGroup
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		sem := sems[it.app.Name]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cmd.check(ctx, svc, it, *dryRun, &st)
			prog.step()
		}()
	}
	wg.Wait()
	prog.done()
	fmt.Fprintln(m.Stdout, st.String())
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("reconcile: interrupted: %w", err)
	}
	if st.errs > 0 {
		return &verdictError{reason: "errors"}
	}
	return nil
}

// check checks one item and counts its outcome.
func (reconcileCommand) check(ctx context.Context, svc *paynotify.Service, it reconcileItem, dryRun bool, st *reconcileStats) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	count := func(f func()) {
		st.mu.Lock()
		st.checked++
		f()
		st.mu.Unlock()
	}
	fail := func(what string, err error) {
		svc.Logger.Warn("reconcile: "+what, "app", it.app.Name, "err", err)
		count(func() { st.errs++ })
	}
	if it.refund != nil {
		o, err := svc.Store.GetOrder(cctx, it.app.Name, it.refund.OutTradeNo)
		if err != nil {
			fail("load order", err)
			return
		}
		res, err := svc.CheckRefund(cctx, it.app, o, it.refund, dryRun)
		// The Processor's verdict (on a dry run, what applying would give: Processor.Preview).
		// The provider answered about the refund as made from, or failed on, another payment of
		// the order than the one it holds: the refund stays pending either way.
		otherPayment := err == nil && res.Fact != nil && res.Reason == paynotify.ReasonDuplicatePaymentRefund
		switch {
		case errors.Is(err, paynotify.ErrNoQueryService):
			count(func() { st.skipped++ })
		case err != nil && paynotify.ErrorCode(err) == paynotify.EPROVIDER && (res == nil || !res.NotFound):
			// A signed refusal of the query itself (a permission the key lost), not of the
			// refund asked for again (which is then recorded failed): the refund is as pending
			// as before.
			fail("refund "+it.refund.OutRequestNo, err)
		case err != nil && paynotify.ErrorCode(err) != paynotify.EPROVIDER:
			fail("refund "+it.refund.OutRequestNo, err)
		case otherPayment && res.Fact.Kind == paynotify.FactRefund:
			// Made from the other payment: the order's own payment stands, and the refund stays
			// pending, as serve's reconciliation keeps it until it needs attention. Not an error
			// of this run, or every run would fail on it until then.
			svc.Logger.Warn("reconcile: refund made from another payment of the order", "app", it.app.Name,
				"out_trade_no", it.refund.OutTradeNo, "out_request_no", it.refund.OutRequestNo, "trade_no", res.Fact.ProviderTradeNo)
			count(func() { st.pending++ })
		case otherPayment:
			// A failure or an ABNORMAL (WeChat Pay) naming another payment: the refund is not
			// settled by it, and someone must look.
			fail("refund "+it.refund.OutRequestNo, fmt.Errorf("%s: the provider reports it %s on trade %s, not the order's %s",
				paynotify.ReasonDuplicatePaymentRefund, res.State, res.Fact.ProviderTradeNo, o.ProviderTradeNo))
		case err == nil && res.Reason == paynotify.ReasonRefundAbnormal:
			// WeChat Pay's ABNORMAL: the money left the merchant and the buyer's account did not
			// take it. The refund stays pending, holding its amount, until the merchant platform
			// settles it; an error would fail every run until then.
			svc.Logger.Warn("reconcile: the provider reports the refund ABNORMAL: settle it in the merchant platform", "app", it.app.Name,
				"out_trade_no", it.refund.OutTradeNo, "out_request_no", it.refund.OutRequestNo)
			count(func() { st.pending++ })
		case err == nil && (res.Verdict == paynotify.VerdictRejected || res.Verdict == paynotify.VerdictAnomaly && !paynotify.Acknowledged(res.Reason)):
			fail("refund "+it.refund.OutRequestNo, fmt.Errorf("%s: %s", res.Verdict, res.Reason))
		case err != nil, res.Refund.Status == paynotify.RefundFailed, dryRun && res.Fact != nil && res.Fact.Kind == paynotify.FactRefundFailed:
			count(func() { st.closed++ })
		case res.Refund.Status == paynotify.RefundSucceeded, dryRun && res.Fact != nil && res.Fact.Kind == paynotify.FactRefund:
			count(func() { st.refunded++ })
		default:
			if dryRun && res.NotFound {
				// The run would ask the provider for it again (idempotently, under its number).
				svc.Logger.Warn("reconcile: the provider does not know this refund: the run would ask for it again", "app", it.app.Name,
					"out_trade_no", it.refund.OutTradeNo, "out_request_no", it.refund.OutRequestNo)
			}
			count(func() { st.pending++ })
		}
		return
	}
	res, err := svc.CheckOrder(cctx, it.app, it.order, dryRun)
	switch {
	case errors.Is(err, paynotify.ErrNoQueryService):
		count(func() { st.skipped++ })
		return
	case err != nil:
		fail("order "+it.order.OutTradeNo, err)
		return
	case res.Verdict == paynotify.VerdictRejected || (res.Verdict == paynotify.VerdictAnomaly && !paynotify.Acknowledged(res.Reason)):
		fail("order "+it.order.OutTradeNo, fmt.Errorf("%s: %s", res.Verdict, res.Reason))
		return
	}
	status := res.Order.Status // on a dry run, the order applying would leave (Processor.Preview)
	if status == paynotify.StatusClosed && res.Fact == nil && !res.NotFound {
		// An order closed locally whose trade is open at the provider (the buyer opened it, its
		// expiry not enforced yet): pending there, and payable; serve closes it at its check
		// (a reviewer helper's finding: counted closed).
		svc.Logger.Warn("reconcile: an order closed locally has its trade open at the provider", "app", it.app.Name,
			"out_trade_no", it.order.OutTradeNo, "state", res.State)
		status = paynotify.StatusPending
	}
	count(func() {
		switch status {
		case paynotify.StatusPaid, paynotify.StatusFinished:
			st.paid++
		case paynotify.StatusClosed:
			st.closed++
		case paynotify.StatusRefunded:
			st.refunded++
		default:
			st.pending++
		}
	})
}

// progress reports a long run on stderr: a bar on a terminal, elsewhere a line per 100 items.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	total int
	n     int
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) step() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	switch {
	case p.tty:
		const width = 40
		filled := width * p.n / max(p.total, 1)
		fmt.Fprintf(p.w, "\r[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(" ", width-filled), p.n, p.total)
	case p.n%100 == 0:
		fmt.Fprintf(p.w, "%d/%d\n", p.n, p.total)
	}
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.n > 0 {
		fmt.Fprintln(p.w)
	}
}

// reprocessCommand is `paynotify reprocess`: after a config fix, the notifications that were
// rejected (or were anomalies, or failed) go through verification and processing again.
type reprocessCommand struct{}

const reprocessTry = "paynotify reprocess --config paynotify.yaml --since 24h"

func (reprocessCommand) Usage() string {
	return `Usage: paynotify reprocess --config FILE [--app NAME] --since DURATION [--reason CODE]

Runs every notification received within --since whose verdict was rejected, anomaly or error
through verification and processing again, oldest first, as if it had just arrived (WeChat Pay's
timestamp window is checked against when it first arrived). Each result is a new evidence record
(source reprocess) linked to the original. Applying is idempotent: an order is paid once, however
many copies are reprocessed. Rejected notifications over the evidence cap (100 per app per
minute) were never stored: reconciliation covers their orders. Ends with one line:
  reprocessed=N accepted=N duplicate=N rejected=N anomaly=N errors=N
Exit 0 when errors=0, 1 otherwise, 2 on usage or config errors.

  --config FILE      the server's config file
  --app NAME         only this app
  --since DURATION   how far back the notifications were received (Go duration), required
  --reason CODE      only notifications with this reason (signature_invalid, unknown_order, …)
`
}

func (cmd reprocessCommand) Run(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("reprocess", flag.ContinueOnError)
	configPath := fs.String("config", "", "")
	app := fs.String("app", "", "")
	since := fs.Duration("since", 0, "")
	reason := fs.String("reason", "", "")
	if err := parseCommandFlags(m, fs, cmd.Usage(), reprocessTry, args); err != nil {
		return err
	}
	if *configPath == "" || *since <= 0 {
		return usagef(reprocessTry, "reprocess: --config and a positive --since are required")
	}
	svc, closeStore, err := offlineService(ctx, m, *configPath, *app)
	if err != nil {
		return err
	}
	defer closeStore()
	var prog *progress
	st, err := svc.ReprocessAll(ctx, paynotify.ReprocessFilter{App: *app, Since: time.Now().Add(-*since), Reason: *reason}, func(done, total int) {
		if prog == nil {
			prog = newProgress(m.Stderr, total)
		}
		prog.step()
	})
	if prog != nil {
		prog.done()
	}
	fmt.Fprintf(m.Stdout, "reprocessed=%d accepted=%d duplicate=%d rejected=%d anomaly=%d errors=%d\n",
		st.Reprocessed, st.Accepted, st.Duplicate, st.Rejected, st.Anomaly, st.Errors)
	if err != nil {
		return fmt.Errorf("reprocess: %w", err)
	}
	if st.Errors > 0 {
		return &verdictError{reason: "errors"}
	}
	return nil
}
