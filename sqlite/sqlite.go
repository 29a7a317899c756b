// Package sqlite implements the paynotify store interfaces on one SQLite file, with the pure-Go
// driver modernc.org/sqlite: WAL, synchronous=FULL (a commit is on disk when Commit returns),
// foreign keys on, one write connection whose request-path writes are group-committed by one
// writer goroutine (writer.go), and a pool of read connections beside it.
//
// Times are stored as fixed-width UTC text with microsecond precision (finer parts are
// truncated, as on PostgreSQL) and read back as UTC. JSON (order pay parameters, event data) is
// kept byte for byte.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paynotify/paynotify"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

var _ paynotify.Store = (*DB)(nil)

// DB is a paynotify store on one SQLite file. It is safe for concurrent use.
type DB struct {
	db   *sql.DB // the write connection (one), shared with River
	rd   *sql.DB // read connections: reads never wait behind a commit
	w    *writer
	path string

	files     fileGuard // the files opened, and whether they changed (files.go)
	filesPath string    // path made absolute, symbolic links followed: where SQLite keeps -wal and -shm
	anchor    *sql.Conn // a read connection held open for the store's life (Open)
	// lastFailure is the last batch, when it failed as a whole (writer.go); nil once one commits.
	lastFailure atomic.Pointer[batchFailure]

	stmtMu sync.Mutex                 // held while preparing
	stmts  atomic.Pointer[statements] // prepared on first use (stmt.go)

	// Now stamps rows the store writes on its own (anomalies, migrations). Defaults to time.Now.
	Now func() time.Time
}

// Open opens (creating it, mode 0600, if needed) the SQLite database at path. The directory must
// exist. Open does not migrate: call Migrate, or PendingMigrations to refuse an old schema.
func Open(path string) (*DB, error) {
	if path == "" || path == ":memory:" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: open: invalid path %q", path)
	}
	// Create the file ourselves so that it is 0600; SQLite gives its -wal and -shm files the
	// same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	f.Close()

	// _txlock=immediate: write transactions take the write lock at BEGIN, so that two
	// transactions never both read and then both try to upgrade (SQLITE_BUSY, not retried by
	// busy_timeout). busy_timeout waits for another process holding the lock.
	dsn := path + "?_txlock=immediate" +
		"&_pragma=busy_timeout(5000)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(FULL)" +
		"&_pragma=foreign_keys(1)" +
		// Savepoints (one per write of a batch that runs with them) journal the pages they touch: in memory.
		"&_pragma=temp_store(MEMORY)" +
		// A WAL that grew while a long read held its checkpoints back (a forgotten sqlite3
		// shell, a backup tool) is cut back to this at its next reset instead of keeping its
		// peak size on disk for good (a reviewer helper's finding: 89 MB after 3,000 orders).
		"&_pragma=journal_size_limit(67108864)" +
		mmapPragma
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	// One connection: SQLite has one writer anyway, and with a single connection writers queue
	// in database/sql instead of contending for the file lock (no SQLITE_BUSY inside the
	// process), and read-your-writes holds trivially. Reads wait behind a write transaction;
	// our transactions are short.
	sdb.SetMaxOpenConns(1)
	sdb.SetMaxIdleConns(1)
	sdb.SetConnMaxIdleTime(0)
	sdb.SetConnMaxLifetime(0)

	// The first connection runs the pragmas. Switching a new file to WAL needs the file to
	// itself and SQLite answers SQLITE_BUSY at once, without the busy timeout, when another
	// process opens the same new file at that moment: retry for a while.
	var mode string
	for deadline := time.Now().Add(5 * time.Second); ; {
		err = sdb.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
		if err == nil || !strings.Contains(err.Error(), "SQLITE_BUSY") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		sdb.Close()
		return nil, fmt.Errorf("sqlite: open: journal_mode is %q, want wal", mode)
	}
	// Reads run on connections of their own: in WAL mode a reader sees the last commit and
	// never waits for the writer, so loading an order does not queue behind a batch's fsync.
	// query_only makes a write sent here by mistake fail instead of contending for the lock.
	rd, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)&_pragma=foreign_keys(1)"+mmapPragma)
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	rd.SetMaxOpenConns(readConns + 1)
	rd.SetMaxIdleConns(readConns + 1)
	rd.SetConnMaxIdleTime(0)
	rd.SetConnMaxLifetime(0)
	db := &DB{db: sdb, rd: rd, path: path, filesPath: resolvedPath(path), Now: time.Now}
	// A connection held open for the store's life (outside any transaction: it holds no
	// snapshot and stops no checkpoint), so that SQLite never removes and recreates the -wal and
	// -shm files while the store is open, whatever its pools do: the files are then the same
	// until someone else removes them (checkFiles).
	if db.anchor, err = rd.Conn(context.Background()); err == nil {
		var v int64
		err = db.anchor.QueryRowContext(context.Background(), `PRAGMA schema_version`).Scan(&v)
	}
	if err != nil {
		if db.anchor != nil {
			db.anchor.Close()
		}
		rd.Close()
		sdb.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if err := db.checkFiles(); err != nil {
		db.anchor.Close()
		rd.Close()
		sdb.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	db.w = newWriter(db)
	return db, nil
}

// mmapPragma has SQLite read the database file through a memory map of up to 1 GiB instead of
// a read system call per page: a notification's order lookup and index updates touch a few
// pages each, and the calls were a tenth of the server's CPU under load (docs/performance.md).
// Writes still go through the WAL file.
const mmapPragma = "&_pragma=mmap_size(1073741824)"

// readConns is the size of the read pool: enough for the request handlers of two cores to read
// while a batch commits, few enough that their page caches stay small.
const readConns = 8

// SQL returns the database handle and its single connection, for River (package jobs), which
// shares the store's write path: code holding a transaction on it must do all its work on that
// transaction, or it waits for itself.
func (db *DB) SQL() *sql.DB { return db.db }

// Path returns the path of the database file.
func (db *DB) Path() string { return db.path }

// Close closes the database, after the writes already handed to the writer are committed.
func (db *DB) Close() error {
	db.w.Close()
	if errors.Is(db.filesBroken(), errFilesChanged) {
		// Its files changed under it: closing the last connection would have SQLite checkpoint
		// with an index no longer the one other processes use, and remove the -wal by its name,
		// another process's commits with it (a reviewer helper's finding). The connections are
		// left to the process's exit, which removes nothing.
		return db.filesBroken()
	}
	db.stmtMu.Lock()
	if st := db.stmts.Load(); st != nil {
		st.close()
	}
	db.stmtMu.Unlock()
	if db.anchor != nil { // none for OpenReadOnly's
		db.anchor.Close()
	}
	rerr := db.rd.Close()
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("sqlite: close: %w", rerr)
	}
	return nil
}

func (db *DB) now() time.Time {
	if db.Now != nil {
		return db.Now()
	}
	return time.Now()
}

// timeLayout stores times as fixed-width UTC text: it sorts as a string, and keeps microseconds
// (the precision PostgreSQL keeps, so that both stores answer alike).
const timeLayout = "2006-01-02T15:04:05.000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func formatTimePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return formatTime(*t)
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse time %q: %w", s, err)
	}
	return t.UTC(), nil
}

// parseTimeNull reads a nullable time column: NULL is nil.
func parseTimeNull(s sql.NullString) (*time.Time, error) {
	if !s.Valid {
		return nil, nil
	}
	t, err := parseTime(s.String)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// truncTime is what a stored time reads back as.
func truncTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nullText stores an empty JSON value as NULL and anything else as its exact text.
func nullText(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// nullBytes stores nil as NULL and anything else (empty included) as a BLOB.
func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// scanner is *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

func notFound(format string, args ...any) error {
	return paynotify.Errorf(paynotify.ENOTFOUND, format, args...)
}

// conds is the WHERE clause of a listing, made of the conditions of the filter fields that are
// set: SQLite plans a statement before its arguments are bound, so a condition written to match
// everything when its argument is empty (app = ? OR ? is empty) could use no index.
type conds struct {
	terms []string
	args  []any
}

// add adds the condition term, whose one placeholder takes arg.
func (c *conds) add(term string, arg any) {
	c.terms = append(c.terms, term)
	c.args = append(c.args, arg)
}

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

// rollback ends tx when it was not committed.
func rollback(tx *sql.Tx) { _ = tx.Rollback() }

// WriteHealth reports the store's writes failing now (paynotify.WriteHealther): its files changed
// under it, or its last batch failed as a whole within failingFor with none committed since.
func (db *DB) WriteHealth() error {
	if err := db.filesBroken(); err != nil {
		return err
	}
	if f := db.lastFailure.Load(); f != nil && time.Since(f.at) < failingFor {
		return fmt.Errorf("sqlite: the last write batch failed %s ago, and none committed since: %w", time.Since(f.at).Round(time.Second), f.err)
	}
	return nil
}

// Ping checks that the database answers, on the read pool: the write connection is the group
// commit's only one, and a ping there would wait for (and hold up) a batch.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.WriteHealth(); err != nil {
		return err
	}
	// A read of the file's header, not the driver's `select 1`, which reads nothing.
	var v int64
	if err := db.rd.QueryRowContext(ctx, `PRAGMA schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}
