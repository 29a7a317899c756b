package e2e_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sandbox"
)

// TestScenarioServerTour plays testdata/server_tour.yaml with sandbox.Runner against the real
// server: its create steps go through the merchant API, its pay steps use the pay parameters
// they returned, and its server_status checks read the orders back from the API.
func TestScenarioServerTour(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		sc := loadScenario(t, "testdata/server_tour.yaml", map[string]string{"SERVER_URL": e.URL, "API_TOKEN": apiToken})
		var log bytes.Buffer
		r := &sandbox.Runner{Sandbox: e.sbc, Log: &log}
		if err := r.Run(e.ctx, sc); err != nil {
			t.Fatalf("%v\n%s", err, log.String())
		}
		// What the runner checked, seen from the API too.
		e.checkEvents("tour_reorder", "order.paid@v2", "order.refunded@v3", "order.refunded@v4")
		e.checkEvents("tour_dup", "order.paid@v2")
		e.checkVerdicts("tour_dup", map[string]int{"accepted": 1, "duplicate": 2})
		e.checkEvents("tour_badsig")
		e.checkEvents("tour_jsapi", "order.paid@v2", "order.refunded@v3")

		// A failed expectation against the server fails the run, naming the step.
		bad := loadScenarioText(t, `
server: {url: "${SERVER_URL}", token: "${API_TOKEN}"}
steps:
  - name: wrong status
    expect: {out_trade_no: tour_badsig, server_app: alipay-demo, server_status: paid}
`, map[string]string{"SERVER_URL": e.URL, "API_TOKEN": apiToken})
		ctx, cancel := context.WithTimeout(e.ctx, waitFor)
		defer cancel()
		if err := r.Run(ctx, bad); err == nil || !bytes.Contains([]byte(err.Error()), []byte("server status pending, want paid")) {
			t.Fatalf("a wrong server_status: %v", err)
		}
	})
}

// loadScenario reads a scenario file with ${NAME} replaced from vars (the tests run in parallel:
// no process environment), through sandbox.LoadScenario.
func loadScenario(t *testing.T, path string, vars map[string]string) *sandbox.Scenario {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return loadScenarioText(t, string(b), vars)
}

func loadScenarioText(t *testing.T, text string, vars map[string]string) *sandbox.Scenario {
	t.Helper()
	text = os.Expand(text, func(k string) string {
		v, ok := vars[k]
		if !ok {
			t.Fatalf("scenario: no value for ${%s}", k)
		}
		return v
	})
	p := filepath.Join(t.TempDir(), "scenario.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	sc, err := sandbox.LoadScenario(p)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}
