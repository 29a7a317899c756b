package main

import (
	"io"
	"log/slog"
	"net/http"
	"testing"
)

// TestPprofLoopbackHostOnly: the profiler answers only requests addressed to a loopback name, so
// that a web page elsewhere cannot read it through DNS rebinding (a reviewer helper's finding).
func TestPprofLoopbackHostOnly(t *testing.T) {
	addr := freeAddr(t)
	stop, err := servePprof(addr, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	get := func(host string) int {
		req, err := http.NewRequest("GET", "http://"+addr+"/debug/pprof/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(addr); code != http.StatusOK {
		t.Errorf("Host %s: %d, want 200", addr, code)
	}
	if code := get("rebound.example:6060"); code != http.StatusMisdirectedRequest {
		t.Errorf("Host rebound.example: %d, want 421", code)
	}
}
