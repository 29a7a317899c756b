package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/paynotify/paynotify/sandbox"
)

// TestReprocessCommand_DownloadsPlatformCerts: a WeChat Pay app verifying with platform
// certificates whose platform_cert_files predate a rotation. The server could not download the
// current certificate (the API answered 503) when it started, so it rejected the notifications; once downloads
// work again, `paynotify reprocess` downloads the certificates as serve does at its start and
// accepts them (a reviewer's finding: it verified with the configured files only, so the
// notifications stayed rejected until a server reprocessed them).
func TestReprocessCommand_DownloadsPlatformCerts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildBinary(t)
	dir := t.TempDir()
	dsn := "sqlite:" + filepath.Join(dir, "data", "paynotify.db")
	sb := newTestSandbox(t, 1000)
	k := sb.Keys()
	if err := sb.SetWechatPlatformKeyMode(k.WechatMchID, sandbox.PlatformKeyCertificate); err != nil {
		t.Fatal(err)
	}
	var blocked atomic.Bool
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/v3/certificates") {
			if blocked.Load() {
				http.Error(w, "unavailable", http.StatusServiceUnavailable)
				return
			}
		}
		sb.Handler().ServeHTTP(w, r)
	}))
	defer front.Close()
	addr := freeAddr(t)
	path := writeSandboxConfigAt(t, dir, addr, dsn, sb, front.URL, "    reconcile: {schedule: [1h]}", "")
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The certificate the app was configured with: another one than the sandbox signs with.
	stale, err := os.ReadFile("../../wechatpay/testdata/platform_cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stale_cert.pem"), stale, 0o600); err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("    platform_public_key_file: wx_platform.pem\n    platform_public_key_id: %q\n", k.WechatPlatformPublicKeyID)
	if !strings.Contains(string(cfg), old) {
		t.Fatalf("%q is not in the config", old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(cfg), old, "    platform_cert_files: [stale_cert.pem]\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}

	// The order is created while the server can download the certificate (creating it needs a
	// verified answer); the server is then restarted without that certificate.
	blocked.Store(false)
	srv := startBinary(t, bin, path, addr)
	base := "http://" + addr
	o := createOrders(t, base, "C", 2)[1]
	if o.app != "wechatpay-demo" {
		t.Fatalf("order %s of %s, want a WeChat Pay one", o.otn, o.app)
	}
	srv.Process.Signal(syscall.SIGTERM)
	srv.Wait()
	blocked.Store(true)
	srv = startBinary(t, bin, path, addr)
	payAt(t, sb, o)
	waitRejected(t, base, o.otn, 2)
	if st, _ := status(t, base, o); st == "paid" {
		t.Fatal("paid while the notifications did not verify")
	}
	srv.Process.Signal(syscall.SIGTERM)
	srv.Wait()

	blocked.Store(false)
	out, errOut, code := runCLI(t, bin, "reprocess", "--config", path, "--since", "1h")
	wantReprocessedOnce(t, 2, out, errOut, code)
	startBinary(t, bin, path, addr)
	if st, _ := status(t, base, o); st != "paid" {
		t.Fatalf("order %s after reprocess", st)
	}
}
