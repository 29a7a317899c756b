package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/jobs"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/sqlite"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var quiet = slog.New(slog.DiscardHandler)

// payingProvider answers every query with a payment of the order, and counts the queries.
type payingProvider struct {
	mu      sync.Mutex
	queries map[string]int
	block   chan struct{} // when set, queries wait on it or on their context
}

func (p *payingProvider) Verifier(string) paynotify.Verifier { return nil }
func (p *payingProvider) Pay(context.Context, *paynotify.Order, string, string) (json.RawMessage, error) {
	return json.RawMessage(`{}`), nil
}
func (p *payingProvider) Close(_ context.Context, o *paynotify.Order) (paynotify.Fact, error) {
	return paynotify.Fact{Kind: paynotify.FactClosed, OutTradeNo: o.OutTradeNo}, nil
}
func (p *payingProvider) Refund(context.Context, *paynotify.Order, *paynotify.Refund, string) (*paynotify.Fact, error) {
	return nil, nil
}
func (p *payingProvider) QueryRefund(context.Context, *paynotify.Order, *paynotify.Refund) (*paynotify.Answer, error) {
	return &paynotify.Answer{State: "PROCESSING"}, nil
}

func (p *payingProvider) Query(ctx context.Context, o *paynotify.Order) (*paynotify.Answer, error) {
	p.mu.Lock()
	p.queries[o.OutTradeNo]++
	block := p.block
	p.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &paynotify.Fact{Kind: paynotify.FactPaid, OutTradeNo: o.OutTradeNo, ProviderTradeNo: "P" + o.OutTradeNo, Amount: o.Amount, HasAmount: true}
	return &paynotify.Answer{State: "TRADE_SUCCESS", Fact: f, Endpoint: "fake.query", Body: []byte("{}")}, nil
}

func (p *payingProvider) counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.queries {
		out[k] = v
	}
	return out
}

// storeKind opens a fresh, fully migrated database (ours and River's) and a Runner on it.
type storeKind struct {
	name string
	// open returns a store and a function that builds a Runner on (another handle to) it.
	open func(t *testing.T) (paynotify.Store, func(t *testing.T, cfg jobs.Config) *jobs.Runner)
}

var kinds = []storeKind{
	{"SQLite", func(t *testing.T) (paynotify.Store, func(*testing.T, jobs.Config) *jobs.Runner) {
		path := filepath.Join(t.TempDir(), "paynotify.db")
		db := openSQLite(t, path)
		return db, func(t *testing.T, cfg jobs.Config) *jobs.Runner {
			// Another handle on the file, as another process would have.
			other := openSQLite(t, path)
			cfg.Reconciler.Service.Store = other
			cfg.Reconciler.Service.Processor.Store = other
			r, err := jobs.NewSQLite(other.SQL(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
	}},
	{"PostgreSQL", func(t *testing.T) (paynotify.Store, func(*testing.T, jobs.Config) *jobs.Runner) {
		url := pgtest.NewSchema(t)
		db := openPostgres(t, url)
		return db, func(t *testing.T, cfg jobs.Config) *jobs.Runner {
			other := openPostgres(t, url)
			cfg.Reconciler.Service.Store = other
			cfg.Reconciler.Service.Processor.Store = other
			r, err := jobs.NewPostgres(other.Pool(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
	}},
}

func openSQLite(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := jobs.MigrateSQLite(t.Context(), db.SQL()); err != nil {
		t.Fatal(err)
	}
	return db
}

func openPostgres(t *testing.T, url string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := jobs.MigratePostgres(t.Context(), db.Pool()); err != nil {
		t.Fatal(err)
	}
	return db
}

// newService is a Service of one app "shop" on store, whose orders are first checked 1s after
// creation.
func newService(store paynotify.Store, gw paynotify.Provider) *paynotify.Service {
	app := &paynotify.App{Name: "shop", Provider: paynotify.ProviderAlipay, Gateway: gw,
		Reconcile: paynotify.ReconcilePolicy{Schedule: []time.Duration{time.Second}, ThenEvery: time.Second, Concurrency: 4}}
	return &paynotify.Service{Store: store, Processor: &paynotify.Processor{Store: store, Logger: quiet},
		Apps: map[string]*paynotify.App{"shop": app}, PublicURL: "https://pay.example.com", Logger: quiet}
}

// cloneService is svc with a Processor and app map of its own (another process's).
func cloneService(svc *paynotify.Service) *paynotify.Service {
	c := *svc
	c.Processor = &paynotify.Processor{Store: svc.Processor.Store, Logger: svc.Processor.Logger}
	return &c
}

func createOrders(t *testing.T, svc *paynotify.Service, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		otn := fmt.Sprintf("J%05d", i)
		if _, _, err := svc.CreateOrder(t.Context(), paynotify.CreateOrderRequest{App: "shop", OutTradeNo: otn, Amount: 100,
			Subject: "s", Channel: paynotify.ChannelAlipayApp, ExpiresIn: time.Hour}); err != nil {
			t.Fatal(err)
		}
		out = append(out, otn)
	}
	return out
}

// waitPaid waits until every order is paid, or fails after d.
func waitPaid(t *testing.T, store paynotify.Store, otns []string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, otn := range otns {
		for {
			o, err := store.GetOrder(t.Context(), "shop", otn)
			if err != nil {
				t.Fatal(err)
			}
			if o.Status == paynotify.StatusPaid {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still %s after %s", otn, o.Status, d)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// The periodic sweep runs on River and pays what the provider says was paid.
func TestRunner_Sweeps(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			store, runnerOn := k.open(t)
			gw := &payingProvider{queries: map[string]int{}}
			svc := newService(store, gw)
			otns := createOrders(t, svc, 10)
			var sweeps sync.WaitGroup
			sweeps.Add(1)
			var once sync.Once
			r := runnerOn(t, jobs.Config{Reconciler: &paynotify.Reconciler{Service: cloneService(svc)}, SweepInterval: time.Second, Logger: quiet,
				OnSweep: func(st paynotify.SweepStats, err error) {
					if err == nil && st.Checked > 0 {
						once.Do(sweeps.Done)
					}
				}})
			if err := r.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Stop(context.Background()) })
			waitPaid(t, store, otns, 20*time.Second)
			sweeps.Wait() // OnSweep saw it: the checks ran in River's sweep job
			for _, otn := range otns {
				if n := gw.counts()[otn]; n != 1 {
					t.Errorf("%s queried %d times, want once", otn, n)
				}
			}
		})
	}
}

// Two processes' runners on one database: every check runs once.
func TestRunner_TwoProcesses(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			store, runnerOn := k.open(t)
			gw := &payingProvider{queries: map[string]int{}}
			svc := newService(store, gw)
			otns := createOrders(t, svc, 60)
			for range 2 {
				r := runnerOn(t, jobs.Config{Reconciler: &paynotify.Reconciler{Service: cloneService(svc), Batch: 4}, SweepInterval: time.Second, Logger: quiet})
				if err := r.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Stop(context.Background()) })
			}
			waitPaid(t, store, otns, 30*time.Second)
			time.Sleep(2 * time.Second) // room for a second check of any order, were claims broken
			total := 0
			for _, otn := range otns {
				n := gw.counts()[otn]
				total += n
				if n != 1 {
					t.Errorf("%s queried %d times, want once", otn, n)
				}
			}
			if total != len(otns) {
				t.Fatalf("%d queries for %d orders", total, len(otns))
			}
		})
	}
}

// Stop during a check that hangs: it returns, and the claim is given back, due at once, for the
// next process.
func TestRunner_StopReleases(t *testing.T) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			store, runnerOn := k.open(t)
			gw := &payingProvider{queries: map[string]int{}, block: make(chan struct{})}
			svc := newService(store, gw)
			otns := createOrders(t, svc, 1)
			r := runnerOn(t, jobs.Config{Reconciler: &paynotify.Reconciler{Service: cloneService(svc)}, SweepInterval: time.Second, Logger: quiet})
			if err := r.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(20 * time.Second)
			for gw.counts()[otns[0]] == 0 { // the check is in flight
				if time.Now().After(deadline) {
					t.Fatal("the sweep never queried")
				}
				time.Sleep(20 * time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			if err := r.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("Stop took %s", d)
			}
			o, err := store.GetOrder(t.Context(), "shop", otns[0])
			if err != nil {
				t.Fatal(err)
			}
			if o.Status != paynotify.StatusPending || o.Checks != 0 || o.NextCheckAt == nil || o.NextCheckAt.After(time.Now()) {
				t.Fatalf("order = %s, %d checks, next %v: want pending, not counted, due now (released)", o.Status, o.Checks, o.NextCheckAt)
			}
		})
	}
}

func TestMigrate(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "paynotify.db")
		db, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if p, err := jobs.PendingSQLite(t.Context(), db.SQL()); err != nil || len(p) == 0 {
			t.Fatalf("pending on a new file = %v, %v; want some", p, err)
		}
		// Three processes migrating the same file at once all succeed.
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				other, err := sqlite.Open(path)
				if err != nil {
					t.Error(err)
					return
				}
				defer other.Close()
				if err := jobs.MigrateSQLite(t.Context(), other.SQL()); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if p, err := jobs.PendingSQLite(t.Context(), db.SQL()); err != nil || len(p) != 0 {
			t.Fatalf("pending after migrating = %v, %v", p, err)
		}
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		t.Parallel()
		url := pgtest.NewSchema(t)
		db, err := postgres.Open(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if p, err := jobs.PendingPostgres(t.Context(), db.Pool()); err != nil || len(p) == 0 {
			t.Fatalf("pending on a new schema = %v, %v; want some", p, err)
		}
		var mu sync.Mutex
		byVersion := map[int]int{}
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				other, err := postgres.Open(t.Context(), url)
				if err != nil {
					t.Error(err)
					return
				}
				defer other.Close()
				applied, err := jobs.ApplyPostgres(t.Context(), other.Pool())
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				for _, m := range applied {
					byVersion[m.Version]++
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		// Under the lock each migration was applied, and reported, by exactly one of them.
		all, err := jobs.StatusPostgres(t.Context(), db.Pool())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range all {
			if byVersion[m.Version] != 1 || !m.Applied {
				t.Errorf("River migration %d (%s): applied = %v, reported by %d processes; want applied, by 1", m.Version, m.Name, m.Applied, byVersion[m.Version])
			}
		}
		if len(byVersion) != len(all) {
			t.Errorf("reported versions %v, River has %d", byVersion, len(all))
		}
		if p, err := jobs.PendingPostgres(t.Context(), db.Pool()); err != nil || len(p) != 0 {
			t.Fatalf("pending after migrating = %v, %v", p, err)
		}
	})
}

func TestApplyAndStatus(t *testing.T) {
	type funcs struct {
		status func(ctx context.Context) ([]jobs.Migration, error)
		apply  func(ctx context.Context) ([]jobs.Migration, error)
	}
	for name, open := range map[string]func(t *testing.T) funcs{
		"SQLite": func(t *testing.T) funcs {
			db, err := sqlite.Open(filepath.Join(t.TempDir(), "paynotify.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return funcs{
				func(ctx context.Context) ([]jobs.Migration, error) { return jobs.StatusSQLite(ctx, db.SQL()) },
				func(ctx context.Context) ([]jobs.Migration, error) { return jobs.ApplySQLite(ctx, db.SQL()) },
			}
		},
		"PostgreSQL": func(t *testing.T) funcs {
			db, err := postgres.Open(t.Context(), pgtest.NewSchema(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return funcs{
				func(ctx context.Context) ([]jobs.Migration, error) { return jobs.StatusPostgres(ctx, db.Pool()) },
				func(ctx context.Context) ([]jobs.Migration, error) { return jobs.ApplyPostgres(ctx, db.Pool()) },
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			f := open(t)
			before, err := f.status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(before) < 5 {
				t.Fatalf("status on a new database lists %d River migrations, want River's (≥ 5)", len(before))
			}
			for i, m := range before {
				if m.Applied || m.Version != i+1 || m.Name == "" {
					t.Fatalf("status on a new database: %+v", before)
				}
			}
			applied, err := f.apply(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(applied) != len(before) {
				t.Fatalf("applied %+v, want all %d", applied, len(before))
			}
			for i, m := range applied {
				if m.Version != before[i].Version || m.Name != before[i].Name || !m.Applied {
					t.Fatalf("applied %+v, want the order of %+v", applied, before)
				}
			}
			after, err := f.status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range after {
				if !m.Applied {
					t.Fatalf("status after applying: %+v", after)
				}
			}
			if again, err := f.apply(ctx); err != nil || len(again) != 0 {
				t.Fatalf("apply on an up-to-date database = %+v, %v; want none", again, err)
			}
		})
	}
}

// TestApplyPostgres_PoolOfOne (a reviewer helper's finding): with pool_max_conns=1 (deploy.md
// suggests pool_max_conns to stay under max_connections), River's migrations waited for ever:
// the migration lock held the pool's one connection, which River's migrator then waited for.
// The lock has a connection of its own now; the migrations apply, and the lock is free after.
func TestApplyPostgres_PoolOfOne(t *testing.T) {
	t.Parallel()
	url := pgtest.NewSchema(t) + "&pool_max_conns=1"
	db, err := postgres.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	applied, err := jobs.ApplyPostgres(ctx, db.Pool())
	if err != nil || len(applied) < 5 {
		t.Fatalf("River's migrations on a pool of one: %d applied, %v", len(applied), err)
	}
	// Another process takes the lock at once: nothing left to apply.
	other, err := postgres.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if again, err := jobs.ApplyPostgres(ctx, other.Pool()); err != nil || len(again) != 0 {
		t.Fatalf("again: %v, %v; want nothing to apply", again, err)
	}
}

// TestApplyPostgres_LockConnSettings (a reviewer's finding): the migration lock's own connection
// gets the session settings the pool's connections get (its AfterConnect: postgres.Open's TCP
// keepalives and idle-transaction timeout), or a host that froze while migrating held the lock
// for the kernel's two hours.
func TestApplyPostgres_LockConnSettings(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(pgtest.NewSchema(t) + "&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var hooked []string
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		mu.Lock()
		hooked = append(hooked, "hooked")
		mu.Unlock()
		_, err := c.Exec(ctx, `SET idle_in_transaction_session_timeout = '61s'`)
		return err
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := jobs.ApplyPostgres(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	// One connection of the pool (pool_max_conns=1) and the lock's own.
	if len(hooked) != 2 {
		t.Fatalf("AfterConnect ran %d times, want 2 (the pool's connection and the lock's)", len(hooked))
	}
}
