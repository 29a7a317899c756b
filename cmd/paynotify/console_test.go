package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/console"
)

// TestNewServer_Console: the console is mounted only with console.admin_password_hash, and its
// cookie is Secure on every request when public_url is https.
func TestNewServer_Console(t *testing.T) {
	hash, err := console.HashPassword("pw")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	serve := func(cfg *Config, method, path, body string) *http.Response {
		t.Helper()
		srv := newServer(cfg, nil, &paynotify.Service{Apps: map[string]*paynotify.App{}}, logger)
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		return rec.Result()
	}
	off := &Config{APIToken: "0123456789abcdef0123", PublicURL: "https://pay.example.com"}
	for _, p := range []string{"/", "/login", "/console/"} {
		if code := serve(off, "GET", p, "").StatusCode; code != http.StatusNotFound {
			t.Errorf("without a console block GET %s = %d, want 404", p, code)
		}
	}
	on := &Config{APIToken: "0123456789abcdef0123", PublicURL: "https://pay.example.com", Console: ConsoleConfig{AdminPasswordHash: hash}}
	if r := serve(on, "GET", "/", ""); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login" {
		t.Errorf("with the console GET / = %d → %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := serve(on, "POST", "/console/actions/close", "app=a&otn=b"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST /console/… without a session = %d, want 401", r.StatusCode)
	}
	r := serve(on, "POST", "/login", "password=pw")
	if sc := r.Header.Get("Set-Cookie"); r.StatusCode != http.StatusSeeOther || !strings.Contains(sc, "Secure") {
		t.Errorf("login behind an https public_url: %d, Set-Cookie %q", r.StatusCode, sc)
	}
}
