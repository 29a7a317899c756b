package httpd_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// TestReprocessAPI: an openssl-signed payment of an order we did not have is an anomaly
// (unknown_order); once the order exists (imported), POST /v1/notifications/{id}/reprocess applies
// the kept bytes and answers with the new record, linked to the original.
func TestReprocessAPI(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		body := alipayNotify(t, paidFields("RP0001", "1.00"))
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, body); ans != "fail" {
			t.Fatalf("answer %q, want fail (unknown order)", ans)
		}
		orig := e.evidence("out_trade_no=RP0001")
		if len(orig) != 1 || orig[0].Verdict != "anomaly" || orig[0].Reason != "unknown_order" {
			t.Fatalf("evidence %+v", orig)
		}

		// Reprocessing before the fix: the same anomaly, kept as a reprocess record.
		var re reprocessed
		if code := e.api("POST", "/v1/notifications/"+orig[0].ID+"/reprocess", nil, &re); code != http.StatusOK {
			t.Fatalf("reprocess: HTTP %d", code)
		}
		if re.Verdict != "anomaly" || re.Source != "reprocess" || re.ReprocessedFrom != orig[0].ID || re.Endpoint != "alipay" {
			t.Fatalf("record %+v", re)
		}

		newAlipayOrder(e, "RP0001", 100) // the operator imports the order
		if code := e.api("POST", "/v1/notifications/"+orig[0].ID+"/reprocess", nil, &re); code != http.StatusOK {
			t.Fatalf("reprocess: HTTP %d", code)
		}
		if re.Verdict != "accepted" || re.OutTradeNo != "RP0001" || re.ID == orig[0].ID || re.Answer != "" {
			t.Fatalf("record %+v", re)
		}
		if o := e.getOrder("shop", "RP0001"); o.Status != "paid" || o.Version != 2 {
			t.Fatalf("order %+v", o)
		}
		if got := e.evidence("source=reprocess&out_trade_no=RP0001"); len(got) != 2 {
			t.Fatalf("reprocess records %+v", got)
		}
		// Again: a duplicate, no second event.
		e.api("POST", "/v1/notifications/"+orig[0].ID+"/reprocess", nil, &re)
		if re.Verdict != "duplicate" {
			t.Fatalf("third reprocess %+v", re)
		}
		if evs := e.events(); len(eventTypes(evs)) != 2 { // the first anomaly and the payment
			t.Fatalf("events %v", eventTypes(evs))
		}

		t.Run("ErrNotFound", func(t *testing.T) {
			if code := e.api("POST", "/v1/notifications/ntf_nope/reprocess", nil, nil); code != http.StatusNotFound {
				t.Fatalf("HTTP %d", code)
			}
		})
		t.Run("ErrQueryAnswer", func(t *testing.T) {
			ev := &paynotify.Evidence{ID: "ntf_query1", App: "shop", Provider: "alipay", Source: paynotify.SourceQuery,
				Endpoint: "alipay.trade.query", ReceivedAt: time.Now(), Verdict: paynotify.VerdictRejected, Reason: "signature_invalid", Body: []byte("{}")}
			if err := s.InsertEvidence(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			if code := e.api("POST", "/v1/notifications/ntf_query1/reprocess", nil, nil); code != http.StatusConflict {
				t.Fatalf("HTTP %d, want 409", code)
			}
			if got := e.evidence("source=query"); len(got) != 1 || got[0].ID != "ntf_query1" {
				t.Fatalf("source filter: %+v", got)
			}
			if got := e.evidence("reason=unknown_order"); len(got) != 2 { // the original and the first reprocess
				t.Fatalf("reason filter: %+v", got)
			}
		})
		t.Run("ErrBadFilter", func(t *testing.T) {
			if code := e.api("GET", "/v1/notifications?source=cron", nil, nil); code != http.StatusBadRequest {
				t.Fatalf("HTTP %d", code)
			}
		})
	})
}

type reprocessed struct {
	evidence
	Source          string `json:"source"`
	Endpoint        string `json:"endpoint"`
	ReprocessedFrom string `json:"reprocessed_from"`
}

// TestOrderSchedule: the order JSON says when the reconciliation looks at it next.
func TestOrderSchedule(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		var o struct {
			order
			NextCheckAt *time.Time `json:"next_check_at"`
			Checks      *int       `json:"checks"`
		}
		if code := e.api("POST", "/v1/orders", map[string]any{"app": "shop", "out_trade_no": "SC0001", "amount": 100, "subject": "s", "channel": "alipay.app"}, &o); code != http.StatusCreated {
			t.Fatalf("HTTP %d", code)
		}
		if o.NextCheckAt == nil || o.NextCheckAt.Sub(o.CreatedAt) != time.Minute || o.Checks == nil || *o.Checks != 0 {
			t.Fatalf("order %+v: want the first check a minute after creation", o)
		}
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, paidFields("SC0001", "1.00"))); ans != "success" {
			t.Fatalf("answer %q", ans)
		}
		o.NextCheckAt = nil
		if code := e.api("GET", "/v1/orders/shop/SC0001", nil, &o); code != http.StatusOK || o.NextCheckAt != nil || o.Status != "paid" {
			t.Fatalf("HTTP %d %+v: a paid order has no next check", code, o)
		}
	})
}
