package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/storetest"
)

func rerunOpen(t *testing.T) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.Now = func() time.Time { return storetest.T0 }
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return db
}

func errClass(err error) string {
	switch {
	case err == nil:
		return "nil"
	case errors.Is(err, paynotify.ErrVersionConflict):
		return "conflict"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case paynotify.ErrorCode(err) != "" && paynotify.ErrorCode(err) != paynotify.EINTERNAL:
		return string(paynotify.ErrorCode(err))
	default:
		return "other"
	}
}

func rerunDump(t *testing.T, db *DB) string {
	t.Helper()
	var b strings.Builder
	for _, q := range []string{
		`SELECT app||'/'||out_trade_no||' '||status||' v'||version||' r'||refunded_amount FROM orders ORDER BY out_trade_no`,
		`SELECT id FROM events ORDER BY seq`,
		`SELECT id||' '||verdict||' '||repeats FROM evidence ORDER BY id`,
		`SELECT out_trade_no||'/'||out_request_no||' '||amount||' '||status FROM refunds ORDER BY out_trade_no, out_request_no`,
		`SELECT out_trade_no||' '||key FROM anomalies ORDER BY out_trade_no, key`,
	} {
		rows, err := db.rd.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			b.WriteString(s + "\n")
		}
		rows.Close()
		b.WriteString("--\n")
	}
	return b.String()
}

type rerunOp struct {
	name string
	run  func(db *DB, calls *int) error
}

func rerunOps(r *rand.Rand, n int) []rerunOp {
	var ops []rerunOp
	for i := range n {
		oi := r.Intn(3)
		no := fmt.Sprintf("O%d", oi)
		base := storetest.NewOrder("app1", no, storetest.T0)
		switch k := r.Intn(9); k {
		case 0: // Commit paying the order at version prev
			prev := int64(1 + r.Intn(2))
			ops = append(ops, rerunOp{fmt.Sprintf("commit %s v%d", no, prev), func(db *DB, _ *int) error {
				o := *base
				o.Version = prev
				_, err := db.Commit(context.Background(), storetest.PaidChange(&o, fmt.Sprintf("ev%d", i), fmt.Sprintf("nt%d", i), storetest.T0))
				return err
			}})
		case 1: // Commit failing after its order update (evidence id taken)
			prev := int64(1 + r.Intn(2))
			ops = append(ops, rerunOp{fmt.Sprintf("commit-dirty %s v%d", no, prev), func(db *DB, _ *int) error {
				o := *base
				o.Version = prev
				_, err := db.Commit(context.Background(), storetest.PaidChange(&o, fmt.Sprintf("ev%d", i), "taken", storetest.T0))
				return err
			}})
		case 2, 3: // CommitOrder paying a pending order
			ops = append(ops, rerunOp{fmt.Sprintf("commitorder %s", no), func(db *DB, calls *int) error {
				_, err := db.CommitOrder(context.Background(), "app1", no, nil, func(o *paynotify.Order) (*paynotify.Change, error) {
					*calls++
					if o == nil || o.Status != paynotify.StatusPending {
						return nil, nil
					}
					return storetest.PaidChange(o, fmt.Sprintf("ev%d", i), fmt.Sprintf("nt%d", i), storetest.T0), nil
				})
				return err
			}})
		case 4: // CommitOrder failing after writing (event twice)
			ops = append(ops, rerunOp{fmt.Sprintf("commitorder-dirty %s", no), func(db *DB, calls *int) error {
				_, err := db.CommitOrder(context.Background(), "app1", no, nil, func(o *paynotify.Order) (*paynotify.Change, error) {
					*calls++
					if o == nil || o.Status != paynotify.StatusPending {
						return nil, nil
					}
					c := storetest.PaidChange(o, fmt.Sprintf("ev%d", i), fmt.Sprintf("nt%d", i), storetest.T0)
					c.Events = append(c.Events, c.Events[0])
					return c, nil
				})
				return err
			}})
		case 5: // CreateRefund
			amt := []paynotify.Amount{400, 700, 1234}[r.Intn(3)]
			rno := fmt.Sprintf("R%d", r.Intn(4))
			ops = append(ops, rerunOp{fmt.Sprintf("refund %s/%s %d", no, rno, amt), func(db *DB, _ *int) error {
				_, _, err := db.CreateRefund(context.Background(), &paynotify.Refund{App: "app1", OutTradeNo: no, OutRequestNo: rno,
					Amount: amt, Status: paynotify.RefundPending, CreatedAt: storetest.T0, UpdatedAt: storetest.T0})
				return err
			}})
		case 6: // InsertEvidence, ids from a small pool
			id := fmt.Sprintf("pool%d", r.Intn(3))
			ops = append(ops, rerunOp{"evidence " + id, func(db *DB, _ *int) error {
				return db.InsertEvidence(context.Background(), storetest.NewEvidence(id, base, storetest.T0))
			}})
		case 7: // a raw write failing after writing
			ops = append(ops, rerunOp{"raw-dirty", func(db *DB, _ *int) error {
				return db.w.Do(context.Background(), func(ctx context.Context, tx *sql.Tx, st *statements) error {
					if err := insertEvidence(ctx, tx, st, storetest.NewEvidence(fmt.Sprintf("raw%d", i), base, storetest.T0), nil); err != nil {
						return err
					}
					return errors.New("boom")
				})
			}})
		case 8: // a raw write panicking after writing
			ops = append(ops, rerunOp{"raw-panic", func(db *DB, _ *int) error {
				return db.w.Do(context.Background(), func(ctx context.Context, tx *sql.Tx, st *statements) error {
					if err := insertEvidence(ctx, tx, st, storetest.NewEvidence(fmt.Sprintf("rawp%d", i), base, storetest.T0), nil); err != nil {
						return err
					}
					panic("boom")
				})
			}})
		}
	}
	return ops
}

func rerunSetup(t *testing.T, db *DB) {
	for i := range 3 {
		o := storetest.MustCreateOrder(t, t.Context(), db, storetest.NewOrder("app1", fmt.Sprintf("O%d", i), storetest.T0))
		if i == 0 {
			if err := db.InsertEvidence(t.Context(), storetest.NewEvidence("taken", o, storetest.T0)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestBatchRerunDifferential: random mixes of writes (commits that succeed, lose their
// compare-and-set or fail after writing, CommitOrders, refunds at their bound, evidence ids
// taken, writes that fail or panic after writing) give the same answers and the same rows in one
// held batch as one by one, and no decision runs twice (commitBatch's reruns).
func TestBatchRerunDifferential(t *testing.T) {
	for seed := range int64(80) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewSource(seed))
			ops := rerunOps(r, 4+r.Intn(30))
			seqDB, batchDB := rerunOpen(t), rerunOpen(t)
			rerunSetup(t, seqDB)
			rerunSetup(t, batchDB)
			seqCalls, batchCalls := make([]int, len(ops)), make([]int, len(ops))
			seqErrs := make([]error, len(ops))
			for i, op := range ops {
				seqErrs[i] = op.run(seqDB, &seqCalls[i])
			}
			var writes []func() error
			for i, op := range ops {
				writes = append(writes, func() error { return op.run(batchDB, &batchCalls[i]) })
			}
			batchErrs := storetest.HeldBatchInOrder(t, batchDB, nil, writes...)
			for i := range ops {
				if errClass(seqErrs[i]) != errClass(batchErrs[i]) {
					t.Errorf("op %d %s: alone %v, in batch %v", i, ops[i].name, seqErrs[i], batchErrs[i])
				}
				if batchCalls[i] > 1 {
					t.Errorf("op %d %s: build ran %d times", i, ops[i].name, batchCalls[i])
				}
			}
			if a, b := rerunDump(t, seqDB), rerunDump(t, batchDB); a != b {
				t.Errorf("state differs:\nalone:\n%s\nbatch:\n%s", a, b)
			}
		})
	}
}
