package sandbox

// The merchant side of the legacy Alipay tests: canonical strings, MD5, and (through the openssl
// command line) RSA-SHA1 signatures and 0001 decryption, written from docs/alipay-legacy.md for the
// tests and sharing no code with the simulator, so that the tests check the simulator against an
// independent reading of the protocol.

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// setupLegacy starts a sandbox like setup, with state files overwritten first (files: name →
// content, e.g. the vectors' keys) and an optional clock. start runs its notifier.
func setupLegacy(t *testing.T, scale float64, files map[string][]byte, now func() time.Time, start bool) *testBundle {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required: the legacy tests check the sandbox with an independent implementation")
	}
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
		writeFile(t, filepath.Join(dir, e.Name()), string(b))
	}
	for name, b := range files {
		writeFile(t, filepath.Join(dir, name), string(b))
	}
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	sb, err := New(Config{StateDir: dir, BaseURL: srv.URL, TimeScale: scale, Now: now, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h = sb.Handler()
	// Cleanups run last registered first: Close after the notifier has stopped (Close's
	// contract), so registered before Start's.
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Error(err)
		}
	})
	ctx := context.Background()
	if start {
		c, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { sb.Start(c); close(done) }()
		t.Cleanup(func() {
			cancel()
			<-done
		})
		ctx = c
	}
	return &testBundle{sb: sb, srv: srv, ctx: ctx, keys: sb.Keys(), stateD: dir}
}

type kvs [][2]string

// get returns the first value of name.
func (p kvs) get(name string) string {
	for _, kv := range p {
		if kv[0] == name {
			return kv[1]
		}
	}
	return ""
}

func (p kvs) count(name string) int {
	n := 0
	for _, kv := range p {
		if kv[0] == name {
			n++
		}
	}
	return n
}

func (p kvs) set(name, value string) kvs {
	out := slices.Clone(p)
	for i := range out {
		if out[i][0] == name {
			out[i][1] = value
			return out
		}
	}
	return append(out, [2]string{name, value})
}

// tParse decodes an application/x-www-form-urlencoded string once, keeping order and duplicates.
func tParse(s string) (kvs, error) {
	var out kvs
	for _, part := range strings.Split(s, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		dk, err := url.QueryUnescape(k)
		if err != nil {
			return nil, err
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return nil, err
		}
		out = append(out, [2]string{dk, dv})
	}
	return out, nil
}

// tEncode form-encodes pairs in order.
func tEncode(p kvs) string {
	parts := make([]string, len(p))
	for i, kv := range p {
		parts[i] = url.QueryEscape(kv[0]) + "=" + url.QueryEscape(kv[1])
	}
	return strings.Join(parts, "&")
}

// tSorted is the sorted rule (docs/alipay-legacy.md §5.1), built by the test.
func tSorted(p kvs) []byte {
	var keep kvs
	for _, kv := range p {
		if kv[0] != "sign" && kv[0] != "sign_type" && kv[1] != "" {
			keep = append(keep, kv)
		}
	}
	slices.SortFunc(keep, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	var parts []string
	for _, kv := range keep {
		parts = append(parts, kv[0]+"="+kv[1])
	}
	return []byte(strings.Join(parts, "&"))
}

// tFixed is the fixed-order WAP notification string (docs/alipay-legacy.md §5.2), built by the
// test.
func tFixed(service, v, secID, notifyData string) []byte {
	return []byte(strings.Join([]string{"service=" + service, "v=" + v, "sec_id=" + secID, "notify_data=" + notifyData}, "&"))
}

func tMD5(msg []byte, key string) string {
	sum := md5.Sum(append(slices.Clone(msg), key...))
	return hex.EncodeToString(sum[:])
}

func tTemp(name string, data []byte) (string, error) {
	dir, err := os.MkdirTemp("", "legacy-openssl-")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	return p, os.WriteFile(p, data, 0o600)
}

// tOpenSSLSign signs msg with RSA-SHA1 (openssl dgst -sha1 -sign), standard base64.
func tOpenSSLSign(privPEM string, msg []byte) (string, error) {
	key, err := tTemp("key.pem", []byte(privPEM))
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(filepath.Dir(key))
	cmd := exec.Command("openssl", "dgst", "-sha1", "-sign", key)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("openssl dgst -sign: %v", err)
	}
	return base64.StdEncoding.EncodeToString(out), nil
}

// tOpenSSLVerify verifies an RSA-SHA1 signature (openssl dgst -sha1 -verify).
func tOpenSSLVerify(pubPEM string, msg []byte, sigB64 string) error {
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		return fmt.Errorf("sign is not base64: %v", err)
	}
	pub, err := tTemp("pub.pem", []byte(pubPEM))
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(pub))
	sigF := filepath.Join(filepath.Dir(pub), "sig.bin")
	msgF := filepath.Join(filepath.Dir(pub), "msg")
	if err := os.WriteFile(sigF, sig, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(msgF, msg, 0o600); err != nil {
		return err
	}
	out, err := exec.Command("openssl", "dgst", "-sha1", "-verify", pub, "-signature", sigF, msgF).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verified OK") {
		return fmt.Errorf("openssl: signature does not verify: %s", strings.TrimSpace(string(out)))
	}
	return nil
}

// tOpenSSLDecrypt0001 decrypts 0001 data as the official SDKs do (docs/alipay-legacy.md §7):
// base64, 128-byte blocks, each decrypted with PKCS#1 v1.5 padding (openssl pkeyutl -decrypt),
// concatenated.
func tOpenSSLDecrypt0001(privPEM, b64 string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("not base64: %v", err)
	}
	if len(raw) == 0 || len(raw)%128 != 0 {
		return nil, fmt.Errorf("%d bytes are not whole 128-byte blocks", len(raw))
	}
	key, err := tTemp("key.pem", []byte(privPEM))
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(filepath.Dir(key))
	var out []byte
	for i := 0; i < len(raw); i += 128 {
		cmd := exec.Command("openssl", "pkeyutl", "-decrypt", "-inkey", key, "-pkeyopt", "rsa_padding_mode:pkcs1")
		cmd.Stdin = bytes.NewReader(raw[i : i+128])
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		plain, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("openssl pkeyutl -decrypt block %d: %v %s", i/128, err, stderr.String())
		}
		out = append(out, plain...)
	}
	return out, nil
}

// tSign signs msg as the merchant does: MD5 with the MD5 key, RSA / 0001 with the merchant key.
func (b *testBundle) tSign(st string, msg []byte) (string, error) {
	if st == "MD5" {
		return tMD5(msg, b.keys.LegacyMD5Key), nil
	}
	return tOpenSSLSign(b.keys.LegacyMerchantPrivateKey, msg)
}

// tVerifyAlipay verifies what the sandbox signed as Alipay: MD5 with the partner's MD5 key
// (md5Key, default the default partner's), RSA / 0001 with the legacy Alipay public key.
func (b *testBundle) tVerifyAlipay(st string, msg []byte, sign, md5Key string) error {
	if st == "MD5" {
		if md5Key == "" {
			md5Key = b.keys.LegacyMD5Key
		}
		if sign != tMD5(msg, md5Key) {
			return errors.New("MD5 sign does not match")
		}
		return nil
	}
	return tOpenSSLVerify(b.keys.LegacyAlipayPublicKey, msg, sign)
}

// legacyURL builds a merchant request to the sandbox's legacy path (gateway.do or wap/rest.htm),
// signed with st over the sorted string; mapi requests carry sign_type, WAP ones do not.
func (b *testBundle) legacyURL(t *testing.T, path string, params kvs, st string) string {
	t.Helper()
	sign, err := b.tSign(st, tSorted(params))
	if err != nil {
		t.Fatal(err)
	}
	var sent kvs
	for _, kv := range params {
		if kv[1] != "" {
			sent = append(sent, kv)
		}
	}
	sent = append(sent, [2]string{"sign", sign})
	if path == "gateway.do" {
		sent = append(sent, [2]string{"sign_type", st})
	}
	return b.srv.URL + "/sandbox/alipay-legacy/" + path + "?" + tEncode(sent)
}

// tVerifyMapi checks a mapi notification body or return query (one decoding, no duplicate
// names, sorted string, signature) and returns its fields.
func (b *testBundle) tVerifyMapi(body, st string) (kvs, error) {
	p, err := tParse(body)
	if err != nil {
		return nil, err
	}
	for _, kv := range p {
		if p.count(kv[0]) != 1 {
			return p, fmt.Errorf("field %s appears %d times", kv[0], p.count(kv[0]))
		}
	}
	if p.get("sign_type") != st {
		return p, fmt.Errorf("sign_type %q, want %s", p.get("sign_type"), st)
	}
	return p, b.tVerifyAlipay(st, tSorted(p), p.get("sign"), "")
}

// tVerifyWap checks a WAP notification: the four fields and sign, 0001 decryption, the
// fixed-order signature over the plaintext; it returns the fields and the plaintext notify_data.
func (b *testBundle) tVerifyWap(body, secID string) (kvs, string, error) {
	p, err := tParse(body)
	if err != nil {
		return nil, "", err
	}
	for _, k := range []string{"service", "v", "sec_id", "notify_data", "sign"} {
		if p.count(k) != 1 {
			return p, "", fmt.Errorf("field %s appears %d times", k, p.count(k))
		}
	}
	if p.get("sec_id") != secID || p.get("v") != "1.0" || p.get("service") != "alipay.wap.trade.create.direct" {
		return p, "", fmt.Errorf("service/v/sec_id: %s %s %s", p.get("service"), p.get("v"), p.get("sec_id"))
	}
	plain := p.get("notify_data")
	if secID == "0001" {
		d, err := tOpenSSLDecrypt0001(b.keys.LegacyMerchantPrivateKey, plain)
		if err != nil {
			return p, "", err
		}
		plain = string(d)
	}
	return p, plain, b.tVerifyAlipay(secID, tFixed(p.get("service"), p.get("v"), p.get("sec_id"), plain), p.get("sign"), "")
}

// tNotifyVerify calls notify_verify with notifyID appended verbatim, as the official code does.
func (b *testBundle) tNotifyVerify(partner, notifyID string) (string, error) {
	return tGetText(b.srv.URL + "/sandbox/alipay-legacy/gateway.do?service=notify_verify&partner=" + partner + "&notify_id=" + notifyID)
}

func tGetText(u string) (string, error) {
	resp, err := http.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// tGetPage GETs u and returns the status, the X-Sandbox-Error header and the body.
func tGetPage(t *testing.T, u string) (int, string, string) {
	t.Helper()
	resp, err := noRedirect.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Sandbox-Error"), string(b)
}

// tCashierPost POSTs a cashier action and returns the response (redirects not followed).
func tCashierPost(t *testing.T, b *testBundle, token, action string) *http.Response {
	t.Helper()
	resp, err := noRedirect.Post(b.srv.URL+"/sandbox/alipay-legacy/cashier/"+token+"/"+action, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// legacyTrade returns the legacy trade of out_trade_no.
func legacyTrade(t *testing.T, b *testBundle, no string) *Trade {
	t.Helper()
	ts, err := b.sb.Trades(ProviderAlipayLegacy, no)
	if err != nil || len(ts) != 1 {
		t.Fatalf("trade %s: %v %d", no, err, len(ts))
	}
	return ts[0]
}

// xmlText returns the text of the first <name> element of doc (plain string search: the test's
// own reading of a flat document).
func xmlText(doc, name string) string {
	_, rest, ok := strings.Cut(doc, "<"+name+">")
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, "</"+name+">")
	return v
}

// postMultipart POSTs p as multipart/form-data (what curl does with an array, as the 3.3 PHP
// demos' buildRequestHttp) and returns the response and its body.
func postMultipart(t *testing.T, u string, p kvs) (*http.Response, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, kv := range p {
		if err := mw.WriteField(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	mw.Close()
	resp, err := noRedirect.Post(u, mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}
