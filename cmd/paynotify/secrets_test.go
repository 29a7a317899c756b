package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paynotify/paynotify/sandbox"
)

// The secrets scan (issue 14 §3, docs/reliability.md): one session of the real binary with known
// secrets, everything it shows scanned for them.

// secretNeedle is one form a secret may take in what paynotify shows.
type secretNeedle struct {
	secret, form, value string
}

// secretSet is the known secrets of a run and the forms in which each is looked for.
type secretSet struct{ needles []secretNeedle }

// addShort adds a short secret (an API token, an APIv2/APIv3/MD5 key): the raw value, upper and
// lower case, and its bytes in base64 (standard and URL-safe, padded or not) and hex.
func (s *secretSet) addShort(name, v string) {
	s.add(name, "raw", v)
	s.add(name, "upper case", strings.ToUpper(v))
	s.add(name, "lower case", strings.ToLower(v))
	s.addBytes(name, []byte(v))
}

// addBytes adds key bytes in base64 (standard and URL-safe, padded or not) and hex.
func (s *secretSet) addBytes(name string, b []byte) {
	s.add(name, "base64", base64.StdEncoding.EncodeToString(b))
	s.add(name, "base64 unpadded", base64.RawStdEncoding.EncodeToString(b))
	s.add(name, "base64url", base64.RawURLEncoding.EncodeToString(b))
	s.add(name, "hex", hex.EncodeToString(b))
	s.add(name, "HEX", strings.ToUpper(hex.EncodeToString(b)))
}

// addPrivateKey adds an RSA private key given as PEM: the base64 body lines of the PEM itself and
// of its PKCS#1 and PKCS#8 encodings (longer than 20 characters), the one-line base64 of both
// DERs, and the hex of the private exponent and primes in 32-byte windows (a key shown in another
// encoding still shows them).
func (s *secretSet) addPrivateKey(t *testing.T, name, pemText string) {
	t.Helper()
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	var key *rsa.PrivateKey
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		key, _ = k.(*rsa.PrivateKey)
	} else if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		key = k
	}
	if key == nil {
		t.Fatalf("%s: not an RSA private key", name)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := x509.MarshalPKCS1PrivateKey(key)
	for _, p := range []string{pemText, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})),
		string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: pkcs1}))} {
		for _, line := range strings.Split(p, "\n") {
			if line = strings.TrimSpace(line); len(line) > 20 && !strings.HasPrefix(line, "-----") {
				s.add(name, "PEM body line", line)
			}
		}
	}
	s.add(name, "PKCS#8 base64", base64.StdEncoding.EncodeToString(pkcs8))
	s.add(name, "PKCS#1 base64", base64.StdEncoding.EncodeToString(pkcs1))
	for _, part := range []struct {
		what string
		b    []byte
	}{{"private exponent", key.D.Bytes()}, {"prime p", key.Primes[0].Bytes()}, {"prime q", key.Primes[1].Bytes()}} {
		for i := 0; i+32 <= len(part.b); i += 32 {
			w := hex.EncodeToString(part.b[i : i+32])
			s.add(name, part.what+" hex", w)
			s.add(name, part.what+" HEX", strings.ToUpper(w))
		}
	}
}

// addWebhookSecret adds a whsec_ secret: the whole value and its decoded key in base64 and hex.
func (s *secretSet) addWebhookSecret(t *testing.T, name, v string) {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(v, "whsec_"))
	if err != nil || len(key) < 16 || !strings.HasPrefix(v, "whsec_") {
		t.Fatalf("%s %q: not a whsec_ secret", name, v)
	}
	s.add(name, "raw", v)
	s.addBytes(name, key)
}

func (s *secretSet) add(name, form, v string) {
	s.needles = append(s.needles, secretNeedle{name, form, v})
}

// scanSource is one thing paynotify showed: its name, its bytes, and the secrets it shows by
// design (the answer that creates a webhook endpoint holds its secret; `tokens add` prints the
// token; the database keeps the webhook secrets it signs with).
type scanSource struct {
	name    string
	data    []byte
	allowed []string
}

// secretHit is a secret found in a source.
type secretHit struct{ source, secret, form, context string }

// scan looks for every needle in every source, as it is and with HTML's character references
// undone (html/template writes + as &#43;, which would hide base64 on a console page).
func (s *secretSet) scan(sources []scanSource) []secretHit {
	var hits []secretHit
	for _, src := range sources {
		seen := map[string]bool{}
		unescaped := []byte(html.UnescapeString(string(src.data)))
		for _, n := range s.needles {
			if seen[n.secret] || contains(src.allowed, n.secret) {
				continue
			}
			if bytes.Contains(src.data, []byte(n.value)) || bytes.Contains(unescaped, []byte(n.value)) {
				seen[n.secret] = true
				hits = append(hits, secretHit{src.name, n.secret, n.form, s.context(src.data, n)})
			}
		}
	}
	return hits
}

// context is the text around the first place of n in data, with every secret of the set masked
// in the whole of data first: a failing test must not print one, nor a part of one.
func (s *secretSet) context(data []byte, n secretNeedle) string {
	masked := string(data)
	for _, o := range s.needles {
		masked = strings.ReplaceAll(masked, o.value, "<"+o.secret+">")
	}
	mark := "<" + n.secret + ">"
	i := strings.Index(masked, mark)
	if i < 0 {
		return mark
	}
	lo, hi := max(0, i-60), min(len(masked), i+len(mark)+20)
	return strings.ToValidUTF8(masked[lo:hi], "?")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// secretsRun is the session's state: the server, what it answered and the webhook receiver's
// captures.
type secretsRun struct {
	t            *testing.T
	bin, config  string
	dir          string
	base         string
	token        string
	cfgToken     string
	sb           *testSandbox
	mu           sync.Mutex
	sources      []scanSource
	cliEnv       []string
	v2Key        string
	webhookCount int
}

// record keeps an HTTP exchange's answer (status, headers, body) as a scanned source.
func (r *secretsRun) record(name string, resp *http.Response, body []byte, allowed ...string) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n", resp.Status)
	resp.Header.Write(&b)
	b.WriteString("\n")
	b.Write(body)
	r.mu.Lock()
	r.sources = append(r.sources, scanSource{name: name, data: b.Bytes(), allowed: allowed})
	r.mu.Unlock()
}

// call makes an HTTP request to the server with token (none when empty), records the answer and
// returns its status and body.
func (r *secretsRun) call(token, method, path, contentType string, body []byte, header http.Header, allowed ...string) (int, []byte) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.base+path, bytes.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	r.record(method+" "+path, resp, out, allowed...)
	return resp.StatusCode, out
}

// api makes a JSON API call with the stored token and decodes the answer.
func (r *secretsRun) api(method, path string, body any, allowed ...string) (int, map[string]any) {
	r.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	code, out := r.call(r.token, method, path, "application/json", b, nil, allowed...)
	var m map[string]any
	json.Unmarshal(out, &m)
	return code, m
}

// cli runs the binary and records its stdout and stderr.
func (r *secretsRun) cli(allowed []string, args ...string) (string, string, int) {
	r.t.Helper()
	cmd := exec.Command(r.bin, args...)
	cmd.Env = r.cliEnv
	cmd.Dir = r.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.sources = append(r.sources, scanSource{name: "paynotify " + strings.Join(args, " "),
		data: []byte(out.String() + "\n" + errb.String()), allowed: allowed})
	r.mu.Unlock()
	return out.String(), errb.String(), code
}

// TestBinary_SecretsNeverShown runs a session of the real binary (SQLite, log level debug) with
// known secrets: an app of each provider (Alipay; WeChat Pay with its APIv3 key and an APIv2 key;
// legacy Alipay with an MD5 key and one with RSA keys), the config's api_token, a stored API token,
// and two webhook secrets (the endpoint's, and the one a rotation made). The session creates orders
// on every channel, pays them in the sandbox (some with forged signatures, wrong amounts, a foreign
// app id, GBK, probes, a double payment), posts forged and re-signed notifications of each protocol,
// refunds, closes, reconciles and reprocesses, delivers webhooks to a loopback receiver, reads every
// list of the API, /metrics and the other routes, and runs doctor and the other commands. Then
// every log line, every answer (status, headers, body), every webhook request received (headers
// but the signature, body), every command's output and the database files are scanned for the
// secrets in their usual encodings; any hit fails. A control first plants a secret in a copy of a
// source and checks that the scan finds it.
//
// The console is on (console.admin_password_hash): its password and the hash are secrets too, and
// its pages (overview, orders, every order's timeline, notifications, anomalies), read logged
// in, are scanned with the rest.
func TestBinary_SecretsNeverShown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	r := &secretsRun{t: t, bin: buildBinary(t), dir: t.TempDir(), sb: newTestSandbox(t, 1000)}
	k := r.sb.Keys()
	// Every request paynotify sends to the providers (the sandbox) is kept and scanned too: a
	// request carries signatures, never a key.
	var outMu sync.Mutex
	var outgoing [][]byte
	sbHandler := r.sb.handler
	r.sb.handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s %s\n", req.Method, req.URL)
		req.Header.Write(&b)
		b.WriteString("\n")
		b.Write(body)
		outMu.Lock()
		outgoing = append(outgoing, b.Bytes())
		outMu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(body))
		sbHandler.ServeHTTP(w, req)
	})
	r.cfgToken = "cfgtok_" + randomHex(t, 20)
	r.v2Key = randomHex(t, 16) // 32 characters
	r.cliEnv = append(os.Environ(), "PAYNOTIFY_API_TOKEN="+r.cfgToken)

	// The known secrets.
	var secrets secretSet
	secrets.addPrivateKey(t, "Alipay app private key", k.AlipayAppPrivateKey)
	secrets.addPrivateKey(t, "WeChat Pay merchant private key", k.WechatMerchantPrivateKey)
	secrets.addPrivateKey(t, "legacy Alipay merchant private key", k.LegacyMerchantPrivateKey)
	secrets.addShort("APIv3 key", k.WechatAPIv3Key)
	secrets.addShort("APIv2 key", r.v2Key)
	secrets.addShort("legacy MD5 key", k.LegacyMD5Key)
	secrets.addShort("config api_token", r.cfgToken)
	consolePassword := "console-pw-" + randomHex(t, 12)
	secrets.addShort("console password", consolePassword)
	hp := exec.Command(r.bin, "hash-password")
	hp.Stdin = strings.NewReader(consolePassword + "\n")
	hashOut, err := hp.Output() // prints the hash by design: not a scanned source
	if err != nil {
		t.Fatalf("hash-password: %v", err)
	}
	consoleHash := strings.TrimSpace(string(hashOut))
	secrets.addShort("console password hash", consoleHash)

	// The config: four apps, logs at debug, webhooks to loopback allowed.
	addr := freeAddr(t)
	r.base = "http://" + addr
	files := map[string]string{"alipay_app.pem": k.AlipayAppPrivateKey, "alipay_public.pem": k.AlipayPublicKey,
		"wx_merchant.pem": k.WechatMerchantPrivateKey, "wx_platform.pem": k.WechatPlatformPublicKey, "wx_apiv3.key": k.WechatAPIv3Key,
		"wx_apiv2.key": r.v2Key, "legacy_md5.key": k.LegacyMD5Key + "\n", "legacy_alipay_public.pem": k.LegacyAlipayPublicKey,
		"legacy_merchant.pem": k.LegacyMerchantPrivateKey}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dbPath := filepath.Join(r.dir, "paynotify.db")
	lg := r.sb.URL + "/sandbox/alipay-legacy"
	cfg := fmt.Sprintf(`listen: %q
database: "sqlite:%s"
public_url: %q
api_token: "${PAYNOTIFY_API_TOKEN}"
log: {level: debug}
webhooks: {allow_http: true, allow_private_networks: true}
console: {admin_password_hash: %q}
apps:
  - name: alipay-demo
    provider: alipay
    app_id: %q
    seller_id: %q
    gateway: "%s/sandbox/alipay/gateway.do"
    app_private_key_file: alipay_app.pem
    alipay_public_key_file: alipay_public.pem
  - name: wechatpay-demo
    provider: wechatpay
    mchid: %q
    appid: %q
    api_base: "%s/sandbox/wechatpay"
    merchant_private_key_file: wx_merchant.pem
    merchant_serial_no: %q
    apiv3_key_file: wx_apiv3.key
    apiv2_key_file: wx_apiv2.key
    platform_public_key_file: wx_platform.pem
    platform_public_key_id: %q
  - name: legacy-md5
    provider: alipay-legacy
    partner: %q
    seller_email: %q
    sign_type: MD5
    md5_key_file: legacy_md5.key
    gateway: "%s/gateway.do"
    wap_gateway: "%s/wap/rest.htm"
    notify_verify_url: "%s/gateway.do?service=notify_verify"
  - name: legacy-rsa
    provider: alipay-legacy
    partner: %q
    seller_email: %q
    sign_type: RSA
    alipay_public_key_file: legacy_alipay_public.pem
    merchant_private_key_file: legacy_merchant.pem
    gateway: "%s/gateway.do"
    wap_gateway: "%s/wap/rest.htm"
    notify_verify_url: "%s/trade/notify_query.do"
`, addr, dbPath, r.base, consoleHash, k.AlipayAppID, k.AlipaySellerID, r.sb.URL, k.WechatMchID, k.WechatAppID, r.sb.URL, k.WechatMerchantSerialNo,
		k.WechatPlatformPublicKeyID, k.LegacyPartner, k.LegacySellerEmail, lg, lg, lg, k.LegacyPartner, k.LegacySellerEmail, lg, lg, lg)
	r.config = filepath.Join(r.dir, "paynotify.yaml")
	if err := os.WriteFile(r.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	// The server, its log kept whole.
	serverLog := &lockedBuffer{}
	srv := exec.Command(r.bin, "serve", "--config", r.config)
	srv.Env, srv.Stdout, srv.Stderr = r.cliEnv, serverLog, serverLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			srv.Process.Kill()
			srv.Wait()
		}
	})
	waitHealthy(t, r.base)

	// A stored API token; the session uses it (write scope), the config's token now and then.
	out, _, code := r.cli([]string{"stored API token"}, "tokens", "add", "--config", r.config, "--name", "secrets-test", "--scope", "write")
	if code != 0 || !tokenLine.MatchString(out) {
		t.Fatalf("tokens add: exit %d", code)
	}
	r.token = strings.TrimSpace(out)
	secrets.addShort("stored API token", r.token)

	// The webhook receiver: every request kept whole but its signature header (an HMAC, not
	// the secret).
	var hookMu sync.Mutex
	var hooks [][]byte
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		h := req.Header.Clone()
		h.Del("Webhook-Signature")
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s %s\n", req.Method, req.URL)
		h.Write(&b)
		b.WriteString("\n")
		b.Write(body)
		hookMu.Lock()
		hooks = append(hooks, b.Bytes())
		hookMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	code, ep := r.api("POST", "/v1/webhook-endpoints", map[string]any{"url": recv.URL + "/hook", "description": "secrets scan"}, "webhook secret")
	if code != http.StatusCreated {
		t.Fatalf("create endpoint: %d %v", code, ep)
	}
	epID, _ := ep["id"].(string)
	whsec, _ := ep["secret"].(string)
	secrets.addWebhookSecret(t, "webhook secret", whsec)
	code, rot := r.api("POST", "/v1/webhook-endpoints/"+epID+"/rotate-secret", nil, "webhook secret", "rotated webhook secret")
	rotated, _ := rot["secret"].(string)
	if code != http.StatusOK || rotated == "" || rotated == whsec {
		t.Fatalf("rotate-secret: %d", code)
	}
	secrets.addWebhookSecret(t, "rotated webhook secret", rotated)

	// Orders on every channel, paid in the sandbox; some with the sandbox's faults.
	type order struct{ app, channel, otn string }
	var orders []order
	create := func(app, channel, otn string, amount int64, extra map[string]any) map[string]string {
		t.Helper()
		body := map[string]any{"app": app, "out_trade_no": otn, "amount": amount, "subject": "secrets scan", "channel": channel}
		for k, v := range extra {
			body[k] = v
		}
		code, o := r.api("POST", "/v1/orders", body)
		if code != http.StatusCreated {
			t.Fatalf("create %s %s: %d %v", app, channel, code, o)
		}
		pay := map[string]string{}
		if p, ok := o["pay"].(map[string]any); ok {
			for k, v := range p {
				pay[k], _ = v.(string)
			}
		}
		orders = append(orders, order{app, channel, otn})
		return pay
	}
	payIn := func(provider, otn string, pay map[string]string) {
		t.Helper()
		req := sandbox.ActionRequest{Provider: provider, OutTradeNo: otn}
		switch {
		case pay["order_string"] != "":
			req = sandbox.ActionRequest{OrderString: pay["order_string"]}
		case pay["prepayid"] != "":
			req = sandbox.ActionRequest{PrepayID: pay["prepayid"]}
		case strings.HasPrefix(pay["package"], "prepay_id="):
			req = sandbox.ActionRequest{PrepayID: pay["package"]}
		case pay["code_url"] != "":
			req = sandbox.ActionRequest{URL: pay["code_url"]}
		case pay["h5_url"] != "":
			req = sandbox.ActionRequest{URL: pay["h5_url"]}
		case pay["qr_code"] != "":
			req = sandbox.ActionRequest{URL: pay["qr_code"]}
		case pay["url"] != "":
			req = sandbox.ActionRequest{URL: pay["url"]}
		}
		if _, err := r.sb.Act("pay", req); err != nil {
			t.Fatalf("pay %s: %v", otn, err)
		}
	}
	faults := map[string]sandbox.Faults{
		"SECA_page":     {BadSignature: true},
		"SECA_wap":      {Charset: "GBK"},
		"SECA_qr":       {WrongAmount: true},
		"SECA_app":      {Duplicate: 1},
		"SECW_native":   {WrongAmount: true},
		"SECW_app":      {BadSignature: true},
		"SECW_jsapi":    {SigntestProbe: 1},
		"SECW_h5":       {WrongAppID: true},
		"SECL_md5_dir":  {BadSignature: true},
		"SECL_rsa_wap":  {DoublePay: true},
		"SECL_md5_wap":  {Duplicate: 1},
		"SECL_rsa_dir":  {WrongAmount: true},
		"SECA_app_good": {},
	}
	type payCase struct {
		app, provider, channel, otn string
		extra                       map[string]any
	}
	cases := []payCase{
		{"alipay-demo", "alipay", "alipay.app", "SECA_app", nil},
		{"alipay-demo", "alipay", "alipay.app", "SECA_app_good", nil},
		{"alipay-demo", "alipay", "alipay.page", "SECA_page", nil},
		{"alipay-demo", "alipay", "alipay.wap", "SECA_wap", nil},
		{"alipay-demo", "alipay", "alipay.precreate", "SECA_qr", nil},
		{"wechatpay-demo", "wechatpay", "wechatpay.native", "SECW_native", nil},
		{"wechatpay-demo", "wechatpay", "wechatpay.native", "SECW_native_good", nil},
		{"wechatpay-demo", "wechatpay", "wechatpay.app", "SECW_app", nil},
		{"wechatpay-demo", "wechatpay", "wechatpay.jsapi", "SECW_jsapi", map[string]any{"payer_openid": "o_secrets_scan"}},
		{"wechatpay-demo", "wechatpay", "wechatpay.h5", "SECW_h5", map[string]any{"payer_client_ip": "127.0.0.1"}},
		{"legacy-md5", "alipay-legacy", "alipay.direct", "SECL_md5_dir", nil},
		{"legacy-md5", "alipay-legacy", "alipay.wap_direct", "SECL_md5_wap", nil},
		{"legacy-rsa", "alipay-legacy", "alipay.direct", "SECL_rsa_dir", nil},
		{"legacy-rsa", "alipay-legacy", "alipay.wap_direct", "SECL_rsa_wap", nil},
	}
	for i, c := range cases {
		if f, ok := faults[c.otn]; ok && f != (sandbox.Faults{}) {
			if err := r.sb.SetFaults(c.otn, f); err != nil {
				t.Fatal(err)
			}
		}
		pay := create(c.app, c.channel, c.otn, int64(100+i), c.extra)
		payIn(c.provider, c.otn, pay)
	}
	// Orders left unpaid, to be closed.
	for _, c := range []payCase{{"alipay-demo", "", "alipay.page", "SECC_alipay", nil}, {"wechatpay-demo", "", "wechatpay.native", "SECC_wechat", nil},
		{"legacy-md5", "", "alipay.direct", "SECC_legacy", nil}} {
		create(c.app, c.channel, c.otn, 300, nil)
	}

	// Forged and re-signed notifications, posted directly.
	form := url.Values{"app_id": {k.AlipayAppID}, "out_trade_no": {"SECA_app_good"}, "trade_status": {"TRADE_SUCCESS"}, "total_amount": {"1.01"},
		"seller_id": {k.AlipaySellerID}, "trade_no": {"2026120622001400000000000001"}, "notify_id": {"n1"}, "notify_type": {"trade_status_sync"},
		"notify_time": {time.Now().Format("2006-01-02 15:04:05")}, "charset": {"utf-8"}, "version": {"1.0"}, "sign_type": {"RSA2"},
		"sign": {base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 256))}}
	r.call("", "POST", "/notify/alipay/alipay-demo", "application/x-www-form-urlencoded", []byte(form.Encode()), nil)
	r.call("", "POST", "/notify/alipay/alipay-demo", "application/x-www-form-urlencoded", []byte("a=1&a=2&sign=x"), nil)
	r.call("", "POST", "/notify/alipay/no-such-app", "application/x-www-form-urlencoded", []byte(form.Encode()), nil)
	wxHeaders := http.Header{"Wechatpay-Timestamp": {fmt.Sprint(time.Now().Unix())}, "Wechatpay-Nonce": {"nonce"},
		"Wechatpay-Serial": {k.WechatPlatformPublicKeyID}, "Wechatpay-Signature": {base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 256))}}
	r.call("", "POST", "/notify/wechatpay/wechatpay-demo", "application/json",
		[]byte(`{"id":"EV-1","create_time":"2026-12-06T10:00:00+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS","summary":"s","resource":{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"AAAA","associated_data":"transaction","nonce":"0123456789ab"}}`), wxHeaders)
	// Legacy MD5: a notification signed with the real key, but unknown to notify_verify; one
	// signed with another key.
	legacyFields := map[string]string{"notify_id": "secrets-scan-unknown", "notify_type": "trade_status_sync", "notify_time": time.Now().Format("2006-01-02 15:04:05"),
		"out_trade_no": "SECL_md5_dir", "trade_no": "2026120600000000001", "trade_status": "TRADE_SUCCESS", "total_fee": "1.10",
		"seller_email": k.LegacySellerEmail, "seller_id": k.LegacyPartner, "_input_charset": "utf-8"}
	for _, key := range []string{k.LegacyMD5Key, randomHex(t, 16)} {
		f := url.Values{}
		for n, v := range legacyFields {
			f.Set(n, v)
		}
		f.Set("sign", md5Hex(t, sortedJoin(legacyFields)+key))
		f.Set("sign_type", "MD5")
		r.call("", "POST", "/notify/alipay-legacy/legacy-md5", "application/x-www-form-urlencoded", []byte(f.Encode()), nil)
	}
	// WeChat Pay APIv2: a payment signed with the APIv2 key (the order's amount), and one signed
	// with another key.
	v2 := map[string]string{"return_code": "SUCCESS", "result_code": "SUCCESS", "appid": k.WechatAppID, "mch_id": k.WechatMchID,
		"nonce_str": "secretsscan", "out_trade_no": "SECW_native_good", "transaction_id": "4200000000202612060000000001", "total_fee": "106",
		"fee_type": "CNY", "trade_type": "NATIVE", "time_end": time.Now().Format("20060102150405"), "openid": "o_secrets_scan", "bank_type": "OTHERS",
		"cash_fee": "106", "is_subscribe": "N"}
	v2Bodies := map[string][]byte{}
	for name, key := range map[string]string{"good": r.v2Key, "forged": randomHex(t, 16)} {
		var b strings.Builder
		b.WriteString("<xml>")
		for n, v := range v2 {
			fmt.Fprintf(&b, "<%s><![CDATA[%s]]></%s>", n, v, n)
		}
		fmt.Fprintf(&b, "<sign>%s</sign></xml>", strings.ToUpper(md5Hex(t, sortedJoin(v2)+"&key="+key)))
		v2Bodies[name] = []byte(b.String())
		r.call("", "POST", "/notify/wechatpay-v2/wechatpay-demo", "text/xml", v2Bodies[name], nil)
	}
	// The return routes, with made-up parameters.
	r.call("", "GET", "/return/alipay/alipay-demo?out_trade_no=SECA_page&sign=abc&sign_type=RSA2&app_id="+k.AlipayAppID, "", nil, nil)
	r.call("", "GET", "/return/alipay-legacy/legacy-md5?out_trade_no=SECL_md5_dir&sign=abc&sign_type=MD5&is_success=T", "", nil, nil)

	// Wait for the notifications: each faultless order paid (the forged ones stay pending until
	// reconciled).
	deadline := time.Now().Add(60 * time.Second)
	for _, otn := range []struct{ app, otn string }{{"alipay-demo", "SECA_app_good"}, {"alipay-demo", "SECA_wap"}, {"wechatpay-demo", "SECW_jsapi"},
		{"legacy-md5", "SECL_md5_wap"}, {"legacy-rsa", "SECL_rsa_wap"}} {
		for {
			code, o := r.api("GET", "/v1/orders/"+otn.app+"/"+otn.otn, nil)
			if code == http.StatusOK && o["status"] == "paid" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s/%s never paid: %d %v", otn.app, otn.otn, code, o)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Refunds, closes, the reconciliation and reprocessing.
	for _, o := range []struct{ app, otn string }{{"alipay-demo", "SECA_app_good"}, {"wechatpay-demo", "SECW_jsapi"}, {"legacy-md5", "SECL_md5_wap"}} {
		r.api("POST", "/v1/orders/"+o.app+"/"+o.otn+"/refunds", map[string]any{"out_request_no": "R_" + o.otn, "amount": 1, "reason": "secrets scan"})
		r.api("GET", "/v1/orders/"+o.app+"/"+o.otn+"/refunds", nil)
	}
	for _, o := range []struct{ app, otn string }{{"alipay-demo", "SECC_alipay"}, {"wechatpay-demo", "SECC_wechat"}, {"legacy-md5", "SECC_legacy"}} {
		r.api("POST", "/v1/orders/"+o.app+"/"+o.otn+"/close", nil)
	}
	if _, _, code := r.cli(nil, "reconcile", "--config", r.config, "--since", "1h"); code > 1 {
		t.Errorf("reconcile: exit %d", code)
	}
	if _, _, code := r.cli(nil, "reprocess", "--config", r.config, "--since", "1h"); code > 1 {
		t.Errorf("reprocess: exit %d", code)
	}
	code, ntf := r.api("GET", "/v1/notifications?limit=500", nil)
	list, _ := ntf["notifications"].([]any)
	if code != http.StatusOK || len(list) < 10 {
		t.Fatalf("notifications: %d, %d records", code, len(list))
	}
	verdicts := map[string]int{}
	for i, n := range list {
		m, _ := n.(map[string]any)
		verdicts[fmt.Sprint(m["verdict"])]++
		if id, _ := m["id"].(string); id != "" && i%3 == 0 {
			r.api("POST", "/v1/notifications/"+id+"/reprocess", nil)
		}
	}
	t.Logf("evidence: %d records, verdicts %v", len(list), verdicts)

	// Webhooks: a test event, a resend, the attempts; and the commands.
	r.api("POST", "/v1/webhook-endpoints/"+epID+"/test", nil)
	code, evs := r.api("GET", "/v1/events?limit=500", nil)
	events, _ := evs["events"].([]any)
	if code != http.StatusOK || len(events) == 0 {
		t.Fatalf("events: %d, %d", code, len(events))
	}
	if ev, _ := events[0].(map[string]any); ev != nil {
		r.api("POST", fmt.Sprintf("/v1/events/%v/resend", ev["id"]), map[string]any{"endpoint_id": epID})
	}
	r.api("PATCH", "/v1/webhook-endpoints/"+epID, map[string]any{"description": "secrets scan, updated"})
	deadline = time.Now().Add(30 * time.Second)
	for {
		hookMu.Lock()
		n := len(hooks)
		hookMu.Unlock()
		if n >= len(events) || time.Now().After(deadline) {
			r.webhookCount = n
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r.webhookCount == 0 {
		t.Fatal("no webhook delivery received")
	}

	// Every list and read of the API, the other routes, unauthorized and bad calls.
	for _, p := range []string{"/v1/orders?limit=500", "/v1/orders?app=wechatpay-demo", "/v1/orders?status=paid", "/v1/events?limit=500",
		"/v1/notifications?limit=500", "/v1/notifications?verdict=rejected", "/v1/webhook-endpoints", "/v1/webhook-endpoints/" + epID,
		"/v1/webhook-endpoints/" + epID + "/attempts?limit=1000", "/v1/orders/alipay-demo/nope", "/v1/orders/nope/x"} {
		r.api("GET", p, nil)
	}
	for _, o := range orders {
		r.api("GET", "/v1/orders/"+o.app+"/"+o.otn, nil)
	}
	r.call(r.cfgToken, "GET", "/v1/orders", "", nil, nil)
	r.call("", "GET", "/v1/orders", "", nil, nil)
	r.call("wrong-token", "GET", "/v1/events", "", nil, nil)
	r.call("", "GET", "/v1/orders?token="+r.token, "", nil, nil)
	r.call(r.token, "POST", "/v1/orders", "application/json", []byte(`{"app":"alipay-demo","AMOUNT":1}`), nil)
	for _, p := range []string{"/metrics", "/healthz", "/readyz", "/v1/openapi.yaml", "/", "/nope"} {
		r.call("", "GET", p, "", nil, nil)
	}

	// The commands.
	r.cli(nil, "doctor", "--config", r.config)
	r.cli(nil, "tokens", "list", "--config", r.config)
	for _, args := range [][]string{{"list"}, {"get", epID}, {"attempts", epID}} {
		r.cli(nil, append(append([]string{"webhooks"}, args...), "--server", r.base, "--config", r.config)...)
	}
	for name, body := range v2Bodies {
		p := filepath.Join(r.dir, "v2_"+name+".xml")
		writeTestFile(t, p, string(body))
		r.cli(nil, "verify", "wechatpay", "--v2", "--api-key-file", filepath.Join(r.dir, "wx_apiv2.key"), "--explain", p)
	}
	as, err := r.sb.Attempts(sandbox.AttemptFilter{Provider: "alipay-legacy", OutTradeNo: "SECL_md5_wap"})
	if err != nil || len(as) == 0 {
		t.Fatalf("legacy attempts: %d, %v", len(as), err)
	}
	p := filepath.Join(r.dir, "legacy_notification.txt")
	writeTestFile(t, p, string(as[0].RequestBody))
	r.cli(nil, "verify", "alipay-legacy", "--partner", k.LegacyPartner, "--sign-type", "MD5", "--md5-key-file", filepath.Join(r.dir, "legacy_md5.key"), "--explain", p)
	tampered := strings.Replace(string(as[0].RequestBody), "sign=", "sign=0", 1)
	writeTestFile(t, p, tampered)
	r.cli(nil, "verify", "alipay-legacy", "--partner", k.LegacyPartner, "--sign-type", "MD5", "--md5-key-file", filepath.Join(r.dir, "legacy_md5.key"), "--explain", p)

	// The console, logged in with its password: every page, every order's timeline.
	loginReq, _ := http.NewRequest("POST", r.base+"/login", strings.NewReader(url.Values{"password": {consolePassword}}.Encode()))
	loginReq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	noRedirect := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	loginResp, err := noRedirect.Do(loginReq)
	if err != nil {
		t.Fatal(err)
	}
	loginBody, _ := io.ReadAll(loginResp.Body)
	loginResp.Body.Close()
	r.record("POST /login", loginResp, loginBody)
	if loginResp.StatusCode != http.StatusSeeOther || len(loginResp.Cookies()) == 0 {
		t.Fatalf("console login: %d, cookies %d", loginResp.StatusCode, len(loginResp.Cookies()))
	}
	session := http.Header{}
	for _, c := range loginResp.Cookies() {
		session.Add("Cookie", c.Name+"="+c.Value)
	}
	pages := []string{"/console/", "/console/orders", "/console/notifications", "/console/anomalies",
		"/console/notifications?verdict=rejected", "/console/notifications?verdict=anomaly"}
	_, ol := r.api("GET", "/v1/orders?limit=200", nil)
	consoleOrders, _ := ol["orders"].([]any)
	for _, o := range consoleOrders {
		m, _ := o.(map[string]any)
		pages = append(pages, fmt.Sprintf("/console/orders/%s/%s", m["app"], url.PathEscape(fmt.Sprint(m["out_trade_no"]))))
	}
	_, nl := r.api("GET", "/v1/notifications?limit=200", nil)
	notes, _ := nl["notifications"].([]any)
	for _, n := range notes {
		m, _ := n.(map[string]any)
		pages = append(pages, fmt.Sprintf("/console/notifications/%s", m["id"]))
	}
	for _, p := range pages {
		if code, body := r.call("", "GET", p, "", nil, session); code != http.StatusOK {
			t.Errorf("console %s: %d %.200s", p, code, body)
		}
	}
	if len(consoleOrders) < 10 || len(notes) < 10 {
		t.Errorf("console: %d orders and %d notifications read, want the session's", len(consoleOrders), len(notes))
	}
	t.Logf("console: %d pages read", len(pages))

	// The server stops (its last log lines written), then everything is scanned.
	srv.Process.Signal(syscall.SIGTERM)
	srv.Wait()
	stopped = true
	sources := append([]scanSource(nil), r.sources...)
	sources = append(sources, scanSource{name: "server log", data: []byte(serverLog.String())})
	hookMu.Lock()
	for i, h := range hooks {
		sources = append(sources, scanSource{name: fmt.Sprintf("webhook request %d", i+1), data: h})
	}
	hookMu.Unlock()
	// paynotify's answers to the sandbox's notifications.
	attempts, err := r.sb.Attempts(sandbox.AttemptFilter{})
	if err != nil || len(attempts) < len(cases) {
		t.Fatalf("sandbox attempts: %d, %v", len(attempts), err)
	}
	for _, a := range attempts {
		sources = append(sources, scanSource{name: fmt.Sprintf("answer to notification attempt %s/%d", a.OutTradeNo, a.N),
			data: []byte(fmt.Sprintf("%d %s %s", a.Status, a.Response, a.Error))})
	}
	outMu.Lock()
	for i, o := range outgoing {
		sources = append(sources, scanSource{name: fmt.Sprintf("request to the providers %d", i+1), data: o})
	}
	outMu.Unlock()
	dbFiles, _ := filepath.Glob(dbPath + "*")
	for _, f := range dbFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The database keeps the webhook secrets it signs with, by design (docs/webhooks.md).
		sources = append(sources, scanSource{name: "database file " + filepath.Base(f), data: b, allowed: []string{"webhook secret", "rotated webhook secret"}})
	}
	logLines := strings.Count(serverLog.String(), "\n")
	// At level debug every line the server has is written (none is at debug today).
	if logLines < 50 {
		t.Fatalf("the server logged only %d lines", logLines)
	}

	// The control: a secret planted in a copy of a source (each form of one short secret, and a
	// line of a private key's PEM) is found; so the scan can fail.
	for _, plant := range []secretNeedle{secrets.needles[len(secrets.needles)-1], find(t, secrets, "APIv3 key", "base64"),
		find(t, secrets, "WeChat Pay merchant private key", "PEM body line"), find(t, secrets, "legacy MD5 key", "HEX"),
		find(t, secrets, "Alipay app private key", "private exponent hex")} {
		planted := append([]byte(serverLog.String()), []byte(" x="+plant.value+"\n")...)
		hits := secrets.scan([]scanSource{{name: "control", data: planted}})
		if len(hits) == 0 || hits[0].secret != plant.secret {
			t.Fatalf("control: the %s of the %s planted in a source was not found: %v", plant.form, plant.secret, hits)
		}
		// The same, HTML-escaped as a console page would show it.
		page := []byte("<td>" + template.HTMLEscapeString(plant.value) + "</td>")
		if hits := secrets.scan([]scanSource{{name: "control page", data: page}}); len(hits) == 0 || hits[0].secret != plant.secret {
			t.Fatalf("control: the %s of the %s, HTML-escaped on a page, was not found: %v", plant.form, plant.secret, hits)
		}
	}

	hits := secrets.scan(sources)
	sort.Slice(hits, func(i, j int) bool { return hits[i].source < hits[j].source })
	for _, h := range hits {
		t.Errorf("%s shows the %s (%s): …%s…", h.source, h.secret, h.form, h.context)
	}
	total := 0
	for _, s := range sources {
		total += len(s.data)
	}
	t.Logf("scanned %d sources (%d log lines, %d HTTP answers and commands, %d webhook requests, %d requests to the providers, %d database files; %d bytes) for %d forms of %d secrets: %d hits",
		len(sources), logLines, len(r.sources), r.webhookCount, len(outgoing), len(dbFiles), total, len(secrets.needles), countSecrets(secrets), len(hits))
}

// find returns the first needle of secret in form.
func find(t *testing.T, s secretSet, secret, form string) secretNeedle {
	t.Helper()
	for _, n := range s.needles {
		if n.secret == secret && n.form == form {
			return n
		}
	}
	t.Fatalf("no %s of %s", form, secret)
	return secretNeedle{}
}

func countSecrets(s secretSet) int {
	seen := map[string]bool{}
	for _, n := range s.needles {
		seen[n.secret] = true
	}
	return len(seen)
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// sortedJoin joins fields as k=v, sorted by key, with '&': the string both Alipay legacy MD5 and
// WeChat Pay APIv2 sign (without sign and sign_type, which the callers leave out).
func sortedJoin(fields map[string]string) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+fields[k])
	}
	return strings.Join(parts, "&")
}

// md5Hex is the lower-case hex MD5 of s, computed by the openssl CLI (independent of the code
// under test).
func md5Hex(t *testing.T, s string) string {
	t.Helper()
	cmd := exec.Command("openssl", "dgst", "-md5", "-r")
	cmd.Stdin = strings.NewReader(s)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl dgst -md5: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 || len(f[0]) != 32 {
		t.Fatalf("openssl dgst -md5: %q", out)
	}
	return f[0]
}
