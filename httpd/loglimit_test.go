package httpd_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// TestLogLimit_AnonymousLines (from a reviewer helper's audit): callbacks to an unknown app,
// callbacks whose body ends early and return_url visits whose signature fails are logged at most
// 20 times a minute each, whatever the request rate; the next minute's first line comes with the count of those dropped.
func TestLogLimit_AnonymousLines(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		var offset atomic.Int64
		e.http.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		for range 50 {
			e.postNotify("/notify/alipay/nosuchapp", alipayContentType, nil, []byte("a=b"))
			resp, err := http.Get(e.srv.URL + "/return/alipay/shop?out_trade_no=T1&sign=forged")
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
		logs := e.logs.String()
		if n, m, u := strings.Count(logs, `msg="callback to unknown app"`), strings.Count(logs, `msg="return_url signature invalid"`),
			strings.Count(logs, `msg="read callback body"`); n != 20 || m != 20 || u != 20 {
			t.Fatalf("%d unknown-app, %d return_url and %d unreadable-body lines for 50 requests each, want 20 each", n, m, u)
		}
		offset.Store(int64(time.Minute))
		e.postNotify("/notify/alipay/nosuchapp", alipayContentType, nil, []byte("a=b"))
		logs = e.logs.String()
		if !strings.Contains(logs, `dropped=30`) || strings.Count(logs, `msg="callback to unknown app"`) != 21 {
			t.Fatalf("no count of the 30 dropped in the next minute:\n%s", logs[max(0, len(logs)-1500):])
		}
	})
}
