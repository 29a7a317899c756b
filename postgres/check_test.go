package postgres_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/storetest"
)

// TestFinishChecksLockOrder: FinishChecks updates its rows in the order a notification batch
// locks them (orders by key, then refunds), not in the order the checks completed. Another
// transaction holds order A; FinishChecks of [refund of A, order B, order A] must then wait on A
// before it has touched B or the refund, so both are still free to lock (completion order would
// have locked the refund and B first: the two crossed halves of a deadlock with a batch that
// pays A, then B).
func TestFinishChecksLockOrder(t *testing.T) {
	u := pgtest.NewSchema(t)
	db := MustOpen(t, u)
	ctx := t.Context()
	due := storetest.T0
	for _, no := range []string{"A", "B"} {
		o := storetest.NewOrder("app1", no, storetest.T0)
		o.NextCheckAt = &due
		storetest.MustCreateOrder(t, ctx, db, o)
	}
	r := &paynotify.Refund{App: "app1", OutTradeNo: "A", OutRequestNo: "R", Amount: 10, Status: paynotify.RefundPending,
		CreatedAt: storetest.T0, UpdatedAt: storetest.T0, NextCheckAt: &due}
	if _, _, err := db.CreateRefund(ctx, r); err != nil {
		t.Fatal(err)
	}
	claims := storetest.MustClaimChecks(t, ctx, db, storetest.T0.Add(time.Minute), time.Minute, 10)
	byKey := map[string]*paynotify.Check{}
	for _, c := range claims {
		byKey[c.OutTradeNo+"/"+c.OutRequestNo] = c
	}
	if len(byKey) != 3 || byKey["A/"] == nil || byKey["B/"] == nil || byKey["A/R"] == nil {
		t.Fatalf("claimed %d checks (%v), want orders A, B and refund A/R", len(claims), byKey)
	}
	next := storetest.T0.Add(time.Hour)
	done := []paynotify.CheckDone{ // completion order
		{Check: byKey["A/R"], Next: &next, Counted: true},
		{Check: byKey["B/"], Next: &next, Counted: true},
		{Check: byKey["A/"], Next: &next, Counted: true},
	}

	hold, holder := openTx(t, u)
	if _, err := hold.Exec(ctx, `SELECT 1 FROM orders WHERE app = 'app1' AND out_trade_no = 'A' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	finished := make(chan error, 1)
	go func() { finished <- db.FinishChecks(ctx, done) }()

	// Wait until FinishChecks waits for a lock, the holder's.
	waitBlockedBy(t, u, holder, finished, "FinishChecks, order A held,")
	probe, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close(ctx)
	for _, q := range []string{
		`SELECT 1 FROM orders WHERE app = 'app1' AND out_trade_no = 'B' FOR UPDATE NOWAIT`,
		`SELECT 1 FROM refunds WHERE app = 'app1' AND out_trade_no = 'A' AND out_request_no = 'R' FOR UPDATE NOWAIT`,
	} {
		tx, err := probe.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Errorf("%s while FinishChecks waits for order A: %v (it locked this row first)", q, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-finished:
		if err != nil {
			t.Fatalf("FinishChecks: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("FinishChecks did not finish once order A was released")
	}
	for _, no := range []string{"A", "B"} {
		o, err := db.GetOrder(ctx, "app1", no)
		if err != nil {
			t.Fatal(err)
		}
		if o.Checks != 1 || o.NextCheckAt == nil || !o.NextCheckAt.Equal(next) {
			t.Errorf("order %s: checks %d, next check %v; want 1 and %v", no, o.Checks, o.NextCheckAt, next)
		}
	}
}
