// Package jobs runs paynotify's background work on River (github.com/riverqueue/river), in the
// same database as the orders: riversqlite on SQLite, riverpgxv5 on PostgreSQL.
//
// One periodic job, the reconciliation sweep, runs every SweepInterval on whichever process River
// picks; the sweep itself (paynotify.Reconciler) claims the orders and refunds that are due
// through an index on the orders, so that no job is inserted per order and nothing on the
// notification path is a job. Sweeps of several processes may overlap: claims never do.
// docs/reconciliation.md has the timeline of a process that dies.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

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
	// rescueAfter is when River's rescuer gives up on a sweep job whose process died. Nothing
	// waits for it (the next sweeps run meanwhile); it only tidies the job table.
	rescueAfter = sweepTimeout + time.Minute
	// fetchInterval is how often a process looks for available jobs: River polls, it does not
	// listen (no LISTEN connection held on PostgreSQL, little idle load on SQLite).
	fetchInterval = time.Second
)

type sweepArgs struct{}

func (sweepArgs) Kind() string { return sweepKind }

func (sweepArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: sweepQueue, MaxAttempts: 1}
}

type sweepWorker struct {
	river.WorkerDefaults[sweepArgs]
	cfg *Config
}

func (w *sweepWorker) Timeout(*river.Job[sweepArgs]) time.Duration { return sweepTimeout }

func (w *sweepWorker) Work(ctx context.Context, _ *river.Job[sweepArgs]) error {
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

// Runner runs the background jobs of one process.
type Runner struct {
	cfg    *Config
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
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &sweepWorker{cfg: &cfg}); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	client, err := river.NewClient(driver, &river.Config{
		FetchPollInterval:    fetchInterval,
		JobTimeout:           sweepTimeout,
		Logger:               riverLogger(cfg.Logger),
		MaxAttempts:          1,
		PollOnly:             true,
		Queues:               map[string]river.QueueConfig{sweepQueue: {MaxWorkers: 1}},
		RescueStuckJobsAfter: rescueAfter,
		Workers:              workers,
		PeriodicJobs: []*river.PeriodicJob{river.NewPeriodicJob(river.PeriodicInterval(cfg.SweepInterval),
			func() (river.JobArgs, *river.InsertOpts) { return sweepArgs{}, nil },
			&river.PeriodicJobOpts{RunOnStart: true, ID: sweepKind})},
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	return &Runner{cfg: &cfg, start: client.Start, stop: client.Stop, cancel: client.StopAndCancel}, nil
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
// claimed finish, within ctx; then whatever still runs is cancelled, and its claims released.
// Nothing is left half applied: every change a check makes is one transaction.
func (r *Runner) Stop(ctx context.Context) error {
	r.cfg.Reconciler.Drain()
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
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("jobs: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1 # hashtextextended(current_schema(), 0))`, migrateLockKey); err != nil {
		return nil, fmt.Errorf("jobs: migrate: lock: %w", err)
	}
	defer func() {
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1 # hashtextextended(current_schema(), 0))`, migrateLockKey); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx)) // it may still hold the lock: do not pool it
		}
	}()
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
