package console_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/console"
	"github.com/paynotify/paynotify/internal/teststore"
	"github.com/paynotify/paynotify/storetest"
)

// refundingProvider accepts every refund as still processing (the refund stays pending).
type refundingProvider struct{ paynotify.Provider }

func (refundingProvider) Verifier(string) paynotify.Verifier { return nil }
func (refundingProvider) Refund(context.Context, *paynotify.Order, *paynotify.Refund, string) (*paynotify.Fact, error) {
	return nil, nil
}

// TestConsole_RefundLogLine: a refund made from the console left one log line, "console:
// action", with the app and out_trade_no only: not the amount, not the refund's out_request_no,
// not the client address or which session made it, and with one shared admin password that line
// is the only record of who moved the money (a reviewer helper's finding). It has them now, the
// session as a tag, never its id.
func TestConsole_RefundLogLine(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, s paynotify.Store) {
		ctx := t.Context()
		a := storetest.MustCreateOrder(t, ctx, s, storetest.NewOrder("app1", "A", storetest.T0))
		storetest.MustCommit(t, ctx, s, storetest.PaidChange(a, "evt_A", "ntf_A", storetest.T0.Add(time.Minute)))
		var logs bytes.Buffer
		var mu sync.Mutex
		e := setup(t, s, func(c *console.Console) {
			c.Service.Apps["app1"].Gateway = refundingProvider{}
			c.Logger = slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
		})
		token := e.login()
		_, _, confirm := e.do("POST", "/console/actions/refund", url.Values{"app": {"app1"}, "otn": {"A"}, "amount": {"5.00"}, "reason": {"complaint"}, "csrf": {token}})
		m := regexp.MustCompile(`name="out_request_no" value="([^"]+)"`).FindStringSubmatch(confirm)
		if m == nil {
			t.Fatalf("no out_request_no on the confirmation page:\n%s", confirm)
		}
		code, loc, _ := e.do("POST", "/console/actions/refund", url.Values{"app": {"app1"}, "otn": {"A"}, "amount": {"5.00"}, "reason": {"complaint"},
			"out_request_no": {m[1]}, "confirm": {"yes"}, "csrf": {token}})
		if code != http.StatusSeeOther {
			t.Fatalf("refund = %d → %s", code, loc)
		}
		mu.Lock()
		out := logs.String()
		mu.Unlock()
		var line string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "console: action") {
				line = l
			}
		}
		t.Logf("the log line of a ¥5.00 console refund: %s", line)
		for _, want := range []string{"out_request_no=" + m[1], "amount=5.00", "reason=complaint", "client_ip=127.0.0.1", "session="} {
			if !strings.Contains(line, want) {
				t.Errorf("the console's log line of the refund lacks %q", want)
			}
		}
		u, _ := url.Parse(e.url)
		for _, ck := range e.client.Jar.Cookies(u) {
			if ck.Name == "paynotify_console" && strings.Contains(out, ck.Value) {
				t.Error("the log holds the session's id")
			}
		}
	})
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
