package main

import (
	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
)

// TestBackup_SQLiteWhileWriting: `paynotify backup` copies a SQLite database that a store (as
// serve would) commits orders to without pause; the copy passes PRAGMA integrity_check, opens
// with its schema current, and holds every order committed before the backup began.
func TestBackup_SQLiteWhileWriting(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "data", "paynotify.db")
	dsn := "sqlite:" + dbPath
	st, err := openStore(ctx, dsn, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var committed atomic.Int64
	stop, stopped := make(chan struct{}), make(chan struct{})
	var werr error // set before stopped is closed
	go func() {
		defer close(stopped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			o := &paynotify.Order{App: "shop", OutTradeNo: fmt.Sprintf("B%d", i), Channel: paynotify.ChannelAlipayPage,
				Status: paynotify.StatusPending, Amount: 8888, Currency: "CNY", Subject: "backup", Version: 1,
				CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour), Pay: []byte(`{}`)}
			if _, _, err := st.CreateOrder(ctx, o); err != nil {
				werr = err
				return
			}
			committed.Store(int64(i + 1))
		}
	}()
	for committed.Load() < 100 {
		select {
		case <-stopped:
			t.Fatalf("the writer failed: %v", werr)
		case <-time.After(time.Millisecond):
		}
	}
	// With --database, then with --config (the server's config names the same database).
	config := writeServerConfig(t, dir, "127.0.0.1:0", dsn)
	t.Setenv("PAYNOTIFY_API_TOKEN", binToken)
	type backup struct {
		path   string
		before int64
	}
	var backups []backup
	for i, flags := range [][]string{{"--database", dsn}, {"--config", config}} {
		b := backup{filepath.Join(dir, fmt.Sprintf("backup%d.db", i)), committed.Load()}
		code, out, errs := runMain(t, "", append(append([]string{"backup"}, flags...), "--to", b.path)...)
		want := regexp.MustCompile(`^backed up ` + regexp.QuoteMeta(dbPath) + ` to ` + regexp.QuoteMeta(b.path) +
			` \(\d+ bytes\): integrity ok; schema: paynotify \d{4}_\w+, River \d+\n$`)
		if code != exitOK || errs != "" || !want.MatchString(out) {
			t.Fatalf("backup %v: exit %d, stdout %q, stderr %q", flags, code, out, errs)
		}
		// The copy is left as written and checked: one file, nothing opened beside it.
		for _, suffix := range []string{"-wal", "-shm"} {
			if _, err := os.Stat(b.path + suffix); !os.IsNotExist(err) {
				t.Errorf("backup %v left %s beside the copy (%v)", flags, filepath.Base(b.path+suffix), err)
			}
		}
		backups = append(backups, b)
	}
	close(stop)
	<-stopped
	if werr != nil {
		t.Fatalf("the writer failed during the backups: %v", werr)
	}
	for _, b := range backups {
		c, err := sql.Open("sqlite", b.path)
		if err != nil {
			t.Fatal(err)
		}
		var check string
		var count int64
		if err := c.QueryRow(`PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
			t.Fatalf("%s: integrity_check = %q, %v", b.path, check, err)
		}
		if err := c.QueryRow(`SELECT count(*) FROM orders WHERE app = 'shop' AND amount = 8888`).Scan(&count); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if count < b.before {
			t.Fatalf("%s holds %d orders; %d were committed before the backup began", b.path, count, b.before)
		}
		// The copy is a database serve can run on: nothing pending.
		cp, err := openStore(ctx, "sqlite:"+b.path, false)
		if err != nil {
			t.Fatalf("open the copy without migrating: %v", err)
		}
		if o, err := cp.GetOrder(ctx, "shop", fmt.Sprintf("B%d", b.before-1)); err != nil || o.Amount != 8888 {
			t.Fatalf("the copy: the last order committed before the backup: %v, %v", o, err)
		}
		cp.Close()
	}
}

func TestBackup_Refuses(t *testing.T) {
	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "paynotify.db")
	st, err := openStore(t.Context(), dsn, true)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	existing := filepath.Join(dir, "existing.db")
	if err := os.WriteFile(existing, []byte("an older backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.db")
	for name, tc := range map[string]struct {
		args []string
		code int
		err  string
	}{
		"Existing":   {[]string{"--database", dsn, "--to", existing}, exitUsage, "already exists: a backup never overwrites a file"},
		"NoTo":       {[]string{"--database", dsn}, exitUsage, "--to is required"},
		"NoDatabase": {[]string{"--to", filepath.Join(dir, "x.db")}, exitUsage, "--config or --database is required"},
		"Both":       {[]string{"--config", "c.yaml", "--database", dsn, "--to", filepath.Join(dir, "x.db")}, exitUsage, "not both"},
		"Positional": {[]string{"--database", dsn, filepath.Join(dir, "x.db")}, exitUsage, "unexpected arguments"},
		"BadDSN":     {[]string{"--database", "mysql://x", "--to", filepath.Join(dir, "x.db")}, exitUsage, "neither sqlite:PATH nor a postgres:// URL"},
		"NoSource":   {[]string{"--database", "sqlite:" + missing, "--to", filepath.Join(dir, "x.db")}, exitInvalid, "no such file"},
		"NoDir":      {[]string{"--database", dsn, "--to", filepath.Join(dir, "nodir", "x.db")}, exitInvalid, "no such file"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runMain(t, "", append([]string{"backup"}, tc.args...)...)
			if code != tc.code || out != "" || !strings.Contains(errs, tc.err) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errs, tc.code, tc.err)
			}
		})
	}
	if b, err := os.ReadFile(existing); err != nil || string(b) != "an older backup" {
		t.Errorf("the existing file now holds %q (%v)", b, err)
	}
	for _, p := range []string{missing, filepath.Join(dir, "x.db")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s was created (%v)", p, err)
		}
	}
}

// TestBackup_PostgreSQL: backup names pg_dump for PostgreSQL (exit 2) with a command that works:
// run as printed, it dumps paynotify's and River's tables of the DSN's schema.
func TestBackup_PostgreSQL(t *testing.T) {
	ctx := t.Context()
	base := pgtest.NewDatabase(t)
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE SCHEMA pay`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	dsn := base + "&search_path=pay&pool_max_conns=4"
	st, err := openStore(ctx, dsn, true)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	to := filepath.Join(t.TempDir(), "pay backup.dump")
	code, out, errs := runMain(t, "", "backup", "--database", dsn, "--to", to)
	if code != exitUsage || out != "" || !strings.Contains(errs, "backed up with pg_dump") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
	_, cmd, ok := strings.Cut(errs, "\nTry: ")
	if !ok || !strings.HasPrefix(cmd, "(umask 077 && set -C && test ! -e ") || strings.Contains(cmd, "pool_max_conns") {
		t.Fatalf("stderr %q: want a pg_dump command", errs)
	}
	if out, err := exec.CommandContext(ctx, "sh", "-c", cmd).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	// The dump holds the webhook secrets: its owner's alone, whatever the caller's umask (022 here).
	if fi, err := os.Stat(to); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("the dump %s: %v, mode %v, want readable by its owner only", to, err, fi.Mode())
	}
	if _, err := os.Stat(to + ".partial"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the partial file is left: %v", err)
	}
	list, err := exec.CommandContext(ctx, "pg_restore", "--list", to).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_restore --list: %v\n%s", err, list)
	}
	for _, table := range []string{"TABLE pay orders", "TABLE pay schema_migrations", "TABLE pay river_job"} {
		if !strings.Contains(string(list), table) {
			t.Errorf("the dump lacks %s:\n%s", table, list)
		}
	}
	// Run again: the existing backup is not overwritten (pg_dump would keep its mode, and a dump
	// cut short would replace a good one).
	before, _ := os.ReadFile(to)
	if out, err := exec.CommandContext(ctx, "sh", "-c", cmd).CombinedOutput(); err == nil {
		t.Errorf("the command overwrote an existing backup: %s", out)
	}
	if after, _ := os.ReadFile(to); !bytes.Equal(before, after) {
		t.Error("the existing backup changed")
	}
	// A partial file left readable by others (or planted) is not written through: the command
	// fails, and no dump is published with its mode (pg_dump keeps an existing file's mode).
	if err := os.Remove(to); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".partial", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "sh", "-c", cmd).CombinedOutput(); err == nil {
		t.Errorf("the command wrote through an existing partial file: %s", out)
	}
	if _, err := os.Stat(to); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a backup was published through an existing partial file: %v", err)
	}
	// A directory at the backup's name does not take the dump inside it.
	if err := os.Remove(to + ".partial"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(to, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "sh", "-c", cmd).CombinedOutput(); err == nil {
		t.Errorf("the command wrote into a directory named as the backup: %s", out)
	}
}

func TestPgDumpCommand(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://pay:s3cret@db.example:5432/paynotify?sslmode=verify-full&search_path=pay,public&pool_max_conns=20": "(umask 077 && set -C && test ! -e /b/x.dump && pg_dump --format=custom --schema=pay 'postgres://pay@db.example:5432/paynotify?sslmode=verify-full' > /b/x.dump.partial && ln -- /b/x.dump.partial /b/x.dump && rm -- /b/x.dump.partial)",
		"postgresql://db.example/paynotify?password=s3cret&application_name=pn":                                        "(umask 077 && set -C && test ! -e /b/x.dump && pg_dump --format=custom 'postgresql://db.example/paynotify?application_name=pn' > /b/x.dump.partial && ln -- /b/x.dump.partial /b/x.dump && rm -- /b/x.dump.partial)",
	} {
		got, err := pgDumpCommand(dsn, "/b/x.dump")
		if err != nil || got != want {
			t.Errorf("pgDumpCommand(%q) =\n%s, %v\nwant\n%s", dsn, got, err, want)
		}
		if strings.Contains(got, "s3cret") {
			t.Errorf("pgDumpCommand(%q) shows the password", dsn)
		}
	}
	if got, _ := pgDumpCommand("postgres://db/p", "/b/it's here.dump"); got != `(umask 077 && set -C && test ! -e '/b/it'\''s here.dump' && pg_dump --format=custom postgres://db/p > '/b/it'\''s here.dump.partial' && ln -- '/b/it'\''s here.dump.partial' '/b/it'\''s here.dump' && rm -- '/b/it'\''s here.dump.partial')` {
		t.Errorf("a file name with a quote and a space: %s", got)
	}
}
