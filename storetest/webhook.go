package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// This file tests the webhook part of the stores (paynotify.WebhookStore): endpoints, the
// deliveries made from the event log by cursor (FanOutWebhooks), their claims and ends, resend,
// recover and prune.
//
// What it pins down beyond the interface doc comments:
//   - an empty (or nil) Events or Apps filter reads back as an empty, non-nil slice;
//   - times are kept to the microsecond and read back in UTC, as elsewhere;
//   - a delivery added by AddWebhookDelivery is due at its CreatedAt, and its Payload is kept
//     byte for byte (so it cannot be a jsonb column);
//   - FanOutWebhooks reads up to limit events per endpoint, wanted or not, and moves the Cursor to
//     the last one read; an event the endpoint already has a delivery of (RedeliverEvent ran
//     ahead of the cursor) is skipped, not an error;
//   - claims: earliest due first, then creation order; one pending delivery of an order holds
//     back the later ones of that order for that endpoint only;
//   - FinishWebhookDeliveries uses only the delivery's ID and Token; it stamps the delivery's
//     UpdatedAt and DeliveredAt, and the endpoint's FailingSince, with the attempt's At; a failed
//     attempt sets FailingSince even when its token no longer holds the delivery;
//   - UpdateWebhookEndpoint: a new Secret without OldSecretUntil drops the old one; IfStatus that
//     does not match changes nothing (no event appended);
//   - the end of a claim whose endpoint was deleted meanwhile drops its attempt and does not fail
//     the batch;
//   - RecoverWebhooks resets Attempts to 0, as RedeliverEvent does; RedeliverEvent answers
//     ENOTFOUND for an unknown endpoint (changing nothing) and ignores the endpoints' filters.

// webhookStore returns st as a WebhookStore, and fails the test if it is not one.
func webhookStore(tb testing.TB, st paynotify.Store) paynotify.WebhookStore {
	tb.Helper()
	ws, ok := st.(paynotify.WebhookStore)
	if !ok {
		tb.Fatalf("%T does not implement paynotify.WebhookStore", st)
	}
	return ws
}

// webhooks is what a webhook subtest works with: the store, and the orders its events are about.
type webhooks struct {
	tb     testing.TB
	ctx    context.Context
	st     DB
	ws     paynotify.WebhookStore
	orders map[string]*paynotify.Order // by app + "/" + out_trade_no, as last committed
}

func (s *suite) setupWebhooks(t *testing.T) *webhooks {
	t.Helper()
	st, b := s.setup(t)
	return &webhooks{tb: t, ctx: b.ctx, st: st, ws: webhookStore(t, st), orders: map[string]*paynotify.Order{}}
}

// newEndpoint returns an enabled HTTP endpoint created at T0 (with a sub-microsecond part) that
// wants everything.
func newEndpoint(id string) *paynotify.WebhookEndpoint {
	return &paynotify.WebhookEndpoint{
		ID:          id,
		Kind:        paynotify.EndpointHTTP,
		URL:         "https://merchant.example/hooks/" + id,
		Description: "端点 " + id,
		Status:      paynotify.EndpointEnabled,
		Secret:      "whsec_c2VjcmV0LWtleS0x",
		CreatedAt:   T0.Add(789),
		UpdatedAt:   T0.Add(789),
	}
}

// endpoint creates an endpoint (newEndpoint, changed by mod if not nil).
func (w *webhooks) endpoint(id string, mod func(e *paynotify.WebhookEndpoint)) *paynotify.WebhookEndpoint {
	w.tb.Helper()
	e := newEndpoint(id)
	if mod != nil {
		mod(e)
	}
	if err := w.ws.CreateWebhookEndpoint(w.ctx, e); err != nil {
		w.tb.Fatalf("CreateWebhookEndpoint(%s): %v", id, err)
	}
	return e
}

func (w *webhooks) get(id string) *paynotify.WebhookEndpoint {
	w.tb.Helper()
	e, err := w.ws.GetWebhookEndpoint(w.ctx, id)
	if err != nil {
		w.tb.Fatalf("GetWebhookEndpoint(%s): %v", id, err)
	}
	return e
}

func (w *webhooks) update(id string, u *paynotify.WebhookEndpointUpdate) *paynotify.WebhookEndpoint {
	w.tb.Helper()
	e, err := w.ws.UpdateWebhookEndpoint(w.ctx, id, u)
	if err != nil {
		w.tb.Fatalf("UpdateWebhookEndpoint(%s): %v", id, err)
	}
	return e
}

// event commits the next change of order app/outTradeNo (created the first time) with one event
// id of type typ at at: paid for order.paid, finished otherwise.
func (w *webhooks) event(app, outTradeNo, id string, typ paynotify.EventType, at time.Time) *paynotify.Event {
	w.tb.Helper()
	key := app + "/" + outTradeNo
	o, ok := w.orders[key]
	if !ok {
		o = MustCreateOrder(w.tb, w.ctx, w.st, NewOrder(app, outTradeNo, T0))
	}
	next := *o
	next.Version = o.Version + 1
	next.Status = paynotify.StatusFinished
	if typ == paynotify.EventOrderPaid {
		next.Status = paynotify.StatusPaid
		paid := at
		next.PaidAt = &paid
	}
	ev := paynotify.NewEvent(id, typ, at, &next, nil, nil)
	MustCommit(w.tb, w.ctx, w.st, &paynotify.Change{Order: &next, PrevVersion: o.Version, Events: []*paynotify.Event{ev}})
	w.orders[key] = &next
	return ev
}

// paid commits order.paid of a new order app/outTradeNo at at.
func (w *webhooks) paid(app, outTradeNo, id string, at time.Time) *paynotify.Event {
	w.tb.Helper()
	return w.event(app, outTradeNo, id, paynotify.EventOrderPaid, at)
}

// orphan commits an event about no app and no order (endpoint.disabled).
func (w *webhooks) orphan(id string, at time.Time) *paynotify.Event {
	w.tb.Helper()
	ev := &paynotify.Event{ID: id, Type: paynotify.EventEndpointDisabled, Timestamp: at,
		Data: json.RawMessage(`{"endpoint": {"id": "x", "disabled_reason": "410 Gone"}}`)}
	MustCommit(w.tb, w.ctx, w.st, &paynotify.Change{Events: []*paynotify.Event{ev}})
	return ev
}

// log returns every event of the log, oldest first.
func (w *webhooks) log() []*paynotify.Event {
	w.tb.Helper()
	var all []*paynotify.Event
	for {
		f := paynotify.EventFilter{Limit: 100}
		if len(all) > 0 {
			f.After = all[len(all)-1].Seq
		}
		page := MustListEvents(w.tb, w.ctx, w.st, f)
		all = append(all, page...)
		if len(page) < 100 {
			return all
		}
	}
}

// logged returns event id as ListEvents returns it.
func (w *webhooks) logged(id string) *paynotify.Event {
	w.tb.Helper()
	for _, e := range w.log() {
		if e.ID == id {
			return e
		}
	}
	w.tb.Fatalf("event %s not in the log", id)
	return nil
}

// lastSeq is the Seq of the last event of the log (0 when empty).
func (w *webhooks) lastSeq() int64 {
	w.tb.Helper()
	all := w.log()
	if len(all) == 0 {
		return 0
	}
	return all[len(all)-1].Seq
}

func (w *webhooks) fanOut(now time.Time, limit int) int {
	w.tb.Helper()
	n, err := w.ws.FanOutWebhooks(w.ctx, now, limit)
	if err != nil {
		w.tb.Fatalf("FanOutWebhooks: %v", err)
	}
	return n
}

func (w *webhooks) claim(endpoint string, now time.Time, lease time.Duration, limit int) []*paynotify.WebhookDelivery {
	w.tb.Helper()
	ds, err := w.ws.ClaimWebhookDeliveries(w.ctx, endpoint, now, lease, limit)
	if err != nil {
		w.tb.Fatalf("ClaimWebhookDeliveries(%s): %v", endpoint, err)
	}
	return ds
}

// claimOnly claims and fails the test unless exactly the deliveries of events are claimed, in
// that order.
func (w *webhooks) claimOnly(endpoint string, now time.Time, lease time.Duration, events ...string) []*paynotify.WebhookDelivery {
	w.tb.Helper()
	ds := w.claim(endpoint, now, lease, 100)
	checkStrings(w.tb, fmt.Sprintf("claimed for %s at %s", endpoint, fmtTime(&now)), deliveryEvents(ds), events)
	if len(ds) != len(events) {
		w.tb.FailNow()
	}
	return ds
}

func (w *webhooks) finish(results ...paynotify.WebhookResult) {
	w.tb.Helper()
	if err := w.ws.FinishWebhookDeliveries(w.ctx, results); err != nil {
		w.tb.Fatalf("FinishWebhookDeliveries: %v", err)
	}
}

func (w *webhooks) deliveries(eventID string) []*paynotify.WebhookDelivery {
	w.tb.Helper()
	ds, err := w.ws.ListWebhookDeliveries(w.ctx, eventID)
	if err != nil {
		w.tb.Fatalf("ListWebhookDeliveries(%s): %v", eventID, err)
	}
	return ds
}

// delivery returns the delivery of eventID to endpoint, nil if there is none.
func (w *webhooks) delivery(eventID, endpoint string) *paynotify.WebhookDelivery {
	w.tb.Helper()
	var found *paynotify.WebhookDelivery
	for _, d := range w.deliveries(eventID) {
		if d.EndpointID == endpoint {
			if found != nil {
				w.tb.Errorf("event %s has two deliveries to %s", eventID, endpoint)
			}
			found = d
		}
	}
	return found
}

// mustDelivery is delivery, failing the test when there is none.
func (w *webhooks) mustDelivery(eventID, endpoint string) *paynotify.WebhookDelivery {
	w.tb.Helper()
	d := w.delivery(eventID, endpoint)
	if d == nil {
		w.tb.Fatalf("no delivery of %s to %s", eventID, endpoint)
	}
	return d
}

func (w *webhooks) attempts(f paynotify.WebhookAttemptFilter) []*paynotify.WebhookAttempt {
	w.tb.Helper()
	as, err := w.ws.ListWebhookAttempts(w.ctx, f)
	if err != nil {
		w.tb.Fatalf("ListWebhookAttempts: %v", err)
	}
	return as
}

func deliveryEvents(ds []*paynotify.WebhookDelivery) []string {
	ids := []string{}
	for _, d := range ds {
		ids = append(ids, d.EventID)
	}
	return ids
}

func deliveryEndpoints(ds []*paynotify.WebhookDelivery) []string {
	ids := []string{}
	for _, d := range ds {
		ids = append(ids, d.EndpointID)
	}
	return ids
}

func endpointIDs(es []*paynotify.WebhookEndpoint) []string {
	ids := []string{}
	for _, e := range es {
		ids = append(ids, e.ID)
	}
	return ids
}

func attemptIDs(as []*paynotify.WebhookAttempt) []string {
	ids := []string{}
	for _, a := range as {
		ids = append(ids, a.ID)
	}
	return ids
}

// storedEndpoint returns what a store reads back for e: times in UTC to the microsecond, empty
// filters as empty slices.
func storedEndpoint(e *paynotify.WebhookEndpoint) *paynotify.WebhookEndpoint {
	n := *e
	n.CreatedAt, n.UpdatedAt = trunc(n.CreatedAt), trunc(n.UpdatedAt)
	n.OldSecretUntil, n.FailingSince = truncPtr(n.OldSecretUntil), truncPtr(n.FailingSince)
	if len(n.Events) == 0 {
		n.Events = []paynotify.EventType{}
	}
	if len(n.Apps) == 0 {
		n.Apps = []string{}
	}
	return &n
}

func dumpEndpoint(e *paynotify.WebhookEndpoint) string {
	return fmt.Sprintf("%+v old_secret_until=%s failing_since=%s", *e, fmtTime(e.OldSecretUntil), fmtTime(e.FailingSince))
}

// checkEndpoint fails the test unless got is want as a store reads it back.
func checkEndpoint(tb testing.TB, got, want *paynotify.WebhookEndpoint) {
	tb.Helper()
	if got == nil {
		tb.Fatalf("endpoint = nil, want %s", want.ID)
	}
	checkUTC(tb, "endpoint CreatedAt", got.CreatedAt)
	checkUTC(tb, "endpoint UpdatedAt", got.UpdatedAt)
	for what, t := range map[string]*time.Time{"OldSecretUntil": got.OldSecretUntil, "FailingSince": got.FailingSince} {
		if t != nil {
			checkUTC(tb, "endpoint "+what, *t)
		}
	}
	if got.Events == nil || got.Apps == nil {
		tb.Errorf("endpoint %s: Events %#v, Apps %#v: want non-nil slices", got.ID, got.Events, got.Apps)
	}
	if g, w := storedEndpoint(got), storedEndpoint(want); !reflect.DeepEqual(g, w) {
		tb.Errorf("endpoint:\n got %s\nwant %s", dumpEndpoint(g), dumpEndpoint(w))
	}
}

func dumpDelivery(d *paynotify.WebhookDelivery) string {
	return fmt.Sprintf("%+v next=%s delivered=%s payload=%q", *d, fmtTime(d.NextAttemptAt), fmtTime(d.DeliveredAt), d.Payload)
}

// checkDelivery fails the test unless got is want as a store reads it back; Payload and Token are
// compared only when want has them, ID only when want has one.
func checkDelivery(tb testing.TB, got, want *paynotify.WebhookDelivery) {
	tb.Helper()
	if got == nil {
		tb.Fatalf("delivery = nil, want one of %s to %s", want.EventID, want.EndpointID)
	}
	checkUTC(tb, "delivery CreatedAt", got.CreatedAt)
	checkUTC(tb, "delivery UpdatedAt", got.UpdatedAt)
	for what, t := range map[string]*time.Time{"NextAttemptAt": got.NextAttemptAt, "DeliveredAt": got.DeliveredAt} {
		if t != nil {
			checkUTC(tb, "delivery "+what, *t)
		}
	}
	g, w := *got, *want
	g.CreatedAt, g.UpdatedAt, w.CreatedAt, w.UpdatedAt = trunc(g.CreatedAt), trunc(g.UpdatedAt), trunc(w.CreatedAt), trunc(w.UpdatedAt)
	g.NextAttemptAt, g.DeliveredAt = truncPtr(g.NextAttemptAt), truncPtr(g.DeliveredAt)
	w.NextAttemptAt, w.DeliveredAt = truncPtr(w.NextAttemptAt), truncPtr(w.DeliveredAt)
	if w.ID == "" {
		g.ID = ""
	} else if g.ID == "" {
		tb.Errorf("delivery of %s to %s has no ID", want.EventID, want.EndpointID)
	}
	if w.Payload == nil {
		g.Payload = nil
	}
	if w.Token == "" && g.Status == paynotify.DeliveryPending && g.Token != "" && want.Status == paynotify.DeliveryPending {
		g.Token = "" // a claimed pending delivery; the caller did not say which token
	}
	if !reflect.DeepEqual(g, w) {
		tb.Errorf("delivery:\n got %s\nwant %s", dumpDelivery(&g), dumpDelivery(&w))
	}
}

// pendingDelivery is the delivery that FanOutWebhooks (or a resend) makes of ev to endpoint at now.
func pendingDelivery(endpoint string, ev *paynotify.Event, now time.Time) *paynotify.WebhookDelivery {
	return &paynotify.WebhookDelivery{EndpointID: endpoint, EventID: ev.ID, EventType: ev.Type, EventSeq: ev.Seq,
		App: ev.App, OutTradeNo: ev.OutTradeNo, Status: paynotify.DeliveryPending, NextAttemptAt: &now,
		CreatedAt: now, UpdatedAt: now}
}

// attempt is an attempt made at at: delivered (HTTP 200) when errText is "", else failed (HTTP 500).
func attempt(at time.Time, errText string) *paynotify.WebhookAttempt {
	a := &paynotify.WebhookAttempt{At: at, Status: 200, DurationMS: 42, Response: []byte("ok\x00\xff")}
	if errText != "" {
		a.Status, a.Response, a.Error = 500, []byte(`{"error":"boom"}`), errText
	}
	return a
}

// delivered is the result of a delivered attempt at at.
func delivered(d *paynotify.WebhookDelivery, at time.Time) paynotify.WebhookResult {
	return paynotify.WebhookResult{Delivery: d, Attempt: attempt(at, ""), Status: paynotify.DeliveryDelivered}
}

// retry is the result of a failed attempt at at, due again at next.
func retry(d *paynotify.WebhookDelivery, at, next time.Time) paynotify.WebhookResult {
	return paynotify.WebhookResult{Delivery: d, Attempt: attempt(at, "HTTP 500"), Status: paynotify.DeliveryPending,
		Next: &next, Failed: true}
}

// giveUp is the result of a failed last attempt at at.
func giveUp(d *paynotify.WebhookDelivery, at time.Time) paynotify.WebhookResult {
	return paynotify.WebhookResult{Delivery: d, Attempt: attempt(at, "HTTP 500"), Status: paynotify.DeliveryFailed, Failed: true}
}

func (s *suite) testWebhookEndpoints(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		w := s.setupWebhooks(t)
		until := T0.Add(24*time.Hour + 789)
		e := newEndpoint("we1")
		e.Events = []paynotify.EventType{paynotify.EventOrderPaid, paynotify.EventEndpointDisabled}
		e.Apps = []string{"app1", "应用2"}
		e.OldSecret, e.OldSecretUntil = "whsec_b2xk", &until
		e.UpdatedAt = T0.Add(time.Second + 789)
		e.Cursor = 99 // set by the store
		if err := w.ws.CreateWebhookEndpoint(w.ctx, e); err != nil {
			t.Fatal(err)
		}
		if e.Cursor != 0 {
			t.Errorf("Cursor on an empty log = %d, want 0", e.Cursor)
		}
		checkEndpoint(t, w.get("we1"), e)
	})

	t.Run("OKCursorAtCreation", func(t *testing.T) {
		// A new endpoint continues from the last event of the log.
		w := s.setupWebhooks(t)
		w.paid("app1", "T1", "e1", T0)
		w.paid("app1", "T2", "e2", T0)
		e := w.endpoint("we1", nil)
		if want := w.lastSeq(); e.Cursor != want || want == 0 {
			t.Errorf("Cursor = %d, want %d (the last event)", e.Cursor, want)
		}
		if got := w.get("we1"); got.Cursor != e.Cursor {
			t.Errorf("stored Cursor = %d, want %d", got.Cursor, e.Cursor)
		}
	})

	t.Run("OKEmptyFilters", func(t *testing.T) {
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.endpoint("we2", func(e *paynotify.WebhookEndpoint) { e.Events, e.Apps = []paynotify.EventType{}, []string{} })
		for _, id := range []string{"we1", "we2"} {
			got := w.get(id)
			if got.Events == nil || len(got.Events) != 0 || got.Apps == nil || len(got.Apps) != 0 {
				t.Errorf("%s: Events %#v, Apps %#v; want empty, non-nil", id, got.Events, got.Apps)
			}
		}
	})

	t.Run("OKList", func(t *testing.T) {
		w := s.setupWebhooks(t)
		// Created out of id order; the NATS endpoint between the two HTTP ones.
		w.endpoint("we3", nil)
		w.endpoint(paynotify.EndpointNATSID, func(e *paynotify.WebhookEndpoint) {
			e.Kind, e.URL, e.CreatedAt = paynotify.EndpointNATS, "nats://localhost:4222", T0.Add(time.Second)
		})
		w.endpoint("we1", func(e *paynotify.WebhookEndpoint) { e.CreatedAt = T0.Add(2 * time.Second) })
		for _, tc := range []struct {
			kind string
			want []string
		}{{"", []string{"we3", "nats", "we1"}}, {paynotify.EndpointHTTP, []string{"we3", "we1"}},
			{paynotify.EndpointNATS, []string{"nats"}}, {"smtp", nil}} {
			es, err := w.ws.ListWebhookEndpoints(w.ctx, tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			checkStrings(t, fmt.Sprintf("endpoints of kind %q", tc.kind), endpointIDs(es), tc.want)
			for _, e := range es {
				checkEndpoint(t, e, w.get(e.ID))
			}
		}
	})

	t.Run("ErrGetNotFound", func(t *testing.T) {
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		_, err := w.ws.GetWebhookEndpoint(w.ctx, "we2")
		checkNotFound(t, err)
	})

	t.Run("ErrDuplicateID", func(t *testing.T) {
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		if err := w.ws.CreateWebhookEndpoint(w.ctx, newEndpoint("we1")); err == nil {
			t.Errorf("CreateWebhookEndpoint with a duplicate id succeeded")
		}
	})

	t.Run("OKUpdate", func(t *testing.T) {
		w := s.setupWebhooks(t)
		e := w.endpoint("we1", func(e *paynotify.WebhookEndpoint) { e.Events = []paynotify.EventType{paynotify.EventOrderPaid} })
		url, desc, secret := "https://other.example/h", "", "whsec_bmV3"
		events, apps := []paynotify.EventType{}, []string{"app2"}
		until := T0.Add(time.Hour + 789)
		before := time.Now()
		got := w.update("we1", &paynotify.WebhookEndpointUpdate{URL: &url, Events: &events, Apps: &apps, Description: &desc,
			Secret: &secret, OldSecretUntil: &until})
		after := time.Now()
		want := *e
		want.URL, want.Events, want.Apps, want.Description = url, nil, apps, ""
		want.OldSecret, want.OldSecretUntil, want.Secret = e.Secret, &until, secret
		if got.UpdatedAt.Before(trunc(before)) || got.UpdatedAt.After(after) {
			t.Errorf("UpdatedAt = %s, want between %s and %s", fmtTime(&got.UpdatedAt), fmtTime(&before), fmtTime(&after))
		}
		want.UpdatedAt = got.UpdatedAt
		checkEndpoint(t, got, &want)
		checkEndpoint(t, w.get("we1"), &want)

		// Nil fields are left alone.
		desc = "only this"
		got = w.update("we1", &paynotify.WebhookEndpointUpdate{Description: &desc})
		want.Description, want.UpdatedAt = desc, got.UpdatedAt
		checkEndpoint(t, w.get("we1"), &want)

		// A new secret without OldSecretUntil drops the old one.
		secret = "whsec_dGhpcmQ="
		got = w.update("we1", &paynotify.WebhookEndpointUpdate{Secret: &secret})
		want.Secret, want.OldSecret, want.OldSecretUntil, want.UpdatedAt = secret, "", nil, got.UpdatedAt
		checkEndpoint(t, w.get("we1"), &want)
	})

	t.Run("ErrUpdateNotFound", func(t *testing.T) {
		w := s.setupWebhooks(t)
		desc := "x"
		_, err := w.ws.UpdateWebhookEndpoint(w.ctx, "we1", &paynotify.WebhookEndpointUpdate{Description: &desc})
		checkNotFound(t, err)
	})

	t.Run("OKUpdateEvent", func(t *testing.T) {
		// The event is appended to the log with the update.
		w := s.setupWebhooks(t)
		w.paid("app1", "T1", "e1", T0)
		w.endpoint("we1", nil)
		ev := &paynotify.Event{ID: "e2", Type: paynotify.EventEndpointDisabled, Timestamp: T0.Add(time.Minute + 789),
			Data: json.RawMessage(`{"endpoint" : {"id":"we1",  "status":"disabled"}}`)}
		disabled := paynotify.EndpointDisabled
		w.update("we1", &paynotify.WebhookEndpointUpdate{Status: &disabled, DisabledReason: "410 Gone", Event: ev})
		log := w.log()
		checkStrings(t, "events", eventIDs(log), []string{"e1", "e2"})
		if len(log) == 2 {
			checkEvent(t, log[1], ev)
		}
	})

	t.Run("ErrIfStatus", func(t *testing.T) {
		// Two processes disable a failing endpoint: one wins, the other gets ECONFLICT, and one
		// endpoint.disabled is in the log.
		w := s.setupWebhooks(t)
		e := w.endpoint("we1", nil)
		disabled := paynotify.EndpointDisabled
		for i, reason := range []string{"410 Gone", "failing for 5 days"} {
			ev := &paynotify.Event{ID: fmt.Sprint("e", i+1), Type: paynotify.EventEndpointDisabled, Timestamp: T0,
				Data: json.RawMessage(`{}`)}
			_, err := w.ws.UpdateWebhookEndpoint(w.ctx, "we1", &paynotify.WebhookEndpointUpdate{Status: &disabled,
				DisabledReason: reason, IfStatus: paynotify.EndpointEnabled, Event: ev})
			if i == 0 && err != nil {
				t.Fatalf("first disable: %v", err)
			}
			if i == 1 && paynotify.ErrorCode(err) != paynotify.ECONFLICT {
				t.Fatalf("second disable: err = %v (code %q), want code %q", err, paynotify.ErrorCode(err), paynotify.ECONFLICT)
			}
		}
		checkStrings(t, "events", eventIDs(w.log()), []string{"e1"})
		want := *e
		want.Status, want.DisabledReason = disabled, "410 Gone"
		got := w.get("we1")
		want.UpdatedAt = got.UpdatedAt
		checkEndpoint(t, got, &want)

		// IfStatus alone, matching, applies the rest.
		desc := "checked"
		if _, err := w.ws.UpdateWebhookEndpoint(w.ctx, "we1", &paynotify.WebhookEndpointUpdate{Description: &desc,
			IfStatus: paynotify.EndpointDisabled}); err != nil {
			t.Fatal(err)
		}
		if got := w.get("we1"); got.Description != desc {
			t.Errorf("Description = %q, want %q", got.Description, desc)
		}
	})

	t.Run("ErrIfFailingBefore", func(t *testing.T) {
		// A disable for failing, decided on a copy of the endpoint read before an attempt,
		// applies only while the stored FailingSince is set and not after IfFailingBefore: an
		// endpoint delivered to meanwhile (FailingSince cleared) or failing only since later
		// stays enabled, and no endpoint.disabled is logged.
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.paid("app1", "T1", "e1", T0)
		disabled := paynotify.EndpointDisabled
		disable := func(id string, before time.Time) error {
			ev := &paynotify.Event{ID: id, Type: paynotify.EventEndpointDisabled, Timestamp: T0, Data: json.RawMessage(`{}`)}
			_, err := w.ws.UpdateWebhookEndpoint(w.ctx, "we1", &paynotify.WebhookEndpointUpdate{Status: &disabled,
				DisabledReason: "failing", IfStatus: paynotify.EndpointEnabled, IfFailingBefore: &before, Event: ev})
			return err
		}
		if err := disable("x1", T0.Add(time.Hour)); paynotify.ErrorCode(err) != paynotify.ECONFLICT {
			t.Fatalf("never failed: err = %v, want code %q", err, paynotify.ECONFLICT)
		}
		w.fanOut(T0, 10)
		t1 := T0.Add(time.Second)
		d := w.claimOnly("we1", T0, time.Minute, "e1")[0]
		w.finish(retry(d, t1, t1.Add(time.Minute)))
		if err := disable("x2", t1.Add(-time.Millisecond)); paynotify.ErrorCode(err) != paynotify.ECONFLICT {
			t.Fatalf("failing only since after IfFailingBefore: err = %v, want code %q", err, paynotify.ECONFLICT)
		}
		if got := w.get("we1"); got.Status != paynotify.EndpointEnabled {
			t.Fatalf("status = %s after refused disables", got.Status)
		}
		if err := disable("x3", t1); err != nil {
			t.Fatalf("failing since IfFailingBefore: %v", err)
		}
		if got := w.get("we1"); got.Status != disabled {
			t.Fatalf("status = %s, want %s", got.Status, disabled)
		}
		checkStrings(t, "events", eventIDs(w.log()), []string{"e1", "x3"})
	})

	t.Run("OKDisable", func(t *testing.T) {
		// Disabling fails the endpoint's pending deliveries, claimed or not, and nothing else.
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.endpoint("we2", nil)
		w.paid("app1", "T1", "e1", T0)
		w.paid("app1", "T2", "e2", T0)
		w.paid("app1", "T3", "e3", T0)
		now := T0.Add(time.Minute)
		w.fanOut(now, 10)
		ds := w.claimOnly("we1", now, time.Minute, "e1", "e2", "e3")
		w.finish(delivered(ds[0], now), paynotify.WebhookResult{Delivery: ds[2], Status: paynotify.DeliveryPending, Next: &now})
		e1 := w.mustDelivery("e1", "we1")
		disabled := paynotify.EndpointDisabled
		before := time.Now()
		got := w.update("we1", &paynotify.WebhookEndpointUpdate{Status: &disabled, DisabledReason: "410 Gone"})
		if got.Status != disabled || got.DisabledReason != "410 Gone" {
			t.Errorf("endpoint after disable: %s", dumpEndpoint(got))
		}
		checkDelivery(t, w.mustDelivery("e1", "we1"), e1)
		for _, id := range []string{"e2", "e3"} {
			d := w.mustDelivery(id, "we1")
			if d.Status != paynotify.DeliveryFailed || d.LastError != "endpoint disabled: 410 Gone" || d.NextAttemptAt != nil ||
				d.Token != "" || d.UpdatedAt.Before(trunc(before)) {
				t.Errorf("%s after disable: %s", id, dumpDelivery(d))
			}
		}
		for _, id := range []string{"e1", "e2", "e3"} {
			if d := w.mustDelivery(id, "we2"); d.Status != paynotify.DeliveryPending {
				t.Errorf("%s to the other endpoint: %s", id, dumpDelivery(d))
			}
		}
		// The claim of e2 no longer holds: its end records the attempt only.
		w.finish(delivered(ds[1], now))
		if d := w.mustDelivery("e2", "we1"); d.Status != paynotify.DeliveryFailed || d.Attempts != 0 {
			t.Errorf("e2 after the end of its claim: %s", dumpDelivery(d))
		}
		checkStrings(t, "claimed after disable", deliveryEvents(w.claim("we1", now.Add(time.Hour), time.Minute, 10)), nil)
		// A disabled endpoint gets no deliveries.
		cursor := got.Cursor
		w.paid("app1", "T4", "e4", T0)
		if n := w.fanOut(now, 10); n != 1 {
			t.Errorf("FanOutWebhooks = %d, want 1 (we2 only)", n)
		}
		if d := w.delivery("e4", "we1"); d != nil {
			t.Errorf("delivery to a disabled endpoint: %s", dumpDelivery(d))
		}
		if got := w.get("we1"); got.Cursor != cursor {
			t.Errorf("disabled endpoint's Cursor moved from %d to %d", cursor, got.Cursor)
		}
	})

	t.Run("OKEnable", func(t *testing.T) {
		// Enabling continues from the last event: what was committed while disabled is not
		// delivered (RecoverWebhooks does that), and FailingSince and DisabledReason are cleared.
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.paid("app1", "T1", "e1", T0)
		now := T0.Add(time.Minute)
		w.fanOut(now, 10)
		d := w.claimOnly("we1", now, time.Minute, "e1")[0]
		w.finish(giveUp(d, now))
		if got := w.get("we1"); !sameTime(got.FailingSince, &now) {
			t.Fatalf("FailingSince = %s, want %s", fmtTime(got.FailingSince), fmtTime(&now))
		}
		disabled, enabled := paynotify.EndpointDisabled, paynotify.EndpointEnabled
		w.update("we1", &paynotify.WebhookEndpointUpdate{Status: &disabled, DisabledReason: "failing for 5 days"})
		w.paid("app1", "T2", "e2", T0)
		w.orphan("e3", T0)
		// A resend that checked the endpoint just before the disable committed (the store does
		// not check): deliveries pending on a disabled endpoint.
		if n, err := w.ws.RedeliverEvent(w.ctx, "e1", []string{"we1"}, now); err != nil || n != 1 {
			t.Fatalf("RedeliverEvent while disabled = %d, %v; want 1", n, err)
		}
		got := w.update("we1", &paynotify.WebhookEndpointUpdate{Status: &enabled, IfStatus: disabled})
		if got.Status != enabled || got.DisabledReason != "" || got.FailingSince != nil || got.Cursor != w.lastSeq() {
			t.Errorf("endpoint after enable: %s; want Cursor %d", dumpEndpoint(got), w.lastSeq())
		}
		checkEndpoint(t, w.get("we1"), got)
		// Enabling failed what was queued while disabled: it does not go out unasked.
		if d := w.mustDelivery("e1", "we1"); d.Status != paynotify.DeliveryFailed || d.LastError != paynotify.DisabledQueued || d.NextAttemptAt != nil {
			t.Errorf("delivery queued while disabled, after enable: %s; want failed with %q", dumpDelivery(d), paynotify.DisabledQueued)
		}
		w.paid("app1", "T4", "e4", T0)
		if n := w.fanOut(now, 10); n != 1 {
			t.Errorf("FanOutWebhooks = %d, want 1", n)
		}
		for _, id := range []string{"e2", "e3"} {
			if d := w.delivery(id, "we1"); d != nil {
				t.Errorf("event committed while disabled delivered: %s", dumpDelivery(d))
			}
		}
		w.mustDelivery("e4", "we1")
		checkStrings(t, "claimed after enable", deliveryEvents(w.claim("we1", now.Add(time.Hour), time.Minute, 10)), []string{"e4"})
	})

	t.Run("OKDelete", func(t *testing.T) {
		// Deleting an endpoint deletes its deliveries and attempts, not another's.
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.endpoint("we2", nil)
		w.paid("app1", "T1", "e1", T0)
		now := T0.Add(time.Minute)
		w.fanOut(now, 10)
		for _, id := range []string{"we1", "we2"} {
			d := w.claimOnly(id, now, time.Minute, "e1")[0]
			w.finish(retry(d, now, now.Add(time.Minute)))
		}
		if err := w.ws.DeleteWebhookEndpoint(w.ctx, "we1"); err != nil {
			t.Fatal(err)
		}
		_, err := w.ws.GetWebhookEndpoint(w.ctx, "we1")
		checkNotFound(t, err)
		checkStrings(t, "deliveries of e1", deliveryEndpoints(w.deliveries("e1")), []string{"we2"})
		checkStrings(t, "attempts of we1", attemptIDs(w.attempts(paynotify.WebhookAttemptFilter{EndpointID: "we1"})), nil)
		if as := w.attempts(paynotify.WebhookAttemptFilter{EventID: "e1"}); len(as) != 1 || as[0].EndpointID != "we2" {
			t.Errorf("attempts of e1 = %d, want the one to we2", len(as))
		}
		checkStrings(t, "endpoints", endpointIDs(mustListEndpoints(t, w)), []string{"we2"})
		checkNotFound(t, w.ws.DeleteWebhookEndpoint(w.ctx, "we1"))
		// A claim ended after its endpoint was deleted does not fail the batch.
		w.endpoint("we3", nil)
		w.paid("app1", "T2", "e2", T0)
		w.fanOut(now, 10)
		d3 := w.claimOnly("we3", now, time.Minute, "e2")[0]
		d2 := w.claimOnly("we2", now, time.Minute, "e2")[0]
		if err := w.ws.DeleteWebhookEndpoint(w.ctx, "we3"); err != nil {
			t.Fatal(err)
		}
		w.finish(delivered(d3, now), delivered(d2, now))
		if d := w.mustDelivery("e2", "we2"); d.Status != paynotify.DeliveryDelivered {
			t.Errorf("e2 to we2: %s", dumpDelivery(d))
		}
	})
}

func mustListEndpoints(tb testing.TB, w *webhooks) []*paynotify.WebhookEndpoint {
	tb.Helper()
	es, err := w.ws.ListWebhookEndpoints(w.ctx, "")
	if err != nil {
		tb.Fatal(err)
	}
	return es
}

func (s *suite) testWebhookFanOut(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		w := s.setupWebhooks(t)
		w.paid("app1", "T0", "e0", T0) // before the endpoint: not delivered
		w.endpoint("we1", nil)
		w.paid("app1", "T1", "e1", T0)
		w.event("app1", "T1", "e2", paynotify.EventOrderFinished, T0)
		now := T0.Add(time.Minute + 789)
		if n := w.fanOut(now, 10); n != 2 {
			t.Errorf("FanOutWebhooks = %d, want 2", n)
		}
		if d := w.delivery("e0", "we1"); d != nil {
			t.Errorf("event before the endpoint delivered: %s", dumpDelivery(d))
		}
		for _, id := range []string{"e1", "e2"} {
			checkDelivery(t, w.mustDelivery(id, "we1"), pendingDelivery("we1", w.logged(id), now))
		}
		if got := w.get("we1").Cursor; got != w.lastSeq() {
			t.Errorf("Cursor = %d, want %d", got, w.lastSeq())
		}
		if n := w.fanOut(now, 10); n != 0 {
			t.Errorf("FanOutWebhooks again = %d, want 0", n)
		}
		checkStrings(t, "deliveries of e1", deliveryEndpoints(w.deliveries("e1")), []string{"we1"})
	})

	t.Run("OKFilters", func(t *testing.T) {
		// Events and Apps filters; an event without an app passes any Apps filter.
		w := s.setupWebhooks(t)
		w.endpoint("all", nil)
		w.endpoint("types", func(e *paynotify.WebhookEndpoint) {
			e.Events = []paynotify.EventType{paynotify.EventOrderFinished, paynotify.EventEndpointDisabled}
		})
		w.endpoint("apps", func(e *paynotify.WebhookEndpoint) { e.Apps = []string{"app2"} })
		w.endpoint("both", func(e *paynotify.WebhookEndpoint) {
			e.Events, e.Apps = []paynotify.EventType{paynotify.EventOrderPaid}, []string{"app1", "app3"}
		})
		w.paid("app1", "T1", "e1", T0)
		w.paid("app2", "T1", "e2", T0)
		w.event("app1", "T1", "e3", paynotify.EventOrderFinished, T0)
		w.event("app2", "T1", "e4", paynotify.EventOrderFinished, T0)
		w.orphan("e5", T0)
		if n := w.fanOut(T0, 100); n != 5+3+3+1 {
			t.Errorf("FanOutWebhooks = %d, want 12", n)
		}
		want := map[string][]string{"e1": {"all", "both"}, "e2": {"all", "apps"}, "e3": {"all", "types"},
			"e4": {"all", "types", "apps"}, "e5": {"all", "types", "apps"}}
		for id, endpoints := range want {
			got := deliveryEndpoints(w.deliveries(id))
			slices.Sort(got) // all created at once: in whatever order the endpoints were visited
			slices.Sort(endpoints)
			checkStrings(t, "deliveries of "+id, got, endpoints)
		}
		for _, id := range []string{"all", "types", "apps", "both"} {
			if got := w.get(id).Cursor; got != w.lastSeq() {
				t.Errorf("%s: Cursor = %d, want %d", id, got, w.lastSeq())
			}
		}
	})

	t.Run("OKLimit", func(t *testing.T) {
		// limit counts the events read, wanted or not; the Cursor moves to the last one read.
		w := s.setupWebhooks(t)
		w.endpoint("we1", func(e *paynotify.WebhookEndpoint) { e.Events = []paynotify.EventType{paynotify.EventOrderFinished} })
		w.paid("app1", "T1", "e1", T0)
		w.paid("app1", "T2", "e2", T0)
		w.event("app1", "T1", "e3", paynotify.EventOrderFinished, T0)
		w.event("app1", "T2", "e4", paynotify.EventOrderFinished, T0)
		log := w.log()
		for i, want := range []int{0, 2} {
			if n := w.fanOut(T0, 2); n != want {
				t.Errorf("FanOutWebhooks %d = %d, want %d", i+1, n, want)
			}
			if got := w.get("we1").Cursor; got != log[2*i+1].Seq {
				t.Errorf("Cursor after FanOutWebhooks %d = %d, want %d", i+1, got, log[2*i+1].Seq)
			}
		}
		if n := w.fanOut(T0, 2); n != 0 {
			t.Errorf("FanOutWebhooks 3 = %d, want 0", n)
		}
	})

	t.Run("OKDefaultLimit", func(t *testing.T) {
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		c := &paynotify.Change{}
		for i := range 150 {
			c.Events = append(c.Events, paynotify.NewOrphanAnomalyEvent(fmt.Sprintf("e%03d", i), "app1", fmt.Sprint("T", i), T0,
				&paynotify.EventAnomaly{Reason: paynotify.ReasonUnknownOrder}))
		}
		MustCommit(t, w.ctx, w.st, c)
		if n := w.fanOut(T0, 0); n != 100 {
			t.Errorf("FanOutWebhooks with limit 0 = %d, want 100", n)
		}
	})

	t.Run("OKRedeliveredAhead", func(t *testing.T) {
		// An event resent before the fan-out reaches it is not added twice, nor counted.
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.paid("app1", "T1", "e1", T0)
		w.paid("app1", "T2", "e2", T0)
		if n, err := w.ws.RedeliverEvent(w.ctx, "e2", []string{"we1"}, T0); err != nil || n != 1 {
			t.Fatalf("RedeliverEvent = %d, %v; want 1", n, err)
		}
		if n := w.fanOut(T0.Add(time.Minute), 10); n != 1 {
			t.Errorf("FanOutWebhooks = %d, want 1", n)
		}
		checkStrings(t, "deliveries of e2", deliveryEndpoints(w.deliveries("e2")), []string{"we1"})
		checkDelivery(t, w.mustDelivery("e2", "we1"), pendingDelivery("we1", w.logged("e2"), T0))
		if got := w.get("we1").Cursor; got != w.lastSeq() {
			t.Errorf("Cursor = %d, want %d", got, w.lastSeq())
		}
	})

	t.Run("OKConcurrentProcesses", func(t *testing.T) {
		// Two stores on one database fan out at once, in small batches: every event is delivered
		// once to each endpoint, and the counts add up.
		w := s.setupWebhooks(t)
		stores := []paynotify.WebhookStore{w.ws, webhookStore(t, w.st.OpenAnother(t))}
		const nEvents = 60
		endpoints := []string{"we1", "we2", "we3"}
		for _, id := range endpoints {
			w.endpoint(id, nil)
		}
		c := &paynotify.Change{}
		for i := range nEvents {
			c.Events = append(c.Events, paynotify.NewOrphanAnomalyEvent(fmt.Sprintf("e%03d", i), "app1", fmt.Sprint("T", i%7), T0,
				&paynotify.EventAnomaly{Reason: paynotify.ReasonUnknownOrder}))
		}
		MustCommit(t, w.ctx, w.st, c)
		var (
			mu    sync.Mutex
			total int
			wg    sync.WaitGroup
		)
		start := make(chan struct{})
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ws := stores[g%len(stores)]
				<-start
				for range 100 {
					n, err := ws.FanOutWebhooks(w.ctx, T0, 7)
					if err != nil {
						t.Errorf("FanOutWebhooks: %v", err)
						return
					}
					mu.Lock()
					total += n
					mu.Unlock()
					if n == 0 {
						return
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		for n := w.fanOut(T0, 7); n > 0; n = w.fanOut(T0, 7) {
			total += n
		}
		if total != nEvents*len(endpoints) {
			t.Errorf("FanOutWebhooks added %d deliveries in all, want %d", total, nEvents*len(endpoints))
		}
		for i := range nEvents {
			id := fmt.Sprintf("e%03d", i)
			checkStrings(t, "deliveries of "+id, deliveryEndpoints(w.deliveries(id)), endpoints)
		}
	})
}

func (s *suite) testWebhookClaim(t *testing.T) {
	t.Run("OKPayload", func(t *testing.T) {
		// The payload is the event's JSON as the event log serves it, byte for byte.
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.paid("app1", "T1", "e1", T0.Add(789))
		odd := &paynotify.Event{ID: "e2", Type: paynotify.EventOrderAnomaly, Timestamp: T0, App: "app1", OutTradeNo: "T2",
			Data: json.RawMessage("{\"z\": 1,\n  \"a\": [1, 2.50, 1e3], \"s\": \"\\u00e9 é\", \"dup\": 1, \"dup\": 2}")}
		MustCommit(t, w.ctx, w.st, &paynotify.Change{Events: []*paynotify.Event{odd}})
		MustCommit(t, w.ctx, w.st, &paynotify.Change{Events: []*paynotify.Event{{ID: "e3", Type: paynotify.EventOrderAnomaly,
			Timestamp: T0, App: "app1", OutTradeNo: "T3"}}}) // no data
		now := T0.Add(time.Minute + 789)
		w.fanOut(now, 10)
		ds := w.claimOnly("we1", now, time.Minute, "e1", "e2", "e3")
		for _, d := range ds {
			want := pendingDelivery("we1", w.logged(d.EventID), now)
			want.NextAttemptAt = at(now.Add(time.Minute))
			want.Token = d.Token
			checkDelivery(t, d, want)
			if d.Token == "" {
				t.Errorf("%s: no Token", d.EventID)
			}
			if wantJSON := paynotify.EventJSON(w.logged(d.EventID)); !bytes.Equal(d.Payload, wantJSON) {
				t.Errorf("%s: Payload\n got %s\nwant %s", d.EventID, d.Payload, wantJSON)
			}
			// The listing sees the claim.
			checkDelivery(t, w.mustDelivery(d.EventID, "we1"), want)
		}
	})

	t.Run("OKTestDelivery", func(t *testing.T) {
		// A delivery of an event outside the log keeps its payload byte for byte and is due at its
		// CreatedAt.
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		payload := []byte("{\"id\":\"evt_test\", \"type\":\"webhook.test\",\n\"data\":{\"k\":\"é\\u00e9\"}}")
		d := &paynotify.WebhookDelivery{EndpointID: "we1", EventID: "evt_test", EventType: paynotify.EventWebhookTest,
			Payload: payload, CreatedAt: T0.Add(789)}
		if err := w.ws.AddWebhookDelivery(w.ctx, d); err != nil {
			t.Fatal(err)
		}
		if d.ID == "" {
			t.Errorf("AddWebhookDelivery left ID empty")
		}
		want := &paynotify.WebhookDelivery{ID: d.ID, EndpointID: "we1", EventID: "evt_test", EventType: paynotify.EventWebhookTest,
			Status: paynotify.DeliveryPending, NextAttemptAt: at(T0), CreatedAt: T0, UpdatedAt: T0}
		ds := w.deliveries("evt_test")
		if len(ds) != 1 {
			t.Fatalf("deliveries of evt_test = %d, want 1", len(ds))
		}
		checkDelivery(t, ds[0], want)
		checkStrings(t, "claimed before due", deliveryEvents(w.claim("we1", T0.Add(-time.Microsecond), time.Minute, 10)), nil)
		got := w.claimOnly("we1", T0.Add(789), time.Minute, "evt_test")[0]
		if !bytes.Equal(got.Payload, payload) {
			t.Errorf("Payload = %q, want %q", got.Payload, payload)
		}
		if got.EventSeq != 0 {
			t.Errorf("EventSeq = %d, want 0", got.EventSeq)
		}
		if _, err := w.ws.RedeliverEvent(w.ctx, "evt_test", []string{"we1"}, T0); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
			t.Errorf("RedeliverEvent of an event outside the log: err = %v, want ENOTFOUND", err)
		}
	})

	t.Run("OKOrderWaits", func(t *testing.T) {
		// A later event of an order is not claimable while the earlier one is pending (claimed or
		// due later); it is once the earlier one is delivered, or failed. Other orders (same
		// out_trade_no in another app included) are not held back.
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.paid("app1", "T1", "e1", T0)
		w.event("app1", "T1", "e2", paynotify.EventOrderFinished, T0)
		w.paid("app1", "T2", "e3", T0)
		w.event("app1", "T2", "e4", paynotify.EventOrderFinished, T0)
		w.paid("app2", "T1", "e5", T0)
		w.event("app1", "T1", "e6", paynotify.EventOrderRefunded, T0)
		now := T0
		w.fanOut(now, 10)
		ds := w.claimOnly("we1", now, time.Minute, "e1", "e3", "e5")
		// Claimed: the later ones still wait, even when the claim has expired.
		checkStrings(t, "claimed", deliveryEvents(w.claim("we1", now.Add(time.Hour), time.Minute, 10)), []string{"e1", "e3", "e5"})
		ds = w.claimOnly("we1", now.Add(2*time.Hour), time.Minute, "e1", "e3", "e5")
		now = now.Add(2 * time.Hour)
		// e1 retried later: e2 and e6 still wait; e3 delivered: e4 follows; e5 failed.
		w.finish(retry(ds[0], now, now.Add(time.Hour)), delivered(ds[1], now), giveUp(ds[2], now))
		ds = w.claimOnly("we1", now, time.Minute, "e4")
		w.finish(delivered(ds[0], now))
		w.claimOnly("we1", now.Add(time.Hour), time.Minute, "e1")
		ds = w.claimOnly("we1", now.Add(2*time.Hour), time.Minute, "e1")
		w.finish(giveUp(ds[0], now.Add(2*time.Hour)))
		ds = w.claimOnly("we1", now.Add(2*time.Hour), time.Minute, "e2")
		w.finish(delivered(ds[0], now.Add(2*time.Hour)))
		w.claimOnly("we1", now.Add(2*time.Hour), time.Minute, "e6")
	})

	t.Run("OKOrderPerEndpoint", func(t *testing.T) {
		// A pending delivery holds back the later events of its order to its own endpoint only.
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.endpoint("we2", func(e *paynotify.WebhookEndpoint) { e.Events = []paynotify.EventType{paynotify.EventOrderFinished} })
		w.paid("app1", "T1", "e1", T0)
		w.event("app1", "T1", "e2", paynotify.EventOrderFinished, T0)
		w.fanOut(T0, 10)
		w.claimOnly("we2", T0, time.Minute, "e2")
		w.claimOnly("we1", T0, time.Minute, "e1")
	})

	t.Run("OKEarliestDueFirst", func(t *testing.T) {
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		for i := range 4 {
			w.paid("app1", fmt.Sprint("T", i+1), fmt.Sprint("e", i+1), T0)
		}
		w.fanOut(T0, 10)
		ds := w.claimOnly("we1", T0, time.Minute, "e1", "e2", "e3", "e4")
		// Due again: e4 first, then e1, then e3 and e2 at the same time (creation order).
		w.finish(retry(ds[0], T0, T0.Add(2*time.Minute)), retry(ds[1], T0, T0.Add(3*time.Minute)),
			retry(ds[2], T0, T0.Add(3*time.Minute)), retry(ds[3], T0, T0.Add(time.Minute)))
		w.claimOnly("we1", T0.Add(time.Minute), time.Hour, "e4")
		w.claimOnly("we1", T0.Add(3*time.Minute), time.Hour, "e1", "e2", "e3")
		if ds := w.claim("we1", T0.Add(5*time.Hour), time.Hour, 2); len(ds) != 2 || ds[0].EventID != "e4" || ds[1].EventID != "e1" {
			t.Errorf("claimed with limit 2 = %q, want [e4 e1]", deliveryEvents(ds))
		}
	})

	t.Run("OKLease", func(t *testing.T) {
		// A claimed delivery is not claimable again before now+lease; it is at now+lease, under a
		// new token.
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.paid("app1", "T1", "e1", T0)
		w.fanOut(T0, 10)
		now := T0.Add(789)
		first := w.claimOnly("we1", now, time.Minute, "e1")[0]
		if !sameTime(first.NextAttemptAt, at(now.Add(time.Minute))) {
			t.Errorf("NextAttemptAt = %s, want %s", fmtTime(first.NextAttemptAt), fmtTime(at(now.Add(time.Minute))))
		}
		w.claimOnly("we1", now.Add(time.Minute-time.Microsecond), time.Minute, []string{}...)
		second := w.claimOnly("we1", now.Add(time.Minute), time.Minute, "e1")[0]
		if second.Token == "" || second.Token == first.Token {
			t.Errorf("second claim's Token = %q, first %q: want a new one", second.Token, first.Token)
		}
	})

	t.Run("OKLimits", func(t *testing.T) {
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.paid("app1", "T1", "e1", T0)
		w.fanOut(T0, 10)
		for _, limit := range []int{0, -1} {
			if ds := w.claim("we1", T0, time.Minute, limit); len(ds) != 0 {
				t.Errorf("claimed with limit %d: %q", limit, deliveryEvents(ds))
			}
		}
		for _, lease := range []time.Duration{0, -time.Minute} {
			if ds, err := w.ws.ClaimWebhookDeliveries(w.ctx, "we1", T0, lease, 10); err == nil {
				t.Errorf("ClaimWebhookDeliveries with lease %s = %q, want an error", lease, deliveryEvents(ds))
			}
		}
		checkStrings(t, "claimed for another endpoint", deliveryEvents(w.claim("we2", T0, time.Minute, 10)), nil)
		w.claimOnly("we1", T0, time.Minute, "e1")
	})

	t.Run("OKConcurrentProcesses", func(t *testing.T) {
		// Two stores claim at once: every delivery is claimed once.
		w := s.setupWebhooks(t)
		stores := []paynotify.WebhookStore{w.ws, webhookStore(t, w.st.OpenAnother(t))}
		w.endpoint("we1", nil)
		const n = 80
		c := &paynotify.Change{}
		for i := range n {
			c.Events = append(c.Events, paynotify.NewOrphanAnomalyEvent(fmt.Sprintf("e%03d", i), "app1", fmt.Sprint("T", i), T0,
				&paynotify.EventAnomaly{Reason: paynotify.ReasonUnknownOrder}))
		}
		MustCommit(t, w.ctx, w.st, c)
		w.fanOut(T0, 100)
		var (
			mu      sync.Mutex
			claimed = map[string]int{}
			total   int
			wg      sync.WaitGroup
		)
		start := make(chan struct{})
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ws := stores[g%len(stores)]
				<-start
				for {
					ds, err := ws.ClaimWebhookDeliveries(w.ctx, "we1", T0, time.Hour, 7)
					if err != nil {
						t.Errorf("ClaimWebhookDeliveries: %v", err)
						return
					}
					if len(ds) == 0 {
						return
					}
					mu.Lock()
					for _, d := range ds {
						claimed[d.EventID]++
					}
					total += len(ds)
					over := total > n
					mu.Unlock()
					if over {
						return
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(claimed) != n {
			t.Errorf("%d deliveries claimed, want %d", len(claimed), n)
		}
		for id, k := range claimed {
			if k != 1 {
				t.Errorf("%s claimed %d times, want once", id, k)
			}
		}
	})
}

func (s *suite) testWebhookFinish(t *testing.T) {
	// setupOne returns a store with endpoint we1 and one claimed delivery of e1 (claimed at T0).
	setupOne := func(t *testing.T) (*webhooks, *paynotify.WebhookDelivery) {
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.paid("app1", "T1", "e1", T0)
		w.fanOut(T0, 10)
		return w, w.claimOnly("we1", T0, time.Minute, "e1")[0]
	}

	t.Run("OKDelivered", func(t *testing.T) {
		w, d := setupOne(t)
		now := T0.Add(time.Second + 789)
		res := delivered(d, now)
		// Only ID and Token of the delivery are used.
		res.Delivery = &paynotify.WebhookDelivery{ID: d.ID, Token: d.Token}
		w.finish(res)
		want := pendingDelivery("we1", w.logged("e1"), T0)
		want.Status, want.Attempts, want.NextAttemptAt, want.UpdatedAt, want.DeliveredAt = paynotify.DeliveryDelivered, 1, nil, now, &now
		checkDelivery(t, w.mustDelivery("e1", "we1"), want)
		as := w.attempts(paynotify.WebhookAttemptFilter{})
		if len(as) != 1 {
			t.Fatalf("attempts = %d, want 1", len(as))
		}
		checkUTC(t, "attempt At", as[0].At)
		if as[0].ID == "" || res.Attempt.ID != "" && as[0].ID != res.Attempt.ID {
			t.Errorf("attempt ID = %q (result's %q)", as[0].ID, res.Attempt.ID)
		}
		wantA := *res.Attempt
		wantA.ID, wantA.DeliveryID, wantA.EndpointID, wantA.EventID, wantA.EventType = as[0].ID, d.ID, "we1", "e1", paynotify.EventOrderPaid
		wantA.At = trunc(now)
		if !reflect.DeepEqual(as[0], &wantA) {
			t.Errorf("attempt:\n got %+v\nwant %+v", *as[0], wantA)
		}
		checkStrings(t, "claimed after delivered", deliveryEvents(w.claim("we1", T0.Add(time.Hour), time.Minute, 10)), nil)
	})

	t.Run("OKAttemptFields", func(t *testing.T) {
		// An attempt's ID and fields are kept as given; a nil Response stays nil.
		w, d := setupOne(t)
		a := &paynotify.WebhookAttempt{ID: "wha_1", DeliveryID: d.ID, EndpointID: "we1", EventID: "e1",
			EventType: paynotify.EventOrderPaid, At: T0.Add(789), Status: 0, DurationMS: 10000, Error: "timeout"}
		w.finish(paynotify.WebhookResult{Delivery: d, Attempt: a, Status: paynotify.DeliveryPending, Next: at(T0.Add(time.Hour)), Failed: true})
		as := w.attempts(paynotify.WebhookAttemptFilter{})
		want := *a
		want.At = trunc(a.At)
		if len(as) != 1 || !reflect.DeepEqual(as[0], &want) {
			t.Errorf("attempts = %+v, want [%+v]", as, want)
		}
	})

	t.Run("OKRetries", func(t *testing.T) {
		// Attempts count; FailingSince is set by the first failure, kept by the next, cleared by a
		// delivered attempt.
		w, d := setupOne(t)
		t1, t2, t3 := T0.Add(time.Second+789), T0.Add(time.Hour), T0.Add(2*time.Hour)
		w.finish(retry(d, t1, t2))
		want := pendingDelivery("we1", w.logged("e1"), T0)
		want.Attempts, want.NextAttemptAt, want.LastError, want.UpdatedAt = 1, &t2, "HTTP 500", t1
		checkDelivery(t, w.mustDelivery("e1", "we1"), want)
		if got := w.get("we1").FailingSince; !sameTime(got, &t1) {
			t.Errorf("FailingSince = %s, want %s", fmtTime(got), fmtTime(&t1))
		}
		d = w.claimOnly("we1", t2, time.Minute, "e1")[0]
		w.finish(retry(d, t2, t3))
		want.Attempts, want.NextAttemptAt, want.UpdatedAt = 2, &t3, t2
		checkDelivery(t, w.mustDelivery("e1", "we1"), want)
		if got := w.get("we1").FailingSince; !sameTime(got, &t1) {
			t.Errorf("FailingSince after a second failure = %s, want %s (kept)", fmtTime(got), fmtTime(&t1))
		}
		d = w.claimOnly("we1", t3, time.Minute, "e1")[0]
		w.finish(delivered(d, t3))
		want.Status, want.Attempts, want.NextAttemptAt, want.LastError, want.UpdatedAt, want.DeliveredAt =
			paynotify.DeliveryDelivered, 3, nil, "", t3, &t3
		checkDelivery(t, w.mustDelivery("e1", "we1"), want)
		if got := w.get("we1").FailingSince; got != nil {
			t.Errorf("FailingSince after delivered = %s, want nil", fmtTime(got))
		}
		as := w.attempts(paynotify.WebhookAttemptFilter{EventID: "e1"})
		if len(as) != 3 || !as[0].At.Equal(trunc(t3)) || !as[2].At.Equal(trunc(t1)) {
			t.Errorf("attempts = %d, want 3, newest first", len(as))
		}
	})

	t.Run("OKFailed", func(t *testing.T) {
		// Next is ignored unless the delivery stays pending.
		w, d := setupOne(t)
		now := T0.Add(time.Second)
		res := giveUp(d, now)
		res.Next = at(now.Add(time.Hour))
		w.finish(res)
		want := pendingDelivery("we1", w.logged("e1"), T0)
		want.Status, want.Attempts, want.NextAttemptAt, want.LastError, want.UpdatedAt = paynotify.DeliveryFailed, 1, nil, "HTTP 500", now
		checkDelivery(t, w.mustDelivery("e1", "we1"), want)
		checkStrings(t, "claimed after failed", deliveryEvents(w.claim("we1", T0.Add(time.Hour), time.Minute, 10)), nil)
	})

	t.Run("OKRelease", func(t *testing.T) {
		// A claim released without an attempt: no attempt, Attempts unchanged, due at Next.
		w, d := setupOne(t)
		next := T0.Add(time.Second)
		w.finish(paynotify.WebhookResult{Delivery: d, Status: paynotify.DeliveryPending, Next: &next})
		got := w.mustDelivery("e1", "we1")
		if got.Attempts != 0 || got.Token != "" || !sameTime(got.NextAttemptAt, &next) || got.Status != paynotify.DeliveryPending {
			t.Errorf("released delivery: %s", dumpDelivery(got))
		}
		checkStrings(t, "attempts", attemptIDs(w.attempts(paynotify.WebhookAttemptFilter{})), nil)
		if got := w.get("we1").FailingSince; got != nil {
			t.Errorf("FailingSince = %s, want nil", fmtTime(got))
		}
		w.claimOnly("we1", next, time.Minute, "e1")
	})

	t.Run("OKStaleToken", func(t *testing.T) {
		// A claim whose lease ran out and was taken again: its end records the attempt (and the
		// failure) but leaves the delivery to the new claim.
		w, old := setupOne(t)
		now := T0.Add(time.Minute)
		cur := w.claimOnly("we1", now, time.Minute, "e1")[0]
		w.finish(giveUp(old, now))
		got := w.mustDelivery("e1", "we1")
		if got.Status != paynotify.DeliveryPending || got.Attempts != 0 || got.Token != cur.Token || got.LastError != "" ||
			!sameTime(got.NextAttemptAt, at(now.Add(time.Minute))) {
			t.Errorf("delivery after a stale end: %s", dumpDelivery(got))
		}
		if as := w.attempts(paynotify.WebhookAttemptFilter{EndpointID: "we1"}); len(as) != 1 || as[0].Error != "HTTP 500" {
			t.Errorf("attempts = %d, want the stale one", len(as))
		}
		if got := w.get("we1").FailingSince; !sameTime(got, &now) {
			t.Errorf("FailingSince = %s, want %s", fmtTime(got), fmtTime(&now))
		}
		w.finish(delivered(cur, now.Add(time.Second)))
		if got := w.mustDelivery("e1", "we1"); got.Status != paynotify.DeliveryDelivered || got.Attempts != 1 {
			t.Errorf("delivery after the current end: %s", dumpDelivery(got))
		}
		// Ending it again does nothing to the delivery.
		w.finish(giveUp(cur, now.Add(2*time.Second)))
		if got := w.mustDelivery("e1", "we1"); got.Status != paynotify.DeliveryDelivered || got.Attempts != 1 {
			t.Errorf("delivery after a second end: %s", dumpDelivery(got))
		}
	})

	t.Run("OKBatch", func(t *testing.T) {
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.endpoint("we2", nil)
		w.paid("app1", "T1", "e1", T0)
		w.paid("app1", "T2", "e2", T0)
		w.fanOut(T0, 10)
		d1 := w.claimOnly("we1", T0, time.Minute, "e1", "e2")
		d2 := w.claimOnly("we2", T0, time.Minute, "e1", "e2")
		w.finish(delivered(d1[0], T0), retry(d1[1], T0, T0.Add(time.Hour)), giveUp(d2[0], T0), delivered(d2[1], T0.Add(time.Second)))
		for _, tc := range []struct {
			event, endpoint, status string
		}{{"e1", "we1", paynotify.DeliveryDelivered}, {"e2", "we1", paynotify.DeliveryPending},
			{"e1", "we2", paynotify.DeliveryFailed}, {"e2", "we2", paynotify.DeliveryDelivered}} {
			if got := w.mustDelivery(tc.event, tc.endpoint); got.Status != tc.status || got.Attempts != 1 {
				t.Errorf("%s to %s: %s; want %s", tc.event, tc.endpoint, dumpDelivery(got), tc.status)
			}
		}
		// we1 failed last: failing since then; we2 failed, then delivered.
		if got := w.get("we1").FailingSince; !sameTime(got, &T0) {
			t.Errorf("we1 FailingSince = %s, want %s", fmtTime(got), fmtTime(&T0))
		}
		if got := w.get("we2").FailingSince; got != nil {
			t.Errorf("we2 FailingSince = %s, want nil", fmtTime(got))
		}
		if err := w.ws.FinishWebhookDeliveries(w.ctx, nil); err != nil {
			t.Errorf("FinishWebhookDeliveries(nil): %v", err)
		}
	})

	t.Run("OKListAttempts", func(t *testing.T) {
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.endpoint("we2", nil)
		w.paid("app1", "T1", "e1", T0)
		w.paid("app1", "T2", "e2", T0)
		w.fanOut(T0, 10)
		// Attempts, in the order made: a1 e1/we1, a2 e2/we1, a3 e1/we2, a4 e1/we1, a5 e2/we2.
		step := 0
		end := func(endpoint, event string) {
			t.Helper()
			step++
			now := T0.Add(time.Duration(step) * time.Minute)
			for _, d := range w.claim(endpoint, now, time.Second, 10) {
				if d.EventID == event {
					r := retry(d, now, now)
					r.Attempt.ID = fmt.Sprint("a", step)
					w.finish(r)
					return
				}
			}
			t.Fatalf("%s to %s not claimable", event, endpoint)
		}
		end("we1", "e1")
		end("we1", "e2")
		end("we2", "e1")
		end("we1", "e1")
		end("we2", "e2")
		list := func(f paynotify.WebhookAttemptFilter) []string { return attemptIDs(w.attempts(f)) }
		checkStrings(t, "all", list(paynotify.WebhookAttemptFilter{}), []string{"a5", "a4", "a3", "a2", "a1"})
		checkStrings(t, "we1", list(paynotify.WebhookAttemptFilter{EndpointID: "we1"}), []string{"a4", "a2", "a1"})
		checkStrings(t, "e1", list(paynotify.WebhookAttemptFilter{EventID: "e1"}), []string{"a4", "a3", "a1"})
		checkStrings(t, "we2 e1", list(paynotify.WebhookAttemptFilter{EndpointID: "we2", EventID: "e1"}), []string{"a3"})
		checkStrings(t, "limit 2", list(paynotify.WebhookAttemptFilter{Limit: 2}), []string{"a5", "a4"})
		checkStrings(t, "we3", list(paynotify.WebhookAttemptFilter{EndpointID: "we3"}), nil)
	})

	t.Run("OKListAttemptsDefaultLimit", func(t *testing.T) {
		w, d := setupOne(t)
		var rs []paynotify.WebhookResult
		for i := range 120 {
			a := attempt(T0, "x")
			a.ID = fmt.Sprintf("a%03d", i)
			rs = append(rs, paynotify.WebhookResult{Delivery: d, Attempt: a, Status: paynotify.DeliveryPending, Next: &T0})
		}
		w.finish(rs...)
		as := w.attempts(paynotify.WebhookAttemptFilter{})
		if len(as) != 100 || as[0].ID != "a119" || as[99].ID != "a020" {
			t.Errorf("got %d attempts, want a119…a020", len(as))
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		// A result without a token or with an unknown status is refused, and nothing is written.
		w, d := setupOne(t)
		noToken := *d
		noToken.Token = ""
		for _, r := range []paynotify.WebhookResult{
			{Delivery: &noToken, Attempt: attempt(T0, ""), Status: paynotify.DeliveryDelivered},
			{Delivery: d, Attempt: attempt(T0, ""), Status: "sent"},
		} {
			if err := w.ws.FinishWebhookDeliveries(w.ctx, []paynotify.WebhookResult{delivered(d, T0), r}); err == nil {
				t.Errorf("FinishWebhookDeliveries(%+v) succeeded", r)
			}
		}
		if got := w.mustDelivery("e1", "we1"); got.Status != paynotify.DeliveryPending || got.Token != d.Token {
			t.Errorf("delivery after refused ends: %s", dumpDelivery(got))
		}
		checkStrings(t, "attempts", attemptIDs(w.attempts(paynotify.WebhookAttemptFilter{})), nil)
	})
}

func (s *suite) testWebhookRedeliver(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		// we1 delivered, we2 failed, we3 pending (claimed), we4 none (created after the event).
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.endpoint("we2", nil)
		w.endpoint("we3", nil)
		w.paid("app1", "T1", "e1", T0)
		w.endpoint("we4", nil)
		w.fanOut(T0, 10)
		w.finish(delivered(w.claimOnly("we1", T0, time.Minute, "e1")[0], T0))
		w.finish(giveUp(w.claimOnly("we2", T0, time.Minute, "e1")[0], T0))
		claimed := w.claimOnly("we3", T0, time.Minute, "e1")[0]
		before := w.mustDelivery("e1", "we3")
		now := T0.Add(time.Hour + 789)
		n, err := w.ws.RedeliverEvent(w.ctx, "e1", []string{"we1", "we2", "we3", "we4"}, now)
		if err != nil || n != 3 {
			t.Fatalf("RedeliverEvent = %d, %v; want 3", n, err)
		}
		ev := w.logged("e1")
		for _, id := range []string{"we1", "we2"} {
			want := pendingDelivery(id, ev, T0)
			want.NextAttemptAt, want.UpdatedAt = &now, now
			checkDelivery(t, w.mustDelivery("e1", id), want)
		}
		checkDelivery(t, w.mustDelivery("e1", "we3"), before)
		checkDelivery(t, w.mustDelivery("e1", "we4"), pendingDelivery("we4", ev, now))
		if ds := w.deliveries("e1"); len(ds) != 4 || ds[3].EndpointID != "we4" {
			t.Errorf("deliveries of e1 = %q, want we4's (the newest) last", deliveryEndpoints(ds))
		}
		// The pending claim still holds.
		w.finish(delivered(claimed, now))
		if got := w.mustDelivery("e1", "we3"); got.Status != paynotify.DeliveryDelivered {
			t.Errorf("we3 after its claim ended: %s", dumpDelivery(got))
		}
		w.claimOnly("we1", now, time.Minute, "e1")
		// Again: the pending ones are not counted.
		if n, err := w.ws.RedeliverEvent(w.ctx, "e1", []string{"we1", "we2", "we3"}, now); err != nil || n != 1 {
			t.Errorf("RedeliverEvent again = %d, %v; want 1 (we3)", n, err)
		}
		if n, err := w.ws.RedeliverEvent(w.ctx, "e1", nil, now); err != nil || n != 0 {
			t.Errorf("RedeliverEvent to no endpoint = %d, %v; want 0", n, err)
		}
	})

	t.Run("OKIgnoresFilter", func(t *testing.T) {
		// The endpoints named get the event, whatever their filters.
		w := s.setupWebhooks(t)
		w.endpoint("we1", func(e *paynotify.WebhookEndpoint) { e.Apps = []string{"app2"} })
		w.paid("app1", "T1", "e1", T0)
		if n, err := w.ws.RedeliverEvent(w.ctx, "e1", []string{"we1"}, T0); err != nil || n != 1 {
			t.Errorf("RedeliverEvent = %d, %v; want 1", n, err)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.paid("app1", "T1", "e1", T0)
		_, err := w.ws.RedeliverEvent(w.ctx, "e9", []string{"we1"}, T0)
		checkNotFound(t, err)
		_, err = w.ws.RedeliverEvent(w.ctx, "e1", []string{"we1", "we9"}, T0)
		checkNotFound(t, err)
		if ds := w.deliveries("e1"); len(ds) != 0 {
			t.Errorf("deliveries after a refused resend: %q", deliveryEndpoints(ds))
		}
	})
}

func (s *suite) testWebhookRecover(t *testing.T) {
	t.Run("OKDisableBeforeFanOut", func(t *testing.T) {
		// e1 (app1) and e2 (app2, not wanted) committed while we1 was enabled, not fanned out
		// yet, then we1 disabled: e1 gets a delivery, failed by the disable (without one it would
		// get none at all, the enable moving the cursor past it, and recover could not find it);
		// the disable's own endpoint.disabled (e3) gets none. After the enable, recover since the
		// disable sends e1.
		w := s.setupWebhooks(t)
		w.endpoint("we1", func(e *paynotify.WebhookEndpoint) { e.Apps = []string{"app1"} })
		w.paid("app1", "T1", "e1", T0)
		w.paid("app2", "T2", "e2", T0)
		disabled, enabled := paynotify.EndpointDisabled, paynotify.EndpointEnabled
		w.update("we1", &paynotify.WebhookEndpointUpdate{Status: &disabled, DisabledReason: "410 Gone",
			Event: paynotify.NewEndpointDisabledEvent("e3", T0, &paynotify.EndpointDisabledData{EndpointID: "we1", Reason: "410 Gone"})})
		d := w.mustDelivery("e1", "we1")
		if d.Status != paynotify.DeliveryFailed || !strings.HasPrefix(d.LastError, "endpoint disabled") {
			t.Fatalf("e1's delivery after the disable: %+v", d)
		}
		for _, id := range []string{"e2", "e3"} {
			if d := w.delivery(id, "we1"); d != nil {
				t.Errorf("%s has a delivery to we1: %+v", id, d)
			}
		}
		w.update("we1", &paynotify.WebhookEndpointUpdate{Status: &enabled})
		if n, err := w.ws.RecoverWebhooks(w.ctx, "we1", d.CreatedAt, T0.Add(time.Hour)); err != nil || n != 1 {
			t.Fatalf("RecoverWebhooks since the disable = %d, %v; want 1 (e1)", n, err)
		}
		if d := w.mustDelivery("e1", "we1"); d.Status != paynotify.DeliveryPending {
			t.Fatalf("e1 after recover: %+v", d)
		}
	})

	t.Run("OK", func(t *testing.T) {
		w := s.setupWebhooks(t)
		w.endpoint("we1", func(e *paynotify.WebhookEndpoint) { e.Apps = []string{"app1"} })
		since := T0.Add(time.Hour)
		// e1: failed, its delivery created before since. e2: failed, created after. e3: delivered.
		w.paid("app1", "T1", "e1", T0)
		w.fanOut(T0.Add(10*time.Minute), 10)
		w.paid("app1", "T2", "e2", T0.Add(2*time.Hour))
		w.paid("app1", "T3", "e3", T0.Add(2*time.Hour))
		w.fanOut(T0.Add(2*time.Hour), 10)
		now := T0.Add(2 * time.Hour)
		ds := w.claimOnly("we1", now, time.Minute, "e1", "e2", "e3")
		w.finish(giveUp(ds[0], now), giveUp(ds[1], now), delivered(ds[2], now))
		// e4 pending when the endpoint is disabled: failed by it.
		w.paid("app1", "T4", "e4", T0.Add(2*time.Hour))
		w.fanOut(now, 10)
		disabled, enabled := paynotify.EndpointDisabled, paynotify.EndpointEnabled
		// Its own endpoint.disabled (e10) goes to the other endpoints only, now and when recovered.
		w.update("we1", &paynotify.WebhookEndpointUpdate{Status: &disabled, DisabledReason: "410 Gone",
			Event: paynotify.NewEndpointDisabledEvent("e10", now, &paynotify.EndpointDisabledData{EndpointID: "we1", Reason: "410 Gone"})})
		// While disabled: e5 (missed), e6 (timestamp before since), e7 (another app), e8 (no app),
		// e11 (another endpoint's endpoint.disabled).
		w.paid("app1", "T5", "e5", T0.Add(3*time.Hour))
		w.paid("app1", "T6", "e6", T0.Add(30*time.Minute))
		w.paid("app2", "T7", "e7", T0.Add(3*time.Hour))
		w.orphan("e8", since)
		MustCommit(t, w.ctx, w.st, &paynotify.Change{Events: []*paynotify.Event{
			paynotify.NewEndpointDisabledEvent("e11", T0.Add(3*time.Hour), &paynotify.EndpointDisabledData{EndpointID: "we2", Reason: "410 Gone"})}})
		w.update("we1", &paynotify.WebhookEndpointUpdate{Status: &enabled})
		// After: e9, beyond the cursor until the next fan-out.
		w.paid("app1", "T9", "e9", T0.Add(4*time.Hour))

		later := T0.Add(5*time.Hour + 789)
		n, err := w.ws.RecoverWebhooks(w.ctx, "we1", since, later)
		if err != nil || n != 5 {
			t.Fatalf("RecoverWebhooks = %d, %v; want 5 (e2, e4, e5, e8, e11)", n, err)
		}
		for _, id := range []string{"e2", "e4", "e5", "e8", "e11"} {
			d := w.mustDelivery(id, "we1")
			if d.Status != paynotify.DeliveryPending || d.Attempts != 0 || d.LastError != "" || d.Token != "" ||
				!sameTime(d.NextAttemptAt, &later) || !d.UpdatedAt.Equal(trunc(later)) {
				t.Errorf("%s after recover: %s", id, dumpDelivery(d))
			}
		}
		checkDelivery(t, w.mustDelivery("e5", "we1"), pendingDelivery("we1", w.logged("e5"), later))
		if d := w.mustDelivery("e1", "we1"); d.Status != paynotify.DeliveryFailed {
			t.Errorf("e1 (created before since): %s", dumpDelivery(d))
		}
		if d := w.mustDelivery("e3", "we1"); d.Status != paynotify.DeliveryDelivered {
			t.Errorf("e3 (delivered): %s", dumpDelivery(d))
		}
		for _, id := range []string{"e6", "e7", "e9", "e10"} {
			if d := w.delivery(id, "we1"); d != nil {
				t.Errorf("%s recovered: %s", id, dumpDelivery(d))
			}
		}
		if n, err := w.ws.RecoverWebhooks(w.ctx, "we1", since, later); err != nil || n != 0 {
			t.Errorf("RecoverWebhooks again = %d, %v; want 0", n, err)
		}
		w.claimOnly("we1", later, time.Minute, "e2", "e4", "e5", "e8") // e11 after e8: neither is of an order
		// e9 comes by the fan-out.
		if n := w.fanOut(later, 10); n != 1 {
			t.Errorf("FanOutWebhooks = %d, want 1 (e9)", n)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		w := s.setupWebhooks(t)
		_, err := w.ws.RecoverWebhooks(w.ctx, "we1", T0, T0)
		checkNotFound(t, err)
	})
}

func (s *suite) testWebhookPrune(t *testing.T) {
	t.Run("OKDropOldSecrets", func(t *testing.T) {
		// A secret rotated away is forgotten once its overlap has ended (at its end exactly),
		// not before, and only on that endpoint; the current secrets stay.
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.endpoint("we2", nil)
		w.endpoint("we3", nil)
		end1, end2 := T0.Add(24*time.Hour), T0.Add(48*time.Hour)
		s1, s2 := "whsec_bmV3LXNlY3JldC1vbmUtMDEyMzQ1Njc4OWFi", "whsec_bmV3LXNlY3JldC10d28tMDEyMzQ1Njc4OWFi"
		old1, old2 := w.get("we1").Secret, w.get("we2").Secret
		w.update("we1", &paynotify.WebhookEndpointUpdate{Secret: &s1, OldSecretUntil: &end1})
		w.update("we2", &paynotify.WebhookEndpointUpdate{Secret: &s2, OldSecretUntil: &end2})
		drop := func(now time.Time, want int64) {
			t.Helper()
			if n, err := w.ws.DropOldSecrets(w.ctx, now); err != nil || n != want {
				t.Fatalf("DropOldSecrets(%s) = %d, %v; want %d", now.Format(time.RFC3339Nano), n, err, want)
			}
		}
		drop(end1.Add(-time.Millisecond), 0)
		if got := w.get("we1"); got.OldSecret != old1 || !sameTime(got.OldSecretUntil, &end1) {
			t.Fatalf("we1 before its overlap ended: old secret kept %v, until %s", got.OldSecret == old1, fmtTime(got.OldSecretUntil))
		}
		drop(end1, 1)
		if got := w.get("we1"); got.OldSecret != "" || got.OldSecretUntil != nil || got.Secret != s1 {
			t.Errorf("we1 after its overlap: old secret %v, until %s, current kept %v", got.OldSecret != "", fmtTime(got.OldSecretUntil), got.Secret == s1)
		}
		if got := w.get("we2"); got.OldSecret != old2 || got.Secret != s2 {
			t.Errorf("we2, overlap not ended: old secret kept %v, current kept %v", got.OldSecret == old2, got.Secret == s2)
		}
		drop(end1, 0)
		drop(end2.Add(time.Hour), 1)
		if got := w.get("we3"); got.OldSecret != "" || got.Secret == "" {
			t.Errorf("we3, never rotated: %v / %v", got.OldSecret != "", got.Secret != "")
		}
	})

	t.Run("OK", func(t *testing.T) {
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		for i := range 5 {
			w.paid("app1", fmt.Sprint("T", i+1), fmt.Sprint("e", i+1), T0)
		}
		w.fanOut(T0, 10)
		ds := w.claimOnly("we1", T0, time.Minute, "e1", "e2", "e3", "e4", "e5")
		old, recent := T0.Add(time.Minute), T0.Add(2*time.Hour)
		// e1 delivered and e2 failed long ago, e3 delivered recently, e4 pending (retried long
		// ago), e5 pending (never attempted).
		w.finish(delivered(ds[0], old), giveUp(ds[1], old), delivered(ds[2], recent), retry(ds[3], old, recent))
		w.finish(paynotify.WebhookResult{Delivery: ds[4], Status: paynotify.DeliveryPending, Next: &T0})
		before := T0.Add(time.Hour)
		na, nd, err := w.ws.PruneWebhooks(w.ctx, before, 100)
		if err != nil || na != 3 || nd != 2 {
			t.Fatalf("PruneWebhooks = %d attempts, %d deliveries, %v; want 3, 2", na, nd, err)
		}
		for id, want := range map[string]bool{"e1": false, "e2": false, "e3": true, "e4": true, "e5": true} {
			if got := w.delivery(id, "we1") != nil; got != want {
				t.Errorf("delivery of %s kept = %v, want %v", id, got, want)
			}
		}
		if as := w.attempts(paynotify.WebhookAttemptFilter{}); len(as) != 1 || as[0].EventID != "e3" {
			t.Errorf("attempts kept = %d, want e3's", len(as))
		}
		if na, nd, err := w.ws.PruneWebhooks(w.ctx, before, 100); err != nil || na != 0 || nd != 0 {
			t.Errorf("PruneWebhooks again = %d, %d, %v; want 0, 0", na, nd, err)
		}
		// Exactly at the boundary: kept.
		if na, nd, err := w.ws.PruneWebhooks(w.ctx, recent, 100); err != nil || na != 0 || nd != 0 {
			t.Errorf("PruneWebhooks at %s = %d, %d, %v; want 0, 0", fmtTime(&recent), na, nd, err)
		}
		if na, nd, err := w.ws.PruneWebhooks(w.ctx, recent.Add(time.Microsecond), 100); err != nil || na != 1 || nd != 1 {
			t.Errorf("PruneWebhooks after %s = %d, %d, %v; want 1, 1 (e3's)", fmtTime(&recent), na, nd, err)
		}
		// The pending deliveries stay, however old.
		checkStrings(t, "deliveries kept", deliveryEvents(append(w.deliveries("e4"), w.deliveries("e5")...)), []string{"e4", "e5"})
	})

	t.Run("OKBatches", func(t *testing.T) {
		// More rows than a batch: the prune goes on, batch after batch, until none is left
		// (23 attempts: 5 batches of 5 with the last short; 15 deliveries: 3 full batches and
		// an empty one).
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		old, recent := T0, T0.Add(2*time.Hour)
		var attempts, deliveries []string
		for i := range 25 {
			at := old.Add(time.Duration(i) * time.Millisecond)
			if i >= 23 {
				at = recent
			}
			attempts = append(attempts, fmt.Sprintf("('wa%02d', 'wd%02d', 'we1', 'e%02d', 'order.paid', %s)", i, i, i, sqlTime(at)))
		}
		for i := range 18 {
			status, at := "delivered", old.Add(time.Duration(i)*time.Millisecond)
			switch {
			case i == 15:
				status = "failed"
				at = recent
			case i >= 16:
				status = "pending" // old, but still to deliver
			case i%3 == 0:
				status = "failed"
			}
			deliveries = append(deliveries, fmt.Sprintf("('wd%02d', 'we1', 'e%02d', 'order.paid', %d, 'app1', 'T%02d', '%s', %s, %s)",
				i, i, i+1, i, status, sqlTime(old), sqlTime(at)))
		}
		if err := w.st.ExecSQL(w.ctx, `INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, event_id, event_type, at) VALUES `+
			strings.Join(attempts, ", ")); err != nil {
			t.Fatal(err)
		}
		if err := w.st.ExecSQL(w.ctx, `INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, event_seq, app, out_trade_no,
			status, created_at, updated_at) VALUES `+strings.Join(deliveries, ", ")); err != nil {
			t.Fatal(err)
		}
		na, nd, err := w.ws.PruneWebhooks(w.ctx, T0.Add(time.Hour), 5)
		if err != nil || na != 23 || nd != 15 {
			t.Fatalf("PruneWebhooks = %d attempts, %d deliveries, %v; want 23, 15", na, nd, err)
		}
		keptAttempts := attemptIDs(w.attempts(paynotify.WebhookAttemptFilter{EndpointID: "we1"}))
		slices.Sort(keptAttempts)
		checkStrings(t, "attempts kept", keptAttempts, []string{"wa23", "wa24"})
		var kept []string
		for i := range 18 {
			if w.delivery(fmt.Sprintf("e%02d", i), "we1") != nil {
				kept = append(kept, fmt.Sprintf("e%02d", i))
			}
		}
		checkStrings(t, "deliveries kept", kept, []string{"e15", "e16", "e17"})
	})

	t.Run("ErrCanceled", func(t *testing.T) {
		// A prune whose context has ended deletes nothing and says so.
		w := s.setupWebhooks(t)
		w.endpoint("we1", nil)
		w.paid("app1", "T1", "e1", T0)
		w.fanOut(T0, 10)
		ds := w.claimOnly("we1", T0, time.Minute, "e1")
		w.finish(delivered(ds[0], T0))
		ctx, cancel := context.WithCancel(w.ctx)
		cancel()
		if na, nd, err := w.ws.PruneWebhooks(ctx, T0.Add(time.Hour), 100); err == nil || na != 0 || nd != 0 {
			t.Fatalf("PruneWebhooks with an ended context = %d, %d, %v; want 0, 0 and an error", na, nd, err)
		}
		if len(w.attempts(paynotify.WebhookAttemptFilter{})) != 1 || w.delivery("e1", "we1") == nil {
			t.Fatalf("rows deleted by a cancelled prune")
		}
	})
}
