// Package jobs runs paynotify's background work on River (github.com/riverqueue/river), in the
// same database as the orders: riversqlite on SQLite, riverpgxv5 on PostgreSQL.
//
// Two periodic jobs run on whichever process River picks (its leader). The reconciliation sweep
// runs every SweepInterval; the sweep itself (paynotify.Reconciler) claims the orders and refunds
// that are due through an index on the orders, so that no job is inserted per order and nothing
// on the notification path is a job. Sweeps of several processes may overlap: claims never do.
// docs/reconciliation.md has the timeline of a process that dies. The retention prune runs daily
// (and when a process becomes the leader) and deletes the evidence and webhook attempts older
// than their retention, in batches (docs/storage.md, "Retention"). River's own finished jobs are
// deleted by River's job cleaner, after the periods set here.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/paynotify/paynotify"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
)

// Config configures a Runner.
type Config struct {
	// Reconciler runs the sweeps. Required.
	Reconciler *paynotify.Reconciler
	// SweepInterval is how often a sweep is started. Defaults to 5s.
	SweepInterval time.Duration
	// Logger receives the runner's and River's warnings. Defaults to slog.Default().
	Logger *slog.Logger
	// OnSweep, if set, is called after each sweep (tests, metrics).
	OnSweep func(stats paynotify.SweepStats, err error)
	// Retention is what the prune job deletes; with both periods 0 there is no prune job. It
	// prunes the store of Reconciler.Service.
	Retention Retention
	// OnPrune, if set, is called after each prune (tests, metrics).
	OnPrune func(stats PruneStats, err error)
}

// Retention is what the daily prune job deletes (docs/storage.md, "Retention").
type Retention struct {
	// Evidence is how long evidence records are kept (paynotify.EvidenceStore.PruneEvidence:
	// those an anomaly names are always kept). 0 keeps them all.
	Evidence time.Duration
	// RejectedEvidence is how long rejected evidence records are kept, when shorter than
	// Evidence (PruneRejectedEvidence). 0: as the others.
	RejectedEvidence time.Duration
	// WebhookAttempts is how long webhook attempts, and deliveries no longer pending, are kept.
	// 0 keeps them all.
	WebhookAttempts time.Duration
	// Interval is how often the prune runs. Defaults to 24h. It also runs whenever a process
	// becomes River's leader (at start), so that restarts more often than Interval do not put it
	// off for ever.
	Interval time.Duration
	// Batch is the rows deleted per transaction. Defaults to PruneBatch.
	Batch int
}

// PruneBatch is the default of Retention.Batch: a transaction deletes at most this many rows, so
// that a prune holds the database's write lock (SQLite) or its row locks (PostgreSQL) for a short
// while at a time.
const PruneBatch = 1000

// PruneStats is what one prune deleted.
type PruneStats struct {
	Evidence          int64 // rejected records included
	RejectedEvidence  int64
	WebhookAttempts   int64
	WebhookDeliveries int64
	// OldSecrets is the endpoints whose previous secret, past its overlap, was forgotten.
	OldSecrets int64
}

// River settings. The sweep job may overlap with another (claims make that safe), so it is not
// unique: a sweep stuck on a dead process never holds the next one back. It is not retried
// either: the next tick is its retry.
const (
	sweepQueue = "paynotify_sweep"
	sweepKind  = "paynotify.reconcile_sweep"
	// sweepTimeout bounds one sweep job: its Budget of claiming (30s) plus the checks it claimed
	// (20s each at most), with room.
	sweepTimeout = 2 * time.Minute
	// fetchInterval is how often a process looks for available jobs: River polls, it does not
	// listen (no LISTEN connection held on PostgreSQL, little idle load on SQLite).
	fetchInterval = time.Second

	// The prune job, in a queue of its own so that it never holds a sweep back. Not retried:
	// the next day's prune goes on where it stopped.
	pruneQueue = "paynotify_prune"
	pruneKind  = "paynotify.retention_prune"
	// pruneTimeout bounds one prune: a first prune of a large backlog stops there, having
	// deleted what it could batch by batch, and the next one goes on.
	pruneTimeout = 30 * time.Minute
	// rescueAfter is when River's rescuer gives up on a job whose process died. Nothing waits
	// for it (the next sweeps and prunes run meanwhile); it only tidies the job table. It must
	// exceed the longest job timeout, or a prune still running would be taken for dead.
	rescueAfter = pruneTimeout + time.Minute
)

// River's job cleaner deletes finished jobs after these periods (River's defaults are 24 hours
// for completed and cancelled jobs, 7 days for discarded ones). The sweep completes a job every
// SweepInterval (17,280 a day at 5 s): an hour of them is enough to see that it runs. A
// discarded job is one that failed: it stays a week, for someone to look at.
const (
	completedJobRetention = time.Hour
	cancelledJobRetention = 24 * time.Hour
	discardedJobRetention = 7 * 24 * time.Hour
)

type sweepArgs struct{}

func (sweepArgs) Kind() string { return sweepKind }

func (sweepArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: sweepQueue, MaxAttempts: 1}
}

type sweepWorker struct {
	river.WorkerDefaults[sweepArgs]
	cfg *Config

	mu        sync.Mutex
	lastEnd   time.Time // when this process's last sweep ended (its monotonic clock)
	skewCheck time.Time // when the database's clock was last compared with this process's
}

// clockSkewWarn is the difference between this process's clock and the database's past which a
// sweep warns, at most every skewCheckEvery: claims (the reconciliation's, the webhooks') are
// made and leased on each process's own clock, so two instances whose clocks differ by more than
// a check's lease left can both take it (a reviewer helper's finding: 60 s apart, one order
// queried twice at once).
const (
	clockSkewWarn  = 5 * time.Second
	skewCheckEvery = 10 * time.Minute
)

// checkSkew warns when this process's clock and the database's (PostgreSQL, shared by instances)
// differ by more than clockSkewWarn.
func (w *sweepWorker) checkSkew(ctx context.Context) {
	c, ok := w.cfg.Reconciler.Service.Store.(databaseClock)
	if !ok {
		return // SQLite: the database's clock is this machine's
	}
	w.mu.Lock()
	due := w.skewCheck.IsZero() || time.Since(w.skewCheck) >= skewCheckEvery
	if due {
		w.skewCheck = time.Now()
	}
	w.mu.Unlock()
	if !due {
		return
	}
	before := time.Now()
	db, err := c.DatabaseNow(ctx)
	if err != nil {
		return
	}
	rtt := time.Since(before)
	skew := before.Add(rtt / 2).Sub(db)
	if skew.Abs() > clockSkewWarn+rtt {
		w.cfg.Logger.Warn("this process's clock differs from the database's: instances whose clocks differ take each other's reconciliation and webhook claims early (a check or delivery run twice at once); sync the clocks (NTP)",
			"ahead", skew.Round(time.Millisecond))
	}
}

func (w *sweepWorker) Timeout(*river.Job[sweepArgs]) time.Duration { return sweepTimeout }

func (w *sweepWorker) Work(ctx context.Context, job *river.Job[sweepArgs]) error {
	w.mu.Lock()
	sinceLast := time.Since(w.lastEnd)
	w.mu.Unlock()
	if sinceLast < w.cfg.SweepInterval/2 && time.Since(job.ScheduledAt) > staleSweep(w.cfg.SweepInterval) {
		// A tick that waited behind a long sweep of this process (a queue of due checks: a sweep
		// runs up to its budget, 30 s, and a tick comes every SweepInterval, 5 s), taken right
		// after it: the next fresh one does the work. Run, the stale ticks ran back to back, each
		// a claim transaction, and piled up in the job table for as long as the queue lasted (a
		// reviewer helper's finding). Both conditions: the tick's time is the clock of whoever
		// scheduled it, and a clock behind ours alone must not skip every tick; this process's
		// last sweep is on its own clock. Not unique jobs instead: a unique key held by a sweep
		// whose process died would stop the sweeps until River's rescuer, half an hour later.
		w.cfg.Logger.Debug("reconciliation sweep: a stale tick skipped", "scheduled_at", job.ScheduledAt)
		return nil
	}
	defer func() {
		w.mu.Lock()
		w.lastEnd = time.Now()
		w.mu.Unlock()
	}()
	w.checkSkew(ctx)
	stats, err := w.cfg.Reconciler.Sweep(ctx)
	if w.cfg.OnSweep != nil {
		w.cfg.OnSweep(stats, err)
	}
	if err != nil {
		w.cfg.Logger.Error("reconciliation sweep", "err", err)
		return err
	}
	if stats != (paynotify.SweepStats{}) {
		w.cfg.Logger.Info("reconciliation sweep", "checked", stats.Checked, "released", stats.Released, "errors", stats.Errors)
	}
	return nil
}

// staleSweep is how late a sweep's tick may start: three intervals, and at least a minute so that
// a clock some seconds apart from the one that scheduled the tick (another instance's, on
// PostgreSQL) never skips them all.
func staleSweep(interval time.Duration) time.Duration {
	return max(3*interval, time.Minute)
}

// databaseClock is a store that tells its database's time (postgres.DB).
type databaseClock interface {
	DatabaseNow(ctx context.Context) (time.Time, error)
}

// pruneNow is the time a prune cuts from: this process's clock, or the database's when that is
// behind. A prune deletes for good, and with several instances on one PostgreSQL the one that
// prunes is whichever River made leader: one whose clock ran ahead (a restored VM, a bad RTC)
// deleted evidence and webhook attempts before their time (a reviewer helper's finding).
func pruneNow(ctx context.Context, st paynotify.Store, logger *slog.Logger) time.Time {
	now := time.Now()
	c, ok := st.(databaseClock)
	if !ok {
		return now // SQLite: the database's clock is this machine's
	}
	db, err := c.DatabaseNow(ctx)
	if err != nil {
		logger.Warn("retention: the database's clock could not be read: pruning by this process's", "err", err)
		return now
	}
	if !db.Before(now) {
		return now
	}
	if ahead := now.Sub(db); ahead > time.Minute {
		logger.Warn("retention: this process's clock is ahead of the database's: pruning by the database's", "ahead", ahead.Round(time.Second))
	}
	return db
}

type pruneArgs struct{}

func (pruneArgs) Kind() string { return pruneKind }

func (pruneArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: pruneQueue, MaxAttempts: 1}
}

type pruneWorker struct {
	river.WorkerDefaults[pruneArgs]
	cfg  *Config
	quit <-chan struct{} // closed by Runner.Stop
}

func (w *pruneWorker) Timeout(*river.Job[pruneArgs]) time.Duration { return pruneTimeout }

// Work prunes. Runner.Stop ends it between two batches (each batch is committed or rolled back
// whole; what was deleted stays deleted), so that a long prune never holds a shutdown up.
func (w *pruneWorker) Work(ctx context.Context, _ *river.Job[pruneArgs]) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-w.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	stats, err := Prune(ctx, w.cfg.Reconciler.Service.Store, w.cfg.Retention, pruneNow(ctx, w.cfg.Reconciler.Service.Store, w.cfg.Logger))
	stopped := false
	if err != nil {
		select {
		case <-w.quit: // not a failure: the next prune goes on
			stopped, err = true, nil
		default:
		}
	}
	if w.cfg.OnPrune != nil {
		w.cfg.OnPrune(stats, err)
	}
	log := []any{"evidence", stats.Evidence, "rejected_evidence", stats.RejectedEvidence, "webhook_attempts", stats.WebhookAttempts, "webhook_deliveries", stats.WebhookDeliveries,
		"old_webhook_secrets", stats.OldSecrets}
	if err != nil {
		w.cfg.Logger.Error("retention prune", append(log, "err", err)...)
		return err
	}
	if stopped {
		log = append(log, "stopped", "shutdown")
	}
	w.cfg.Logger.Info("retention prune", log...)
	return nil
}

// Prune deletes from st what r says is past its retention at now: the evidence, then the webhook
// attempts and the deliveries no longer pending, r.Batch rows per transaction (defaults applied);
// then it forgets the webhook secrets rotated away whose overlap has ended.
// It returns the rows deleted, also when it stops on an error (ctx ended, the database failed).
func Prune(ctx context.Context, st paynotify.Store, r Retention, now time.Time) (PruneStats, error) {
	var stats PruneStats
	if r.Batch <= 0 {
		r.Batch = PruneBatch
	}
	var errs []error
	if r.Evidence > 0 {
		n, err := st.PruneEvidence(ctx, now.Add(-r.Evidence), r.Batch)
		stats.Evidence = n
		errs = append(errs, err)
	}
	if r.RejectedEvidence > 0 && (r.Evidence == 0 || r.RejectedEvidence < r.Evidence) && ctx.Err() == nil {
		n, err := st.PruneRejectedEvidence(ctx, now.Add(-r.RejectedEvidence), r.Batch)
		stats.Evidence += n
		stats.RejectedEvidence = n
		errs = append(errs, err)
	}
	if r.WebhookAttempts > 0 && ctx.Err() == nil {
		a, d, err := st.PruneWebhooks(ctx, now.Add(-r.WebhookAttempts), r.Batch)
		stats.WebhookAttempts, stats.WebhookDeliveries = a, d
		errs = append(errs, err)
	}
	if ctx.Err() == nil {
		n, err := st.DropOldSecrets(ctx, now)
		stats.OldSecrets = n
		errs = append(errs, err)
	}
	return stats, errors.Join(errs...)
}

// Runner runs the background jobs of one process.
type Runner struct {
	cfg    *Config
	quit   chan struct{}
	once   sync.Once
	start  func(ctx context.Context) error
	stop   func(ctx context.Context) error
	cancel func(ctx context.Context) error
}

// NewSQLite returns a Runner on the SQLite database db: the store's own handle, whose single
// connection River shares (its transactions are short, and it holds none while a job runs).
func NewSQLite(db *sql.DB, cfg Config) (*Runner, error) {
	return newRunner(riversqlite.New(db), cfg)
}

// NewPostgres returns a Runner on the PostgreSQL pool of the store.
func NewPostgres(pool *pgxpool.Pool, cfg Config) (*Runner, error) {
	return newRunner(riverpgxv5.New(pool), cfg)
}

func newRunner[TTx any](driver riverdriver.Driver[TTx], cfg Config) (*Runner, error) {
	if cfg.Reconciler == nil {
		return nil, errors.New("jobs: a Reconciler is required")
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Retention.Evidence < 0 || cfg.Retention.WebhookAttempts < 0 || cfg.Retention.RejectedEvidence < 0 {
		return nil, errors.New("jobs: a retention period is negative")
	}
	prunes := cfg.Retention.Evidence > 0 || cfg.Retention.WebhookAttempts > 0 || cfg.Retention.RejectedEvidence > 0
	if prunes && (cfg.Reconciler.Service == nil || cfg.Reconciler.Service.Store == nil) {
		return nil, errors.New("jobs: the prune needs the store of Reconciler.Service")
	}
	if cfg.Retention.Interval <= 0 {
		cfg.Retention.Interval = 24 * time.Hour
	}
	r := &Runner{cfg: &cfg, quit: make(chan struct{})}
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &sweepWorker{cfg: &cfg}); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	queues := map[string]river.QueueConfig{sweepQueue: {MaxWorkers: 1}}
	periodic := []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(cfg.SweepInterval),
		func() (river.JobArgs, *river.InsertOpts) { return sweepArgs{}, nil },
		&river.PeriodicJobOpts{RunOnStart: true, ID: sweepKind})}
	if prunes {
		if err := river.AddWorkerSafely(workers, &pruneWorker{cfg: &cfg, quit: r.quit}); err != nil {
			return nil, fmt.Errorf("jobs: %w", err)
		}
		queues[pruneQueue] = river.QueueConfig{MaxWorkers: 1}
		periodic = append(periodic, river.NewPeriodicJob(river.PeriodicInterval(cfg.Retention.Interval),
			func() (river.JobArgs, *river.InsertOpts) { return pruneArgs{}, nil },
			&river.PeriodicJobOpts{RunOnStart: true, ID: pruneKind}))
	}
	client, err := river.NewClient(driver, &river.Config{
		CancelledJobRetentionPeriod: cancelledJobRetention,
		CompletedJobRetentionPeriod: completedJobRetention,
		DiscardedJobRetentionPeriod: discardedJobRetention,
		FetchPollInterval:           fetchInterval,
		JobTimeout:                  sweepTimeout,
		Logger:                      riverLogger(cfg.Logger),
		MaxAttempts:                 1,
		PollOnly:                    true,
		Queues:                      queues,
		RescueStuckJobsAfter:        rescueAfter,
		Workers:                     workers,
		PeriodicJobs:                periodic,
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	r.start, r.stop, r.cancel = client.Start, client.Stop, client.StopAndCancel
	return r, nil
}

// riverLogger keeps River's own chatter (leadership, maintenance) out of the info log.
func riverLogger(l *slog.Logger) *slog.Logger {
	return slog.New(levelFloor{l.Handler(), slog.LevelWarn}).With("component", "river")
}

// levelFloor drops records below a level.
type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (h levelFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelFloor) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFloor{h.Handler.WithAttrs(a), h.min}
}

func (h levelFloor) WithGroup(g string) slog.Handler {
	return levelFloor{h.Handler.WithGroup(g), h.min}
}

// Start starts the jobs; they run until Stop.
func (r *Runner) Start(ctx context.Context) error {
	if err := r.start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("jobs: start: %w", err)
	}
	return nil
}

// Stop ends the jobs gracefully: sweeps stop claiming at once (Reconciler.Drain), the checks they
// started finish, within ctx, and those not started are given back; a prune stops between
// batches; then whatever still runs is cancelled, and its claims released. Nothing is left half
// applied: every change a check makes is one transaction, and so is every batch of a prune.
func (r *Runner) Stop(ctx context.Context) error {
	r.cfg.Reconciler.Drain()
	r.once.Do(func() { close(r.quit) })
	if err := r.stop(ctx); err == nil {
		return nil
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.cancel(hctx); err != nil {
		return fmt.Errorf("jobs: stop: %w", err)
	}
	return nil
}

// Migration is one of River's migrations: its version, River's name for it ("initial schema") and
// whether the database has applied it.
type Migration struct {
	Version int
	Name    string
	Applied bool
}

// MigrateSQLite applies River's migrations to the SQLite database (ApplySQLite).
func MigrateSQLite(ctx context.Context, db *sql.DB) error {
	_, err := ApplySQLite(ctx, db)
	return err
}

// ApplySQLite applies River's migrations to the SQLite database, one at a time, and returns the
// ones it applied (none when the database was up to date). Another process migrating the same
// file at the same moment can make a step fail although the schema ends complete (River takes no
// lock there): the step is tried again.
func ApplySQLite(ctx context.Context, db *sql.DB) ([]Migration, error) {
	m, err := rivermigrate.New(riversqlite.New(db), migrateConfig)
	if err != nil {
		return nil, fmt.Errorf("jobs: migrate: %w", err)
	}
	var applied []Migration
	for {
		var res *rivermigrate.MigrateResult
		for attempt := 1; ; attempt++ {
			res, err = m.Migrate(ctx, rivermigrate.DirectionUp, &rivermigrate.MigrateOpts{MaxSteps: 1})
			if err == nil || attempt == 5 || ctx.Err() != nil {
				break
			}
			time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
		}
		if err != nil {
			return applied, fmt.Errorf("jobs: migrate: %w", err)
		}
		if len(res.Versions) == 0 {
			return applied, nil
		}
		for _, v := range res.Versions {
			applied = append(applied, Migration{Version: v.Version, Name: v.Name, Applied: true})
		}
	}
}

// migrateConfig keeps River's migrator quiet: callers report what it applied.
var migrateConfig = &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)}

// migrateLockKey serialises River's migrations of one PostgreSQL schema between processes: River
// takes no lock of its own.
const migrateLockKey int64 = 0x7061797269766572 // "payriver"

// MigratePostgres applies River's migrations to the current schema of the pool's database
// (ApplyPostgres).
func MigratePostgres(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := ApplyPostgres(ctx, pool)
	return err
}

// ApplyPostgres applies River's migrations to the current schema of the pool's database, under a
// session advisory lock per schema, and returns the ones it applied (none when the schema was up
// to date, or another process applied them while this one waited for the lock).
func ApplyPostgres(ctx context.Context, pool *pgxpool.Pool) ([]Migration, error) {
	// The lock is held on a connection of its own, outside the pool: River's migrator takes its
	// connections from the pool, and with the lock on one of them a pool of one connection
	// (pool_max_conns=1) waited for ever, holding the lock every other instance then waited for
	// (a reviewer helper's finding).
	pcfg := pool.Config()
	conn, err := pgx.ConnectConfig(ctx, pcfg.ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("jobs: migrate: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx)) // closing it also ends the lock, whatever happened
	// The session settings the pool's connections get (postgres.Open: TCP keepalives, the idle
	// transaction timeout), so that a host that froze while migrating does not hold the lock for
	// the kernel's two hours (a reviewer of this change).
	if pcfg.AfterConnect != nil {
		if err := pcfg.AfterConnect(ctx, conn); err != nil {
			return nil, fmt.Errorf("jobs: migrate: %w", err)
		}
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1 # hashtextextended(current_schema(), 0))`, migrateLockKey); err != nil {
		return nil, fmt.Errorf("jobs: migrate: lock: %w", err)
	}
	m, err := rivermigrate.New(riverpgxv5.New(pool), migrateConfig)
	if err != nil {
		return nil, fmt.Errorf("jobs: migrate: %w", err)
	}
	res, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return nil, fmt.Errorf("jobs: migrate: %w", err)
	}
	var applied []Migration
	for _, v := range res.Versions {
		applied = append(applied, Migration{Version: v.Version, Name: v.Name, Applied: true})
	}
	return applied, nil
}

// StatusSQLite lists every River migration this binary has, in version order, with whether the
// SQLite database has applied it. It writes nothing.
func StatusSQLite(ctx context.Context, db *sql.DB) ([]Migration, error) {
	return status(ctx, riversqlite.New(db))
}

// StatusPostgres is StatusSQLite on the current schema of a PostgreSQL database.
func StatusPostgres(ctx context.Context, pool *pgxpool.Pool) ([]Migration, error) {
	return status(ctx, riverpgxv5.New(pool))
}

func status[TTx any](ctx context.Context, driver riverdriver.Driver[TTx]) ([]Migration, error) {
	m, err := rivermigrate.New(driver, migrateConfig)
	if err != nil {
		return nil, fmt.Errorf("jobs: migrations: %w", err)
	}
	// A version applied by a newer River is an error here ("not found in migrator bundle").
	existing, err := m.ExistingVersions(ctx)
	if err != nil {
		return nil, fmt.Errorf("jobs: migrations: %w", err)
	}
	applied := map[int]bool{}
	for _, v := range existing {
		applied[v.Version] = true
	}
	var out []Migration
	for _, v := range m.AllVersions() {
		out = append(out, Migration{Version: v.Version, Name: v.Name, Applied: applied[v.Version]})
	}
	return out, nil
}

// PendingSQLite returns River's migrations that the SQLite database lacks, as River words them
// (none when it is up to date).
func PendingSQLite(ctx context.Context, db *sql.DB) ([]string, error) {
	return pending(ctx, riversqlite.New(db))
}

// PendingPostgres is PendingSQLite on PostgreSQL.
func PendingPostgres(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	return pending(ctx, riverpgxv5.New(pool))
}

func pending[TTx any](ctx context.Context, driver riverdriver.Driver[TTx]) ([]string, error) {
	m, err := rivermigrate.New(driver, nil)
	if err != nil {
		return nil, fmt.Errorf("jobs: migrations: %w", err)
	}
	res, err := m.Validate(ctx, nil)
	if err != nil {
		if strings.Contains(err.Error(), "river_migration") { // no table yet: nothing applied
			return []string{"River's tables do not exist"}, nil
		}
		return nil, fmt.Errorf("jobs: migrations: %w", err)
	}
	if res.OK {
		return nil, nil
	}
	return res.Messages, nil
}
