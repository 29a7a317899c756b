package postgres_test

import (
	"fmt"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/storetest"
)

// TestCreateRefund_ConcurrentExceedRepeatableRead (a reviewer helper's finding): CreateRefund's amount check
// must hold whatever the database's default isolation level. On a PostgreSQL whose
// default_transaction_isolation is repeatable read (ALTER DATABASE … SET, a managed service's
// parameter group, or the URL's runtime parameter, as here), the refunds' sums are read on the
// snapshot taken when the transaction's first statement (SELECT … FOR UPDATE of the order) began,
// before the lock was granted: the refund the lock holder had just inserted is not seen, and
// concurrent refunds of 10.00 on an order of 12.34 are all recorded (and all sent to the provider).
func TestCreateRefund_ConcurrentExceedRepeatableRead(t *testing.T) {
	u, err := url.Parse(pgtest.NewSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	if u.RawQuery != "" {
		u.RawQuery += "&"
	}
	u.RawQuery += "default_transaction_isolation=repeatable%20read" // a runtime parameter of every connection
	st := MustOpen(t, u.String())
	ctx := t.Context()
	T0 := time.Date(2026, 11, 29, 10, 30, 15, 0, time.UTC)
	const orders, n = 20, 10
	for k := range orders {
		otn := fmt.Sprintf("T%d", k)
		o := storetest.MustCreateOrder(t, ctx, st, storetest.NewOrder("app1", otn, T0))
		storetest.MustCommit(t, ctx, st, storetest.PaidChange(o, "ev"+otn, "nt"+otn, T0.Add(time.Minute)))
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				st.CreateRefund(ctx, &paynotify.Refund{App: "app1", OutTradeNo: otn, OutRequestNo: fmt.Sprintf("R%d", i), Amount: 1000,
					Status: paynotify.RefundPending, CreatedAt: T0, UpdatedAt: T0})
			}()
		}
		close(start)
		wg.Wait()
		refunds, err := st.ListRefunds(ctx, "app1", otn)
		if err != nil {
			t.Fatal(err)
		}
		if len(refunds) > 1 {
			t.Fatalf("order %s of 12.34: %d concurrent refunds of 10.00 recorded, want 1", otn, len(refunds))
		}
	}
}
