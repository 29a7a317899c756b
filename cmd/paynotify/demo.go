package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/paynotify/paynotify/console"
	"github.com/paynotify/paynotify/httpd"
	"github.com/paynotify/paynotify/internal/sandboxapps"
	"github.com/paynotify/paynotify/sandbox"
	"github.com/paynotify/paynotify/webhook"
)

// Demo mode (README.md, "The two commands"): `paynotify serve` with no config runs on SQLite and
// generated keys under ./paynotify-data/, with the sandbox in the same process under /sandbox/ and
// two apps, alipay-demo and wechatpay-demo, on 127.0.0.1:8080 only.
const (
	demoListen   = "127.0.0.1:8080"
	demoDataDir  = "paynotify-data"
	demoDatabase = "demo.db" // in demoDataDir
)

// runDemo runs the demo until ctx ends.
func runDemo(ctx context.Context, m *Main, logger *slog.Logger, listen, dataDir string, noMigrate bool) error {
	if listen == "" {
		listen = demoListen
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return usagef("paynotify serve --listen 127.0.0.1:8080", "serve: --listen %q: %v", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return usagef("paynotify serve --listen 127.0.0.1:8080", "serve: the demo listens on a loopback address only (its API token is printed), not %q", listen)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return configErrorf("demo: %w", err)
	}
	token, err := loadOrCreateToken(filepath.Join(dataDir, "api_token"))
	if err != nil {
		return configErrorf("demo: %w", err)
	}
	base := "http://" + listen

	sb, err := sandbox.New(sandbox.Config{StateDir: filepath.Join(dataDir, "sandbox"), BaseURL: base, Logger: logger})
	if err != nil {
		return configErrorf("demo: %w", err)
	}
	sctx, stopSandbox := context.WithCancel(context.Background())
	sandboxDone := make(chan struct{})
	defer func() {
		stopSandbox()
		<-sandboxDone
		sb.Close()
	}()
	go func() {
		defer close(sandboxDone)
		sb.Start(sctx)
	}()

	apps, err := sandboxapps.Apps(sb.Keys(), base, base+"/")
	if err != nil {
		return configErrorf("demo: %w", err)
	}
	// Not paynotify.db: that is a config's default database (DefaultDatabase), and a demo started
	// by mistake where a server runs must not open the server's orders.
	st, err := openStoreLogged(ctx, "sqlite:"+filepath.Join(dataDir, demoDatabase), !noMigrate, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	cfg := &Config{APIToken: token, PublicURL: base}
	svc := newService(cfg, st, apps, logger)
	srv := newServer(cfg, st, svc, logger)
	cfg.Webhooks = WebhooksConfig{AllowHTTP: true, AllowPrivateNetworks: true, Concurrency: 8}
	svc.CheckWebhookURL = func(u string) error { return webhook.CheckURL(u, true, true) }
	bg, err := newBackground(ctx, cfg, st, svc, logger)
	if err != nil {
		return err
	}
	defer bg.Close()
	// The console without a login (docs/console.md): GET / is its overview with the create-and-pay
	// form.
	con := &console.Console{Service: svc, Demo: true, APIToken: token, Logger: logger}
	srv.Mount = con.Routes()
	srv.OnStopLongPolls = append(srv.OnStopLongPolls, con.StopLongPolls, sb.StopLongPolls)
	srv.Mount["/sandbox/"] = sb.Handler()
	srv.Mount["/v3/"] = sb.Handler()
	// The sandbox's keys (its merchants' private keys among them) go to the demo's token holder
	// only; offline: paynotify sandbox keys --state-dir <data-dir>/sandbox.
	srv.Mount["GET /sandbox/api/keys"] = requireToken(token, sb.Handler())
	// The console carries the API token and the sandbox hands out its keys: answer only to
	// loopback host names, so that another site cannot read them through DNS rebinding.
	srv.AllowHost = httpd.LoopbackHost
	return listenAndServe(ctx, m, logger, listen, srv, bg, func(addr string) {
		fmt.Fprintf(m.Stdout, `
paynotify demo is running (no config: SQLite and throw-away keys under %s/).

  Open        %s/            the console: create an order, pay it in the sandbox, watch its timeline
  Sandbox     %s/sandbox/    simulated Alipay and WeChat Pay (WeChat APIv3 also at %s/v3/)
  Apps        alipay-demo, wechatpay-demo, alipay-legacy-demo (legacy mapi / WAP, MD5)
  API token   %s
              (a local demo credential, stored in %s)

  curl -H 'Authorization: Bearer %s' %s/v1/events

`, demoDirShown(dataDir), base, base, base, token, filepath.Join(dataDir, "api_token"), token, base)
	})
}

// demoDirShown is the data directory as the banner says it: as given when it is absolute, else
// "./" and the path (the banner said ./<last element> for any --data-dir, a place that did not
// exist for /tmp/demo).
func demoDirShown(dir string) string {
	c := filepath.Clean(dir)
	if filepath.IsAbs(c) || c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return c
	}
	return "./" + c
}

// requireToken passes to h only the requests bearing token (Authorization: Bearer), and answers
// the others 401.
func requireToken(token string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":"unauthorized","message":"The demo's sandbox keys need the demo's API token (Authorization: Bearer …); or run paynotify sandbox keys --state-dir with the demo's data directory."}}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loadOrCreateToken reads the demo API token, or makes one (0600) on first run.
func loadOrCreateToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if tok := strings.TrimSpace(string(b)); len(tok) >= 16 {
			return tok, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	tok := "demo_" + hex.EncodeToString(r[:])
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	return tok, nil
}
