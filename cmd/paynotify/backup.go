package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"

	"github.com/paynotify/paynotify/internal/migrations"
	"github.com/paynotify/paynotify/jobs"
	"github.com/paynotify/paynotify/sqlite"
)

func init() {
	commands["backup"] = backupCommand{}
}

// backupCommand is `paynotify backup`: a consistent copy of a SQLite database while serve runs.
type backupCommand struct{}

func (backupCommand) Usage() string {
	return `Usage: paynotify backup (--config FILE | --database DSN) --to FILE

Copies a SQLite database to FILE while serve goes on running (SQLite's VACUUM INTO: the database
as one moment saw it, in one file), moves the copy's event counter a billion past the database's
(restored, it never numbers an event as one issued after the backup), then checks the copy
(PRAGMA integrity_check) and opens it to confirm its schema version. FILE must not exist: a
backup never overwrites a file.
A PostgreSQL database is backed up with pg_dump: given one, backup prints the pg_dump command
(without the password) and exits 2. docs/deploy.md has backups and restores of both.
Exit 0 when the copy is written and checked, 1 when it failed, 2 on usage or config errors.
  --config FILE         the server's config file: its database
  --database DSN        sqlite:PATH or a postgres:// URL (instead of --config)
  --to FILE             the new file to write
`
}

const backupTry = "paynotify backup --config paynotify.yaml --to paynotify-backup.db"

func (c backupCommand) Run(ctx context.Context, m *Main, args []string) error {
	flags := flag.NewFlagSet("backup", flag.ContinueOnError)
	var db databaseFlags
	db.register(flags)
	to := flags.String("to", "", "the new file to write")
	if err := parseCommandFlags(m, flags, c.Usage(), backupTry, args); err != nil {
		return err
	}
	dsn, err := db.dsn("backup")
	if err != nil {
		return err
	}
	if *to == "" {
		return usagef(backupTry, "backup: --to is required")
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		cmd, err := pgDumpCommand(dsn, *to)
		if err != nil {
			return &configError{err: fmt.Errorf("database: %w", err)}
		}
		return usagef(cmd, "backup: a PostgreSQL database is backed up with pg_dump, not paynotify backup (docs/deploy.md, \"Backups\"): "+
			"run the command below (the password is left out: pg_dump reads it from PGPASSWORD or ~/.pgpass)")
	}
	path, ok := strings.CutPrefix(dsn, "sqlite:")
	if !ok || path == "" {
		_, err := openDatabase(ctx, dsn) // its error names the problem
		if err == nil {
			err = configErrorf("database: %q is neither sqlite:PATH nor a postgres:// URL", redactDSN(dsn))
		}
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("backup: the database: %w", err)
	}
	exists := func() error {
		return usagef("paynotify backup … --to NEW-FILE", "backup: --to %s already exists: a backup never overwrites a file", *to)
	}
	if _, err := os.Lstat(*to); err == nil {
		return exists()
	}
	s, err := openInspect(ctx, dsn) // read only: the backup writes nothing to the database
	if err != nil {
		return err
	}
	defer s.Close()
	src := s.(*sqlite.DB)
	before, err := src.MigrationStatus(ctx)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := src.Backup(ctx, *to); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return exists()
		}
		return err
	}
	schema, err := copySchema(ctx, *to, before)
	if err != nil {
		return fmt.Errorf("backup: %s: %w", *to, err)
	}
	fi, err := os.Stat(*to)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(m.Stdout, "backed up %s to %s (%d bytes): integrity ok; schema: %s\n", path, *to, fi.Size(), schema)
	return nil
}

// copySchema opens the backup at path as a store and describes its schema version ("paynotify
// 0003_webhooks, River 8"); it fails when the copy has fewer of our migrations applied than the
// database had before the backup began (before).
func copySchema(ctx context.Context, path string, before []migrations.Status) (string, error) {
	cp, err := sqlite.OpenReadOnly(path) // the copy stays as VACUUM INTO wrote it: no -wal or -shm beside it
	if err != nil {
		return "", err
	}
	defer cp.Close()
	st, err := cp.MigrationStatus(ctx)
	if err != nil {
		return "", err
	}
	river, err := jobs.StatusSQLite(ctx, cp.SQL())
	if err != nil {
		return "", err
	}
	ours, want := latestApplied(st), latestApplied(before)
	if ours.Version < want.Version {
		return "", fmt.Errorf("the copy's schema is at %q, the database's was at %q", ours.Name, want.Name)
	}
	desc := "paynotify none"
	if ours.Version > 0 {
		desc = "paynotify " + ours.Name
	}
	r := 0
	for _, m := range river {
		if m.Applied {
			r = max(r, m.Version)
		}
	}
	if r == 0 {
		return desc + ", River none", nil
	}
	return fmt.Sprintf("%s, River %d", desc, r), nil
}

// latestApplied is the applied migration of highest version (zero when none is).
func latestApplied(st []migrations.Status) migrations.Status {
	var last migrations.Status
	for _, s := range st {
		if s.Applied && s.Version > last.Version {
			last = s
		}
	}
	return last
}

// libpqParams are the URL query parameters libpq (and so pg_dump) accepts. pgx takes others
// (pool_max_conns, and any other name as a run-time parameter such as search_path), which libpq
// refuses.
var libpqParams = map[string]bool{
	"application_name": true, "channel_binding": true, "client_encoding": true, "connect_timeout": true,
	"dbname": true, "gssencmode": true, "host": true, "hostaddr": true, "keepalives": true,
	"keepalives_count": true, "keepalives_idle": true, "keepalives_interval": true, "krbsrvname": true,
	"load_balance_hosts": true, "options": true, "passfile": true, "port": true, "require_auth": true,
	"service": true, "sslcert": true, "sslcrl": true, "sslkey": true, "sslmode": true,
	"sslnegotiation": true, "sslrootcert": true, "sslsni": true, "target_session_attrs": true,
	"tcp_user_timeout": true, "user": true,
}

// pgDumpCommand is the pg_dump command that backs up the database of a postgres:// DSN as
// paynotify sees it, in pg_dump's custom format: the password left out (of the user info and of
// a password parameter), the first schema of search_path as --schema (that is where paynotify's
// and River's tables are), and the parameters libpq does not know (pgx's) dropped; run under umask
// 077, so that the dump is readable by its owner only, and written to to+".partial" then linked to
// to, never overwriting it, as paynotify backup's SQLite copy is.
func pgDumpCommand(dsn, to string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", errors.New("not a valid postgres:// URL")
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	q := u.Query()
	schema := ""
	if sp := q.Get("search_path"); sp != "" {
		schema = strings.TrimSpace(strings.Split(sp, ",")[0])
	}
	for k := range q {
		if !libpqParams[k] {
			q.Del(k)
		}
	}
	u.RawQuery = q.Encode()
	partial := to + ".partial"
	args := []string{"pg_dump", "--format=custom"}
	if schema != "" {
		args = append(args, "--schema="+shellQuote(schema))
	}
	// In a subshell under umask 077: pg_dump creates its file by the umask (0644 under the usual
	// 022), and a dump holds the webhook signing secrets (a reviewer helper's finding). Into a
	// file of its own, linked to its name once complete, as paynotify backup does for SQLite: a
	// dump cut short is never taken for a backup, and an existing file is neither overwritten nor
	// left with its old mode (pg_dump keeps an existing file's mode).
	// The partial file is opened by the shell under noclobber (set -C: O_EXCL), never through an
	// existing file or link whose mode pg_dump would keep; FILE must not exist either (a
	// directory there would take the link inside it). A reviewer helper's findings.
	return "(umask 077 && set -C && test ! -e " + shellQuote(to) + " && " + strings.Join(append(args, shellQuote(u.String())), " ") +
		" > " + shellQuote(partial) + " && ln -- " + shellQuote(partial) + " " + shellQuote(to) + " && rm -- " + shellQuote(partial) + ")", nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:@=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
