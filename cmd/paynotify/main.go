// Command paynotify is the paynotify server, sandbox and protocol toolbox in one binary.
//
// Each subcommand lives in a file of its own (serve.go, verify_alipay.go, …). main only wires
// signals and exit codes; Main does the work so that tests can drive it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// SIGHUP too: paynotify has no reload, and a hangup (a closed terminal, a reload asked by
	// habit) would otherwise end the process at once instead of gracefully.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// The first signal starts a graceful stop; from then on the signals are the default again, so
	// that a second one ends the process at once (as kill -9 would: nothing acknowledged is lost).
	context.AfterFunc(ctx, stop)
	m := &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
	os.Exit(m.Run(ctx, os.Args[1:]))
}

// Exit codes of every subcommand (docs/architecture.md, "Contracts").
const (
	exitOK      = 0 // success, or a positive verdict
	exitInvalid = 1 // a negative verdict (an invalid notification), or a runtime failure
	exitUsage   = 2 // usage, config or key errors
)

// Main is the program. Its fields are the process's standard streams, replaced in tests.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// command is one subcommand: one file each.
type command interface {
	Run(ctx context.Context, m *Main, args []string) error
	Usage() string
}

// commands lists the subcommands by name. Files register theirs from init.
var commands = map[string]command{}

// Run runs the subcommand named by args[0] and returns the process exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(m.Stdout, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(m.Stderr, "paynotify: unknown command %q\nTry: paynotify help\n", args[0])
		return exitUsage
	}
	return m.exit(cmd.Run(ctx, m, args[1:]))
}

// exit reports err on stderr and maps it to an exit code.
func (m *Main) exit(err error) int {
	if err == nil {
		return exitOK
	}
	var ue *usageError
	var ve *verdictError
	var ce *configError
	switch {
	case errors.Is(err, errHelp):
		return exitOK // the usage was printed
	case errors.As(err, &ve):
		// The command already printed "invalid: reason" on stdout.
		return exitInvalid
	case errors.As(err, &ue):
		fmt.Fprintf(m.Stderr, "paynotify: %s\n", ue.msg)
		if ue.try != "" {
			fmt.Fprintf(m.Stderr, "Try: %s\n", ue.try)
		}
		return exitUsage
	case errors.As(err, &ce):
		fmt.Fprintf(m.Stderr, "paynotify: %v\n", ce.err)
		return exitUsage
	default:
		fmt.Fprintf(m.Stderr, "paynotify: %v\n", err)
		return exitInvalid
	}
}

// usageError is a mistake in the command line; try is a corrected example.
type usageError struct{ msg, try string }

func (e *usageError) Error() string { return e.msg }

func usagef(try, format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...), try: try}
}

// configError is a bad config file or key: exit 2.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

func configErrorf(format string, args ...any) error {
	return &configError{err: fmt.Errorf(format, args...)}
}

// verdictError says a verification ended in a negative verdict that was already printed: exit 1.
type verdictError struct{ reason string }

func (e *verdictError) Error() string { return "invalid: " + e.reason }

const usage = `paynotify: payment notifications for Alipay and WeChat Pay

Usage:
  paynotify serve   [--config FILE] [--no-migrate] [--listen ADDR] [--data-dir DIR] [--pprof ADDR]
                                                    run the server (no config: demo mode, data in --data-dir)
  paynotify migrate [status] (--config FILE | --database DSN)
                                                    apply the pending migrations, printing each one;
                                                    status: list every migration, applied or pending
  paynotify backup (--config FILE | --database DSN) --to FILE
                                                    copy a SQLite database while serve runs
                                                    (PostgreSQL: prints the pg_dump command to run)
  paynotify keygen  [--out DIR]                     make an RSA-2048 app key pair
  paynotify hash-password                           read a password on stdin, print its argon2id hash
                                                    (console.admin_password_hash; docs/console.md)
  paynotify verify alipay    (--alipay-public-key FILE | --alipay-cert FILE) [--explain] [BODY_FILE|-]
  paynotify verify wechatpay (--platform-public-key FILE --platform-public-key-id ID | --platform-cert FILE)
                             --apiv3-key-file FILE --headers FILE [--now RFC3339|UNIX] [--explain] [BODY_FILE|-]
  paynotify verify wechatpay --v2 --api-key-file FILE [--explain] [BODY_FILE|-]
  paynotify verify alipay-legacy --partner PID --sign-type MD5|RSA|0001 (--md5-key-file F | --alipay-public-key F)
                                 [--merchant-private-key F] [--charset utf-8|gbk] [--return] [--explain] [FILE|-]
  paynotify doctor  --config FILE [--app NAME]    check keys, certificates, gateways, a signed call, public_url
                                                    and the database before going live (changes nothing)
  paynotify reconcile --config FILE [--app NAME] [--since 48h] [--dry-run]
                                                    query the providers about pending orders
  paynotify reprocess --config FILE [--app NAME] --since DURATION [--reason CODE]
                                                    verify and apply kept notifications again
  paynotify webhooks add|list|get|update|disable|enable|delete|rotate|test|attempts|resend|recover …
                    [--server URL] [--token-file FILE | --config FILE] [--json]
                                                    manage webhook endpoints through the API
  paynotify tokens add --name NAME --scope read|write | list | revoke NAME  (--config FILE | --database DSN)
                                                    manage named API tokens in the database
  paynotify sandbox [--listen ADDR] [--allow-remote] [--state-dir DIR] [--time-scale N] [--base-url URL]
  paynotify sandbox keys|run|pay|open|fail|close|finish|refund|complete-refund|reset|retry|faults|trades|attempts|queries …
                                                    the simulators, and what a test does to them (sandbox --help)

  paynotify version                                 print the release, commit and Go version

Every command prints its own usage with --help.
Exit codes: 0 success, 1 a negative verdict or a runtime failure, 2 usage, config or key errors.
`
