package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// This file tests the reconciliation's part of the stores: the schedule (NextCheckAt, Checks,
// NeedsAttention) as CreateOrder, CreateRefund and Commit keep it, ClaimChecks and FinishCheck,
// ListPendingRefunds, ConfirmRefundAmount, and the defaults of rows written without the
// version 2 columns.

// MustGetOrder returns the stored order and fails the test on error.
func MustGetOrder(tb testing.TB, ctx context.Context, st paynotify.Store, app, outTradeNo string) *paynotify.Order {
	tb.Helper()
	o, err := st.GetOrder(ctx, app, outTradeNo)
	if err != nil {
		tb.Fatalf("GetOrder(%s, %s): %v", app, outTradeNo, err)
	}
	return o
}

// mustGetRefund returns the stored refund and fails the test unless it exists.
func mustGetRefund(tb testing.TB, ctx context.Context, st paynotify.Store, app, outTradeNo, outRequestNo string) *paynotify.Refund {
	tb.Helper()
	rs, err := st.ListRefunds(ctx, app, outTradeNo)
	if err != nil {
		tb.Fatalf("ListRefunds(%s, %s): %v", app, outTradeNo, err)
	}
	for _, r := range rs {
		if r.OutRequestNo == outRequestNo {
			return r
		}
	}
	tb.Fatalf("refund %s/%s/%s not found", app, outTradeNo, outRequestNo)
	return nil
}

// MustClaimChecks claims checks and fails the test on error.
func MustClaimChecks(tb testing.TB, ctx context.Context, st paynotify.Store, now time.Time, lease time.Duration, limit int) []*paynotify.Check {
	tb.Helper()
	cs, err := st.ClaimChecks(ctx, now, lease, limit)
	if err != nil {
		tb.Fatalf("ClaimChecks: %v", err)
	}
	return cs
}

// MustFinishCheck finishes a check and fails the test on error.
func MustFinishCheck(tb testing.TB, ctx context.Context, st paynotify.Store, c *paynotify.Check, next *time.Time, counted, attention bool) {
	tb.Helper()
	if err := st.FinishCheck(ctx, c, next, counted, attention); err != nil {
		tb.Fatalf("FinishCheck: %v", err)
	}
}

// scheduledOrder returns a pending order created at T0 whose first check is due at next.
func scheduledOrder(app, outTradeNo string, next time.Time) *paynotify.Order {
	o := NewOrder(app, outTradeNo, T0)
	o.NextCheckAt = &next
	return o
}

// checkKey names the row a check is about: "T1" for an order, "T1/R1" for a refund, prefixed by
// the app when it is not app1.
func checkKey(c *paynotify.Check) string {
	k := c.OutTradeNo
	if c.App != "app1" {
		k = c.App + ":" + k
	}
	if c.Kind == paynotify.CheckRefund {
		k += "/" + c.OutRequestNo
	}
	return k
}

func checkKeys(cs []*paynotify.Check) []string {
	keys := []string{}
	for _, c := range cs {
		keys = append(keys, checkKey(c))
	}
	return keys
}

// checkNext fails the test unless got is want as a store reads it back.
func checkNext(tb testing.TB, what string, got, want *time.Time) {
	tb.Helper()
	if !sameTime(got, want) {
		tb.Errorf("%s NextCheckAt = %s, want %s", what, fmtTime(got), fmtTime(want))
	}
}

// sqlTime is t as a SQL literal that both stores read as t: UTC text with microseconds.
func sqlTime(t time.Time) string { return "'" + t.UTC().Format("2006-01-02T15:04:05.000000Z") + "'" }

func (s *suite) testCommitSchedule(t *testing.T) {
	t.Run("OKOrder", func(t *testing.T) {
		// Commit never writes NextCheckAt or Checks from c.Order, but for a closed order's
		// NextCheckAt (a close of our own: paynotify.ClosedCheckAt); an order whose new status is
		// not pending loses its NextCheckAt otherwise (one order per status).
		st, b := s.setup(t)
		first := T0.Add(time.Minute)
		for _, status := range []paynotify.OrderStatus{paynotify.StatusPending, paynotify.StatusPaid, paynotify.StatusFinished,
			paynotify.StatusClosed, paynotify.StatusRefunded} {
			o := scheduledOrder("app1", string(status), first)
			o.Checks = 2
			o = MustCreateOrder(t, b.ctx, st, o)
			next := *o
			next.Version, next.Status, next.ProviderTradeNo = 2, status, "changed"
			next.NextCheckAt, next.Checks = at(T0.Add(5*time.Hour)), 9
			MustCommit(t, b.ctx, st, &paynotify.Change{Order: &next, PrevVersion: 1})
			got := MustGetOrder(t, b.ctx, st, "app1", string(status))
			if got.Status != status || got.ProviderTradeNo != "changed" || got.Version != 2 {
				t.Errorf("%s: order not changed: %s", status, dumpOrder(got))
			}
			want := &first
			switch status {
			case paynotify.StatusPending:
			case paynotify.StatusClosed:
				want = at(T0.Add(5 * time.Hour))
			default:
				want = nil
			}
			checkNext(t, string(status), got.NextCheckAt, want)
			if got.Checks != 2 {
				t.Errorf("%s: Checks = %d, want 2 (not written by Commit)", status, got.Checks)
			}
		}
	})

	t.Run("OKOrderClosedWithout", func(t *testing.T) {
		// A close that is not of our own (its order has no NextCheckAt) clears the schedule.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T1", T0.Add(time.Minute)))
		next := *o
		next.Version, next.Status, next.NextCheckAt = 2, paynotify.StatusClosed, nil
		MustCommit(t, b.ctx, st, &paynotify.Change{Order: &next, PrevVersion: 1})
		checkNext(t, "T1", MustGetOrder(t, b.ctx, st, "app1", "T1").NextCheckAt, nil)
		checkStrings(t, "claimed later", checkKeys(MustClaimChecks(t, b.ctx, st, T0.Add(24*time.Hour), time.Minute, 10)), nil)
	})

	t.Run("OKOrderNilKept", func(t *testing.T) {
		// A change whose order has no NextCheckAt does not clear a pending order's.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T1", T0.Add(time.Minute)))
		next := *o
		next.Version, next.NextCheckAt, next.Checks = 2, nil, 0
		next.ProviderTradeNo = "changed"
		MustCommit(t, b.ctx, st, &paynotify.Change{Order: &next, PrevVersion: 1})
		checkNext(t, "T1", MustGetOrder(t, b.ctx, st, "app1", "T1").NextCheckAt, at(T0.Add(time.Minute)))
	})

	t.Run("OKOrderConflictKeeps", func(t *testing.T) {
		// A losing commit clears nothing.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T1", T0.Add(time.Minute)))
		c := PaidChange(o, "ev1", "nt1", T0)
		c.PrevVersion, c.Order.Version = 7, 8
		if _, err := st.Commit(b.ctx, c); !errors.Is(err, paynotify.ErrVersionConflict) {
			t.Fatalf("Commit from a stale version = %v, want ErrVersionConflict", err)
		}
		checkNext(t, "T1", MustGetOrder(t, b.ctx, st, "app1", "T1").NextCheckAt, at(T0.Add(time.Minute)))
	})

	t.Run("OKRefundInsert", func(t *testing.T) {
		// A refund inserted by Commit keeps its NextCheckAt; NeedsAttention is not inserted.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		r := newRefund(o, "R1", 100, T0)
		r.Status = paynotify.RefundSucceeded
		r.NextCheckAt = at(T0.Add(time.Minute + 789*time.Nanosecond))
		r.NeedsAttention = true
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r})
		want := *r
		want.NeedsAttention = false
		checkRefund(t, mustGetRefund(t, b.ctx, st, "app1", "T1", "R1"), &want)
	})

	t.Run("OKRefundUpsert", func(t *testing.T) {
		// On an existing refund, NextCheckAt is replaced (nil included) unless the refund is
		// succeeded, which keeps its own but for the confirmation of its amount
		// (Change.RefundConfirmed). One refund per row.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		x, y := at(T0.Add(time.Minute)), at(T0.Add(time.Hour))
		for i, tc := range []struct {
			name           string
			status         paynotify.RefundStatus
			next           *time.Time
			newStatus      paynotify.RefundStatus
			newNext        *time.Time
			wantStatus     paynotify.RefundStatus
			wantNext       *time.Time
			viaCreateFirst bool
			confirmed      bool
		}{
			{"pending rescheduled", paynotify.RefundPending, x, paynotify.RefundPending, y, paynotify.RefundPending, y, true, false},
			{"pending scheduled", paynotify.RefundPending, nil, paynotify.RefundPending, y, paynotify.RefundPending, y, true, false},
			{"pending failed", paynotify.RefundPending, x, paynotify.RefundFailed, nil, paynotify.RefundFailed, nil, true, false},
			{"pending succeeded", paynotify.RefundPending, x, paynotify.RefundSucceeded, nil, paynotify.RefundSucceeded, nil, false, false},
			{"pending succeeded to confirm", paynotify.RefundPending, x, paynotify.RefundSucceeded, y, paynotify.RefundSucceeded, y, false, false},
			{"failed succeeded", paynotify.RefundFailed, nil, paynotify.RefundSucceeded, y, paynotify.RefundSucceeded, y, false, false},
			{"succeeded late failure", paynotify.RefundSucceeded, x, paynotify.RefundFailed, nil, paynotify.RefundSucceeded, x, false, false},
			{"succeeded again", paynotify.RefundSucceeded, x, paynotify.RefundSucceeded, y, paynotify.RefundSucceeded, x, false, false},
			{"succeeded unscheduled", paynotify.RefundSucceeded, nil, paynotify.RefundPending, y, paynotify.RefundSucceeded, nil, false, false},
			{"succeeded confirmed", paynotify.RefundSucceeded, x, paynotify.RefundSucceeded, nil, paynotify.RefundSucceeded, nil, false, true},
		} {
			no := fmt.Sprint("R", i)
			r := newRefund(o, no, 10, T0)
			r.Status, r.NextCheckAt = tc.status, tc.next
			if tc.viaCreateFirst {
				if _, created, err := st.CreateRefund(b.ctx, r); err != nil || !created {
					t.Fatalf("%s: CreateRefund = %v, %v", tc.name, created, err)
				}
			} else {
				MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r})
			}
			checkNext(t, tc.name+" (inserted)", mustGetRefund(t, b.ctx, st, "app1", "T1", no).NextCheckAt, tc.next)
			upd := *r
			upd.Status, upd.NextCheckAt, upd.UpdatedAt = tc.newStatus, tc.newNext, T0.Add(time.Minute)
			MustCommit(t, b.ctx, st, &paynotify.Change{Refund: &upd, RefundConfirmed: tc.confirmed})
			got := mustGetRefund(t, b.ctx, st, "app1", "T1", no)
			if got.Status != tc.wantStatus {
				t.Errorf("%s: Status = %s, want %s", tc.name, got.Status, tc.wantStatus)
			}
			checkNext(t, tc.name, got.NextCheckAt, tc.wantNext)
			if got.NeedsAttention {
				t.Errorf("%s: NeedsAttention = true", tc.name)
			}
		}
	})
}

func (s *suite) testListAttentionRefunds(t *testing.T) {
	// A1 pending needing attention (its checks ran out: no next check), A2 pending still
	// checked, A3 succeeded needing attention (an inferred amount still asked about), A4
	// succeeded confirmed, A5 failed, A6 pending needing attention but older than since.
	st, b := s.setup(t)
	o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
	for _, k := range []struct {
		no        string
		min       int
		status    paynotify.RefundStatus
		next      bool
		attention bool
	}{{"A1", 2, paynotify.RefundPending, false, true}, {"A2", 3, paynotify.RefundPending, true, false},
		{"A3", 4, paynotify.RefundSucceeded, true, true}, {"A4", 5, paynotify.RefundSucceeded, false, false},
		{"A5", 6, paynotify.RefundFailed, false, false}, {"A6", -1, paynotify.RefundPending, false, true}} {
		r := newRefund(o, k.no, 10, T0.Add(time.Duration(k.min)*time.Minute))
		r.Status = k.status
		if k.next {
			r.NextCheckAt = at(T0.Add(time.Hour))
		}
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r})
		if k.attention {
			if err := st.ExecSQL(b.ctx, `UPDATE refunds SET needs_attention = (1 = 1) WHERE out_request_no = '`+k.no+`'`); err != nil {
				t.Fatal(err)
			}
		}
	}
	rs, err := st.ListAttentionRefunds(b.ctx, T0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		if !r.NeedsAttention {
			t.Errorf("refund %s listed without needing attention", r.OutRequestNo)
		}
		got = append(got, r.OutRequestNo)
	}
	checkStrings(t, "refunds needing attention", got, []string{"A1", "A3"})
}

func (s *suite) testAttentionCleared(t *testing.T) {
	// R1 and R2 pending, out of checks (needs_attention), then settled by a notification
	// (succeeded, failed): the flag goes. R3 succeeded with an inferred amount, needing attention,
	// then confirmed (RefundConfirmed): the flag goes. R4 pending needing attention, a commit that
	// keeps it pending: the flag stays.
	st, b := s.setup(t)
	o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
	due := T0.Add(time.Minute)
	for _, k := range []struct {
		no     string
		status paynotify.RefundStatus
	}{{"R1", paynotify.RefundPending}, {"R2", paynotify.RefundPending}, {"R3", paynotify.RefundSucceeded}, {"R4", paynotify.RefundPending}} {
		r := newRefund(o, k.no, 10, T0)
		r.Status, r.NextCheckAt = k.status, &due
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r})
	}
	checks, err := st.ClaimChecks(b.ctx, due, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	var done []paynotify.CheckDone
	later := T0.Add(time.Hour)
	for _, c := range checks {
		d := paynotify.CheckDone{Check: c}
		if c.Kind == paynotify.CheckRefund {
			d.Counted, d.Attention = true, true
			if c.OutRequestNo == "R3" {
				d.Next = &later // an inferred amount is still asked about
			}
		}
		done = append(done, d)
	}
	if err := st.FinishChecks(b.ctx, done); err != nil {
		t.Fatal(err)
	}
	settle := func(no string, status paynotify.RefundStatus, confirmed bool) {
		r := newRefund(o, no, 10, T0)
		r.Status, r.UpdatedAt = status, T0.Add(2*time.Hour)
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r, RefundConfirmed: confirmed})
	}
	settle("R1", paynotify.RefundSucceeded, false)
	settle("R2", paynotify.RefundFailed, false)
	settle("R3", paynotify.RefundSucceeded, true)
	settle("R4", paynotify.RefundPending, false)
	rs, err := st.ListRefunds(b.ctx, "app1", "T1")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if want := r.OutRequestNo == "R4"; r.NeedsAttention != want {
			t.Errorf("refund %s (%s): needs_attention %v, want %v", r.OutRequestNo, r.Status, r.NeedsAttention, want)
		}
	}
}

func (s *suite) testAttentionKeptWithoutAnswer(t *testing.T) {
	// K1 and K2 pending, needing attention, due. K1's check gets no answer (KeepAttention: a
	// provider outage, a release): the flag stays. K2's is answered without it: the flag goes.
	st, b := s.setup(t)
	o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
	due := T0.Add(time.Minute)
	for _, no := range []string{"K1", "K2"} {
		r := newRefund(o, no, 10, T0)
		r.NextCheckAt = &due
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r})
		if err := st.ExecSQL(b.ctx, `UPDATE refunds SET needs_attention = (1 = 1) WHERE out_request_no = '`+no+`'`); err != nil {
			t.Fatal(err)
		}
	}
	checks, err := st.ClaimChecks(b.ctx, due, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	var done []paynotify.CheckDone
	later := T0.Add(time.Hour)
	for _, c := range checks {
		done = append(done, paynotify.CheckDone{Check: c, Next: &later, KeepAttention: c.OutRequestNo == "K1"})
	}
	if len(done) != 2 {
		t.Fatalf("%d claims, want K1 and K2", len(done))
	}
	if err := st.FinishChecks(b.ctx, done); err != nil {
		t.Fatal(err)
	}
	rs, err := st.ListRefunds(b.ctx, "app1", "T1")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if want := r.OutRequestNo == "K1"; r.NeedsAttention != want {
			t.Errorf("refund %s: needs_attention %v, want %v", r.OutRequestNo, r.NeedsAttention, want)
		}
		if r.NextCheckAt == nil || !r.NextCheckAt.Equal(later) {
			t.Errorf("refund %s: next check %v, want %v", r.OutRequestNo, r.NextCheckAt, later)
		}
	}
}

func (s *suite) testListPendingRefunds(t *testing.T) {
	// setupRefunds records, by creation time: R6 app1/T2 pending (T0+1m), R1 app1/T1 pending
	// (T0+2m), R2 app1/T1 succeeded (T0+3m), R3 app2/T3 pending (T0+4m), R4 app1/T2 pending
	// (T0+5m), R5 app1/T1 failed (T0+6m). R6 is recorded last.
	setupRefunds := func(t *testing.T) (DB, *bundle) {
		st, b := s.setup(t)
		orders := map[string]*paynotify.Order{}
		for _, k := range []struct{ app, no string }{{"app1", "T1"}, {"app1", "T2"}, {"app2", "T3"}} {
			orders[k.no] = MustCreateOrder(t, b.ctx, st, NewOrder(k.app, k.no, T0))
		}
		for _, k := range []struct {
			no, req string
			min     int
			status  paynotify.RefundStatus
		}{{"T1", "R1", 2, paynotify.RefundPending}, {"T1", "R2", 3, paynotify.RefundSucceeded}, {"T3", "R3", 4, paynotify.RefundPending},
			{"T2", "R4", 5, paynotify.RefundPending}, {"T1", "R5", 6, paynotify.RefundFailed}, {"T2", "R6", 1, paynotify.RefundPending}} {
			r := newRefund(orders[k.no], k.req, 10, T0.Add(time.Duration(k.min)*time.Minute))
			r.Status = k.status
			if k.status == paynotify.RefundPending {
				if _, _, err := st.CreateRefund(b.ctx, r); err != nil {
					t.Fatal(err)
				}
			} else {
				MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r})
			}
		}
		return st, b
	}
	list := func(t *testing.T, st paynotify.Store, b *bundle, app string, since time.Time) []string {
		t.Helper()
		rs, err := st.ListPendingRefunds(b.ctx, app, since)
		if err != nil {
			t.Fatal(err)
		}
		nos := []string{}
		for _, r := range rs {
			if r.Status != paynotify.RefundPending {
				t.Errorf("refund %s is %s", r.OutRequestNo, r.Status)
			}
			nos = append(nos, r.OutRequestNo)
		}
		return nos
	}

	t.Run("OK", func(t *testing.T) {
		st, b := setupRefunds(t)
		checkStrings(t, "all", list(t, st, b, "", T0), []string{"R6", "R1", "R3", "R4"})
		checkStrings(t, "zero since", list(t, st, b, "", time.Time{}), []string{"R6", "R1", "R3", "R4"})
		rs, err := st.ListPendingRefunds(b.ctx, "", T0)
		if err != nil || len(rs) != 4 {
			t.Fatalf("ListPendingRefunds = %d, %v", len(rs), err)
		}
		checkRefund(t, rs[1], newRefund(MustGetOrder(t, b.ctx, st, "app1", "T1"), "R1", 10, T0.Add(2*time.Minute)))
	})
	t.Run("OKApp", func(t *testing.T) {
		st, b := setupRefunds(t)
		checkStrings(t, "app1", list(t, st, b, "app1", T0), []string{"R6", "R1", "R4"})
		checkStrings(t, "app2", list(t, st, b, "app2", T0), []string{"R3"})
		checkStrings(t, "app3", list(t, st, b, "app3", T0), nil)
	})
	t.Run("OKSince", func(t *testing.T) {
		// Created at or after since: R3 was created at T0+4m exactly.
		st, b := setupRefunds(t)
		checkStrings(t, "since R3", list(t, st, b, "", T0.Add(4*time.Minute)), []string{"R3", "R4"})
		checkStrings(t, "since after R3", list(t, st, b, "", T0.Add(4*time.Minute+time.Microsecond)), []string{"R4"})
		checkStrings(t, "app1 since R3", list(t, st, b, "app1", T0.Add(4*time.Minute)), []string{"R4"})
		checkStrings(t, "since after all", list(t, st, b, "", T0.Add(time.Hour)), nil)
	})
	t.Run("OKSettled", func(t *testing.T) {
		// A refund that leaves pending leaves the list.
		st, b := setupRefunds(t)
		r := mustGetRefund(t, b.ctx, st, "app1", "T1", "R1")
		r.Status = paynotify.RefundSucceeded
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r})
		checkStrings(t, "all", list(t, st, b, "", T0), []string{"R6", "R3", "R4"})
	})
}

func (s *suite) testConfirmRefundAmount(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		r := newRefund(o, "R1", 100, T0)
		r.Status, r.ProviderRefundNo, r.NextCheckAt = paynotify.RefundSucceeded, "PR1", at(T0.Add(time.Minute))
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r})
		other := newRefund(o, "R2", 100, T0)
		other.Status = paynotify.RefundSucceeded
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: other})

		if err := st.ConfirmRefundAmount(b.ctx, r, 150); err != nil {
			t.Fatal(err)
		}
		want := *r
		want.Amount = 150 // and nothing else
		checkRefund(t, mustGetRefund(t, b.ctx, st, "app1", "T1", "R1"), &want)
		checkRefund(t, mustGetRefund(t, b.ctx, st, "app1", "T1", "R2"), other)
		checkOrder(t, MustGetOrder(t, b.ctx, st, "app1", "T1"), o) // refunded total untouched
	})

	t.Run("OKNotSucceeded", func(t *testing.T) {
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		pending := newRefund(o, "R1", 100, T0)
		if _, _, err := st.CreateRefund(b.ctx, pending); err != nil {
			t.Fatal(err)
		}
		failed := newRefund(o, "R2", 100, T0)
		failed.Status = paynotify.RefundFailed
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: failed})
		for _, r := range []*paynotify.Refund{pending, failed} {
			if err := st.ConfirmRefundAmount(b.ctx, r, 150); err != nil {
				t.Fatalf("ConfirmRefundAmount(%s): %v", r.Status, err)
			}
			checkRefund(t, mustGetRefund(t, b.ctx, st, "app1", "T1", r.OutRequestNo), r)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		checkNotFound(t, st.ConfirmRefundAmount(b.ctx, newRefund(o, "R9", 100, T0), 150))
	})
}

func (s *suite) testClaimChecks(t *testing.T) {
	// setupDue creates orders T1…T5 and refunds P/R1…R3 (of order P, which has no schedule of
	// its own), and returns now = T0+1m. Due at now: T2 (T0, 2 checks), T5 (app2, T0+30s), T1
	// (now exactly, 1 check), refund R1 (T0-1m, earlier than every order). Not due: T3 (1µs after
	// now), T4 (no schedule), R2 (T0+2m), R3 (no schedule).
	setupDue := func(t *testing.T) (DB, *bundle, time.Time) {
		st, b := s.setup(t)
		now := T0.Add(time.Minute)
		for _, k := range []struct {
			app, no string
			next    *time.Time
			checks  int
		}{{"app1", "T1", at(now), 1}, {"app1", "T2", at(T0), 2}, {"app1", "T3", at(now.Add(time.Microsecond)), 0},
			{"app1", "T4", nil, 0}, {"app2", "T5", at(T0.Add(30 * time.Second)), 0}} {
			o := NewOrder(k.app, k.no, T0)
			o.NextCheckAt, o.Checks = k.next, k.checks
			MustCreateOrder(t, b.ctx, st, o)
		}
		p := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "P", T0))
		for _, k := range []struct {
			no   string
			next *time.Time
		}{{"R1", at(T0.Add(-time.Minute))}, {"R2", at(T0.Add(2 * time.Minute))}, {"R3", nil}} {
			r := newRefund(p, k.no, 10, T0)
			r.NextCheckAt = k.next
			if _, _, err := st.CreateRefund(b.ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		return st, b, now
	}

	t.Run("OK", func(t *testing.T) {
		st, b, now := setupDue(t)
		lease := 10 * time.Minute
		cs := MustClaimChecks(t, b.ctx, st, now, lease, 10)
		// Due refunds up to a share of the limit, then due orders, each earliest first
		// (paynotify.ClaimParts).
		checkStrings(t, "claimed", checkKeys(cs), []string{"P/R1", "T2", "app2:T5", "T1"})
		if len(cs) != 4 {
			t.FailNow()
		}
		for i, want := range []paynotify.Check{
			{Kind: paynotify.CheckRefund, App: "app1", OutTradeNo: "P", OutRequestNo: "R1", Checks: 0},
			{Kind: paynotify.CheckOrder, App: "app1", OutTradeNo: "T2", Checks: 2},
			{Kind: paynotify.CheckOrder, App: "app2", OutTradeNo: "T5", Checks: 0},
			{Kind: paynotify.CheckOrder, App: "app1", OutTradeNo: "T1", Checks: 1},
		} {
			got := *cs[i]
			if got.Token == "" {
				t.Errorf("check %d: no Token", i)
			}
			got.Token = ""
			if got != want {
				t.Errorf("check %d = %+v, want %+v", i, got, want)
			}
		}

		// The claimed rows moved to now+lease; the others did not move; nothing else changed.
		until := at(now.Add(lease))
		for _, k := range []struct {
			app, no string
			next    *time.Time
			checks  int
		}{{"app1", "T1", until, 1}, {"app1", "T2", until, 2}, {"app1", "T3", at(now.Add(time.Microsecond)), 0},
			{"app1", "T4", nil, 0}, {"app2", "T5", until, 0}} {
			o := MustGetOrder(t, b.ctx, st, k.app, k.no)
			checkNext(t, k.no, o.NextCheckAt, k.next)
			if o.Checks != k.checks || o.Version != 1 || o.Status != paynotify.StatusPending {
				t.Errorf("%s: Checks %d Version %d Status %s, want %d 1 pending", k.no, o.Checks, o.Version, o.Status, k.checks)
			}
		}
		checkNext(t, "R1", mustGetRefund(t, b.ctx, st, "app1", "P", "R1").NextCheckAt, until)
		checkNext(t, "R2", mustGetRefund(t, b.ctx, st, "app1", "P", "R2").NextCheckAt, at(T0.Add(2*time.Minute)))
		checkNext(t, "R3", mustGetRefund(t, b.ctx, st, "app1", "P", "R3").NextCheckAt, nil)
	})

	t.Run("OKCountDue", func(t *testing.T) {
		// CountDueChecks counts the orders and refunds due at a time by app, the apps excepted
		// left out, a claimed row excepted (its NextCheckAt is its claim's end): at now, app1 T1,
		// T2 and R1, app2 T5; at T0, app1 T2 and R1 only (T5 at T0+30s, T1 at now).
		st, b, now := setupDue(t)
		got, err := st.CountDueChecks(b.ctx, now, nil)
		if err != nil || len(got) != 2 || got["app1"] != 3 || got["app2"] != 1 {
			t.Fatalf("CountDueChecks = %v, %v; want app1 3, app2 1", got, err)
		}
		if got, err := st.CountDueChecks(b.ctx, now, []string{"app1", "app9"}); err != nil || len(got) != 1 || got["app2"] != 1 {
			t.Fatalf("except app1: %v, %v; want app2 1", got, err)
		}
		if got, err := st.CountDueChecks(b.ctx, T0, nil); err != nil || len(got) != 1 || got["app1"] != 2 {
			t.Fatalf("at T0: %v, %v; want app1 2", got, err)
		}
		MustClaimChecks(t, b.ctx, st, now, 10*time.Minute, 1) // R1
		if got, err := st.CountDueChecks(b.ctx, now, nil); err != nil || got["app1"] != 2 || got["app2"] != 1 {
			t.Fatalf("after a claim: %v, %v; want app1 2, app2 1", got, err)
		}
	})

	t.Run("OKApps", func(t *testing.T) {
		// ClaimChecksOf claims the rows of the apps named only: app2's T5 for ["app2"], nothing
		// for none, every app's for nil (ClaimChecks).
		st, b, now := setupDue(t)
		cs, err := st.ClaimChecksOf(b.ctx, now, 10*time.Minute, 10, []string{"app2", "app9"})
		if err != nil {
			t.Fatal(err)
		}
		checkStrings(t, "claimed of app2", checkKeys(cs), []string{"app2:T5"})
		if cs, err := st.ClaimChecksOf(b.ctx, now, 10*time.Minute, 10, []string{}); err != nil || len(cs) != 0 {
			t.Fatalf("ClaimChecksOf no app = %v, %v; want none", checkKeys(cs), err)
		}
		checkNext(t, "T2", MustGetOrder(t, b.ctx, st, "app1", "T2").NextCheckAt, at(T0)) // not claimed
		cs, err = st.ClaimChecksOf(b.ctx, now, 10*time.Minute, 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		checkStrings(t, "claimed of every app", checkKeys(cs), []string{"P/R1", "T2", "T1"})
	})

	t.Run("OKAppsMerged", func(t *testing.T) {
		// ClaimChecksOf of several apps takes the earliest due rows across them (ties in creation
		// order, whatever the app), up to the limit, and none of an app not named even when its
		// rows are the earliest; an app named twice is claimed once. (Each app's rows are read
		// from the (app, next_check_at) index on their own, then merged: migration 0009.)
		st, b := s.setup(t)
		for _, k := range []struct {
			app, no string
			sec     int
		}{{"app3", "A", 4}, {"app1", "B", 2}, {"app2", "C", 0}, {"app3", "D", 2}, {"app1", "E", 1},
			{"app2", "F", 1}, {"app1", "G", 3}, {"app3", "H", 1}, {"app1", "I", 61}} {
			MustCreateOrder(t, b.ctx, st, scheduledOrder(k.app, k.no, T0.Add(time.Duration(k.sec)*time.Second)))
		}
		now := T0.Add(time.Minute)
		cs, err := st.ClaimChecksOf(b.ctx, now, 10*time.Minute, 4, []string{"app3", "app1", "app3"})
		if err != nil {
			t.Fatal(err)
		}
		checkStrings(t, "claimed of app1 and app3", checkKeys(cs), []string{"E", "app3:H", "B", "app3:D"})
		cs, err = st.ClaimChecksOf(b.ctx, now, 10*time.Minute, 10, []string{"app1", "app3"})
		if err != nil {
			t.Fatal(err)
		}
		checkStrings(t, "the rest of app1 and app3", checkKeys(cs), []string{"G", "app3:A"})
		checkStrings(t, "every app's", checkKeys(MustClaimChecks(t, b.ctx, st, now.Add(time.Second), time.Minute, 10)),
			[]string{"app2:C", "app2:F", "I"})
	})

	t.Run("OKLease", func(t *testing.T) {
		// A claimed row is not due again before the end of its lease, and is then claimed again
		// under a new token.
		st, b, now := setupDue(t)
		lease := 10 * time.Minute
		first := MustClaimChecks(t, b.ctx, st, now, lease, 10)
		checkStrings(t, "first", checkKeys(first), []string{"P/R1", "T2", "app2:T5", "T1"})
		checkStrings(t, "same now", checkKeys(MustClaimChecks(t, b.ctx, st, now, lease, 10)), nil)
		// Just before the lease ends: only T3 and R2, whose own time has come.
		checkStrings(t, "before the lease ends", checkKeys(MustClaimChecks(t, b.ctx, st, now.Add(lease-time.Microsecond), time.Hour, 10)),
			[]string{"P/R2", "T3"})
		// At the end of the lease: the first claim's rows, in creation order (their times are equal).
		again := MustClaimChecks(t, b.ctx, st, now.Add(lease), lease, 10)
		checkStrings(t, "lease over", checkKeys(again), []string{"P/R1", "T1", "T2", "app2:T5"})
		tokens := map[string]string{}
		for _, c := range first {
			tokens[checkKey(c)] = c.Token
		}
		for _, c := range again {
			if c.Token == "" || c.Token == tokens[checkKey(c)] {
				t.Errorf("%s claimed again with token %q, first %q: want a new token", checkKey(c), c.Token, tokens[checkKey(c)])
			}
		}
	})

	t.Run("OKLimit", func(t *testing.T) {
		// Refunds first up to a quarter of the limit (at least one), then orders, then refunds with
		// what is left of the limit; each earliest first (created in the reverse order of their
		// times). A queue of due orders leaves room for a refund in every claim: with the orders
		// first, a refund waited for the whole queue (a reviewer helper's finding).
		st, b := s.setup(t)
		for i := 5; i >= 1; i-- {
			MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", fmt.Sprint("T", i), T0.Add(time.Duration(i)*time.Second)))
		}
		p := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "P", T0))
		for i := 3; i >= 1; i-- {
			r := newRefund(p, fmt.Sprint("R", i), 10, T0)
			r.NextCheckAt = at(T0.Add(time.Duration(i) * time.Second))
			if _, _, err := st.CreateRefund(b.ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		now := T0.Add(time.Hour)
		checkStrings(t, "limit 3", checkKeys(MustClaimChecks(t, b.ctx, st, now, time.Hour, 3)), []string{"P/R1", "T1", "T2"})
		checkStrings(t, "limit 4", checkKeys(MustClaimChecks(t, b.ctx, st, now, time.Hour, 4)), []string{"P/R2", "T3", "T4", "T5"})
		checkStrings(t, "limit 4 again", checkKeys(MustClaimChecks(t, b.ctx, st, now, time.Hour, 4)), []string{"P/R3"})
		checkStrings(t, "none left", checkKeys(MustClaimChecks(t, b.ctx, st, now, time.Hour, 4)), nil)
		// Few orders due: refunds take the rest of the limit.
		for i := 6; i <= 9; i++ {
			r := newRefund(p, fmt.Sprint("R", i), 10, T0)
			r.NextCheckAt = at(T0.Add(time.Duration(i) * time.Second))
			if _, _, err := st.CreateRefund(b.ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T6", T0.Add(time.Second)))
		checkStrings(t, "limit 4, one order", checkKeys(MustClaimChecks(t, b.ctx, st, now, time.Hour, 4)), []string{"P/R6", "T6", "P/R7", "P/R8"})
	})

	t.Run("OKLimitZero", func(t *testing.T) {
		st, b := s.setup(t)
		MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T1", T0))
		checkStrings(t, "limit 0", checkKeys(MustClaimChecks(t, b.ctx, st, T0, time.Hour, 0)), nil)
		checkNext(t, "T1", MustGetOrder(t, b.ctx, st, "app1", "T1").NextCheckAt, at(T0))
		checkStrings(t, "limit 1", checkKeys(MustClaimChecks(t, b.ctx, st, T0, time.Hour, 1)), []string{"T1"})
	})

	t.Run("ErrLease", func(t *testing.T) {
		// A lease that is not positive would leave the row due to every other claimer.
		st, b := s.setup(t)
		MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T1", T0))
		for _, lease := range []time.Duration{0, -time.Minute} {
			if cs, err := st.ClaimChecks(b.ctx, T0, lease, 10); err == nil {
				t.Errorf("ClaimChecks with lease %s = %q, want an error", lease, checkKeys(cs))
			}
		}
		checkNext(t, "T1", MustGetOrder(t, b.ctx, st, "app1", "T1").NextCheckAt, at(T0))
	})

	// claimAll has 8 goroutines claim, in a loop, 200 due orders and 40 due refunds through
	// stores (round robin), until nothing is due; every row must be claimed exactly once.
	claimAll := func(t *testing.T, b *bundle, stores []paynotify.Store) {
		t.Helper()
		const nOrders, nRefunds = 200, 40
		p := MustCreateOrder(t, b.ctx, b.store, NewOrder("app1", "P", T0))
		for i := range nOrders {
			// Ten orders share each time: ties are broken by insertion order.
			MustCreateOrder(t, b.ctx, b.store, scheduledOrder("app1", fmt.Sprintf("T%03d", i), T0.Add(time.Duration(i/10)*time.Millisecond)))
		}
		for i := range nRefunds {
			r := newRefund(p, fmt.Sprintf("R%03d", i), 1, T0)
			r.NextCheckAt = at(T0.Add(time.Duration(i) * time.Millisecond))
			if _, _, err := b.store.CreateRefund(b.ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		var (
			mu      sync.Mutex
			claimed = map[string]int{}
			total   int // claims made, to stop a claim that does not move its rows
			wg      sync.WaitGroup
		)
		start := make(chan struct{})
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := stores[g%len(stores)]
				<-start
				for {
					cs, err := st.ClaimChecks(b.ctx, T0.Add(time.Hour), time.Hour, 7)
					if err != nil {
						t.Errorf("ClaimChecks: %v", err)
						return
					}
					if len(cs) == 0 {
						return
					}
					mu.Lock()
					for _, c := range cs {
						claimed[checkKey(c)]++
					}
					total += len(cs)
					over := total > nOrders+nRefunds
					mu.Unlock()
					if over {
						return // some row was claimed twice: reported below
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		if len(claimed) != nOrders+nRefunds {
			t.Errorf("%d rows claimed, want %d", len(claimed), nOrders+nRefunds)
		}
		for k, n := range claimed {
			if n != 1 {
				t.Errorf("%s claimed %d times, want once", k, n)
			}
		}
	}

	t.Run("OKConcurrent", func(t *testing.T) {
		st, b := s.setup(t)
		claimAll(t, b, []paynotify.Store{st})
	})

	t.Run("OKConcurrentProcesses", func(t *testing.T) {
		// Two stores on one database, as two processes would be.
		st, b := s.setup(t)
		claimAll(t, b, []paynotify.Store{st, st.OpenAnother(t)})
	})
}

func (s *suite) testFinishCheck(t *testing.T) {
	// claimOne claims at now and fails the test unless exactly want is claimed.
	claimOne := func(t *testing.T, b *bundle, now time.Time, lease time.Duration, want string) *paynotify.Check {
		t.Helper()
		cs := MustClaimChecks(t, b.ctx, b.store, now, lease, 10)
		checkStrings(t, "claimed", checkKeys(cs), []string{want})
		if len(cs) != 1 {
			t.FailNow()
		}
		return cs[0]
	}

	t.Run("OK", func(t *testing.T) {
		st, b := s.setup(t)
		MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T1", T0))
		c := claimOne(t, b, T0, time.Minute, "T1")
		if c.Checks != 0 {
			t.Errorf("first claim: Checks = %d, want 0", c.Checks)
		}
		MustFinishCheck(t, b.ctx, st, c, at(T0.Add(20*time.Minute)), true, false)
		o := MustGetOrder(t, b.ctx, st, "app1", "T1")
		checkNext(t, "finished", o.NextCheckAt, at(T0.Add(20*time.Minute)))
		if o.Checks != 1 || o.Version != 1 {
			t.Errorf("finished counted: Checks %d Version %d, want 1 1", o.Checks, o.Version)
		}

		// The claim is over: finishing it again does nothing.
		MustFinishCheck(t, b.ctx, st, c, at(T0.Add(30*time.Minute)), true, false)
		o = MustGetOrder(t, b.ctx, st, "app1", "T1")
		checkNext(t, "finished twice", o.NextCheckAt, at(T0.Add(20*time.Minute)))
		if o.Checks != 1 {
			t.Errorf("finished twice: Checks = %d, want 1", o.Checks)
		}

		// Not counted: Checks stays.
		c = claimOne(t, b, T0.Add(20*time.Minute), time.Minute, "T1")
		if c.Checks != 1 {
			t.Errorf("second claim: Checks = %d, want 1", c.Checks)
		}
		MustFinishCheck(t, b.ctx, st, c, at(T0.Add(40*time.Minute)), false, false)
		o = MustGetOrder(t, b.ctx, st, "app1", "T1")
		checkNext(t, "not counted", o.NextCheckAt, at(T0.Add(40*time.Minute)))
		if o.Checks != 1 {
			t.Errorf("not counted: Checks = %d, want 1", o.Checks)
		}
	})

	t.Run("OKNever", func(t *testing.T) {
		// next nil: never due again.
		st, b := s.setup(t)
		MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T1", T0))
		MustFinishCheck(t, b.ctx, st, claimOne(t, b, T0, time.Minute, "T1"), nil, true, false)
		checkNext(t, "T1", MustGetOrder(t, b.ctx, st, "app1", "T1").NextCheckAt, nil)
		checkStrings(t, "claimed later", checkKeys(MustClaimChecks(t, b.ctx, st, T0.Add(100*365*24*time.Hour), time.Minute, 10)), nil)
	})

	t.Run("OKStale", func(t *testing.T) {
		// A claim whose lease ran out and was claimed again no longer holds.
		st, b := s.setup(t)
		MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T1", T0))
		lease := time.Minute
		c1 := claimOne(t, b, T0, lease, "T1")
		c2 := claimOne(t, b, T0.Add(lease), lease, "T1")
		if c1.Token == c2.Token {
			t.Fatalf("two claims with token %q", c1.Token)
		}
		MustFinishCheck(t, b.ctx, st, c1, nil, true, false)
		o := MustGetOrder(t, b.ctx, st, "app1", "T1")
		checkNext(t, "after the stale finish", o.NextCheckAt, at(T0.Add(2*lease)))
		if o.Checks != 0 {
			t.Errorf("after the stale finish: Checks = %d, want 0", o.Checks)
		}
		MustFinishCheck(t, b.ctx, st, c2, at(T0.Add(time.Hour)), true, false)
		o = MustGetOrder(t, b.ctx, st, "app1", "T1")
		checkNext(t, "after the current finish", o.NextCheckAt, at(T0.Add(time.Hour)))
		if o.Checks != 1 {
			t.Errorf("after the current finish: Checks = %d, want 1", o.Checks)
		}
	})

	t.Run("OKLeftPending", func(t *testing.T) {
		// A Commit between the claim and its finish that moves the order out of pending: the
		// claim still holds (Checks counts), and the order stays unscheduled whatever next says.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T1", T0))
		c := claimOne(t, b, T0, time.Minute, "T1")
		MustCommit(t, b.ctx, st, PaidChange(o, "ev1", "nt1", T0))
		checkNext(t, "paid", MustGetOrder(t, b.ctx, st, "app1", "T1").NextCheckAt, nil)
		MustFinishCheck(t, b.ctx, st, c, at(T0.Add(time.Hour)), true, false)
		got := MustGetOrder(t, b.ctx, st, "app1", "T1")
		checkNext(t, "finished", got.NextCheckAt, nil)
		if got.Checks != 1 || got.Status != paynotify.StatusPaid || got.Version != 2 {
			t.Errorf("finished: Checks %d Status %s Version %d, want 1 paid 2", got.Checks, got.Status, got.Version)
		}
		checkStrings(t, "claimed later", checkKeys(MustClaimChecks(t, b.ctx, st, T0.Add(2*time.Hour), time.Minute, 10)), nil)
	})

	t.Run("OKClosedLocally", func(t *testing.T) {
		// A close of our own between the claim and its finish (the closed order keeps a
		// NextCheckAt): the finish writes its next, the closed order is claimed when due, and a
		// finish with no next ends its checks. A close that is not of our own is left unscheduled
		// by a finish with a next, as OKLeftPending's payment.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T1", T0))
		o2 := MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T2", T0))
		cs := MustClaimChecks(t, b.ctx, st, T0, time.Minute, 10)
		checkStrings(t, "claimed", checkKeys(cs), []string{"T1", "T2"})
		for _, x := range []struct {
			o    *paynotify.Order
			next *time.Time
		}{{o, at(T0.Add(40 * time.Minute))}, {o2, nil}} {
			closed := *x.o
			closed.Version, closed.Status, closed.NextCheckAt = 2, paynotify.StatusClosed, x.next
			MustCommit(t, b.ctx, st, &paynotify.Change{Order: &closed, PrevVersion: 1})
		}
		checkNext(t, "T1 closed locally", MustGetOrder(t, b.ctx, st, "app1", "T1").NextCheckAt, at(T0.Add(40*time.Minute)))
		if err := st.FinishChecks(b.ctx, []paynotify.CheckDone{{Check: cs[0], Next: at(T0.Add(3 * time.Minute)), Counted: true},
			{Check: cs[1], Next: at(T0.Add(3 * time.Minute)), Counted: true}}); err != nil {
			t.Fatal(err)
		}
		checkNext(t, "T1 finished", MustGetOrder(t, b.ctx, st, "app1", "T1").NextCheckAt, at(T0.Add(3*time.Minute)))
		checkNext(t, "T2 finished", MustGetOrder(t, b.ctx, st, "app1", "T2").NextCheckAt, nil)
		c := claimOne(t, b, T0.Add(3*time.Minute), time.Minute, "T1")
		MustFinishCheck(t, b.ctx, st, c, nil, true, false)
		got := MustGetOrder(t, b.ctx, st, "app1", "T1")
		checkNext(t, "T1 asked", got.NextCheckAt, nil)
		if got.Status != paynotify.StatusClosed || got.Checks != 2 {
			t.Errorf("T1 asked: %s, Checks %d; want closed, 2", got.Status, got.Checks)
		}
		checkStrings(t, "claimed later", checkKeys(MustClaimChecks(t, b.ctx, st, T0.Add(24*time.Hour), time.Minute, 10)), nil)
	})

	t.Run("OKStillPending", func(t *testing.T) {
		// A Commit that keeps the order pending neither moves its lease nor breaks the claim.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T1", T0))
		c := claimOne(t, b, T0, time.Minute, "T1")
		next := *o
		next.Version, next.ProviderTradeNo = 2, "changed"
		MustCommit(t, b.ctx, st, &paynotify.Change{Order: &next, PrevVersion: 1})
		checkNext(t, "committed", MustGetOrder(t, b.ctx, st, "app1", "T1").NextCheckAt, at(T0.Add(time.Minute)))
		MustFinishCheck(t, b.ctx, st, c, at(T0.Add(time.Hour)), true, false)
		got := MustGetOrder(t, b.ctx, st, "app1", "T1")
		checkNext(t, "finished", got.NextCheckAt, at(T0.Add(time.Hour)))
		if got.Checks != 1 {
			t.Errorf("finished: Checks = %d, want 1", got.Checks)
		}
	})

	t.Run("OKRefund", func(t *testing.T) {
		st, b := s.setup(t)
		p := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "P", T0))
		r := newRefund(p, "R1", 10, T0)
		r.NextCheckAt = at(T0)
		if _, _, err := st.CreateRefund(b.ctx, r); err != nil {
			t.Fatal(err)
		}
		c := claimOne(t, b, T0, time.Minute, "P/R1")
		MustFinishCheck(t, b.ctx, st, c, at(T0.Add(10*time.Minute)), true, false)
		got := mustGetRefund(t, b.ctx, st, "app1", "P", "R1")
		checkNext(t, "counted", got.NextCheckAt, at(T0.Add(10*time.Minute)))
		if got.NeedsAttention || got.Status != paynotify.RefundPending {
			t.Errorf("counted: NeedsAttention %v Status %s, want false pending", got.NeedsAttention, got.Status)
		}

		// The checks ran out: no more, and someone must look.
		c = claimOne(t, b, T0.Add(10*time.Minute), time.Minute, "P/R1")
		if c.Checks != 1 {
			t.Errorf("second claim: Checks = %d, want 1", c.Checks)
		}
		MustFinishCheck(t, b.ctx, st, c, nil, false, true)
		got = mustGetRefund(t, b.ctx, st, "app1", "P", "R1")
		checkNext(t, "attention", got.NextCheckAt, nil)
		if !got.NeedsAttention {
			t.Errorf("NeedsAttention = false after FinishCheck(attention)")
		}

		// A Commit rescheduling the refund leaves NeedsAttention alone; the next finish sets it.
		upd := *got
		upd.NextCheckAt, upd.NeedsAttention, upd.UpdatedAt = at(T0.Add(time.Hour)), false, T0.Add(time.Hour)
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: &upd})
		got = mustGetRefund(t, b.ctx, st, "app1", "P", "R1")
		checkNext(t, "rescheduled", got.NextCheckAt, at(T0.Add(time.Hour)))
		if !got.NeedsAttention {
			t.Errorf("NeedsAttention cleared by Commit")
		}
		c = claimOne(t, b, T0.Add(time.Hour), time.Minute, "P/R1")
		if c.Checks != 1 {
			t.Errorf("third claim: Checks = %d, want 1 (the second was not counted)", c.Checks)
		}
		MustFinishCheck(t, b.ctx, st, c, nil, true, false)
		if got = mustGetRefund(t, b.ctx, st, "app1", "P", "R1"); got.NeedsAttention {
			t.Errorf("NeedsAttention = true after FinishCheck(attention false)")
		}
	})

	t.Run("OKRefundStale", func(t *testing.T) {
		st, b := s.setup(t)
		p := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "P", T0))
		r := newRefund(p, "R1", 10, T0)
		r.NextCheckAt = at(T0)
		if _, _, err := st.CreateRefund(b.ctx, r); err != nil {
			t.Fatal(err)
		}
		c1 := claimOne(t, b, T0, time.Minute, "P/R1")
		claimOne(t, b, T0.Add(time.Minute), time.Minute, "P/R1")
		MustFinishCheck(t, b.ctx, st, c1, nil, true, true)
		got := mustGetRefund(t, b.ctx, st, "app1", "P", "R1")
		checkNext(t, "after the stale finish", got.NextCheckAt, at(T0.Add(2*time.Minute)))
		if got.NeedsAttention {
			t.Errorf("NeedsAttention set by a stale finish")
		}
	})

	t.Run("OKRefundSettledMeanwhile", func(t *testing.T) {
		// A check read R1 pending (WasPending); a notification settled it before the check's end
		// (succeeded, no next check): the end leaves next_check_at and needs_attention as the
		// settlement wrote them, and still ends the claim and counts the check. R2, read
		// pending and still pending, gets its next check as before; R3, read succeeded (an
		// inferred amount asked about), too.
		st, b := s.setup(t)
		o := MustCreateOrder(t, b.ctx, st, NewOrder("app1", "T1", T0))
		for _, k := range []struct {
			no     string
			status paynotify.RefundStatus
		}{{"R1", paynotify.RefundPending}, {"R2", paynotify.RefundPending}, {"R3", paynotify.RefundSucceeded}} {
			r := newRefund(o, k.no, 10, T0)
			r.Status, r.NextCheckAt = k.status, at(T0)
			MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r})
		}
		checks, err := st.ClaimChecks(b.ctx, T0, time.Minute, 10)
		if err != nil || len(checks) != 3 {
			t.Fatalf("ClaimChecks = %d, %v", len(checks), err)
		}
		settled := newRefund(o, "R1", 10, T0)
		settled.Status, settled.UpdatedAt = paynotify.RefundSucceeded, T0.Add(time.Second)
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: settled})
		next := T0.Add(time.Hour)
		var done []paynotify.CheckDone
		for _, c := range checks {
			done = append(done, paynotify.CheckDone{Check: c, Next: &next, Counted: true, Attention: true, WasPending: c.OutRequestNo != "R3"})
		}
		if err := st.FinishChecks(b.ctx, done); err != nil {
			t.Fatal(err)
		}
		r1 := mustGetRefund(t, b.ctx, st, "app1", "T1", "R1")
		checkNext(t, "R1", r1.NextCheckAt, nil)
		if r1.NeedsAttention || r1.Status != paynotify.RefundSucceeded {
			t.Errorf("R1: %s, needs_attention %v; want succeeded, no attention", r1.Status, r1.NeedsAttention)
		}
		for _, no := range []string{"R2", "R3"} {
			r := mustGetRefund(t, b.ctx, st, "app1", "T1", no)
			checkNext(t, no, r.NextCheckAt, at(next))
			if !r.NeedsAttention {
				t.Errorf("%s: needs_attention not set", no)
			}
		}
		// The claims ended: nothing is claimed any more under their token.
		if cs := MustClaimChecks(t, b.ctx, st, T0.Add(2*time.Hour), time.Minute, 10); len(cs) != 2 {
			t.Errorf("claimable after the finish: %v, want R2 and R3", checkKeys(cs))
		}
	})

	t.Run("OKOtherRows", func(t *testing.T) {
		// One claim call may give several rows one token: a finish touches its own row only, not
		// the other rows of the claim: another order, a refund of the same order, another refund
		// of the same order.
		st, b := s.setup(t)
		for _, no := range []string{"T1", "T2"} {
			MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", no, T0))
		}
		for _, no := range []string{"R1", "R2"} {
			r := newRefund(MustGetOrder(t, b.ctx, st, "app1", "T1"), no, 10, T0)
			r.NextCheckAt = at(T0)
			if _, _, err := st.CreateRefund(b.ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		claimed := MustClaimChecks(t, b.ctx, st, T0, time.Minute, 10)
		checkStrings(t, "claimed", checkKeys(claimed), []string{"T1/R1", "T1/R2", "T1", "T2"})
		if len(claimed) != 4 {
			t.FailNow()
		}
		cs := []*paynotify.Check{claimed[2], claimed[3], claimed[0], claimed[1]} // T1, T2, R1, R2
		leased := at(T0.Add(time.Minute))
		// checkRows checks the schedule of T1, T2, R1, R2 and the attention of R1, R2.
		checkRows := func(what string, t1, t2, r1, r2 *time.Time, att1, att2 bool) {
			t.Helper()
			checkNext(t, what+": T1", MustGetOrder(t, b.ctx, st, "app1", "T1").NextCheckAt, t1)
			checkNext(t, what+": T2", MustGetOrder(t, b.ctx, st, "app1", "T2").NextCheckAt, t2)
			for _, k := range []struct {
				no   string
				next *time.Time
				att  bool
			}{{"R1", r1, att1}, {"R2", r2, att2}} {
				rf := mustGetRefund(t, b.ctx, st, "app1", "T1", k.no)
				checkNext(t, what+": "+k.no, rf.NextCheckAt, k.next)
				if rf.NeedsAttention != k.att {
					t.Errorf("%s: %s NeedsAttention = %v, want %v", what, k.no, rf.NeedsAttention, k.att)
				}
			}
		}
		MustFinishCheck(t, b.ctx, st, cs[0], nil, true, true)
		checkRows("T1 finished", nil, leased, leased, leased, false, false)
		MustFinishCheck(t, b.ctx, st, cs[2], nil, true, true)
		checkRows("R1 finished", nil, leased, nil, leased, true, false)
		if o := MustGetOrder(t, b.ctx, st, "app1", "T2"); o.Checks != 0 {
			t.Errorf("T2 Checks = %d, want 0", o.Checks)
		}
		// The other claims still hold.
		later := at(T0.Add(time.Hour))
		MustFinishCheck(t, b.ctx, st, cs[1], later, true, false)
		MustFinishCheck(t, b.ctx, st, cs[3], later, true, false)
		checkRows("all finished", nil, later, nil, later, true, false)
	})

	t.Run("OKBatch", func(t *testing.T) {
		// FinishChecks ends several claims at once, each as FinishCheck would: a stale one among
		// them is left alone without failing the others.
		st, b := s.setup(t)
		for i, otn := range []string{"T1", "T2", "T3"} {
			MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", otn, T0.Add(time.Duration(i)*time.Second)))
		}
		lease := time.Minute
		c1 := claimOne(t, b, T0, time.Hour, "T1")
		c2 := claimOne(t, b, T0.Add(time.Second), time.Hour, "T2")
		old := claimOne(t, b, T0.Add(2*time.Second), lease, "T3")
		cur := claimOne(t, b, T0.Add(2*time.Second+lease), lease, "T3") // T3's lease ran out and was claimed again
		err := st.FinishChecks(b.ctx, []paynotify.CheckDone{
			{Check: c1, Next: at(T0.Add(time.Hour)), Counted: true},
			{Check: c2, Next: nil, Counted: false},
			{Check: old, Next: at(T0.Add(time.Hour)), Counted: true},
		})
		if err != nil {
			t.Fatal(err)
		}
		o1, o2, o3 := MustGetOrder(t, b.ctx, st, "app1", "T1"), MustGetOrder(t, b.ctx, st, "app1", "T2"), MustGetOrder(t, b.ctx, st, "app1", "T3")
		checkNext(t, "T1", o1.NextCheckAt, at(T0.Add(time.Hour)))
		checkNext(t, "T2", o2.NextCheckAt, nil)
		checkNext(t, "T3 (stale finish)", o3.NextCheckAt, at(T0.Add(2*time.Second+2*lease)))
		if o1.Checks != 1 || o2.Checks != 0 || o3.Checks != 0 {
			t.Errorf("Checks = %d, %d, %d; want 1, 0, 0", o1.Checks, o2.Checks, o3.Checks)
		}
		if err := st.FinishChecks(b.ctx, nil); err != nil {
			t.Errorf("FinishChecks(nil) = %v", err)
		}
		MustFinishCheck(t, b.ctx, st, cur, nil, true, false)
		if o3 = MustGetOrder(t, b.ctx, st, "app1", "T3"); o3.Checks != 1 || o3.NextCheckAt != nil {
			t.Errorf("T3 after its current claim ended: %d checks, next %s", o3.Checks, fmtTime(o3.NextCheckAt))
		}
		// A batch with a claim without a token writes nothing.
		c4 := claimOne(t, b, T0.Add(2*time.Hour), lease, "T1") // T1 is due at T0+1h
		if err := st.FinishChecks(b.ctx, []paynotify.CheckDone{{Check: c4, Counted: true}, {Check: &paynotify.Check{Kind: paynotify.CheckOrder, App: "app1", OutTradeNo: "T2"}}}); err == nil {
			t.Errorf("FinishChecks with a tokenless claim succeeded")
		}
		if o1 = MustGetOrder(t, b.ctx, st, "app1", "T1"); o1.Checks != 1 {
			t.Errorf("a refused batch wrote: T1 has %d checks", o1.Checks)
		}
	})
	t.Run("ErrNoToken", func(t *testing.T) {
		// An empty token never held a claim: it must not match the unclaimed rows (whose token
		// is empty).
		st, b := s.setup(t)
		MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "T1", T0))
		c := &paynotify.Check{Kind: paynotify.CheckOrder, App: "app1", OutTradeNo: "T1"}
		if err := st.FinishCheck(b.ctx, c, nil, true, false); err == nil {
			t.Errorf("FinishCheck without a token succeeded")
		}
		o := MustGetOrder(t, b.ctx, st, "app1", "T1")
		checkNext(t, "T1", o.NextCheckAt, at(T0))
		if o.Checks != 0 {
			t.Errorf("Checks = %d, want 0", o.Checks)
		}
	})
}

// V1Rows are rows as a tool that knows only the version 1 schema inserts them (a load harness
// seeding orders names only the version 1 columns): order app1/L1 (pending, created at T0), its
// pending refund R1, and the accepted evidence L1. Each statement is valid on SQLite and
// PostgreSQL. CheckV1Rows checks how a store reads them.
var V1Rows = []string{
	`INSERT INTO orders (app, out_trade_no, channel, status, amount, currency, subject, version, created_at, expires_at)
		VALUES ('app1', 'L1', 'alipay.app', 'pending', 1234, 'CNY', 'legacy', 1, ` + sqlTime(T0) + `, ` + sqlTime(T0.Add(2*time.Hour)) + `)`,
	`INSERT INTO refunds (app, out_trade_no, out_request_no, amount, status, created_at, updated_at)
		VALUES ('app1', 'L1', 'R1', 100, 'pending', ` + sqlTime(T0) + `, ` + sqlTime(T0) + `)`,
	`INSERT INTO evidence (id, app, provider, received_at, verdict) VALUES ('L1', 'app1', 'alipay', ` + sqlTime(T0) + `, 'accepted')`,
}

// CheckV1Rows fails the test unless st reads V1Rows, and only them, with the defaults of the
// columns added since: no schedule (never claimed), no checks, no attention, Source notification.
func CheckV1Rows(t *testing.T, ctx context.Context, st paynotify.Store) {
	t.Helper()
	o, err := st.GetOrder(ctx, "app1", "L1")
	if err != nil {
		t.Fatalf("GetOrder(L1): %v", err)
	}
	checkOrder(t, o, &paynotify.Order{App: "app1", OutTradeNo: "L1", Channel: paynotify.ChannelAlipayApp, Status: paynotify.StatusPending,
		Amount: 1234, Currency: "CNY", Subject: "legacy", Version: 1, CreatedAt: T0, ExpiresAt: T0.Add(2 * time.Hour)})

	refund := &paynotify.Refund{App: "app1", OutTradeNo: "L1", OutRequestNo: "R1", Amount: 100, Status: paynotify.RefundPending,
		CreatedAt: T0, UpdatedAt: T0}
	rs, err := st.ListRefunds(ctx, "app1", "L1")
	if err != nil || len(rs) != 1 {
		t.Fatalf("ListRefunds(L1) = %d refunds, %v; want R1", len(rs), err)
	}
	checkRefund(t, rs[0], refund)
	if rs, err = st.ListPendingRefunds(ctx, "", T0); err != nil || len(rs) != 1 {
		t.Fatalf("ListPendingRefunds = %d refunds, %v; want R1", len(rs), err)
	}
	checkRefund(t, rs[0], refund)

	e, err := st.GetEvidence(ctx, "L1")
	if err != nil {
		t.Fatalf("GetEvidence(L1): %v", err)
	}
	checkEvidence(t, e, &paynotify.Evidence{ID: "L1", App: "app1", Provider: paynotify.ProviderAlipay, Source: paynotify.SourceNotification,
		ReceivedAt: T0, Verdict: paynotify.VerdictAccepted})
	checkStrings(t, "evidence of source notification", evidenceIDs(MustListEvidence(t, ctx, st,
		paynotify.EvidenceFilter{Source: paynotify.SourceNotification})), []string{"L1"})

	checkStrings(t, "claimed", checkKeys(MustClaimChecks(t, ctx, st, T0.Add(100*365*24*time.Hour), time.Minute, 10)), nil)
}

func (s *suite) testLegacyRows(t *testing.T) {
	// Rows inserted naming only the version 1 columns, into the current schema. (The store
	// packages check the same rows inserted before the migrations that added the columns.)
	setupV1 := func(t *testing.T) (DB, *bundle) {
		st, b := s.setup(t)
		for _, q := range V1Rows {
			if err := st.ExecSQL(b.ctx, q); err != nil {
				t.Fatalf("insert version 1 row: %v", err)
			}
		}
		return st, b
	}

	t.Run("OK", func(t *testing.T) {
		st, b := setupV1(t)
		CheckV1Rows(t, b.ctx, st)
	})

	t.Run("OKUsable", func(t *testing.T) {
		// The store works with them as with its own; a scheduled order next to them is claimed.
		st, b := setupV1(t)
		MustCreateOrder(t, b.ctx, st, scheduledOrder("app1", "S1", T0))
		checkStrings(t, "claimed", checkKeys(MustClaimChecks(t, b.ctx, st, T0.Add(100*365*24*time.Hour), time.Minute, 10)), []string{"S1"})
		MustCommit(t, b.ctx, st, PaidChange(MustGetOrder(t, b.ctx, st, "app1", "L1"), "ev1", "nt1", T0))
		if got := MustGetOrder(t, b.ctx, st, "app1", "L1"); got.Status != paynotify.StatusPaid || got.NextCheckAt != nil || got.Checks != 0 {
			t.Errorf("paid legacy order: %s", dumpOrder(got))
		}
		r := mustGetRefund(t, b.ctx, st, "app1", "L1", "R1")
		r.NextCheckAt = at(T0.Add(time.Minute))
		MustCommit(t, b.ctx, st, &paynotify.Change{Refund: r})
		checkNext(t, "R1", mustGetRefund(t, b.ctx, st, "app1", "L1", "R1").NextCheckAt, at(T0.Add(time.Minute)))
	})
}
