package sandbox

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/alipay"
)

func TestScenario_FaultsTour(t *testing.T) {
	b := setup(t, 1000)
	ac, wc := b.alipayClient(t), b.wechatClient(t)
	// A merchant that verifies what it gets, as a correct integration does.
	m := newMerchant(t, func(_ int, r *http.Request, body []byte) (int, string) {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			if _, err := wc.VerifyNotification(r.Header, body); err != nil {
				return 401, `{"code":"FAIL","message":"bad signature"}`
			}
			return 204, ""
		}
		if _, err := ac.VerifyNotification(r.Header, body); err != nil {
			return 200, "fail"
		}
		return 200, "success"
	})
	t.Setenv("MERCHANT_NOTIFY_URL", m.srv.URL+"/notify")
	sc, err := LoadScenario("testdata/scenarios/faults_tour.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	r := &Runner{Sandbox: &Client{BaseURL: b.srv.URL}, Log: &log}
	if err := r.Run(waitCtx(t, 60*time.Second), sc); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	// The runner reports a failed expectation.
	bad := &Scenario{Steps: []Step{{Expect: &Expectation{OutTradeNo: "tour_dup", Status: alipay.TradeClosed}}}}
	if err := r.Run(waitCtx(t, 10*time.Second), bad); err == nil || !strings.Contains(err.Error(), "want TRADE_CLOSED") {
		t.Fatalf("got %v", err)
	}
}

func TestScenario_Validation(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/bad.yaml"
	writeFile(t, p, "steps:\n  - pay: {out_trade_no: x}\n    sleep: 1s\n")
	if _, err := LoadScenario(p); err == nil || !strings.Contains(err.Error(), "exactly one action") {
		t.Fatalf("got %v", err)
	}
	writeFile(t, p, "steps:\n  - payy: {out_trade_no: x}\n")
	if _, err := LoadScenario(p); err == nil {
		t.Fatal("unknown key accepted")
	}
}

func TestScenario_NewFaults(t *testing.T) {
	p := t.TempDir() + "/faults.yaml"
	writeFile(t, p, "steps:\n  - faults: {out_trade_no: x, double_pay: true, query: wrong_amount}\n")
	sc, err := LoadScenario(p)
	if err != nil {
		t.Fatal(err)
	}
	if f := sc.Steps[0].Faults; f.OutTradeNo != "x" || f.Faults != (Faults{DoublePay: true, Query: QueryFaultWrongAmount}) {
		t.Fatalf("got %+v", f)
	}
}
