package e2e_test

import (
	"bytes"
	"crypto"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/sqlite"
)

// Issue 14 §2, "Bad input, as a table over real HTTP": every category of bad input is a table of
// rows, each posted to the real server (httpd.NewHTTPServer on a loopback socket, both stores)
// with its exact expected answer, then a check that nothing changed: every order's status and
// version, the event log, the anomalies table, and the evidence (exactly the one record the row
// should leave, with its verdict and reason, or none). The signatures of the rows are made here,
// over canonical strings this file builds, with crypto/rsa, crypto/md5 and crypto/cipher: never
// with the alipay, alipaylegacy or wechatpay packages under test. Each table ends with rows that
// are genuine, and accepted, so that the signers are shown to be right and every refusal above
// them is for the reason the row names.

// answer is what a row expects the server to answer: the status and the exact body (after
// trimming one trailing newline), or, with bodyPrefix, its start.
type answer struct {
	status     int
	body       string
	bodyPrefix bool
	contains   string // when set, the body must also contain it
}

// saying returns a with the body required to contain s too.
func (a answer) saying(s string) answer { a.contains = s; return a }

func (a answer) check(t *testing.T, row string, status int, body string) {
	t.Helper()
	b := strings.TrimSuffix(body, "\n")
	ok := status == a.status && (b == a.body || (a.bodyPrefix && strings.HasPrefix(b, a.body))) && strings.Contains(b, a.contains)
	if !ok {
		t.Errorf("%s: answered HTTP %d %q, want %d %q (saying %q)", row, status, trim(b), a.status, a.body, a.contains)
	}
}

// alipayFail and alipaySuccess are Alipay's (and legacy Alipay's) two answers.
var (
	alipayFail    = answer{status: http.StatusOK, body: "fail"}
	alipaySuccess = answer{status: http.StatusOK, body: "success"}
)

// wechatFail is WeChat Pay APIv3's failure answer: the status and {"code":"FAIL","message":reason}.
func wechatFail(status int, reason string) answer {
	return answer{status: status, body: `{"code":"FAIL","message":"` + reason + `"}`}
}

// apiErr is a merchant API error answer: the status and the start of the error JSON with its code.
func apiErr(status int, code string) answer {
	return answer{status: status, body: `{"error":{"code":"` + code + `"`, bodyPrefix: true}
}

// state is what a bad row must not change: every order (status@version), the number of events and
// of anomaly rows, and the ids of the evidence records.
type state struct {
	orders    map[string]string
	events    int
	anomalies int
	evidence  map[string]bool
}

// snapshot reads the state through the API (orders, events, evidence) and the store (anomalies:
// no API lists them).
func (e *env) snapshot() state {
	e.t.Helper()
	st := state{orders: map[string]string{}, evidence: map[string]bool{}}
	var orders struct {
		Orders []order `json:"orders"`
	}
	if code := e.api("GET", "/v1/orders?limit=1000", nil, &orders); code != http.StatusOK {
		e.t.Fatalf("list orders: HTTP %d", code)
	}
	for _, o := range orders.Orders {
		st.orders[o.App+"/"+o.OutTradeNo] = fmt.Sprintf("%s@v%d", o.Status, o.Version)
	}
	var events struct {
		Events []event `json:"events"`
	}
	if code := e.api("GET", "/v1/events?limit=1000", nil, &events); code != http.StatusOK {
		e.t.Fatalf("events: HTTP %d", code)
	}
	st.events = len(events.Events)
	for _, ev := range e.evidenceQuery("") {
		st.evidence[ev.ID] = true
	}
	st.anomalies = e.anomalyCount()
	return st
}

// anomalyCount counts the anomalies table's rows.
func (e *env) anomalyCount() int {
	e.t.Helper()
	const q = `SELECT count(*) FROM anomalies`
	var n int
	var err error
	switch db := e.store.(type) {
	case *sqlite.DB:
		err = db.SQL().QueryRowContext(e.ctx, q).Scan(&n)
	case *postgres.DB:
		err = db.Pool().QueryRow(e.ctx, q).Scan(&n)
	default:
		err = fmt.Errorf("unknown store %T", e.store)
	}
	if err != nil {
		e.t.Fatalf("count anomalies: %v", err)
	}
	return n
}

// effect is what a row is expected to leave behind: at most one evidence record (verdict or
// verdict/reason; "" for none), the events it appends (their types, in order), the anomalies it
// records, and the orders it changes (key app/otn → status@vN).
type effect struct {
	evidence  string
	detail    string // when set, the new evidence record's detail contains it
	events    []string
	anomalies int
	orders    map[string]string
}

// checkEffect compares the state after a row with the state before it and the row's effect.
func (e *env) checkEffect(row string, before state, want effect) {
	e.t.Helper()
	after := e.snapshot()
	wantOrders := map[string]string{}
	for k, v := range before.orders {
		wantOrders[k] = v
	}
	for k, v := range want.orders {
		wantOrders[k] = v
	}
	if fmt.Sprint(after.orders) != fmt.Sprint(wantOrders) {
		e.t.Errorf("%s: orders %v, want %v", row, after.orders, wantOrders)
	}
	if after.anomalies != before.anomalies+want.anomalies {
		e.t.Errorf("%s: %d anomalies, want %d", row, after.anomalies, before.anomalies+want.anomalies)
	}
	var evs struct {
		Events []event `json:"events"`
	}
	e.api("GET", "/v1/events?limit=1000", nil, &evs)
	var got []string
	if len(evs.Events) >= before.events {
		for _, ev := range evs.Events[before.events:] {
			got = append(got, ev.Type)
		}
	}
	if len(evs.Events) < before.events || strings.Join(got, " ") != strings.Join(want.events, " ") {
		e.t.Errorf("%s: new events %v (%d → %d), want %v", row, got, before.events, len(evs.Events), want.events)
	}
	var fresh []string
	for _, ev := range e.evidenceQuery("") {
		if !before.evidence[ev.ID] {
			if want.detail != "" && !strings.Contains(ev.Detail, want.detail) {
				e.t.Errorf("%s: evidence detail %q, want it to say %q", row, ev.Detail, want.detail)
			}
			k := ev.Verdict
			if ev.Reason != "" {
				k += "/" + ev.Reason
			}
			fresh = append(fresh, k)
		}
	}
	if want.evidence == "" && len(fresh) != 0 || want.evidence != "" && (len(fresh) != 1 || fresh[0] != want.evidence) {
		e.t.Errorf("%s: new evidence %v, want %q", row, fresh, want.evidence)
	}
}

// rawPost posts body to the server's path with exactly the given headers (no Content-Type unless
// one is given; a header with several values is sent as several lines) and returns the answer.
func (e *env) rawPost(path string, header http.Header, body []byte) (int, string) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, "POST", e.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("POST %s: read the answer: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// ---- keys and signers, independent of the packages under test ----

// sandboxKey reads a private key the sandbox generated (into the template every env copies) by
// file name: the key that plays Alipay or the WeChat Pay platform.
func sandboxKey(t *testing.T, name string) *rsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(keyTemplate, name))
	if err != nil {
		t.Fatal(err)
	}
	return parseRSAKey(t, b)
}

func parseRSAKey(t *testing.T, pemBytes []byte) *rsa.PrivateKey {
	t.Helper()
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatal("no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
		return k
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("%T, want an RSA key", k)
	}
	return rk
}

var (
	strangerOnce sync.Once
	stranger     *rsa.PrivateKey
)

// strangerKey is an RSA key nobody configured: what a forger has.
func strangerKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	strangerOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		stranger = k
	})
	return stranger
}

// rsaSign signs msg with PKCS#1 v1.5 over SHA-256 (sha1 false) or SHA-1, base64.
func rsaSign(t *testing.T, key *rsa.PrivateKey, msg []byte, sha1Hash bool) string {
	t.Helper()
	var sig []byte
	var err error
	if sha1Hash {
		h := sha1.Sum(msg)
		sig, err = rsa.SignPKCS1v15(nil, key, crypto.SHA1, h[:])
	} else {
		h := sha256.Sum256(msg)
		sig, err = rsa.SignPKCS1v15(nil, key, crypto.SHA256, h[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// md5Sign is lower-case hex MD5(msg || key), legacy Alipay's MD5 signature.
func md5Sign(msg []byte, key string) string {
	h := md5.Sum(append(append([]byte{}, msg...), key...))
	return hex.EncodeToString(h[:])
}

// kv is one form field, kept in order (a form may repeat a key).
type kv struct{ k, v string }

// sortedCanonical is the notification canonical string of Alipay and of legacy mapi: the fields
// other than sign and sign_type with a non-empty value, sorted by key, k=v joined by &.
func sortedCanonical(fields []kv) string {
	var fs []kv
	for _, f := range fields {
		if f.k != "sign" && f.k != "sign_type" && f.v != "" {
			fs = append(fs, f)
		}
	}
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].k < fs[j].k })
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.k + "=" + f.v
	}
	return strings.Join(parts, "&")
}

// joinKV joins fields as k=v with &, in their order, without encoding.
func joinKV(fields []kv) string {
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = f.k + "=" + f.v
	}
	return strings.Join(parts, "&")
}

// encodeForm percent-encodes fields in their order.
func encodeForm(fields []kv) []byte {
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = url.QueryEscape(f.k) + "=" + url.QueryEscape(f.v)
	}
	return []byte(strings.Join(parts, "&"))
}

// fieldsOf turns a map into fields sorted by key.
func fieldsOf(m map[string]string) []kv {
	fs := make([]kv, 0, len(m))
	for k, v := range m {
		fs = append(fs, kv{k, v})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].k < fs[j].k })
	return fs
}

// with returns fields with k set to v (replaced in place, or appended).
func with(fields []kv, k, v string) []kv {
	out := append([]kv{}, fields...)
	for i := range out {
		if out[i].k == k {
			out[i].v = v
			return out
		}
	}
	return append(out, kv{k, v})
}

// without returns fields without k.
func without(fields []kv, k string) []kv {
	var out []kv
	for _, f := range fields {
		if f.k != k {
			out = append(out, f)
		}
	}
	return out
}

// row is one line of a bad-input table: setup (optional: what the row needs that is not itself
// under test, like its own pending order), the request, its expected answer and effect.
type row struct {
	name  string
	setup func()
	send  func() (int, string)
	want  answer
	eff   effect
}

// runRows plays a table in order, each row checked against the state just before it.
func (e *env) runRows(rows []row) {
	e.t.Helper()
	for _, r := range rows {
		if r.setup != nil {
			r.setup()
		}
		before := e.snapshot()
		status, body := r.send()
		r.want.check(e.t, r.name, status, body)
		e.checkEffect(r.name, before, r.eff)
	}
	e.t.Logf("%d rows", len(rows))
}
