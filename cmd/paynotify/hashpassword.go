package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/paynotify/paynotify/console"
	"golang.org/x/term"
)

func init() { commands["hash-password"] = hashPasswordCommand{} }

// minPasswordLength is the fewest characters hash-password takes.
const minPasswordLength = 12

// hashPasswordCommand is `paynotify hash-password`: the console's admin_password_hash.
type hashPasswordCommand struct{}

func (hashPasswordCommand) Usage() string {
	return `Usage: paynotify hash-password

Reads a password and prints its argon2id hash (a PHC string, $argon2id$v=19$m=…,t=…,p=…$salt$hash)
on one line, for console.admin_password_hash in the config (docs/console.md).

From a terminal it asks twice, without echo, on standard error. Otherwise it reads one line from
standard input, without a prompt or a confirmation:

  printf '%s\n' "$PASSWORD" | paynotify hash-password

The password is never printed. A password under 12 characters is refused (exit 2): the login's
rate limit lets about 29,000 guesses a day through per instance.
`
}

func (cmd hashPasswordCommand) Run(ctx context.Context, m *Main, args []string) error {
	// An argument may be the password itself: refused without repeating it.
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			return usagef("printf '%s\\n' \"$PASSWORD\" | paynotify hash-password", "hash-password: takes no arguments (the password comes from standard input, never the command line)")
		}
	}
	fs := flag.NewFlagSet("hash-password", flag.ContinueOnError)
	if err := parseCommandFlags(m, fs, cmd.Usage(), "paynotify hash-password", args); err != nil {
		return err
	}
	var password string
	if f, ok := m.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		read := func(prompt string) (string, error) {
			fmt.Fprint(m.Stderr, prompt)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(m.Stderr)
			return string(b), err
		}
		p1, err := read("Password: ")
		if err != nil {
			return fmt.Errorf("hash-password: read password: %w", err)
		}
		p2, err := read("Again: ")
		if err != nil {
			return fmt.Errorf("hash-password: read password: %w", err)
		}
		if p1 != p2 {
			return usagef("paynotify hash-password", "hash-password: the two passwords differ")
		}
		password = p1
	} else {
		line, err := bufio.NewReader(m.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("hash-password: read standard input: %w", err)
		}
		password = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	}
	if password == "" {
		return usagef("printf '%s\\n' \"$PASSWORD\" | paynotify hash-password", "hash-password: the password is empty")
	}
	// The login's rate limit (20 failures a minute per process) still lets about 29,000 guesses
	// a day through per instance: a short password would fall in days.
	if n := utf8.RuneCountInString(password); n < minPasswordLength {
		return usagef("head -c 18 /dev/urandom | base64 | paynotify hash-password",
			"hash-password: the password has %d characters, fewer than %d: the console's login can be guessed at about 29,000 tries a day per instance", n, minPasswordLength)
	}
	hash, err := console.HashPassword(password)
	if err != nil {
		return err
	}
	fmt.Fprintln(m.Stdout, hash)
	return nil
}
