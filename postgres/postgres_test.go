package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// MustOpen opens and migrates the database at u, closed when tb ends.
func MustOpen(tb testing.TB, u string) *postgres.DB {
	tb.Helper()
	db, err := postgres.Open(tb.Context(), u)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := db.Migrate(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	return db
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.DB {
		u := pgtest.NewSchema(t)
		return suiteDB{MustOpen(t, u), u}
	})
}

// TestDatabaseNow: the database's clock, which the retention prune cuts by when this process's
// is ahead (jobs.pruneNow); the test's PostgreSQL runs on this machine.
func TestDatabaseNow(t *testing.T) {
	db := MustOpen(t, pgtest.NewSchema(t))
	now, err := db.DatabaseNow(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(now); d < -time.Minute || d > time.Minute {
		t.Fatalf("the database's now is %s from this machine's", d)
	}
}

// suiteDB is the store as the conformance suite needs it.
type suiteDB struct {
	*postgres.DB
	url string
}

// ExecSQL runs query on the store's pool.
func (db suiteDB) ExecSQL(ctx context.Context, query string) error {
	_, err := db.Pool().Exec(ctx, query)
	return err
}

// OpenAnother opens another pool on the same schema, as another process.
func (db suiteDB) OpenAnother(t *testing.T) paynotify.Store { return MustOpen(t, db.url) }

func TestOpen(t *testing.T) {
	t.Run("OKDurable", func(t *testing.T) {
		// A commit is durable when Commit returns: the server must not acknowledge before it is
		// flushed. Nothing else in the suite could notice (a killed process keeps what the OS has).
		t.Parallel()
		db := MustOpen(t, pgtest.NewSchema(t))
		for setting, want := range map[string]string{"synchronous_commit": "on", "fsync": "on"} {
			var got string
			if err := db.Pool().QueryRow(t.Context(), "SHOW "+setting).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s = %s, want %s", setting, got, want)
			}
		}
	})

	t.Run("ErrUnreachable", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := postgres.Open(ctx, "postgres://paynotify:s3cretpassw0rd@127.0.0.1:1/x?sslmode=disable&connect_timeout=2")
		if err == nil {
			t.Fatal("Open succeeded")
		}
		if strings.Contains(err.Error(), "s3cretpassw0rd") {
			t.Errorf("error shows the password: %v", err)
		}
	})

	t.Run("ErrURL", func(t *testing.T) {
		t.Parallel()
		_, err := postgres.Open(t.Context(), "postgres://paynotify:s3cretpassw0rd@127.0.0.1:5432/x?sslmode=bogus")
		if err == nil {
			t.Fatal("Open succeeded")
		}
		if strings.Contains(err.Error(), "s3cretpassw0rd") {
			t.Errorf("error shows the password: %v", err)
		}
	})
}

func TestMigrate(t *testing.T) {
	storetest.RunMigrations(t, func(t *testing.T) storetest.Migrator {
		u := pgtest.NewSchema(t)
		db, err := postgres.Open(t.Context(), u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return suiteDB{db, u}
	})

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		db, err := postgres.Open(t.Context(), pgtest.NewSchema(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		n, err := db.PendingMigrations(t.Context())
		if err != nil || n < 1 {
			t.Fatalf("PendingMigrations on an empty schema = %d, %v; want ≥ 1", n, err)
		}
		for range 2 { // idempotent
			if err := db.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
			if n, err := db.PendingMigrations(t.Context()); err != nil || n != 0 {
				t.Fatalf("PendingMigrations after Migrate = %d, %v; want 0", n, err)
			}
		}
	})

	t.Run("OKUpgrade", func(t *testing.T) {
		// Rows written under schema version 1 get the defaults of the columns added since.
		t.Parallel()
		db, err := postgres.Open(t.Context(), pgtest.NewSchema(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.MigrateTo(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		for _, q := range storetest.V1Rows {
			if _, err := db.Pool().Exec(t.Context(), q); err != nil {
				t.Fatalf("insert version 1 row: %v", err)
			}
		}
		if n, err := db.PendingMigrations(t.Context()); err != nil || n < 1 {
			t.Fatalf("PendingMigrations at version 1 = %d, %v; want ≥ 1", n, err)
		}
		if err := db.Migrate(t.Context()); err != nil {
			t.Fatal(err)
		}
		storetest.CheckV1Rows(t, t.Context(), db)
	})

	t.Run("OKConcurrent", func(t *testing.T) {
		// Several instances start together on a fresh database: the advisory lock makes them
		// take turns (without it, concurrent CREATE TABLEs fail).
		t.Parallel()
		u := pgtest.NewDatabase(t)
		var err error
		const n = 8
		dbs := make([]*postgres.DB, n)
		for i := range dbs {
			if dbs[i], err = postgres.Open(t.Context(), u); err != nil {
				t.Fatal(err)
			}
			defer dbs[i].Close()
		}
		var wg sync.WaitGroup
		var failed atomic.Int32
		start := make(chan struct{})
		for _, db := range dbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := db.Migrate(t.Context()); err != nil {
					failed.Add(1)
					t.Errorf("Migrate: %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if n, err := dbs[0].PendingMigrations(t.Context()); err != nil || n != 0 {
			t.Fatalf("PendingMigrations = %d, %v; want 0", n, err)
		}
		var applied int
		if err := dbs[0].Pool().QueryRow(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&applied); err != nil {
			t.Fatal(err)
		}
		if want, _ := allMigrations(t); applied != want {
			t.Errorf("schema_migrations has %d rows, want %d", applied, want)
		}
	})
}

// allMigrations returns how many migrations a new schema has pending (all of them).
func allMigrations(t *testing.T) (int, error) {
	db, err := postgres.Open(t.Context(), pgtest.NewSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return db.PendingMigrations(t.Context())
}

// TestDurability commits, closes the pool, reopens and finds everything.
func TestDurability(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	u := pgtest.NewSchema(t)
	db, err := postgres.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	o, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", "T1", storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	c := storetest.PaidChange(o, "ev1", "nt1", storetest.T0.Add(time.Minute))
	if _, err := db.Commit(ctx, c); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = MustOpen(t, u)
	got, err := db.GetOrder(ctx, "app1", "T1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || got.Status != paynotify.StatusPaid || got.PaidAt == nil || !bytes.Equal(got.Pay, o.Pay) {
		t.Errorf("order after reopen: %+v", got)
	}
	evs, err := db.ListEvents(ctx, paynotify.EventFilter{})
	if err != nil || len(evs) != 1 || evs[0].ID != "ev1" || !bytes.Equal(evs[0].Data, c.Events[0].Data) {
		t.Errorf("events after reopen: %v, %v", evs, err)
	}
	nts, err := db.ListEvidence(ctx, paynotify.EvidenceFilter{})
	if err != nil || len(nts) != 1 || !bytes.Equal(nts[0].Body, c.Evidence.Body) {
		t.Errorf("evidence after reopen: %v, %v", nts, err)
	}
}

// TestEventsCommitOrder checks that a reader paging the log while commits race never skips an
// event: every seq it sees after a cursor is greater than the cursor, and at the end it has
// seen every event exactly once.
func TestEventsCommitOrder(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := MustOpen(t, pgtest.NewSchema(t))
	const writers, perWriter = 8, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				o, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", fmt.Sprintf("W%d-%d", w, i), storetest.T0))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := db.Commit(ctx, storetest.PaidChange(o, fmt.Sprintf("ev%d-%d", w, i), fmt.Sprintf("nt%d-%d", w, i), storetest.T0)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	seen := map[string]bool{}
	var after int64
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true // one more pass after the last commit
		default:
		}
		evs, err := db.ListEvents(ctx, paynotify.EventFilter{After: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if seen[e.ID] {
				t.Fatalf("event %s seen twice", e.ID)
			}
			seen[e.ID] = true
			after = e.Seq
		}
		if len(evs) == 7 {
			finished = false
		}
	}
	if len(seen) != writers*perWriter {
		t.Errorf("reader saw %d events, want %d", len(seen), writers*perWriter)
	}
}

// BenchmarkCommit measures one durable single-order commit (order CAS, one event, evidence),
// one after the other, and from 8 goroutines.
func BenchmarkCommit(b *testing.B) {
	for _, par := range []int{1, 8} {
		b.Run(fmt.Sprint("conns=", par), func(b *testing.B) {
			db := MustOpen(b, pgtest.NewSchema(b))
			ctx := b.Context()
			orders := make([]*paynotify.Order, b.N)
			for i := range orders {
				o, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", fmt.Sprint("B", i), storetest.T0))
				if err != nil {
					b.Fatal(err)
				}
				orders[i] = o
			}
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for range par {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1)) - 1
						if i >= len(orders) {
							return
						}
						if _, err := db.Commit(ctx, storetest.PaidChange(orders[i], fmt.Sprint("ev", i), fmt.Sprint("nt", i), storetest.T0)); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
}

// TestBatchLockTimeout: an order row held by another session does not stall the other writes of
// the instance: the batch gives up on the lock after lock_timeout, the writes run again one by
// one, the other order is paid, and only the write of the locked order fails.
func TestBatchLockTimeout(t *testing.T) {
	db := MustOpen(t, pgtest.NewSchema(t))
	ctx := t.Context()
	x := storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "LX", storetest.T0))
	y := storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "LY", storetest.T0))
	// Another session holds X's row (an operator's open transaction).
	other, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(context.Background())
	if _, err := other.Exec(ctx, `SELECT 1 FROM orders WHERE app = 'app1' AND out_trade_no = 'LX' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	errs := storetest.HeldBatch(t, db, nil,
		func() error {
			_, err := db.Commit(ctx, storetest.PaidChange(x, "evX", "ntX", storetest.T0))
			return err
		},
		func() error {
			_, err := db.Commit(ctx, storetest.PaidChange(y, "evY", "ntY", storetest.T0))
			return err
		},
	)
	errX, errY := errs[0], errs[1]
	if errY != nil {
		t.Errorf("the unlocked order's commit: %v", errY)
	}
	if errX == nil || !strings.Contains(errX.Error(), "55P03") {
		t.Errorf("the locked order's commit: %v, want lock_timeout (55P03)", errX)
	}
	if o, err := db.GetOrder(ctx, "app1", "LY"); err != nil || o.Status != paynotify.StatusPaid {
		t.Errorf("LY: %v %v", o, err)
	}
	other.Rollback(ctx)
	if o, err := db.GetOrder(ctx, "app1", "LX"); err != nil || o.Status != paynotify.StatusPending {
		t.Errorf("LX: %v %v", o, err)
	}
}

// TestByLockKey: a batch's writes take their row locks in the order of their rows' keys (the
// order's app and out_trade_no, from the order change, else the refund, the anomaly or the
// evidence; then the record a repeat counts on), so that batches in flight side by side (or of
// several instances) lock rows in one order; writes of one key keep the order they arrived in.
func TestByLockKey(t *testing.T) {
	order := func(app, no string) *paynotify.Change {
		return &paynotify.Change{Order: &paynotify.Order{App: app, OutTradeNo: no}}
	}
	repeat := func(no, record string) *paynotify.Change {
		return &paynotify.Change{Repeat: true, Evidence: &paynotify.Evidence{ID: record, App: "a", OutTradeNo: no}}
	}
	changes := []*paynotify.Change{
		order("b", "1"),      // 0
		order("a", "2"),      // 1
		order("a", "10"),     // 2
		{},                   // 3: nothing to lock
		order("a", "2"),      // 4
		repeat("2", "ntf_z"), // 5
		repeat("2", "ntf_y"), // 6
		{Refund: &paynotify.Refund{App: "a", OutTradeNo: "0"}},      // 7
		{Anomaly: &paynotify.Anomaly{App: "a", OutTradeNo: "3"}},    // 8
		{Evidence: &paynotify.Evidence{App: "a", OutTradeNo: "10"}}, // 9: not a repeat
	}
	got := postgres.ByLockKey(changes)
	want := []int{3, 7, 2, 9, 1, 4, 6, 5, 8, 0} // "0" < "10" < "2" < "3" as text; ntf_y before ntf_z
	if !slices.Equal(got, want) {
		t.Errorf("ByLockKey = %v, want %v", got, want)
	}
}

// TestCrossingBatches: two instances' batches, held and released together, pay the same two
// orders in opposite orders of arrival. Each order is paid once, by one of them; every other
// write loses its compare-and-set (ErrVersionConflict), none fails otherwise; and neither batch
// deadlocked (which would have rolled it back and run its writes again one by one): their
// compare-and-sets lock the rows in one order (without it, one to three rounds of five deadlock).
func TestCrossingBatches(t *testing.T) {
	u := pgtest.NewSchema(t)
	db1, db2 := MustOpen(t, u), MustOpen(t, u)
	ctx := t.Context()
	for round := range 5 {
		a := storetest.MustCreateOrder(t, ctx, db1, storetest.NewOrder("app1", fmt.Sprint("A", round), storetest.T0))
		b := storetest.MustCreateOrder(t, ctx, db1, storetest.NewOrder("app1", fmt.Sprint("B", round), storetest.T0))
		pay := func(db *postgres.DB, o *paynotify.Order, id string) func() error {
			return func() error {
				_, err := db.Commit(ctx, storetest.PaidChange(o, "ev"+id, "nt"+id, storetest.T0))
				return err
			}
		}
		errs, reruns := crossed(t, db1, db2,
			[]func() error{pay(db1, b, fmt.Sprint(round, "-1b")), pay(db1, a, fmt.Sprint(round, "-1a"))},
			[]func() error{pay(db2, a, fmt.Sprint(round, "-2a")), pay(db2, b, fmt.Sprint(round, "-2b"))})
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, paynotify.ErrVersionConflict):
				t.Errorf("round %d, write %d: %v, want nil or ErrVersionConflict", round, i, err)
			}
		}
		if won != 2 {
			t.Errorf("round %d: %d writes won, want 2 (one per order): %v", round, won, errs)
		}
		if reruns != 0 {
			t.Errorf("round %d: %d batches ran again write by write (a deadlock)", round, reruns)
		}
		for _, o := range []*paynotify.Order{a, b} {
			if got := storetest.MustGetOrder(t, ctx, db1, "app1", o.OutTradeNo); got.Version != 2 || got.Status != paynotify.StatusPaid {
				t.Errorf("round %d, %s: version %d %s, want 2 paid", round, o.OutTradeNo, got.Version, got.Status)
			}
		}
	}
}

// TestCrossingRepeats: two instances' held batches count repeats on the same two duplicate
// records in opposite orders of arrival (a duplicate storm): every repeat is counted, and
// neither batch deadlocked (and ran again write by write): their row work locks the records in
// one order too.
func TestCrossingRepeats(t *testing.T) {
	u := pgtest.NewSchema(t)
	db1, db2 := MustOpen(t, u), MustOpen(t, u)
	ctx := t.Context()
	o := storetest.MustCreateOrder(t, ctx, db1, storetest.NewOrder("app1", "R", storetest.T0))
	for round := range 10 {
		x, y := fmt.Sprint("ntf_x", round), fmt.Sprint("ntf_y", round)
		for _, id := range []string{x, y} {
			e := storetest.NewEvidence(id, o, storetest.T0)
			e.Verdict = paynotify.VerdictDuplicate
			if err := db1.InsertEvidence(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		repeat := func(db *postgres.DB, id string) func() error {
			return func() error {
				e := storetest.NewEvidence(id, o, storetest.T0.Add(time.Minute))
				e.Verdict = paynotify.VerdictDuplicate
				_, err := db.Commit(ctx, &paynotify.Change{Evidence: e, Repeat: true})
				return err
			}
		}
		errs, reruns := crossed(t, db1, db2, []func() error{repeat(db1, y), repeat(db1, x)}, []func() error{repeat(db2, x), repeat(db2, y)})
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d, repeat %d: %v", round, i, err)
			}
		}
		for _, id := range []string{x, y} {
			if e, err := db1.GetEvidence(ctx, id); err != nil || e.Repeats != 2 {
				t.Errorf("round %d, %s: repeats %v (%v), want 2", round, id, e, err)
			}
		}
		if reruns != 0 {
			t.Errorf("round %d: %d batches ran again write by write (a deadlock)", round, reruns)
		}
	}
}

// TestEventLockNoTimeout: a batch waits for the event log's lock as long as another transaction
// holds it (another batch until its COMMIT), past the 2 s lock timeout its rows have, and then
// commits as one batch: a slow COMMIT of one batch does not fail the other.
func TestEventLockNoTimeout(t *testing.T) {
	db := MustOpen(t, pgtest.NewSchema(t))
	ctx := t.Context()
	o := storetest.MustCreateOrder(t, ctx, db, storetest.NewOrder("app1", "EL", storetest.T0))
	other, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(context.Background())
	if _, err := other.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, postgres.EventsLockKey); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := db.Commit(ctx, storetest.PaidChange(o, "evEL", "ntEL", storetest.T0))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Commit answered while the event log's lock was held: %v", err)
	case <-time.After(3 * time.Second): // past the batch's 2 s lock timeout
	}
	if err := other.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Commit after the lock was released: %v", err)
	}
	if n := db.Reruns(); n != 0 {
		t.Errorf("%d batches ran again write by write, want none", n)
	}
	if got := storetest.MustGetOrder(t, ctx, db, "app1", "EL"); got.Status != paynotify.StatusPaid {
		t.Errorf("EL: %s, want paid", got.Status)
	}
}

// waitQueued waits until the held batch of q holds n writes.
func waitQueued(t *testing.T, q func() int, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for q() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the held batch holds %d writes, want %d", q(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// crossed holds a batch of each instance, sends w1 to db1 and w2 to db2 (each in its order),
// releases both together and returns the writes' errors and how many batches ran again write by
// write meanwhile (a deadlock does).
func crossed(t *testing.T, db1, db2 *postgres.DB, w1, w2 []func() error) ([]error, int64) {
	t.Helper()
	reruns := db1.Reruns() + db2.Reruns()
	q1, release1 := db1.HoldWrites(t)
	q2, release2 := db2.HoldWrites(t)
	errs := make([]error, len(w1)+len(w2))
	var wg sync.WaitGroup
	for i, f := range append(append([]func() error{}, w1...), w2...) {
		wg.Go(func() { errs[i] = f() })
		if i < len(w1) {
			waitQueued(t, q1, i+1)
		} else {
			waitQueued(t, q2, i-len(w1)+1)
		}
	}
	release1(nil)
	release2(nil)
	wg.Wait()
	return errs, db1.Reruns() + db2.Reruns() - reruns
}

// TestCrossingRowWork: two instances' batches write the same rows of one order in opposite
// orders of arrival, rows no compare-and-set puts in turn: two new anomalies, two refunds, two
// order creations. Each is written once (the first anomaly insert new, the refunds upserted,
// each order created by one of them) and neither batch deadlocked: a batch writes each table's
// rows in the order of their keys.
func TestCrossingRowWork(t *testing.T) {
	u := pgtest.NewSchema(t)
	db1, db2 := MustOpen(t, u), MustOpen(t, u)
	ctx := t.Context()
	o := storetest.MustCreateOrder(t, ctx, db1, storetest.NewOrder("app1", "X", storetest.T0))
	for round := range 10 {
		anomaly := func(db *postgres.DB, key string, n *atomic.Int32) func() error {
			return func() error {
				ev := paynotify.NewEvent(paynotify.NewID("evt"), paynotify.EventOrderAnomaly, storetest.T0, o, nil, &paynotify.EventAnomaly{Reason: paynotify.ReasonAmountMismatch})
				isNew, err := db.Commit(ctx, &paynotify.Change{Anomaly: &paynotify.Anomaly{App: "app1", OutTradeNo: "X", Reason: paynotify.ReasonAmountMismatch, Key: key, Event: ev}})
				if isNew {
					n.Add(1)
				}
				return err
			}
		}
		refund := func(db *postgres.DB, no string) func() error {
			return func() error {
				r := &paynotify.Refund{App: "app1", OutTradeNo: "X", OutRequestNo: no, Amount: 100, Status: paynotify.RefundPending, CreatedAt: storetest.T0, UpdatedAt: storetest.T0}
				_, err := db.Commit(ctx, &paynotify.Change{Refund: r})
				return err
			}
		}
		create := func(db *postgres.DB, no string, n *atomic.Int32) func() error {
			return func() error {
				_, created, err := db.CreateOrder(ctx, storetest.NewOrder("app1", no, storetest.T0))
				if created {
					n.Add(1)
				}
				return err
			}
		}
		ka, kb := fmt.Sprint("ka", round), fmt.Sprint("kb", round)
		ra, rb := fmt.Sprint("RA", round), fmt.Sprint("RB", round)
		ca, cb := fmt.Sprint("CA", round), fmt.Sprint("CB", round)
		var newA, newB, madeA, madeB atomic.Int32
		for _, c := range []struct {
			name   string
			w1, w2 []func() error
		}{
			{"anomalies", []func() error{anomaly(db1, kb, &newB), anomaly(db1, ka, &newA)}, []func() error{anomaly(db2, ka, &newA), anomaly(db2, kb, &newB)}},
			{"refunds", []func() error{refund(db1, rb), refund(db1, ra)}, []func() error{refund(db2, ra), refund(db2, rb)}},
			{"creations", []func() error{create(db1, cb, &madeB), create(db1, ca, &madeA)}, []func() error{create(db2, ca, &madeA), create(db2, cb, &madeB)}},
		} {
			errs, reruns := crossed(t, db1, db2, c.w1, c.w2)
			for i, err := range errs {
				if err != nil {
					t.Errorf("round %d, %s, write %d: %v", round, c.name, i, err)
				}
			}
			if reruns != 0 {
				t.Errorf("round %d, %s: %d batches ran again write by write (a deadlock)", round, c.name, reruns)
			}
		}
		if newA.Load() != 1 || newB.Load() != 1 || madeA.Load() != 1 || madeB.Load() != 1 {
			t.Errorf("round %d: anomalies new %d, %d times; orders created %d, %d times; want once each", round, newA.Load(), newB.Load(), madeA.Load(), madeB.Load())
		}
		refunds, err := db1.ListRefunds(ctx, "app1", "X")
		if err != nil {
			t.Fatal(err)
		}
		if got := len(refunds); got != 2*(round+1) {
			t.Errorf("round %d: %d refunds, want %d", round, got, 2*(round+1))
		}
	}
}

// TestIdleTransactionBounded: paynotify's sessions get idle_in_transaction_session_timeout
// (postgres.IdleTransactionTimeout) unless the URL (or the role, or the database) sets one, so
// that a session frozen inside a transaction that holds the event log's lock (a stopped process,
// a partition) cannot hold every instance's event-writing commits for hours (a reviewer's
// finding: they waited for as long as the session lived). Here a session of a store opened with
// a short timeout takes the lock and stays idle: another store's commit with an event goes
// through once PostgreSQL has ended that session.
func TestIdleTransactionBounded(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	u := pgtest.NewDatabase(t) // a database of its own: the event log's lock is the database's
	db := MustOpen(t, u)
	var v string
	if err := db.Pool().QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&v); err != nil || v != "1min" {
		t.Fatalf("idle_in_transaction_session_timeout = %q, %v; want 1min (%s)", v, err, postgres.IdleTransactionTimeout)
	}

	short, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := short.Query()
	q.Set("idle_in_transaction_session_timeout", "1500ms")
	short.RawQuery = q.Encode()
	frozen, err := postgres.Open(ctx, short.String())
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Close()
	if err := frozen.Pool().QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&v); err != nil || v != "1500ms" {
		t.Fatalf("the URL's idle_in_transaction_session_timeout: %q, %v", v, err)
	}
	off := *short
	q.Set("idle_in_transaction_session_timeout", "0")
	off.RawQuery = q.Encode()
	unbounded, err := postgres.Open(ctx, off.String())
	if err != nil {
		t.Fatal(err)
	}
	err = unbounded.Pool().QueryRow(ctx, `SHOW idle_in_transaction_session_timeout`).Scan(&v)
	unbounded.Close()
	if err != nil || v != "0" {
		t.Fatalf("0 from the URL: %q, %v; want it kept", v, err)
	}
	tx, err := frozen.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, postgres.EventsLockKey); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	o, _, err := db.CreateOrder(ctx, storetest.NewOrder("app1", "T1", storetest.T0))
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := db.Commit(cctx, storetest.PaidChange(o, "ev1", "nt1", storetest.T0.Add(time.Minute))); err != nil {
		t.Fatalf("commit behind an idle holder of the event log's lock: %v after %s", err, time.Since(start))
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("the commit waited %s: the lock was not held", waited)
	}
	if _, err := tx.Exec(ctx, `SELECT 1`); err == nil {
		t.Error("the idle session still answers: PostgreSQL did not end it")
	}
}

// BenchmarkClaimBeside: a sweep's claim and finish of 100 due checks of app1, with 0 and 50,000
// due orders of an app the sweep does not claim beside them (storetest.BenchClaimBeside).
func BenchmarkClaimBeside(b *testing.B) {
	for _, others := range []int{0, 50000} {
		b.Run(fmt.Sprint("others=", others), func(b *testing.B) {
			storetest.BenchClaimBeside(b, MustOpen(b, pgtest.NewSchema(b)), others)
		})
	}
}
