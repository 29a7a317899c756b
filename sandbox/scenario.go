package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenario is a scripted session against a sandbox and, optionally, a paynotify server: steps
// (create an order, set faults, pay, refund, wait) and expected outcomes. docs/sandbox.md
// documents the file format.
type Scenario struct {
	Name    string `yaml:"name"`
	Sandbox string `yaml:"sandbox"` // sandbox base URL; the --sandbox flag wins
	Server  *struct {
		URL   string `yaml:"url"`   // paynotify server base URL, e.g. http://127.0.0.1:8080
		Token string `yaml:"token"` // API token; ${ENV} is expanded
	} `yaml:"server"`
	Steps []Step `yaml:"steps"`
}

// Step is one step of a scenario: exactly one action field is set.
type Step struct {
	Name string `yaml:"name"`

	// Create creates an order through the paynotify server's merchant API (POST /v1/orders) and
	// keeps its pay parameters for a later pay step.
	Create *struct {
		App        string `yaml:"app" json:"app"`
		OutTradeNo string `yaml:"out_trade_no" json:"out_trade_no"`
		Amount     int64  `yaml:"amount" json:"amount"`
		Subject    string `yaml:"subject" json:"subject"`
		Channel    string `yaml:"channel" json:"channel"`
		ExpiresIn  string `yaml:"expires_in" json:"expires_in,omitempty"`
		PayerOpen  string `yaml:"payer_openid" json:"payer_openid,omitempty"`
		// PayerClientIP is the buyer's IP address, which wechatpay.h5 orders require.
		PayerClientIP string `yaml:"payer_client_ip" json:"payer_client_ip,omitempty"`
	} `yaml:"create"`
	// Order creates a trade directly in the sandbox, as the default app or merchant (no server
	// needed): provider, product, out_trade_no, amount, notify_url.
	Order *OrderRequest `yaml:"order"`
	// Faults sets the faults of out_trade_no (global when absent).
	Faults *struct {
		OutTradeNo string `yaml:"out_trade_no"`
		Faults     `yaml:",inline"`
	} `yaml:"faults"`
	// Open, Pay, Fail, Close, Finish and Refund act on a trade (ActionRequest fields: out_trade_no,
	// url, order_string, prepay_id, amount, out_request_no, reason). Pay on an order made by a
	// create step uses its pay parameters when only out_trade_no is given.
	Open   *ActionRequest `yaml:"open"`
	Pay    *ActionRequest `yaml:"pay"`
	Fail   *ActionRequest `yaml:"fail"`
	Close  *ActionRequest `yaml:"close"`
	Finish *ActionRequest `yaml:"finish"`
	Refund *ActionRequest `yaml:"refund"`
	// CompleteRefund completes a PROCESSING WeChat refund (out_request_no, status).
	CompleteRefund *ActionRequest `yaml:"complete_refund"`
	// Retry makes pending notifications due now (out_trade_no optional).
	Retry *ActionRequest `yaml:"retry"`
	// Reset deletes trades (all, or out_trade_no's).
	Reset *ActionRequest `yaml:"reset"`
	// Sleep waits (a Go duration).
	Sleep Duration `yaml:"sleep"`
	// Wait waits for attempts, then checks them; Expect checks at once.
	Wait   *Expectation `yaml:"wait"`
	Expect *Expectation `yaml:"expect"`
}

// Expectation is what a wait or expect step checks about one out_trade_no. Zero fields are not
// checked.
type Expectation struct {
	OutTradeNo string   `yaml:"out_trade_no"`
	Kind       string   `yaml:"kind"`     // only attempts of this notification kind (payment, refund, close, finish)
	Attempts   int      `yaml:"attempts"` // at least this many attempts
	Acked      int      `yaml:"acked"`    // at least this many acknowledged attempts
	NotAcked   bool     `yaml:"not_acked"`
	Timeout    Duration `yaml:"timeout"`      // wait only; default 30s
	Status     string   `yaml:"trade_status"` // the sandbox trade's status
	Refunded   int64    `yaml:"refunded_amount"`
	// Server checks the order at the paynotify server: its status ("paid", "refunded", …).
	ServerStatus string `yaml:"server_status"`
	ServerApp    string `yaml:"server_app"`
}

// LoadScenario reads a scenario file, expanding ${ENV} references.
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(os.ExpandEnv(string(b)))))
	dec.KnownFields(true)
	var sc Scenario
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	for i, st := range sc.Steps {
		n := 0
		for _, set := range []bool{st.Create != nil, st.Order != nil, st.Faults != nil, st.Open != nil, st.Pay != nil, st.Fail != nil, st.Close != nil,
			st.Finish != nil, st.Refund != nil, st.CompleteRefund != nil, st.Retry != nil, st.Reset != nil, st.Sleep != 0,
			st.Wait != nil, st.Expect != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			return nil, fmt.Errorf("scenario %s: step %d: want exactly one action, got %d", path, i+1, n)
		}
		if st.Create != nil && sc.Server == nil {
			return nil, fmt.Errorf("scenario %s: step %d: create needs a server section", path, i+1)
		}
	}
	return &sc, nil
}

// Runner plays scenarios.
type Runner struct {
	Sandbox *Client
	// Log receives one line per step.
	Log io.Writer
	// HTTPClient calls the paynotify server. Defaults to a 70-second-timeout client.
	HTTPClient *http.Client
}

// Run plays sc's steps in order and returns the first failure.
func (r *Runner) Run(ctx context.Context, sc *Scenario) error {
	pays := map[string]map[string]any{} // out_trade_no → pay parameters from create steps
	logf := func(format string, args ...any) {
		if r.Log != nil {
			fmt.Fprintf(r.Log, format+"\n", args...)
		}
	}
	for i, st := range sc.Steps {
		label := fmt.Sprintf("step %d", i+1)
		if st.Name != "" {
			label += " (" + st.Name + ")"
		}
		if err := r.step(ctx, sc, st, pays); err != nil {
			logf("FAIL %s: %v", label, err)
			return fmt.Errorf("%s: %w", label, err)
		}
		logf("ok   %s", label)
	}
	return nil
}

func (r *Runner) step(ctx context.Context, sc *Scenario, st Step, pays map[string]map[string]any) error {
	c := r.Sandbox
	act := func(name string, req *ActionRequest) error {
		_, err := c.Act(ctx, name, *req)
		return err
	}
	switch {
	case st.Create != nil:
		p, err := r.createOrder(ctx, sc, st)
		if err != nil {
			return err
		}
		pays[st.Create.OutTradeNo] = p
		return nil
	case st.Order != nil:
		_, err := c.CreateOrder(ctx, *st.Order)
		return err
	case st.Faults != nil:
		return c.SetFaults(ctx, st.Faults.OutTradeNo, st.Faults.Faults)
	case st.Open != nil:
		return act("open", withPay(st.Open, pays))
	case st.Pay != nil:
		return act("pay", withPay(st.Pay, pays))
	case st.Fail != nil:
		return act("fail", withPay(st.Fail, pays))
	case st.Close != nil:
		return act("close", st.Close)
	case st.Finish != nil:
		return act("finish", st.Finish)
	case st.Refund != nil:
		return act("refund", st.Refund)
	case st.CompleteRefund != nil:
		return c.CompleteRefund(ctx, st.CompleteRefund.OutTradeNo, st.CompleteRefund.OutRequestNo, st.CompleteRefund.Status)
	case st.Retry != nil:
		return c.Retry(ctx, st.Retry.OutTradeNo)
	case st.Reset != nil:
		return c.Reset(ctx, st.Reset.OutTradeNo)
	case st.Sleep != 0:
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(st.Sleep.D()):
			return nil
		}
	case st.Wait != nil:
		return r.check(ctx, sc, st.Wait, true)
	case st.Expect != nil:
		return r.check(ctx, sc, st.Expect, false)
	}
	return errors.New("empty step")
}

// withPay fills a pay-like request from the pay parameters of the order's create step.
func withPay(req *ActionRequest, pays map[string]map[string]any) *ActionRequest {
	p, ok := pays[req.OutTradeNo]
	if !ok {
		return req
	}
	out := req.WithPay(p)
	return &out
}

// WithPay is req filled from an order's pay parameters (paynotify's `pay` object): an Alipay
// orderString, page/wap URL or QR code; a WeChat code_url, h5_url, or the prepay id of the app
// (prepayid) and JSAPI (package "prepay_id=…") parameters. A request that already names its pay
// parameters (URL, OrderString, PrepayID) is returned unchanged.
func (req ActionRequest) WithPay(p map[string]any) ActionRequest {
	if req.URL != "" || req.OrderString != "" || req.PrepayID != "" {
		return req
	}
	out := req
	str := func(k string) string { s, _ := p[k].(string); return s }
	switch {
	case str("order_string") != "":
		out.OrderString = str("order_string")
	case str("url") != "":
		out.URL = str("url")
	case str("qr_code") != "":
		out.URL = str("qr_code")
	case str("code_url") != "":
		out.URL = str("code_url")
	case str("h5_url") != "":
		out.URL = str("h5_url")
	case str("prepayid") != "":
		out.PrepayID = str("prepayid")
	case strings.HasPrefix(str("package"), "prepay_id="):
		out.PrepayID = str("package")
	}
	return out
}

func (r *Runner) httpClient() *http.Client {
	if r.HTTPClient != nil {
		return r.HTTPClient
	}
	return &http.Client{Timeout: 70 * time.Second}
}

func (r *Runner) server(ctx context.Context, sc *Scenario, method, path string, in any, out any) error {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(sc.Server.URL, "/")+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+sc.Server.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.httpClient().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("server %s %s: HTTP %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

func (r *Runner) createOrder(ctx context.Context, sc *Scenario, st Step) (map[string]any, error) {
	var out struct {
		Pay map[string]any `json:"pay"`
	}
	if err := r.server(ctx, sc, http.MethodPost, "/v1/orders", st.Create, &out); err != nil {
		return nil, err
	}
	return out.Pay, nil
}

func (r *Runner) check(ctx context.Context, sc *Scenario, e *Expectation, wait bool) error {
	c := r.Sandbox
	f := AttemptFilter{OutTradeNo: e.OutTradeNo, Kind: e.Kind}
	timeout := e.Timeout.D()
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	if !wait {
		timeout = 0
	}
	if e.Attempts > 0 || e.Acked > 0 || e.NotAcked || wait {
		as, _, err := c.Attempts(ctx, f, e.Attempts, e.Acked, timeout)
		if err != nil {
			return err
		}
		acked := 0
		for _, a := range as {
			if a.Acked {
				acked++
			}
		}
		if len(as) < e.Attempts {
			return fmt.Errorf("%s: %d attempts, want at least %d", e.OutTradeNo, len(as), e.Attempts)
		}
		if acked < e.Acked {
			return fmt.Errorf("%s: %d acknowledged attempts, want at least %d (%s)", e.OutTradeNo, acked, e.Acked, lastAnswer(as))
		}
		if e.NotAcked && acked > 0 {
			return fmt.Errorf("%s: %d attempts were acknowledged, want none", e.OutTradeNo, acked)
		}
	}
	if e.Status != "" || e.Refunded != 0 {
		ts, err := c.Trades(ctx, e.OutTradeNo)
		if err != nil {
			return err
		}
		if len(ts) == 0 {
			return fmt.Errorf("no sandbox trade %s", e.OutTradeNo)
		}
		if e.Status != "" && ts[0].Status != e.Status {
			return fmt.Errorf("%s: sandbox status %s, want %s", e.OutTradeNo, ts[0].Status, e.Status)
		}
		if e.Refunded != 0 && ts[0].RefundedAmount != e.Refunded {
			return fmt.Errorf("%s: refunded %d, want %d", e.OutTradeNo, ts[0].RefundedAmount, e.Refunded)
		}
	}
	if e.ServerStatus != "" {
		if sc.Server == nil {
			return errors.New("server_status needs a server section")
		}
		return r.checkServerStatus(ctx, sc, e, timeout)
	}
	return nil
}

// checkServerStatus checks the order's status at the server. Within timeout (wait steps) it
// waits for the status: the API's ?wait= long-poll ends when the order leaves pending, so an
// order that must move on from there (paid → refunded) is read again until it does.
func (r *Runner) checkServerStatus(ctx context.Context, sc *Scenario, e *Expectation, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var o struct {
			Status string `json:"status"`
		}
		path := "/v1/orders/" + e.ServerApp + "/" + e.OutTradeNo
		left := time.Until(deadline)
		if left > 60*time.Second {
			left = 60 * time.Second // the API's longest wait
		}
		if left >= time.Second && e.ServerStatus != "pending" {
			path += "?wait=" + left.Truncate(time.Second).String()
		}
		if err := r.server(ctx, sc, http.MethodGet, path, nil, &o); err != nil {
			return err
		}
		if o.Status == e.ServerStatus {
			return nil
		}
		if time.Until(deadline) <= 0 {
			return fmt.Errorf("%s: server status %s, want %s", e.OutTradeNo, o.Status, e.ServerStatus)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func lastAnswer(as []*Attempt) string {
	if len(as) == 0 {
		return "no attempt yet"
	}
	a := as[len(as)-1]
	if a.Error != "" {
		return "last attempt: " + a.Error
	}
	return fmt.Sprintf("last answer: HTTP %d %q", a.Status, a.Response)
}
