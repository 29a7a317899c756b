package storetest

import (
	"maps"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

func (s *suite) testCountStatuses(t *testing.T) {
	t.Run("OKEmpty", func(t *testing.T) {
		st, b := s.setup(t)
		got, err := st.CountStatuses(b.ctx)
		if err != nil {
			t.Fatalf("CountStatuses: %v", err)
		}
		if len(got.Orders) != 0 || got.PendingDeliveries != 0 || got.RefundsNeedingAttention != 0 {
			t.Errorf("CountStatuses of an empty store = %+v, want nothing", got)
		}
	})

	t.Run("OK", func(t *testing.T) {
		// Orders in three statuses across two apps; deliveries pending, delivered and failed:
		// only the pending ones are counted.
		w := s.setupWebhooks(t)
		MustCreateOrder(t, w.ctx, w.st, NewOrder("app1", "P1", T0))
		MustCreateOrder(t, w.ctx, w.st, NewOrder("app2", "P2", T0))
		MustCreateOrder(t, w.ctx, w.st, NewOrder("app2", "P3", T0))
		w.endpoint("we1", nil)
		w.paid("app1", "T1", "e1", T0)
		w.paid("app2", "T2", "e2", T0)
		w.paid("app2", "T3", "e3", T0)
		w.event("app1", "T4", "e4", paynotify.EventOrderFinished, T0)
		now := T0.Add(time.Minute)
		if n := w.fanOut(now, 10); n != 4 {
			t.Fatalf("FanOutWebhooks = %d, want 4", n)
		}
		ds := w.claim("we1", now, time.Minute, 10)
		if len(ds) != 4 {
			t.Fatalf("claimed %d deliveries, want 4", len(ds))
		}
		w.finish(delivered(ds[0], now), giveUp(ds[1], now))

		got, err := w.st.CountStatuses(w.ctx)
		if err != nil {
			t.Fatalf("CountStatuses: %v", err)
		}
		want := map[paynotify.OrderStatus]int64{paynotify.StatusPending: 3, paynotify.StatusPaid: 3, paynotify.StatusFinished: 1}
		if !maps.Equal(got.Orders, want) {
			t.Errorf("CountStatuses.Orders = %v, want %v", got.Orders, want)
		}
		// Two are pending: claimed deliveries stay pending until their result is recorded.
		if got.PendingDeliveries != 2 {
			t.Errorf("CountStatuses.PendingDeliveries = %d, want 2", got.PendingDeliveries)
		}
		// Refunds: two need attention (one pending, one succeeded with an inferred amount still
		// asked about), one does not.
		o := MustGetOrder(t, w.ctx, w.st, "app1", "T1")
		for _, k := range []struct {
			no        string
			status    paynotify.RefundStatus
			attention bool
		}{{"R1", paynotify.RefundPending, true}, {"R2", paynotify.RefundSucceeded, true}, {"R3", paynotify.RefundPending, false}} {
			MustCommit(t, w.ctx, w.st, &paynotify.Change{Refund: func() *paynotify.Refund {
				r := newRefund(o, k.no, 10, T0)
				r.Status = k.status
				if k.status == paynotify.RefundSucceeded {
					r.NextCheckAt = at(T0.Add(time.Hour))
				}
				return r
			}()})
			if k.attention {
				if err := w.st.ExecSQL(w.ctx, `UPDATE refunds SET needs_attention = (1 = 1) WHERE out_request_no = '`+k.no+`'`); err != nil {
					t.Fatal(err)
				}
			}
		}
		if got, err := w.st.CountStatuses(w.ctx); err != nil || got.RefundsNeedingAttention != 2 {
			t.Errorf("CountStatuses.RefundsNeedingAttention = %+v, %v; want 2", got, err)
		}
	})
}
