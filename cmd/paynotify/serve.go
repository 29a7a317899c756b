package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/console"
	"github.com/paynotify/paynotify/httpd"
	"github.com/paynotify/paynotify/internal/gcpercent"
	"github.com/paynotify/paynotify/internal/migrations"
	"github.com/paynotify/paynotify/jobs"
	"github.com/paynotify/paynotify/metrics"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/sqlite"
	"github.com/paynotify/paynotify/webhook"
)

func init() {
	commands["serve"] = serveCommand{}
}

// serveCommand runs the server: with --config, on that file; without, in demo mode.
type serveCommand struct{}

func (serveCommand) Usage() string {
	return `Usage: paynotify serve [--config FILE] [--no-migrate] [--listen ADDR] [--data-dir DIR] [--pprof LOOPBACK-ADDR]

Runs the server on the config file (docs/config.md), or without --config the demo on the
embedded sandbox, its data in --data-dir (default paynotify-data).
  --config FILE         the config file (YAML); none runs the demo
  --no-migrate          do not apply migrations at start; refuse an old schema
  --listen ADDR         the address to serve on (overrides the config's listen; the demo's default is 127.0.0.1:8080)
  --data-dir DIR        demo mode only: where the demo keeps its database, keys and token
  --pprof ADDR          serve Go's profiler (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060
`
}

// serveTry is what a usage error of serve suggests.
const serveTry = "paynotify serve --help"

func (c serveCommand) Run(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	configPath := fs.String("config", "", "config file (YAML); none runs the demo")
	noMigrate := fs.Bool("no-migrate", false, "do not apply migrations at start; refuse an old schema")
	listen := fs.String("listen", "", "address to serve on (overrides the config's listen; the demo's default is 127.0.0.1:8080)")
	dataDir := fs.String("data-dir", demoDataDir, "demo mode only: where the demo keeps its database, keys and token")
	pprofAddr := fs.String("pprof", "", "serve Go's profiler (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060 (docs/performance.md)")
	if err := parseCommandFlags(m, fs, c.Usage(), serveTry, args); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(m.Stderr, nil))
	gcpercent.Apply(os.LookupEnv) // docs/deploy.md, "Memory"
	if *pprofAddr != "" {
		stop, err := servePprof(*pprofAddr, logger)
		if err != nil {
			return usagef(serveTry, "serve: --pprof: %v", err)
		}
		defer stop()
	}
	configGiven := false
	fs.Visit(func(f *flag.Flag) { configGiven = configGiven || f.Name == "config" })
	if configGiven && *configPath == "" {
		// `--config "$PAYNOTIFY_CONFIG"` with the variable unset: not a request for the demo.
		return usagef(serveTry, "serve: --config is empty: give the config file, or leave --config out to run the demo")
	}
	if *configPath == "" {
		return runDemo(ctx, m, logger, *listen, *dataDir, *noMigrate)
	}
	cfg, err := LoadConfig(*configPath)
	if err != nil {
		return &configError{err: err}
	}
	logger = slog.New(cfg.Log.handler(m.Stderr))
	if *listen != "" {
		cfg.Listen = *listen
		if cfg.AdminListen != "" && sameListener(cfg.AdminListen, cfg.Listen) {
			return &configError{err: fmt.Errorf("--listen %q overlaps admin_listen %q: give each a port of its own", cfg.Listen, cfg.AdminListen)}
		}
	}
	apps, err := buildApps(cfg)
	if err != nil {
		return &configError{err: err}
	}
	// Apps that verify with platform certificates download them when a notification names an
	// unknown one (a rotation the periodic refresh below has not seen yet), for WeChat Pay's retry.
	for _, ac := range cfg.Apps {
		if gw, ok := apps[ac.Name].Gateway.(*provider.Wechat); ok && len(ac.PlatformCertFiles) > 0 {
			log := logger.With("app", ac.Name)
			gw.MissRefresh = func(err error) {
				if err != nil {
					log.Warn("refresh WeChat Pay platform certificates after a notification with an unknown serial", "err", err)
					return
				}
				log.Info("refreshed WeChat Pay platform certificates after a notification with an unknown serial")
			}
		}
	}
	logCertDownloads(apps, cfg, logger)
	store, err := openStoreLogged(ctx, cfg.Database, !*noMigrate, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	logStart(logger, cfg)
	warnSharedPartners(logger, cfg)
	warnNewerSchema(ctx, store, logger)
	svc := newService(cfg, store, apps, logger)
	srv := newServer(cfg, store, svc, logger)
	bg, err := newBackground(ctx, cfg, store, svc, logger)
	if err != nil {
		return err
	}
	defer bg.Close()
	// Apps that verify with platform certificates keep them fresh: download now, then before
	// they expire (off the verification path, which reads an immutable snapshot).
	for _, ac := range cfg.Apps {
		if gw, ok := apps[ac.Name].Gateway.(*provider.Wechat); ok && len(ac.PlatformCertFiles) > 0 {
			log := logger.With("app", ac.Name)
			go gw.Client.RunCertificateRefresher(ctx, 0, func(err error) { log.Warn("refresh WeChat Pay platform certificates", "err", err) })
		}
	}
	go watchCertExpiry(ctx, cfg, logger, time.Now, 24*time.Hour)
	return listenAndServe(ctx, m, logger, cfg.Listen, srv, bg, nil)
}

// logCertDownloads logs each Alipay certificate an app downloads (certificate mode: an answer
// named a certificate alipay_cert_file does not have, after Alipay renewed it), with what to do.
func logCertDownloads(apps map[string]*paynotify.App, cfg *Config, logger *slog.Logger) {
	for _, ac := range cfg.Apps {
		if gw, ok := apps[ac.Name].Gateway.(*provider.Alipay); ok && ac.AlipayCertFile != "" {
			log := logger.With("app", ac.Name)
			gw.CertDownloaded = func(ck alipay.CertKey) {
				log.Warn("downloaded and trusted a new Alipay certificate that an answer named (it chains to alipay_root_cert_file): add it to alipay_cert_file, which holds only the older one, so that a restart needs no download",
					"alipay_cert_sn", ck.SN, "not_before", ck.NotBefore.UTC().Format(time.RFC3339), "not_after", ck.NotAfter.UTC().Format(time.RFC3339))
			}
		}
	}
}

// certExpiryWarn is how long before an Alipay certificate ends serve warns about it.
const certExpiryWarn = 30 * 24 * time.Hour

// watchCertExpiry warns at start, then every interval, about each Alipay certificate-mode app
// whose certificates, as serve loaded them, end within certExpiryWarn (or ended): the app's own
// (app_cert_file), or every Alipay certificate it trusts (alipay_cert_file: when one of a
// rotation's two ends, the other carries on). An API answer naming Alipay's next certificate
// downloads it (logCertDownloads), but a notification signed with it fails as unknown_serial or
// signature_invalid until an answer has (or the file holds it): a reviewer helper's finding,
// nothing said so before. A file that cannot be read is the config's error, reported at start.
func watchCertExpiry(ctx context.Context, cfg *Config, logger *slog.Logger, now func() time.Time, interval time.Duration) {
	type watched struct {
		app, field, renew string
		end               time.Time
	}
	var ws []watched
	for _, a := range cfg.Apps {
		if a.Provider != paynotify.ProviderAlipay || a.AlipayCertFile == "" {
			continue
		}
		for _, f := range []struct{ field, path, renew string }{
			{"app_cert_file", a.AppCertFile, "renew the app's certificate (开放平台 → 应用 → 开发设置 → 接口加签方式) and replace app_cert_file"},
			{"alipay_cert_file", a.AlipayCertFile, "download Alipay's new alipayCertPublicKey_RSA2.crt from the same page and add it to alipay_cert_file beside the old one"},
		} {
			b, err := os.ReadFile(f.path)
			if err != nil {
				continue
			}
			var end time.Time
			for _, c := range parseCerts(b) {
				if !c.IsCA && c.NotAfter.After(end) { // the leaves: the last to end decides
					end = c.NotAfter
				}
			}
			if !end.IsZero() {
				ws = append(ws, watched{a.Name, f.field, f.renew, end})
			}
		}
	}
	if len(ws) == 0 {
		return
	}
	for {
		for _, w := range ws {
			if left := w.end.Sub(now()); left < certExpiryWarn {
				logger.Warn("Alipay certificate ends soon: after it, Alipay's signatures with the next one fail as unknown_serial until the config holds it",
					"app", w.app, "field", w.field, "not_after", w.end.UTC().Format(time.RFC3339), "days_left", int(left.Hours()/24), "remedy", w.renew+", then restart")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// warnSharedPartners warns about legacy Alipay apps of one partner (two charsets need two apps):
// Alipay signs their notifications alike, so one app's notification verifies at the other's
// notify URL too, and an order number both apps hold would be paid by either's (a reviewer
// helper's finding). Their out_trade_no must not repeat across them.
func warnSharedPartners(logger *slog.Logger, cfg *Config) {
	by := map[string][]string{}
	for _, a := range cfg.Apps {
		if a.Provider == paynotify.ProviderAlipayLegacy && a.Partner != "" {
			by[a.Partner] = append(by[a.Partner], a.Name)
		}
	}
	for partner, apps := range by {
		if len(apps) > 1 {
			logger.Warn("legacy Alipay apps of one partner: a notification of one verifies at the other's notify URL too; give their orders numbers that do not repeat across them",
				"partner", partner, "apps", strings.Join(apps, ", "))
		}
	}
}

// logStart says which database serve opened (a SQLite path made absolute: a relative one is read
// from the working directory) and each app's provider endpoint, so that a config that silently
// fell back to a default, or points at a sandbox, shows in the log. No secret is in these.
func logStart(logger *slog.Logger, cfg *Config) {
	db := redactDSN(cfg.Database)
	if p, ok := strings.CutPrefix(cfg.Database, "sqlite:"); ok {
		if abs, err := filepath.Abs(p); err == nil {
			db = "sqlite:" + abs
		}
	}
	logger.Info("database", "database", db)
	for _, a := range cfg.Apps {
		endpoint := a.Gateway
		if a.Provider == "wechatpay" {
			endpoint = a.APIBase
		}
		logger.Info("app", "app", a.Name, "provider", a.Provider, "endpoint", redactDSN(endpoint))
	}
	if cfg.NATS.URL != "" {
		logger.Info("nats", "url", redactNATSURL(cfg.NATS.URL), "stream", cfg.NATS.Stream)
	}
	if metricsPublic(cfg) {
		logger.Warn("GET /metrics is served on listen, which is not a loopback address: app names and order counts are public unless the reverse proxy blocks /metrics; set admin_listen to keep them private",
			"listen", cfg.Listen)
	}
}

// warnNewerSchema warns when the database holds migrations this binary does not know: a newer
// paynotify migrated it (a downgrade, or an old instance restarted in a rolling upgrade). Not
// refused: migrations only add, and an old instance of a rolling upgrade must keep running; but
// it was silent (a reviewer helper's finding), and a downgrade is undone by restoring a backup
// (docs/deploy.md).
func warnNewerSchema(ctx context.Context, st store, logger *slog.Logger) {
	sts, err := st.MigrationStatus(ctx)
	if err != nil {
		logger.Warn("could not read the database's migrations", "err", err)
		return
	}
	var unknown []string
	for _, s := range sts {
		if s.Unknown {
			unknown = append(unknown, s.Name)
		}
	}
	if len(unknown) > 0 {
		logger.Warn("the database has migrations this paynotify does not know: a newer version migrated it (expected for an old instance during a rolling upgrade; otherwise upgrade this binary: docs/deploy.md)",
			"unknown", strings.Join(unknown, ","))
	}
}

// metricsPublic reports whether serve would answer GET /metrics on a listener that is not bound
// to loopback only (no admin_listen).
func metricsPublic(cfg *Config) bool {
	return cfg.AdminListen == "" && checkLoopback(cfg.Listen) != nil
}

// newService wires the workflows of a config.
func newService(cfg *Config, store paynotify.Store, apps map[string]*paynotify.App, logger *slog.Logger) *paynotify.Service {
	wh := cfg.Webhooks
	return &paynotify.Service{
		Store:     store,
		Processor: &paynotify.Processor{Store: store, Logger: logger},
		Apps:      apps,
		PublicURL: cfg.PublicURL,
		Logger:    logger,
		CheckWebhookURL: func(u string) error {
			return webhook.CheckURL(u, wh.AllowHTTP, wh.AllowPrivateNetworks)
		},
	}
}

// background is the work serve does besides answering requests: the River jobs and the
// webhook dispatcher (with its NATS sink when configured).
type background struct {
	runner     *jobs.Runner
	dispatcher *webhook.Dispatcher
	nats       *webhook.NATS
	// metrics are served on /metrics: on the main listener, or on adminAddr when set. Their
	// counts of store are refreshed once a minute while the background runs.
	metrics   *metrics.Prometheus
	store     paynotify.StatsStore
	adminAddr string
	logger    *slog.Logger
	cancel    context.CancelFunc
	done      chan struct{}
}

// newBackground builds the background work of svc; serve's HTTP server wakes the dispatcher
// after each commit that appended events.
func newBackground(ctx context.Context, cfg *Config, st store, svc *paynotify.Service, logger *slog.Logger) (*background, error) {
	mx := metrics.New()
	mx.Apps(svc.Apps, provider.CallbackOutcomes)
	svc.Processor.Metrics = mx
	runner, err := newJobs(st, svc, cfg.Jobs, cfg.Retention, logger, mx.Sweep)
	if err != nil {
		return nil, err
	}
	wh := cfg.Webhooks
	d := &webhook.Dispatcher{
		Store:   st,
		Config:  webhook.Config{Concurrency: wh.Concurrency, AllowHTTP: wh.AllowHTTP},
		Client:  webhook.NewClient(wh.AllowPrivateNetworks, 10*time.Second),
		Logger:  logger,
		Metrics: mx,
	}
	mx.WatchQueue(d.QueueDepth)
	bg := &background{runner: runner, dispatcher: d, metrics: mx, store: st, adminAddr: cfg.AdminListen, logger: logger}
	if cfg.NATS.URL != "" {
		n, err := webhook.OpenNATS(ctx, webhook.NATSConfig{URL: cfg.NATS.URL, Stream: cfg.NATS.Stream,
			SubjectPrefix: cfg.NATS.SubjectPrefix, DuplicateWindow: cfg.NATS.DuplicateWindow})
		if err != nil {
			return nil, fmt.Errorf("nats: %w", err)
		}
		if !n.Ready() {
			logger.Warn("nats: not ready (no server or no JetStream answered): serving without it; events are published once it is (the dispatcher retries them)",
				"stream", cfg.NATS.Stream, "err", n.StartError())
		}
		bg.nats, d.NATS = n, n
		if err := webhook.EnsureNATSEndpoint(ctx, st, cfg.NATS.Stream+" "+cfg.NATS.SubjectPrefix); err != nil {
			n.Close()
			return nil, err
		}
	} else if err := webhook.DisableNATSEndpoint(ctx, st); err != nil {
		return nil, err
	}
	svc.WakeWebhooks = d.Wake
	svc.Processor.OnEvents = d.Wake
	return bg, nil
}

// Start starts the jobs and the dispatcher.
func (b *background) Start(ctx context.Context) error {
	if err := b.runner.Start(ctx); err != nil {
		return err
	}
	dctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.cancel, b.done = cancel, make(chan struct{})
	go func() {
		defer close(b.done)
		if err := b.dispatcher.Run(dctx); err != nil {
			b.logger.Error("webhooks", "err", err)
		}
	}()
	// The first counts before the listener serves, so that no scrape shows them empty; a
	// slow database delays the start by 10s at most.
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	if err := b.metrics.RefreshCounts(cctx, b.store); err != nil {
		b.logger.Warn("metrics: count orders", "err", err)
	}
	ccancel()
	go b.metrics.RunCounts(dctx, b.store, time.Minute, b.logger)
	return nil
}

// Stop stops both: in-flight checks and deliveries finish or are released for another process.
func (b *background) Stop(ctx context.Context) {
	if b.cancel != nil {
		b.cancel()
	}
	if err := b.runner.Stop(ctx); err != nil {
		b.logger.Error("stop jobs", "err", err)
	}
	if b.done != nil {
		select {
		case <-b.done:
		case <-ctx.Done():
			b.logger.Error("stop webhooks: timed out")
		}
	}
}

// Close releases the NATS connection.
func (b *background) Close() {
	if b.nats != nil {
		b.nats.Close()
	}
}

// newServer wires the HTTP server of a config.
func newServer(cfg *Config, st store, svc *paynotify.Service, logger *slog.Logger) *httpd.Server {
	srv := &httpd.Server{Service: svc, APIToken: cfg.APIToken, Logger: logger, Ready: readiness(st, logger)}
	if cfg.Console.AdminPasswordHash != "" {
		// The operator console (docs/console.md): GET /, /login, /logout and /console/.
		con := &console.Console{Service: svc, PasswordHash: cfg.Console.AdminPasswordHash, Logger: logger,
			SecureCookie: strings.HasPrefix(cfg.PublicURL, "https://")}
		srv.Mount = con.Routes()
		srv.OnStopLongPolls = append(srv.OnStopLongPolls, con.StopLongPolls)
	}
	return srv
}

// readiness is GET /readyz's check: the database answers and neither our schema nor River's has
// migrations pending. Its errors say which, without the driver's text (logged instead).
//
// The migrations are checked until they are found complete, then never again: this binary's
// migrations, once applied, stay applied (a newer binary's only add to them). Anyone can call
// /readyz, and on SQLite River's check takes the write lock: polled, it would compete with the
// writer of every notification. After that only the ping is made, and an answer is kept for
// readyTTL: a flood of /readyz costs the database one ping a second (on PostgreSQL a ping takes a
// connection of the pool the writer uses), and its failures one log line a second.
func readiness(st store, logger *slog.Logger) func(ctx context.Context) error {
	// st is used only when the check runs (tests build servers on no store).
	return readinessOf(time.Now, func(ctx context.Context) error { return st.Ping(ctx) }, func(ctx context.Context) (int, int, error) {
		n, err := st.PendingMigrations(ctx)
		if err != nil {
			return 0, 0, err
		}
		river, err := pendingJobMigrations(ctx, st)
		return n, len(river), err
	}, logger)
}

// readyTTL is how long readiness keeps an answer.
const readyTTL = time.Second

// readinessOf is readiness over its two checks, on the clock now.
func readinessOf(now func() time.Time, ping func(context.Context) error, pending func(context.Context) (ours, river int, err error), logger *slog.Logger) func(ctx context.Context) error {
	var (
		turn     = make(chan struct{}, 1) // one check at a time, holding the rest: the others wait
		until    time.Time                // the last answer holds until then
		answer   error
		migrated bool // found complete once: not checked again
	)
	check := func(ctx context.Context) error {
		unreachable := func(err error) error {
			logger.Warn("readyz: database", "err", err)
			return errors.New("the database does not answer")
		}
		if err := ping(ctx); err != nil {
			return unreachable(err)
		}
		if migrated {
			return nil
		}
		n, river, err := pending(ctx)
		if err != nil {
			return unreachable(err)
		}
		if n > 0 || river > 0 {
			return fmt.Errorf("the database has migrations pending (paynotify: %d, River: %d): run paynotify migrate", n, river)
		}
		migrated = true
		return nil
	}
	return func(ctx context.Context) error {
		select {
		case turn <- struct{}{}:
		case <-ctx.Done():
			return errors.New("the database did not answer in time")
		}
		defer func() { <-turn }()
		if t := now(); t.Before(until) {
			return answer
		}
		if ctx.Err() != nil { // the caller has left: no ping, no log line, nothing kept
			return errors.New("the database did not answer in time")
		}
		answer = check(ctx)
		// Kept, but for an answer cut short because its caller left: a database that does not
		// answer within the caller's deadline is not ready, and so is said for readyTTL.
		if !errors.Is(ctx.Err(), context.Canceled) {
			until = now().Add(readyTTL)
		}
		return answer
	}
}

// newJobs builds the background jobs of svc on the store's own database (package jobs): the
// reconciliation sweep and the retention prune.
// onSweep, if set, is told of every sweep (metrics).
func newJobs(st store, svc *paynotify.Service, cfg JobsConfig, rc RetentionConfig, logger *slog.Logger, onSweep func(paynotify.SweepStats, error)) (*jobs.Runner, error) {
	cfg = cfg.withDefaults()
	evidence, attempts, err := rc.periods()
	if err != nil {
		return nil, &configError{err: err}
	}
	rejected, err := rc.rejectedPeriod()
	if err != nil {
		return nil, &configError{err: err}
	}
	jc := jobs.Config{Reconciler: &paynotify.Reconciler{Service: svc, MaxPerSecond: cfg.MaxChecksPerSecond}, SweepInterval: cfg.SweepInterval, Logger: logger,
		Retention: jobs.Retention{Evidence: evidence, WebhookAttempts: attempts, RejectedEvidence: rejected}, OnSweep: onSweep}
	switch db := st.(type) {
	case *sqlite.DB:
		return jobs.NewSQLite(db.SQL(), jc)
	case *postgres.DB:
		return jobs.NewPostgres(db.Pool(), jc)
	}
	return nil, fmt.Errorf("jobs: no runner for %T", st)
}

// The graceful shutdown's two steps, one after the other: deploy/paynotify.service's
// TimeoutStopSec gives serve more than both (deploy_test.go checks).
const (
	httpShutdownTimeout = 30 * time.Second // requests in flight are answered
	jobsStopTimeout     = 25 * time.Second // checks and deliveries in flight finish
)

// listenAndServe serves srv on addr until ctx is done, with the background work bg (nil for
// none), then shuts down gracefully: the HTTP server first (in-flight notifications are answered
// after their commit), then the jobs and deliveries (in flight finish or are released). ready, if
// set, is called with the bound address once the listener is open.
func listenAndServe(ctx context.Context, m *Main, logger *slog.Logger, addr string, srv *httpd.Server, bg *background, ready func(addr string)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return listenError("listen", err)
	}
	var admin *http.Server
	if bg != nil && bg.metrics != nil {
		if bg.adminAddr == "" {
			if srv.Mount == nil {
				srv.Mount = map[string]http.Handler{}
			}
			srv.Mount["GET /metrics"] = bg.metrics.Handler()
		} else {
			aln, err := net.Listen("tcp", bg.adminAddr)
			if err != nil {
				ln.Close()
				return listenError("admin_listen", err)
			}
			admin = httpd.NewHTTPServer(bg.adminAddr, adminHandler(bg.metrics))
			admin.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
			logger.Info("admin listening", "addr", aln.Addr().String())
			go func() {
				if err := admin.Serve(aln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					logger.Error("admin listener", "err", err)
				}
			}()
			defer admin.Close()
		}
	}
	if bg != nil {
		if err := bg.Start(ctx); err != nil {
			ln.Close()
			return err
		}
		defer func() {
			jctx, cancel := context.WithTimeout(context.Background(), jobsStopTimeout)
			defer cancel()
			bg.Stop(jctx)
		}()
	}
	hs := httpd.NewHTTPServer(addr, srv.Handler())
	hs.RegisterOnShutdown(srv.StopLongPolls)
	hs.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	logger.Info("listening", "addr", ln.Addr().String())
	if ready != nil {
		ready(ln.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// listenError is the error of a listener that could not be opened: a port another process holds
// (often the previous serve, still draining) is exit 1, which a supervisor restarts; an address
// that cannot be used at all is a config error, exit 2.
func listenError(field string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s: %w", field, err)
	}
	return &configError{err: fmt.Errorf("%s: %w", field, err)}
}

// adminHandler serves the admin listener (admin_listen): GET /metrics and GET /healthz.
func adminHandler(mx *metrics.Prometheus) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", mx.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// store is a paynotify.Store with its lifecycle.
type store interface {
	paynotify.Store
	Migrate(ctx context.Context) error
	ApplyMigrations(ctx context.Context) ([]string, error)
	PendingMigrations(ctx context.Context) (int, error)
	MigrationStatus(ctx context.Context) ([]migrations.Status, error)
	Ping(ctx context.Context) error
	Close() error
}

// openStore opens the database of a DSN ("sqlite:PATH" or a postgres:// URL) and migrates it,
// or, with migrate false, refuses a schema with pending migrations.
func openStore(ctx context.Context, dsn string, migrate bool) (store, error) {
	return openStoreLogged(ctx, dsn, migrate, nil)
}

// openStoreLogged is openStore, logging the migrations it applied (which, and how long they
// took) to logger when it is not nil: an upgrade's schema change left no trace in the log, and a
// migration's failure no context (a reviewer helper's finding).
func openStoreLogged(ctx context.Context, dsn string, migrate bool, logger *slog.Logger) (store, error) {
	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok && path != "" && !migrate {
		// Not migrating, a missing SQLite file is refused as it is, not created empty first.
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, configErrorf("database: %s does not exist: start paynotify serve or run paynotify migrate first", path)
		}
	}
	s, err := openDatabase(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if migrate {
		start := time.Now()
		ours, river, err := applyMigrations(ctx, s)
		if logger != nil && (len(ours) > 0 || len(river) > 0 || err != nil) {
			var rv []string
			for _, m := range river {
				rv = append(rv, fmt.Sprintf("%d %s", m.Version, m.Name))
			}
			logger.Info("migrations applied", "paynotify", strings.Join(ours, ", "), "river", strings.Join(rv, ", "),
				"took", time.Since(start).Round(time.Millisecond), "failed", err != nil)
		}
		if err != nil {
			s.Close()
			return nil, err
		}
		return s, nil
	}
	n, err := s.PendingMigrations(ctx)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("check migrations: %w", err)
	}
	river, err := pendingJobMigrations(ctx, s)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("check migrations: %w", err)
	}
	if n > 0 || len(river) > 0 {
		s.Close()
		riverState := "up to date"
		if len(river) > 0 {
			riverState = strings.Join(river, "; ")
		}
		// Exit 1, not 2 (a config error): the unit restarts it, and it starts once the upgrade's
		// migrate step ran (with exit 2 a restart between the binary's replacement and that
		// step left the service down for good: a reviewer helper's finding).
		return nil, fmt.Errorf("database has pending migrations (paynotify: %d; River: %s) and this command does not migrate: run `paynotify migrate` on it first (with the same --config, or --database)",
			n, riverState)
	}
	return s, nil
}

// openDatabase opens the database of a DSN as it is, without migrating or checking it. A SQLite
// file that does not exist is created (its directory too, 0700).
func openDatabase(ctx context.Context, dsn string) (store, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return nil, configErrorf("database: sqlite: needs a path")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, configErrorf("database: %w", err)
		}
		db, err := sqlite.Open(path)
		if err != nil {
			return nil, configErrorf("database: %w", err)
		}
		return db, nil
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db, err := postgres.Open(ctx, dsn)
		if err != nil {
			// The driver's messages may quote the URL with the password cut at a character it
			// could not read ("p@ss:w%rd"): every form of the password is scrubbed.
			msg := scrubPassword(err.Error(), dsn)
			out := errors.New("database: " + msg)
			var pe *pgconn.ParseConfigError
			if errors.As(err, &pe) && leaksPasswordPieces(dsn) {
				// A URL the driver could not read may quote pieces of the password, split where
				// it stopped reading ("xxxxx@ss:xxxxxx@…", "w%rd@…"): none of its text is shown.
				out = fmt.Errorf("database: %s does not parse as a PostgreSQL URL (percent-encode the characters of the user name and password that are not letters or digits, such as @ : / %%)", redactDSN(dsn))
			}
			if postgresConfigFault(err) {
				return nil, &configError{err: out}
			}
			// Unreachable or failing (down, a failover, a timeout): exit 1, which a supervisor
			// restarts (deploy/paynotify.service refuses to restart on 2, a config error).
			return nil, out
		}
		return db, nil
	}
	return nil, configErrorf("database: %q is neither sqlite:PATH nor a postgres:// URL", redactDSN(dsn))
}

// leaksPasswordPieces reports whether the driver's message about dsn may show part of its
// password: when the URL does not parse as a URL, the driver cut it where it could (the password
// split at an "@", a "%" escape it could not read); when it parses, the driver read the password
// whole and masks it, and scrubPassword removes any copy.
func leaksPasswordPieces(dsn string) bool {
	_, err := url.Parse(dsn)
	return err != nil && len(dsnSecrets(dsn)) > 0
}

// postgresConfigFault reports whether err, from postgres.Open, is the config's fault, which a
// restart cannot fix: a URL that does not parse, a login refused (SQLSTATE class 28), a database
// that does not exist (3D000).
func postgresConfigFault(err error) bool {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return true
	}
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (strings.HasPrefix(pg.Code, "28") || pg.Code == "3D000")
}

// applyMigrations applies our pending migrations, then River's, and returns the ones it applied.
func applyMigrations(ctx context.Context, s store) ([]string, []jobs.Migration, error) {
	ours, err := s.ApplyMigrations(ctx)
	if err != nil {
		return ours, nil, fmt.Errorf("migrate: %w", err)
	}
	var river []jobs.Migration
	switch db := s.(type) {
	case *sqlite.DB:
		river, err = jobs.ApplySQLite(ctx, db.SQL())
	case *postgres.DB:
		river, err = jobs.ApplyPostgres(ctx, db.Pool())
	}
	if err != nil {
		return ours, river, fmt.Errorf("migrate: %w", err)
	}
	return ours, river, nil
}

// pendingJobMigrations lists River's migrations that the database lacks.
func pendingJobMigrations(ctx context.Context, s store) ([]string, error) {
	switch db := s.(type) {
	case *sqlite.DB:
		return jobs.PendingSQLite(ctx, db.SQL())
	case *postgres.DB:
		return jobs.PendingPostgres(ctx, db.Pool())
	}
	return nil, nil
}

// redactDSN hides the secrets of a database DSN: a URL's user info (user and password) and
// every query parameter whose name says password (pgx reads ?password=); in a DSN that is no
// URL, whatever follows password=.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" || u.Opaque != "" || u.User == nil {
		// Not read as a URL with its user info (an escape url.Parse refuses, as in "50%off"; an
		// unescaped "/" in the password; one slash after the scheme): everything between the
		// scheme and the last "@" is hidden.
		if i, j, ok := userInfo(dsn); ok {
			dsn = dsn[:i] + "…" + dsn[j:]
		}
		return dsnPassword.ReplaceAllString(dsn, "${1}…")
	}
	u.User = url.User("…") // set: the branch above took the rest
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			if strings.Contains(strings.ToLower(k), "password") {
				q.Set(k, "…")
			}
		}
		u.RawQuery = q.Encode()
	}
	return strings.ReplaceAll(u.String(), "%E2%80%A6", "…")
}

// redactNATSURL is redactDSN for nats.url, a comma-separated list of servers (as nats.go takes
// it), each with user info of its own: read as one URL, the second server's user:password@ was
// its path, and shown.
func redactNATSURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactNATSServer(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// redactNATSServer hides what lies between a server's scheme (or its start) and its last "@":
// user info wherever url.Parse would put it (a reviewer helper's finding: "h1;nats://v:pw@h2"
// kept the second password in the URL's path).
func redactNATSServer(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	start := 0
	if i := strings.Index(s, "://"); i >= 0 && i < at {
		start = i + len("://")
	}
	return s[:start] + "…" + s[at:]
}

// dsnPassword finds password=VALUE in a key=value DSN or a query string.
var dsnPassword = regexp.MustCompile(`(?i)(password=)[^ &]*`)

// dsnUserInfo finds what lies between a DSN's scheme (with its slashes) and its last "@".
var dsnUserInfo = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.\-]*):/*(.*)@`)

// userInfo returns where a DSN's user info lies as written, whatever bytes it holds: between
// its scheme and its last "@". A SQLite file's DSN (sqlite:, file:) has none: an "@" there is in
// the path. In an http(s) URL (public_url and the like) only a "user:password" before the "@"
// counts, so that an "@" in a path or query does not hide the host.
func userInfo(dsn string) (start, end int, ok bool) {
	m := dsnUserInfo.FindStringSubmatchIndex(dsn)
	if m == nil {
		return 0, 0, false
	}
	switch strings.ToLower(dsn[m[2]:m[3]]) {
	case "sqlite", "file":
		return 0, 0, false
	case "http", "https":
		if !strings.Contains(dsn[m[4]:m[5]], ":") {
			return 0, 0, false
		}
	}
	return m[4], m[5], true
}

// dsnSecrets returns the passwords a DSN holds: its URL user's, and every query parameter whose
// name says password.
func dsnSecrets(dsn string) []string {
	var out []string
	if u, err := url.Parse(dsn); err == nil {
		if u.User != nil {
			if pw, ok := u.User.Password(); ok && pw != "" {
				out = append(out, pw)
			}
		}
		for k, vs := range u.Query() {
			if strings.Contains(strings.ToLower(k), "password") {
				for _, v := range vs {
					if v != "" {
						out = append(out, v)
					}
				}
			}
		}
	}
	for _, m := range dsnPassword.FindAllString(dsn, -1) {
		if v := m[len("password="):]; v != "" {
			out = append(out, v)
		}
	}
	// The user info as written, when url.Parse refuses it or reads it otherwise: its password
	// raw and unescaped (messages of other packages may quote either).
	if i, j, ok := userInfo(dsn); ok {
		if _, pw, ok := strings.Cut(dsn[i:j], ":"); ok && pw != "" {
			out = append(out, pw)
			if p, err := url.PathUnescape(pw); err == nil && p != pw && p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
