package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/storetest"
)

// endTransaction makes SQLite roll the whole transaction back (INSERT OR ROLLBACK of the evidence
// id "taken", which rerunSetup inserts), as a full disk or an I/O error would.
const endTransaction = `INSERT OR ROLLBACK INTO evidence (id, app, provider, source, endpoint, reprocessed_from, received_at, verdict, reason, detail, out_trade_no, order_version, answer, duration_ms) SELECT id, app, provider, source, endpoint, reprocessed_from, received_at, verdict, reason, detail, out_trade_no, order_version, answer, duration_ms FROM evidence WHERE id = 'taken'`

// failAfterWriting is a write that inserts evidence id (of order O0), runs then (if not nil) and
// fails: its row must not stay.
func failAfterWriting(db *DB, id string, then func()) func() error {
	return func() error {
		return db.w.Do(context.Background(), func(ctx context.Context, tx *sql.Tx, st *statements) error {
			if err := insertEvidence(ctx, tx, st, storetest.NewEvidence(id, storetest.NewOrder("app1", "O0", storetest.T0), storetest.T0), nil); err != nil {
				return err
			}
			if then != nil {
				then()
			}
			return errors.New("fails after writing")
		})
	}
}

// endingWrite is a write that runs first (if not nil), then makes SQLite end the transaction.
func endingWrite(db *DB, first func()) func() error {
	return func() error {
		return db.w.Do(context.Background(), func(ctx context.Context, tx *sql.Tx, st *statements) error {
			if first != nil {
				first()
			}
			_, err := tx.ExecContext(ctx, endTransaction)
			return err
		})
	}
}

// otherWriter runs stmt on the write pool (as River's transactions and the API's endpoint
// changes do) and returns once it waits for the connection; its result arrives on done. Called
// inside a batch's write, so the statement runs when the batch lets the connection go.
func otherWriter(db *DB, stmt string, done chan<- error) {
	waits := db.SQL().Stats().WaitCount
	go func() {
		_, err := db.SQL().ExecContext(context.Background(), stmt)
		done <- err
	}()
	for db.SQL().Stats().WaitCount == waits {
		time.Sleep(time.Millisecond)
	}
}

func evCount(t *testing.T, db *DB, like string) int {
	var n int
	if err := db.rd.QueryRow(`SELECT count(*) FROM evidence WHERE id LIKE ?`, like).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBatchRerunSQLiteEndedTransaction: a write makes SQLite roll the whole transaction back
// (INSERT OR ROLLBACK on a taken id). In a run without savepoints it fails alone and the batch
// runs again in a new transaction; in the run with savepoints (after two failures) the batch
// fails, every write answered with it.
func TestBatchRerunSQLiteEndedTransaction(t *testing.T) {
	for _, failing := range []int{1, 5} { // 1: rerun without it; 5: in the savepoint run
		t.Run(fmt.Sprint(failing), func(t *testing.T) {
			db := rerunOpen(t)
			rerunSetup(t, db)
			o := storetest.NewOrder("app1", "O0", storetest.T0)
			ok := func(id string) func() error {
				return func() error {
					return db.InsertEvidence(context.Background(), storetest.NewEvidence(id, o, storetest.T0))
				}
			}
			var writes []func() error
			for i := range 6 {
				writes = append(writes, ok(fmt.Sprintf("ok%d", i)))
				if i < failing-1 {
					writes = append(writes, failAfterWriting(db, fmt.Sprintf("d%d", i), nil))
				} else if i == failing-1 {
					writes = append(writes, endingWrite(db, nil))
				}
			}
			errs := storetest.HeldBatchInOrder(t, db, nil, writes...)
			t.Logf("answers: %v", errs)
			nilAnswers := 0
			for _, err := range errs {
				if err == nil {
					nilAnswers++
				}
			}
			if got := evCount(t, db, "ok%"); got != nilAnswers {
				t.Errorf("%d ok rows committed, %d answered nil", got, nilAnswers)
			}
			if got := evCount(t, db, "d%"); got != 0 {
				t.Errorf("%d rows of failed writes kept", got)
			}
		})
	}
}

// TestBatchRerunCancelled: a write that started in a run that failed runs again and is committed
// though its caller went away; one that had not started is skipped with its context's error.
func TestBatchRerunCancelled(t *testing.T) {
	db := rerunOpen(t)
	rerunSetup(t, db)
	o := storetest.NewOrder("app1", "O0", storetest.T0)
	ctxA, cancelA := context.WithCancel(context.Background())
	ctxB, cancelB := context.WithCancel(context.Background())
	errs := storetest.HeldBatchInOrder(t, db, nil,
		func() error { return db.InsertEvidence(ctxA, storetest.NewEvidence("okA", o, storetest.T0)) },
		failAfterWriting(db, "dD", func() { cancelA(); cancelB() }),
		func() error { return db.InsertEvidence(ctxB, storetest.NewEvidence("okB", o, storetest.T0)) },
	)
	t.Logf("answers: %v", errs)
	if errs[0] != nil || evCount(t, db, "okA") != 1 {
		t.Errorf("A: %v, rows %d", errs[0], evCount(t, db, "okA"))
	}
	if !errors.Is(errs[2], context.Canceled) || evCount(t, db, "okB") != 0 {
		t.Errorf("B: %v, rows %d", errs[2], evCount(t, db, "okB"))
	}
}

// TestBatchRerunSavepointsAfterTwo: three writes failing after writing: the first write runs 3
// times (two runs ending in a failure, then the run with savepoints, where the third fails
// alone), and none of the failing writes' rows stays.
func TestBatchRerunSavepointsAfterTwo(t *testing.T) {
	db := rerunOpen(t)
	rerunSetup(t, db)
	runs := 0
	writes := []func() error{func() error {
		return db.w.Do(context.Background(), func(ctx context.Context, tx *sql.Tx, st *statements) error { runs++; return nil })
	}}
	for i := range 3 {
		writes = append(writes, failAfterWriting(db, fmt.Sprintf("d%d", i), nil))
	}
	storetest.HeldBatchInOrder(t, db, nil, writes...)
	if runs != 3 {
		t.Errorf("the first write ran %d times, want 3 (two failures, then savepoints)", runs)
	}
	if n := evCount(t, db, "d%"); n != 0 {
		t.Errorf("%d rows of the failed writes kept", n)
	}
}

// TestBatchRerunKeepsTheLock: a batch run again because a write failed after writing runs in the
// same transaction (ROLLBACK TO the batch's savepoint), so nothing else writes between a
// CommitOrder's read and its write (docs/storage.md, "Deciding in the writer"): a write on the
// write pool (as River's, the API's endpoint changes) that asked for the connection during the
// failing run waits for the batch's COMMIT, and the CommitOrder decided in the first run commits.
func TestBatchRerunKeepsTheLock(t *testing.T) {
	db := rerunOpen(t)
	rerunSetup(t, db)
	other := make(chan error, 1)
	var calls int
	errs := storetest.HeldBatchInOrder(t, db, nil,
		func() error {
			_, err := db.CommitOrder(context.Background(), "app1", "O1", nil, func(o *paynotify.Order) (*paynotify.Change, error) {
				calls++
				return storetest.PaidChange(o, "evt_o1", "ntf_o1", storetest.T0), nil
			})
			return err
		},
		failAfterWriting(db, "dirty", func() {
			otherWriter(db, `UPDATE orders SET status = 'closed', version = version + 1 WHERE app = 'app1' AND out_trade_no = 'O1'`, other)
		}),
	)
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	got, err := db.GetOrder(context.Background(), "app1", "O1")
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || calls != 1 || errs[1] == nil {
		t.Fatalf("answers %v, build calls %d: want the CommitOrder committed, decided once, the failing write failed", errs, calls)
	}
	// The other write came after the batch: the payment (version 2), then its update (3).
	if got.Status != paynotify.StatusClosed || got.Version != 3 {
		t.Fatalf("O1 is %s at version %d, want closed at 3", got.Status, got.Version)
	}
	if n := evCount(t, db, "dirty"); n != 0 {
		t.Fatalf("the failed write's evidence was kept")
	}
}

// TestBatchRerunEndedTransactionsFailHealth: every write fails with an error that makes SQLite
// end the transaction (SQLITE_FULL at a page allocation: max_page_count reached). A batch of 4
// such writes fails as a whole (its run with savepoints) and WriteHealth reports it; a batch of 2
// such writes, each failing alone and none committed, keeps it reported (a reviewer helper's
// finding: it answered nil for the batch and cleared the failure).
func TestBatchRerunEndedTransactionsFailHealth(t *testing.T) {
	db := rerunOpen(t)
	rerunSetup(t, db)
	fillUp(t, db)
	o := storetest.NewOrder("app1", "O0", storetest.T0)
	batch := func(tag string, n int) {
		var writes []func() error
		for i := range n {
			writes = append(writes, func() error {
				e := storetest.NewEvidence(fmt.Sprintf("%s%d", tag, i), o, storetest.T0)
				e.Body = bytes.Repeat([]byte{'x'}, 20000)
				return db.InsertEvidence(context.Background(), e)
			})
		}
		for i, err := range storetest.HeldBatchInOrder(t, db, nil, writes...) {
			if err == nil {
				t.Fatalf("%s write %d committed", tag, i)
			}
			t.Logf("%s write %d: %v", tag, i, err)
		}
	}
	batch("four", 4)
	if err := db.WriteHealth(); err == nil {
		t.Fatalf("after the batch of 4: WriteHealth nil")
	}
	batch("two", 2)
	if err := db.WriteHealth(); err == nil {
		t.Errorf("after a batch of 2 writes, none committed (every one SQLITE_FULL), WriteHealth nil: lastFailure cleared")
	}
}

// TestBatchRerunNewTransactionRunsRefusalsAgain: a write makes SQLite end the batch's transaction
// (here INSERT OR ROLLBACK; in production SQLITE_IOERR, or SQLITE_FULL at a page allocation); the
// batch runs again in a new transaction, and another writer takes the lock between the two (a
// write waiting for the write connection). The writes refused in the abandoned transaction run
// again in the new one, on what it holds: B, refused there for A's pending refund, is decided
// again (a reviewer helper's finding: it kept that refusal though A was not committed either).
func TestBatchRerunNewTransactionRunsRefusalsAgain(t *testing.T) {
	db := rerunOpen(t)
	rerunSetup(t, db) // O0 (amount 1234), evidence "taken"
	refund := func(no string, amount paynotify.Amount) func() error {
		return func() error {
			_, _, err := db.CreateRefund(context.Background(), &paynotify.Refund{App: "app1", OutTradeNo: "O0", OutRequestNo: no,
				Amount: amount, Status: paynotify.RefundPending, CreatedAt: storetest.T0, UpdatedAt: storetest.T0})
			return err
		}
	}
	other := make(chan error, 1)
	endsTx := endingWrite(db, func() { // another writer: 1000 fen refunded at the provider (as reconciliation records)
		otherWriter(db, `UPDATE orders SET refunded_amount = 1000, version = version + 1 WHERE app = 'app1' AND out_trade_no = 'O0'`, other)
	})
	errs := storetest.HeldBatchInOrder(t, db, nil, refund("A", 1234), refund("B", 100), endsTx)
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	refunds, err := db.ListRefunds(context.Background(), "app1", "O0")
	if err != nil {
		t.Fatal(err)
	}
	// In the new transaction the other writer's 1000 fen come first: A (1,234 of 1,234) is
	// refused, B (100) fits, and X fails alone.
	if paynotify.ErrorCode(errs[0]) != paynotify.EINVALID && paynotify.ErrorCode(errs[0]) != paynotify.ECONFLICT {
		t.Errorf("A: %v, want refused", errs[0])
	}
	if errs[1] != nil || errs[2] == nil {
		t.Errorf("B: %v, X: %v; want B committed, X failed", errs[1], errs[2])
	}
	if len(refunds) != 1 || refunds[0].OutRequestNo != "B" {
		t.Errorf("refunds committed: %+v, want B's", refunds)
	}
}

// TestBatchRerunNewTransactionConflictsDecisions: when the batch runs again in a new transaction,
// a CommitOrder decided in the old one, its build having refused or decided a payment, answers
// ErrVersionConflict (its caller decides again) and writes nothing: what it read may have been a
// write of the old transaction. Each build ran once.
func TestBatchRerunNewTransactionConflictsDecisions(t *testing.T) {
	db := rerunOpen(t)
	rerunSetup(t, db) // O0, O1, O2; evidence "taken"
	calls := make([]int, 2)
	errs := storetest.HeldBatchInOrder(t, db, nil,
		func() error {
			_, err := db.CommitOrder(context.Background(), "app1", "O1", nil, func(*paynotify.Order) (*paynotify.Change, error) {
				calls[0]++
				return nil, paynotify.Errorf(paynotify.ECONFLICT, "refused by the decision")
			})
			return err
		},
		func() error {
			_, err := db.CommitOrder(context.Background(), "app1", "O2", nil, func(o *paynotify.Order) (*paynotify.Change, error) {
				calls[1]++
				return storetest.PaidChange(o, "evt_o2", "ntf_o2", storetest.T0), nil
			})
			return err
		},
		endingWrite(db, nil),
	)
	if !errors.Is(errs[0], paynotify.ErrVersionConflict) || !errors.Is(errs[1], paynotify.ErrVersionConflict) || errs[2] == nil {
		t.Fatalf("answers %v: want two version conflicts and the failure", errs)
	}
	if calls[0] != 1 || calls[1] != 1 {
		t.Fatalf("build calls %v, want each once", calls)
	}
	if o, err := db.GetOrder(context.Background(), "app1", "O2"); err != nil || o.Status != paynotify.StatusPending {
		t.Fatalf("O2: %+v, %v, want pending", o, err)
	}
}

// TestBatchRerunNewTransactionNoOverwrite: a payment and a refund decided on that payment in one
// batch, then a write that ends the transaction while another writer closes the order (its
// version 1 to 2, the number the uncommitted payment had given it). In the new transaction
// neither decision is written: the close stands (a reviewer helper's finding: the refund, decided
// on version 2, passed its compare-and-set over the close, and the order read paid).
func TestBatchRerunNewTransactionNoOverwrite(t *testing.T) {
	db := rerunOpen(t)
	rerunSetup(t, db)
	other := make(chan error, 1)
	errs := storetest.HeldBatchInOrder(t, db, nil,
		func() error { // pays O1: version 1 to 2
			_, err := db.CommitOrder(context.Background(), "app1", "O1", nil, func(o *paynotify.Order) (*paynotify.Change, error) {
				return storetest.PaidChange(o, "evt_pay", "ntf_pay", storetest.T0), nil
			})
			return err
		},
		func() error { // refunds 100 of O1 paid: decided on the payment's version 2
			_, err := db.CommitOrder(context.Background(), "app1", "O1", nil, func(o *paynotify.Order) (*paynotify.Change, error) {
				if o.Status != paynotify.StatusPaid {
					return nil, paynotify.Errorf(paynotify.ECONFLICT, "not paid")
				}
				next := *o
				next.RefundedAmount, next.Version = 100, o.Version+1
				return &paynotify.Change{Order: &next, PrevVersion: o.Version}, nil
			})
			return err
		},
		endingWrite(db, func() { // another writer asks for the connection, then the transaction ends
			otherWriter(db, `UPDATE orders SET status = 'closed', version = version + 1 WHERE app = 'app1' AND out_trade_no = 'O1'`, other)
		}),
	)
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	o, err := db.GetOrder(context.Background(), "app1", "O1")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(errs[0], paynotify.ErrVersionConflict) || !errors.Is(errs[1], paynotify.ErrVersionConflict) || errs[2] == nil {
		t.Fatalf("answers %v: want two version conflicts and the failure", errs)
	}
	if o.Status != paynotify.StatusClosed || o.Version != 2 || o.RefundedAmount != 0 || o.PaidAt != nil {
		t.Fatalf("O1 is %s at version %d, refunded %d, paid at %v: want the other writer's close alone", o.Status, o.Version, o.RefundedAmount, o.PaidAt)
	}
	if evs := storetest.MustListEvents(t, context.Background(), db, paynotify.EventFilter{}); len(evs) != 0 {
		t.Fatalf("events %v, want none", evs)
	}
}

// TestBatchRerunAloneEndedFailsHealth: batches of one write each failing with SQLITE_FULL (the
// commonest batch under light load) report the writer failing (a reviewer helper's finding: a
// batch of one never tried the rollback that tells an ended transaction, and WriteHealth said ok).
func TestBatchRerunAloneEndedFailsHealth(t *testing.T) {
	db := rerunOpen(t)
	rerunSetup(t, db)
	fillUp(t, db)
	o := storetest.NewOrder("app1", "O0", storetest.T0)
	for i := range 3 {
		e := storetest.NewEvidence(fmt.Sprintf("full%d", i), o, storetest.T0)
		e.Body = bytes.Repeat([]byte{'x'}, 20000)
		if err := db.InsertEvidence(context.Background(), e); err == nil {
			t.Fatalf("write %d committed on a full database", i)
		}
	}
	if err := db.WriteHealth(); err == nil {
		t.Fatalf("three batches of one write, each SQLITE_FULL, none committed: WriteHealth nil")
	}
}

// fillUp caps db at its current size: every write that needs a new page fails with SQLITE_FULL.
func fillUp(t *testing.T, db *DB) {
	t.Helper()
	var pc int
	if err := db.SQL().QueryRow(`PRAGMA page_count`).Scan(&pc); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL().Exec(fmt.Sprintf(`PRAGMA max_page_count = %d`, pc)); err != nil {
		t.Fatal(err)
	}
}

// TestBatchRerunFullStatementFailsHealth: a fan-out (INSERT … SELECT, whose SQLITE_FULL SQLite
// rolls back alone, keeping the transaction) on a full database, batches of one, none committed:
// WriteHealth reports the writer failing (a reviewer helper's finding: only an ended transaction
// counted).
func TestBatchRerunFullStatementFailsHealth(t *testing.T) {
	db := rerunOpen(t)
	ctx := context.Background()
	if err := db.CreateWebhookEndpoint(ctx, &paynotify.WebhookEndpoint{ID: "whe_1", Kind: paynotify.EndpointHTTP, URL: "http://127.0.0.1:1/x",
		Status: paynotify.EndpointEnabled, Secret: "whsec_" + strings.Repeat("A", 43) + "=", CreatedAt: storetest.T0, UpdatedAt: storetest.T0}); err != nil {
		t.Fatal(err)
	}
	tx, err := db.SQL().Begin()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		if _, err := tx.Exec(insertEventSQL, fmt.Sprintf("evt_%d", i), "order.paid", "app1", fmt.Sprintf("O%d", i), 2, formatTime(storetest.T0), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	fillUp(t, db)
	for i := range 3 {
		if _, err := db.FanOutWebhooks(ctx, storetest.T0, 3000); err == nil {
			t.Fatalf("fan-out %d committed on a full database", i)
		}
	}
	if err := db.WriteHealth(); err == nil {
		t.Fatalf("three fan-outs, each SQLITE_FULL, none committed: WriteHealth nil")
	}
}

// TestBatchRerunEmptyCommitKeepsFailure: on a full database, a batch that changes nothing (a
// CommitOrder deciding nothing) commits, and that proves nothing: the writer stays reported
// failing until a batch changes rows (a reviewer helper's finding).
func TestBatchRerunEmptyCommitKeepsFailure(t *testing.T) {
	db := rerunOpen(t)
	rerunSetup(t, db)
	ctx := context.Background()
	fillUp(t, db)
	o := storetest.NewOrder("app1", "O0", storetest.T0)
	e := storetest.NewEvidence("full", o, storetest.T0)
	e.Body = bytes.Repeat([]byte{'x'}, 20000)
	if err := db.InsertEvidence(ctx, e); err == nil {
		t.Fatal("evidence committed on a full database")
	}
	if db.WriteHealth() == nil {
		t.Fatal("WriteHealth nil after a write failed with SQLITE_FULL")
	}
	if _, err := db.CommitOrder(ctx, "app1", "O1", nil, func(*paynotify.Order) (*paynotify.Change, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if db.WriteHealth() == nil {
		t.Fatal("WriteHealth nil after a batch that changed nothing, the database still full")
	}
	// Room again: a write that changes rows clears it.
	if _, err := db.SQL().Exec(`PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
	if err := db.InsertEvidence(ctx, storetest.NewEvidence("small", o, storetest.T0)); err != nil {
		t.Fatal(err)
	}
	if err := db.WriteHealth(); err != nil {
		t.Fatalf("WriteHealth after a committed write: %v", err)
	}
}
