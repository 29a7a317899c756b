package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/testsign"
)

// `paynotify webhooks` against a server running in-process on loopback (SQLite in t.TempDir()),
// delivering to a receiver on loopback. Nothing here reaches any other address: the app's gateway
// is a closed loopback port and every endpoint URL is the receiver's.

// lockedBuffer collects a server's log written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// delivery is one request the receiver got.
type delivery struct {
	path, id, timestamp, signature string
	body                           []byte
}

// receiver answers 204 to every delivery and keeps them.
type receiver struct {
	*httptest.Server
	mu  sync.Mutex
	got []delivery
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, delivery{path: req.URL.Path, id: req.Header.Get("webhook-id"), timestamp: req.Header.Get("webhook-timestamp"),
			signature: req.Header.Get("webhook-signature"), body: body})
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

// wait returns the first delivery with webhook-id id, waiting up to 15 s for it.
func (r *receiver) wait(t *testing.T, id string) delivery {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, d := range r.got {
			if d.id == id {
				r.mu.Unlock()
				return d
			}
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the receiver never got %s", id)
	return delivery{}
}

// signed reports whether the webhook-signature header holds the Standard Webhooks signature of d
// with secret.
func (d delivery) signed(t *testing.T, secret string) bool {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(d.id + "." + d.timestamp + "."))
	mac.Write(d.body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(d.signature) {
		if s == want {
			return true
		}
	}
	return false
}

// startWebhookServer runs `paynotify serve` in-process on a SQLite config that lets webhooks go
// to loopback over http, and returns its base URL and config file.
func startWebhookServer(t *testing.T, dir string) (string, string) {
	t.Helper()
	addr := freeAddr(t)
	config := writeServerConfig(t, dir, addr, "sqlite:"+filepath.Join(dir, "data", "paynotify.db"))
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), `api_token: "${PAYNOTIFY_API_TOKEN}"`, `api_token: "`+binToken+`"`, 1)
	cfg = strings.Replace(cfg, "    provider: alipay\n", "    provider: alipay\n    reconcile: {schedule: [1h]}\n", 1)
	cfg += "webhooks:\n  allow_http: true\n  allow_private_networks: true\n"
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	logs := &lockedBuffer{}
	go func() {
		m := &Main{Stdin: strings.NewReader(""), Stdout: io.Discard, Stderr: logs}
		done <- m.Run(ctx, []string{"serve", "--config", config})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("serve: exit %d", code)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	waitHealthy(t, base)
	return base, config
}

var (
	idLine     = regexp.MustCompile(`(?m)^id:\s+(we_\w+)$`)
	secretLine = regexp.MustCompile(`(?m)^secret:\s+(whsec_\S+)$`)
)

func TestWebhooksCommand(t *testing.T) {
	// The command reads these: start from neither.
	t.Setenv("PAYNOTIFY_API_TOKEN", "")
	t.Setenv("PAYNOTIFY_SERVER", "")
	dir := t.TempDir()
	recv := newReceiver(t)
	base, config := startWebhookServer(t, dir)
	tokenFile := filepath.Join(dir, "api_token")
	if err := os.WriteFile(tokenFile, []byte(binToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := []string{"--server", base, "--token-file", tokenFile}
	wh := func(args ...string) (int, string, string) {
		t.Helper()
		return runMain(t, "", append([]string{"webhooks"}, args...)...)
	}
	ok := func(args ...string) (string, string) {
		t.Helper()
		code, out, errs := wh(append(args, conn...)...)
		if code != exitOK {
			t.Fatalf("webhooks %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
		}
		return out, errs
	}

	// An event of the log from before the endpoints exist: an order paid by a signed notification.
	if code, o := binAPI(t, "POST", base+"/v1/orders", map[string]any{"app": "shop", "out_trade_no": "WHCLI1", "amount": 100, "subject": "s", "channel": "alipay.app"}); code != http.StatusCreated {
		t.Fatalf("create order: %d %v", code, o)
	}
	resp, err := http.Post(base+"/notify/alipay/shop", "application/x-www-form-urlencoded; text/html; charset=utf-8",
		bytes.NewReader(testsign.AlipayNotify(t, alipayTestKey, testsign.AlipayPaid(binAppID, binSeller, "WHCLI1", "1.00"))))
	if err != nil {
		t.Fatal(err)
	}
	if ans, _ := io.ReadAll(resp.Body); string(ans) != "success" {
		t.Fatalf("notify answer %q", ans)
	}
	resp.Body.Close()
	_, evs := binAPI(t, "GET", base+"/v1/events", nil)
	list, _ := evs["events"].([]any)
	if len(list) != 1 {
		t.Fatalf("events %v", evs)
	}
	paidEvent := list[0].(map[string]any)["id"].(string)

	// add: the endpoint with its secret, said to be shown once.
	out, errs := ok("add", "--url", recv.URL+"/hook", "--event", "order.paid,webhook.test", "--event", "order.closed", "--description", "CLI test")
	m := idLine.FindStringSubmatch(out)
	s := secretLine.FindStringSubmatch(out)
	if m == nil || s == nil || !strings.Contains(out, "order.paid,webhook.test,order.closed") || !strings.Contains(out, "enabled") ||
		!strings.Contains(errs, "shown only now") {
		t.Fatalf("add:\n%s\nstderr: %s", out, errs)
	}
	ep, secret := m[1], s[1]
	out, _ = ok("add", "--url", recv.URL+"/other", "--app", "shop", "--json")
	var other struct {
		ID     string   `json:"id"`
		Apps   []string `json:"apps"`
		Secret string   `json:"secret"`
		Status string   `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &other); err != nil || other.Secret == "" || other.Status != "enabled" || len(other.Apps) != 1 {
		t.Fatalf("add --json: %v %q", err, out)
	}

	// list and get: never a secret.
	out, _ = ok("list")
	if !strings.Contains(out, ep) || !strings.Contains(out, other.ID) || !strings.Contains(out, "CLI test") || strings.Contains(out, "whsec_") {
		t.Fatalf("list:\n%s", out)
	}
	out, _ = ok("list", "--json")
	var listed struct {
		Endpoints []map[string]any `json:"webhook_endpoints"`
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed.Endpoints) != 2 || strings.Contains(out, "whsec_") || strings.Contains(out, `"secret"`) {
		t.Fatalf("list --json: %v %s", err, out)
	}
	out, _ = ok("get", ep)
	if !strings.Contains(out, "url:") || !strings.Contains(out, recv.URL+"/hook") || strings.Contains(out, "whsec_") {
		t.Fatalf("get:\n%s", out)
	}

	// disable and enable; update.
	statusOf := func(out string) string {
		t.Helper()
		m := regexp.MustCompile(`(?m)^status:\s+(\w+)$`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no status in\n%s", out)
		}
		return m[1]
	}
	if out, _ = ok("disable", ep); statusOf(out) != "disabled" || !strings.Contains(out, "disabled_reason:") {
		t.Fatalf("disable:\n%s", out)
	}
	if out, _ = ok("get", ep); statusOf(out) != "disabled" {
		t.Fatalf("get after disable:\n%s", out)
	}
	if code, _, errs := wh(append([]string{"test", ep}, conn...)...); code != exitInvalid || !strings.Contains(errs, "disabled") {
		t.Fatalf("test of a disabled endpoint: exit %d %q", code, errs)
	}
	if out, _ = ok("enable", ep); statusOf(out) != "enabled" {
		t.Fatalf("enable:\n%s", out)
	}
	out, _ = ok("update", ep, "--event", "order.paid", "--event", "webhook.test", "--description", "updated")
	if !strings.Contains(out, "order.paid,webhook.test") || !strings.Contains(out, "updated") {
		t.Fatalf("update:\n%s", out)
	}
	if out, _ = ok("update", other.ID, "--all-apps"); !regexp.MustCompile(`(?m)^apps:\s+all$`).MatchString(out) {
		t.Fatalf("update --all-apps:\n%s", out)
	}

	// rotate: the new secret alone on stdout, the warning on stderr.
	out, errs = ok("rotate", ep)
	newSecret := strings.TrimSpace(out)
	if !strings.HasPrefix(newSecret, "whsec_") || strings.Contains(newSecret, "\n") || newSecret == secret || !strings.Contains(errs, "shown only now") {
		t.Fatalf("rotate: %q, stderr %q", out, errs)
	}
	if out, _ = ok("get", ep); !strings.Contains(out, "old_secret_expires_at:") || strings.Contains(out, "whsec_") {
		t.Fatalf("get after rotate:\n%s", out)
	}

	// test: delivered to the receiver, signed with both secrets during the overlap.
	out, _ = ok("test", ep)
	tm := regexp.MustCompile(`^queued webhook.test event (evt_\w+) for ` + ep + `\n$`).FindStringSubmatch(out)
	if tm == nil {
		t.Fatalf("test: %q", out)
	}
	d := recv.wait(t, tm[1])
	if d.path != "/hook" {
		t.Fatalf("the test event went to %s", d.path)
	}
	if !d.signed(t, newSecret) || !d.signed(t, secret) {
		t.Fatalf("the test delivery is not signed with both secrets: %q", d.signature)
	}

	// attempts: the delivered one, once recorded.
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _ = ok("attempts", ep, "--json")
		if strings.Contains(out, tm[1]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no attempt recorded: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, _ = ok("attempts", ep, "--limit", "10")
	if !strings.Contains(out, "STATUS") || !regexp.MustCompile(`(?m)\s204\s.*`+tm[1]+`\s+webhook.test`).MatchString(out) {
		t.Fatalf("attempts:\n%s", out)
	}
	if out, _ = ok("attempts", ep, "--event-id", "evt_nope"); strings.TrimSpace(out) != "no attempts" {
		t.Fatalf("attempts of another event:\n%s", out)
	}
	if out, _ = ok("attempts", other.ID); strings.TrimSpace(out) != "no attempts" {
		t.Fatalf("attempts of a new endpoint (it receives only the events committed after its creation):\n%s", out)
	}

	// resend: an unknown event is the API's 404, exit 1 with its message; a real one is delivered.
	if code, out, errs := wh(append([]string{"resend", "evt_nope"}, conn...)...); code != exitInvalid || !strings.Contains(errs, "Event not found") || out != "" {
		t.Fatalf("resend of an unknown event: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if out, _ = ok("resend", paidEvent, "--endpoint", ep); out != "queued 1 delivery of "+paidEvent+" to "+ep+"\n" {
		t.Fatalf("resend: %q", out)
	}
	if d := recv.wait(t, paidEvent); d.path != "/hook" || !d.signed(t, newSecret) || !bytes.Contains(d.body, []byte(`"type":"order.paid"`)) {
		t.Fatalf("resent delivery %q %s", d.signature, d.body)
	}

	// recover: a duration, or an RFC 3339 time.
	if out, _ = ok("recover", ep, "--since", "1h"); !regexp.MustCompile(`^queued \d+ deliver(y|ies) to ` + ep + ` \(failed or missed since \S+\)\n$`).MatchString(out) {
		t.Fatalf("recover --since 1h: %q", out)
	}
	if out, _ = ok("recover", ep, "--since", time.Now().Add(-2*time.Hour).UTC().Format(time.RFC3339), "--json"); !strings.Contains(out, `"deliveries"`) {
		t.Fatalf("recover --json: %q", out)
	}

	// delete.
	if out, _ = ok("delete", other.ID); out != "deleted "+other.ID+"\n" {
		t.Fatalf("delete: %q", out)
	}
	if code, _, errs := wh(append([]string{"get", other.ID}, conn...)...); code != exitInvalid || !strings.Contains(errs, "not found") {
		t.Fatalf("get after delete: exit %d %q", code, errs)
	}

	// The API's refusals: exit 1 with the message naming the field.
	if code, _, errs := wh(append([]string{"add", "--url", "ftp://127.0.0.1/x"}, conn...)...); code != exitInvalid || !strings.Contains(errs, "url:") {
		t.Fatalf("add with a bad URL: exit %d %q", code, errs)
	}
	if code, _, errs := wh(append([]string{"add", "--url", recv.URL, "--event", "order.shipped"}, conn...)...); code != exitInvalid || !strings.Contains(errs, "events:") {
		t.Fatalf("add with an unknown event type: exit %d %q", code, errs)
	}
	if code, _, errs := wh(append([]string{"attempts", "we_nope"}, conn...)...); code != exitInvalid || !strings.Contains(errs, "not found") {
		t.Fatalf("attempts of an unknown endpoint: exit %d %q", code, errs)
	}

	t.Run("Usage", func(t *testing.T) {
		for _, tt := range []struct {
			args []string
			want string
		}{
			{[]string{}, "subcommand is required"},
			{[]string{"frobnicate"}, `unknown subcommand "frobnicate"`},
			{append([]string{"get"}, conn...), "missing argument"},
			{append([]string{"get", "a", "b"}, conn...), `unexpected argument "b"`},
			{append([]string{"list", "extra"}, conn...), `unexpected argument "extra"`},
			{append([]string{"add"}, conn...), "--url is required"},
			{append([]string{"update", ep}, conn...), "nothing to change"},
			{append([]string{"update", ep, "--event", "order.paid", "--all-events"}, conn...), "exclude each other"},
			{append([]string{"update", ep, "--event", ""}, conn...), "--event needs a value"},
			{append([]string{"add", "--url", recv.URL, "--app", ","}, conn...), "--app needs a value"},
			{append([]string{"attempts", ep, "--limit", "x"}, conn...), "limit"},
			{append([]string{"attempts", ep, "--limit", "5000"}, conn...), "limit"},
			{append([]string{"list", "--bogus"}, conn...), "bogus"},
			{append([]string{"recover", ep}, conn...), "--since is required"},
			{append([]string{"recover", ep, "--since", "yesterday"}, conn...), "--since"},
			{append([]string{"recover", ep, "--since", "-1h"}, conn...), "positive"},
			{append([]string{"resend"}, conn...), "missing argument"},
			{append([]string{"resend", "evt_x", "--endpoint", ""}, conn...), "--endpoint is empty"},
			{[]string{"list", "--server", "ftp://127.0.0.1:1", "--token-file", tokenFile}, "must be an http(s) URL"},
			{[]string{"list", "--server", base, "--token", binToken}, "--token-file"},
			{[]string{"list", "--server", base, "--token-file", tokenFile, "--token="}, "--token is refused"},
			{[]string{"list", "--token-file", tokenFile, "--server", "127.0.0.1:8080"}, "http(s) URL"},
			{[]string{"list", "--server", base, "--token-file", filepath.Join(dir, "nope")}, "--token-file"},
			{[]string{"list", "--server", base, "--config", filepath.Join(dir, "nope.yaml")}, "nope.yaml"},
		} {
			code, out, errs := wh(tt.args...)
			if code != exitUsage || !strings.Contains(errs, tt.want) || out != "" {
				t.Errorf("webhooks %v: exit %d, stdout %q, stderr %q; want exit 2 and %q", tt.args, code, out, errs, tt.want)
			}
			if strings.Contains(errs, binToken) {
				t.Errorf("webhooks %v: stderr shows the token", tt.args)
			}
		}
		if code, out, _ := wh("--help"); code != exitOK || !strings.Contains(out, "Usage: paynotify webhooks") {
			t.Errorf("--help: exit %d %q", code, out)
		}
		if code, out, _ := wh("recover", "--help"); code != exitOK || !strings.Contains(out, "recover ID --since") {
			t.Errorf("recover --help: exit %d %q", code, out)
		}
	})

	t.Run("Token", func(t *testing.T) {
		// None: a usage error, before any request.
		code, _, errs := wh("list", "--server", base)
		if code != exitUsage || !strings.Contains(errs, "no API token") || !strings.Contains(errs, "PAYNOTIFY_API_TOKEN") {
			t.Fatalf("no token: exit %d %q", code, errs)
		}
		// A wrong one: the API's 401, exit 1.
		wrong := filepath.Join(dir, "wrong_token")
		os.WriteFile(wrong, []byte("wrong-token-0123456789"), 0o600)
		if code, _, errs := wh("list", "--server", base, "--token-file", wrong); code != exitInvalid || !strings.Contains(errs, "Missing or wrong API token") {
			t.Fatalf("wrong token: exit %d %q", code, errs)
		}
		// An empty file.
		empty := filepath.Join(dir, "empty_token")
		os.WriteFile(empty, []byte("\n"), 0o600)
		if code, _, errs := wh("list", "--server", base, "--token-file", empty); code != exitUsage || !strings.Contains(errs, "empty") {
			t.Fatalf("empty token file: exit %d %q", code, errs)
		}
		// The config file: its api_token and its listen address.
		if code, out, errs := wh("list", "--config", config); code != exitOK || !strings.Contains(out, ep) {
			t.Fatalf("--config: exit %d %q %q", code, out, errs)
		}
		// The environment.
		t.Setenv("PAYNOTIFY_API_TOKEN", binToken)
		t.Setenv("PAYNOTIFY_SERVER", base)
		if code, out, errs := wh("get", ep); code != exitOK || !strings.Contains(out, ep) {
			t.Fatalf("from the environment: exit %d %q %q", code, out, errs)
		}
		// --token-file wins over the environment.
		if code, _, _ := wh("get", ep, "--token-file", wrong); code != exitInvalid {
			t.Fatalf("--token-file did not win over $PAYNOTIFY_API_TOKEN: exit %d", code)
		}
		// A server that is not there: exit 1.
		if code, _, errs := wh("list", "--server", "http://127.0.0.1:1"); code != exitInvalid || !strings.Contains(errs, "cannot reach") {
			t.Fatalf("no server: exit %d %q", code, errs)
		}
	})
}

func TestWebhooksParseSince(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                       now.Add(-24 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
		"2026-11-28T08:00:00+08:00": time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC),
		"2026-11-28T00:00:00.5Z":    time.Date(2026, 11, 28, 0, 0, 0, 5e8, time.UTC),
	} {
		if got, err := parseSince(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0s", "-1h", "yesterday", "2026-11-28", "1d"} {
		if _, err := parseSince(in, now); err == nil {
			t.Errorf("parseSince(%q): no error", in)
		}
	}
}

func TestWebhooksListenURL(t *testing.T) {
	for in, want := range map[string]string{
		":8080":              "http://127.0.0.1:8080",
		"0.0.0.0:9000":       "http://127.0.0.1:9000",
		"[::]:9000":          "http://[::1]:9000",
		"127.0.0.1:8080":     "http://127.0.0.1:8080",
		"pay.internal:8080":  "http://pay.internal:8080",
		"[2001:db8::1]:8080": "http://[2001:db8::1]:8080",
	} {
		if got := listenURL(in); got != want {
			t.Errorf("listenURL(%q) = %q, want %q", in, got, want)
		}
	}
}
