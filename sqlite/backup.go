package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Backup writes a consistent copy of the database to path with VACUUM INTO: the database as one
// transaction saw it, taken while this process and others go on writing (in WAL mode a reader
// waits for no writer and no writer waits for it). The copy is compacted and has no -wal file:
// it is the whole database in one file.
//
// The copy's event counter is moved RestoreEventGap past the database's (moveEventCounter), so
// that a restored copy never numbers an event as one issued after the backup.
//
// path must not exist: Backup never overwrites a file (an existing path is an error wrapping
// fs.ErrExist). The copy is made, its event counter moved, synced to disk (VACUUM INTO does not
// sync) and checked with PRAGMA integrity_check under a temporary name beside path (mode 0600, as
// the database), and only then linked to path: a backup killed half way, or one that failed,
// leaves no file under path, only a temporary one (".<name>.partial-…", removed when Backup
// fails; not when the process is killed).
func (db *DB) Backup(ctx context.Context, path string) (err error) {
	if path == "" || path == ":memory:" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return fmt.Errorf("sqlite: backup: invalid path %q", path)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("sqlite: backup: %s: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	// The temporary file is created first, exclusively, with the mode: VACUUM INTO writes into
	// an existing file only when it is empty.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-*")
	if err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	tmp := f.Name()
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(tmp)
			os.Remove(tmp + "-journal")
		}
	}()
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	// On a connection of its own: VACUUM INTO writes the new file, which the read pool's
	// query_only forbids, and on the write connection it would hold this process's writes back
	// for as long as it reads. It only reads this database: it takes no write lock on it.
	c, err := sql.Open("sqlite", db.path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, `VACUUM INTO ?`, tmp); err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	c.Close()
	if err := moveEventCounter(ctx, tmp); err != nil {
		return fmt.Errorf("sqlite: backup: the copy: %w", err)
	}
	if err := syncFile(tmp); err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	if err := IntegrityCheck(ctx, tmp); err != nil {
		return fmt.Errorf("sqlite: backup: the copy: %w", err)
	}
	if backupHook != nil {
		if err := backupHook(tmp); err != nil {
			return err
		}
	}
	if err := publish(tmp, path); err != nil {
		return fmt.Errorf("sqlite: backup: %w", err)
	}
	return nil
}

// backupHook, when set, runs before a backup's copy is published under its name (tests).
var backupHook func(tmp string) error

// publish gives the finished copy at tmp the name path, which must not exist: a hard link, which
// refuses an existing name atomically, then tmp removed; on a file system without hard links, a
// rename after checking that path does not exist. The directory is synced.
func publish(tmp, path string) error {
	err := os.Link(tmp, path)
	switch {
	case errors.Is(err, fs.ErrExist):
		return err
	case err != nil:
		if _, serr := os.Lstat(path); serr == nil {
			return fmt.Errorf("%s: %w", path, fs.ErrExist)
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	default:
		if err := os.Remove(tmp); err != nil {
			return err
		}
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// RestoreEventGap is how far a backup's event counter is moved past the database's (Backup):
// more events than a database issues between two backups.
const RestoreEventGap = 1_000_000_000

// moveEventCounter moves the event log's counter of the copy at path RestoreEventGap past the
// database's. Restored, the copy would otherwise number new events with the numbers the database
// issued after the backup, which GET /v1/events clients may hold as their cursor: they would
// skip every new event up to it without an error (docs/deploy.md, "Restore"). A gap in the
// numbers is harmless: a cursor reads what follows it.
func moveEventCounter(ctx context.Context, path string) error {
	c, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetMaxOpenConns(1)
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE sqlite_sequence SET seq = seq + ? WHERE name = 'events'`, RestoreEventGap)
	if err != nil {
		return fmt.Errorf("move the event counter: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("move the event counter: %w", err)
	} else if n == 0 { // no event yet
		if _, err := tx.ExecContext(ctx, `INSERT INTO sqlite_sequence (name, seq) VALUES ('events', ?)`, RestoreEventGap); err != nil {
			return fmt.Errorf("move the event counter: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("move the event counter: %w", err)
	}
	return c.Close()
}

// IntegrityCheck runs PRAGMA integrity_check on the SQLite file at path, read-only, and returns an
// error naming the first problems it reports (nil when it answers "ok").
func IntegrityCheck(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	c, err := sql.Open("sqlite", path+"?_pragma=query_only(1)")
	if err != nil {
		return err
	}
	defer c.Close()
	rows, err := c.QueryContext(ctx, `PRAGMA integrity_check(10)`)
	if err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("integrity check: %w", err)
		}
		problems = append(problems, s)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check: %w", err)
	}
	if len(problems) == 1 && problems[0] == "ok" {
		return nil
	}
	if len(problems) == 0 {
		return errors.New("integrity check: no answer")
	}
	return fmt.Errorf("integrity check failed: %s", strings.Join(problems, "; "))
}

// syncFile flushes the file at path, and its directory entry, to disk.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
