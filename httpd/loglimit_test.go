package httpd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/metrics"
)

// TestLogLimit_AnonymousLines (from a reviewer helper's audit): callbacks to an unknown app or to
// an endpoint the app does not take, callbacks whose body ends early and return_url visits (their
// signature valid or not) are logged at most 20 times a minute each, whatever the request rate; the next minute's first line comes with the count of those dropped.
func TestLogLimit_AnonymousLines(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		var wxNow atomic.Int64
		e := newEnv(t, s, wechatApp(t, loadWechatVectors(t), &wxNow)) // "wx": no APIv2 key
		m := metrics.New()
		e.http.Service.Processor.Metrics = m
		var offset atomic.Int64
		e.http.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		validReturn := string(alipayNotify(t, paidFields("T9", "1.00")))
		for range 50 {
			e.postNotify("/notify/wechatpay-v2/wx", "text/xml", nil, []byte("<xml></xml>"))
			resp, err := http.Get(e.srv.URL + "/return/alipay/shop?" + validReturn)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			e.postNotify("/notify/alipay/nosuchapp", alipayContentType, nil, []byte("a=b"))
			resp, err = http.Get(e.srv.URL + "/return/alipay/shop?out_trade_no=T1&sign=forged")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		// A body that ends before its declared length (the client hangs up): 50 of them.
		host := strings.TrimPrefix(e.srv.URL, "http://")
		for range 50 {
			c, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(c, "POST /notify/alipay/shop HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\nshort", host)
			c.(*net.TCPConn).CloseWrite()
			io.Copy(io.Discard, c)
			c.Close()
		}
		// Each is counted in the metrics, though its log lines are not all written (a reviewer
		// helper's finding: an endpoint the app does not take showed nowhere in them); a callback
		// to an unknown app is not (its name comes from the URL).
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for _, want := range []string{
			`paynotify_notifications_total{app="wx",provider="wechatpay",reason="endpoint_not_taken",verdict="rejected"} 50`,
			`paynotify_notifications_total{app="shop",provider="alipay",reason="body_unreadable",verdict="rejected"} 50`} {
			if !strings.Contains(rec.Body.String(), want+"\n") {
				t.Errorf("metrics lack %s", want)
			}
		}
		if strings.Contains(rec.Body.String(), "nosuchapp") {
			t.Error("metrics count a callback to an unknown app")
		}
		// Counted without a duration: their time is the client's (a dribbled body), and would
		// fill the latency histogram.
		if strings.Contains(rec.Body.String(), `paynotify_notification_duration_seconds_count{provider="wechatpay"}`) {
			t.Error("the latency histogram observed callbacks that were never processed")
		}
		logs := e.logs.String()
		for _, msg := range []string{"callback to unknown app", "return_url signature invalid", "read callback body",
			"return_url signature valid", "callback to an endpoint the app does not take (APIv2 without an APIv2 key?)"} {
			if n := strings.Count(logs, `msg="`+msg+`"`); n != 20 {
				t.Errorf("%d lines %q for 50 requests, want 20", n, msg)
			}
		}
		offset.Store(int64(time.Minute))
		e.postNotify("/notify/alipay/nosuchapp", alipayContentType, nil, []byte("a=b"))
		logs = e.logs.String()
		if !strings.Contains(logs, `dropped=30`) || strings.Count(logs, `msg="callback to unknown app"`) != 21 {
			t.Fatalf("no count of the 30 dropped in the next minute:\n%s", logs[max(0, len(logs)-1500):])
		}
	})
}

// TestLogLimit_ClientGoneIsNoError (from a reviewer helper's audit): a request whose client
// leaves while the store is asked (here a token shaped like a stored one, looked up on a context
// already ended) was logged at ERROR as an internal error, one line per request from anyone; it is
// a warning, at most 20 a minute. The request runs through the server's handler with a canceled
// context (an httptest recorder: a client's hang-up during the lookup is a matter of timing).
func TestLogLimit_ClientGoneIsNoError(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		h := e.http.Handler()
		for range 50 {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			req := httptest.NewRequest("GET", "/v1/orders", nil).WithContext(ctx)
			req.Header.Set("Authorization", "Bearer pn_"+strings.Repeat("A", 43))
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
		logs := e.logs.String()
		if n, m := strings.Count(logs, "level=ERROR"), strings.Count(logs, `msg="request ended by the client before its answer"`); n != 0 || m > 20 {
			t.Fatalf("%d ERROR lines and %d warnings for 50 requests whose client left, want none and at most 20:\n%s", n, m, logs[max(0, len(logs)-1500):])
		}
		// A real failure while the client is gone is not its leaving: an ERROR (a reviewer's
		// finding on the first version, which took any error after a hang-up for one).
		e.http.Service.Store = failingTokens{s}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		req := httptest.NewRequest("GET", "/v1/orders", nil).WithContext(ctx)
		req.Header.Set("Authorization", "Bearer pn_"+strings.Repeat("B", 43))
		h.ServeHTTP(httptest.NewRecorder(), req)
		if logs := e.logs.String(); !strings.Contains(logs, `level=ERROR msg="internal error"`) || !strings.Contains(logs, "disk I/O error") {
			t.Fatalf("a store failure after the client left was not an ERROR:\n%s", logs[max(0, len(logs)-1500):])
		}
	})
}

// failingTokens is a store whose token lookups fail as a broken disk would, whatever the context.
type failingTokens struct{ paynotify.Store }

func (failingTokens) FindAPIToken(context.Context, []byte) (*paynotify.APIToken, error) {
	return nil, errors.New("disk I/O error")
}
