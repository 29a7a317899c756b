package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"
)

// OpenReadOnly opens the existing SQLite database at path for reading only, for commands that
// inspect a database without changing it (paynotify doctor). It never creates the file: a
// missing file is an error matching fs.ErrNotExist. Every write through the returned DB fails.
//
// A database that a process has open in WAL mode (its -wal file exists from that process's first
// read on) is read through the WAL, as that process sees it. Otherwise the file is opened
// immutable, so that reading it creates no -wal and -shm files beside it (a read-only connection
// cannot remove them afterwards); a writer that starts at that very moment may then make a read
// fail or see the file as it was, never the file change.
func OpenReadOnly(path string) (*DB, error) {
	if path == "" || path == ":memory:" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: open: invalid path %q", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("sqlite: open: %s is not a regular file", path)
	}
	// A URI (SQLite's file: form) is the only way to ask for mode=ro, which never creates the
	// file; the path is escaped as a URI path.
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?mode=ro"
	if _, err := os.Stat(path + "-wal"); errors.Is(err, fs.ErrNotExist) {
		dsn += "&immutable=1"
	}
	dsn += "&_pragma=busy_timeout(5000)&_pragma=query_only(1)"
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	rd, err := sql.Open("sqlite", dsn)
	if err != nil {
		sdb.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	sdb.SetMaxOpenConns(1)
	rd.SetMaxOpenConns(2)
	db := &DB{db: sdb, rd: rd, path: path, Now: time.Now}
	db.w = newWriter(db)
	return db, nil
}
