package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/webhook"
)

// webhooks is the server's outgoing webhooks under the load (-webhooks): one endpoint on an
// in-process receiver on loopback that answers 204 at once, and a Dispatcher with the default
// config delivering to it, woken by every commit as serve wires it (Processor.OnEvents).
type webhooks struct {
	svc      *paynotify.Service
	endpoint string
	srv      *http.Server
	stop     context.CancelFunc
	done     chan struct{}
	enabled  bool // with -webhook-phase: the endpoint's status as last set

	// remote, when set, is the receiver's address in a process of its own (-receiver-nice):
	// requests, first and ids are then copied from its /state.
	remote     string
	child      *exec.Cmd
	childStdin io.Closer // held open: the child ends when it closes

	requests atomic.Int64
	mu       sync.Mutex
	first    map[string]time.Time // out_trade_no → the first request with its order.paid
	ids      map[string]bool      // webhook-ids received
}

// receiverState is what a receiver in a process of its own reports at /state.
type receiverState struct {
	Requests int64            `json:"requests"`
	IDs      []string         `json:"ids"`
	First    map[string]int64 `json:"first"` // out_trade_no → Unix nanoseconds
}

// runReceiver is the process of -receiver-child: the receiver alone, on a loopback port it
// prints, with its state at GET /state, until its standard input closes.
func runReceiver() {
	w := &webhooks{first: map[string]time.Time{}, ids: map[string]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks/paynotify", w.serve)
	mux.HandleFunc("GET /state", func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		st := receiverState{Requests: w.requests.Load(), First: make(map[string]int64, len(w.first))}
		for id := range w.ids {
			st.IDs = append(st.IDs, id)
		}
		for no, t := range w.first {
			st.First[no] = t.UnixNano()
		}
		w.mu.Unlock()
		check(json.NewEncoder(rw).Encode(&st))
	})
	go (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	fmt.Println(ln.Addr().String())
	io.Copy(io.Discard, os.Stdin) // the parent is gone or done
}

// startReceiverProcess starts this program as the receiver (-receiver-child) under nice at
// niceness and returns its address.
func startReceiverProcess(niceness int) (string, *exec.Cmd, io.Closer) {
	self, err := os.Executable()
	check(err)
	cmd := exec.Command("nice", "-n", strconv.Itoa(niceness), self, "-receiver-child")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	check(err)
	out, err := cmd.StdoutPipe()
	check(err)
	check(cmd.Start())
	addr, err := bufio.NewReader(out).ReadString('\n')
	check(err)
	return strings.TrimSpace(addr), cmd, stdin
}

// sync copies the state of a receiver in its own process.
func (w *webhooks) sync() {
	if w.remote == "" {
		return
	}
	resp, err := http.Get("http://" + w.remote + "/state")
	check(err)
	defer resp.Body.Close()
	var st receiverState
	check(json.NewDecoder(resp.Body).Decode(&st))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.requests.Store(st.Requests)
	clear(w.ids)
	for _, id := range st.IDs {
		w.ids[id] = true
	}
	clear(w.first)
	for no, ns := range st.First {
		w.first[no] = time.Unix(0, ns)
	}
}

// startWebhooks creates the endpoint and starts the dispatcher.
// With receiverNice ≥ 0 the receiver is a process of its own under nice at that niceness (a
// receiver on another machine takes none of the server's CPU; at 19 this one takes only what
// the server and the load leave idle); otherwise it is in this process.
func startWebhooks(ctx context.Context, svc *paynotify.Service, logger *slog.Logger, receiverNice int) *webhooks {
	w := &webhooks{svc: svc, first: map[string]time.Time{}, ids: map[string]bool{}, done: make(chan struct{}), enabled: true}
	var addr string
	if receiverNice >= 0 {
		addr, w.child, w.childStdin = startReceiverProcess(receiverNice)
		w.remote = addr
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		check(err)
		w.srv = &http.Server{Handler: http.HandlerFunc(w.serve), ReadHeaderTimeout: 10 * time.Second}
		go w.srv.Serve(ln)
		addr = ln.Addr().String()
	}
	// As serve with webhooks.allow_http and allow_private_networks: the receiver is on loopback.
	svc.CheckWebhookURL = func(u string) error { return webhook.CheckURL(u, true, true) }
	u := "http://" + addr + "/hooks/paynotify"
	e, err := svc.CreateWebhookEndpoint(ctx, &paynotify.WebhookEndpointRequest{URL: &u})
	check(err)
	w.endpoint = e.ID
	d := &webhook.Dispatcher{Store: svc.Store, Config: webhook.Config{AllowHTTP: true}, Client: webhook.NewClient(true, 10*time.Second), Logger: logger}
	svc.Processor.OnEvents = d.Wake
	svc.WakeWebhooks = d.Wake
	runCtx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	go func() {
		defer close(w.done)
		check(d.Run(runCtx))
	}()
	return w
}

// serve is the merchant's endpoint: it notes the first request of each order.paid of the load's
// app and answers 204.
func (w *webhooks) serve(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rw.WriteHeader(http.StatusBadRequest)
		return
	}
	now := time.Now()
	w.requests.Add(1)
	var ev struct {
		Type string `json:"type"`
		Data struct {
			App        string `json:"app"`
			OutTradeNo string `json:"out_trade_no"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &ev)
	w.mu.Lock()
	w.ids[r.Header.Get("webhook-id")] = true
	if ev.Type == string(paynotify.EventOrderPaid) && ev.Data.App == "shop" {
		if _, ok := w.first[ev.Data.OutTradeNo]; !ok {
			w.first[ev.Data.OutTradeNo] = now
		}
	}
	w.mu.Unlock()
	rw.WriteHeader(http.StatusNoContent)
}

// phase enables the endpoint in the "on" phases and disables it in the "off" ones, through the
// API's workflow (-webhook-phase). Disabling fails the pending deliveries; enabling continues
// from that moment: what is committed during an "off" phase is never delivered.
func (w *webhooks) phase(ctx context.Context, on bool) {
	if on == w.enabled {
		return
	}
	status := paynotify.EndpointDisabled
	if on {
		status = paynotify.EndpointEnabled
	}
	_, err := w.svc.UpdateWebhookEndpoint(context.Background(), w.endpoint, &paynotify.WebhookEndpointRequest{Status: &status})
	check(err)
	w.enabled = on
}

// delivered returns how many of the out_trade_nos have been received.
func (w *webhooks) delivered(nos []string) int {
	w.sync()
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, no := range nos {
		if _, ok := w.first[no]; ok {
			n++
		}
	}
	return n
}

// finish waits for the tail of the deliveries, stops the dispatcher and the receiver, and prints
// what reached the receiver: answered[i] is when notification i was answered "success" (zero
// otherwise); in phase mode (ph set) only the notifications answered in "on" phases are
// expected, and nothing is checked (an event committed at the end of an "on" phase may be failed
// by the disabling before its attempt). It reports whether every expected event arrived.
func (w *webhooks) finish(answered []time.Time, ph *phases, wait time.Duration) bool {
	// settled: answered well inside its "on" phase, after the enabling (which may wait for the
	// store) and at least 1 s before the disabling.
	var expect, settledNos []string
	for i, t := range answered {
		if t.IsZero() {
			continue
		}
		if ph != nil {
			on, settled, _ := ph.phaseAt(t)
			if !on {
				continue
			}
			if settled && ph.phaseEnd(t).Sub(t) >= time.Second {
				settledNos = append(settledNos, tradeNo(i))
			}
		}
		expect = append(expect, tradeNo(i))
	}
	// Wait for every expected event; in phase mode some never come: stop when nothing more
	// came for 2 s.
	deadline := time.Now().Add(wait)
	last, lastChange := -1, time.Now()
	for time.Now().Before(deadline) {
		got := w.delivered(expect)
		if got == len(expect) || ph != nil && time.Since(lastChange) > 2*time.Second {
			break
		}
		if got != last {
			last, lastChange = got, time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.stop()
	<-w.done
	got := w.delivered(expect)
	if w.srv != nil {
		w.srv.Close()
	}
	if w.child != nil {
		w.childStdin.Close()
		w.child.Wait()
	}

	w.mu.Lock()
	var delays []time.Duration
	late := 0
	for i, t := range answered {
		if at, ok := w.first[tradeNo(i)]; ok && !t.IsZero() {
			d := max(at.Sub(t), 0) // the request can come before the answer reaches the client
			delays = append(delays, d)
			if d > 5*time.Second {
				late++
			}
		}
	}
	ids := len(w.ids)
	w.mu.Unlock()
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	pct := func(p float64) time.Duration {
		if len(delays) == 0 {
			return 0
		}
		return delays[int(p*float64(len(delays)-1))].Round(100 * time.Microsecond)
	}
	what := "notifications"
	if ph != nil {
		what = `notifications answered in "on" phases`
	}
	fmt.Printf("webhooks: delivered=%d of %d (%s); requests=%d ids=%d; answer to delivery p50=%v p99=%v max=%v over_5s=%d\n",
		got, len(expect), what, w.requests.Load(), ids, pct(0.5), pct(0.99), pct(1), late)
	if ph != nil {
		fmt.Printf("webhooks: of the %d answered from %v after their \"on\" phase began to 1 s before it ended, %d were delivered (not checked)\n",
			len(settledNos), settle, w.delivered(settledNos))
		return true
	}
	if got != len(expect) {
		log.Printf("webhooks: %d order.paid events never reached the receiver", len(expect)-got)
		return false
	}
	return true
}
