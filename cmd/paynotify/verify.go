package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/paynotify/paynotify"
)

func init() { commands["verify"] = verifyCommand{} }

// verifyCommand dispatches to `verify alipay`, `verify wechatpay` and `verify alipay-legacy`.
type verifyCommand struct{}

// verifiers lists the providers of `verify`; verify_alipay.go, verify_wechatpay.go and
// verify_legacy.go register theirs.
var verifiers = map[string]command{}

func (verifyCommand) Usage() string {
	return `Usage: paynotify verify alipay|wechatpay|alipay-legacy [flags] [BODY_FILE|-]

Verifies a captured notification offline and says why it is valid or not (exit 0 valid, 1
invalid, 2 usage). paynotify verify PROVIDER --help lists each provider's flags.
`
}

func (verifyCommand) Run(ctx context.Context, m *Main, args []string) error {
	if len(args) == 0 {
		return usagef("paynotify verify alipay --alipay-public-key alipay_public.pem notify.txt", "verify: which provider? (alipay, wechatpay or alipay-legacy)")
	}
	if args[0] == "--help" || args[0] == "-help" || args[0] == "-h" || args[0] == "help" {
		fmt.Fprint(m.Stdout, verifyCommand{}.Usage())
		return nil
	}
	v, ok := verifiers[args[0]]
	if !ok {
		return usagef("paynotify verify alipay --help", "verify: unknown provider %q (alipay, wechatpay or alipay-legacy)", args[0])
	}
	return v.Run(ctx, m, args[1:])
}

// readBody reads the notification body from the file named by the single positional argument, or
// from stdin when it is "-" or absent.
func readBody(m *Main, positional []string) ([]byte, error) {
	switch {
	case len(positional) > 1:
		return nil, usagef("", "too many arguments: %q", positional[1:])
	case len(positional) == 0 || positional[0] == "-":
		return io.ReadAll(m.Stdin)
	default:
		b, err := os.ReadFile(positional[0])
		if err != nil {
			return nil, configErrorf("read body: %w", err)
		}
		return b, nil
	}
}

// serverVerdict runs a notification the protocol package verified through the server's own
// verifier (package provider), which refuses more after the signature: a message that is not a
// trade notification, a status it does not know, identities or amounts missing. It prints such a
// refusal as serve records it and returns the verdict error; nil when serve would take the
// message. at is the time the message is verified at (zero: now).
func serverVerdict(m *Main, explain bool, v paynotify.Verifier, h http.Header, body []byte, at time.Time) error {
	_, err := v.Verify(h, body, at)
	if err == nil {
		if explain {
			fmt.Fprintln(m.Stdout, "check as serve (what it refuses after the signature): ok")
		}
		return nil
	}
	var rej *paynotify.RejectError
	if !errors.As(err, &rej) {
		return err
	}
	if explain {
		fmt.Fprintln(m.Stdout, "check as serve (what it refuses after the signature): FAILED")
	}
	return printInvalid(m, rej.Reason+": "+rej.Detail)
}

// printInvalid prints the negative verdict and returns the error that makes the exit code 1.
func printInvalid(m *Main, reason string) error {
	fmt.Fprintf(m.Stdout, "invalid: %s\n", reason)
	return &verdictError{reason: reason}
}
