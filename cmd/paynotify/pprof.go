package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/paynotify/paynotify/httpd"
)

// servePprof serves Go's profiler on addr, which must be a loopback address: the profiles show
// the program's internals (never request contents or keys, but nothing for other hosts either).
// It returns a function that stops it.
func servePprof(addr string, logger *slog.Logger) (stop func(), err error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// Loopback host names only, as the demo: a web page elsewhere cannot read the profiles
	// through DNS rebinding (a reviewer helper's finding).
	srv := &http.Server{Handler: httpd.AllowHosts(mux, httpd.LoopbackHost), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("pprof server", "err", err)
		}
	}()
	logger.Info("pprof", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// checkLoopback accepts host:port whose host is a loopback IP address or "localhost".
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return errors.New("the address must be a loopback IP address (127.0.0.0/8, [::1]) or localhost")
	}
	return nil
}
