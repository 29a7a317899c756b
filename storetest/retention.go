package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// This file tests the evidence half of retention (EvidenceStore.PruneEvidence); the webhook half
// is testWebhookPrune.
//
// What it pins down beyond the interface doc comments:
//   - a record received exactly at the cutoff is kept (only records before it go);
//   - the record an order.anomaly event names is kept however old, also for an anomaly about an
//     order we do not have; the records of the same anomaly's retries (no event names them) go;
//   - events, anomalies and orders are never touched.

func (s *suite) testRetention(t *testing.T) {
	t.Run("OKRejected", func(t *testing.T) {
		// PruneRejectedEvidence deletes the rejected notifications received before the cutoff,
		// in batches, and nothing else: the accepted and anomaly records of the same age stay, so
		// does the rejected one received at the cutoff, and so do rejected records that are no
		// junk: a query's answer (a provider's signed answer about another order), a reprocess,
		// and legacy Alipay's notify_id_unconfirmed (its signature held). Notifications whose
		// check could not be made (verify_unavailable) go with the rejected ones; other errors
		// (a store's failure on a verified message) stay.
		st, b := s.setup(t)
		cutoff := T0.Add(time.Hour)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		for _, k := range []struct {
			id      string
			at      time.Time
			verdict paynotify.Verdict
			source  string
			reason  string
		}{{"r1", T0, paynotify.VerdictRejected, paynotify.SourceNotification, paynotify.ReasonSignatureInvalid},
			{"r2", T0.Add(time.Second), paynotify.VerdictRejected, paynotify.SourceNotification, paynotify.ReasonMalformed},
			{"r3", T0.Add(2 * time.Second), paynotify.VerdictRejected, paynotify.SourceNotification, paynotify.ReasonSignatureInvalid},
			{"r-cut", cutoff, paynotify.VerdictRejected, paynotify.SourceNotification, paynotify.ReasonSignatureInvalid},
			{"q1", T0, paynotify.VerdictRejected, paynotify.SourceQuery, paynotify.ReasonOutTradeNoMismatch},
			{"p1", T0, paynotify.VerdictRejected, paynotify.SourceReprocess, paynotify.ReasonSignatureInvalid},
			{"n1", T0, paynotify.VerdictRejected, paynotify.SourceNotification, "notify_id_unconfirmed"},
			{"a1", T0, paynotify.VerdictAccepted, paynotify.SourceNotification, ""},
			{"x1", T0, paynotify.VerdictAnomaly, paynotify.SourceNotification, paynotify.ReasonAmountMismatch},
			{"u1", T0, paynotify.VerdictError, paynotify.SourceNotification, paynotify.ReasonVerifyUnavailable},
			{"u2", T0.Add(3 * time.Second), paynotify.VerdictError, paynotify.SourceNotification, paynotify.ReasonVerifyUnavailable},
			{"u-cut", cutoff, paynotify.VerdictError, paynotify.SourceNotification, paynotify.ReasonVerifyUnavailable},
			{"uq", T0, paynotify.VerdictError, paynotify.SourceQuery, paynotify.ReasonVerifyUnavailable},
			{"e1", T0, paynotify.VerdictError, paynotify.SourceNotification, paynotify.ReasonStoreError}} {
			e := NewEvidence(k.id, o, k.at)
			e.Verdict, e.Source, e.Reason = k.verdict, k.source, k.reason
			if err := st.InsertEvidence(b.ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := st.PruneRejectedEvidence(b.ctx, cutoff, 2); err != nil || n != 5 {
			t.Fatalf("PruneRejectedEvidence = %d, %v; want 5 (r1, r2, r3, u1, u2)", n, err)
		}
		left, err := st.ListEvidence(b.ctx, paynotify.EvidenceFilter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, e := range left {
			ids = append(ids, e.ID)
		}
		slices.Sort(ids)
		checkStrings(t, "evidence left", ids, []string{"a1", "e1", "n1", "p1", "q1", "r-cut", "u-cut", "uq", "x1"})
	})

	t.Run("OK", func(t *testing.T) {
		st, b := s.setup(t)
		old, cutoff, recent := T0, T0.Add(time.Hour), T0.Add(2*time.Hour)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		paid := PaidChange(o, "ev-paid", "n-paid", old)
		MustCommit(t, b.ctx, st, paid)
		o = paid.Order

		// An anomaly about the order, seen first in n-anom (named by its event), then again in
		// n-anom-retry; and one about an order we do not have, seen in n-orphan.
		anomaly := func(o *paynotify.Order, key, eventID, evidenceID string) *paynotify.Change {
			ev := NewEvidence(evidenceID, o, old)
			ev.Verdict, ev.Reason, ev.Answer = paynotify.VerdictAnomaly, paynotify.ReasonAmountMismatch, "fail"
			an := &paynotify.EventAnomaly{Reason: paynotify.ReasonAmountMismatch, NotificationID: evidenceID}
			event := paynotify.NewEvent(eventID, paynotify.EventOrderAnomaly, old, o, nil, an)
			if o.Version == 0 {
				event = paynotify.NewOrphanAnomalyEvent(eventID, o.App, o.OutTradeNo, old, an)
			}
			return &paynotify.Change{Evidence: ev, Anomaly: &paynotify.Anomaly{App: o.App, OutTradeNo: o.OutTradeNo,
				Reason: paynotify.ReasonAmountMismatch, Key: key, Event: event}}
		}
		if !MustCommit(t, b.ctx, st, anomaly(o, "k1", "ev-anom", "n-anom")) {
			t.Fatal("anomaly k1 not new")
		}
		if MustCommit(t, b.ctx, st, anomaly(o, "k1", "ev-anom-retry", "n-anom-retry")) {
			t.Fatal("retried anomaly k1 new")
		}
		unknown := &paynotify.Order{App: "app1", OutTradeNo: "T404"}
		if !MustCommit(t, b.ctx, st, anomaly(unknown, "k2", "ev-orphan", "n-orphan")) {
			t.Fatal("anomaly k2 not new")
		}
		for i, at := range []time.Time{old.Add(time.Second), old.Add(2 * time.Second), cutoff.Add(-time.Microsecond), cutoff, recent} {
			e := NewEvidence(fmt.Sprint("n", i+1), o, at)
			e.Verdict, e.Reason = paynotify.VerdictRejected, paynotify.ReasonSignatureInvalid
			if err := st.InsertEvidence(b.ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		events := eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{Limit: 1000}))
		checkStrings(t, "events", events, []string{"ev-paid", "ev-anom", "ev-orphan"})

		n, err := st.PruneEvidence(b.ctx, cutoff, 2)
		if err != nil || n != 5 {
			t.Fatalf("PruneEvidence = %d, %v; want 5 (n-paid, n-anom-retry, n1, n2, n3)", n, err)
		}
		kept := evidenceIDs(MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{Limit: 1000}))
		slices.Sort(kept)
		checkStrings(t, "evidence kept", kept, []string{"n-anom", "n-orphan", "n4", "n5"})
		for _, id := range []string{"n-paid", "n1"} {
			_, err := st.GetEvidence(b.ctx, id)
			checkNotFound(t, err)
		}

		// Events, anomalies and the order are as they were.
		checkStrings(t, "events after", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{Limit: 1000})), events)
		if MustCommit(t, b.ctx, st, anomaly(o, "k1", "ev-anom-2", "n-anom-2")) {
			t.Error("anomaly k1 new again after the prune: its row was deleted")
		}
		if MustCommit(t, b.ctx, st, anomaly(unknown, "k2", "ev-orphan-2", "n-orphan-2")) {
			t.Error("anomaly k2 new again after the prune: its row was deleted")
		}
		checkOrder(t, MustGetOrder(t, b.ctx, st, "app1", "T1"), o)

		if n, err := st.PruneEvidence(b.ctx, cutoff, 2); err != nil || n != 2 {
			t.Errorf("PruneEvidence again = %d, %v; want 2 (n-anom-2, n-orphan-2: no event names them)", n, err)
		}
		// Later: the rest goes, but not what the anomalies' events name.
		if n, err := st.PruneEvidence(b.ctx, recent.Add(time.Microsecond), 1000); err != nil || n != 2 {
			t.Errorf("PruneEvidence after %s = %d, %v; want 2 (n4, n5)", fmtTime(&recent), n, err)
		}
		kept = evidenceIDs(MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{Limit: 1000}))
		slices.Sort(kept)
		checkStrings(t, "evidence kept at last", kept, []string{"n-anom", "n-orphan"})
	})

	t.Run("OKBatches", func(t *testing.T) {
		// More records than a batch, in a whole number of batches (the last one comes back
		// empty), and a batch of 0 taken as 1.
		st, b := s.setup(t)
		var rows []string
		for i := range 24 {
			at := T0.Add(time.Duration(i) * time.Millisecond)
			if i >= 21 {
				at = T0.Add(2 * time.Hour)
			}
			rows = append(rows, fmt.Sprintf("('n%02d', 'app1', 'alipay', %s, 'rejected')", i, sqlTime(at)))
		}
		if err := st.ExecSQL(b.ctx, `INSERT INTO evidence (id, app, provider, received_at, verdict) VALUES `+strings.Join(rows, ", ")); err != nil {
			t.Fatal(err)
		}
		if n, err := st.PruneEvidence(b.ctx, T0.Add(time.Hour), 7); err != nil || n != 21 {
			t.Fatalf("PruneEvidence = %d, %v; want 21", n, err)
		}
		checkStrings(t, "evidence kept", evidenceIDs(MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{Limit: 1000})), []string{"n23", "n22", "n21"})
		if n, err := st.PruneEvidence(b.ctx, T0.Add(3*time.Hour), 0); err != nil || n != 3 {
			t.Fatalf("PruneEvidence with batch 0 = %d, %v; want 3", n, err)
		}
	})

	t.Run("OKBatchesPastKept", func(t *testing.T) {
		// Records kept for an anomaly at the front of the time order, then deletable ones, all
		// received at one instant (ties across the batches' ends): a prune in batches of 2 that
		// goes on from where the last batch ended (SQLite) still deletes every deletable record
		// and keeps the named ones.
		st, b := s.setup(t)
		var rows, events []string
		for i := range 9 {
			rows = append(rows, fmt.Sprintf("('n%02d', 'app1', 'alipay', %s, 'rejected')", i, sqlTime(T0)))
			if i < 3 || i == 6 {
				events = append(events, fmt.Sprintf(`('evt%d', 'order.anomaly', 'app1', 'T1', 1, %s, '{"anomaly":{"reason":"amount_mismatch","notification_id":"n%02d"}}')`,
					i, sqlTime(T0), i))
			}
		}
		if err := st.ExecSQL(b.ctx, `INSERT INTO evidence (id, app, provider, received_at, verdict) VALUES `+strings.Join(rows, ", ")); err != nil {
			t.Fatal(err)
		}
		if err := st.ExecSQL(b.ctx, `INSERT INTO events (id, type, app, out_trade_no, version, timestamp, data) VALUES `+strings.Join(events, ", ")); err != nil {
			t.Fatal(err)
		}
		if n, err := st.PruneEvidence(b.ctx, T0.Add(time.Hour), 2); err != nil || n != 5 {
			t.Fatalf("PruneEvidence = %d, %v; want 5", n, err)
		}
		kept := evidenceIDs(MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{Limit: 1000}))
		slices.Sort(kept)
		checkStrings(t, "evidence kept", kept, []string{"n00", "n01", "n02", "n06"})
	})

	t.Run("ErrCanceled", func(t *testing.T) {
		st, b := s.setup(t)
		if err := st.InsertEvidence(b.ctx, NewEvidence("n1", NewOrder("app1", "T1", T0), T0)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.ctx)
		cancel()
		if n, err := st.PruneEvidence(ctx, T0.Add(time.Hour), 100); err == nil || n != 0 {
			t.Fatalf("PruneEvidence with an ended context = %d, %v; want 0 and an error", n, err)
		}
		if got := MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{}); len(got) != 1 {
			t.Fatalf("evidence = %q after a cancelled prune, want n1", evidenceIDs(got))
		}
	})
}
