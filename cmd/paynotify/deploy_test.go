package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const unitFile = "../../deploy/paynotify.service"

// unitValues returns the values of key in the unit file, in order.
func unitValues(t *testing.T, key string) []string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vals []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), key+"="); ok {
			vals = append(vals, v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vals
}

// TestDeployUnit_ExecStart: the unit's ExecStart is `paynotify serve` with flags serve accepts
// (run here with its config replaced by a test one, it starts and stops cleanly), and its stop
// timeout outlasts serve's graceful shutdown.
func TestDeployUnit_ExecStart(t *testing.T) {
	exec := unitValues(t, "ExecStart")
	if len(exec) != 1 {
		t.Fatalf("ExecStart = %q, want one", exec)
	}
	args := strings.Fields(exec[0])
	if len(args) < 2 || !filepath.IsAbs(args[0]) || filepath.Base(args[0]) != "paynotify" || args[1] != "serve" {
		t.Fatalf("ExecStart = %q, want /…/paynotify serve …", exec[0])
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	config := writeServerConfig(t, dir, addr, "sqlite:"+filepath.Join(dir, "paynotify.db"))
	t.Setenv("PAYNOTIFY_API_TOKEN", binToken)
	args = args[1:]
	replaced := false
	for i := range args {
		if args[i] == "--config" && i+1 < len(args) {
			args[i+1], replaced = config, true
		}
	}
	if !replaced {
		t.Fatalf("ExecStart %q has no --config FILE", exec[0])
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		m := &Main{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &stderr}
		done <- m.Run(ctx, args)
	}()
	waitHealthy(t, "http://"+addr)
	cancel()
	if code := <-done; code != exitOK {
		t.Fatalf("serve %q: exit %d\n%s", args, code, stderr.String())
	}

	stop := unitValues(t, "TimeoutStopSec")
	if len(stop) != 1 || !strings.HasSuffix(stop[0], "s") {
		t.Fatalf("TimeoutStopSec = %q, want one value in seconds (\"70s\")", stop)
	}
	secs, err := strconv.Atoi(strings.TrimSuffix(stop[0], "s"))
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(secs) * time.Second; d <= httpShutdownTimeout+jobsStopTimeout {
		t.Errorf("TimeoutStopSec %v: serve may take %v to stop gracefully", d, httpShutdownTimeout+jobsStopTimeout)
	}
	if got := unitValues(t, "RestartPreventExitStatus"); len(got) != 1 || got[0] != strconv.Itoa(exitUsage) {
		t.Errorf("RestartPreventExitStatus = %q, want serve's config-error exit code %d", got, exitUsage)
	}
}

// TestDeployUnit_Verify: systemd-analyze verify finds nothing to say about the unit (it exits 0
// even on unknown keys, so its output is what counts: a damaged copy shows it does speak), and
// its offline security analysis rates the hardening "OK" or better.
func TestDeployUnit_Verify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is not installed, and CI must verify the unit (.ci/run installs systemd)")
		}
		t.Skip("systemd-analyze is not installed: the unit is not verified here")
	}
	unit, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart's program exists and is executable: point it at this test
	// binary, which is one.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(text, "/usr/local/bin/paynotify", self)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := func(args ...string) string {
		out, _ := exec.Command(sa, args...).CombinedOutput()
		return string(out)
	}
	if out := run("verify", write("paynotify.service", string(unit))); out != "" {
		t.Errorf("systemd-analyze verify deploy/paynotify.service:\n%s", out)
	}
	bad := strings.Replace(string(unit), "NoNewPrivileges=yes", "NoNewPrivileges=yes\nRestart=sometimes", 1)
	if out := run("verify", write("damaged.service", bad)); !strings.Contains(out, "sometimes") {
		t.Errorf("systemd-analyze verify of a damaged copy said %q: the check above proves nothing", out)
	}
	out := run("security", "--offline=yes", write("paynotify.service", string(unit)))
	m := regexp.MustCompile(`Overall exposure level for paynotify\.service: ([0-9.]+) (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %s", out)
	}
	if level, _ := strconv.ParseFloat(m[1], 64); level > 2 {
		t.Errorf("systemd-analyze security rates the unit %s %s, want 2 or less", m[1], m[2])
	}
}
