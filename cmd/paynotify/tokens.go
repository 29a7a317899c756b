package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/httpd"
)

func init() { commands["tokens"] = tokensCommand{} }

// tokensCommand is `paynotify tokens`: the named API tokens of the merchant API, kept in the
// database (docs/api.md, "Authentication"). Servers see a change without a restart.
type tokensCommand struct{}

const tokensTry = "paynotify tokens --help"

func (tokensCommand) Usage() string {
	return fmt.Sprintf(`Usage: paynotify tokens SUBCOMMAND [ARGS] (--config FILE | --database DSN)

Manages the named API tokens of the merchant API (docs/api.md, "Authentication") in the
database, beside running servers or without one. Servers see a change without a restart: a new
token works at once, a revoked one is refused within %s. The config's api_token keeps working
beside them.

  add --name NAME --scope read|write
                   makes a token and prints it alone on stdout: the only time it is shown
                   (the database keeps its SHA-256). NAME: 1 to 64 letters, digits, '.', '_'
                   or '-', never reused. read: GET routes only; write: every route
  list             lists the tokens: name, scope, created, last used (to the minute),
                   revoked; never the tokens
  revoke NAME      revokes a token

Database (any subcommand):
  --config FILE    the server's config file: its database
  --database DSN   sqlite:PATH or a postgres:// URL, instead of --config
The database must be migrated (paynotify migrate, or serve does): tokens never migrates.

Exit 0 on success, 1 when the database refuses (a name in use, no such token) or cannot be
reached, 2 on usage or config errors.
`, httpd.DefaultTokenCacheTTL)
}

// tokensDB is the database flags, shared by every subcommand.
type tokensDB struct{ config, database string }

// register adds the database flags to fs, keeping the values already parsed.
func (d *tokensDB) register(fs *flag.FlagSet) {
	fs.StringVar(&d.config, "config", d.config, "")
	fs.StringVar(&d.database, "database", d.database, "")
}

// open opens the store of --config or --database, without migrating it.
func (d *tokensDB) open(ctx context.Context, try string) (store, error) {
	dsn := d.database
	switch {
	case d.config != "" && d.database != "":
		return nil, usagef(try, "tokens: give --config or --database, not both")
	case d.config != "":
		cfg, err := LoadConfig(d.config)
		if err != nil {
			return nil, &configError{err: err}
		}
		dsn = cfg.Database
	case dsn == "":
		return nil, usagef(try, "tokens: --config FILE or --database DSN is required")
	}
	return openStore(ctx, dsn, false) // a missing SQLite file is refused, not created
}

func (cmd tokensCommand) Run(ctx context.Context, m *Main, args []string) error {
	var db tokensDB
	top := flag.NewFlagSet("tokens", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	db.register(top)
	if err := top.Parse(args); err != nil { // stops at the subcommand
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(m.Stdout, cmd.Usage())
			return errHelp
		}
		return usagef(tokensTry, "tokens: %v", err)
	}
	if top.NArg() == 0 {
		return usagef(tokensTry, "tokens: a subcommand is required: add, list or revoke")
	}
	sub, rest := top.Arg(0), top.Args()[1:]
	if sub == "help" {
		fmt.Fprint(m.Stdout, cmd.Usage())
		return errHelp
	}
	run, ok := map[string]func(context.Context, *Main, *tokensDB, []string) error{
		"add": cmd.add, "list": cmd.list, "revoke": cmd.revoke,
	}[sub]
	if !ok {
		return usagef(tokensTry, "tokens: unknown subcommand %q", sub)
	}
	return run(ctx, m, &db, rest)
}

// parseSub parses a subcommand's flags with the database flags, before or after its want
// positional arguments.
func (cmd tokensCommand) parseSub(m *Main, fs *flag.FlagSet, db *tokensDB, args []string, want int, try string) ([]string, error) {
	db.register(fs)
	pos, err := parseFlags(m, fs, cmd.Usage(), try, args)
	if err != nil {
		return nil, err
	}
	if len(pos) < want {
		return nil, usagef(try, "%s: missing argument", fs.Name())
	} else if len(pos) > want {
		return nil, usagef(try, "%s: unexpected argument %q", fs.Name(), pos[want])
	}
	return pos, nil
}

// tokenError is err as the command reports it: the message of an application error (a name in
// use, no such token), else err itself.
func tokenError(op string, err error) error {
	var pe *paynotify.Error
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %s", op, pe.Message)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func (cmd tokensCommand) add(ctx context.Context, m *Main, db *tokensDB, args []string) error {
	const try = "paynotify tokens add --config paynotify.yaml --name reporting --scope read"
	fs := flag.NewFlagSet("tokens add", flag.ContinueOnError)
	name := fs.String("name", "", "")
	scope := fs.String("scope", "", "")
	if _, err := cmd.parseSub(m, fs, db, args, 0, try); err != nil {
		return err
	}
	if *name == "" {
		return usagef(try, "tokens add: --name is required")
	}
	if *scope != paynotify.ScopeRead && *scope != paynotify.ScopeWrite {
		return usagef(try, "tokens add: --scope must be read or write, not %q", *scope)
	}
	st, err := db.open(ctx, try)
	if err != nil {
		return err
	}
	defer st.Close()
	token, err := paynotify.IssueAPIToken(ctx, st, rand.Reader, *name, *scope, time.Now())
	if paynotify.ErrorCode(err) == paynotify.EINVALID {
		return usagef(try, "tokens add: %s", paynotify.ErrorMessage(err))
	} else if err != nil {
		return tokenError("tokens add", err)
	}
	fmt.Fprintln(m.Stdout, token)
	fmt.Fprintf(m.Stderr, "paynotify: API token %s (scope %s) added. It is shown only this once: keep it now.\n", *name, *scope)
	return nil
}

func (cmd tokensCommand) list(ctx context.Context, m *Main, db *tokensDB, args []string) error {
	const try = "paynotify tokens list --config paynotify.yaml"
	fs := flag.NewFlagSet("tokens list", flag.ContinueOnError)
	if _, err := cmd.parseSub(m, fs, db, args, 0, try); err != nil {
		return err
	}
	st, err := db.open(ctx, try)
	if err != nil {
		return err
	}
	defer st.Close()
	toks, err := st.ListAPITokens(ctx)
	if err != nil {
		return tokenError("tokens list", err)
	}
	tw := tabwriter.NewWriter(m.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSCOPE\tCREATED\tLAST USED\tREVOKED")
	for _, t := range toks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Scope, t.CreatedAt.Format(time.RFC3339), timeOrDash(t.LastUsedAt), timeOrDash(t.RevokedAt))
	}
	return tw.Flush()
}

// timeOrDash formats a nullable time for a listing.
func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func (cmd tokensCommand) revoke(ctx context.Context, m *Main, db *tokensDB, args []string) error {
	const try = "paynotify tokens revoke --config paynotify.yaml NAME"
	fs := flag.NewFlagSet("tokens revoke", flag.ContinueOnError)
	pos, err := cmd.parseSub(m, fs, db, args, 1, try)
	if err != nil {
		return err
	}
	st, err := db.open(ctx, try)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeAPIToken(ctx, pos[0], time.Now()); err != nil {
		return tokenError("tokens revoke", err)
	}
	fmt.Fprintf(m.Stdout, "API token %s revoked: running servers refuse it within %s\n", pos[0], httpd.DefaultTokenCacheTTL)
	return nil
}
