// Package postgres implements the paynotify store interfaces on PostgreSQL with pgx, for
// several paynotify instances sharing one database.
//
// Times are timestamptz: kept to the microsecond (finer parts truncated) and read back as UTC.
// Event data is json (kept byte for byte), pay parameters and evidence bodies are bytea.
// Transactions run at READ COMMITTED; every order move is a compare-and-set on its version.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/paynotify/paynotify"
)

var _ paynotify.Store = (*DB)(nil)

// Advisory lock keys (pg_advisory_lock takes a bigint): one for migrations, one that orders the
// event log.
const (
	migrateLockKey int64 = 0x7061796e6f746966 // "paynotif"
	eventsLockKey  int64 = 0x7061796e6576656e // "payneven"
)

// DB is a paynotify store on a PostgreSQL database. It is safe for concurrent use, also by
// several processes on one database.
type DB struct {
	pool *pgxpool.Pool
	w    *writer
	// reruns counts the batches that ran again write by write (tests).
	reruns atomic.Int64
	// readHook, if set, runs just before a batch reads its decisions' orders (once its
	// unstorable keys are decided); its error fails the read (tests).
	readHook atomic.Pointer[func() error]
	// inflight is when each batch (or rerun write) now running started: Ping reports the
	// writer stuck when one has run longer than WriterStuckAfter.
	inflight inflightClock
	// batchTimeout bounds a batch and each rerun write (BatchTimeout), stuckAfter is Ping's
	// WriterStuckAfter: tests shorten them.
	batchTimeout, stuckAfter time.Duration

	// Now stamps rows the store writes on its own (anomalies, migrations). Defaults to time.Now.
	Now func() time.Time
}

// Open connects to the database at url (a postgres:// URL or key=value DSN; pgxpool settings
// such as pool_max_conns are accepted) and checks that it answers. Open does not migrate: call
// Migrate, or PendingMigrations to refuse an old schema.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's parse errors redact the password; do not add the URL ourselves.
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		return boundSessions(ctx, c, cfg.ConnConfig.RuntimeParams) // the URL's values are the operator's
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	db := &DB{pool: pool, Now: time.Now, batchTimeout: BatchTimeout, stuckAfter: WriterStuckAfter}
	db.w = newWriter(db)
	return db, nil
}

// IdleTransactionTimeout is idle_in_transaction_session_timeout on paynotify's sessions when
// neither the URL, the role nor the database sets one (a 0 from the role or the database cannot
// be told from PostgreSQL's default: to turn it off, set it to 0 in the URL). A batch holds the
// event log's lock from its events to its COMMIT; a process frozen in between (a stopped or
// paused VM, a partition without a reset) would otherwise hold every instance's writes until
// PostgreSQL noticed the session gone, hours later. PostgreSQL ends such a session after this time, its transaction
// rolled back (its callers were not answered: the providers retry). paynotify's own transactions
// are never idle that long.
const IdleTransactionTimeout = "60s"

// TCP keepalives and the user timeout that a new session gets when its own are looser (the
// operating system's defaults: two hours before the first probe): the server notices a client
// that vanished mid-batch within about a minute. A client cut off after the batch took the event
// log's lock but before the batch's Sync is "active", not idle in a transaction, so
// idle_in_transaction_session_timeout does not end it, and every instance's batches would wait
// for the lock until the server's keepalive fired (a reviewer helper's finding).
var sessionKeepalives = []struct {
	name  string
	value int // seconds; milliseconds for tcp_user_timeout
}{{"tcp_keepalives_idle", 30}, {"tcp_keepalives_interval", 10}, {"tcp_keepalives_count", 3}, {"tcp_user_timeout", 60000}}

// boundSessions sets, on a new connection, IdleTransactionTimeout when its
// idle_in_transaction_session_timeout is 0 (disabled, PostgreSQL's default), and each of
// sessionKeepalives when its value is 0 (the operating system's default) or looser; a setting the
// URL names is left as the operator set it.
func boundSessions(ctx context.Context, c *pgx.Conn, url map[string]string) error {
	if _, set := url["idle_in_transaction_session_timeout"]; !set {
		var v string
		if err := c.QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&v); err != nil {
			return fmt.Errorf("postgres: idle_in_transaction_session_timeout: %w", err)
		}
		if v == "0" {
			if _, err := c.Exec(ctx, `SET idle_in_transaction_session_timeout = '`+IdleTransactionTimeout+`'`); err != nil {
				return fmt.Errorf("postgres: set idle_in_transaction_session_timeout: %w", err)
			}
		}
	}
	for _, k := range sessionKeepalives {
		if _, set := url[k.name]; set {
			continue
		}
		var cur *int
		// current_setting in the GUC's base unit (seconds, or ms for tcp_user_timeout); 0 on a
		// Unix-domain socket, where these do nothing; NULL where the server has no such setting
		// (tcp_user_timeout before PostgreSQL 12).
		if err := c.QueryRow(ctx, `SELECT current_setting($1, true)::int`, k.name).Scan(&cur); err != nil {
			return fmt.Errorf("postgres: %s: %w", k.name, err)
		}
		if cur == nil || (*cur != 0 && *cur <= k.value) {
			continue
		}
		if _, err := c.Exec(ctx, fmt.Sprintf(`SET %s = %d`, k.name, k.value)); err != nil {
			return fmt.Errorf("postgres: set %s: %w", k.name, err)
		}
	}
	return nil
}

// BatchTimeout bounds a batch of the writer (and each write it runs again alone): past it, the
// batch's connection is closed and every write of it is answered failed (its COMMIT, if it was
// sent, may have committed: the provider's retry then meets the change as a duplicate). Without it
// a connection that went silent (a failover whose old server vanished without a reset) held both
// writers, and every notification of the instance, for as long as the operating system kept the
// socket: a quarter of an hour or more.
const BatchTimeout = 60 * time.Second

// WriterStuckAfter is how long a batch may run before Ping reports the writer stuck (serve's
// /readyz then answers 503, so that a load balancer sends notifications elsewhere).
const WriterStuckAfter = 20 * time.Second

// inflightClock keeps when each running batch started.
type inflightClock struct {
	mu      sync.Mutex
	next    uint64
	started map[uint64]time.Time
}

func (c *inflightClock) begin(at time.Time) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started == nil {
		c.started = map[uint64]time.Time{}
	}
	c.next++
	c.started[c.next] = at
	return c.next
}

func (c *inflightClock) end(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.started, id)
}

// oldest returns when the longest-running batch started, zero when none runs.
func (c *inflightClock) oldest() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var o time.Time
	for _, t := range c.started {
		if o.IsZero() || t.Before(o) {
			o = t
		}
	}
	return o
}

// Close closes the connection pool, after the writes already handed to the writer are done.
func (db *DB) Close() error {
	db.w.Close()
	db.pool.Close()
	return nil
}

// Pool returns the underlying pool, for health checks and tests.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

func (db *DB) now() time.Time {
	if db.Now != nil {
		return db.Now()
	}
	return time.Now()
}

// tm is what is stored for t: UTC, truncated to the microsecond (timestamptz's precision; pgx
// would truncate too, but saying it keeps both stores alike).
func tm(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func tmPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := tm(*t)
	return &u
}

// utcPtr returns a read nullable time in UTC.
func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func notFound(format string, args ...any) error {
	return paynotify.Errorf(paynotify.ENOTFOUND, format, args...)
}

// retryable reports whether err is a serialization failure or a deadlock: the transaction was
// rolled back as a whole and can run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// conds is the WHERE clause of a listing, made of the conditions of the filter fields that are
// set: a condition written to match everything when its argument is empty (app = $1 OR $1 is
// empty) could use no index in a cached generic plan.
type conds struct {
	terms []string
	args  []any
}

// arg adds an argument and returns its placeholder.
func (c *conds) arg(v any) string {
	c.args = append(c.args, v)
	return "$" + strconv.Itoa(len(c.args))
}

// add adds the condition term, whose one placeholder, written %s, takes v.
func (c *conds) add(term string, v any) { c.terms = append(c.terms, fmt.Sprintf(term, c.arg(v))) }

// where returns the WHERE clause, or "" when there is no condition.
func (c *conds) where() string {
	if len(c.terms) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(c.terms, " AND ")
}

func limit(n int) int {
	if n <= 0 {
		return 100
	}
	return n
}

func rollback(ctx context.Context, tx pgx.Tx) {
	// Bounded: a connection that just went silent must not hold the caller (a closed one
	// returns at once).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = tx.Rollback(rctx)
}

// inTx runs f in a transaction, again (up to three times) on a serialization failure or deadlock.
func (db *DB) inTx(ctx context.Context, f func(tx pgx.Tx) error) error {
	var err error
	for range 3 {
		err = db.tryTx(ctx, f)
		if !retryable(err) {
			return err
		}
	}
	return err
}

func (db *DB) tryTx(ctx context.Context, f func(tx pgx.Tx) error) error {
	tx, err := db.pool.BeginTx(ctx, readCommitted)
	if err != nil {
		return err
	}
	defer rollback(ctx, tx)
	if err := f(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// readCommitted is the isolation level every transaction of the store asks for, whatever the
// database's default_transaction_isolation: the checks that lock a row and then read others
// (CreateRefund's sum of an order's refunds after its FOR UPDATE) need each statement to see what
// committed before it; at repeatable read they read a snapshot older than the lock, and
// concurrent refunds all passed the amount check (a reviewer helper's finding).
var readCommitted = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if o := db.inflight.oldest(); !o.IsZero() {
		if d := time.Since(o); d > db.stuckAfter {
			return fmt.Errorf("postgres: ping: a batch of the writer has been running for %s (the database unreachable, or a lock held): notifications wait", d.Round(time.Second))
		}
	}
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// slowBatch is how long a batch may run before WriteHealth reports the writer failing: a provider
// waits about 5 seconds for an answer (WeChat Pay), and a batch normally takes milliseconds.
const slowBatch = 5 * time.Second

// WriteHealth reports the store's writes failing now (paynotify.WriteHealther): a batch of the
// writer has been running longer than slowBatch (the database unreachable, a lock held).
func (db *DB) WriteHealth() error {
	if o := db.inflight.oldest(); !o.IsZero() {
		if d := time.Since(o); d > slowBatch {
			return fmt.Errorf("postgres: a batch of the writer has been running for %s (the database unreachable, or a lock held)", d.Round(time.Second))
		}
	}
	return nil
}

// DatabaseNow returns the database server's time (the retention prune cuts by the earlier of it
// and its own process's clock: jobs.pruneNow).
func (db *DB) DatabaseNow(ctx context.Context) (time.Time, error) {
	var now time.Time
	if err := db.pool.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return time.Time{}, fmt.Errorf("postgres: now: %w", err)
	}
	return now, nil
}
