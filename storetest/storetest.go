// Package storetest is the conformance suite of the paynotify store interfaces: one body of tests
// that every store (sqlite, postgres) runs against a real database.
//
// What the suite pins down beyond the interface doc comments:
//   - times are kept to the microsecond (finer parts truncated) and read back in UTC;
//   - PaidAt nil is kept as nil; Pay, event Data and evidence Body are kept byte for byte
//     (event Data is JSON and must be valid; its bytes, whitespace and key order included, come
//     back unchanged);
//   - evidence Headers round-trip as a value (same keys, same values in order); an empty Source
//     is stored as paynotify.SourceNotification;
//   - a losing Commit writes nothing (no events, evidence, refund or anomaly);
//   - a refund is inserted (by CreateRefund or Commit) with NeedsAttention false whatever it says:
//     only FinishCheck sets it;
//   - ClaimChecks claims due orders first, then due refunds with what is left of the limit, each
//     earliest first, and returns them in that order;
//   - rows inserted by tools that name only the version 1 columns get the defaults (no schedule,
//     no checks, Source notification).
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// DB is a store under test, with the two things the suite needs beyond paynotify.Store.
type DB interface {
	paynotify.Store
	// ExecSQL runs one SQL statement, without arguments, on the store's database, as a tool
	// outside paynotify would (a load harness seeding orders, an operator's SQL session). The
	// suite's statements are valid on both SQLite and PostgreSQL.
	ExecSQL(ctx context.Context, query string) error
	// OpenAnother opens a second store on the same database, as another process would (its own
	// connections), closed when t ends.
	OpenAnother(t *testing.T) paynotify.Store
	// HoldWrites holds the store's group-commit writer before its next batch, so that the
	// writes sent until release is called are committed in one transaction; queued reports
	// how many writes wait for that batch. release(fail) with fail not nil makes that batch
	// fail where its COMMIT would, as a failed COMMIT does.
	HoldWrites(t *testing.T) (queued func() int, release func(fail error))
}

// Run runs the whole suite. open must return a new, migrated, empty store for each call, and
// close it when t ends (t.Cleanup). Subtests run in parallel, each on its own store.
func Run(t *testing.T, open func(t *testing.T) DB) {
	s := &suite{open: open}
	t.Run("CreateOrder", s.testCreateOrder)
	t.Run("GetOrder", s.testGetOrder)
	t.Run("ListOrders", s.testListOrders)
	t.Run("ConsoleReads", s.testConsoleReads)
	t.Run("Times", s.testTimes)
	t.Run("Refund", s.testRefund)
	t.Run("ConfirmRefundAmount", s.testConfirmRefundAmount)
	t.Run("ListPendingRefunds", s.testListPendingRefunds)
	t.Run("ListAttentionRefunds", s.testListAttentionRefunds)
	t.Run("AttentionCleared", s.testAttentionCleared)
	t.Run("AttentionKeptWithoutAnswer", s.testAttentionKeptWithoutAnswer)
	t.Run("Commit", s.testCommit)
	t.Run("GroupCommit", s.testGroupCommit)
	t.Run("CommitSchedule", s.testCommitSchedule)
	t.Run("Events", s.testEvents)
	t.Run("Evidence", s.testEvidence)
	t.Run("ClaimChecks", s.testClaimChecks)
	t.Run("FinishCheck", s.testFinishCheck)
	t.Run("LegacyRows", s.testLegacyRows)
	t.Run("WebhookEndpoints", s.testWebhookEndpoints)
	t.Run("WebhookFanOut", s.testWebhookFanOut)
	t.Run("WebhookClaim", s.testWebhookClaim)
	t.Run("WebhookFinish", s.testWebhookFinish)
	t.Run("WebhookRedeliver", s.testWebhookRedeliver)
	t.Run("WebhookRecover", s.testWebhookRecover)
	t.Run("WebhookPrune", s.testWebhookPrune)
	t.Run("APITokens", s.testAPITokens)
	t.Run("CountStatuses", s.testCountStatuses)
	t.Run("Retention", s.testRetention)
}

type suite struct {
	open func(t *testing.T) DB
}

// bundle is what a subtest works with.
type bundle struct {
	ctx   context.Context
	store DB
}

// setup opens a fresh store for one subtest and marks the subtest parallel.
func (s *suite) setup(t *testing.T) (DB, *bundle) {
	t.Helper()
	t.Parallel()
	st := s.open(t)
	return st, &bundle{ctx: t.Context(), store: st}
}

// T0 is the suite's clock: a Beijing time with microseconds, so that zone conversion and
// sub-second precision are both exercised.
var T0 = time.Date(2026, 11, 29, 10, 30, 15, 123456000, time.FixedZone("CST", 8*60*60))

// NewOrder returns a pending order created at created, with signed pay parameters.
func NewOrder(app, outTradeNo string, created time.Time) *paynotify.Order {
	return &paynotify.Order{
		App:        app,
		OutTradeNo: outTradeNo,
		Channel:    paynotify.ChannelAlipayApp,
		Status:     paynotify.StatusPending,
		Amount:     1234,
		Currency:   "CNY",
		Subject:    "测试订单 subject",
		Body:       "body",
		Version:    1,
		CreatedAt:  created,
		ExpiresAt:  created.Add(2 * time.Hour),
		Pay:        json.RawMessage(`{"order_string":"app_id=2021&biz_content=%7B%7D&sign=abc%2B%2F%3D"}`),
	}
}

// MustCreateOrder creates o and fails the test unless it was created.
func MustCreateOrder(tb testing.TB, ctx context.Context, st paynotify.Store, o *paynotify.Order) *paynotify.Order {
	tb.Helper()
	stored, created, err := st.CreateOrder(ctx, o)
	if err != nil {
		tb.Fatalf("CreateOrder: %v", err)
	}
	if !created {
		tb.Fatalf("CreateOrder: created = false, want true")
	}
	return stored
}

// MustCommit commits c and fails the test on error.
func MustCommit(tb testing.TB, ctx context.Context, st paynotify.Store, c *paynotify.Change) bool {
	tb.Helper()
	anomalyNew, err := st.Commit(ctx, c)
	if err != nil {
		tb.Fatalf("Commit: %v", err)
	}
	return anomalyNew
}

// MustListEvents lists events and fails the test on error.
func MustListEvents(tb testing.TB, ctx context.Context, st paynotify.Store, f paynotify.EventFilter) []*paynotify.Event {
	tb.Helper()
	evs, err := st.ListEvents(ctx, f)
	if err != nil {
		tb.Fatalf("ListEvents: %v", err)
	}
	return evs
}

// MustListEvidence lists evidence and fails the test on error.
func MustListEvidence(tb testing.TB, ctx context.Context, st paynotify.Store, f paynotify.EvidenceFilter) []*paynotify.Evidence {
	tb.Helper()
	evs, err := st.ListEvidence(ctx, f)
	if err != nil {
		tb.Fatalf("ListEvidence: %v", err)
	}
	return evs
}

// NewEvidence returns an accepted evidence record about o, with a non-UTF-8 body.
func NewEvidence(id string, o *paynotify.Order, at time.Time) *paynotify.Evidence {
	return &paynotify.Evidence{
		ID:           id,
		App:          o.App,
		Provider:     paynotify.ProviderAlipay,
		ReceivedAt:   at,
		Verdict:      paynotify.VerdictAccepted,
		Reason:       "",
		Detail:       "applied",
		OutTradeNo:   o.OutTradeNo,
		OrderVersion: o.Version,
		Answer:       "success",
		DurationMS:   3,
		Headers:      http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=GBK"}, "X-Multi": {"a", "b"}},
		Body:         []byte("trade_status=TRADE_SUCCESS&subject=\xb2\xe2\xca\xd4&x=\x00\xff"),
	}
}

// PaidChange returns the change that pays o (as stored at its current version): one
// order.paid event with id eventID and the evidence evidenceID.
func PaidChange(o *paynotify.Order, eventID, evidenceID string, at time.Time) *paynotify.Change {
	next := *o
	next.Status = paynotify.StatusPaid
	paidAt := at
	next.PaidAt = &paidAt
	next.ProviderTradeNo = "2026112922001400000000000001"
	next.Version = o.Version + 1
	ev := paynotify.NewEvent(eventID, paynotify.EventOrderPaid, at, &next, nil, nil)
	return &paynotify.Change{
		Order:       &next,
		PrevVersion: o.Version,
		Events:      []*paynotify.Event{ev},
		Evidence:    NewEvidence(evidenceID, &next, at),
	}
}

// stored returns what a store reads back for o: times in UTC, truncated to the microsecond.
func stored(o *paynotify.Order) *paynotify.Order {
	n := *o
	n.CreatedAt = trunc(n.CreatedAt)
	n.ExpiresAt = trunc(n.ExpiresAt)
	n.PaidAt = truncPtr(n.PaidAt)
	n.NextCheckAt = truncPtr(n.NextCheckAt)
	if len(n.Pay) == 0 {
		n.Pay = nil
	}
	return &n
}

func trunc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func truncPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := trunc(*t)
	return &u
}

// at returns a pointer to t, for NextCheckAt.
func at(t time.Time) *time.Time { return &t }

// sameTime reports whether got is want as a store reads it back (both nil, or equal instants).
func sameTime(got, want *time.Time) bool {
	if got == nil || want == nil {
		return got == nil && want == nil
	}
	return got.Equal(trunc(*want))
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "nil"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// checkUTC fails the test if t is not in UTC.
func checkUTC(tb testing.TB, what string, t time.Time) {
	tb.Helper()
	if t.Location() != time.UTC {
		tb.Errorf("%s location = %v, want UTC", what, t.Location())
	}
}

// checkOrder fails the test unless got is want as a store reads it back.
func checkOrder(tb testing.TB, got, want *paynotify.Order) {
	tb.Helper()
	if got == nil {
		tb.Fatalf("order = nil, want %s/%s", want.App, want.OutTradeNo)
	}
	checkUTC(tb, "CreatedAt", got.CreatedAt)
	checkUTC(tb, "ExpiresAt", got.ExpiresAt)
	if got.PaidAt != nil {
		checkUTC(tb, "PaidAt", *got.PaidAt)
	}
	if got.NextCheckAt != nil {
		checkUTC(tb, "NextCheckAt", *got.NextCheckAt)
	}
	g, w := stored(got), stored(want)
	if !reflect.DeepEqual(g, w) {
		tb.Errorf("order:\n got %s\nwant %s", dumpOrder(g), dumpOrder(w))
	}
}

func dumpOrder(o *paynotify.Order) string {
	paid := "nil"
	if o.PaidAt != nil {
		paid = o.PaidAt.Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%+v paid_at=%s next_check_at=%s pay=%q", *o, paid, fmtTime(o.NextCheckAt), o.Pay)
}

// checkEvent fails the test unless got is want (Seq aside) with Data byte for byte.
func checkEvent(tb testing.TB, got, want *paynotify.Event) {
	tb.Helper()
	checkUTC(tb, "event Timestamp", got.Timestamp)
	if got.ID != want.ID || got.Type != want.Type || got.Version != want.Version || got.App != want.App ||
		got.OutTradeNo != want.OutTradeNo || !got.Timestamp.Equal(trunc(want.Timestamp)) {
		tb.Errorf("event:\n got %+v\nwant %+v", *got, *want)
	}
	if !bytes.Equal(got.Data, want.Data) {
		tb.Errorf("event %s data:\n got %s\nwant %s", want.ID, got.Data, want.Data)
	}
	if got.Seq <= 0 {
		tb.Errorf("event %s Seq = %d, want > 0", want.ID, got.Seq)
	}
}

// checkEvidence fails the test unless got is want, body and headers exactly (an empty Source in
// want is stored as SourceNotification).
func checkEvidence(tb testing.TB, got, want *paynotify.Evidence) {
	tb.Helper()
	checkUTC(tb, "evidence ReceivedAt", got.ReceivedAt)
	g, w := *got, *want
	g.ReceivedAt, w.ReceivedAt = trunc(g.ReceivedAt), trunc(w.ReceivedAt)
	if w.Source == "" {
		w.Source = paynotify.SourceNotification
	}
	if !bytes.Equal(g.Body, w.Body) {
		tb.Errorf("evidence %s body = %q, want %q", w.ID, g.Body, w.Body)
	}
	g.Body, w.Body = nil, nil
	if !reflect.DeepEqual(g, w) {
		tb.Errorf("evidence:\n got %+v\nwant %+v", g, w)
	}
}

func eventIDs(evs []*paynotify.Event) []string {
	ids := []string{}
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	return ids
}

func evidenceIDs(evs []*paynotify.Evidence) []string {
	ids := []string{}
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	return ids
}

func orderNos(os []*paynotify.Order) []string {
	nos := []string{}
	for _, o := range os {
		nos = append(nos, o.OutTradeNo)
	}
	return nos
}

func checkStrings(tb testing.TB, what string, got, want []string) {
	tb.Helper()
	if want == nil {
		want = []string{}
	}
	if !reflect.DeepEqual(got, want) {
		tb.Errorf("%s = %q, want %q", what, got, want)
	}
}

func checkNotFound(tb testing.TB, err error) {
	tb.Helper()
	if code := paynotify.ErrorCode(err); code != paynotify.ENOTFOUND {
		tb.Errorf("err = %v (code %q), want code %q", err, code, paynotify.ENOTFOUND)
	}
}

func (s *suite) testCreateOrder(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		st, b := s.setup(t)
		o := NewOrder("app1", "T1", T0)
		got, created, err := st.CreateOrder(b.ctx, o)
		if err != nil || !created {
			t.Fatalf("CreateOrder = %v, %v; want created", created, err)
		}
		checkOrder(t, got, o)
		if o.CreatedAt != T0 {
			t.Errorf("CreateOrder modified its argument")
		}
		got, err = st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		checkOrder(t, got, o)
	})

	t.Run("OKSchedule", func(t *testing.T) {
		// NextCheckAt and Checks are written by CreateOrder (and only by it and the checks).
		st, b := s.setup(t)
		o := NewOrder("app1", "T1", T0)
		o.NextCheckAt = at(T0.Add(time.Minute + 789*time.Nanosecond)) // truncated to the µs
		o.Checks = 3
		got := MustCreateOrder(t, b.ctx, st, o)
		checkOrder(t, got, o)
		if got.NextCheckAt == nil || !got.NextCheckAt.Equal(T0.Add(time.Minute)) || got.Checks != 3 {
			t.Errorf("created: NextCheckAt %s Checks %d, want %s 3", fmtTime(got.NextCheckAt), got.Checks, fmtTime(at(T0.Add(time.Minute))))
		}
		got, err := st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		checkOrder(t, got, o)
		list, err := st.ListOrders(b.ctx, paynotify.OrderFilter{})
		if err != nil || len(list) != 1 {
			t.Fatalf("ListOrders = %d orders, %v; want 1", len(list), err)
		}
		checkOrder(t, list[0], o)

		// An existing order comes back with its own schedule, not the new one's.
		again := NewOrder("app1", "T1", T0)
		again.NextCheckAt, again.Checks = at(T0.Add(time.Hour)), 9
		got, created, err := st.CreateOrder(b.ctx, again)
		if err != nil || created {
			t.Fatalf("CreateOrder again = %v, %v; want not created", created, err)
		}
		checkOrder(t, got, o)
	})

	t.Run("OKVersionOne", func(t *testing.T) {
		st, b := s.setup(t)
		o := NewOrder("app1", "T1", T0)
		o.Version = 7
		got := MustCreateOrder(t, b.ctx, st, o)
		if got.Version != 1 {
			t.Errorf("Version = %d, want 1", got.Version)
		}
	})

	t.Run("OKExisting", func(t *testing.T) {
		st, b := s.setup(t)
		first := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		paid := PaidChange(first, "ev1", "nt1", T0.Add(time.Minute))
		MustCommit(t, b.ctx, st, paid)

		again := NewOrder("app1", "T1", T0.Add(time.Hour))
		again.Amount = 999
		again.Subject = "other"
		again.Pay = json.RawMessage(`{"other":true}`)
		got, created, err := st.CreateOrder(b.ctx, again)
		if err != nil {
			t.Fatal(err)
		}
		if created {
			t.Errorf("created = true, want false")
		}
		checkOrder(t, got, paid.Order) // the stored order, untouched
	})

	t.Run("OKConcurrent", func(t *testing.T) {
		st, b := s.setup(t)
		var wg sync.WaitGroup
		var createdN atomic.Int32
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := NewOrder("app1", "T1", T0)
				o.Subject = fmt.Sprint("attempt ", i)
				_, created, err := st.CreateOrder(b.ctx, o)
				if err != nil {
					t.Errorf("CreateOrder: %v", err)
				}
				if created {
					createdN.Add(1)
				}
			}()
		}
		wg.Wait()
		if n := createdN.Load(); n != 1 {
			t.Errorf("created %d times, want 1", n)
		}
	})

	t.Run("OKNoPay", func(t *testing.T) {
		st, b := s.setup(t)
		o := NewOrder("app1", "T1", T0)
		o.Pay = nil
		o.Body = ""
		MustCreateOrder(t, b.ctx, st, o)
		got, err := st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		checkOrder(t, got, o)
	})
}

func (s *suite) testGetOrder(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		st, b := s.setup(t)
		o := NewOrder("app1", "T1", T0)
		MustCreateOrder(t, b.ctx, st, o)
		MustCreateOrder(t, b.ctx, st, NewOrder("app2", "T1", T0))
		got, err := st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		checkOrder(t, got, o)
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		st, b := s.setup(t)
		MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		_, err := st.GetOrder(b.ctx, "app1", "T2")
		checkNotFound(t, err)
		_, err = st.GetOrder(b.ctx, "app2", "T1")
		checkNotFound(t, err)
		// Keys no order can have (NUL, bytes that are not UTF-8): not found, not an error of
		// the database's.
		for _, k := range [][2]string{{"app1", "T\x00"}, {"app1", "T\xff"}, {"app\x00", "T1"}, {"app\xc3", "T1"}} {
			_, err = st.GetOrder(b.ctx, k[0], k[1])
			checkNotFound(t, err)
		}
	})
}

func (s *suite) testListOrders(t *testing.T) {
	// setupOrders creates, oldest first: app1/A pending, app1/B paid, app2/C pending, app1/D pending.
	setupOrders := func(t *testing.T) (paynotify.Store, *bundle) {
		st, b := s.setup(t)
		for i, k := range []struct{ app, no string }{{"app1", "A"}, {"app1", "B"}, {"app2", "C"}, {"app1", "D"}} {
			o := MustCreateOrder(t, b.ctx, st, NewOrder(k.app, k.no, T0.Add(time.Duration(i)*time.Second)))
			if k.no == "B" {
				MustCommit(t, b.ctx, st, PaidChange(o, "evB", "ntB", T0.Add(time.Minute)))
			}
		}
		return st, b
	}
	list := func(t *testing.T, st paynotify.Store, b *bundle, f paynotify.OrderFilter) []string {
		t.Helper()
		os, err := st.ListOrders(b.ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return orderNos(os)
	}

	t.Run("OK", func(t *testing.T) {
		st, b := setupOrders(t)
		checkStrings(t, "all", list(t, st, b, paynotify.OrderFilter{}), []string{"D", "C", "B", "A"})
	})
	t.Run("OKFilterApp", func(t *testing.T) {
		st, b := setupOrders(t)
		checkStrings(t, "app1", list(t, st, b, paynotify.OrderFilter{App: "app1"}), []string{"D", "B", "A"})
		checkStrings(t, "app3", list(t, st, b, paynotify.OrderFilter{App: "app3"}), nil)
	})
	t.Run("OKFilterStatus", func(t *testing.T) {
		st, b := setupOrders(t)
		checkStrings(t, "pending", list(t, st, b, paynotify.OrderFilter{Status: paynotify.StatusPending}), []string{"D", "C", "A"})
		checkStrings(t, "app1 paid", list(t, st, b, paynotify.OrderFilter{App: "app1", Status: paynotify.StatusPaid}), []string{"B"})
		checkStrings(t, "app2 paid", list(t, st, b, paynotify.OrderFilter{App: "app2", Status: paynotify.StatusPaid}), nil)
	})
	t.Run("OKFilterSince", func(t *testing.T) {
		// Created at or after Since: B was created at T0+1s exactly.
		st, b := setupOrders(t)
		checkStrings(t, "since B", list(t, st, b, paynotify.OrderFilter{Since: T0.Add(time.Second)}), []string{"D", "C", "B"})
		checkStrings(t, "since after B", list(t, st, b, paynotify.OrderFilter{Since: T0.Add(time.Second + time.Microsecond)}), []string{"D", "C"})
		checkStrings(t, "since before A", list(t, st, b, paynotify.OrderFilter{Since: T0.Add(-time.Hour)}), []string{"D", "C", "B", "A"})
		checkStrings(t, "since after D", list(t, st, b, paynotify.OrderFilter{Since: T0.Add(4 * time.Second)}), nil)
		checkStrings(t, "app1 pending since B", list(t, st, b, paynotify.OrderFilter{App: "app1", Status: paynotify.StatusPending,
			Since: T0.Add(time.Second)}), []string{"D"})
		checkStrings(t, "since B limit 2", list(t, st, b, paynotify.OrderFilter{Since: T0.Add(time.Second), Limit: 2}), []string{"D", "C"})
	})
	t.Run("OKLimit", func(t *testing.T) {
		st, b := setupOrders(t)
		checkStrings(t, "limit 2", list(t, st, b, paynotify.OrderFilter{Limit: 2}), []string{"D", "C"})
	})
	t.Run("OKDefaultLimit", func(t *testing.T) {
		st, b := s.setup(t)
		for i := range 101 {
			MustCreateOrder(t, b.ctx, st, NewOrder("app1", fmt.Sprintf("T%03d", i), T0.Add(time.Duration(i)*time.Millisecond)))
		}
		got := list(t, st, b, paynotify.OrderFilter{})
		if len(got) != 100 || got[0] != "T100" {
			t.Errorf("got %d orders starting %q, want 100 starting T100", len(got), got[0])
		}
	})
}

func (s *suite) testTimes(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		st, b := s.setup(t)
		o := NewOrder("app1", "T1", T0) // Beijing time, microseconds
		stored := MustCreateOrder(t, b.ctx, st, o)
		got, err := st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		if !got.CreatedAt.Equal(T0) || got.CreatedAt.Nanosecond() != 123456000 || got.PaidAt != nil {
			t.Errorf("CreatedAt = %v, PaidAt = %v; want %v, nil", got.CreatedAt, got.PaidAt, T0)
		}
		checkUTC(t, "CreatedAt", got.CreatedAt)
		paidAt := time.Date(2026, 11, 29, 2, 31, 0, 999999000, time.UTC)
		MustCommit(t, b.ctx, st, PaidChange(stored, "ev1", "nt1", paidAt))
		got, err = st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		if got.PaidAt == nil || !got.PaidAt.Equal(paidAt) {
			t.Fatalf("PaidAt = %v, want %v", got.PaidAt, paidAt)
		}
		checkUTC(t, "PaidAt", *got.PaidAt)
	})

	t.Run("OKTruncated", func(t *testing.T) {
		st, b := s.setup(t)
		o := NewOrder("app1", "T1", T0.Add(789*time.Nanosecond))
		got := MustCreateOrder(t, b.ctx, st, o)
		if !got.CreatedAt.Equal(T0) {
			t.Errorf("CreatedAt = %v, want %v (truncated to the microsecond)", got.CreatedAt, T0)
		}
	})

	t.Run("OKZero", func(t *testing.T) {
		st, b := s.setup(t)
		o := NewOrder("app1", "T1", T0)
		o.ExpiresAt = time.Time{}
		MustCreateOrder(t, b.ctx, st, o)
		got, err := st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		if !got.ExpiresAt.IsZero() {
			t.Errorf("ExpiresAt = %v, want zero", got.ExpiresAt)
		}
	})
}

func newRefund(o *paynotify.Order, no string, amount paynotify.Amount, at time.Time) *paynotify.Refund {
	return &paynotify.Refund{App: o.App, OutTradeNo: o.OutTradeNo, OutRequestNo: no, Amount: amount, Reason: "退货",
		Status: paynotify.RefundPending, CreatedAt: at, UpdatedAt: at}
}

// checkRefund fails the test unless got is want as a store reads it back.
func checkRefund(tb testing.TB, got, want *paynotify.Refund) {
	tb.Helper()
	if got == nil {
		tb.Fatalf("refund = nil, want %s", want.OutRequestNo)
	}
	checkUTC(tb, "refund CreatedAt", got.CreatedAt)
	checkUTC(tb, "refund UpdatedAt", got.UpdatedAt)
	if got.NextCheckAt != nil {
		checkUTC(tb, "refund NextCheckAt", *got.NextCheckAt)
	}
	w := *want
	w.CreatedAt, w.UpdatedAt, w.NextCheckAt = trunc(w.CreatedAt), trunc(w.UpdatedAt), truncPtr(w.NextCheckAt)
	if !reflect.DeepEqual(*got, w) {
		tb.Errorf("refund:\n got %+v next_check_at=%s\nwant %+v next_check_at=%s", *got, fmtTime(got.NextCheckAt), w, fmtTime(w.NextCheckAt))
	}
}

func (s *suite) testRefund(t *testing.T) {
	setupPaid := func(t *testing.T) (paynotify.Store, *bundle, *paynotify.Order) {
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		c := PaidChange(o, "ev1", "nt1", T0.Add(time.Minute))
		MustCommit(t, b.ctx, st, c)
		return st, b, c.Order
	}

	t.Run("OK", func(t *testing.T) {
		// R0 recorded after R1, with an earlier CreatedAt (another process's clock behind):
		// listed in the order they were recorded, not by their clocks (the Processor reads that
		// order as which came first).
		st, b, o := setupPaid(t)
		r1 := newRefund(o, "R1", 100, T0.Add(3*time.Minute))
		r2 := newRefund(o, "R0", 200, T0.Add(2*time.Minute))
		for _, r := range []*paynotify.Refund{r1, r2} {
			got, created, err := st.CreateRefund(b.ctx, r)
			if err != nil || !created {
				t.Fatalf("CreateRefund = %v, %v; want created", created, err)
			}
			checkRefund(t, got, r)
		}
		got, err := st.ListRefunds(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("ListRefunds: %d refunds, want 2", len(got))
		}
		checkRefund(t, got[0], r1) // first recorded first
		checkRefund(t, got[1], r2)
		none, err := st.ListRefunds(b.ctx, "app1", "T2")
		if err != nil || len(none) != 0 {
			t.Errorf("ListRefunds(unknown) = %v, %v; want none", none, err)
		}
	})

	t.Run("OKSchedule", func(t *testing.T) {
		// CreateRefund keeps NextCheckAt; NeedsAttention is the checks' to set, never inserted.
		st, b, o := setupPaid(t)
		r := newRefund(o, "R1", 100, T0.Add(2*time.Minute))
		r.NextCheckAt = at(T0.Add(3*time.Minute + 789*time.Nanosecond))
		r.NeedsAttention = true
		got, created, err := st.CreateRefund(b.ctx, r)
		if err != nil || !created {
			t.Fatalf("CreateRefund = %v, %v; want created", created, err)
		}
		want := *r
		want.NeedsAttention = false
		checkRefund(t, got, &want)
		list, err := st.ListRefunds(b.ctx, "app1", "T1")
		if err != nil || len(list) != 1 {
			t.Fatalf("ListRefunds = %d refunds, %v; want 1", len(list), err)
		}
		checkRefund(t, list[0], &want)
		if !list[0].NextCheckAt.Equal(T0.Add(3 * time.Minute)) {
			t.Errorf("NextCheckAt = %s, want %s", fmtTime(list[0].NextCheckAt), fmtTime(at(T0.Add(3*time.Minute))))
		}
	})

	t.Run("OKExisting", func(t *testing.T) {
		st, b, o := setupPaid(t)
		r := newRefund(o, "R1", 100, T0.Add(2*time.Minute))
		if _, _, err := st.CreateRefund(b.ctx, r); err != nil {
			t.Fatal(err)
		}
		again := newRefund(o, "R1", 500, T0.Add(time.Hour))
		again.Reason = "other"
		got, created, err := st.CreateRefund(b.ctx, again)
		if err != nil {
			t.Fatal(err)
		}
		if created {
			t.Errorf("created = true, want false")
		}
		checkRefund(t, got, r)
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		st, b, o := setupPaid(t)
		r := newRefund(o, "R1", 100, T0)
		r.OutTradeNo = "T2"
		_, _, err := st.CreateRefund(b.ctx, r)
		checkNotFound(t, err)
	})

	t.Run("ErrExceedsAmount", func(t *testing.T) {
		st, b, o := setupPaid(t) // amount 1234
		if _, _, err := st.CreateRefund(b.ctx, newRefund(o, "R1", 1000, T0)); err != nil {
			t.Fatal(err)
		}
		// R1 is pending: R2 fits only if R1 fails, so "ask again" (ECONFLICT); past the amount
		// whatever R1 becomes is EINVALID.
		_, _, err := st.CreateRefund(b.ctx, newRefund(o, "R2", 235, T0))
		if paynotify.ErrorCode(err) != paynotify.ECONFLICT {
			t.Fatalf("refund past the amount beside a pending one: err = %v, want ECONFLICT", err)
		}
		if _, _, err := st.CreateRefund(b.ctx, newRefund(o, "R3", 1235, T0)); paynotify.ErrorCode(err) != paynotify.EINVALID {
			t.Fatalf("refund past the amount whatever the pending one becomes: err = %v, want EINVALID", err)
		}
		// Exactly up to the amount is fine; the existing R1 again is returned, not checked.
		if _, created, err := st.CreateRefund(b.ctx, newRefund(o, "R2", 234, T0)); err != nil || !created {
			t.Fatalf("refund up to the amount: %v, %v", created, err)
		}
		if _, created, err := st.CreateRefund(b.ctx, newRefund(o, "R1", 1000, T0)); err != nil || created {
			t.Fatalf("existing refund: %v, %v", created, err)
		}
	})

	t.Run("OKFailedFreesAmount", func(t *testing.T) {
		st, b, o := setupPaid(t)
		r := newRefund(o, "R1", 1234, T0)
		if _, _, err := st.CreateRefund(b.ctx, r); err != nil {
			t.Fatal(err)
		}
		failed := *r
		failed.Status = paynotify.RefundFailed
		next := *o
		next.Version++
		MustCommit(t, b.ctx, st, &paynotify.Change{Order: &next, PrevVersion: o.Version, Refund: &failed})
		if _, created, err := st.CreateRefund(b.ctx, newRefund(o, "R2", 1234, T0)); err != nil || !created {
			t.Fatalf("refund after a failed one: %v, %v", created, err)
		}
	})

	t.Run("OKConcurrentExceed", func(t *testing.T) {
		st, b, o := setupPaid(t)
		const n = 10
		var wg sync.WaitGroup
		errs := make([]error, n)
		created := make([]bool, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, created[i], errs[i] = st.CreateRefund(b.ctx, newRefund(o, fmt.Sprintf("R%d", i), 1000, T0))
			}()
		}
		wg.Wait()
		ok := 0
		for i := range n {
			switch {
			case errs[i] == nil && created[i]:
				ok++
			case paynotify.ErrorCode(errs[i]) != paynotify.ECONFLICT: // the winner is pending: "ask again"
				t.Errorf("refund %d: %v", i, errs[i])
			}
		}
		if ok != 1 {
			t.Fatalf("%d concurrent refunds of 1000 on an order of 1234 were recorded, want 1", ok)
		}
	})

	t.Run("OKSucceededStays", func(t *testing.T) {
		st, b, o := setupPaid(t)
		r := newRefund(o, "R1", 100, T0)
		r.Status = paynotify.RefundSucceeded
		r.ProviderRefundNo = "PR1"
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r})
		late := *r
		late.Status, late.ProviderRefundNo = paynotify.RefundFailed, ""
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: &late})
		got, err := st.ListRefunds(b.ctx, "app1", "T1")
		if err != nil || len(got) != 1 || got[0].Status != paynotify.RefundSucceeded || got[0].ProviderRefundNo != "PR1" {
			t.Fatalf("refund after a late failure: %+v, %v", got, err)
		}
	})

	t.Run("OKCommitUpsert", func(t *testing.T) {
		st, b, o := setupPaid(t)
		r := newRefund(o, "R1", 100, T0.Add(2*time.Minute))
		if _, _, err := st.CreateRefund(b.ctx, r); err != nil {
			t.Fatal(err)
		}
		next := *o
		next.RefundedAmount = 100
		next.Version++
		upd := *r
		upd.Status = paynotify.RefundSucceeded
		upd.ProviderRefundNo = "PR1"
		upd.UpdatedAt = T0.Add(5 * time.Minute)
		upd.Amount = 999       // not replaced
		upd.Reason = "ignored" // not replaced
		upd.CreatedAt = T0     // not replaced
		MustCommit(t, b.ctx, st, &paynotify.Change{Order: &next, PrevVersion: o.Version, Refund: &upd})
		got, err := st.ListRefunds(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		want := *r
		want.Status, want.ProviderRefundNo, want.UpdatedAt = upd.Status, upd.ProviderRefundNo, upd.UpdatedAt
		if len(got) != 1 {
			t.Fatalf("ListRefunds: %d refunds, want 1", len(got))
		}
		checkRefund(t, got[0], &want)
	})

	t.Run("OKCommitInsert", func(t *testing.T) {
		st, b, o := setupPaid(t)
		r := newRefund(o, "R9", 300, T0.Add(2*time.Minute))
		r.Status = paynotify.RefundSucceeded
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r})
		got, err := st.ListRefunds(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("ListRefunds: %d refunds, want 1", len(got))
		}
		checkRefund(t, got[0], r)
	})

	t.Run("ErrCommitNotFound", func(t *testing.T) {
		st, b, o := setupPaid(t)
		r := newRefund(o, "R9", 300, T0)
		r.OutTradeNo = "T2"
		_, err := st.Commit(b.ctx, &paynotify.Change{Refund: r, Events: []*paynotify.Event{
			paynotify.NewEvent("evX", paynotify.EventRefundFailed, T0, o, nil, nil)}})
		checkNotFound(t, err)
		if evs := MustListEvents(t, b.ctx, st, paynotify.EventFilter{}); len(evs) != 1 {
			t.Errorf("events = %q, want only ev1", eventIDs(evs))
		}
	})
}

func (s *suite) testCommit(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		c := PaidChange(o, "ev1", "nt1", T0.Add(time.Minute))
		if anomalyNew := MustCommit(t, b.ctx, st, c); anomalyNew {
			t.Errorf("anomalyNew = true without an anomaly")
		}
		got, err := st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		checkOrder(t, got, c.Order)
		evs := MustListEvents(t, b.ctx, st, paynotify.EventFilter{})
		if len(evs) != 1 {
			t.Fatalf("events = %q, want [ev1]", eventIDs(evs))
		}
		checkEvent(t, evs[0], c.Events[0])
		nts := MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{})
		if len(nts) != 1 {
			t.Fatalf("evidence = %q, want [nt1]", evidenceIDs(nts))
		}
		checkEvidence(t, nts[0], c.Evidence)
	})

	t.Run("OKTermsFixed", func(t *testing.T) {
		// Commit writes the order's state; its terms stay as created.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		c := PaidChange(o, "ev1", "nt1", T0.Add(time.Minute))
		n := c.Order
		n.Channel, n.Amount, n.Currency, n.Subject, n.Body = paynotify.ChannelWechatNative, 1, "USD", "other", "other"
		n.PayerOpenID, n.CreatedAt, n.ExpiresAt, n.Pay = "o_other", T0.Add(time.Hour), T0.Add(9*time.Hour), json.RawMessage(`{"x":1}`)
		n.RefundedAmount = 7
		MustCommit(t, b.ctx, st, c)
		got, err := st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		want := *o
		want.Status, want.RefundedAmount, want.ProviderTradeNo, want.Version, want.PaidAt =
			n.Status, n.RefundedAmount, n.ProviderTradeNo, n.Version, n.PaidAt
		want.NextCheckAt = nil
		checkOrder(t, got, &want)
	})

	t.Run("OKMultiStep", func(t *testing.T) {
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		d := paynotify.Decide(o, paynotify.Fact{Kind: paynotify.FactFinished, Amount: o.Amount, HasAmount: true,
			ProviderTradeNo: "P1", At: T0.Add(time.Minute)})
		if len(d.Steps) != 2 {
			t.Fatalf("Decide: %d steps, want 2", len(d.Steps))
		}
		c := &paynotify.Change{Order: d.Final(), PrevVersion: o.Version}
		for i, step := range d.Steps {
			c.Events = append(c.Events, paynotify.NewEvent(fmt.Sprint("ev", i), step.Event, T0.Add(time.Minute), &step.Order, step.Refund, nil))
		}
		MustCommit(t, b.ctx, st, c)
		got, err := st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != 3 || got.Status != paynotify.StatusFinished {
			t.Errorf("order version %d status %s, want 3 finished", got.Version, got.Status)
		}
		evs := MustListEvents(t, b.ctx, st, paynotify.EventFilter{})
		checkStrings(t, "events", eventIDs(evs), []string{"ev0", "ev1"})
		if len(evs) == 2 && (evs[0].Version != 2 || evs[1].Version != 3 || evs[0].Seq >= evs[1].Seq) {
			t.Errorf("events versions %d, %d seqs %d, %d; want 2, 3 in seq order", evs[0].Version, evs[1].Version, evs[0].Seq, evs[1].Seq)
		}
	})

	t.Run("ErrVersionConflict", func(t *testing.T) {
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		MustCommit(t, b.ctx, st, PaidChange(o, "ev1", "nt1", T0.Add(time.Minute)))

		// A change decided from version 1, now stale, carrying everything a change can carry.
		stale := PaidChange(o, "ev2", "nt2", T0.Add(2*time.Minute))
		stale.Refund = newRefund(o, "R1", 100, T0)
		stale.Anomaly = &paynotify.Anomaly{App: "app1", OutTradeNo: "T1", Reason: paynotify.ReasonLatePayment, Key: "k1",
			Event: paynotify.NewEvent("ev3", paynotify.EventOrderAnomaly, T0, o, nil, &paynotify.EventAnomaly{Reason: paynotify.ReasonLatePayment})}
		_, err := st.Commit(b.ctx, stale)
		if !errors.Is(err, paynotify.ErrVersionConflict) {
			t.Fatalf("Commit = %v, want ErrVersionConflict", err)
		}
		got, err := st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != 2 || got.PaidAt == nil || !got.PaidAt.Equal(T0.Add(time.Minute)) {
			t.Errorf("order version %d paid_at %v, want 2 and the first payment", got.Version, got.PaidAt)
		}
		checkStrings(t, "events", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{})), []string{"ev1"})
		checkStrings(t, "evidence", evidenceIDs(MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{})), []string{"nt1"})
		if rs, err := st.ListRefunds(b.ctx, "app1", "T1"); err != nil || len(rs) != 0 {
			t.Errorf("refunds = %v, %v; want none", rs, err)
		}
		// The anomaly was not recorded: recording it now is new.
		if anomalyNew := MustCommit(t, b.ctx, st, &paynotify.Change{Anomaly: stale.Anomaly}); !anomalyNew {
			t.Errorf("anomaly recorded by a losing commit")
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		st, b := s.setup(t)
		o := NewOrder("app1", "T1", T0)
		_, err := st.Commit(b.ctx, PaidChange(o, "ev1", "nt1", T0))
		checkNotFound(t, err)
		if evs := MustListEvents(t, b.ctx, st, paynotify.EventFilter{}); len(evs) != 0 {
			t.Errorf("events = %q, want none", eventIDs(evs))
		}
		if nts := MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{}); len(nts) != 0 {
			t.Errorf("evidence = %q, want none", evidenceIDs(nts))
		}
	})

	t.Run("ErrDuplicateEventID", func(t *testing.T) {
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T2", T0))
		MustCommit(t, b.ctx, st, PaidChange(o, "ev1", "nt1", T0))
		o2, err := st.GetOrder(b.ctx, "app1", "T2")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Commit(b.ctx, PaidChange(o2, "ev1", "nt2", T0)); err == nil {
			t.Fatal("Commit with a duplicate event id succeeded")
		}
		got, err := st.GetOrder(b.ctx, "app1", "T2")
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != 1 {
			t.Errorf("order version %d after a failed commit, want 1 (rolled back)", got.Version)
		}
		checkStrings(t, "evidence", evidenceIDs(MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{})), []string{"nt1"})
	})

	t.Run("OKConcurrent", func(t *testing.T) {
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		const n = 50
		var wg sync.WaitGroup
		var won, lost atomic.Int32
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Each request decided the same transition from version 1, with its own ids.
				c := PaidChange(o, fmt.Sprint("ev", i), fmt.Sprint("nt", i), T0.Add(time.Minute))
				<-start
				_, err := st.Commit(b.ctx, c)
				switch {
				case err == nil:
					won.Add(1)
				case errors.Is(err, paynotify.ErrVersionConflict):
					lost.Add(1)
				default:
					t.Errorf("Commit: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if won.Load() != 1 || lost.Load() != n-1 {
			t.Errorf("won %d, lost %d; want 1, %d", won.Load(), lost.Load(), n-1)
		}
		evs := MustListEvents(t, b.ctx, st, paynotify.EventFilter{Limit: 1000})
		nts := MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{Limit: 1000})
		if len(evs) != 1 || len(nts) != 1 || evs[0].ID[2:] != nts[0].ID[2:] {
			t.Errorf("events %q, evidence %q; want one set, of the winner", eventIDs(evs), evidenceIDs(nts))
		}
		got, err := st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != 2 || got.Status != paynotify.StatusPaid {
			t.Errorf("order version %d status %s, want 2 paid", got.Version, got.Status)
		}
	})

	anomalyChange := func(o *paynotify.Order, key, eventID string) *paynotify.Change {
		return &paynotify.Change{
			Anomaly: &paynotify.Anomaly{App: o.App, OutTradeNo: o.OutTradeNo, Reason: paynotify.ReasonAmountMismatch, Key: key,
				Event: paynotify.NewEvent(eventID, paynotify.EventOrderAnomaly, T0, o, nil,
					&paynotify.EventAnomaly{Reason: paynotify.ReasonAmountMismatch, NotificationID: "n-" + eventID})},
			Evidence: &paynotify.Evidence{ID: "nt-" + eventID, App: o.App, Provider: paynotify.ProviderAlipay, ReceivedAt: T0,
				Verdict: paynotify.VerdictAnomaly, Reason: paynotify.ReasonAmountMismatch, OutTradeNo: o.OutTradeNo, Answer: "fail"},
		}
	}

	t.Run("OKAnomalyOnce", func(t *testing.T) {
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		if !MustCommit(t, b.ctx, st, anomalyChange(o, "k1", "ev1")) {
			t.Errorf("first anomaly: anomalyNew = false")
		}
		if MustCommit(t, b.ctx, st, anomalyChange(o, "k1", "ev2")) {
			t.Errorf("retried anomaly: anomalyNew = true")
		}
		if !MustCommit(t, b.ctx, st, anomalyChange(o, "k2", "ev3")) {
			t.Errorf("other anomaly: anomalyNew = false")
		}
		o2 := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T2", T0))
		if !MustCommit(t, b.ctx, st, anomalyChange(o2, "k1", "ev4")) {
			t.Errorf("same key, other order: anomalyNew = false")
		}
		checkStrings(t, "events", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{})), []string{"ev1", "ev3", "ev4"})
		// Every request keeps its evidence, retries included.
		checkStrings(t, "evidence", evidenceIDs(MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{})),
			[]string{"nt-ev4", "nt-ev3", "nt-ev2", "nt-ev1"})
		got, err := st.GetOrder(b.ctx, "app1", "T1")
		if err != nil {
			t.Fatal(err)
		}
		checkOrder(t, got, o) // unchanged
	})

	t.Run("OKAnomalyConcurrent", func(t *testing.T) {
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		var wg sync.WaitGroup
		var newN atomic.Int32
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				anomalyNew, err := st.Commit(b.ctx, anomalyChange(o, "k1", fmt.Sprint("ev", i)))
				if err != nil {
					t.Errorf("Commit: %v", err)
				}
				if anomalyNew {
					newN.Add(1)
				}
			}()
		}
		wg.Wait()
		if newN.Load() != 1 {
			t.Errorf("anomalyNew %d times, want 1", newN.Load())
		}
		if evs := MustListEvents(t, b.ctx, st, paynotify.EventFilter{}); len(evs) != 1 {
			t.Errorf("events = %q, want one", eventIDs(evs))
		}
	})

	t.Run("ErrOrderAtConflict", func(t *testing.T) {
		// An anomaly decided on version 1, committed after the order moved to 2 (its event would
		// follow v2's with v1's data): refused with nothing written, alone and in a batch; at the
		// current version it is written; for a missing order ENOTFOUND.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		MustCommit(t, b.ctx, st, PaidChange(o, "ev-paid", "nt-paid", T0.Add(time.Minute)))
		stale := func(key, eventID string) *paynotify.Change {
			c := anomalyChange(o, key, eventID)
			c.OrderAt = o.Version
			return c
		}
		if _, err := st.Commit(b.ctx, stale("k1", "ev1")); !errors.Is(err, paynotify.ErrVersionConflict) {
			t.Fatalf("stale anomaly alone: %v, want a version conflict", err)
		}
		o2 := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T2", T0))
		fresh := anomalyChange(o2, "k2", "ev2")
		fresh.OrderAt = o2.Version
		errs := HeldBatch(t, st, nil,
			func() error { _, err := st.Commit(b.ctx, stale("k3", "ev3")); return err },
			func() error { _, err := st.Commit(b.ctx, fresh); return err })
		if !errors.Is(errs[0], paynotify.ErrVersionConflict) || errs[1] != nil {
			t.Fatalf("in a batch: stale %v (want a version conflict), fresh %v", errs[0], errs[1])
		}
		checkStrings(t, "events", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{})), []string{"ev-paid", "ev2"})
		checkStrings(t, "evidence", evidenceIDs(MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{})), []string{"nt-paid", "nt-ev2"})
		missing := anomalyChange(&paynotify.Order{App: "app1", OutTradeNo: "NOPE", Version: 1}, "k4", "ev4")
		missing.OrderAt = 1
		_, err := st.Commit(b.ctx, missing)
		checkNotFound(t, err)
	})

	t.Run("OKOrphanAnomaly", func(t *testing.T) {
		st, b := s.setup(t)
		ev := paynotify.NewOrphanAnomalyEvent("ev1", "app1", "NOPE", T0, &paynotify.EventAnomaly{Reason: paynotify.ReasonUnknownOrder})
		c := &paynotify.Change{Anomaly: &paynotify.Anomaly{App: "app1", OutTradeNo: "NOPE", Reason: paynotify.ReasonUnknownOrder, Key: "k", Event: ev}}
		if !MustCommit(t, b.ctx, st, c) {
			t.Errorf("anomalyNew = false")
		}
		evs := MustListEvents(t, b.ctx, st, paynotify.EventFilter{})
		if len(evs) != 1 {
			t.Fatalf("events = %q, want [ev1]", eventIDs(evs))
		}
		checkEvent(t, evs[0], ev)
	})

	t.Run("OKLatePayment", func(t *testing.T) {
		// An order change and a new anomaly together: the anomaly's event comes after the
		// change's events.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		c := PaidChange(o, "ev1", "nt1", T0)
		c.Anomaly = &paynotify.Anomaly{App: "app1", OutTradeNo: "T1", Reason: paynotify.ReasonLatePayment, Key: "k",
			Event: paynotify.NewEvent("ev2", paynotify.EventOrderAnomaly, T0, c.Order, nil, &paynotify.EventAnomaly{Reason: paynotify.ReasonLatePayment})}
		if !MustCommit(t, b.ctx, st, c) {
			t.Errorf("anomalyNew = false")
		}
		checkStrings(t, "events", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{})), []string{"ev1", "ev2"})
	})

	t.Run("OKEvidenceOnly", func(t *testing.T) {
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		e := NewEvidence("nt1", o, T0)
		e.Verdict = paynotify.VerdictDuplicate
		MustCommit(t, b.ctx, st, &paynotify.Change{Evidence: e})
		nts := MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{})
		if len(nts) != 1 {
			t.Fatalf("evidence = %q, want [nt1]", evidenceIDs(nts))
		}
		checkEvidence(t, nts[0], e)
	})

	t.Run("OKRepeat", func(t *testing.T) {
		// A repeat is counted on the record with its id (the latest time kept, whatever order
		// the repeats commit in); a repeat of an id no record has is inserted as it is.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		e := NewEvidence("nt1", o, T0)
		e.Verdict = paynotify.VerdictDuplicate
		MustCommit(t, b.ctx, st, &paynotify.Change{Evidence: e})
		for _, d := range []time.Duration{2 * time.Second, time.Second} {
			r := *e
			r.ReceivedAt, r.DurationMS = T0.Add(d), 99
			MustCommit(t, b.ctx, st, &paynotify.Change{Evidence: &r, Repeat: true})
		}
		got, err := st.GetEvidence(b.ctx, "nt1")
		if err != nil {
			t.Fatal(err)
		}
		if got.Repeats != 2 || !got.LastReceivedAt.Equal(T0.Add(2*time.Second)) {
			t.Errorf("nt1: repeats %d, last received %v; want 2, %v", got.Repeats, got.LastReceivedAt, T0.Add(2*time.Second))
		}
		checkUTC(t, "LastReceivedAt", got.LastReceivedAt)
		got.Repeats, got.LastReceivedAt = 0, time.Time{}
		checkEvidence(t, got, e) // the rest as first stored
		gone := *e
		gone.ID, gone.ReceivedAt = "nt_gone", T0.Add(3*time.Second)
		MustCommit(t, b.ctx, st, &paynotify.Change{Evidence: &gone, Repeat: true})
		nts := MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{})
		checkStrings(t, "evidence", evidenceIDs(nts), []string{"nt_gone", "nt1"})
		checkEvidence(t, nts[0], &gone)

		// A repeat that writes anything else, or of a record that is not a duplicate, is refused.
		bad := *e
		bad.ReceivedAt = T0.Add(4 * time.Second)
		for name, c := range map[string]*paynotify.Change{
			"with an order change":  PaidChange(o, "ev_bad", "nt1", T0),
			"of an accepted record": {Evidence: func() *paynotify.Evidence { a := bad; a.Verdict = paynotify.VerdictAccepted; return &a }(), Repeat: true},
		} {
			c.Repeat = true
			if _, err := st.Commit(b.ctx, c); paynotify.ErrorCode(err) != paynotify.EINVALID {
				t.Errorf("a repeat %s: err = %v, want EINVALID", name, err)
			}
		}
		acc := NewEvidence("nt_acc", o, T0)
		MustCommit(t, b.ctx, st, &paynotify.Change{Evidence: acc})
		onAccepted := bad
		onAccepted.ID = "nt_acc"
		if _, err := st.Commit(b.ctx, &paynotify.Change{Evidence: &onAccepted, Repeat: true}); err == nil {
			t.Errorf("a repeat counted on an accepted record: no error")
		}
		if got, err := st.GetEvidence(b.ctx, "nt_acc"); err != nil || got.Repeats != 0 || got.Verdict != paynotify.VerdictAccepted {
			t.Errorf("the accepted record after a repeat aimed at it: %+v, %v", got, err)
		}
		if got, err := st.GetEvidence(b.ctx, "nt1"); err != nil || got.Repeats != 2 {
			t.Errorf("nt1 after refused repeats: %+v, %v; want 2 repeats", got, err)
		}
		if _, err := st.Commit(b.ctx, &paynotify.Change{Evidence: &bad, RepeatVersion: o.Version}); paynotify.ErrorCode(err) != paynotify.EINVALID {
			t.Errorf("a repeat version without a repeat: err = %v, want EINVALID", err)
		}

		// Conditioned on the order's version (RepeatVersion): counted while the order is at it;
		// once the order moved, or when the record is gone, ErrRepeatMissed and nothing written.
		at := bad
		at.ReceivedAt = T0.Add(5 * time.Second)
		MustCommit(t, b.ctx, st, &paynotify.Change{Evidence: &at, Repeat: true, RepeatVersion: o.Version})
		if got, err := st.GetEvidence(b.ctx, "nt1"); err != nil || got.Repeats != 3 || !got.LastReceivedAt.Equal(at.ReceivedAt) {
			t.Errorf("nt1 after a conditioned repeat: %+v, %v; want 3 repeats, the last at %v", got, err, at.ReceivedAt)
		}
		missing := at
		missing.ID = "nt_never"
		if _, err := st.Commit(b.ctx, &paynotify.Change{Evidence: &missing, Repeat: true, RepeatVersion: o.Version}); !errors.Is(err, paynotify.ErrRepeatMissed) {
			t.Errorf("a conditioned repeat of a missing record: err = %v, want ErrRepeatMissed", err)
		}
		if _, err := st.GetEvidence(b.ctx, "nt_never"); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
			t.Errorf("a missed conditioned repeat inserted its record: %v", err)
		}
		MustCommit(t, b.ctx, st, PaidChange(o, "ev_paid", "nt_paid", T0))
		if _, err := st.Commit(b.ctx, &paynotify.Change{Evidence: &at, Repeat: true, RepeatVersion: o.Version}); !errors.Is(err, paynotify.ErrRepeatMissed) {
			t.Errorf("a conditioned repeat after the order moved: err = %v, want ErrRepeatMissed", err)
		}
		if got, err := st.GetEvidence(b.ctx, "nt1"); err != nil || got.Repeats != 3 {
			t.Errorf("nt1 after a missed repeat: %+v, %v; want 3 repeats still", got, err)
		}
	})
}

func (s *suite) testEvents(t *testing.T) {
	// setupEvents commits, in order: app1/T1 paid (e1), app2/T2 paid (e2), app1/T3 paid (e3),
	// app1/T1 finished (e4).
	setupEvents := func(t *testing.T) (paynotify.Store, *bundle, []*paynotify.Event) {
		st, b := s.setup(t)
		var all []*paynotify.Event
		orders := map[string]*paynotify.Order{}
		for i, k := range []struct{ app, no string }{{"app1", "T1"}, {"app2", "T2"}, {"app1", "T3"}, {"app1", "T1"}} {
			o, ok := orders[k.no]
			if !ok {
				o = MustCreateOrder(t, b.ctx, st, NewOrder(k.app, k.no, T0))
			}
			c := PaidChange(o, fmt.Sprint("e", i+1), fmt.Sprint("nt", i+1), T0.Add(time.Duration(i)*time.Second))
			if ok {
				c.Order.Status = paynotify.StatusFinished
				c.Events[0] = paynotify.NewEvent(fmt.Sprint("e", i+1), paynotify.EventOrderFinished, T0, c.Order, nil, nil)
			}
			MustCommit(t, b.ctx, st, c)
			orders[k.no] = c.Order
			all = append(all, c.Events[0])
		}
		return st, b, all
	}

	t.Run("OK", func(t *testing.T) {
		st, b, want := setupEvents(t)
		got := MustListEvents(t, b.ctx, st, paynotify.EventFilter{})
		if len(got) != len(want) {
			t.Fatalf("events = %q, want 4", eventIDs(got))
		}
		for i := range got {
			checkEvent(t, got[i], want[i])
			if i > 0 && got[i].Seq <= got[i-1].Seq {
				t.Errorf("seq %d after %d: not increasing", got[i].Seq, got[i-1].Seq)
			}
		}
	})

	t.Run("OKAfter", func(t *testing.T) {
		st, b, _ := setupEvents(t)
		all := MustListEvents(t, b.ctx, st, paynotify.EventFilter{})
		checkStrings(t, "after e2", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{After: all[1].Seq})), []string{"e3", "e4"})
		checkStrings(t, "after last", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{After: all[3].Seq})), nil)
	})

	t.Run("OKApp", func(t *testing.T) {
		st, b, _ := setupEvents(t)
		checkStrings(t, "app1", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{App: "app1"})), []string{"e1", "e3", "e4"})
		all := MustListEvents(t, b.ctx, st, paynotify.EventFilter{})
		checkStrings(t, "app1 after e1", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{App: "app1", After: all[0].Seq})), []string{"e3", "e4"})
		checkStrings(t, "app3", eventIDs(MustListEvents(t, b.ctx, st, paynotify.EventFilter{App: "app3"})), nil)
	})

	t.Run("OKLimit", func(t *testing.T) {
		st, b, _ := setupEvents(t)
		page1 := MustListEvents(t, b.ctx, st, paynotify.EventFilter{Limit: 3})
		checkStrings(t, "page 1", eventIDs(page1), []string{"e1", "e2", "e3"})
		page2 := MustListEvents(t, b.ctx, st, paynotify.EventFilter{Limit: 3, After: page1[2].Seq})
		checkStrings(t, "page 2", eventIDs(page2), []string{"e4"})
	})

	t.Run("OKDefaultLimit", func(t *testing.T) {
		st, b := s.setup(t)
		c := &paynotify.Change{}
		for i := range 150 {
			c.Events = append(c.Events, paynotify.NewOrphanAnomalyEvent(fmt.Sprintf("e%03d", i), "app1", "T1", T0,
				&paynotify.EventAnomaly{Reason: paynotify.ReasonUnknownOrder}))
		}
		MustCommit(t, b.ctx, st, c)
		got := MustListEvents(t, b.ctx, st, paynotify.EventFilter{})
		if len(got) != 100 || got[0].ID != "e000" || got[99].ID != "e099" {
			t.Errorf("got %d events, want e000…e099", len(got))
		}
	})

	t.Run("OKDataExact", func(t *testing.T) {
		st, b := s.setup(t)
		data := json.RawMessage("{\"z\": 1,\n  \"a\": [1, 2.50, 1e3], \"s\": \"\\u00e9 é \\\"q\\\"\", \"dup\": 1, \"n\": null}")
		ev := &paynotify.Event{ID: "e1", Type: paynotify.EventOrderAnomaly, Timestamp: T0, App: "app1", OutTradeNo: "T1", Data: data}
		MustCommit(t, b.ctx, st, &paynotify.Change{Events: []*paynotify.Event{ev}})
		got := MustListEvents(t, b.ctx, st, paynotify.EventFilter{})
		if len(got) != 1 {
			t.Fatalf("events = %q, want [e1]", eventIDs(got))
		}
		checkEvent(t, got[0], ev)
	})
}

func (s *suite) testEvidence(t *testing.T) {
	// setupEvidence inserts, oldest first: n1 app1/T1 accepted, n2 app1/T2 rejected,
	// n3 app2/T1 accepted, n4 app1/T1 duplicate (one second apart).
	setupEvidence := func(t *testing.T) (paynotify.Store, *bundle, []*paynotify.Evidence) {
		st, b := s.setup(t)
		var all []*paynotify.Evidence
		for i, k := range []struct {
			app, no string
			v       paynotify.Verdict
		}{{"app1", "T1", paynotify.VerdictAccepted}, {"app1", "T2", paynotify.VerdictRejected},
			{"app2", "T1", paynotify.VerdictAccepted}, {"app1", "T1", paynotify.VerdictDuplicate}} {
			e := NewEvidence(fmt.Sprint("n", i+1), NewOrder(k.app, k.no, T0), T0.Add(time.Duration(i)*time.Second))
			e.Verdict = k.v
			if err := st.InsertEvidence(b.ctx, e); err != nil {
				t.Fatal(err)
			}
			all = append(all, e)
		}
		return st, b, all
	}
	list := func(t *testing.T, st paynotify.Store, b *bundle, f paynotify.EvidenceFilter) []string {
		t.Helper()
		return evidenceIDs(MustListEvidence(t, b.ctx, st, f))
	}

	t.Run("OKBodyBudget", func(t *testing.T) {
		// With a BodyBudget, the newest records carry their bodies and headers while their
		// running size stays within it; the rest come without (BodyOmitted), never loaded, in
		// the same order and with every other field (a reviewer helper's finding: a list loaded
		// a thousand 64 KiB bodies before the answer dropped most).
		st, b := s.setup(t)
		o := NewOrder("app1", "T1", T0)
		for i := range 5 {
			e := NewEvidence(fmt.Sprint("b", i+1), o, T0.Add(time.Duration(i)*time.Second))
			e.Body = bytes.Repeat([]byte{'x'}, 1000)
			if err := st.InsertEvidence(b.ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		// Each record is 1,000 bytes of body and some of headers: 2,500 holds two.
		got := MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{Limit: 10, BodyBudget: 2500})
		checkStrings(t, "records", evidenceIDs(got), []string{"b5", "b4", "b3", "b2", "b1"})
		for i, e := range got {
			loaded := i < 2
			if e.BodyOmitted == loaded || (len(e.Body) == 1000) != loaded || (e.Headers != nil) != loaded ||
				e.Detail != "applied" || e.OutTradeNo != "T1" || e.Answer != "success" {
				t.Errorf("record %s: omitted %v, body %d bytes, headers %v; want loaded %v", e.ID, e.BodyOmitted, len(e.Body), e.Headers, loaded)
			}
		}
		// Without a budget, every body.
		for _, e := range MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{Limit: 10}) {
			if e.BodyOmitted || len(e.Body) != 1000 {
				t.Errorf("record %s without a budget: omitted %v, body %d bytes", e.ID, e.BodyOmitted, len(e.Body))
			}
		}
		// A filter and a limit apply as without a budget.
		checkStrings(t, "limited", evidenceIDs(MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{App: "app1", Limit: 3, BodyBudget: 1 << 20})),
			[]string{"b5", "b4", "b3"})
		// The newest record without a body nor headers (an empty POST: NULL, not 0 bytes) is
		// listed, and counts as nothing (its NULL size failed the whole list: a reviewer's
		// finding).
		e := NewEvidence("b6", o, T0.Add(time.Minute))
		e.Body, e.Headers = nil, nil
		if err := st.InsertEvidence(b.ctx, e); err != nil {
			t.Fatal(err)
		}
		got = MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{Limit: 10, BodyBudget: 2500})
		checkStrings(t, "with an empty one", evidenceIDs(got), []string{"b6", "b5", "b4", "b3", "b2", "b1"})
		if got[0].BodyOmitted || got[0].Body != nil || got[1].BodyOmitted || got[2].BodyOmitted || !got[3].BodyOmitted {
			t.Errorf("with an empty one first: omitted %v %v %v %v", got[0].BodyOmitted, got[1].BodyOmitted, got[2].BodyOmitted, got[3].BodyOmitted)
		}
	})

	t.Run("OKClaimedText", func(t *testing.T) {
		// A rejected request can claim any bytes: NUL and non-UTF-8 in its out_trade_no and
		// detail are kept as U+FFFD on both stores (PostgreSQL text cannot hold them), the body
		// as it came.
		st, b := s.setup(t)
		e := NewEvidence("n_nul", NewOrder("app1", "T1", T0), T0)
		e.Verdict, e.Reason = paynotify.VerdictRejected, paynotify.ReasonSignatureInvalid
		e.OutTradeNo, e.Detail, e.Answer = "A\x00B\xff", "claimed \x00 here", "fail"
		e.Body = []byte("out_trade_no=A%00B&x=\x00\xff")
		if err := st.InsertEvidence(b.ctx, e); err != nil {
			t.Fatalf("InsertEvidence with NUL and non-UTF-8 text: %v", err)
		}
		got, err := st.GetEvidence(b.ctx, "n_nul")
		if err != nil {
			t.Fatal(err)
		}
		if got.OutTradeNo != "A\uFFFDB\uFFFD" || got.Detail != "claimed \uFFFD here" || string(got.Body) != string(e.Body) {
			t.Errorf("stored out_trade_no %q, detail %q, body %q", got.OutTradeNo, got.Detail, got.Body)
		}
	})

	t.Run("OK", func(t *testing.T) {
		st, b, want := setupEvidence(t)
		got := MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{})
		if len(got) != 4 {
			t.Fatalf("evidence = %q, want 4", evidenceIDs(got))
		}
		for i := range got {
			checkEvidence(t, got[i], want[3-i]) // newest first
		}
	})

	t.Run("OKFilters", func(t *testing.T) {
		st, b, _ := setupEvidence(t)
		checkStrings(t, "app1", list(t, st, b, paynotify.EvidenceFilter{App: "app1"}), []string{"n4", "n2", "n1"})
		checkStrings(t, "T1", list(t, st, b, paynotify.EvidenceFilter{OutTradeNo: "T1"}), []string{"n4", "n3", "n1"})
		checkStrings(t, "app1 T1", list(t, st, b, paynotify.EvidenceFilter{App: "app1", OutTradeNo: "T1"}), []string{"n4", "n1"})
		checkStrings(t, "accepted", list(t, st, b, paynotify.EvidenceFilter{Verdict: paynotify.VerdictAccepted}), []string{"n3", "n1"})
		checkStrings(t, "app2 rejected", list(t, st, b, paynotify.EvidenceFilter{App: "app2", Verdict: paynotify.VerdictRejected}), nil)
		checkStrings(t, "since n2", list(t, st, b, paynotify.EvidenceFilter{Since: T0.Add(time.Second)}), []string{"n4", "n3", "n2"})
		checkStrings(t, "since after n2", list(t, st, b, paynotify.EvidenceFilter{Since: T0.Add(time.Second + time.Microsecond)}), []string{"n4", "n3"})
		checkStrings(t, "app1 since n2 limit 1", list(t, st, b, paynotify.EvidenceFilter{App: "app1", Since: T0.Add(time.Second), Limit: 1}), []string{"n4"})
		checkStrings(t, "limit 2", list(t, st, b, paynotify.EvidenceFilter{Limit: 2}), []string{"n4", "n3"})
	})

	t.Run("OKGet", func(t *testing.T) {
		st, b, all := setupEvidence(t)
		for _, want := range all {
			got, err := st.GetEvidence(b.ctx, want.ID)
			if err != nil {
				t.Fatalf("GetEvidence(%s): %v", want.ID, err)
			}
			checkEvidence(t, got, want)
		}
	})

	t.Run("ErrGetNotFound", func(t *testing.T) {
		st, b, _ := setupEvidence(t)
		_, err := st.GetEvidence(b.ctx, "n9")
		checkNotFound(t, err)
		_, err = st.GetEvidence(b.ctx, "")
		checkNotFound(t, err)
	})

	t.Run("OKSource", func(t *testing.T) {
		// Source, Endpoint and ReprocessedFrom round-trip, through InsertEvidence and Commit; an
		// empty Source is stored as notification.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		plain := NewEvidence("n1", o, T0) // Source ""
		plain.Endpoint = "alipay"
		query := NewEvidence("n2", o, T0.Add(time.Second))
		query.Source, query.Endpoint = paynotify.SourceQuery, "alipay.trade.query"
		again := NewEvidence("n3", o, T0.Add(2*time.Second))
		again.Source, again.Endpoint, again.ReprocessedFrom = paynotify.SourceReprocess, "alipay", "n1"
		for _, e := range []*paynotify.Evidence{plain, query} {
			if err := st.InsertEvidence(b.ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		paid := PaidChange(o, "ev1", "n4", T0.Add(3*time.Second))
		paid.Evidence.Source, paid.Evidence.Endpoint = paynotify.SourceQuery, "alipay.trade.query"
		MustCommit(t, b.ctx, st, paid)
		MustCommit(t, b.ctx, st, &paynotify.Change{Evidence: again})
		inCommit := NewEvidence("n5", o, T0.Add(4*time.Second)) // Source "" through Commit
		MustCommit(t, b.ctx, st, &paynotify.Change{Evidence: inCommit})

		for _, want := range []*paynotify.Evidence{plain, query, again, paid.Evidence, inCommit} {
			got, err := st.GetEvidence(b.ctx, want.ID)
			if err != nil {
				t.Fatal(err)
			}
			checkEvidence(t, got, want)
		}
		if got, err := st.GetEvidence(b.ctx, "n1"); err != nil || got.Source != paynotify.SourceNotification {
			t.Errorf("evidence stored without a Source: Source %q, %v; want %q", got.Source, err, paynotify.SourceNotification)
		}
		list := MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{})
		if len(list) != 5 {
			t.Fatalf("evidence = %q, want 5", evidenceIDs(list))
		}
		checkEvidence(t, list[2], again) // newest first: n5, n4, n3, …
	})

	t.Run("OKFilterReasonSource", func(t *testing.T) {
		st, b := s.setup(t)
		o := NewOrder("app1", "T1", T0)
		for i, k := range []struct{ reason, source string }{
			{"", ""}, // n1: accepted notification, Source defaulted
			{paynotify.ReasonAmountMismatch, paynotify.SourceNotification},
			{paynotify.ReasonAmountMismatch, paynotify.SourceQuery},
			{paynotify.ReasonSignatureInvalid, paynotify.SourceQuery},
			{paynotify.ReasonAmountMismatch, paynotify.SourceReprocess},
		} {
			e := NewEvidence(fmt.Sprint("n", i+1), o, T0.Add(time.Duration(i)*time.Second))
			e.Reason, e.Source = k.reason, k.source
			if err := st.InsertEvidence(b.ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		checkStrings(t, "reason", list(t, st, b, paynotify.EvidenceFilter{Reason: paynotify.ReasonAmountMismatch}), []string{"n5", "n3", "n2"})
		checkStrings(t, "reason other", list(t, st, b, paynotify.EvidenceFilter{Reason: paynotify.ReasonSignatureInvalid}), []string{"n4"})
		checkStrings(t, "reason none", list(t, st, b, paynotify.EvidenceFilter{Reason: "nope"}), nil)
		checkStrings(t, "source notification", list(t, st, b, paynotify.EvidenceFilter{Source: paynotify.SourceNotification}), []string{"n2", "n1"})
		checkStrings(t, "source query", list(t, st, b, paynotify.EvidenceFilter{Source: paynotify.SourceQuery}), []string{"n4", "n3"})
		checkStrings(t, "source reprocess", list(t, st, b, paynotify.EvidenceFilter{Source: paynotify.SourceReprocess}), []string{"n5"})
		checkStrings(t, "reason and source", list(t, st, b, paynotify.EvidenceFilter{Reason: paynotify.ReasonAmountMismatch,
			Source: paynotify.SourceQuery}), []string{"n3"})
		checkStrings(t, "reason since", list(t, st, b, paynotify.EvidenceFilter{Reason: paynotify.ReasonAmountMismatch,
			Since: T0.Add(2 * time.Second)}), []string{"n5", "n3"})
		checkStrings(t, "reason limit", list(t, st, b, paynotify.EvidenceFilter{Reason: paynotify.ReasonAmountMismatch, Limit: 1}), []string{"n5"})
		checkStrings(t, "reason other app", list(t, st, b, paynotify.EvidenceFilter{App: "app2", Reason: paynotify.ReasonAmountMismatch}), nil)
	})

	t.Run("OKBodyHeaders", func(t *testing.T) {
		st, b := s.setup(t)
		body := make([]byte, 0, 256+paynotify.MaxEvidenceBody)
		for i := range 256 {
			body = append(body, byte(i))
		}
		body = append(body, bytes.Repeat([]byte{0xff, 0x00, 0xc3}, paynotify.MaxEvidenceBody/3)...)
		e := NewEvidence("n1", NewOrder("app1", "T1", T0), T0)
		e.Body = body
		e.Headers = http.Header{
			"Wechatpay-Signature": {"c2lnbmF0dXJl/+=="},
			"X-Empty":             {""},
			"X-Order":             {"z", "a", "m"},
			"X-Unicode":           {"中文 \u00e9 \"quoted\" <tag>&amp;"},
		}
		if err := st.InsertEvidence(b.ctx, e); err != nil {
			t.Fatal(err)
		}
		got := MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{})
		if len(got) != 1 {
			t.Fatalf("evidence = %q, want [n1]", evidenceIDs(got))
		}
		checkEvidence(t, got[0], e)
	})

	t.Run("OKEmpty", func(t *testing.T) {
		st, b := s.setup(t)
		e := &paynotify.Evidence{ID: "n1", App: "app1", Provider: paynotify.ProviderWechatpay, ReceivedAt: T0,
			Verdict: paynotify.VerdictRejected, Reason: paynotify.ReasonProbe}
		if err := st.InsertEvidence(b.ctx, e); err != nil {
			t.Fatal(err)
		}
		got := MustListEvidence(t, b.ctx, st, paynotify.EvidenceFilter{})
		if len(got) != 1 {
			t.Fatalf("evidence = %q, want [n1]", evidenceIDs(got))
		}
		checkEvidence(t, got[0], e)
		if len(got[0].Body) != 0 || got[0].Headers != nil {
			t.Errorf("body %q headers %v, want empty", got[0].Body, got[0].Headers)
		}
	})

	t.Run("ErrDuplicateID", func(t *testing.T) {
		st, b := s.setup(t)
		e := NewEvidence("n1", NewOrder("app1", "T1", T0), T0)
		if err := st.InsertEvidence(b.ctx, e); err != nil {
			t.Fatal(err)
		}
		if err := st.InsertEvidence(b.ctx, e); err == nil {
			t.Errorf("InsertEvidence with a duplicate id succeeded")
		}
	})
}
