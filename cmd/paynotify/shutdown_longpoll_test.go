package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/paynotify/paynotify/console"
)

// TestShutdown_ConsoleLongPoll (from a reviewer helper's audit): an open console page long-polls
// GET /console/wait for 25 s. The API's long-polls were released at SIGTERM, the console's were
// not: every stop with a console tab open waited it out, the listener already closed
// (notifications refused) and the port not free for the next instance. It is released too.
func TestShutdown_ConsoleLongPoll(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	config := writeServerConfig(t, dir, addr, "sqlite:"+filepath.Join(dir, "paynotify.db"))
	hash, err := console.HashPassword("a long enough password")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("console:\n  admin_password_hash: '" + hash + "'\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cmd := startBinary(t, bin, config, addr)
	base := "http://" + addr

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.PostForm(base+"/login", url.Values{"password": {"a long enough password"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "paynotify_console" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("login: %d, no session cookie", resp.StatusCode)
	}
	wait := func(stamp string) (string, error) {
		req, err := http.NewRequest("GET", base+"/console/wait?stamp="+url.QueryEscape(stamp), nil)
		if err != nil {
			return "", err
		}
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var out map[string]string
		err = json.NewDecoder(resp.Body).Decode(&out)
		return out["stamp"], err
	}
	stamp, err := wait("not-a-stamp") // answers at once with the current stamp
	if err != nil {
		t.Fatalf("first wait: %v", err)
	}
	answered := make(chan error, 1)
	go func() { _, err := wait(stamp); answered <- err }() // an open page's long-poll
	time.Sleep(300 * time.Millisecond)

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("no exit 40 s after SIGTERM")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("SIGTERM took %v: the console's long-poll was waited out (25 s)", took.Round(time.Millisecond))
	}
	if err := <-answered; err != nil {
		t.Errorf("the long-poll was not answered: %v", err)
	}
}

// TestShutdown_SandboxLongPoll (from a reviewer helper's review): `paynotify sandbox` stopped with
// an attempts long-poll open (wait up to 10 minutes) cut it without an answer; it is answered
// (200, complete false) and the command ends at once.
func TestShutdown_SandboxLongPoll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done := startSandbox(t, ctx, io.Discard)
	type answer struct {
		code     int
		complete bool
		err      error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.Get(base + "/sandbox/api/attempts?out_trade_no=none&min=1&wait=10m")
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var out struct {
			Complete bool `json:"complete"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		answered <- answer{resp.StatusCode, out.Complete, err}
	}()
	time.Sleep(300 * time.Millisecond)
	cancel() // as SIGTERM does
	select {
	case a := <-answered:
		if a.err != nil || a.code != http.StatusOK || a.complete {
			t.Errorf("the long-poll at shutdown: %+v, want 200 and complete false", a)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the long-poll still waits 20 s after the stop")
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the sandbox did not end 20 s after the stop")
	}
}
