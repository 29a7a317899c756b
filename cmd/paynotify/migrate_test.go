package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/paynotify/paynotify/internal/pgtest"
)

// TestMigrateStatus: `migrate status` lists every migration of paynotify and River as pending on
// a new database and exits 0; `migrate` prints exactly those it applied; then status lists all
// applied and `migrate` has nothing to apply.
func TestMigrateStatus(t *testing.T) {
	for _, store := range []string{"SQLite", "PostgreSQL"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			var dsn string
			if store == "PostgreSQL" {
				dsn = pgtest.NewDatabase(t)
			} else {
				// An empty file: opened as it is, nothing created by asking.
				path := filepath.Join(t.TempDir(), "paynotify.db")
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				dsn = "sqlite:" + path
			}
			line := regexp.MustCompile(`^(paynotify|River) +(\S+(?: \S+)*?) +(pending|applied( \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)?)$`)
			// status parses the listing into "paynotify 0001_init" → "pending" / "applied", and
			// returns the last line.
			status := func() (map[string]string, []string, string) {
				t.Helper()
				code, out, errs := runMain(t, "", "migrate", "status", "--database", dsn)
				if code != exitOK || errs != "" {
					t.Fatalf("migrate status: exit %d, stdout %q, stderr %q", code, out, errs)
				}
				lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
				states, order := map[string]string{}, []string{}
				for _, l := range lines[:len(lines)-1] {
					m := line.FindStringSubmatch(l)
					if m == nil {
						t.Fatalf("migrate status: line %q", l)
					}
					key := m[1] + " " + m[2]
					if m[1] == "paynotify" && m[3] != "pending" && m[4] == "" {
						t.Fatalf("migrate status: %q has no time", l)
					}
					states[key] = strings.Fields(m[3])[0]
					order = append(order, key)
				}
				return states, order, lines[len(lines)-1]
			}
			states, order, last := status()
			if len(order) < 10 || !strings.HasPrefix(order[0], "paynotify 0001_") || !strings.HasPrefix(order[len(order)-1], "River ") {
				t.Fatalf("migrate status on a new database lists %q", order)
			}
			for _, k := range order {
				if states[k] != "pending" {
					t.Fatalf("migrate status on a new database: %s is %s", k, states[k])
				}
			}
			if want := fmt.Sprintf("%d migrations pending: run paynotify migrate", len(order)); last != want {
				t.Fatalf("migrate status: last line %q, want %q", last, want)
			}

			code, out, errs := runMain(t, "", "migrate", "--database", dsn)
			if code != exitOK || errs != "" {
				t.Fatalf("migrate: exit %d, stdout %q, stderr %q", code, out, errs)
			}
			var want strings.Builder
			for _, k := range order {
				want.WriteString("applied " + k + "\n")
			}
			if out != want.String() {
				t.Fatalf("migrate printed\n%s\nwant\n%s", out, want.String())
			}

			states, order2, last := status()
			if strings.Join(order2, ",") != strings.Join(order, ",") || last != "up to date: no migration pending" {
				t.Fatalf("migrate status after migrating: %q, last line %q", order2, last)
			}
			for _, k := range order2 {
				if states[k] != "applied" {
					t.Fatalf("migrate status after migrating: %s is %s", k, states[k])
				}
			}
			code, out, _ = runMain(t, "", "migrate", "--database", dsn)
			if code != exitOK || out != "nothing to apply: the database is up to date\n" {
				t.Fatalf("migrate again: exit %d, %q", code, out)
			}
		})
	}
}

// TestMigrateStatus_PostgresFileErrorKeepsThePassword (from a reviewer helper's audit): a
// PostgreSQL URL whose sslrootcert names a missing file fails with an error that matches
// fs.ErrNotExist; migrate status took it for a missing SQLite file and printed the URL, password
// included. It fails as the other commands do, the password masked. Nothing is connected to: the
// TLS setup fails on the file first (and the address is loopback).
func TestMigrateStatus_PostgresFileErrorKeepsThePassword(t *testing.T) {
	dsn := "postgres://u:S3CRETPW@127.0.0.1:1/db?sslrootcert=" + filepath.Join(t.TempDir(), "missing.crt") + "&sslmode=verify-full"
	code, out, errs := runMain(t, "", "migrate", "status", "--database", dsn)
	if code == exitOK || strings.Contains(out+errs, "S3CRETPW") || strings.Contains(errs, "does not exist: nothing is applied") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestOpenDatabase_ExitCodes (from reviewer helpers' audits): a PostgreSQL server that cannot be
// reached is a runtime failure, exit 1, which systemd restarts (deploy/paynotify.service does not
// restart after exit 2); it was exit 2, so a database down at a reboot left paynotify down. A
// database that does not exist and a URL that does not parse stay exit 2, and the driver's
// message never shows the password, even one it could not read ("p@ss:w%rd").
func TestOpenDatabase_ExitCodes(t *testing.T) {
	base, err := url.Parse(pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	missing := *base
	missing.Path = "/paynotify_no_such_database"
	for name, tc := range map[string]struct {
		dsn     string
		code    int
		secrets []string
	}{
		"Unreachable": {"postgres://u:S3CRETPW@127.0.0.1:1/db?sslmode=disable&connect_timeout=5", exitInvalid, []string{"S3CRETPW"}},
		"NoDatabase":  {missing.String(), exitUsage, nil},
		"BadURL":      {"postgres://u:p@ss:w%rd@127.0.0.1:1/db?sslmode=disable", exitUsage, []string{"ss:w", "w%rd", "p@ss"}},
		// A URL that parses, with a bad setting: the driver's own message, its password masked.
		"BadSSLMode": {"postgres://u:S3CRETPW@127.0.0.1:1/db?sslmode=verify_full", exitUsage, []string{"S3CRETPW"}},
		// Its pieces ("pa", "ss") are in the driver's words: the reason is shown all the same.
		"BadSSLModeColon": {"postgres://u:pa:ss@127.0.0.1:1/db?sslmode=verify_full", exitUsage, []string{"pa:ss"}},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runMain(t, "", "migrate", "status", "--database", tc.dsn)
			if code != tc.code || !strings.Contains(errs, "database: ") {
				t.Fatalf("exit %d, stderr %q; want exit %d", code, errs, tc.code)
			}
			for _, s := range tc.secrets {
				if strings.Contains(out+errs, s) {
					t.Fatalf("the message shows %q: %s", s, errs)
				}
			}
			if strings.HasPrefix(name, "BadSSLMode") && !strings.Contains(errs, "sslmode is invalid") {
				t.Fatalf("the driver's reason is not shown: %s", errs)
			}
		})
	}
}

// TestServe_PortHeldIsExit1: a port another process holds, the API's or the admin listener's,
// is exit 1 (restarted by systemd: the previous serve may still be draining), not exit 2 (a
// reviewer helper's finding: admin_listen's stayed 2, and deploy/paynotify.service never
// restarts after 2).
func TestServe_PortHeldIsExit1(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for _, field := range []string{"listen", "admin_listen"} {
		t.Run(field, func(t *testing.T) {
			dir := t.TempDir()
			addr := freeAddr(t)
			config := writeServerConfig(t, dir, addr, "sqlite:"+filepath.Join(dir, "paynotify.db"))
			b, err := os.ReadFile(config)
			if err != nil {
				t.Fatal(err)
			}
			if field == "listen" {
				b = []byte(strings.Replace(string(b), fmt.Sprintf("listen: %q", addr), fmt.Sprintf("listen: %q", held.Addr().String()), 1))
			} else {
				b = append(b, fmt.Sprintf("admin_listen: %q\n", held.Addr().String())...)
			}
			if err := os.WriteFile(config, b, 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("PAYNOTIFY_API_TOKEN", binToken)
			code, _, errs := runMain(t, "", "serve", "--config", config)
			if code != exitInvalid || !strings.Contains(errs, field+": ") || !strings.Contains(errs, "address already in use") {
				t.Fatalf("exit %d, stderr %q; want exit 1 naming %s", code, errs, field)
			}
		})
	}
}

func TestMigrateUsage(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.db")
	for name, tc := range map[string]struct {
		args []string
		code int
		err  string
	}{
		"NoDatabase":      {[]string{"migrate"}, exitUsage, "--config or --database is required"},
		"Both":            {[]string{"migrate", "--config", "x.yaml", "--database", "sqlite:x.db"}, exitUsage, "not both"},
		"UnknownArgument": {[]string{"migrate", "stats", "--database", "sqlite:x.db"}, exitUsage, `unexpected arguments ["stats"]`},
		"BadDSN":          {[]string{"migrate", "status", "--database", "mysql://x"}, exitUsage, "neither sqlite:PATH nor a postgres:// URL"},
		"MissingConfig":   {[]string{"migrate", "status", "--config", filepath.Join(dir, "none.yaml")}, exitUsage, "none.yaml"},
		"StatusNoFile":    {[]string{"migrate", "status", "--database", "sqlite:" + missing}, exitInvalid, "does not exist"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runMain(t, "", tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.err) || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errs, tc.code, tc.err)
			}
		})
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("migrate status created %s (%v)", missing, err)
	}
}
