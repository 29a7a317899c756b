package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"strings"
	"text/tabwriter"

	"github.com/paynotify/paynotify/jobs"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/sqlite"
)

func init() {
	commands["migrate"] = migrateCommand{}
}

// migrateCommand applies pending migrations (`paynotify migrate`), or lists them (`migrate status`).
type migrateCommand struct{}

func (migrateCommand) Usage() string {
	return `Usage: paynotify migrate        (--config FILE | --database DSN)
       paynotify migrate status (--config FILE | --database DSN)

migrate applies the pending migrations of paynotify's schema and River's to the database, prints
each one it applied ("applied paynotify 0003_webhooks", "applied River 6 bulk unique") or
"nothing to apply", then exits.
migrate status changes nothing: it lists every migration of paynotify and of River, applied (with
when, for paynotify's) or pending, and ends with how many are pending. It exits 0 whether or not
some are pending (GET /readyz answers 503 while some are); 1 when the database cannot be read.
  --config FILE         the server's config file: its database
  --database DSN        sqlite:PATH or a postgres:// URL (instead of --config)
`
}

const migrateTry = "paynotify migrate --help"

func (c migrateCommand) Run(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	var db databaseFlags
	db.register(fs)
	pos, err := parseFlags(m, fs, c.Usage(), migrateTry, args)
	if err != nil {
		return err
	}
	status := false
	switch {
	case len(pos) == 1 && pos[0] == "status":
		status = true
	case len(pos) > 0:
		return usagef(migrateTry, "migrate: unexpected arguments %q (the only subcommand is status)", pos)
	}
	dsn, err := db.dsn("migrate")
	if err != nil {
		return err
	}
	if status {
		return migrateStatus(ctx, m, dsn)
	}
	s, err := openDatabase(ctx, dsn)
	if err != nil {
		return err
	}
	defer s.Close()
	ours, river, err := applyMigrations(ctx, s)
	for _, name := range ours {
		fmt.Fprintf(m.Stdout, "applied paynotify %s\n", name)
	}
	for _, r := range river {
		fmt.Fprintf(m.Stdout, "applied River %d %s\n", r.Version, r.Name)
	}
	if err != nil {
		return err
	}
	if len(ours) == 0 && len(river) == 0 {
		fmt.Fprintln(m.Stdout, "nothing to apply: the database is up to date")
	}
	return nil
}

// migrateStatus prints every migration of the database, applied or pending.
func migrateStatus(ctx context.Context, m *Main, dsn string) error {
	s, err := openInspect(ctx, dsn)
	if errors.Is(err, errNoSQLiteFile) {
		// Only an SQLite file: a PostgreSQL error can match fs.ErrNotExist too (a missing
		// sslrootcert), and its URL may hold a password.
		return fmt.Errorf("migrate status: %s does not exist: nothing is applied (paynotify migrate, or serve, creates it)", strings.TrimPrefix(dsn, "sqlite:"))
	}
	if err != nil {
		return err
	}
	defer s.Close()
	ours, err := s.MigrationStatus(ctx)
	if err != nil {
		return fmt.Errorf("migrate status: %w", err)
	}
	var river []jobs.Migration
	switch db := s.(type) {
	case *sqlite.DB:
		river, err = jobs.StatusSQLite(ctx, db.SQL())
	case *postgres.DB:
		river, err = jobs.StatusPostgres(ctx, db.Pool())
	}
	if err != nil {
		return fmt.Errorf("migrate status: %w", err)
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
	pending, unknown := 0, 0
	for _, st := range ours {
		state := "pending"
		switch {
		case st.Unknown:
			state = "applied " + st.AppliedAt.Format("2006-01-02 15:04:05 MST") + " (unknown to this binary: a newer paynotify applied it)"
			unknown++
		case st.Applied:
			state = "applied " + st.AppliedAt.Format("2006-01-02 15:04:05 MST")
		default:
			pending++
		}
		fmt.Fprintf(tw, "paynotify\t%s\t%s\n", st.Name, state)
	}
	for _, r := range river {
		state := "applied"
		if !r.Applied {
			state = "pending"
			pending++
		}
		fmt.Fprintf(tw, "River\t%d %s\t%s\n", r.Version, r.Name, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case pending == 0:
		fmt.Fprintln(m.Stdout, "up to date: no migration pending")
	case pending == 1:
		fmt.Fprintln(m.Stdout, "1 migration pending: run paynotify migrate")
	default:
		fmt.Fprintf(m.Stdout, "%d migrations pending: run paynotify migrate\n", pending)
	}
	if unknown > 0 {
		fmt.Fprintf(m.Stdout, "warning: %d applied migration(s) unknown to this binary: the database was migrated by a newer paynotify\n", unknown)
	}
	return nil
}

// openInspect opens the database of a DSN for a command that only reads it: a SQLite file read
// only (never created: a missing one is errNoSQLiteFile, matching fs.ErrNotExist too), PostgreSQL
// as usual.
// errNoSQLiteFile is openInspect's error for an SQLite file that does not exist.
var errNoSQLiteFile = errors.New("no such SQLite database")

func openInspect(ctx context.Context, dsn string) (store, error) {
	if path, ok := strings.CutPrefix(dsn, "sqlite:"); ok && path != "" {
		db, err := sqlite.OpenReadOnly(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: %w", errNoSQLiteFile, err)
			}
			return nil, configErrorf("database: %w", err)
		}
		return db, nil
	}
	return openDatabase(ctx, dsn)
}

// databaseFlags are the two ways a command beside the server names its database: the server's
// config file, or the DSN itself.
type databaseFlags struct {
	config, database string
}

func (f *databaseFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "the server's config file: its database")
	fs.StringVar(&f.database, "database", "", "sqlite:PATH or a postgres:// URL")
}

// dsn returns the database named by exactly one of the two flags.
func (f *databaseFlags) dsn(cmd string) (string, error) {
	try := "paynotify " + cmd + " --config paynotify.yaml"
	switch {
	case f.config != "" && f.database != "":
		return "", usagef(try, "%s: give --config or --database, not both", cmd)
	case f.database != "":
		return f.database, nil
	case f.config != "":
		cfg, err := LoadConfig(f.config)
		if err != nil {
			return "", &configError{err: err}
		}
		return cfg.Database, nil
	}
	return "", usagef(try, "%s: --config or --database is required", cmd)
}
