package sqlite

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/storetest"
)

// TestBatchRerunInvariants: random held batches of CommitOrders that pay their order (or decide
// nothing, refuse, panic in their build, or fail after writing), writes that make SQLite end the
// transaction, and, before one of those, another writer closing an order as soon as the batch
// lets the connection go (between the ended transaction and the new one). Whatever path a batch
// takes (reruns in its transaction, a new transaction, savepoints after two failures): a write
// answered nil has its rows and every other none, a build runs at most once, each order's version
// is explained by its events and the other writer's close, and the events' sequence numbers have
// no gap (the `after` cursor of GET /v1/events). TestBatchRerunDifferential compares answers with
// writes one by one; this one mixes in what has no one-by-one twin.
func TestBatchRerunInvariants(t *testing.T) {
	const orders = 6
	for seed := range int64(100) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewSource(seed))
			db := rerunOpen(t)
			rerunSetup(t, db) // O0..O2, and the evidence id "taken" that endTransaction copies
			for i := 3; i < orders; i++ {
				storetest.MustCreateOrder(t, t.Context(), db, storetest.NewOrder("app1", fmt.Sprintf("O%d", i), storetest.T0))
			}
			type write struct {
				kind   string
				order  string
				calls  int
				decide bool // the build decided a payment
			}
			n := 4 + r.Intn(24)
			ws := make([]*write, n)
			fns := make([]func() error, n)
			outside := make(chan error, n)
			outsides, started := 0, 0 // writes that close an order from outside; times one started
			endings, maxEndings := 0, 1+r.Intn(3)
			for i := range n {
				w := &write{order: fmt.Sprintf("O%d", r.Intn(orders))}
				ws[i] = w
				ev := fmt.Sprintf("ev%d", i)
				commitOrder := func(build func(o *paynotify.Order) (*paynotify.Change, error)) func() error {
					return func() error {
						_, err := db.CommitOrder(context.Background(), "app1", w.order, nil, func(o *paynotify.Order) (*paynotify.Change, error) {
							w.calls++
							return build(o)
						})
						return err
					}
				}
				pay := commitOrder(func(o *paynotify.Order) (*paynotify.Change, error) {
					if o.Status != paynotify.StatusPending {
						return nil, nil
					}
					w.decide = true
					return storetest.PaidChange(o, ev, "nt"+ev, storetest.T0), nil
				})
				switch k := r.Intn(10); {
				case k < 4:
					w.kind, fns[i] = "pay", pay
				case k == 4 && r.Intn(2) == 0:
					w.kind = "finish" // decided on the order's payment, maybe one of this batch
					for j := i - 1; j >= 0; j-- {
						if ws[j].kind == "pay" {
							w.order = ws[j].order
							break
						}
					}
					fns[i] = commitOrder(func(o *paynotify.Order) (*paynotify.Change, error) {
						if o.Status != paynotify.StatusPaid {
							return nil, nil
						}
						w.decide = true
						next := *o
						next.Status, next.Version = paynotify.StatusFinished, o.Version+1
						return &paynotify.Change{Order: &next, PrevVersion: o.Version,
							Events: []*paynotify.Event{paynotify.NewEvent(ev, paynotify.EventOrderFinished, storetest.T0, &next, nil, nil)}}, nil
					})
				case k == 4:
					w.kind = "refuse"
					fns[i] = commitOrder(func(*paynotify.Order) (*paynotify.Change, error) { return nil, errors.New("refused") })
				case k == 5:
					w.kind = "panic"
					fns[i] = commitOrder(func(*paynotify.Order) (*paynotify.Change, error) { panic("build") })
				case k == 6:
					w.kind = "dirty" // its event twice: fails after the order's update
					fns[i] = commitOrder(func(o *paynotify.Order) (*paynotify.Change, error) {
						if o.Status != paynotify.StatusPending {
							return nil, nil
						}
						w.decide = true
						c := storetest.PaidChange(o, ev, "nt"+ev, storetest.T0)
						c.Events = append(c.Events, c.Events[0])
						return c, nil
					})
				case endings >= maxEndings || k < 9 && r.Intn(3) > 0:
					// Most batches end at most one transaction: a third makes the batch run with a
					// savepoint per write, where an ending write fails the whole batch.
					w.kind, fns[i] = "pay", pay
				case k < 9:
					endings++
					w.kind = "ending"
					fns[i] = endingWrite(db, nil)
				default:
					endings++
					w.kind = "ending"
					if outsides == 0 {
						w.kind = "ending+close"
						for j := i - 1; j >= 0; j-- { // the order of an earlier payment of the batch, if any
							if ws[j].kind == "pay" {
								w.order = ws[j].order
								break
							}
						}
						outsides++
						stmt := fmt.Sprintf(`UPDATE orders SET status = 'closed', version = version + 1 WHERE app = 'app1' AND out_trade_no = '%s' AND status = 'pending'`, w.order)
						fns[i] = endingWrite(db, func() { started++; otherWriter(db, stmt, outside) })
					} else {
						fns[i] = endingWrite(db, nil)
					}
				}
			}
			errs := storetest.HeldBatchInOrder(t, db, nil, fns...)
			for range started { // each run of such a write (a batch that fails first runs none)
				if err := <-outside; err != nil {
					t.Fatalf("the other writer: %v", err)
				}
			}

			var names []string
			for i, w := range ws {
				names = append(names, fmt.Sprintf("%d:%s %s -> %v", i, w.kind, w.order, errs[i]))
			}
			ev := func(id string) bool {
				var k int
				if err := db.rd.QueryRow(`SELECT count(*) FROM events WHERE id = ?`, id).Scan(&k); err != nil {
					t.Fatal(err)
				}
				return k == 1
			}
			for i, w := range ws {
				id := fmt.Sprintf("ev%d", i)
				if w.calls > 1 {
					t.Errorf("write %d (%s): build ran %d times", i, w.kind, w.calls)
				}
				switch w.kind {
				case "pay", "finish":
					if want := errs[i] == nil && w.decide; ev(id) != want {
						t.Errorf("write %d (%s %s, answered %v, decided %v): its event stored %v", i, w.kind, w.order, errs[i], w.decide, !want)
					}
				case "dirty":
					if w.decide && errs[i] == nil {
						t.Errorf("write %d (dirty %s): answered nil", i, w.order)
					}
					if ev(id) {
						t.Errorf("write %d (dirty %s, answered %v): its event was stored", i, w.order, errs[i])
					}
				default:
					if errs[i] == nil {
						t.Errorf("write %d (%s): answered nil", i, w.kind)
					}
					if ev(id) {
						t.Errorf("write %d (%s): its event was stored", i, w.kind)
					}
				}
			}
			for o := range orders {
				no := fmt.Sprintf("O%d", o)
				var status string
				var version, events, paid, finished int
				if err := db.rd.QueryRow(`SELECT status, version, (SELECT count(*) FROM events WHERE out_trade_no = ?1),
					(SELECT count(*) FROM events WHERE out_trade_no = ?1 AND type = 'order.paid'),
					(SELECT count(*) FROM events WHERE out_trade_no = ?1 AND type = 'order.finished') FROM orders WHERE out_trade_no = ?1`, no).
					Scan(&status, &version, &events, &paid, &finished); err != nil {
					t.Fatal(err)
				}
				closed := 0
				if status == string(paynotify.StatusClosed) {
					closed = 1
				}
				explained := version == 1+events+closed && paid <= 1 && finished <= paid
				switch paynotify.OrderStatus(status) {
				case paynotify.StatusPending, paynotify.StatusClosed:
					explained = explained && paid == 0
				case paynotify.StatusPaid:
					explained = explained && paid == 1 && finished == 0
				case paynotify.StatusFinished:
					explained = explained && finished == 1
				}
				if !explained {
					t.Errorf("%s: %s v%d with %d events (%d order.paid, %d order.finished): not explained", no, status, version, events, paid, finished)
				}
			}
			var lo, hi, count int
			if err := db.rd.QueryRow(`SELECT coalesce(min(seq), 0), coalesce(max(seq), 0), count(*) FROM events`).Scan(&lo, &hi, &count); err != nil {
				t.Fatal(err)
			}
			if count > 0 && hi-lo+1 != count {
				t.Errorf("event seqs %d..%d hold %d events: a gap", lo, hi, count)
			}
			if t.Failed() {
				t.Logf("writes: %q", names)
			}
		})
	}
}
