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
// a config with an empty ${DATABASE_URL} had fallen back to).
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
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
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
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	out := logs.String()
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
