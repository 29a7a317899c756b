package httpd_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// TestLogLimit_AnonymousLines (from a reviewer helper's audit): callbacks to an unknown app and
// return_url visits whose signature fails are logged at most 20 times a minute each, whatever the
// request rate; the next minute's first line comes with the count of those dropped.
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
		logs := e.logs.String()
		if n, m := strings.Count(logs, `msg="callback to unknown app"`), strings.Count(logs, `msg="return_url signature invalid"`); n != 20 || m != 20 {
			t.Fatalf("%d unknown-app and %d return_url lines for 50 requests each, want 20 each", n, m)
		}
		offset.Store(int64(time.Minute))
		e.postNotify("/notify/alipay/nosuchapp", alipayContentType, nil, []byte("a=b"))
		logs = e.logs.String()
		if !strings.Contains(logs, `dropped=30`) || strings.Count(logs, `msg="callback to unknown app"`) != 21 {
			t.Fatalf("no count of the 30 dropped in the next minute:\n%s", logs[max(0, len(logs)-1500):])
		}
	})
}
