package e2e_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/httpd"
)

// Shortened timeouts of the slow-client test's server: httpd.NewHTTPServer's own (10 s for the
// headers, 30 s for the whole request) would make the test wait that long; the cut is the same
// net/http mechanism whatever the values.
const (
	slowHeaderTimeout = 3 * time.Second
	slowReadTimeout   = 5 * time.Second
	dripEvery         = 150 * time.Millisecond
)

// slowClient is one dripping connection: when the server cut it (its read returned), and what
// the server sent before that.
type slowClient struct {
	kind   string
	start  time.Time
	cut    time.Time
	answer string
}

// drip opens a connection to addr, writes head at once, then a byte of unit every dripEvery
// until the server closes the connection (or 15 s pass), and reports the cut.
func drip(t *testing.T, addr, kind, head, unit string) *slowClient {
	c := &slowClient{kind: kind, start: time.Now()}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		return c
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	done := make(chan struct{})
	go func() {
		defer close(done)
		b, _ := io.ReadAll(conn) // until the server closes the connection, or the deadline
		c.cut, c.answer = time.Now(), string(b)
	}()
	if _, err := io.WriteString(conn, head); err != nil {
		t.Error(err)
	}
	for i := 0; ; i++ {
		select {
		case <-done:
			return c
		case <-time.After(dripEvery):
		}
		if _, err := conn.Write([]byte{unit[i%len(unit)]}); err != nil {
			<-done
			return c
		}
	}
}

// TestSlowClients: connections that drip their headers, or their body, one byte every 150 ms are
// cut by the server at its ReadHeaderTimeout and ReadTimeout (no sooner; the body's with the
// notify route's 400 "body unreadable" and the API's 400 invalid), and leave nothing behind;
// meanwhile normal notifications to the same server all succeed, every one finished before the
// first slow client was cut: none waited on them.
func TestSlowClients(t *testing.T) {
	t.Parallel()
	alipayKey := sandboxKey(t, "alipay_private_key.pem")
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		// The server under test: httpd.NewHTTPServer's, with its timeouts shortened.
		hs := httpd.NewHTTPServer("127.0.0.1:0", e.handler)
		if hs.ReadHeaderTimeout != 10*time.Second || hs.ReadTimeout != 30*time.Second {
			t.Fatalf("NewHTTPServer's timeouts are %v and %v: update this test and docs/reliability.md", hs.ReadHeaderTimeout, hs.ReadTimeout)
		}
		hs.ReadHeaderTimeout, hs.ReadTimeout = slowHeaderTimeout, slowReadTimeout
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go hs.Serve(ln)
		t.Cleanup(func() { hs.Close() })
		addr := ln.Addr().String()

		const baseline, during = 12, 20
		bodies := make([][]byte, baseline+during)
		for i := range bodies {
			otn := fmt.Sprintf("slow_%02d", i)
			e.create(paynotify.ChannelAlipayPage, otn, 8888)
			f := e.alipayFields(otn, "88.88")
			bodies[i] = encodeForm(append(f, kv{"sign", rsaSign(t, alipayKey, []byte(sortedCanonical(f)), false)}, kv{"sign_type", "RSA2"}))
		}
		// notify sends bodies[i] and returns how long the answer took and when it came.
		notify := func(i int) (time.Duration, time.Time, error) {
			start := time.Now()
			resp, err := http.Post("http://"+addr+"/notify/alipay/"+alipayApp, "application/x-www-form-urlencoded", strings.NewReader(string(bodies[i])))
			if err != nil {
				return 0, time.Time{}, err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(b) != "success" {
				return 0, time.Time{}, fmt.Errorf("slow_%02d: HTTP %d %q", i, resp.StatusCode, b)
			}
			return time.Since(start), time.Now(), nil
		}
		var base []time.Duration
		for i := 0; i < baseline; i++ {
			d, _, err := notify(i)
			if err != nil {
				t.Fatal(err)
			}
			base = append(base, d)
		}
		before := e.snapshot()

		// The slow clients: header drips (a request line, then a header that never ends) and
		// body drips (complete headers, then the declared 100-byte body a byte at a time), to
		// the notify route and to the API.
		headerDrip := "POST /notify/alipay/" + alipayApp + " HTTP/1.1\r\nHost: " + addr + "\r\nX-Slow: "
		notifyBody := "POST /notify/alipay/" + alipayApp + " HTTP/1.1\r\nHost: " + addr +
			"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
		apiBody := "POST /v1/orders HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + apiToken +
			"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
		var mu sync.Mutex
		var slow []*slowClient
		var wg sync.WaitGroup
		for i := 0; i < 24; i++ {
			kind, head, d := "headers", headerDrip, "a"
			switch i % 3 {
			case 1:
				kind, head, d = "notify body", notifyBody, "x"
			case 2:
				kind, head, d = "API body", apiBody, " "
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := drip(t, addr, kind, head, d)
				mu.Lock()
				slow = append(slow, c)
				mu.Unlock()
			}()
		}

		// Normal traffic meanwhile, from 4 clients.
		time.Sleep(300 * time.Millisecond) // every slow client connected and dripping
		var lat []time.Duration
		var lastDone time.Time
		var nwg sync.WaitGroup
		for w := 0; w < 4; w++ {
			nwg.Add(1)
			go func() {
				defer nwg.Done()
				for i := baseline + w; i < baseline+during; i += 4 {
					d, at, err := notify(i)
					mu.Lock()
					if err != nil {
						t.Error(err)
					} else {
						lat = append(lat, d)
						if at.After(lastDone) {
							lastDone = at
						}
					}
					mu.Unlock()
				}
			}()
		}
		nwg.Wait()
		wg.Wait()

		firstCut := time.Time{}
		for _, c := range slow {
			if c.cut.IsZero() {
				continue
			}
			if firstCut.IsZero() || c.cut.Before(firstCut) {
				firstCut = c.cut
			}
			limit := slowReadTimeout
			if c.kind == "headers" {
				limit = slowHeaderTimeout
			}
			// Cut at its timeout: not before it, a header drip before the read timeout (so by
			// the header timeout), a body drip well before the drip would have ended.
			upper := limit + 5*time.Second
			if c.kind == "headers" {
				upper = slowReadTimeout - 100*time.Millisecond
			}
			if took := c.cut.Sub(c.start); took < limit-100*time.Millisecond || took > upper {
				t.Errorf("%s drip cut after %v, want about %v", c.kind, took, limit)
			}
			status := ""
			if line, err := bufio.NewReader(strings.NewReader(c.answer)).ReadString('\n'); err == nil {
				status = strings.TrimSpace(line)
			}
			switch c.kind {
			case "headers":
				// net/http closes a connection whose headers time out without an answer.
				if c.answer != "" {
					t.Errorf("header drip answered %q", trim(c.answer))
				}
			case "notify body":
				if status != "HTTP/1.1 400 Bad Request" || !strings.HasSuffix(c.answer, "body unreadable\n") {
					t.Errorf("notify body drip answered %q", trim(c.answer))
				}
			case "API body":
				if status != "HTTP/1.1 400 Bad Request" || !strings.Contains(c.answer, `{"error":{"code":"invalid","message":"Invalid JSON body:`) {
					t.Errorf("API body drip answered %q", trim(c.answer))
				}
			}
		}
		if len(slow) != 24 {
			t.Fatalf("%d slow clients reported", len(slow))
		}
		for _, c := range slow {
			if c.cut.IsZero() {
				t.Errorf("a %s drip was never cut", c.kind)
			}
		}
		if len(lat) != during {
			t.Fatalf("%d of %d normal notifications succeeded beside the slow clients", len(lat), during)
		}
		// None waited for a slow client: all were answered before the first one was cut.
		if !lastDone.Before(firstCut) {
			t.Errorf("the last normal notification was answered %v after the first slow client was cut", lastDone.Sub(firstCut))
		}
		p99 := func(ds []time.Duration) time.Duration {
			ds = slices.Clone(ds)
			slices.Sort(ds)
			return ds[(len(ds)*99+99)/100-1]
		}
		t.Logf("normal notifications: p99 %v alone, %v beside 24 slow clients", p99(base), p99(lat))

		// What the slow clients left: nothing. The normal ones: their payments.
		want := effect{orders: map[string]string{}}
		for i := baseline; i < baseline+during; i++ {
			want.orders[fmt.Sprintf("%s/slow_%02d", alipayApp, i)] = "paid@v2"
			want.events = append(want.events, "order.paid")
		}
		after := e.snapshot()
		if got := len(after.evidence) - len(before.evidence); got != during {
			t.Errorf("%d new evidence records, want %d (the normal notifications')", got, during)
		}
		// checkEffect wants at most one evidence record: compare everything else with it.
		before.evidence = after.evidence
		e.checkEffect("slow clients", before, want)
	})
}
