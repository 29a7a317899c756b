package webhook_test

// The receiver examples of docs/webhooks.md, tested: the Go one is a copy below (the test
// TestReceiverGoDocIsThisCopy keeps the two byte-identical and compiles the doc's own block), the
// Node one is taken from the doc and run with node. Deliveries are signed by webhook.Sign, by the
// dispatcher itself, and independently by the Standard Webhooks reference library. Only loopback
// addresses are used.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx": the merchant's PostgreSQL
	_ "modernc.org/sqlite"             // database/sql driver "sqlite": the merchant's SQLite

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/internal/teststore"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/webhook"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// BEGIN copy of the Go receiver in docs/webhooks.md, after its imports (TestReceiverGoDocIsThisCopy)

// VerifyWebhook checks a delivery from paynotify: one of the v1 signatures in webhook-signature
// must be the HMAC-SHA256, keyed with the endpoint's secret, of
// "{webhook-id}.{webhook-timestamp}.{body}", and webhook-timestamp must be within 5 minutes of
// now. body is the request body exactly as received.
func VerifyWebhook(secret string, header http.Header, body []byte, now time.Time) error {
	id := header.Get("webhook-id")
	ts := header.Get("webhook-timestamp")
	signatures := header.Get("webhook-signature")
	if id == "" || ts == "" || signatures == "" {
		return errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature")
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || len(key) == 0 {
		return errors.New("webhook: the secret is not whsec_ followed by base64")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("webhook: webhook-timestamp is not a number")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("webhook: webhook-timestamp is more than 5 minutes from now")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Split(signatures, " ") {
		b64, ok := strings.CutPrefix(s, "v1,")
		if !ok {
			continue // another scheme
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("webhook: no valid signature")
}

// WebhookEvent is the body of a delivery: one event, as GET /v1/events serves it.
type WebhookEvent struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Timestamp time.Time       `json:"timestamp"`
	Version   int64           `json:"version"`
	Data      json.RawMessage `json:"data"`
}

// WebhookHandler receives paynotify's deliveries. handle is your own effect: it runs in the
// transaction that records the webhook-id in webhooks_received, so that an event is handled once
// however many times it arrives. Keep it short (update a row, queue a job): paynotify waits for
// the answer at most 10 seconds.
func WebhookHandler(db *sql.DB, secret string, handle func(context.Context, *sql.Tx, WebhookEvent) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "cannot read the body", http.StatusBadRequest)
			return
		}
		if err := VerifyWebhook(secret, r.Header, body, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		id := r.Header.Get("webhook-id")
		var ev WebhookEvent
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "not an event", http.StatusBadRequest)
			return
		}
		if err := receiveOnce(r.Context(), db, id, ev, handle); err != nil {
			log.Printf("webhook %s: %v", id, err)
			http.Error(w, "try again later", http.StatusInternalServerError) // paynotify retries
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// receiveOnce records id and runs handle in one transaction; an id recorded before changes
// nothing.
func receiveOnce(ctx context.Context, db *sql.DB, id string, ev WebhookEvent, handle func(context.Context, *sql.Tx, WebhookEvent) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // does nothing after Commit
	res, err := tx.ExecContext(ctx,
		`INSERT INTO webhooks_received (webhook_id) VALUES ($1) ON CONFLICT (webhook_id) DO NOTHING`, id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // n == 0: received before, already handled
	}
	if err := handle(ctx, tx, ev); err != nil {
		return err
	}
	return tx.Commit()
}

// MirrorOrderStatus is an example of handle: it keeps the status of your copy of the order, and
// ignores an event older than the state it has (resend and recover can deliver an old event after
// a newer one).
func MirrorOrderStatus(ctx context.Context, tx *sql.Tx, ev WebhookEvent) error {
	switch ev.Type {
	case "order.paid", "order.finished", "order.closed", "order.refunded":
	default:
		return nil // refund.failed, order.anomaly: queue an alert; endpoint.disabled; webhook.test
	}
	var o struct {
		App        string `json:"app"`
		OutTradeNo string `json:"out_trade_no"`
		Status     string `json:"status"`
	}
	if err := json.Unmarshal(ev.Data, &o); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `UPDATE shop_orders SET paynotify_status = $1, paynotify_version = $2
		WHERE app = $3 AND out_trade_no = $4 AND paynotify_version < $2`, o.Status, ev.Version, o.App, o.OutTradeNo)
	return err
}

// END copy of the Go receiver in docs/webhooks.md

const webhooksDoc = "../docs/webhooks.md"

// docBlock returns the fenced code block of docs/webhooks.md that follows the line
// "<!-- receivers_test.go: name -->", without its fences.
func docBlock(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(webhooksDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	marker := "<!-- receivers_test.go: " + name + " -->\n"
	if n := strings.Count(doc, marker); n != 1 {
		t.Fatalf("%s: the marker %q appears %d times, want once", webhooksDoc, strings.TrimSpace(marker), n)
	}
	rest := doc[strings.Index(doc, marker)+len(marker):]
	fence, rest, _ := strings.Cut(rest, "\n")
	if !strings.HasPrefix(fence, "```") {
		t.Fatalf("%s: the marker %q is not followed by a code block", webhooksDoc, strings.TrimSpace(marker))
	}
	block, _, ok := strings.Cut(rest, "\n```\n")
	if !ok {
		t.Fatalf("%s: the code block after %q does not end", webhooksDoc, strings.TrimSpace(marker))
	}
	return block + "\n"
}

// TestReceiverGoDocIsThisCopy keeps the Go receiver of docs/webhooks.md and the copy at the top of
// this file byte-identical, and compiles the doc's block as it is (package and imports included)
// with go vet, in a module of its own.
func TestReceiverGoDocIsThisCopy(t *testing.T) {
	doc := docBlock(t, "go")
	_, decls, ok := strings.Cut(doc, "\n)\n") // after the import block
	if !ok || !strings.HasPrefix(doc, "package receiver\n\nimport (\n") {
		t.Fatalf("the Go receiver in %s does not start with its package and import block", webhooksDoc)
	}
	self, err := os.ReadFile("receivers_test.go")
	if err != nil {
		t.Fatal(err)
	}
	const begin, end = "// BEGIN copy of the Go receiver in docs/webhooks.md", "// END copy of the Go receiver in docs/webhooks.md"
	_, after, ok1 := strings.Cut(string(self), begin)
	cp, _, ok2 := strings.Cut(after, end)
	if !ok1 || !ok2 {
		t.Fatal("receivers_test.go: the BEGIN and END lines of the copy are missing")
	}
	_, cp, _ = strings.Cut(cp, "\n") // the rest of the BEGIN line
	if got, want := strings.Trim(cp, "\n"), strings.Trim(decls, "\n"); got != want {
		t.Errorf("the Go receiver in %s and its copy in receivers_test.go differ; make them the same.\nfirst difference at line %d:\ndoc:  %q\ncopy: %q",
			webhooksDoc, firstDiffLine(want, got)+1, lineAt(want, firstDiffLine(want, got)), lineAt(got, firstDiffLine(want, got)))
	}

	dir := t.TempDir()
	files := map[string]string{"go.mod": "module example.com/receiver\n\ngo 1.22\n", "receiver.go": doc}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to compile the doc's Go receiver: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "vet", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local", "GOPROXY=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("go vet of the Go receiver in %s: %v\n%s", webhooksDoc, err, out)
	}
}

func firstDiffLine(a, b string) int {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return i
		}
	}
	return min(len(la), len(lb))
}

func lineAt(s string, i int) string {
	if l := strings.Split(s, "\n"); i < len(l) {
		return l[i]
	}
	return "(end)"
}

// TestReceiverSignatureVector checks the worked example of docs/webhooks.md, "Signatures": with
// webhook.Sign, the reference library and the doc's Go verifier; that its body is an event as
// paynotify encodes it; and that the HTTP example above it shows the same delivery.
func TestReceiverSignatureVector(t *testing.T) {
	v := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(docBlock(t, "vector")), "\n") {
		kv := regexp.MustCompile(`\s{2,}`).Split(line, 2)
		if len(kv) != 2 {
			t.Fatalf("vector line %q: want a name, two spaces or more, a value", line)
		}
		v[kv[0]] = kv[1]
	}
	secret, id, body, sig := v["secret"], v["webhook-id"], v["body"], v["webhook-signature"]
	ts, err := strconv.ParseInt(v["webhook-timestamp"], 10, 64)
	if err != nil {
		t.Fatalf("webhook-timestamp: %v", err)
	}
	if want := id + "." + v["webhook-timestamp"] + "." + body; v["signed content"] != want {
		t.Errorf("signed content %q, want %q", v["signed content"], want)
	}
	key, err := paynotify.WebhookKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31}) {
		t.Errorf("the key of %s is %x, the doc says 00 01 … 1f", secret, key)
	}
	if got := webhook.Sign(key, id, ts, []byte(body)); got != sig {
		t.Errorf("webhook.Sign: %s, the doc says %s", got, sig)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := wh.Sign(id, time.Unix(ts, 0), []byte(body)); err != nil || got != sig {
		t.Errorf("reference library: %s, %v; the doc says %s", got, err, sig)
	}
	h := http.Header{"Webhook-Id": {id}, "Webhook-Timestamp": {v["webhook-timestamp"]}, "Webhook-Signature": {sig}}
	if err := VerifyWebhook(secret, h, []byte(body), time.Unix(ts, 0)); err != nil {
		t.Errorf("the doc's Go verifier: %v", err)
	}
	// The body is an event exactly as paynotify encodes it.
	var ev paynotify.Event
	if err := json.Unmarshal([]byte(body), &ev); err != nil {
		t.Fatal(err)
	}
	if got := string(paynotify.EventJSON(&ev)); got != body || ev.ID != id || ev.Type != paynotify.EventWebhookTest {
		t.Errorf("the body is not an event as paynotify encodes it:\n doc: %s\nours: %s", body, got)
	}
	// The HTTP example is this delivery.
	b, err := os.ReadFile(webhooksDoc)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Content-Length: " + strconv.Itoa(len(body)) + "\n", "Webhook-Id: " + id + "\n",
		"Webhook-Signature: " + sig + "\n", "Webhook-Timestamp: " + v["webhook-timestamp"] + "\n", "\n\n" + body + "\n```"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the HTTP example of %s does not have %q", webhooksDoc, want)
		}
	}
}

// testEvent returns an order.paid event and its JSON, as a delivery's body.
func testEvent(no string) (*paynotify.Event, []byte) {
	ev := &paynotify.Event{ID: paynotify.NewID("evt"), Type: paynotify.EventOrderPaid, Timestamp: time.Now().UTC(), Version: 2,
		Data: json.RawMessage(fmt.Sprintf(`{"app":"shop","out_trade_no":%q,"status":"paid","amount":100,"subject":"<tea & cake>"}`, no))}
	return ev, paynotify.EventJSON(ev)
}

func signedHeader(id string, ts int64, sig string) http.Header {
	return http.Header{"Webhook-Id": {id}, "Webhook-Timestamp": {strconv.FormatInt(ts, 10)}, "Webhook-Signature": {sig}}
}

// TestReceiverGoVerify runs the doc's Go verifier on deliveries signed by webhook.Sign, by
// webhook.SignatureHeader after a rotation, and by the reference library, and checks that the
// reference library agrees with each verdict.
func TestReceiverGoVerify(t *testing.T) {
	secret, other := paynotify.NewWebhookSecret(), paynotify.NewWebhookSecret()
	key, err := paynotify.WebhookKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := paynotify.WebhookKey(other)
	ref, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	ev, body := testEvent("verify_1")
	now := time.Now()
	ts := now.Unix()
	refSig, err := ref.Sign(ev.ID, now, body)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(body, []byte(`"amount":100`), []byte(`"amount":1`), 1)
	old, future := now.Add(-5*time.Minute-2*time.Second), now.Add(5*time.Minute+2*time.Second)
	almostOld := now.Add(-5*time.Minute + 5*time.Second)
	// After a rotation: the new secret's signature, then the old one's.
	rotated := &paynotify.WebhookEndpoint{Secret: other, OldSecret: secret, OldSecretUntil: ptrTime(now.Add(paynotify.SecretOverlap))}
	both, err := webhook.SignatureHeader(rotated, now, ev.ID, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Split(both, " ")); n != 2 {
		t.Fatalf("signature header after a rotation %q: %d signatures, want 2", both, n)
	}

	cases := []struct {
		name   string
		secret string
		header http.Header
		body   []byte
		ok     bool
	}{
		{"signed by webhook.Sign", secret, signedHeader(ev.ID, ts, webhook.Sign(key, ev.ID, ts, body)), body, true},
		{"signed by the reference library", secret, signedHeader(ev.ID, ts, refSig), body, true},
		{"tampered body", secret, signedHeader(ev.ID, ts, refSig), tampered, false},
		{"body with a trailing newline", secret, signedHeader(ev.ID, ts, refSig), append(bytes.Clone(body), '\n'), false},
		{"other webhook-id", secret, signedHeader(paynotify.NewID("evt"), ts, refSig), body, false},
		{"wrong secret", other, signedHeader(ev.ID, ts, refSig), body, false},
		{"the secret's text as the key", secret, signedHeader(ev.ID, ts, webhook.Sign([]byte(secret), ev.ID, ts, body)), body, false},
		{"timestamp over 5 minutes old", secret, signedHeader(ev.ID, old.Unix(), webhook.Sign(key, ev.ID, old.Unix(), body)), body, false},
		{"timestamp over 5 minutes ahead", secret, signedHeader(ev.ID, future.Unix(), webhook.Sign(key, ev.ID, future.Unix(), body)), body, false},
		{"timestamp under 5 minutes old", secret, signedHeader(ev.ID, almostOld.Unix(), webhook.Sign(key, ev.ID, almostOld.Unix(), body)), body, true},
		{"two signatures, the second matches", secret, signedHeader(ev.ID, ts, webhook.Sign(otherKey, ev.ID, ts, body)+" "+refSig), body, true},
		{"two signatures, none matches", secret, signedHeader(ev.ID, ts, webhook.Sign(otherKey, ev.ID, ts, body)+" "+webhook.Sign(otherKey, ev.ID, ts, tampered)), body, false},
		{"rotation: the old secret", secret, signedHeader(ev.ID, ts, both), body, true},
		{"rotation: the new secret", other, signedHeader(ev.ID, ts, both), body, true},
		{"another scheme", secret, signedHeader(ev.ID, ts, "v1a,"+strings.TrimPrefix(refSig, "v1,")), body, false},
		{"no signature", secret, http.Header{"Webhook-Id": {ev.ID}, "Webhook-Timestamp": {strconv.FormatInt(ts, 10)}}, body, false},
		{"no timestamp", secret, http.Header{"Webhook-Id": {ev.ID}, "Webhook-Signature": {refSig}}, body, false},
		{"timestamp not a number", secret, http.Header{"Webhook-Id": {ev.ID}, "Webhook-Timestamp": {"soon"}, "Webhook-Signature": {refSig}}, body, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := VerifyWebhook(c.secret, c.header, c.body, time.Now())
			if (err == nil) != c.ok {
				t.Errorf("VerifyWebhook: %v, want ok=%v", err, c.ok)
			}
			wh, werr := standardwebhooks.NewWebhook(c.secret)
			if werr != nil {
				t.Fatal(werr)
			}
			if rerr := wh.Verify(c.body, c.header); (rerr == nil) != c.ok {
				t.Errorf("the reference library disagrees: %v, want ok=%v", rerr, c.ok)
			}
		})
	}
}

func ptrTime(t time.Time) *time.Time { return &t }

// merchantDB opens the merchant's own database for the doc's Go receiver, next to the paynotify
// store st: SQLite for the SQLite store, a PostgreSQL schema of its own for the PostgreSQL one.
// It creates webhooks_received from the doc's SQL block (on SQLite with the doc's substitutions),
// shop_orders, and effects, where the tests' handle records each effect it runs.
func merchantDB(t *testing.T, st paynotify.Store) *sql.DB {
	t.Helper()
	ddl := docBlock(t, "sql")
	var db *sql.DB
	var err error
	if _, ok := st.(*postgres.DB); ok {
		db, err = sql.Open("pgx", pgtest.NewSchema(t))
	} else {
		db, err = sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "shop.db")+"?_pragma=busy_timeout(10000)")
		ddl = strings.NewReplacer("timestamptz", "text", "now()", "CURRENT_TIMESTAMP").Replace(ddl)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, ok := st.(*postgres.DB); !ok {
		db.SetMaxOpenConns(1) // one writer at a time, as a SQLite application runs it
	}
	for _, q := range []string{ddl,
		`CREATE TABLE shop_orders (app text NOT NULL, out_trade_no text NOT NULL, paynotify_status text NOT NULL,
			paynotify_version bigint NOT NULL, PRIMARY KEY (app, out_trade_no))`,
		`CREATE TABLE effects (event_id text NOT NULL)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return db
}

func count(t *testing.T, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// TestReceiverGoHandler runs the doc's Go handler, with MirrorOrderStatus as its effect, as the
// endpoint of a real dispatcher, on each store with the merchant's database of the same kind:
// every event handled once, a resent duplicate answered 2xx and not handled again, an old event
// whose id was forgotten handled without undoing a newer state, and bad signatures refused.
func TestReceiverGoHandler(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		db := merchantDB(t, st)
		handle := func(ctx context.Context, tx *sql.Tx, ev WebhookEvent) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO effects (event_id) VALUES ($1)`, ev.ID); err != nil {
				return err
			}
			return MirrorOrderStatus(ctx, tx, ev)
		}
		srv := httptest.NewUnstartedServer(nil)
		u := "http://" + srv.Listener.Addr().String() + "/paynotify"
		ep, err := e.svc.CreateWebhookEndpoint(e.ctx, &paynotify.WebhookEndpointRequest{URL: &u})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("POST /paynotify", WebhookHandler(db, ep.Secret, handle))
		srv.Config.Handler = mux
		srv.Start()
		t.Cleanup(srv.Close)

		const orders = 6
		for i := range orders {
			if _, err := db.Exec(`INSERT INTO shop_orders (app, out_trade_no, paynotify_status, paynotify_version) VALUES ($1, $2, 'pending', 1)`,
				"shop", fmt.Sprintf("go_%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		e.start(webhook.Config{}, nil)
		var ids [][]string // per order: order.paid (version 2), order.finished (version 3)
		for i := range orders {
			ids = append(ids, e.order("shop", fmt.Sprintf("go_%d", i), true))
		}
		waitFor(t, 30*time.Second, "every event handled", func() bool {
			return count(t, db, `SELECT count(*) FROM effects`) >= 2*orders
		})
		finished := func() int {
			return count(t, db, `SELECT count(*) FROM shop_orders WHERE paynotify_status = 'finished' AND paynotify_version = 3`)
		}
		if n := finished(); n != orders {
			t.Errorf("%d orders finished at version 3, want %d", n, orders)
		}
		for _, o := range ids {
			for _, id := range o {
				if n := count(t, db, `SELECT count(*) FROM webhooks_received WHERE webhook_id = $1`, id); n != 1 {
					t.Errorf("webhooks_received has %s %d times", id, n)
				}
			}
		}

		// A duplicate: order 0's order.paid again, same webhook-id: answered 2xx, not handled.
		delivered := func(id string) int {
			as, err := st.ListWebhookAttempts(e.ctx, paynotify.WebhookAttemptFilter{EndpointID: ep.ID, EventID: id})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, a := range as {
				if a.Status/100 == 2 {
					n++
				}
			}
			return n
		}
		if _, err := e.svc.ResendEvent(e.ctx, ids[0][0], ep.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "the resent event delivered", func() bool { return delivered(ids[0][0]) == 2 })
		if n := count(t, db, `SELECT count(*) FROM effects WHERE event_id = $1`, ids[0][0]); n != 1 {
			t.Errorf("the resent %s was handled %d times, want once", ids[0][0], n)
		}
		// Order 1's order.paid, its id forgotten: handled again, but the order stays finished.
		if _, err := db.Exec(`DELETE FROM webhooks_received WHERE webhook_id = $1`, ids[1][0]); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.ResendEvent(e.ctx, ids[1][0], ep.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "the forgotten event handled again", func() bool {
			return count(t, db, `SELECT count(*) FROM effects WHERE event_id = $1`, ids[1][0]) == 2
		})
		if n := finished(); n != orders {
			t.Errorf("after an old order.paid: %d orders finished at version 3, want %d", n, orders)
		}
		if n := count(t, db, `SELECT count(*) FROM effects`); n != 2*orders+1 {
			t.Errorf("%d effects, want %d", n, 2*orders+1)
		}

		// Refused: a tampered body, another secret.
		ev, body := testEvent("go_x")
		key, _ := paynotify.WebhookKey(ep.Secret)
		ts := time.Now().Unix()
		post := func(h http.Header, body []byte) int {
			req, _ := http.NewRequest("POST", u, bytes.NewReader(body))
			for k, v := range h {
				req.Header[k] = v
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		good := signedHeader(ev.ID, ts, webhook.Sign(key, ev.ID, ts, body))
		if code := post(good, bytes.Replace(body, []byte("paid"), []byte("PAID"), 1)); code != http.StatusUnauthorized {
			t.Errorf("tampered body: HTTP %d, want 401", code)
		}
		otherKey, _ := paynotify.WebhookKey(paynotify.NewWebhookSecret())
		if code := post(signedHeader(ev.ID, ts, webhook.Sign(otherKey, ev.ID, ts, body)), body); code != http.StatusUnauthorized {
			t.Errorf("another secret: HTTP %d, want 401", code)
		}
		if code := post(good, body); code != http.StatusNoContent {
			t.Errorf("good delivery: HTTP %d, want 204", code)
		}
		if n := count(t, db, `SELECT count(*) FROM webhooks_received WHERE webhook_id = $1`, ev.ID); n != 1 {
			t.Errorf("the good delivery was recorded %d times", n)
		}
	})
}

// nodeReceiver is the Node example of docs/webhooks.md, running.
type nodeReceiver struct {
	url    string
	mu     sync.Mutex
	lines  []string
	closed bool
	stderr bytes.Buffer
}

func (n *nodeReceiver) snapshot() ([]string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.lines...), n.closed
}

// processed counts the "processed <id> ..." lines of id.
func (n *nodeReceiver) processed(id string) int {
	lines, _ := n.snapshot()
	c := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "processed "+id+" ") {
			c++
		}
	}
	return c
}

// waitProcessed waits until id was processed at least once.
func (n *nodeReceiver) waitProcessed(t *testing.T, id string) {
	t.Helper()
	waitFor(t, 20*time.Second, "node: processed "+id, func() bool {
		if _, closed := n.snapshot(); closed {
			t.Fatalf("the node receiver exited: %s", n.stderrText())
		}
		return n.processed(id) > 0
	})
}

func (n *nodeReceiver) stderrText() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stderr.String()
}

type lockedWriter struct{ n *nodeReceiver }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.n.mu.Lock()
	defer w.n.mu.Unlock()
	return w.n.stderr.Write(p)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNode writes the doc's Node example to a temporary directory and runs it with node on
// 127.0.0.1:port with the secret; it is killed when the test ends. Without node the test fails:
// CI must have it.
func startNode(t *testing.T, secret string, port int) *nodeReceiver {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed (%v): the Node receiver of %s cannot be tested; install Node.js 18 or later (apt-get install nodejs)", err, webhooksDoc)
	}
	file := filepath.Join(t.TempDir(), "receiver.js")
	if err := os.WriteFile(file, []byte(docBlock(t, "node")), 0o644); err != nil {
		t.Fatal(err)
	}
	n := &nodeReceiver{url: fmt.Sprintf("http://127.0.0.1:%d/paynotify", port)}
	cmd := exec.Command(node, file)
	cmd.Env = append(os.Environ(), "PAYNOTIFY_WEBHOOK_SECRET="+secret, "HOST=127.0.0.1", "PORT="+strconv.Itoa(port))
	cmd.Stderr = lockedWriter{n}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node: %v", err)
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			n.mu.Lock()
			n.lines = append(n.lines, sc.Text())
			n.mu.Unlock()
		}
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill() // the process this test started
		<-read
		cmd.Wait()
	})
	want := fmt.Sprintf("listening on 127.0.0.1:%d", port)
	waitFor(t, 15*time.Second, "node: "+want, func() bool {
		lines, closed := n.snapshot()
		for _, l := range lines {
			if l == want {
				return true
			}
		}
		if closed {
			t.Fatalf("the node receiver exited before listening: %s", n.stderrText())
		}
		return false
	})
	return n
}

// postNode sends one delivery to the node receiver and returns the status.
func postNode(t *testing.T, n *nodeReceiver, h http.Header, body []byte) int {
	t.Helper()
	req, err := http.NewRequest("POST", n.url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST to the node receiver: %v (stderr: %s)", err, n.stderrText())
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestReceiverNodeRefusesABadSecret (from a reviewer helper's audit): Node decodes any text as
// base64, so the example once took "whsec_" (an empty variable in a template) as an empty key
// with which anyone signs an order.paid; it now stops at start, with the reason, on a secret that
// is not whsec_ and base64 of at least one byte.
func TestReceiverNodeRefusesABadSecret(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed (%v): the Node receiver of %s cannot be tested; install Node.js 18 or later (apt-get install nodejs)", err, webhooksDoc)
	}
	file := filepath.Join(t.TempDir(), "receiver.js")
	if err := os.WriteFile(file, []byte(docBlock(t, "node")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"", "whsec_", "whsec_!!!!", "whsec_abc"} {
		// A receiver that takes the secret starts listening and never exits: the deadline ends it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cmd := exec.CommandContext(ctx, node, file)
		cmd.WaitDelay = time.Second
		cmd.Env = append(os.Environ(), "PAYNOTIFY_WEBHOOK_SECRET="+secret, "HOST=127.0.0.1", "PORT="+strconv.Itoa(freePort(t)))
		out, err := cmd.CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		switch {
		case timedOut:
			t.Errorf("secret %q: the receiver started and ran until killed\n%s", secret, out)
		case err == nil || !strings.Contains(string(out), "PAYNOTIFY_WEBHOOK_SECRET is not whsec_ followed by base64") || strings.Contains(string(out), "listening on"):
			t.Errorf("secret %q: %v\n%s", secret, err, out)
		}
	}
}

// TestReceiverNode posts deliveries signed with the reference library to the doc's Node example:
// a good one is processed and answered 2xx; a tampered body, another secret and an old timestamp
// are answered 4xx and not processed; the same webhook-id again (a redelivery: new timestamp, new
// signature) is answered 2xx and not processed again; two signatures where only the second
// matches are accepted.
func TestReceiverNode(t *testing.T) {
	secret := paynotify.NewWebhookSecret()
	n := startNode(t, secret, freePort(t))
	ref, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := standardwebhooks.NewWebhook(paynotify.NewWebhookSecret())
	sign := func(wh *standardwebhooks.Webhook, id string, at time.Time, body []byte) http.Header {
		sig, err := wh.Sign(id, at, body)
		if err != nil {
			t.Fatal(err)
		}
		return signedHeader(id, at.Unix(), sig)
	}

	ev, body := testEvent("node_1")
	if code := postNode(t, n, sign(ref, ev.ID, time.Now(), body), body); code/100 != 2 {
		t.Fatalf("good delivery: HTTP %d, want 2xx (stderr: %s)", code, n.stderrText())
	}
	n.waitProcessed(t, ev.ID)

	bad, badBody := testEvent("node_2")
	tampered := bytes.Replace(badBody, []byte(`"amount":100`), []byte(`"amount":1`), 1)
	old := time.Now().Add(-6 * time.Minute)
	for _, c := range []struct {
		name string
		h    http.Header
		body []byte
	}{
		{"tampered body", sign(ref, bad.ID, time.Now(), badBody), tampered},
		{"another secret", sign(other, bad.ID, time.Now(), badBody), badBody},
		{"timestamp 6 minutes old", sign(ref, bad.ID, old, badBody), badBody},
		{"no signature", http.Header{"Webhook-Id": {bad.ID}, "Webhook-Timestamp": {strconv.FormatInt(time.Now().Unix(), 10)}}, badBody},
	} {
		if code := postNode(t, n, c.h, c.body); code/100 != 4 {
			t.Errorf("%s: HTTP %d, want 4xx", c.name, code)
		}
	}

	// The same webhook-id again, as a retry sends it: a new timestamp and signature.
	time.Sleep(1100 * time.Millisecond) // another second, another timestamp
	if code := postNode(t, n, sign(ref, ev.ID, time.Now(), body), body); code/100 != 2 {
		t.Errorf("duplicate: HTTP %d, want 2xx", code)
	}
	// Two signatures, only the second made with the endpoint's secret (a rotation seen from the
	// receiver that still has the old secret).
	two, twoBody := testEvent("node_3")
	now := time.Now()
	first, _ := other.Sign(two.ID, now, twoBody)
	second, _ := ref.Sign(two.ID, now, twoBody)
	if code := postNode(t, n, signedHeader(two.ID, now.Unix(), first+" "+second), twoBody); code/100 != 2 {
		t.Errorf("two signatures: HTTP %d, want 2xx", code)
	}
	n.waitProcessed(t, two.ID) // stdout is in order: the duplicate would have come before it
	if c := n.processed(ev.ID); c != 1 {
		t.Errorf("%s processed %d times, want once", ev.ID, c)
	}
	if c := n.processed(bad.ID); c != 0 {
		t.Errorf("a refused delivery was processed %d times", c)
	}
}

// TestReceiverNodeDispatcher makes the doc's Node example the endpoint of a real dispatcher on
// each store: every event is processed once, in order per order, also after a rotation (the
// receiver keeps the old secret: the second signature verifies) and when an event is resent.
func TestReceiverNodeDispatcher(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, st paynotify.Store) {
		e := newEnv(t, st)
		port := freePort(t)
		u := fmt.Sprintf("http://127.0.0.1:%d/paynotify", port)
		ep, err := e.svc.CreateWebhookEndpoint(e.ctx, &paynotify.WebhookEndpointRequest{URL: &u})
		if err != nil {
			t.Fatal(err)
		}
		n := startNode(t, ep.Secret, port)
		e.start(webhook.Config{}, nil)

		var ids []string
		for i := range 5 {
			ids = append(ids, e.order("shop", fmt.Sprintf("node_%d", i), true)...)
		}
		if _, err := e.svc.RotateWebhookSecret(e.ctx, ep.ID); err != nil {
			t.Fatal(err)
		}
		for i := 5; i < 10; i++ {
			ids = append(ids, e.order("shop", fmt.Sprintf("node_%d", i), true)...)
		}
		for _, id := range ids {
			n.waitProcessed(t, id)
		}
		if _, err := e.svc.ResendEvent(e.ctx, ids[0], ep.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "the resent event delivered", func() bool {
			as, err := st.ListWebhookAttempts(e.ctx, paynotify.WebhookAttemptFilter{EndpointID: ep.ID, EventID: ids[0]})
			if err != nil {
				t.Fatal(err)
			}
			ok := 0
			for _, a := range as {
				if a.Status/100 == 2 {
					ok++
				}
			}
			return ok == 2
		})
		last := e.order("shop", "node_last", false)[0]
		n.waitProcessed(t, last) // after the resend's answer: its line, if any, came before
		lines, _ := n.snapshot()
		seen := map[string]int{}
		pos := map[string]int{}
		for i, l := range lines {
			f := strings.Fields(l)
			if len(f) >= 2 && f[0] == "processed" {
				seen[f[1]]++
				pos[f[1]] = i
			}
		}
		for _, id := range append(ids, last) {
			if seen[id] != 1 {
				t.Errorf("%s processed %d times, want once", id, seen[id])
			}
		}
		for i := 0; i+1 < len(ids); i += 2 { // order.paid, then order.finished, of each order
			if pos[ids[i]] > pos[ids[i+1]] {
				t.Errorf("order.finished %s processed before order.paid %s", ids[i+1], ids[i])
			}
		}
		as, err := st.ListWebhookAttempts(e.ctx, paynotify.WebhookAttemptFilter{EndpointID: ep.ID, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.Status/100 != 2 {
				t.Errorf("attempt of %s: HTTP %d, %s (the node receiver refused a delivery)", a.EventID, a.Status, a.Error)
			}
		}
	})
}
