package sandbox

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/wechatpay"
)

// keyTemplate is a state directory with generated keys, made once per test binary and copied
// into each test's own directory: RSA key generation is the slow part of New.
var (
	keyTemplateOnce sync.Once
	keyTemplateDir  string
	keyTemplateErr  error
)

func keyTemplate(t testing.TB) string {
	keyTemplateOnce.Do(func() {
		keyTemplateDir, keyTemplateErr = os.MkdirTemp("", "sandbox-keys-")
		if keyTemplateErr == nil {
			_, keyTemplateErr = loadOrCreateKeys(keyTemplateDir)
		}
	})
	if keyTemplateErr != nil {
		t.Fatal(keyTemplateErr)
	}
	return keyTemplateDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if keyTemplateDir != "" {
		os.RemoveAll(keyTemplateDir)
	}
	os.Exit(code)
}

type testBundle struct {
	sb     *Sandbox
	srv    *httptest.Server
	ctx    context.Context
	keys   Keys
	stateD string
}

// setup starts a sandbox on a real loopback listener with the given time scale and its notifier.
func setup(t *testing.T, scale float64) *testBundle {
	t.Helper()
	b := setupStopped(t, scale)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.sb.Start(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	b.ctx = ctx
	return b
}

// setupStopped serves a sandbox on a real loopback listener but never starts its notifier:
// notifications are enqueued and never sent, and nothing but the requests a test makes takes
// the sandbox's lock.
func setupStopped(t *testing.T, scale float64) *testBundle {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(keyTemplate(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(keyTemplateDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	sb, err := New(Config{StateDir: dir, BaseURL: srv.URL, TimeScale: scale, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h = sb.Handler()
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Error(err)
		}
	})
	return &testBundle{sb: sb, srv: srv, ctx: context.Background(), keys: sb.Keys(), stateD: dir}
}

func (b *testBundle) alipayClient(t *testing.T) *alipay.Client {
	t.Helper()
	priv, err := alipay.ParsePrivateKey([]byte(b.keys.AlipayAppPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := alipay.ParsePublicKey([]byte(b.keys.AlipayPublicKey))
	if err != nil {
		t.Fatal(err)
	}
	c, err := alipay.NewClient(alipay.Config{AppID: b.keys.AlipayAppID, PrivateKey: priv, AlipayPublicKey: pub,
		Gateway: b.srv.URL + "/sandbox/alipay/gateway.do"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (b *testBundle) wechatClient(t *testing.T) *wechatpay.Client {
	t.Helper()
	priv, err := wechatpay.ParsePrivateKey([]byte(b.keys.WechatMerchantPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := wechatpay.ParsePublicKey([]byte(b.keys.WechatPlatformPublicKey))
	if err != nil {
		t.Fatal(err)
	}
	c, err := wechatpay.NewClient(wechatpay.Config{MchID: b.keys.WechatMchID, AppID: b.keys.WechatAppID, MerchantPrivateKey: priv,
		MerchantSerialNo: b.keys.WechatMerchantSerialNo, APIv3Key: []byte(b.keys.WechatAPIv3Key), PlatformPublicKey: pub,
		PlatformPublicKeyID: b.keys.WechatPlatformPublicKeyID, BaseURL: b.srv.URL + "/sandbox/wechatpay"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// merchant is a merchant's notify endpoint that records every request and answers with answer.
type merchant struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []merchantReq
	answer func(n int, r *http.Request, body []byte) (int, string)
}

type merchantReq struct {
	header http.Header
	body   []byte
	at     time.Time
}

func newMerchant(t *testing.T, answer func(n int, r *http.Request, body []byte) (int, string)) *merchant {
	m := &merchant{answer: answer}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		m.mu.Lock()
		m.reqs = append(m.reqs, merchantReq{r.Header.Clone(), body, time.Now()})
		n := len(m.reqs)
		m.mu.Unlock()
		status, text := m.answer(n, r, body)
		w.WriteHeader(status)
		io.WriteString(w, text)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *merchant) requests() []merchantReq {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]merchantReq(nil), m.reqs...)
}

// alipayOK answers success; wechatOK answers 204.
func alipayOK(int, *http.Request, []byte) (int, string) { return 200, "success" }
func wechatOK(int, *http.Request, []byte) (int, string) { return 204, "" }

func waitCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// splitAlipayAnswer returns the exact bytes of the <method>_response node of a gateway answer
// and its top-level sign. json.RawMessage keeps each value's bytes as they appear in the body,
// which is what Alipay signs.
func splitAlipayAnswer(t *testing.T, body []byte, method string) (node []byte, sign string) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatalf("answer %s: %v", body, err)
	}
	node = top[strings.ReplaceAll(method, ".", "_")+"_response"]
	if node == nil {
		t.Fatalf("answer without the %s node: %s", method, body)
	}
	if err := json.Unmarshal(top["sign"], &sign); err != nil {
		t.Fatalf("answer sign: %v", err)
	}
	return node, sign
}
