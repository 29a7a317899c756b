package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/internal/testsign"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/sqlite"
)

// notifyContentType is what Alipay sends its notifications with.
const notifyContentType = "application/x-www-form-urlencoded; charset=utf-8"

// TestBinary_KillUnderLoad: acknowledgement-after-commit under load and crashes. The real binary
// gets valid first-delivery notifications from 32 keep-alive connections, reconciles every order
// (all checks due) against a gateway of the test's own, delivers the events to a webhook receiver
// on loopback, and is killed with SIGKILL while requests, checks and deliveries are in flight,
// three times. The gateway says paid only for a set of orders that are never notified (their
// checks come first), and waiting for every notified one: a notified order can be paid only by
// its notification, so that a lost commit of an acknowledged one cannot be hidden by a query. After every kill the database (read
// directly, the process dead) must hold every notification that was answered "success" as a paid
// order, with exactly one order.paid event, and no paid order whose notification was never sent.
// Then the provider's retries (every notification again) must all be answered "success" and leave
// every order paid once: version 2, one order.paid event, no other event. The never-notified set
// ends paid once by the reconciliation. At the end the receiver has every order.paid event at least
// once, by webhook-id, and nothing else.
func TestBinary_KillUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const (
		n       = 3500 // orders, one notification each
		conns   = 32   // concurrent keep-alive connections
		perKill = 1000 // notifications answered "success" in a cycle before its kill
		byQuery = 60   // more orders, never notified, paid at the gateway: found by the reconciliation
		kills   = 3
	)
	bin := buildBinary(t)
	key := lkAlipayKey(t)
	start := time.Now()
	bodies := make([][]byte, n)
	lkParallel(n, runtime.GOMAXPROCS(0), func(i int) { bodies[i] = lkSignAlipay(t, key, lkNotification(i)) })
	t.Logf("signed %d notifications in %v", n, time.Since(start).Round(time.Millisecond))

	for _, kind := range []string{"SQLite", "PostgreSQL"} {
		t.Run(kind, func(t *testing.T) {
			// In parallel: most of each run is the wait for the leases of the killed process's
			// deliveries to end.
			t.Parallel()
			began := time.Now()
			dir := t.TempDir()
			dsn := "sqlite:" + filepath.Join(dir, "data", "paynotify.db")
			if kind == "PostgreSQL" {
				dsn = pgtest.NewDatabase(t)
			}
			addr := freeAddr(t)
			config := writeServerConfig(t, dir, addr, dsn)
			lkAllowLoopbackWebhooks(t, config)
			target := "http://" + addr + "/notify/alipay/shop"
			rcv := newLKReceiver(t)
			attempted := make([]atomic.Bool, n) // posted at least once before the retries
			gw := newLKGateway(t, key, func(i int) bool { return i >= n })
			lkReconcileAt(t, config, gw.srv.URL)

			// The pending orders, straight into the database. Every check is due: the first sweeps
			// claim them during the load and the kills, those of the never-notified orders first.
			now := time.Now()
			lkSeed(t, dsn, n+byQuery, func(i int) *time.Time {
				if i >= n {
					return ptrTime(now.Add(-time.Minute))
				}
				return &now
			})
			t.Logf("seeded %d orders in %v", n, time.Since(began).Round(time.Millisecond))

			var (
				acked     = make([]atomic.Bool, n) // answered exactly "success", ever
				next      atomic.Int64             // the next notification never sent
				errsAfter int                      // requests that failed after a kill (expected)
			)
			for cycle := 1; cycle <= kills; cycle++ {
				cycleStart := time.Now()
				q0, _ := gw.counts()
				cmd := startBinary(t, bin, config, addr)
				if cycle == 1 {
					// The endpoint receives what is committed after its creation: everything.
					code, ep := binAPI(t, "POST", "http://"+addr+"/v1/webhook-endpoints", map[string]any{"url": rcv.srv.URL + "/hooks"})
					if code != http.StatusCreated {
						t.Fatalf("create the webhook endpoint: %d %v", code, ep)
					}
					// The load starts once the reconciliation has begun its checks (River elects
					// a leader and runs the first sweep), so that the first kill hits both.
					for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
						if q, _ := gw.counts(); q > 0 {
							break
						}
						if time.Now().After(deadline) {
							t.Fatalf("the reconciliation never queried the gateway")
						}
					}
				}
				tr := &http.Transport{MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute}
				hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
				var (
					killing  atomic.Bool  // set just before the SIGKILL: no new request after it
					okCycle  atomic.Int64 // answered "success" in this cycle
					inFlight atomic.Int64
					errsKill atomic.Int64
					mu       sync.Mutex
					problems []string // unexpected: an answer that is not "success", an error before the kill
					wg       sync.WaitGroup
				)
				for w := 0; w < conns; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for !killing.Load() {
							i := int(next.Add(1)) - 1
							if i >= n {
								return
							}
							attempted[i].Store(true)
							inFlight.Add(1)
							code, ans, err := lkPost(hc, target, bodies[i])
							inFlight.Add(-1)
							switch {
							case err != nil && killing.Load():
								errsKill.Add(1)
							case err != nil:
								mu.Lock()
								problems = append(problems, fmt.Sprintf("%s: error before the kill: %v", lkTradeNo(i), err))
								mu.Unlock()
							case code == http.StatusOK && ans == "success":
								acked[i].Store(true)
								okCycle.Add(1)
							default:
								mu.Lock()
								problems = append(problems, fmt.Sprintf("%s: answered %d %q", lkTradeNo(i), code, ans))
								mu.Unlock()
							}
						}
					}()
				}
				done := make(chan struct{})
				go func() { wg.Wait(); close(done) }()
				deadline := time.After(30 * time.Second)
			wait:
				for okCycle.Load() < perKill {
					select {
					case <-done:
						break wait
					case <-deadline:
						break wait
					case <-time.After(time.Millisecond):
					}
				}
				killing.Store(true)
				flying := inFlight.Load()
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				<-done
				cmd.Wait()
				tr.CloseIdleConnections()
				errsAfter += int(errsKill.Load())
				for _, p := range problems {
					t.Errorf("cycle %d: %s", cycle, p)
				}
				if okCycle.Load() < perKill {
					t.Fatalf("cycle %d: only %d notifications answered \"success\" before the kill", cycle, okCycle.Load())
				}
				q1, _ := gw.counts()
				t.Logf("cycle %d: %d answered \"success\", %d queries answered, killed with %d requests in flight, %d failed after the kill (%v)",
					cycle, okCycle.Load(), q1-q0, flying, errsKill.Load(), time.Since(cycleStart).Round(time.Millisecond))

				// The process is dead: what it acknowledged must be in the database.
				lkCheckOrders(t, dsn, n, func(i int) string {
					switch {
					case acked[i].Load():
						return "paid"
					case attempted[i].Load():
						return "either"
					default:
						return "pending"
					}
				}, fmt.Sprintf("after kill %d", cycle))
				if t.Failed() {
					t.FailNow()
				}
			}
			if errsAfter == 0 {
				t.Errorf("no request failed after any of the kills: the process was not killed under load")
			}
			queries, paidByQuery := gw.counts()
			t.Logf("reconciliation: %d queries answered, %d of them paid (of the %d never notified)", queries, paidByQuery, byQuery)
			if queries == 0 {
				t.Errorf("the gateway was never queried: the reconciliation did not run during the load")
			}

			// The provider retries: every notification again, to the restarted binary.
			retryStart := time.Now()
			startBinary(t, bin, config, addr)
			tr := &http.Transport{MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute}
			hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			answers := make([]string, n)
			var retryIdx atomic.Int64
			var wg sync.WaitGroup
			for w := 0; w < conns; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(retryIdx.Add(1)) - 1
						if i >= n {
							return
						}
						code, ans, err := lkPost(hc, target, bodies[i])
						switch {
						case err != nil:
							answers[i] = "error: " + err.Error()
						case code != http.StatusOK:
							answers[i] = fmt.Sprintf("%d %q", code, ans)
						default:
							answers[i] = ans
						}
					}
				}()
			}
			wg.Wait()
			tr.CloseIdleConnections()
			bad := 0
			for i, a := range answers {
				if a != "success" {
					if bad++; bad <= 10 {
						t.Errorf("retry of %s answered %q, want \"success\"", lkTradeNo(i), a)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d retries not answered \"success\"", bad, n)
			}
			t.Logf("retried all %d notifications in %v", n, time.Since(retryStart).Round(time.Millisecond))
			lkCheckOrders(t, dsn, n, func(int) string { return "paid" }, "after the retries")

			// The never-notified orders are paid by the reconciliation, once each.
			for i, deadline := n, time.Now().Add(120*time.Second); i < n+byQuery; {
				code, o := binAPI(t, "GET", "http://"+addr+"/v1/orders/shop/"+lkTradeNo(i), nil)
				switch {
				case code == http.StatusOK && o["status"] == "paid":
					if o["version"] != float64(2) {
						t.Errorf("%s paid by a query at version %v, want 2", lkTradeNo(i), o["version"])
					}
					i++
				case time.Now().After(deadline):
					t.Fatalf("%s (never notified, paid at the gateway) is still %d %v after 120 s", lkTradeNo(i), code, o["status"])
				default:
					time.Sleep(100 * time.Millisecond)
				}
			}

			// Every order.paid reaches the receiver, the kills notwithstanding.
			s := lkOpen(t, dsn, false)
			want := map[string]bool{}
			paidEvents := map[string]int{}
			for _, e := range lkEvents(t, s) {
				want[e.ID] = true
				paidEvents[e.OutTradeNo]++
			}
			s.Close()
			for i := n; i < n+byQuery; i++ {
				if paidEvents[lkTradeNo(i)] != 1 {
					t.Errorf("%s (paid by a query): %d order.paid events, want 1", lkTradeNo(i), paidEvents[lkTradeNo(i)])
				}
			}
			// Deliveries claimed by a killed process come due again when their lease (1 min) ends.
			waitStart := time.Now()
			deadline := waitStart.Add(150 * time.Second)
			for {
				got, dups := rcv.snapshot()
				missing := 0
				for id := range want {
					if got[id] == 0 {
						missing++
					}
				}
				for id := range got {
					if !want[id] {
						t.Fatalf("the receiver got %s, which is no event of the log", id)
					}
				}
				if missing == 0 {
					t.Logf("webhooks: all %d order.paid events received, the last %v after the retries (%d received more than once, with the same webhook-id)",
						len(want), time.Since(waitStart).Round(time.Millisecond), dups)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("webhooks: %d of %d events never received", missing, len(want))
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("%s: %v in all", kind, time.Since(began).Round(time.Millisecond))
		})
	}
}

// TestBinary_ConcurrentIdentical: 200 copies of the same paid notification at once pay the order
// once (one accepted, 199 duplicates, all answered "success", one order.paid event, version 2),
// and 200 copies of a notification whose amount disagrees with another order, at the same time,
// record one anomaly (one row, one order.anomaly event), all answered "fail", the order untouched.
func TestBinary_ConcurrentIdentical(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const copies = 200
	bin := buildBinary(t)
	for _, kind := range []string{"SQLite", "PostgreSQL"} {
		t.Run(kind, func(t *testing.T) {
			began := time.Now()
			ctx := context.Background()
			dir := t.TempDir()
			dsn := "sqlite:" + filepath.Join(dir, "data", "paynotify.db")
			if kind == "PostgreSQL" {
				dsn = pgtest.NewDatabase(t)
			}
			addr := freeAddr(t)
			config := writeServerConfig(t, dir, addr, dsn)
			cmd := startBinary(t, bin, config, addr)
			base := "http://" + addr

			for _, otn := range []string{"C0001", "C0002"} {
				code, o := binAPI(t, "POST", base+"/v1/orders", map[string]any{"app": "shop", "out_trade_no": otn, "amount": 8888, "subject": "same", "channel": "alipay.app"})
				if code != http.StatusCreated {
					t.Fatalf("create %s: %d %v", otn, code, o)
				}
			}
			paid := testsign.AlipayNotify(t, alipayTestKey, testsign.AlipayPaid(binAppID, binSeller, "C0001", "88.88"))
			wrong := testsign.AlipayNotify(t, alipayTestKey, testsign.AlipayPaid(binAppID, binSeller, "C0002", "0.01"))

			tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConns: 2 * copies, MaxIdleConnsPerHost: 2 * copies, IdleConnTimeout: time.Minute}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 60 * time.Second}
			target := base + "/notify/alipay/shop"
			paidAns := make([]string, copies)
			wrongAns := make([]string, copies)
			release := make(chan struct{})
			var wg sync.WaitGroup
			for i := 0; i < copies; i++ {
				for _, c := range []struct {
					body []byte
					out  []string
				}{{paid, paidAns}, {wrong, wrongAns}} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-release
						code, ans, err := lkPost(hc, target, c.body)
						switch {
						case err != nil:
							c.out[i] = "error: " + err.Error()
						case code != http.StatusOK:
							c.out[i] = fmt.Sprintf("%d %q", code, ans)
						default:
							c.out[i] = ans
						}
					}()
				}
			}
			sent := time.Now()
			close(release)
			wg.Wait()
			t.Logf("%d notifications answered in %v", 2*copies, time.Since(sent).Round(time.Millisecond))
			lkSame(t, "the paid notification", paidAns, "success")
			lkSame(t, "the amount-mismatch notification", wrongAns, "fail")

			code, o := binAPI(t, "GET", base+"/v1/orders/shop/C0001", nil)
			if code != http.StatusOK || o["status"] != "paid" || o["version"] != float64(2) {
				t.Errorf("C0001: %d %v, want paid at version 2", code, o)
			}
			code, o = binAPI(t, "GET", base+"/v1/orders/shop/C0002", nil)
			if code != http.StatusOK || o["status"] != "pending" || o["version"] != float64(1) {
				t.Errorf("C0002: %d %v, want pending at version 1", code, o)
			}

			// Stop the binary cleanly and read what it committed.
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
			s := lkOpen(t, dsn, false)
			defer s.Close()
			evs := lkEvents(t, s)
			var got []string
			for _, e := range evs {
				got = append(got, fmt.Sprintf("%s %s v%d", e.Type, e.OutTradeNo, e.Version))
			}
			sort.Strings(got)
			if want := []string{"order.anomaly C0002 v1", "order.paid C0001 v2"}; strings.Join(got, ", ") != strings.Join(want, ", ") {
				t.Errorf("events %q, want %q", got, want)
			}
			if rows := lkAnomalyRows(t, s, "C0002"); len(rows) != 1 || rows[0] != paynotify.ReasonAmountMismatch {
				t.Errorf("anomaly rows of C0002: %q, want one %s", rows, paynotify.ReasonAmountMismatch)
			}
			if rows := lkAnomalyRows(t, s, "C0001"); len(rows) != 0 {
				t.Errorf("anomaly rows of C0001: %q, want none", rows)
			}
			// Every copy is kept as evidence, with its verdict: one accepted, the others duplicates
			// (a record each, or counted on one as its repeats: docs/storage.md, "Repeated
			// duplicates").
			for _, c := range []struct {
				otn  string
				want map[paynotify.Verdict]int
			}{
				{"C0001", map[paynotify.Verdict]int{paynotify.VerdictAccepted: 1, paynotify.VerdictDuplicate: copies - 1}},
				{"C0002", map[paynotify.Verdict]int{paynotify.VerdictAnomaly: copies}},
			} {
				list, err := s.ListEvidence(ctx, paynotify.EvidenceFilter{App: "shop", OutTradeNo: c.otn, Limit: 10 * copies})
				if err != nil {
					t.Fatal(err)
				}
				verdicts := map[paynotify.Verdict]int{}
				for _, e := range list {
					verdicts[e.Verdict] += 1 + int(e.Repeats)
				}
				if fmt.Sprint(verdicts) != fmt.Sprint(c.want) {
					t.Errorf("evidence verdicts of %s: %v, want %v", c.otn, verdicts, c.want)
				}
			}
			t.Logf("%s: %v in all", kind, time.Since(began).Round(time.Millisecond))
		})
	}
}

// lkGateway plays Alipay's gateway for alipay.trade.query: TRADE_SUCCESS (88.88 yuan, the
// notification's trade number) for an order paidAt says, WAIT_BUYER_PAY otherwise; the answer is signed over the node's bytes with the key that plays Alipay, by
// crypto/rsa here, not by the package under test.
type lkGateway struct {
	srv           *httptest.Server
	queries, paid atomic.Int64
}

func newLKGateway(t *testing.T, key *rsa.PrivateKey, paidAt func(i int) bool) *lkGateway {
	g := &lkGateway{}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Form.Get("method") != "alipay.trade.query" {
			http.Error(w, "only alipay.trade.query", http.StatusBadRequest)
			return
		}
		var biz struct {
			OutTradeNo string `json:"out_trade_no"`
		}
		var i int
		if err := json.Unmarshal([]byte(r.Form.Get("biz_content")), &biz); err != nil {
			http.Error(w, "biz_content", http.StatusBadRequest)
			return
		}
		if _, err := fmt.Sscanf(biz.OutTradeNo, "L%09d", &i); err != nil {
			http.Error(w, "out_trade_no", http.StatusBadRequest)
			return
		}
		g.queries.Add(1)
		otn := biz.OutTradeNo
		node := `{"code":"10000","msg":"Success","buyer_pay_amount":"0.00","invoice_amount":"0.00","out_trade_no":"` + otn +
			`","point_amount":"0.00","receipt_amount":"0.00","total_amount":"88.88","trade_no":"2026112922001400` + otn + `","trade_status":"WAIT_BUYER_PAY"}`
		if paidAt(i) {
			g.paid.Add(1)
			node = `{"code":"10000","msg":"Success","buyer_logon_id":"abc***@example.com","buyer_pay_amount":"88.88","buyer_user_id":"2088102177846880",` +
				`"invoice_amount":"88.88","out_trade_no":"` + otn + `","point_amount":"0.00","receipt_amount":"88.88","send_pay_date":"2026-11-29 10:00:00",` +
				`"total_amount":"88.88","trade_no":"2026112922001400` + otn + `","trade_status":"TRADE_SUCCESS"}`
		}
		h := sha256.Sum256([]byte(node))
		sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, h[:])
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		io.WriteString(w, `{"alipay_trade_query_response":`+node+`,"sign":"`+base64.StdEncoding.EncodeToString(sig)+`"}`)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

// counts returns how many queries the gateway answered and how many of them said paid.
func (g *lkGateway) counts() (int64, int64) { return g.queries.Load(), g.paid.Load() }

// lkReconcileAt points the config's app at gateway and makes the reconciliation brisk: a sweep a
// second, up to 500 checks a second.
func lkReconcileAt(t *testing.T, config, gateway string) {
	t.Helper()
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	const closed = "    gateway: \"http://127.0.0.1:1/gateway.do\"\n" // writeServerConfig's
	if !strings.Contains(string(b), closed) {
		t.Fatalf("%s has no %q", config, closed)
	}
	s := strings.Replace(string(b), closed, "    gateway: "+strconv.Quote(gateway)+"\n", 1)
	s += "jobs:\n  sweep_interval: 1s\n  max_checks_per_second: 500\n"
	if err := os.WriteFile(config, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// lkReceiver counts webhook deliveries by webhook-id and answers 204.
type lkReceiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	ids map[string]int
}

func newLKReceiver(t *testing.T) *lkReceiver {
	r := &lkReceiver{ids: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.Copy(io.Discard, req.Body)
		id := req.Header.Get("webhook-id")
		if id == "" || req.Header.Get("webhook-signature") == "" {
			http.Error(w, "no webhook-id or signature", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.ids[id]++
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// snapshot returns the ids received with their counts, and how many came more than once.
func (r *lkReceiver) snapshot() (map[string]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out, dups := make(map[string]int, len(r.ids)), 0
	for id, n := range r.ids {
		out[id] = n
		if n > 1 {
			dups++
		}
	}
	return out, dups
}

// lkAllowLoopbackWebhooks lets the config's webhooks go to the test's receiver (http on loopback).
func lkAllowLoopbackWebhooks(t *testing.T, config string) {
	t.Helper()
	f, err := os.OpenFile(config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("webhooks:\n  allow_private_networks: true\n  allow_http: true\n"); err != nil {
		t.Fatal(err)
	}
}

// lkSame checks that every answer is want.
func lkSame(t *testing.T, what string, answers []string, want string) {
	t.Helper()
	count := map[string]int{}
	for _, a := range answers {
		count[a]++
	}
	if len(count) != 1 || count[want] != len(answers) {
		t.Errorf("%s: answers %v, want %d × %q", what, count, len(answers), want)
	}
}

// lkCheckOrders reads every order and its events from the database (the binary stopped) and
// checks each against want(i): "paid" (paid at version 2 with exactly one order.paid event),
// "pending" (pending at version 1, no event) or "either" of the two, consistently.
func lkCheckOrders(t *testing.T, dsn string, n int, want func(i int) string, when string) {
	t.Helper()
	ctx := context.Background()
	s := lkOpen(t, dsn, false)
	defer s.Close()
	paidEvents := map[string]int{}
	for _, e := range lkEvents(t, s) {
		if e.Type != paynotify.EventOrderPaid || e.Version != 2 {
			t.Errorf("%s: unexpected event %s of %s at version %d", when, e.Type, e.OutTradeNo, e.Version)
			continue
		}
		paidEvents[e.OutTradeNo]++
	}
	bad, paid := 0, 0
	for i := 0; i < n; i++ {
		otn := lkTradeNo(i)
		o, err := s.GetOrder(ctx, "shop", otn)
		if err != nil {
			t.Fatalf("%s: %s: %v", when, otn, err)
		}
		isPaid := o.Status == paynotify.StatusPaid && o.Version == 2 && o.ProviderTradeNo != "" && paidEvents[otn] == 1
		isPending := o.Status == paynotify.StatusPending && o.Version == 1 && paidEvents[otn] == 0
		if isPaid {
			paid++
		}
		w := want(i)
		if ok := (w == "paid" && isPaid) || (w == "pending" && isPending) || (w == "either" && (isPaid || isPending)); !ok {
			if bad++; bad <= 10 {
				t.Errorf("%s: %s (want %s) is %s at version %d with %d order.paid events", when, otn, w, o.Status, o.Version, paidEvents[otn])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d orders not as expected", when, bad, n)
	}
	t.Logf("%s: %d orders paid in the database", when, paid)
}

// lkOpen opens the store of dsn as serve does (migrating it when migrate is set).
func lkOpen(t *testing.T, dsn string, migrate bool) store {
	t.Helper()
	s, err := openStore(context.Background(), dsn, migrate)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	return s
}

// lkEvents returns every event of app shop, oldest first.
func lkEvents(t *testing.T, s store) []*paynotify.Event {
	t.Helper()
	var all []*paynotify.Event
	var after int64
	for {
		evs, err := s.ListEvents(context.Background(), paynotify.EventFilter{After: after, App: "shop", Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return all
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].Seq
	}
}

// lkAnomalyRows returns the reasons of the anomaly rows of order otn of app shop (the store has
// no method that lists them: SQL).
func lkAnomalyRows(t *testing.T, s store, otn string) []string {
	t.Helper()
	return lkAnomalyRowsOf(t, s, "shop", otn)
}

// lkAnomalyRowsOf returns the reasons of the anomaly rows of order otn of app.
func lkAnomalyRowsOf(t *testing.T, s store, app, otn string) []string {
	t.Helper()
	ctx := context.Background()
	// app and otn are the test's own names: written into the query, one text for both drivers.
	q := `SELECT reason FROM anomalies WHERE app = '` + app + `' AND out_trade_no = '` + otn + `'`
	var rows interface {
		Next() bool
		Scan(dest ...any) error
		Err() error
	}
	switch db := s.(type) {
	case *sqlite.DB:
		r, err := db.SQL().QueryContext(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rows = r
	case *postgres.DB:
		r, err := db.Pool().Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rows = r
	default:
		t.Fatalf("unknown store %T", s)
	}
	var reasons []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		reasons = append(reasons, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return reasons
}

// lkPost posts one notification and returns the status and the whole answer.
func lkPost(hc *http.Client, target string, body []byte) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", notifyContentType)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	ans, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", err
	}
	return resp.StatusCode, string(ans), nil
}

// lkSeed creates the pending orders lkTradeNo(0) … lkTradeNo(n-1) of app shop (88.88 yuan, as
// lkNotification pays them) directly in the database of dsn, migrating it first. due, if set,
// gives each order's first reconciliation check (nil: none; the binary never asks about it).
func lkSeed(t *testing.T, dsn string, n int, due func(i int) *time.Time) {
	t.Helper()
	ctx := context.Background()
	s := lkOpen(t, dsn, true)
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Second)
	var seedErr atomic.Value
	lkParallel(n, 16, func(i int) {
		o := &paynotify.Order{App: "shop", OutTradeNo: lkTradeNo(i), Channel: paynotify.ChannelAlipayApp,
			Status: paynotify.StatusPending, Amount: 8888, Currency: "CNY", Subject: "load", Version: 1, CreatedAt: now, ExpiresAt: now.Add(2 * time.Hour)}
		if due != nil {
			o.NextCheckAt = due(i)
		}
		_, created, err := s.CreateOrder(ctx, o)
		if err == nil && !created {
			err = fmt.Errorf("order %s already existed", lkTradeNo(i))
		}
		if err != nil {
			seedErr.Store(err)
		}
	})
	if err, _ := seedErr.Load().(error); err != nil {
		t.Fatalf("seed: %v", err)
	}
}

func ptrTime(t time.Time) *time.Time { return &t }

// lkParallel runs f(0) … f(n-1) on workers goroutines.
func lkParallel(n, workers int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				f(i)
			}
		}()
	}
	wg.Wait()
}

func lkTradeNo(i int) string { return fmt.Sprintf("L%09d", i) }

// lkNotification returns the fields of the TRADE_SUCCESS notification of order i (88.88 yuan),
// as tools/loadnotify sends: 25 fields, a trade number of its own.
func lkNotification(i int) map[string]string {
	otn := lkTradeNo(i)
	return map[string]string{
		"gmt_create": "2026-11-29 09:59:50", "charset": "utf-8", "seller_email": "shop@example.com", "subject": "测试订单 load",
		"buyer_id": "2088102177846880", "invoice_amount": "88.88", "notify_id": "2026112900222100005" + otn, "fund_bill_list": `[{"amount":"88.88","fundChannel":"ALIPAYACCOUNT"}]`,
		"notify_type": "trade_status_sync", "trade_status": "TRADE_SUCCESS", "receipt_amount": "88.88", "buyer_pay_amount": "88.88",
		"app_id": binAppID, "notify_time": "2026-11-29 10:00:05", "point_amount": "0.00", "total_amount": "88.88",
		"trade_no": "2026112922001400" + otn, "auth_app_id": binAppID, "buyer_logon_id": "abc***@example.com", "gmt_payment": "2026-11-29 10:00:00",
		"seller_id": binSeller, "version": "1.0", "out_trade_no": otn, "body": "load test order",
	}
}

// lkAlipayKey reads the key that plays Alipay (alipayTestKey, PKCS#8 PEM).
func lkAlipayKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(alipayTestKey)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", alipayTestKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		t.Fatalf("%s: %T, want an RSA key", alipayTestKey, k)
	}
	return rk
}

// lkSignAlipay returns the form body of fields signed as Alipay signs notifications (RSA2:
// SHA256withRSA over the sorted k=v pairs joined with &, sign, sign_type and empty values left
// out), with crypto/rsa instead of the package under test; testsign.AlipayNotify does the same
// through openssl, too slowly for thousands.
func lkSignAlipay(t *testing.T, key *rsa.PrivateKey, fields map[string]string) []byte {
	keys := make([]string, 0, len(fields))
	for k, v := range fields {
		if k != "sign" && k != "sign_type" && v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var canon, body strings.Builder
	for i, k := range keys {
		if i > 0 {
			canon.WriteByte('&')
			body.WriteByte('&')
		}
		canon.WriteString(k + "=" + fields[k])
		body.WriteString(url.QueryEscape(k) + "=" + url.QueryEscape(fields[k]))
	}
	h := sha256.Sum256([]byte(canon.String()))
	sig, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, h[:])
	if err != nil {
		t.Error(err) // not Fatal: called from goroutines
		return nil
	}
	body.WriteString("&sign=" + url.QueryEscape(base64.StdEncoding.EncodeToString(sig)) + "&sign_type=RSA2")
	return []byte(body.String())
}
