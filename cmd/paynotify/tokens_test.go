package main

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/httpd"
	"github.com/paynotify/paynotify/internal/pgtest"
)

// tokenLine is what `tokens add` prints: the token alone.
var tokenLine = regexp.MustCompile(`^pn_[A-Za-z0-9_-]{43}\n$`)

// callWith makes an API call with token and returns the status.
func callWith(t *testing.T, token, method, url, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestTokensCommand: tokens made by `tokens add` work at once on a running server, with their
// scope; `tokens list` never shows them; `tokens revoke` takes effect on that server without a
// restart, within the documented delay.
func TestTokensCommand(t *testing.T) {
	dir := t.TempDir()
	base, config := startWebhookServer(t, dir)
	tok := func(args ...string) (int, string, string) {
		t.Helper()
		return runMain(t, "", append([]string{"tokens"}, args...)...)
	}
	add := func(name, scope string) string {
		t.Helper()
		code, out, errs := tok("add", "--config", config, "--name", name, "--scope", scope)
		if code != exitOK || !tokenLine.MatchString(out) {
			t.Fatalf("tokens add %s: exit %d, stdout %q (want the token alone), stderr %q", name, code, out, errs)
		}
		if !strings.Contains(errs, "only this once") || strings.Contains(errs, strings.TrimSpace(out)) {
			t.Errorf("tokens add: stderr %q", errs)
		}
		return strings.TrimSpace(out)
	}
	read := add("reporting", "read")
	write := add("shop-backend", "write")
	if read == write {
		t.Fatal("two tokens are equal")
	}

	order := func(otn string) string {
		return `{"app":"shop","out_trade_no":"` + otn + `","amount":100,"subject":"s","channel":"alipay.app"}`
	}
	if code := callWith(t, read, "GET", base+"/v1/orders", ""); code != http.StatusOK {
		t.Errorf("GET with the read token: %d, want 200", code)
	}
	if code := callWith(t, read, "POST", base+"/v1/orders", order("R1")); code != http.StatusForbidden {
		t.Errorf("POST with the read token: %d, want 403", code)
	}
	if code := callWith(t, write, "POST", base+"/v1/orders", order("W1")); code != http.StatusCreated {
		t.Errorf("POST with the write token: %d, want 201", code)
	}
	if code := callWith(t, binToken, "GET", base+"/v1/orders/shop/W1", ""); code != http.StatusOK {
		t.Errorf("GET with the config's api_token: %d, want 200", code)
	}

	// The listing names the tokens, through --database as well as --config, never shows them.
	dsn := "sqlite:" + filepath.Join(dir, "data", "paynotify.db")
	for _, conn := range [][]string{{"--config", config}, {"--database", dsn}} {
		code, out, errs := tok(append([]string{"list"}, conn...)...)
		if code != exitOK {
			t.Fatalf("tokens list %v: exit %d, %s", conn, code, errs)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") ||
			!regexp.MustCompile(`^reporting\s+read\s+\S+Z\s+\S+Z\s+-$`).MatchString(lines[1]) ||
			!regexp.MustCompile(`^shop-backend\s+write\s+\S+Z\s+\S+Z\s+-$`).MatchString(lines[2]) {
			t.Errorf("tokens list %v:\n%s", conn, out)
		}
		if strings.Contains(out, read) || strings.Contains(out, write) || strings.Contains(out, "pn_") {
			t.Errorf("tokens list shows a token:\n%s", out)
		}
	}

	// Refusals: a name in use (exit 1), usage errors (exit 2); nothing on stdout.
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"add", "--config", config, "--name", "reporting", "--scope", "write"}, exitInvalid, "exists"},
		{[]string{"revoke", "--config", config, "nobody"}, exitInvalid, "No API token named nobody"},
		{[]string{"add", "--config", config, "--name", "x"}, exitUsage, "--scope must be read or write"},
		{[]string{"add", "--config", config, "--name", "x", "--scope", "admin"}, exitUsage, "--scope must be read or write"},
		{[]string{"add", "--config", config, "--scope", "read"}, exitUsage, "--name is required"},
		{[]string{"add", "--config", config, "--name", "a b", "--scope", "read"}, exitUsage, `API token name "a b"`},
		{[]string{"list"}, exitUsage, "--config FILE or --database DSN is required"},
		{[]string{"list", "--config", config, "--database", dsn}, exitUsage, "not both"},
		{[]string{"revoke", "--config", config}, exitUsage, "missing argument"},
		{[]string{"rotate", "--config", config}, exitUsage, `unknown subcommand "rotate"`},
		{[]string{}, exitUsage, "a subcommand is required"},
		{[]string{"list", "--database", "sqlite:" + filepath.Join(dir, "new.db")}, exitUsage, "does not exist"},
		{[]string{"list", "--database", "sqlite:" + filepath.Join(dir, "newdir", "new.db")}, exitUsage, "does not exist"},
	} {
		code, out, errs := tok(c.args...)
		if code != c.code || out != "" || !strings.Contains(errs, c.msg) {
			t.Errorf("tokens %q: exit %d, stdout %q, stderr %q; want exit %d and %q", c.args, code, out, errs, c.code, c.msg)
		}
	}
	for _, p := range []string{filepath.Join(dir, "new.db"), filepath.Join(dir, "newdir")} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("tokens list on a missing database created %s (%v)", p, err)
		}
	}
	for _, args := range [][]string{{"--help"}, {"add", "--help"}, {"help"}} {
		if code, out, _ := tok(args...); code != exitOK || !strings.Contains(out, "paynotify tokens") {
			t.Errorf("tokens %v: exit %d, stdout %q", args, code, out)
		}
	}

	// Revocation: refused by the running server within the documented delay.
	code, out, errs := tok("revoke", "reporting", "--config", config)
	if code != exitOK || !strings.Contains(out, "reporting revoked") {
		t.Fatalf("tokens revoke: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	revoked := time.Now()
	for callWith(t, read, "GET", base+"/v1/orders", "") != http.StatusUnauthorized {
		if time.Since(revoked) > httpd.DefaultTokenCacheTTL+2*time.Second {
			t.Fatalf("the revoked token still works %s after tokens revoke", time.Since(revoked))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := callWith(t, write, "GET", base+"/v1/orders", ""); code != http.StatusOK {
		t.Errorf("the other token after a revocation: %d, want 200", code)
	}
	_, out, _ = tok("list", "--config", config)
	if !regexp.MustCompile(`(?m)^reporting\s+read\s+\S+Z\s+\S+Z\s+\S+Z$`).MatchString(out) {
		t.Errorf("tokens list after the revocation does not show it revoked:\n%s", out)
	}
}

// TestTokensCommand_Postgres: the same commands on a PostgreSQL database.
func TestTokensCommand_Postgres(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	if code, _, errs := runMain(t, "", "migrate", "--database", dsn); code != exitOK {
		t.Fatalf("migrate: exit %d, %s", code, errs)
	}
	code, out, errs := runMain(t, "", "tokens", "add", "--database", dsn, "--name", "pg", "--scope", "read")
	if code != exitOK || !tokenLine.MatchString(out) {
		t.Fatalf("tokens add: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if code, _, errs := runMain(t, "", "tokens", "revoke", "--database", dsn, "pg"); code != exitOK {
		t.Fatalf("tokens revoke: exit %d, %s", code, errs)
	}
	code, out, _ = runMain(t, "", "tokens", "list", "--database", dsn)
	if code != exitOK || !regexp.MustCompile(`(?m)^pg\s+read\s+\S+Z\s+-\s+\S+Z$`).MatchString(out) {
		t.Fatalf("tokens list: exit %d:\n%s", code, out)
	}
}
