package console

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoginLimits: 5 failures a minute per client IP, 20 for every client together; both
// forget after a minute.
func TestLoginLimits(t *testing.T) {
	var s sessions
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range 5 {
		if s.limited("10.0.0.1", t0) {
			t.Fatalf("limited after %d failures", i)
		}
		s.failed("10.0.0.1", t0)
	}
	if !s.limited("10.0.0.1", t0.Add(59*time.Second)) {
		t.Error("not limited after 5 failures within the minute")
	}
	if s.limited("10.0.0.2", t0) {
		t.Error("another address is limited after 5 failures of one")
	}
	if s.limited("10.0.0.1", t0.Add(time.Minute)) {
		t.Error("still limited a minute later")
	}
	// 20 failures from 20 addresses: everyone waits.
	var g sessions
	for i := range 20 {
		g.failed(fmt.Sprintf("10.0.1.%d", i), t0)
	}
	if !g.limited("10.0.2.1", t0.Add(time.Second)) {
		t.Error("a fresh address is not limited after 20 failures in total")
	}
	if g.limited("10.0.2.1", t0.Add(time.Minute)) {
		t.Error("the global limit holds after a minute")
	}
}

// TestLoginAttempts: attempt counts before the password is checked, so parallel guesses stop at
// the limit; a right password takes its count back.
func TestLoginAttempts(t *testing.T) {
	var s sessions
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s.attempt("10.0.0.1", t0) {
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := admitted.Load(); n != loginPerIP {
		t.Errorf("%d of 12 parallel attempts admitted, want %d", n, loginPerIP)
	}
	var r sessions
	for range 10 {
		if !r.attempt("10.0.0.2", t0) {
			t.Fatal("a right password was refused: its attempts are not taken back")
		}
		r.succeeded("10.0.0.2", t0)
	}
}

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"/console/orders?app=a&status=paid": "/console/orders?app=a&status=paid",
		"/console/":                         "/console/",
		"/console/anomalies":                "/console/anomalies",
		"":                                  "/console/",
		"//evil.example":                    "/console/",
		"/console/../\\evil.example":        "/console/",
		"/console/..%2F%5Cevil.example":     "/console/",
		"/console/%5c%5cevil.example":       "/console/",
		"/console/../../evil":               "/console/",
		"/console//evil.example":            "/console/",
		"https://evil.example/console/":     "/console/",
		"/console/\r\nX: y":                 "/console/",
		"/login":                            "/console/",
		"/consolex":                         "/console/",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

// TestSessions: ids are random and distinct, sessions end at 12 h whatever their use, and the
// store is bounded.
func TestSessions(t *testing.T) {
	var s sessions
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	a, b := s.create(t0), s.create(t0)
	if a.id == b.id || a.csrf == b.csrf || len(a.id) != 64 || a.id == a.csrf {
		t.Fatalf("ids %q %q, csrf %q %q", a.id, b.id, a.csrf, b.csrf)
	}
	for h := 1; h < 12; h++ {
		if s.get(a.id, t0.Add(time.Duration(h)*time.Hour), true) == nil {
			t.Fatalf("a session used every hour ended at %dh", h)
		}
	}
	if s.get(a.id, t0.Add(12*time.Hour+time.Second), true) != nil {
		t.Error("a session outlived 12 h")
	}
	// Looked at without being used (the live-update long-poll), a session still ends after
	// sessionIdle.
	c := s.create(t0)
	for m := 25 * time.Second; m < sessionIdle; m += 25 * time.Second {
		if s.get(c.id, t0.Add(m), false) == nil {
			t.Fatalf("a session polled every 25 s ended at %v", m)
		}
	}
	if s.get(c.id, t0.Add(sessionIdle+time.Second), false) != nil {
		t.Error("a session only polled, never used, outlived sessionIdle")
	}
	for range maxSessions + 5 {
		s.create(t0.Add(time.Hour))
	}
	if len(s.byID) > maxSessions {
		t.Errorf("%d sessions held, more than %d", len(s.byID), maxSessions)
	}
}

// TestLogin_BusyIsNotAFailure: a login refused because every password check's slot is taken was
// never checked, so it does not count against the limit (a reviewer helper's finding: five such
// refusals used up the minute, and the right password then got 429).
func TestLogin_BusyIsNotAFailure(t *testing.T) {
	hash, err := HashPassword("right password")
	if err != nil {
		t.Fatal(err)
	}
	c := &Console{PasswordHash: hash, Logger: slog.New(slog.DiscardHandler)}
	login := func(password string) int {
		r := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"password": {password}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		c.handleLogin(w, r)
		return w.Code
	}
	for range verifyConcurrency {
		c.verifying() <- struct{}{} // every slot busy with other logins
	}
	for i := range loginPerIP + 2 {
		if code := login("right password"); code != http.StatusTooManyRequests {
			t.Fatalf("login %d while every slot is busy = %d, want 429", i, code)
		}
	}
	for range verifyConcurrency {
		<-c.verifying()
	}
	if code := login("right password"); code != http.StatusSeeOther {
		t.Fatalf("the right password once a slot is free = %d, want 303: the busy refusals were counted", code)
	}
}
