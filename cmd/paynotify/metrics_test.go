package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/internal/testsign"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape GETs url and parses the Prometheus text format; it fails the test on any other answer.
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET %s: Content-Type %q, want the text format", url, ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("GET %s: not the Prometheus text format: %v\n%s", url, err, body)
	}
	return fams, string(body)
}

// metricValue returns the value of the sample of family name whose labels include labels (a
// counter's, a gauge's, or a histogram's count), and whether there is one.
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func wantMetric(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) {
	t.Helper()
	got, ok := metricValue(fams, name, labels)
	if !ok {
		t.Errorf("%s%v: missing", name, labels)
		return
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// TestBinary_Metrics runs the real binary on each store: a payment and a forged notification
// show in GET /metrics on the main listener, with the commit and processing histograms, the
// order counts, the reconciliation and webhook families and Go's runtime; nothing secret or
// unbounded (the API token, an out_trade_no) is in it. Restarted with admin_listen, /metrics
// moves to the admin listener (404 on the main one) and the counts taken at start show the
// order paid before.
func TestBinary_Metrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	for _, store := range []string{"SQLite", "PostgreSQL"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			dsn := "sqlite:" + filepath.Join(dir, "data", "paynotify.db")
			if store == "PostgreSQL" {
				dsn = pgtest.NewDatabase(t)
			}
			addr := freeAddr(t)
			config := writeServerConfig(t, dir, addr, dsn)
			cmd := startBinary(t, bin, config, addr)
			base := "http://" + addr

			fams, _ := scrape(t, base+"/metrics")
			wantMetric(t, fams, "paynotify_orders", map[string]string{"status": "pending"}, 0)
			// The counters that alerts watch are there at 0 before their first event, so that
			// rate() and increase() see it.
			wantMetric(t, fams, "paynotify_notifications_total", map[string]string{"provider": "alipay", "app": "shop", "verdict": "anomaly", "reason": "amount_mismatch"}, 0)
			// A late payment is applied: accepted, with its reason (no such anomaly series).
			wantMetric(t, fams, "paynotify_notifications_total", map[string]string{"provider": "alipay", "app": "shop", "verdict": "accepted", "reason": "late_payment"}, 0)
			if _, ok := metricValue(fams, "paynotify_notifications_total", map[string]string{"verdict": "anomaly", "reason": "late_payment"}); ok {
				t.Error("a series of late payments as anomalies, which never happen")
			}
			wantMetric(t, fams, "paynotify_webhook_endpoints_disabled_total", map[string]string{"cause": "failing"}, 0)
			wantMetric(t, fams, "paynotify_webhook_attempts_total", map[string]string{"kind": "http", "outcome": "retry", "status": "5xx"}, 0)
			if v, ok := metricValue(fams, "paynotify_counts_refreshed_timestamp_seconds", nil); !ok || v == 0 {
				t.Errorf("paynotify_counts_refreshed_timestamp_seconds = %v, %v: the counts were not taken at start", v, ok)
			}

			code, o := binAPI(t, "POST", base+"/v1/orders", map[string]any{"app": "shop", "out_trade_no": "M0001", "amount": 8888, "subject": "metrics", "channel": "alipay.app"})
			if code != http.StatusCreated {
				t.Fatalf("create: %d %v", code, o)
			}
			post := func(body []byte) string {
				resp, err := http.Post(base+"/notify/alipay/shop", "application/x-www-form-urlencoded; charset=utf-8", bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				ans, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return string(ans)
			}
			paid := testsign.AlipayNotify(t, alipayTestKey, testsign.AlipayPaid(binAppID, binSeller, "M0001", "88.88"))
			if ans := post(paid); ans != "success" {
				t.Fatalf("paid: answer %q", ans)
			}
			if ans := post(paid); ans != "success" {
				t.Fatalf("duplicate: answer %q", ans)
			}
			forged := bytes.Replace(paid, []byte("88.88"), []byte("0.01"), 1)
			if ans := post(forged); ans == "success" {
				t.Fatalf("forged: answer %q", ans)
			}

			fams, text := scrape(t, base+"/metrics")
			shop := func(verdict string) map[string]string {
				return map[string]string{"provider": "alipay", "app": "shop", "verdict": verdict}
			}
			wantMetric(t, fams, "paynotify_notifications_total", shop("accepted"), 1)
			wantMetric(t, fams, "paynotify_notifications_total", shop("duplicate"), 1)
			wantMetric(t, fams, "paynotify_notifications_total", map[string]string{"provider": "alipay", "app": "shop", "verdict": "rejected", "reason": "signature_invalid"}, 1)
			wantMetric(t, fams, "paynotify_notification_duration_seconds", map[string]string{"provider": "alipay"}, 3)
			// The payment and the duplicate's evidence are commits; the forged one's evidence is
			// an insert of its own, not a commit of an order change.
			wantMetric(t, fams, "paynotify_commit_duration_seconds", map[string]string{"result": "ok"}, 2)
			for _, name := range []string{"paynotify_reconcile_checks_total", "paynotify_reconcile_sweeps_total",
				"paynotify_webhook_queue_depth", "paynotify_webhook_deliveries_pending", "paynotify_refunds_needing_attention", "go_goroutines", "process_resident_memory_bytes"} {
				if fams[name] == nil {
					t.Errorf("%s: missing", name)
				}
			}
			for _, secret := range []string{binToken, "M0001"} {
				if strings.Contains(text, secret) {
					t.Errorf("GET /metrics shows %q", secret)
				}
			}

			// Restart with admin_listen.
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			adminAddr := freeAddr(t)
			b, err := os.ReadFile(config)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(config, append(b, fmt.Sprintf("admin_listen: %q\n", adminAddr)...), 0o600); err != nil {
				t.Fatal(err)
			}
			startBinary(t, bin, config, addr)
			resp, err := http.Get(base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("GET /metrics on the main listener with admin_listen: %d, want 404", resp.StatusCode)
			}
			fams, _ = scrape(t, "http://"+adminAddr+"/metrics")
			wantMetric(t, fams, "paynotify_orders", map[string]string{"status": "paid"}, 1)
			wantMetric(t, fams, "paynotify_orders", map[string]string{"status": "pending"}, 0)
			resp, err = http.Get("http://" + adminAddr + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET /healthz on the admin listener: %d", resp.StatusCode)
			}
		})
	}
}
