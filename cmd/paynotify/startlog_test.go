package main

import (
	"bytes"
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
	for _, want := range []string{"msg=database database=sqlite:" + filepath.Join(dir, "data", "rel.db"),
		"msg=app app=shop provider=alipay endpoint=http://127.0.0.1:1/gateway.do"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, binToken) {
		t.Error("the log shows the API token")
	}
}
