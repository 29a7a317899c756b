package httpd_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/metrics"
)

// TestReprocess_CutCopy (from a reviewer helper's audit): a body longer than the evidence cap
// (64 KiB) is kept cut at the cap. A genuine notification with "&" padding and an extra field
// past the cut was rejected on arrival, but its cut copy verifies: reprocessing it paid the
// order on bytes that never verified as received. A record kept at the cap is not reprocessed
// (409), the order stays pending. (Since the callback body limit is the evidence cap, such a
// body is malformed on arrival: it is no longer read past the cap.)
func TestReprocess_CutCopy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		total  int
		reason string
	}{{"OverEvidenceCap", 80 << 10, paynotify.ReasonMalformed}, {"OverBodyLimit", (1 << 20) + 4096, paynotify.ReasonMalformed}} {
		t.Run(tc.name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, s paynotify.Store) {
				e := newEnv(t, s)
				newAlipayOrder(e, "TR0001", 100)
				body := append([]byte(nil), alipayNotify(t, paidFields("TR0001", "1.00"))...)
				body = append(body, bytes.Repeat([]byte("&"), paynotify.MaxEvidenceBody-len(body)+16)...)
				body = append(body, "&extra="...)
				body = append(body, bytes.Repeat([]byte("A"), tc.total-len(body))...)
				if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, body); ans != "fail" {
					t.Fatalf("answer %q", ans)
				}
				orig := e.evidence("verdict=rejected")
				if len(orig) != 1 || orig[0].Reason != tc.reason {
					t.Fatalf("evidence %+v", orig)
				}
				if code, out := e.raw("POST", "/v1/notifications/"+orig[0].ID+"/reprocess", "", true); code != http.StatusConflict {
					t.Errorf("reprocess of a cut copy: %d %s, want 409", code, out)
				}
				if o := e.getOrder("shop", "TR0001"); o.Status != "pending" {
					t.Fatalf("order %s after the reprocess of bytes that never verified", o.Status)
				}
				// paynotify reprocess --since leaves it out, instead of counting an error (and
				// exiting 1) on every run over that window (a reviewer helper's finding).
				st, err := e.http.Service.ReprocessAll(t.Context(), paynotify.ReprocessFilter{Since: time.Now().Add(-time.Hour)}, nil)
				if err != nil || st.Errors != 0 || st.Reprocessed != 0 {
					t.Errorf("ReprocessAll over the cut record: %+v, %v; want it left out", st, err)
				}
			})
		})
	}
}

// TestReprocess_NotACallback (from a reviewer helper's audit): the callback metrics count the
// provider's callbacks (docs/operations.md); an operator's reprocess of one was counted as
// another callback, inflating the alerts' rates while an incident was cleaned up.
func TestReprocess_NotACallback(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		m := metrics.New()
		e.http.Service.Processor.Metrics = m
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, paidFields("MC0001", "1.00"))); ans != "fail" {
			t.Fatalf("answer %q (no such order)", ans)
		}
		orig := e.evidence("out_trade_no=MC0001")
		for range 3 {
			if code, out := e.raw("POST", "/v1/notifications/"+orig[0].ID+"/reprocess", "", true); code != http.StatusOK {
				t.Fatalf("reprocess: %d %s", code, out)
			}
		}
		rec := httptest.NewRecorder()
		m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		for _, line := range strings.Split(rec.Body.String(), "\n") {
			if strings.HasPrefix(line, "paynotify_notifications_total{") && strings.Contains(line, `reason="unknown_order"`) {
				if !strings.HasSuffix(line, " 1") {
					t.Errorf("one callback from the provider, three reprocesses: %s", line)
				}
				return
			}
		}
		t.Fatal("no unknown_order line")
	})
}
