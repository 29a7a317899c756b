package sqlite_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/paynotify/paynotify/sqlite"
)

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// TestOpenReadOnly: a missing file stays missing; a closed database is read without a -wal or
// -shm file appearing beside it; one a writer has open is read through its WAL; writes fail.
func TestOpenReadOnly(t *testing.T) {
	ctx := context.Background()
	t.Run("ErrNotExist", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "paynotify.db")
		if _, err := sqlite.OpenReadOnly(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
		}
		if names := dirNames(t, dir); len(names) != 0 {
			t.Fatalf("OpenReadOnly left %v behind", names)
		}
	})
	t.Run("OK", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "paynotify.db")
		db, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if names := dirNames(t, dir); !slices.Equal(names, []string{"paynotify.db"}) {
			t.Fatalf("after close: %v", names)
		}
		before, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ro, err := sqlite.OpenReadOnly(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := ro.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := ro.PendingMigrations(ctx); err != nil || n != 0 {
			t.Fatalf("pending: %d %v", n, err)
		}
		if _, err := ro.SQL().ExecContext(ctx, `CREATE TABLE doctor_probe (x)`); err == nil {
			t.Fatal("a write through a read-only DB succeeded")
		}
		ro.Close()
		if names := dirNames(t, dir); !slices.Equal(names, []string{"paynotify.db"}) {
			t.Fatalf("OpenReadOnly left %v", names)
		}
		after, err := os.ReadFile(path)
		if err != nil || string(after) != string(before) {
			t.Fatalf("the file changed (%v)", err)
		}
	})
	t.Run("WhileOpen", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "paynotify.db")
		db, err := sqlite.Open(path) // never migrated; kept open, so its -wal exists
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.PendingMigrations(ctx); err != nil { // a first read, as serve's start makes
			t.Fatal(err)
		}
		ro, err := sqlite.OpenReadOnly(path)
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		n, err := ro.PendingMigrations(ctx)
		if err != nil || n == 0 {
			t.Fatalf("pending on a new file: %d %v", n, err)
		}
		if err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if n, err := ro.PendingMigrations(ctx); err != nil || n != 0 {
			t.Fatalf("pending after the writer migrated: %d %v", n, err)
		}
	})
	t.Run("NotADatabase", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "paynotify.db")
		if err := os.WriteFile(path, []byte("this is not an SQLite database, only some text that is long enough to be a header"), 0o600); err != nil {
			t.Fatal(err)
		}
		ro, err := sqlite.OpenReadOnly(path)
		if err == nil {
			err = ro.Ping(ctx)
			ro.Close()
		}
		if err == nil {
			t.Fatal("a text file opened and answered as a database")
		}
	})
}
