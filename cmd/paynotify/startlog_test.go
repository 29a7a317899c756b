package main

import (
	"bytes"
	"database/sql"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServe_LogsDatabaseAndApps: serve says at start which database it opened, a relative SQLite
// path made absolute (it is read from the working directory, not the config's), and each app's
// provider endpoint, without a secret (a reviewer helper's finding: nothing showed which database
// a config with an empty ${DATABASE_URL} had fallen back to). A SIGHUP stops it gracefully, as
// SIGTERM does (there is no reload; it ended the process at once).
func TestServe_LogsDatabaseAndApps(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	config := writeServerConfig(t, dir, addr, "sqlite:data/rel.db")
	cmd := exec.Command(bin, "serve", "--config", config)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PAYNOTIFY_API_TOKEN="+binToken)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGHUP: %v, want 0", err)
	}
	out := logs.String()
	if !strings.Contains(out, `msg="shutting down"`) {
		t.Errorf("no graceful stop after SIGHUP:\n%s", out)
	}
	// A new file: every migration applied, and said so (an upgrade's schema change left no trace).
	for _, want := range []string{"msg=database database=sqlite:" + filepath.Join(dir, "data", "rel.db"),
		"msg=app app=shop provider=alipay endpoint=http://127.0.0.1:1/gateway.do",
		`msg="migrations applied" paynotify="0001_init, 0002_reconcile,`, `river="1 create river migration,`} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, binToken) {
		t.Error("the log shows the API token")
	}
	if strings.Contains(out, "does not know") {
		t.Errorf("a warning of unknown migrations on a database this version migrated:\n%s", out)
	}

	// A database a newer paynotify migrated: serve warns at start (it was silent).
	db, err := sql.Open("sqlite", filepath.Join(dir, "data", "rel.db"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future', '2026-12-07T00:00:00.000000Z')`)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(bin, "serve", "--config", config)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PAYNOTIFY_API_TOKEN="+binToken)
	logs.Reset()
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start again:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if out := logs.String(); !strings.Contains(out, "does not know") || !strings.Contains(out, "unknown=9999_future") {
		t.Errorf("no warning of the newer migration:\n%s", out)
	}
}
