package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"strings"
	"time"

	"github.com/paynotify/paynotify/httpd"
	"github.com/paynotify/paynotify/sandbox"
)

func init() { commands["sandbox"] = sandboxCommand{} }

// sandboxCommand is `paynotify sandbox`: it runs the Alipay and WeChat Pay simulators, or talks to
// a running one.
type sandboxCommand struct{}

const defaultSandboxURL = "http://127.0.0.1:8081"

func (sandboxCommand) Usage() string {
	return `Usage:
  paynotify sandbox [--listen ADDR] [--allow-remote] [--state-dir DIR] [--time-scale N] [--base-url URL]
      Runs the Alipay and WeChat Pay simulators (default 127.0.0.1:8081, state in ./sandbox-data).
      --time-scale divides notification retry delays only (1000: 4m becomes 240ms).
      It listens on loopback addresses only (its keys and cashier are open to whoever reaches
      it): --allow-remote lets --listen name another address.

  paynotify sandbox keys [--sandbox URL | --state-dir DIR] [--json]
      Prints what a merchant config needs: the sandbox's public keys, APIv3 key, and the default
      app and merchant with their generated (throw-away) key pairs.

  paynotify sandbox pay|open|fail|close|finish --sandbox URL
        (--out-trade-no X [--provider alipay|wechatpay] | --url URL | --order-string S | --prepay-id ID)
  paynotify sandbox pay|open|fail --sandbox URL --app A --out-trade-no X
        [--server URL] [--token-file FILE | --config FILE]
      With --app, first reads the pending order from paynotify (GET /v1/orders/A/X, token from
      --token-file, --config or $PAYNOTIFY_API_TOKEN; --server defaults to $PAYNOTIFY_SERVER or
      http://127.0.0.1:8080) and acts on its pay parameters: this works for every channel, also
      for an Alipay page, wap or app order whose cashier was never opened.
  paynotify sandbox refund --sandbox URL --out-trade-no X [--amount FEN] [--out-request-no N] [--reason R]
  paynotify sandbox complete-refund --sandbox URL --out-request-no N [--status SUCCESS|CLOSED|ABNORMAL]
  paynotify sandbox reset --sandbox URL [--out-trade-no X]
  paynotify sandbox retry --sandbox URL [--out-trade-no X]
  paynotify sandbox faults --sandbox URL [--out-trade-no X] [--set JSON | --clear]
  paynotify sandbox trades|attempts --sandbox URL [--out-trade-no X]
  paynotify sandbox queries --sandbox URL [--out-trade-no X] [--provider P] [--api API] [--json]
      Lists the query-type API calls the sandbox answered (query, refund query, close), oldest
      first; --json prints one JSON object per line.
  paynotify sandbox run FILE --sandbox URL
      Plays a YAML scenario (docs/sandbox.md); exit 1 when an expectation fails.

--sandbox defaults to ` + defaultSandboxURL + ` (or $PAYNOTIFY_SANDBOX).
`
}

func (cmd sandboxCommand) Run(ctx context.Context, m *Main, args []string) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, rest := args[0], args[1:]
		switch sub {
		case "keys":
			return cmd.keys(ctx, m, rest)
		case "run":
			return cmd.run(ctx, m, rest)
		case "pay", "open", "fail", "close", "finish", "refund", "complete-refund", "reset", "retry", "faults", "trades", "attempts", "queries":
			return cmd.control(ctx, m, sub, rest)
		default:
			return usagef("paynotify sandbox --help", "sandbox: unknown subcommand %q", sub)
		}
	}
	return cmd.serve(ctx, m, args)
}

func sandboxURLFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("PAYNOTIFY_SANDBOX")
	if def == "" {
		def = defaultSandboxURL
	}
	return fs.String("sandbox", def, "")
}

func (cmd sandboxCommand) serve(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8081", "")
	stateDir := fs.String("state-dir", "./sandbox-data", "")
	scale := fs.Float64("time-scale", 1, "")
	baseURL := fs.String("base-url", "", "")
	allowRemote := fs.Bool("allow-remote", false, "")
	pos, err := parseFlags(m, fs, cmd.Usage(), "paynotify sandbox --help", args)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if len(pos) > 0 {
		return usagef("paynotify sandbox --listen 127.0.0.1:8081", "sandbox: unexpected argument %q", pos[0])
	}
	if *scale <= 0 {
		return usagef("paynotify sandbox --time-scale 1000", "sandbox: --time-scale must be positive")
	}
	if !*allowRemote {
		host, _, err := net.SplitHostPort(*listen)
		if err != nil {
			return usagef("paynotify sandbox --listen 127.0.0.1:8081", "sandbox: --listen %q: %v", *listen, err)
		}
		if !httpd.LoopbackHost(host) {
			return usagef("paynotify sandbox --listen 127.0.0.1:8081", "sandbox: --listen %q is not a loopback address: the sandbox hands out its keys and pays whatever it is asked to; add --allow-remote to listen there anyway", *listen)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return configErrorf("sandbox: listen: %w", err)
	}
	if *baseURL == "" {
		*baseURL = "http://" + ln.Addr().String()
	}
	logger := slog.New(slog.NewTextHandler(m.Stderr, nil))
	sb, err := sandbox.New(sandbox.Config{StateDir: *stateDir, BaseURL: *baseURL, TimeScale: *scale, Logger: logger})
	if err != nil {
		ln.Close()
		return configErrorf("%w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/sandbox/", sb.Handler())
	mux.Handle("/v3/", sb.Handler()) // WeChat Pay APIv3 at its real paths, for unmodified SDKs
	mux.Handle("/{$}", http.RedirectHandler("/sandbox/", http.StatusFound))
	var handler http.Handler = mux
	if !*allowRemote {
		// On loopback, answer loopback host names only (and --base-url's): a web page on a name
		// that its DNS points at 127.0.0.1 (rebinding) is "same origin" with itself, and would read
		// the keys and pay orders through the developer's browser.
		baseHost := ""
		if u, err := neturl.Parse(*baseURL); err == nil {
			baseHost = u.Hostname()
		}
		handler = httpd.AllowHosts(mux, func(host string) bool {
			return httpd.LoopbackHost(host) || strings.EqualFold(host, baseHost)
		})
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 11 * time.Minute, IdleTimeout: 2 * time.Minute}
	srv.RegisterOnShutdown(sb.StopLongPolls) // the attempts long-polls answer at once, not after 10 minutes
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	notifierDone := make(chan struct{})
	go func() { sb.Start(runCtx); close(notifierDone) }()
	k := sb.Keys()
	fmt.Fprintf(m.Stdout, "paynotify sandbox on %s (state %s, time scale %g)\n", *baseURL, *stateDir, *scale)
	fmt.Fprintf(m.Stdout, "  Alipay gateway:   %s/sandbox/alipay/gateway.do  (app_id %s)\n", *baseURL, k.AlipayAppID)
	fmt.Fprintf(m.Stdout, "  WeChat Pay API:   %s/sandbox/wechatpay  (mchid %s, appid %s)\n", *baseURL, k.WechatMchID, k.WechatAppID)
	fmt.Fprintf(m.Stdout, "  control API:      %s/sandbox/api/trades\n", *baseURL)
	fmt.Fprintf(m.Stdout, "  keys for a merchant config: paynotify sandbox keys --sandbox %s\n", *baseURL)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutCtx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer c2()
	srv.Shutdown(shutCtx)
	cancel()
	<-notifierDone
	sb.Close()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("sandbox: %w", err)
	}
	return nil
}

func (cmd sandboxCommand) keys(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("sandbox keys", flag.ContinueOnError)
	url := sandboxURLFlag(fs)
	stateDir := fs.String("state-dir", "", "")
	asJSON := fs.Bool("json", false, "")
	if _, err := parseFlags(m, fs, cmd.Usage(), "paynotify sandbox --help", args); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	var k sandbox.Keys
	if *stateDir != "" {
		sb, err := sandbox.New(sandbox.Config{StateDir: *stateDir, BaseURL: "http://127.0.0.1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			return configErrorf("%w", err)
		}
		k = sb.Keys()
		sb.Close()
	} else {
		var err error
		if k, err = (&sandbox.Client{BaseURL: *url}).Keys(ctx); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(m.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(k)
	}
	w := m.Stdout
	fmt.Fprintf(w, "# Throw-away keys of this sandbox (never use them in production).\n\n")
	fmt.Fprintf(w, "alipay:\n  app_id: %s\n  seller_id: %s\n  alipay_public_key (one line): %s\n\n", k.AlipayAppID, k.AlipaySellerID, k.AlipayPublicKeyBase64)
	fmt.Fprintf(w, "alipay_public_key.pem:\n%s\n", k.AlipayPublicKey)
	fmt.Fprintf(w, "app_private_key.pem (the default app's):\n%s\n", k.AlipayAppPrivateKey)
	fmt.Fprintf(w, "alipay certificate mode (app_cert_file, alipay_cert_file, alipay_root_cert_file instead of alipay_public_key_file):\n"+
		"  app_cert_sn: %s\n  alipay_cert_sn: %s\n  alipay_root_cert_sn: %s\n\n", k.AlipayAppCertSN, k.AlipayCertSN, k.AlipayRootCertSN)
	fmt.Fprintf(w, "appCertPublicKey.crt (the default app's):\n%s\n", k.AlipayAppCert)
	fmt.Fprintf(w, "alipayCertPublicKey_RSA2.crt:\n%s\n", k.AlipayCert)
	fmt.Fprintf(w, "alipayRootCert.crt:\n%s\n", k.AlipayRootCert)
	fmt.Fprintf(w, "wechatpay:\n  mchid: %s\n  appid: %s\n  merchant_serial_no: %s\n  platform_public_key_id: %s\n  platform_cert_serial: %s\n  apiv3_key: %s\n\n",
		k.WechatMchID, k.WechatAppID, k.WechatMerchantSerialNo, k.WechatPlatformPublicKeyID, k.WechatPlatformCertSerial, k.WechatAPIv3Key)
	fmt.Fprintf(w, "wechatpay_platform_public_key.pem:\n%s\n", k.WechatPlatformPublicKey)
	fmt.Fprintf(w, "apiclient_key.pem (the default merchant's):\n%s", k.WechatMerchantPrivateKey)
	return nil
}

func (cmd sandboxCommand) control(ctx context.Context, m *Main, sub string, args []string) error {
	fs := flag.NewFlagSet("sandbox "+sub, flag.ContinueOnError)
	url := sandboxURLFlag(fs)
	var req sandbox.ActionRequest
	fs.StringVar(&req.OutTradeNo, "out-trade-no", "", "")
	fs.StringVar(&req.Provider, "provider", "", "")
	fs.StringVar(&req.URL, "url", "", "")
	fs.StringVar(&req.OrderString, "order-string", "", "")
	fs.StringVar(&req.PrepayID, "prepay-id", "", "")
	fs.Int64Var(&req.Amount, "amount", 0, "")
	fs.StringVar(&req.OutRequestNo, "out-request-no", "", "")
	fs.StringVar(&req.Reason, "reason", "", "")
	fs.StringVar(&req.Status, "status", "", "")
	set := fs.String("set", "", "")
	clear := fs.Bool("clear", false, "")
	api := fs.String("api", "", "")
	asJSON := fs.Bool("json", false, "")
	app := fs.String("app", "", "")
	var conn webhookConn
	fs.StringVar(&conn.server, "server", "", "")
	fs.StringVar(&conn.tokenFile, "token-file", "", "")
	fs.StringVar(&conn.config, "config", "", "")
	fs.Func("token", "", func(string) error { conn.tokenFlag = true; return nil }) // refused: see client
	pos, err := parseFlags(m, fs, cmd.Usage(), "paynotify sandbox --help", args)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if len(pos) > 0 {
		return usagef("paynotify sandbox "+sub+" --out-trade-no X", "sandbox %s: unexpected argument %q", sub, pos[0])
	}
	c := &sandbox.Client{BaseURL: *url}
	switch sub {
	case "reset":
		if err := c.Reset(ctx, req.OutTradeNo); err != nil {
			return err
		}
		fmt.Fprintln(m.Stdout, "reset")
		return nil
	case "retry":
		return c.Retry(ctx, req.OutTradeNo)
	case "complete-refund":
		if req.OutRequestNo == "" {
			return usagef("paynotify sandbox complete-refund --out-request-no R1", "sandbox complete-refund: --out-request-no is required")
		}
		return c.CompleteRefund(ctx, req.OutTradeNo, req.OutRequestNo, req.Status)
	case "faults":
		if *set != "" || *clear {
			var f sandbox.Faults
			if *set != "" {
				dec := json.NewDecoder(strings.NewReader(*set))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&f); err != nil {
					return usagef(`paynotify sandbox faults --out-trade-no X --set '{"drop_first":2}'`, "sandbox faults: --set: %v", err)
				}
			}
			if err := c.SetFaults(ctx, req.OutTradeNo, f); err != nil {
				return err
			}
		}
		var f sandbox.Faults
		if err := cmdGetJSON(ctx, *url, "faults?out_trade_no="+req.OutTradeNo, &f); err != nil {
			return err
		}
		return printJSON(m, f)
	case "trades":
		ts, err := c.Trades(ctx, req.OutTradeNo)
		if err != nil {
			return err
		}
		for _, t := range ts {
			double := ""
			if t.DoublePay != nil {
				double = " double_pay=" + t.DoublePay.TradeNo
			}
			fmt.Fprintf(m.Stdout, "%-9s %-10s %-32s %-15s amount=%d refunded=%d%s\n", t.Provider, t.Product, t.OutTradeNo, t.Status, t.Amount, t.RefundedAmount, double)
		}
		return nil
	case "queries":
		qs, err := c.Queries(ctx, sandbox.QueryFilter{Provider: req.Provider, API: *api, OutTradeNo: req.OutTradeNo})
		if err != nil {
			return err
		}
		enc := json.NewEncoder(m.Stdout)
		for _, q := range qs {
			if *asJSON {
				if err := enc.Encode(q); err != nil {
					return err
				}
				continue
			}
			fmt.Fprintf(m.Stdout, "%s #%-6d %-9s %-33s %s\n", q.At.Format(time.RFC3339), q.ID, q.Provider, q.API, queryDetails(q))
		}
		return nil
	case "attempts":
		as, _, err := c.Attempts(ctx, sandbox.AttemptFilter{OutTradeNo: req.OutTradeNo}, 0, 0, 0)
		if err != nil {
			return err
		}
		for _, a := range as {
			outcome := fmt.Sprintf("HTTP %d %q", a.Status, truncate(a.Response, 40))
			if a.Error != "" {
				outcome = "error: " + a.Error
			}
			fmt.Fprintf(m.Stdout, "%s %-9s %-24s %-7s #%d copy=%d +%-10v acked=%-5v %s %s\n", a.At.Format(time.RFC3339), a.Provider, a.OutTradeNo, a.Kind,
				a.N, a.Copy, a.Offset.D().Round(time.Millisecond), a.Acked, outcome, a.Fault)
		}
		return nil
	}
	if req.OutTradeNo == "" && req.URL == "" && req.OrderString == "" && req.PrepayID == "" {
		return usagef("paynotify sandbox "+sub+" --out-trade-no X", "sandbox %s: which trade? give --out-trade-no, --url, --order-string or --prepay-id", sub)
	}
	if *app != "" {
		if req.OutTradeNo == "" {
			return usagef("paynotify sandbox "+sub+" --app A --out-trade-no X", "sandbox %s: --app needs --out-trade-no", sub)
		}
		pay, err := orderPay(ctx, m, &conn, *app, req.OutTradeNo)
		if err != nil {
			return fmt.Errorf("sandbox %s: %w", sub, err)
		}
		req = req.WithPay(pay)
	}
	t, err := c.Act(ctx, sub, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(m.Stdout, "%s %s %s: %s (amount %d, refunded %d)\n", t.Provider, t.Product, t.OutTradeNo, t.Status, t.Amount, t.RefundedAmount)
	return nil
}

// orderPay reads a pending order's pay parameters from paynotify's API.
func orderPay(ctx context.Context, m *Main, conn *webhookConn, app, outTradeNo string) (map[string]any, error) {
	if conn.tokenFile == "" && conn.config == "" && os.Getenv("PAYNOTIFY_API_TOKEN") == "" && !conn.tokenFlag {
		return nil, usagef("paynotify sandbox pay --app "+app+" --out-trade-no "+outTradeNo+" --token-file paynotify-data/api_token",
			"--app reads the order from paynotify: give --token-file FILE or --config FILE, or set $PAYNOTIFY_API_TOKEN")
	}
	wc, err := conn.client(m)
	if err != nil {
		return nil, err
	}
	b, err := wc.call(ctx, http.MethodGet, "/v1/orders/"+neturl.PathEscape(app)+"/"+neturl.PathEscape(outTradeNo), nil)
	if err != nil {
		return nil, err
	}
	var o struct {
		Status string         `json:"status"`
		Pay    map[string]any `json:"pay"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, fmt.Errorf("order %s/%s: %w", app, outTradeNo, err)
	}
	if o.Pay == nil {
		return nil, fmt.Errorf("order %s/%s is %s: paynotify shows pay parameters for pending orders only", app, outTradeNo, o.Status)
	}
	return o.Pay, nil
}

// queryDetails is a query record's identifiers and outcome as key=value pairs, empty ones left out.
func queryDetails(q sandbox.QueryRecord) string {
	var b strings.Builder
	for _, f := range [][2]string{{"app_id", q.AppID}, {"mchid", q.MchID}, {"out_trade_no", q.OutTradeNo}, {"trade_no", q.TradeNo},
		{"out_request_no", q.OutRequestNo}, {"result", q.Result}, {"fault", q.Fault}} {
		if f[1] != "" {
			fmt.Fprintf(&b, "%s=%s ", f[0], f[1])
		}
	}
	if q.Failed {
		b.WriteString("failed")
	}
	return strings.TrimSpace(b.String())
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func printJSON(m *Main, v any) error {
	enc := json.NewEncoder(m.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cmdGetJSON(ctx context.Context, base, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/sandbox/api/"+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("sandbox: HTTP %d", resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (cmd sandboxCommand) run(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("sandbox run", flag.ContinueOnError)
	url := fs.String("sandbox", "", "")
	pos, err := parseFlags(m, fs, cmd.Usage(), "paynotify sandbox --help", args)
	if err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if len(pos) != 1 {
		return usagef("paynotify sandbox run scenario.yaml --sandbox "+defaultSandboxURL, "sandbox run: want one scenario file")
	}
	sc, err := sandbox.LoadScenario(pos[0])
	if err != nil {
		return configErrorf("%w", err)
	}
	base := *url
	if base == "" {
		base = sc.Sandbox
	}
	if base == "" {
		base = os.Getenv("PAYNOTIFY_SANDBOX")
	}
	if base == "" {
		base = defaultSandboxURL
	}
	r := &sandbox.Runner{Sandbox: &sandbox.Client{BaseURL: base}, Log: m.Stdout}
	if err := r.Run(ctx, sc); err != nil {
		fmt.Fprintf(m.Stdout, "FAIL %s\n", sc.Name)
		return &verdictError{reason: err.Error()}
	}
	fmt.Fprintf(m.Stdout, "PASS %s\n", sc.Name)
	return nil
}
