package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// The database's files under a running server (docs/storage.md, "The files under a running
// server"). SQLite keeps writing to the files it has open, whatever their names now point to: a
// `-wal` removed by hand goes on taking commits into a file that no longer has a name, and they
// are gone at the next crash or restart, acknowledged payments with them; a `-shm` removed lets
// another process (paynotify reconcile, a backup) write beside the server without seeing its
// locks. A reviewer helper's finding: nothing noticed, and /readyz said ok.

// errFilesChanged marks the store's failure after its files were removed or replaced.
var errFilesChanged = errors.New("sqlite: the database's files changed under the running server")

// fileGuard remembers the files the store opened and whether it found them changed.
type fileGuard struct {
	mu           sync.Mutex
	db, wal, shm os.FileInfo
	broken       error
	// salvage: the database file is still the one opened, and the commits only the vanished
	// -wal holds are yet to be copied into it (salvage).
	salvage bool
}

// checkFiles compares the files at the database's names with the ones the store opened (taken
// at its first call). Once they differ it fails for good: every batch from then on fails (no
// provider is answered success), Ping reports it, and only a restart reopens the files.
func (db *DB) checkFiles() error {
	g := &db.files
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.broken != nil {
		return g.broken
	}
	base := db.filesPath
	if base == "" {
		base = db.path
	}
	names := []string{base, base + "-wal", base + "-shm"}
	seen := make([]os.FileInfo, len(names))
	for i, name := range names {
		fi, err := os.Stat(name)
		switch {
		case err == nil:
			seen[i] = fi
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("sqlite: stat %s: %w", name, err) // this batch only
		case g.db == nil:
			return nil // not all there yet (a new database): taken at a later batch
		}
	}
	if g.db == nil {
		g.db, g.wal, g.shm = seen[0], seen[1], seen[2]
		return nil
	}
	for i, was := range []os.FileInfo{g.db, g.wal, g.shm} {
		if seen[i] == nil || !os.SameFile(was, seen[i]) {
			what := "removed"
			if seen[i] != nil {
				what = "replaced"
			}
			g.broken = fmt.Errorf("%w: %s was %s; no write is committed until paynotify restarts (what was committed before is checkpointed into the database file when it is still the one opened): restart it, and never remove a database's -wal or -shm file while a process has it open",
				errFilesChanged, names[i], what)
			g.salvage = i > 0
			return g.broken
		}
	}
	return nil
}

// salvageCommits copies into the database file, once, the commits that only the -wal the store
// has open holds, when checkFiles found that file (or the -shm) removed or replaced but the
// database file still the one opened: a restart then keeps them. Run on the write connection
// between batches (never inside one: the connection is the batch's).
func (db *DB) salvageCommits() {
	db.files.mu.Lock()
	due := db.files.salvage
	db.files.salvage = false
	db.files.mu.Unlock()
	if !due {
		return
	}
	if _, err := db.db.ExecContext(context.Background(), `PRAGMA wal_checkpoint(FULL)`); err != nil {
		db.files.mu.Lock()
		db.files.broken = fmt.Errorf("%w (copying the earlier commits into the database file failed: %v)", db.files.broken, err)
		db.files.mu.Unlock()
	}
}

// resolvedPath is path made absolute, its symbolic links followed, as SQLite names the -wal and
// -shm it keeps beside the database (path itself when that fails).
func resolvedPath(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	return abs
}

// filesBroken returns the guard's failure, nil while the files are the ones opened.
func (db *DB) filesBroken() error {
	db.files.mu.Lock()
	defer db.files.mu.Unlock()
	return db.files.broken
}
