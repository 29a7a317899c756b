package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

// runMain runs the program with args and stdin, returning exit code, stdout and stderr.
func runMain(tb testing.TB, stdin string, args ...string) (int, string, string) {
	tb.Helper()
	var out, errb bytes.Buffer
	m := &Main{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb}
	code := m.Run(context.Background(), args)
	return code, out.String(), errb.String()
}

func TestMain_Usage(t *testing.T) {
	t.Run("NoArgs", func(t *testing.T) {
		code, out, _ := runMain(t, "")
		if code != exitUsage || !strings.Contains(out, "Usage:") {
			t.Fatalf("code %d, out %q", code, out)
		}
	})
	t.Run("UnknownCommand", func(t *testing.T) {
		code, _, errs := runMain(t, "", "frobnicate")
		if code != exitUsage || !strings.Contains(errs, `unknown command "frobnicate"`) {
			t.Fatalf("code %d, stderr %q", code, errs)
		}
	})
	t.Run("VerifyUnknownProvider", func(t *testing.T) {
		code, _, errs := runMain(t, "", "verify", "paypal")
		if code != exitUsage || !strings.Contains(errs, "Try:") {
			t.Fatalf("code %d, stderr %q", code, errs)
		}
	})
}

// TestMain_HelpEveryCommand: --help prints a usage on stdout and exits 0, for every command and
// every provider of verify.
func TestMain_HelpEveryCommand(t *testing.T) {
	var names [][]string
	for name := range commands {
		names = append(names, []string{name})
	}
	for name := range verifiers {
		names = append(names, []string{"verify", name})
	}
	if len(names) < 8 {
		t.Fatalf("only %d commands registered", len(names))
	}
	for _, args := range names {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			code, out, errs := runMain(t, "", append(args, "--help")...)
			if code != exitOK || !strings.Contains(out, "paynotify "+args[0]) || errs != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 0 and the usage on stdout", code, out, errs)
			}
		})
	}
}

// TestVersion: paynotify version prints one line with the release ("dev" unless set at build
// time) and the Go version.
func TestVersion(t *testing.T) {
	code, out, errs := runMain(t, "", "version")
	if code != exitOK || errs != "" || !strings.HasPrefix(out, "paynotify dev") || !strings.HasSuffix(out, runtime.Version()+"\n") ||
		strings.Count(out, "\n") != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
