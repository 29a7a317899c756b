package paynotify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sqlite"
)

// The Processor's branches, each against a real SQLite store, without HTTP: verify → load →
// decide → change → verdict → commit (processor.go).

// verifierFunc is a Verifier made of a function: the fake provider of these tests.
type verifierFunc func(h http.Header, body []byte, at time.Time) (paynotify.Fact, error)

func (f verifierFunc) Verify(h http.Header, body []byte, at time.Time) (paynotify.Fact, error) {
	return f(h, body, at)
}

// facts returns a verifier that states f for every request.
func facts(f paynotify.Fact) paynotify.Verifier {
	return verifierFunc(func(http.Header, []byte, time.Time) (paynotify.Fact, error) { return f, nil })
}

type procBundle struct {
	store   *sqlite.DB
	app     *paynotify.App
	changed []string // out_trade_no of every OnChange, in order
	mu      sync.Mutex
}

var t0 = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

// quiet discards the logs of the code under test.
var quiet = slog.New(slog.DiscardHandler)

// openStore opens a fresh, migrated SQLite store, closed when tb ends.
func openStore(tb testing.TB) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(filepath.Join(tb.TempDir(), "paynotify.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return db
}

func setupProcessor(t *testing.T) (*paynotify.Processor, *procBundle) {
	t.Helper()
	b := &procBundle{store: openStore(t),
		app: &paynotify.App{Name: "shop", Provider: paynotify.ProviderAlipay, AppID: "2021000000000001", MchID: "", SellerIDs: []string{"2088000000000002"}}}
	p := &paynotify.Processor{Store: b.store, Logger: quiet, Now: func() time.Time { return t0 }, OnChange: func(o *paynotify.Order) {
		b.mu.Lock()
		b.changed = append(b.changed, o.OutTradeNo)
		b.mu.Unlock()
	}}
	return p, b
}

// mustOrder creates a pending order of 1000 fen.
func (b *procBundle) mustOrder(t *testing.T, otn string) *paynotify.Order {
	t.Helper()
	o, _, err := b.store.CreateOrder(context.Background(), &paynotify.Order{App: "shop", OutTradeNo: otn, Channel: paynotify.ChannelAlipayApp,
		Status: paynotify.StatusPending, Amount: 1000, Currency: "CNY", Subject: "s", Version: 1, CreatedAt: t0, ExpiresAt: t0.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// pendingRefund records a pending refund of ours, no of otn for amount, created at t0.
func (b *procBundle) pendingRefund(t *testing.T, otn, no string, amount paynotify.Amount) {
	t.Helper()
	if _, _, err := b.store.CreateRefund(context.Background(), &paynotify.Refund{App: "shop", OutTradeNo: otn, OutRequestNo: no,
		Amount: amount, Status: paynotify.RefundPending, CreatedAt: t0, UpdatedAt: t0}); err != nil {
		t.Fatal(err)
	}
}

func (b *procBundle) order(t *testing.T, otn string) *paynotify.Order {
	t.Helper()
	o, err := b.store.GetOrder(context.Background(), "shop", otn)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// events returns the types of the events of otn, in log order.
func (b *procBundle) events(t *testing.T, otn string) []string {
	t.Helper()
	evs, err := b.store.ListEvents(context.Background(), paynotify.EventFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if e.OutTradeNo == otn {
			out = append(out, string(e.Type))
		}
	}
	return out
}

func (b *procBundle) evidence(t *testing.T, f paynotify.EvidenceFilter) []*paynotify.Evidence {
	t.Helper()
	f.Limit = 1000
	list, err := b.store.ListEvidence(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return list
}

func paidFact(otn, tradeNo string) paynotify.Fact {
	return paynotify.Fact{Kind: paynotify.FactPaid, OutTradeNo: otn, ProviderTradeNo: tradeNo, AppID: "2021000000000001",
		SellerID: "2088000000000002", Amount: 1000, HasAmount: true, At: t0.Add(time.Minute)}
}

func callback(app *paynotify.App) *paynotify.Callback {
	return &paynotify.Callback{App: app, Endpoint: "alipay", Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("body"),
		Answer: func(res *paynotify.Result) string { return map[bool]string{true: "success", false: "fail"}[res.OK] }}
}

func TestProcess_OK(t *testing.T) {
	p, b := setupProcessor(t)
	b.mustOrder(t, "T1")
	res := p.Process(context.Background(), callback(b.app), facts(paidFact("T1", "P1")))
	if res.Verdict != paynotify.VerdictAccepted || !res.OK || res.Order.Status != paynotify.StatusPaid {
		t.Fatalf("result = %+v", res)
	}
	if o := b.order(t, "T1"); o.Status != paynotify.StatusPaid || o.Version != 2 || o.ProviderTradeNo != "P1" || !o.PaidAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("order = %+v", o)
	}
	if got := fmt.Sprint(b.events(t, "T1")); got != "[order.paid]" {
		t.Fatalf("events = %s", got)
	}
	ev := b.evidence(t, paynotify.EvidenceFilter{OutTradeNo: "T1"})
	if len(ev) != 1 || ev[0].Verdict != paynotify.VerdictAccepted || ev[0].Answer != "success" || ev[0].Source != paynotify.SourceNotification ||
		ev[0].Endpoint != "alipay" || ev[0].OrderVersion != 2 || string(ev[0].Body) != "body" {
		t.Fatalf("evidence = %+v", ev)
	}
	if fmt.Sprint(b.changed) != "[T1]" {
		t.Fatalf("OnChange calls = %v", b.changed)
	}

	t.Run("Duplicate", func(t *testing.T) {
		res := p.Process(context.Background(), callback(b.app), facts(paidFact("T1", "P1")))
		if res.Verdict != paynotify.VerdictDuplicate || !res.OK {
			t.Fatalf("result = %+v", res)
		}
		if got := fmt.Sprint(b.events(t, "T1")); got != "[order.paid]" {
			t.Fatalf("events = %s", got)
		}
		if len(b.evidence(t, paynotify.EvidenceFilter{OutTradeNo: "T1", Verdict: paynotify.VerdictDuplicate})) != 1 {
			t.Fatal("no duplicate evidence")
		}
		if len(b.changed) != 1 {
			t.Fatalf("OnChange called for a duplicate: %v", b.changed)
		}
	})
}

func TestProcess_Rejected(t *testing.T) {
	p, b := setupProcessor(t)
	b.mustOrder(t, "T1")
	rejecting := verifierFunc(func(http.Header, []byte, time.Time) (paynotify.Fact, error) {
		return paynotify.Fact{}, fmt.Errorf("wrapped: %w", &paynotify.RejectError{Reason: paynotify.ReasonSignatureInvalid, Detail: "RSA2 does not verify", OutTradeNo: "T1"})
	})
	res := p.Process(context.Background(), callback(b.app), rejecting)
	if res.Verdict != paynotify.VerdictRejected || res.OK || res.Reason != paynotify.ReasonSignatureInvalid {
		t.Fatalf("result = %+v", res)
	}
	ev := b.evidence(t, paynotify.EvidenceFilter{Verdict: paynotify.VerdictRejected})
	if len(ev) != 1 || ev[0].OutTradeNo != "T1" || ev[0].Detail != "RSA2 does not verify" || ev[0].Answer != "fail" {
		t.Fatalf("evidence = %+v", ev)
	}
	if o := b.order(t, "T1"); o.Status != paynotify.StatusPending || o.Version != 1 {
		t.Fatalf("a rejected request changed the order: %+v", o)
	}

	t.Run("CallerGone", func(t *testing.T) {
		// The provider hung up while the request waited: its record is kept all the same.
		p, b := setupProcessor(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		unavailable := verifierFunc(func(http.Header, []byte, time.Time) (paynotify.Fact, error) {
			return paynotify.Fact{}, fmt.Errorf("notify_verify: %w", paynotify.ErrVerifyUnavailable)
		})
		for _, v := range []paynotify.Verifier{rejecting, unavailable} {
			if res := p.Process(ctx, callback(b.app), v); res.OK {
				t.Fatalf("result = %+v", res)
			}
		}
		if ev := b.evidence(t, paynotify.EvidenceFilter{}); len(ev) != 2 {
			t.Fatalf("evidence of a rejected and an unverifiable request whose caller hung up: %d records, want 2", len(ev))
		}
	})

	t.Run("NotARejectError", func(t *testing.T) {
		res := p.Process(context.Background(), callback(b.app), verifierFunc(func(http.Header, []byte, time.Time) (paynotify.Fact, error) {
			return paynotify.Fact{}, errors.New("bad bytes")
		}))
		if res.Verdict != paynotify.VerdictRejected || res.Reason != paynotify.ReasonMalformed {
			t.Fatalf("result = %+v", res)
		}
	})

	t.Run("Cap", func(t *testing.T) {
		p, b := setupProcessor(t)
		p.RejectedPerMinute = 2
		for range 5 {
			p.Process(context.Background(), callback(b.app), rejecting)
		}
		if n := len(b.evidence(t, paynotify.EvidenceFilter{})); n != 2 {
			t.Fatalf("%d rejected records stored, want the cap of 2", n)
		}
		// Reprocessing is an operator's request: always kept.
		cb := callback(b.app)
		cb.Source, cb.ReprocessedFrom = paynotify.SourceReprocess, "ntf_x"
		p.Process(context.Background(), cb, rejecting)
		ev := b.evidence(t, paynotify.EvidenceFilter{Source: paynotify.SourceReprocess})
		if len(ev) != 1 || ev[0].ReprocessedFrom != "ntf_x" {
			t.Fatalf("reprocess records = %+v", ev)
		}
	})

	t.Run("VerifyUnavailable", func(t *testing.T) {
		// A check the verification needs that could not be made (legacy notify_verify, the
		// APIv2 refund query): the record keeps its cause (the RejectError's detail; the error's
		// text was the reason alone), and anyone replaying a message while the check fails comes
		// under the same cap as rejected requests (reviewer helpers' findings).
		p, b := setupProcessor(t)
		p.RejectedPerMinute = 2
		unavailable := verifierFunc(func(http.Header, []byte, time.Time) (paynotify.Fact, error) {
			return paynotify.Fact{}, fmt.Errorf("%w: notify_verify for T1: %w", paynotify.ErrVerifyUnavailable,
				&paynotify.RejectError{Reason: paynotify.ReasonVerifyUnavailable, Detail: "notify_verify answered HTTP 500", OutTradeNo: "T1"})
		})
		for range 5 {
			if res := p.Process(context.Background(), callback(b.app), unavailable); res.Verdict != paynotify.VerdictError || res.OK {
				t.Fatalf("result = %+v, want an error answered as a failure", res)
			}
		}
		ev := b.evidence(t, paynotify.EvidenceFilter{})
		if len(ev) != 2 {
			t.Fatalf("%d records stored, want the cap of 2", len(ev))
		}
		if ev[0].Reason != paynotify.ReasonVerifyUnavailable || ev[0].Detail != "notify_verify answered HTTP 500" || ev[0].OutTradeNo != "T1" {
			t.Fatalf("record = %+v, want the cause as its detail", ev[0])
		}
	})

	t.Run("ByteCap", func(t *testing.T) {
		// Junk of 4,000 bytes a request (5,024 counted: the detail at its most, 1 KiB) against
		// 11,000 bytes a minute: two records, then only counted; the first of a minute is kept
		// whatever its size.
		p, b := setupProcessor(t)
		p.RejectedBytesPerMinute = 11000
		for range 5 {
			cb := callback(b.app)
			cb.Body = bytes.Repeat([]byte("x"), 4000)
			p.Process(context.Background(), cb, rejecting)
		}
		if n := len(b.evidence(t, paynotify.EvidenceFilter{})); n != 2 {
			t.Fatalf("%d rejected records of 4,000 bytes stored, want 2 within 11,000 bytes", n)
		}
		p, b = setupProcessor(t)
		p.RejectedBytesPerMinute = 1000
		cb := callback(b.app)
		cb.Body = bytes.Repeat([]byte("x"), 4000)
		p.Process(context.Background(), cb, rejecting)
		if n := len(b.evidence(t, paynotify.EvidenceFilter{})); n != 1 {
			t.Fatalf("%d records, want the first of the minute kept", n)
		}
	})
}

// TestProcess_RejectedDayBudget: past the day's byte budget no rejected request is stored, not
// even the first of a minute; the budget is the app's (another app's are kept) and comes back a
// day after the window began.
func TestProcess_RejectedDayBudget(t *testing.T) {
	p, b := setupProcessor(t)
	now := t0
	p.Now = func() time.Time { return now }
	// Records of 1,000 bytes of body, the detail at its most (1,024) and a few headers: three
	// fit in 7 KiB, four do not.
	p.RejectedBytesPerDay = 7 << 10
	rejecting := verifierFunc(func(http.Header, []byte, time.Time) (paynotify.Fact, error) {
		return paynotify.Fact{}, &paynotify.RejectError{Reason: paynotify.ReasonSignatureInvalid, Detail: "junk"}
	})
	send := func() {
		cb := callback(b.app)
		cb.Body = bytes.Repeat([]byte("x"), 1000)
		p.Process(context.Background(), cb, rejecting)
	}
	for range 6 { // one a minute: each the first of its minute
		send()
		now = now.Add(time.Minute)
	}
	if n := len(b.evidence(t, paynotify.EvidenceFilter{})); n != 3 {
		t.Fatalf("%d records stored within a day's budget of three, want 3", n)
	}
	now = t0.Add(24*time.Hour - time.Minute)
	send()
	if n := len(b.evidence(t, paynotify.EvidenceFilter{})); n != 3 {
		t.Fatalf("%d records before the day is over, want 3", n)
	}
	now = t0.Add(24 * time.Hour)
	send()
	if n := len(b.evidence(t, paynotify.EvidenceFilter{})); n != 4 {
		t.Fatalf("%d records once the day is over, want 4", n)
	}
}

// A rejection quoting a huge header or field (anyone can send one) is kept and logged cut short,
// its detail counts against the minute's byte budget, and past the cap rejected requests are
// counted, not logged: one line when the cap is reached, the count when the next minute starts.
func TestProcess_RejectedBounded(t *testing.T) {
	p, b := setupProcessor(t)
	var logs strings.Builder
	var mu sync.Mutex
	p.Logger = slog.New(slog.NewTextHandler(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(b)
	}), nil))
	now := t0
	p.Now = func() time.Time { return now }
	p.RejectedPerMinute = 2
	huge := strings.Repeat(`\xff`, 25_000) // a header value as a verifier quotes it (%q)
	rejecting := verifierFunc(func(http.Header, []byte, time.Time) (paynotify.Fact, error) {
		return paynotify.Fact{}, &paynotify.RejectError{Reason: paynotify.ReasonMalformed, Detail: "timestamp \"" + huge + "\" is not Unix seconds",
			OutTradeNo: strings.Repeat("T", 10_000)}
	})
	for range 5 {
		p.Process(context.Background(), callback(b.app), rejecting)
	}
	evs := b.evidence(t, paynotify.EvidenceFilter{})
	if len(evs) != 2 {
		t.Fatalf("%d records, want the cap of 2", len(evs))
	}
	for _, ev := range evs {
		if len(ev.Detail) > 1024 || !strings.HasSuffix(ev.Detail, "…") || len(ev.OutTradeNo) > 128 {
			t.Fatalf("a record's detail of %d bytes, out_trade_no of %d: want them cut short", len(ev.Detail), len(ev.OutTradeNo))
		}
	}
	mu.Lock()
	text := logs.String()
	mu.Unlock()
	if n := strings.Count(text, `msg="callback rejected`); n != 3 || len(text) > 16<<10 {
		t.Fatalf("%d lines of rejection, %d bytes of log for 5 rejections (2 kept, 3 over the cap): want 3 lines, cut short", n, len(text))
	}
	now = t0.Add(time.Minute)
	p.Process(context.Background(), callback(b.app), rejecting)
	mu.Lock()
	text = logs.String()
	mu.Unlock()
	if !strings.Contains(text, "dropped=3") {
		t.Fatalf("no count of the previous minute's dropped requests:\n%s", text[max(0, len(text)-2000):])
	}
	// The detail counts against the byte budget, at its most (1 KiB) whatever its length: a small
	// body, budget 1.5 KiB.
	p, b = setupProcessor(t)
	p.RejectedBytesPerMinute = 1500
	for range 3 {
		p.Process(context.Background(), callback(b.app), rejecting)
	}
	if n := len(b.evidence(t, paynotify.EvidenceFilter{})); n != 1 {
		t.Fatalf("%d records of about 1 KiB of detail each within 1,500 bytes, want 1", n)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func TestProcess_VerifyAt(t *testing.T) {
	p, b := setupProcessor(t)
	var got []time.Time
	v := verifierFunc(func(_ http.Header, _ []byte, at time.Time) (paynotify.Fact, error) {
		got = append(got, at)
		return paynotify.Fact{}, &paynotify.RejectError{Reason: paynotify.ReasonTimestampSkew}
	})
	p.Process(context.Background(), callback(b.app), v)
	cb := callback(b.app)
	cb.VerifyAt = t0.Add(-time.Hour)
	p.Process(context.Background(), cb, v)
	if len(got) != 2 || !got[0].IsZero() || !got[1].Equal(t0.Add(-time.Hour)) {
		t.Fatalf("verifier times = %v, want zero (its own clock) then the given time", got)
	}
}

func TestProcess_Anomalies(t *testing.T) {
	// detail: what disagreed, in the record (a WeChat Pay resource is encrypted: the console
	// could read neither side from the body; a reviewer helper's finding).
	tests := []struct {
		name   string
		fact   func(paynotify.Fact) paynotify.Fact
		reason string
		detail string
	}{
		{"ErrAppIDMismatch", func(f paynotify.Fact) paynotify.Fact { f.AppID = "2021999999999999"; return f }, paynotify.ReasonAppIDMismatch,
			`the message is for app id "2021999999999999"`},
		{"ErrMchIDMismatch", func(f paynotify.Fact) paynotify.Fact { f.MchID = "1900000999"; return f }, paynotify.ReasonAppIDMismatch,
			`mchid "1900000999"; the app's are`},
		{"ErrSellerMismatch", func(f paynotify.Fact) paynotify.Fact { f.SellerID = "2088999999999999"; return f }, paynotify.ReasonSellerMismatch,
			`the message's seller is "2088999999999999"`},
		{"ErrAmountMismatch", func(f paynotify.Fact) paynotify.Fact { f.Amount = 1001; return f }, paynotify.ReasonAmountMismatch,
			"the message states a total of 10.01, the order's is 10.00"},
		{"ErrCurrencyMismatch", func(f paynotify.Fact) paynotify.Fact { f.Currency = "USD"; return f }, paynotify.ReasonCurrencyMismatch,
			`the message states currency "USD", the order's is "CNY"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, b := setupProcessor(t)
			b.app.MchID = "1900000100" // so that a fact's mchid is checked too
			b.mustOrder(t, "T1")
			f := tt.fact(paidFact("T1", "P1"))
			for range 3 { // retries of the same message: one anomaly
				res := p.Process(context.Background(), callback(b.app), facts(f))
				if res.Verdict != paynotify.VerdictAnomaly || res.OK || res.Reason != tt.reason {
					t.Fatalf("result = %+v, want anomaly %s answered as a failure", res, tt.reason)
				}
			}
			if o := b.order(t, "T1"); o.Status != paynotify.StatusPending || o.Version != 1 {
				t.Fatalf("an anomaly changed the order: %+v", o)
			}
			if got := fmt.Sprint(b.events(t, "T1")); got != "[order.anomaly]" {
				t.Fatalf("events = %s, want one anomaly", got)
			}
			if len(b.changed) != 0 {
				t.Fatalf("OnChange called: %v", b.changed)
			}
			evs := b.evidence(t, paynotify.EvidenceFilter{Reason: tt.reason})
			if len(evs) == 0 || !strings.Contains(evs[0].Detail, tt.detail) {
				t.Fatalf("evidence %+v, want its detail to say %q", evs, tt.detail)
			}
		})
	}

	t.Run("ErrUnknownOrder", func(t *testing.T) {
		t.Parallel()
		p, b := setupProcessor(t)
		for range 2 {
			if res := p.Process(context.Background(), callback(b.app), facts(paidFact("NOPE", "P1"))); res.Reason != paynotify.ReasonUnknownOrder || res.OK {
				t.Fatalf("result = %+v", res)
			}
		}
		evs, err := b.store.ListEvents(context.Background(), paynotify.EventFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Type != paynotify.EventOrderAnomaly || evs[0].OutTradeNo != "NOPE" || evs[0].Version != 0 {
			t.Fatalf("events = %+v, want one orphan anomaly", evs)
		}
	})
}

// A second verified payment under another trade number is acknowledged and raises one
// duplicate_payment anomaly per trade number, whichever message reports it.
func TestProcess_DuplicatePayment(t *testing.T) {
	p, b := setupProcessor(t)
	b.mustOrder(t, "T1")
	p.Process(context.Background(), callback(b.app), facts(paidFact("T1", "P1")))
	for _, trade := range []string{"P2", "P2", "P3"} {
		res := p.Process(context.Background(), callback(b.app), facts(paidFact("T1", trade)))
		if res.Verdict != paynotify.VerdictAnomaly || !res.OK || res.Reason != paynotify.ReasonDuplicatePayment {
			t.Fatalf("%s: result = %+v, want an acknowledged duplicate_payment", trade, res)
		}
	}
	// The same trade reported by a query answer (other fields, no app id): still the same anomaly.
	q := paidFact("T1", "P2")
	q.AppID, q.SellerID, q.NotificationID = "", "", ""
	if _, err := p.Apply(context.Background(), b.app, q, nil); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(b.events(t, "T1")); got != "[order.paid order.anomaly order.anomaly]" {
		t.Fatalf("events = %s, want the payment and one anomaly per other trade", got)
	}
	if o := b.order(t, "T1"); o.ProviderTradeNo != "P1" || o.Version != 2 {
		t.Fatalf("order = %+v, want it as the first payment left it", o)
	}
}

// The merchant refunds the duplicate payment, as api.md says: the refund names the other trade
// number, and must not be booked against the order's own payment (which still stands).
func TestProcess_DuplicatePaymentRefund(t *testing.T) {
	p, b := setupProcessor(t)
	ctx := context.Background()
	b.mustOrder(t, "T1")
	p.Process(ctx, callback(b.app), facts(paidFact("T1", "P1")))
	p.Process(ctx, callback(b.app), facts(paidFact("T1", "P2")))
	full := paidFact("T1", "P2")
	full.Kind, full.RefundTotal = paynotify.FactRefund, 1000 // Alipay TRADE_CLOSED with refund_fee of trade P2
	perRequest := paidFact("T1", "P2")                       // WeChat REFUND.SUCCESS of transaction P2, out_refund_no of the portal
	perRequest.Kind, perRequest.RefundPerRequest, perRequest.RefundRequestNo, perRequest.RefundAmount = paynotify.FactRefund, true, "portal-1", 1000
	perRequest.HasAmount = false
	for i, f := range []paynotify.Fact{full, full, perRequest} {
		res := p.Process(ctx, callback(b.app), facts(f))
		if res.Verdict != paynotify.VerdictAnomaly || !res.OK || res.Reason != paynotify.ReasonDuplicatePaymentRefund {
			t.Fatalf("refund %d of P2: result = %+v, want an acknowledged duplicate_payment_refund", i, res)
		}
	}
	if got := fmt.Sprint(b.events(t, "T1")); got != "[order.paid order.anomaly order.anomaly order.anomaly]" {
		t.Fatalf("events = %s, want the payment, the duplicate payment, and one anomaly per distinct refund message", got)
	}
	if o := b.order(t, "T1"); o.Status != paynotify.StatusPaid || o.RefundedAmount != 0 || o.ProviderTradeNo != "P1" || o.Version != 2 {
		t.Fatalf("order = %+v, want it paid under P1 with nothing refunded", o)
	}
	if rs, err := b.store.ListRefunds(ctx, "shop", "T1"); err != nil || len(rs) != 0 {
		t.Fatalf("refunds = %v, %v; want none recorded", rs, err)
	}
	// A refund of the order's own trade is still booked.
	own := full
	own.ProviderTradeNo, own.RefundTotal = "P1", 400
	if res := p.Process(ctx, callback(b.app), facts(own)); res.Verdict != paynotify.VerdictAccepted || !res.OK {
		t.Fatalf("refund of P1: result = %+v, want accepted", res)
	}
	if o := b.order(t, "T1"); o.RefundedAmount != 400 {
		t.Fatalf("order = %+v, want 400 refunded", o)
	}
}

// The duplicate's notification was applied first, so the order recorded trade P2; our refund
// (asked for by out_trade_no) is made from P1. It is the anomaly, acknowledged; our refund record
// stays pending (settled, it would count against P2's payment in every later refund total), and
// the order does not move.
func TestProcess_OwnRefundFromTheOtherPayment(t *testing.T) {
	p, b := setupProcessor(t)
	ctx := context.Background()
	b.mustOrder(t, "T1")
	p.Process(ctx, callback(b.app), facts(paidFact("T1", "P2")))
	p.Process(ctx, callback(b.app), facts(paidFact("T1", "P1")))
	b.pendingRefund(t, "T1", "R1", 300)
	f := paidFact("T1", "P1")
	f.Kind, f.RefundPerRequest, f.RefundRequestNo, f.RefundAmount = paynotify.FactRefund, true, "R1", 300
	res, err := p.Apply(ctx, b.app, f, nil)
	if err != nil || res.Verdict != paynotify.VerdictAnomaly || !res.OK || res.Reason != paynotify.ReasonDuplicatePaymentRefund {
		t.Fatalf("result = %+v, %v; want an acknowledged duplicate_payment_refund", res, err)
	}
	rs, err := b.store.ListRefunds(ctx, "shop", "T1")
	if err != nil || len(rs) != 1 || rs[0].Status != paynotify.RefundPending {
		t.Fatalf("refunds = %+v, %v; want R1 still pending", rs, err)
	}
	// A refund of P2's payment is then booked in full (R1 does not count against it).
	g := paidFact("T1", "P2")
	g.Kind, g.RefundPerRequest, g.RefundRequestNo, g.RefundAmount = paynotify.FactRefund, true, "R2", 800
	if res, err := p.Apply(ctx, b.app, g, nil); err != nil || res.Verdict != paynotify.VerdictAccepted {
		t.Fatalf("refund of P2: %+v, %v", res, err)
	}
	if o := b.order(t, "T1"); o.Status != paynotify.StatusPaid || o.RefundedAmount != 800 || o.ProviderTradeNo != "P2" {
		t.Fatalf("order = %+v, want paid under P2 with 8.00 refunded", o)
	}
}

// An Alipay portal refund P is notified (cumulative refund_fee 7.50) while our refund Q (2.50),
// which Alipay had already made, is still pending with us: P's amount is inferred as 7.50 (truly
// 5.00). The refund query then confirms Q: adding Q to P's inferred amount would make 10.00 and
// mark the order refunded; the order stays at Alipay's 7.50, and Q is settled.
func TestProcess_RefundOverInferredAmount(t *testing.T) {
	p, b := setupProcessor(t)
	ctx := context.Background()
	b.mustOrder(t, "T1")
	p.Process(ctx, callback(b.app), facts(paidFact("T1", "P1")))
	b.pendingRefund(t, "T1", "Q", 250)
	portal := paidFact("T1", "P1") // TRADE_SUCCESS with refund_fee 7.50, out_biz_no PORTAL
	portal.Kind, portal.RefundTotal, portal.RefundRequestNo = paynotify.FactRefund, 750, "PORTAL"
	if res := p.Process(ctx, callback(b.app), facts(portal)); res.Verdict != paynotify.VerdictAccepted {
		t.Fatalf("portal refund: %+v", res)
	}
	confirm := paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", ProviderTradeNo: "P1", RefundPerRequest: true,
		RefundRequestNo: "Q", RefundAmount: 250} // the refund query's answer about Q
	if _, err := p.Apply(ctx, b.app, confirm, nil); err != nil {
		t.Fatal(err)
	}
	if o := b.order(t, "T1"); o.Status != paynotify.StatusPaid || o.RefundedAmount != 750 {
		t.Fatalf("order = %+v, want paid with 7.50 refunded (Alipay's total)", o)
	}
	rs, err := b.store.ListRefunds(ctx, "shop", "T1")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Status != paynotify.RefundSucceeded {
			t.Errorf("refund %s: %s, want succeeded", r.OutRequestNo, r.Status)
		}
	}
}

// TestProcess_RefundOverInferredAmount_ClockAhead: as above, with Q recorded by a process whose
// clock is ahead (another instance; an NTP step): Q's CreatedAt is later than the portal refund's
// though the portal refund was recorded after it. Which came first is the order they were
// recorded in, not their clocks: the portal's inferred 7.50 may hold Q's 2.50, and the order ends
// at Alipay's 7.50, not 10.00 announced as a full refund (a reviewer helper's finding).
func TestProcess_RefundOverInferredAmount_ClockAhead(t *testing.T) {
	p, b := setupProcessor(t)
	ctx := context.Background()
	b.mustOrder(t, "T1")
	p.Process(ctx, callback(b.app), facts(paidFact("T1", "P1")))
	ahead := time.Now().Add(time.Hour) // later than anything the Processor's clock stamps
	if _, _, err := b.store.CreateRefund(ctx, &paynotify.Refund{App: "shop", OutTradeNo: "T1", OutRequestNo: "Q", Amount: 250,
		Status: paynotify.RefundPending, CreatedAt: ahead, UpdatedAt: ahead}); err != nil {
		t.Fatal(err)
	}
	portal := paidFact("T1", "P1") // TRADE_SUCCESS with refund_fee 7.50 (Q's 2.50 in it), out_biz_no PORTAL
	portal.Kind, portal.RefundTotal, portal.RefundRequestNo = paynotify.FactRefund, 750, "PORTAL"
	if res := p.Process(ctx, callback(b.app), facts(portal)); res.Verdict != paynotify.VerdictAccepted {
		t.Fatalf("portal refund: %+v", res)
	}
	confirm := paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", ProviderTradeNo: "P1", RefundPerRequest: true,
		RefundRequestNo: "Q", RefundAmount: 250}
	if _, err := p.Apply(ctx, b.app, confirm, nil); err != nil {
		t.Fatal(err)
	}
	if o := b.order(t, "T1"); o.Status != paynotify.StatusPaid || o.RefundedAmount != 750 {
		t.Fatalf("order = %+v, want paid with 7.50 refunded (Alipay's total)", o)
	}
}

// The usual order: the portal refund P is notified (and inferred) before our refund Q is asked
// for; the query's confirmation of Q adds it to P.
func TestProcess_RefundAfterInferredAmount(t *testing.T) {
	p, b := setupProcessor(t)
	ctx := context.Background()
	b.mustOrder(t, "T1")
	p.Process(ctx, callback(b.app), facts(paidFact("T1", "P1")))
	portal := paidFact("T1", "P1")
	portal.Kind, portal.RefundTotal, portal.RefundRequestNo = paynotify.FactRefund, 500, "PORTAL"
	if res := p.Process(ctx, callback(b.app), facts(portal)); res.Verdict != paynotify.VerdictAccepted {
		t.Fatalf("portal refund: %+v", res)
	}
	later := time.Now().Add(time.Hour)
	if _, _, err := b.store.CreateRefund(ctx, &paynotify.Refund{App: "shop", OutTradeNo: "T1", OutRequestNo: "Q", Amount: 250,
		Status: paynotify.RefundPending, CreatedAt: later, UpdatedAt: later}); err != nil {
		t.Fatal(err)
	}
	confirm := paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", ProviderTradeNo: "P1", RefundPerRequest: true,
		RefundRequestNo: "Q", RefundAmount: 250}
	if _, err := p.Apply(ctx, b.app, confirm, nil); err != nil {
		t.Fatal(err)
	}
	if o := b.order(t, "T1"); o.RefundedAmount != 750 {
		t.Fatalf("order = %+v, want 7.50 refunded", o)
	}
}

func TestProcess_Ignored(t *testing.T) {
	p, b := setupProcessor(t)
	res := p.Process(context.Background(), callback(b.app), facts(paynotify.Fact{Kind: paynotify.FactIgnored, NotificationID: "n1"}))
	if res.Verdict != paynotify.VerdictAccepted || !res.OK {
		t.Fatalf("result = %+v", res)
	}
	evs, err := b.store.ListEvents(context.Background(), paynotify.EventFilter{})
	if err != nil || len(evs) != 0 {
		t.Fatalf("events = %v, %v", evs, err)
	}
}

func TestProcess_Refunds(t *testing.T) {
	ctx := context.Background()
	mkRefund := func(t *testing.T, b *procBundle, no string, amount paynotify.Amount, status paynotify.RefundStatus) {
		t.Helper()
		if _, _, err := b.store.CreateRefund(ctx, &paynotify.Refund{App: "shop", OutTradeNo: "T1", OutRequestNo: no, Amount: amount,
			Status: status, CreatedAt: t0, UpdatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	refundOf := func(t *testing.T, b *procBundle, no string) *paynotify.Refund {
		t.Helper()
		list, err := b.store.ListRefunds(ctx, "shop", "T1")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range list {
			if r.OutRequestNo == no {
				return r
			}
		}
		return nil
	}
	paid := func(t *testing.T) (*paynotify.Processor, *procBundle) {
		p, b := setupProcessor(t)
		b.mustOrder(t, "T1")
		p.Process(ctx, callback(b.app), facts(paidFact("T1", "P1")))
		return p, b
	}

	t.Run("TotalsGetTheirAmountFromOurRecord", func(t *testing.T) {
		p, b := paid(t)
		mkRefund(t, b, "R1", 300, paynotify.RefundPending)
		f := paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", ProviderTradeNo: "P1", RefundTotal: 300, RefundRequestNo: "R1", Amount: 1000, HasAmount: true}
		if res := p.Process(ctx, callback(b.app), facts(f)); res.Verdict != paynotify.VerdictAccepted {
			t.Fatalf("result = %+v", res)
		}
		if r := refundOf(t, b, "R1"); r.Status != paynotify.RefundSucceeded || r.Amount != 300 || r.NextCheckAt != nil {
			t.Fatalf("refund = %+v", r)
		}
		if o := b.order(t, "T1"); o.RefundedAmount != 300 || o.Status != paynotify.StatusPaid {
			t.Fatalf("order = %+v", o)
		}
	})

	t.Run("PerRequestSumsTheOthers", func(t *testing.T) {
		p, b := paid(t)
		mkRefund(t, b, "R1", 200, paynotify.RefundSucceeded)
		mkRefund(t, b, "R2", 300, paynotify.RefundPending)
		f := paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", RefundPerRequest: true, RefundRequestNo: "R2", RefundAmount: 300}
		p.Process(ctx, callback(b.app), facts(f))
		if o := b.order(t, "T1"); o.RefundedAmount != 500 {
			t.Fatalf("refunded = %d, want 200 + 300", o.RefundedAmount)
		}
	})

	t.Run("ErrAmountDisagreesWithOurRecord", func(t *testing.T) {
		p, b := paid(t)
		mkRefund(t, b, "R1", 300, paynotify.RefundPending)
		f := paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", RefundPerRequest: true, RefundRequestNo: "R1", RefundAmount: 400}
		if res := p.Process(ctx, callback(b.app), facts(f)); res.Reason != paynotify.ReasonAmountMismatch || res.OK {
			t.Fatalf("result = %+v", res)
		}
		if r := refundOf(t, b, "R1"); r.Status != paynotify.RefundPending {
			t.Fatalf("an anomaly settled the refund: %+v", r)
		}
	})

	t.Run("FailureBumpsTheVersionOnce", func(t *testing.T) {
		p, b := paid(t)
		mkRefund(t, b, "R1", 300, paynotify.RefundPending)
		f := paynotify.Fact{Kind: paynotify.FactRefundFailed, OutTradeNo: "T1", RefundPerRequest: true, RefundRequestNo: "R1", RefundAmount: 300}
		for range 3 {
			p.Process(ctx, callback(b.app), facts(f))
		}
		if r := refundOf(t, b, "R1"); r.Status != paynotify.RefundFailed {
			t.Fatalf("refund = %+v", r)
		}
		if o := b.order(t, "T1"); o.Version != 3 {
			t.Fatalf("version = %d, want 3 (paid, then the failure once)", o.Version)
		}
		if got := fmt.Sprint(b.events(t, "T1")); got != "[order.paid refund.failed]" {
			t.Fatalf("events = %s", got)
		}
		// A succeeded refund is booked whatever was said of it before (state_machine.md).
		f.Kind = paynotify.FactRefund
		if res := p.Process(ctx, callback(b.app), facts(f)); res.Verdict != paynotify.VerdictAccepted {
			t.Fatalf("success after the failure: %+v", res)
		}
		if r := refundOf(t, b, "R1"); r.Status != paynotify.RefundSucceeded {
			t.Fatalf("refund after its success = %+v", r)
		}
		if o := b.order(t, "T1"); o.RefundedAmount != 300 {
			t.Fatalf("order = %+v, want 3.00 refunded", o)
		}
		if got := fmt.Sprint(b.events(t, "T1")); got != "[order.paid refund.failed order.refunded]" {
			t.Fatalf("events = %s", got)
		}
	})

	// WeChat Pay's ABNORMAL: the money left the merchant, the buyer's account did not take it,
	// and the merchant platform settles it by hand. Booked as a failure, it freed its amount for
	// a second refund (a reviewer helper's finding); it is an acknowledged anomaly that leaves
	// the refund pending, holding its amount, until it succeeds.
	t.Run("AbnormalHoldsTheRefund", func(t *testing.T) {
		p, b := paid(t)
		mkRefund(t, b, "R1", 300, paynotify.RefundPending)
		before := b.order(t, "T1")
		f := paynotify.Fact{Kind: paynotify.FactRefundAbnormal, OutTradeNo: "T1", ProviderTradeNo: "P1", RefundPerRequest: true,
			RefundRequestNo: "R1", RefundAmount: 300}
		// The same ABNORMAL reported three ways: the notification names the merchant (mchid),
		// the refund query's answer does not, a later answer adds the time. One refund, one
		// anomaly (the key was the whole message: a reviewer helper's finding).
		for i, mch := range []string{"1900000001", "", ""} {
			g := f
			g.MchID = mch
			if i == 2 {
				g.At = t0.Add(time.Hour)
			}
			res := p.Process(ctx, callback(b.app), facts(g))
			if res.Verdict != paynotify.VerdictAnomaly || res.Reason != paynotify.ReasonRefundAbnormal || !res.OK {
				t.Fatalf("result = %+v, want the acknowledged refund_abnormal", res)
			}
			// The record names the refund (the message is encrypted).
			if res.Evidence == nil || res.Evidence.Detail != `refund "R1" of 3.00 is ABNORMAL at the provider` {
				t.Fatalf("evidence = %+v, want its detail to name the refund", res.Evidence)
			}
		}
		if r := refundOf(t, b, "R1"); r.Status != paynotify.RefundPending {
			t.Fatalf("refund = %+v, want it still pending", r)
		}
		if o := b.order(t, "T1"); o.Version != before.Version || o.RefundedAmount != 0 {
			t.Fatalf("order = %+v, want it unmoved", o)
		}
		if got := fmt.Sprint(b.events(t, "T1")); got != "[order.paid order.anomaly]" {
			t.Fatalf("events = %s, want one anomaly for the three messages", got)
		}
		// Its amount stays held: a refund of the rest passes, one more fen does not (ECONFLICT:
		// ask again once the pending one is settled).
		if _, _, err := b.store.CreateRefund(ctx, &paynotify.Refund{App: "shop", OutTradeNo: "T1", OutRequestNo: "R2", Amount: 701,
			Status: paynotify.RefundPending, CreatedAt: t0, UpdatedAt: t0}); paynotify.ErrorCode(err) != paynotify.ECONFLICT {
			t.Fatalf("a refund past what the abnormal one holds: %v, want it refused", err)
		}
		// Settled in the merchant platform: the success books it.
		f.Kind = paynotify.FactRefund
		if res := p.Process(ctx, callback(b.app), facts(f)); res.Verdict != paynotify.VerdictAccepted {
			t.Fatalf("success after ABNORMAL: %+v", res)
		}
		if r := refundOf(t, b, "R1"); r.Status != paynotify.RefundSucceeded {
			t.Fatalf("refund after its success = %+v", r)
		}
		// An ABNORMAL arriving after the success is stale: nothing, and no anomaly.
		f.Kind = paynotify.FactRefundAbnormal
		if res := p.Process(ctx, callback(b.app), facts(f)); res.Verdict != paynotify.VerdictDuplicate || !res.OK {
			t.Fatalf("stale ABNORMAL: %+v, want a duplicate", res)
		}
		if got := fmt.Sprint(b.events(t, "T1")); got != "[order.paid order.anomaly order.refunded]" {
			t.Fatalf("events = %s", got)
		}
	})

	t.Run("PortalRefundIsConfirmedLater", func(t *testing.T) {
		p, b := paid(t)
		f := paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", RefundTotal: 250, RefundRequestNo: "PORTAL1", Amount: 1000, HasAmount: true}
		p.Process(ctx, callback(b.app), facts(f))
		r := refundOf(t, b, "PORTAL1")
		if r == nil || r.Status != paynotify.RefundSucceeded || r.Amount != 250 {
			t.Fatalf("refund = %+v", r)
		}
		if r.NextCheckAt == nil || !r.NextCheckAt.Equal(t0.Add(time.Minute)) {
			t.Fatalf("next check = %v, want a confirmation at the first slot", r.NextCheckAt)
		}
		// Per-request facts carry their own amount: nothing to confirm.
		g := paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", RefundPerRequest: true, RefundRequestNo: "PORTAL2", RefundAmount: 100}
		p.Process(ctx, callback(b.app), facts(g))
		if r := refundOf(t, b, "PORTAL2"); r == nil || r.NextCheckAt != nil {
			t.Fatalf("refund = %+v, want no confirmation check", r)
		}
	})
}

// readCounter counts the orders read.
type readCounter struct {
	paynotify.Store
	n atomic.Int64
}

func (r *readCounter) GetOrder(ctx context.Context, app, outTradeNo string) (*paynotify.Order, error) {
	r.n.Add(1)
	return r.Store.GetOrder(ctx, app, outTradeNo)
}

// failingCommit fails every commit, as a full disk or a lost database would.
type failingCommit struct{ paynotify.Store }

func (failingCommit) Commit(context.Context, *paynotify.Change) (bool, error) {
	return false, errors.New("disk on fire")
}

func TestProcess_ErrStore(t *testing.T) {
	p, b := setupProcessor(t)
	b.mustOrder(t, "T1")
	p.Store = failingCommit{b.store}
	res := p.Process(context.Background(), callback(b.app), facts(paidFact("T1", "P1")))
	if res.Verdict != paynotify.VerdictError || res.OK || res.Reason != paynotify.ReasonStoreError {
		t.Fatalf("result = %+v", res)
	}
	ev := b.evidence(t, paynotify.EvidenceFilter{Verdict: paynotify.VerdictError})
	if len(ev) != 1 || ev[0].Answer != "fail" || ev[0].OutTradeNo != "T1" {
		t.Fatalf("evidence = %+v", ev)
	}
	if o := b.order(t, "T1"); o.Status != paynotify.StatusPending {
		t.Fatalf("order = %+v", o)
	}
	// Apply (a query answer) reports the error and keeps its evidence as an error too.
	ev2 := p.NewEvidence(b.app, paynotify.SourceQuery, "alipay.trade.query", t0, nil, []byte("{}"))
	if _, err := p.Apply(context.Background(), b.app, paidFact("T1", "P1"), ev2); err == nil {
		t.Fatal("Apply on a failing store returned no error")
	}
	if got := b.evidence(t, paynotify.EvidenceFilter{Source: paynotify.SourceQuery}); len(got) != 1 || got[0].Verdict != paynotify.VerdictError {
		t.Fatalf("query evidence = %+v", got)
	}
}

// conflictOnce is a store whose first Commit of a change is a version conflict.
type conflictOnce struct {
	paynotify.Store
	done *bool
}

func (c conflictOnce) Commit(ctx context.Context, ch *paynotify.Change) (bool, error) {
	if !*c.done {
		*c.done = true
		return false, paynotify.ErrVersionConflict
	}
	return c.Store.Commit(ctx, ch)
}

// TestProcess_AnomalyDetailOnce: the decision runs again after a version conflict, on the same
// record: what disagreed is said once, not once per attempt (a reviewer helper's finding).
func TestProcess_AnomalyDetailOnce(t *testing.T) {
	p, b := setupProcessor(t)
	b.mustOrder(t, "T1")
	done := false
	p.Store = conflictOnce{b.store, &done}
	f := paidFact("T1", "P1")
	f.Amount = 1001
	if res := p.Process(context.Background(), callback(b.app), facts(f)); res.Reason != paynotify.ReasonAmountMismatch || !done {
		t.Fatalf("result = %+v (conflict met: %t)", res, done)
	}
	evs := b.evidence(t, paynotify.EvidenceFilter{Reason: paynotify.ReasonAmountMismatch})
	if len(evs) != 1 || strings.Count(evs[0].Detail, "the message states a total") != 1 {
		t.Fatalf("evidence %+v, want what disagreed said once", evs)
	}
}

// unhealthyStore is a store whose writes are failing now (paynotify.WriteHealther).
type unhealthyStore struct{ paynotify.Store }

func (unhealthyStore) WriteHealth() error {
	return errors.New("sqlite: the last write batch failed 6s ago: database is locked (5) (SQLITE_BUSY)")
}

// TestProcess_ClientGone: a provider that hung up before its change reached the writer is an
// error of reason client_gone, kept as evidence, the order untouched; not store_error (a reviewer
// helper's finding: an alert on store_error fired for providers' timeouts).
func TestProcess_ClientGone(t *testing.T) {
	p, b := setupProcessor(t)
	b.mustOrder(t, "T1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := p.Process(ctx, callback(b.app), facts(paidFact("T1", "P1")))
	if res.Verdict != paynotify.VerdictError || res.OK || res.Reason != paynotify.ReasonClientGone {
		t.Fatalf("result = %+v, want error client_gone", res)
	}
	ev := b.evidence(t, paynotify.EvidenceFilter{Verdict: paynotify.VerdictError})
	if len(ev) != 1 || ev[0].Reason != paynotify.ReasonClientGone || ev[0].Answer != "fail" {
		t.Fatalf("evidence = %+v", ev)
	}
	if o := b.order(t, "T1"); o.Status != paynotify.StatusPending {
		t.Fatalf("order = %+v", o)
	}
	// A store that says its writes are failing now (another process holding SQLite's write
	// lock): the provider hung up because of it, and that is store_error, its cause in the
	// evidence (a reviewer helper's finding: it read as the provider's impatience).
	p.Store = unhealthyStore{b.store}
	if res := p.Process(ctx, callback(b.app), facts(paidFact("T1", "P1"))); res.Reason != paynotify.ReasonStoreError {
		t.Fatalf("a store whose writes fail, the provider gone: %+v, want store_error", res)
	}
	got := b.evidence(t, paynotify.EvidenceFilter{Reason: paynotify.ReasonStoreError})
	if len(got) != 1 || !strings.Contains(got[0].Detail, "database is locked") {
		t.Fatalf("evidence = %+v, want the store's cause in its detail", got)
	}
	// A store that fails while the request is still there is store_error.
	p.Store = failingCommit{b.store}
	if res := p.Process(context.Background(), callback(b.app), facts(paidFact("T1", "P1"))); res.Reason != paynotify.ReasonStoreError {
		t.Fatalf("a failing store: %+v", res)
	}
}

// 50 identical notifications at once: one change, one event, the rest duplicates.
func TestProcess_Concurrent(t *testing.T) {
	p, b := setupProcessor(t)
	b.mustOrder(t, "T1")
	var wg sync.WaitGroup
	verdicts := make(chan paynotify.Verdict, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			verdicts <- p.Process(context.Background(), callback(b.app), facts(paidFact("T1", "P1"))).Verdict
		}()
	}
	wg.Wait()
	close(verdicts)
	count := map[paynotify.Verdict]int{}
	for v := range verdicts {
		count[v]++
	}
	if count[paynotify.VerdictAccepted] != 1 || count[paynotify.VerdictDuplicate] != 49 {
		t.Fatalf("verdicts = %v, want 1 accepted and 49 duplicates", count)
	}
	if got := fmt.Sprint(b.events(t, "T1")); got != "[order.paid]" {
		t.Fatalf("events = %s", got)
	}
}

func TestApply_QueryEvidence(t *testing.T) {
	p, b := setupProcessor(t)
	b.mustOrder(t, "T1")
	ev := p.NewEvidence(b.app, paynotify.SourceQuery, "alipay.trade.query", t0, http.Header{"X": {"1"}}, []byte(`{"signed":"answer"}`))
	f := paidFact("T1", "P1")
	f.AppID, f.SellerID = "", "" // a query answer carries neither
	res, err := p.Apply(context.Background(), b.app, f, ev)
	if err != nil || res.Verdict != paynotify.VerdictAccepted {
		t.Fatalf("Apply = %+v, %v", res, err)
	}
	got := b.evidence(t, paynotify.EvidenceFilter{Source: paynotify.SourceQuery})
	if len(got) != 1 || got[0].Verdict != paynotify.VerdictAccepted || got[0].Endpoint != "alipay.trade.query" || got[0].OutTradeNo != "T1" ||
		string(got[0].Body) != `{"signed":"answer"}` || got[0].OrderVersion != 2 {
		t.Fatalf("evidence = %+v", got)
	}
}

// Byte-identical duplicates are counted on the first duplicate's record; anything that differs
// (a header, the body, the order's version) or a new Processor (a restart) gets a record of its
// own.
func TestProcess_RepeatedDuplicates(t *testing.T) {
	// Both paths: the order read then Commit (PostgreSQL's), and decided in the writer
	// (SQLite's, OrderCommitter).
	t.Run("ReadThenCommit", func(t *testing.T) { testRepeatedDuplicates(t, false) })
	t.Run("InTheWriter", func(t *testing.T) { testRepeatedDuplicates(t, true) })
}

func testRepeatedDuplicates(t *testing.T, inWriter bool) {
	p, b := setupProcessor(t)
	b.mustOrder(t, "T1")
	ctx := context.Background()
	reads := &readCounter{Store: b.store}
	p.Store = reads
	// decisions counts the requests decided in full: an order read each on the first path, a
	// CommitOrder each on the second.
	decisions := reads.n.Load
	if inWriter {
		w := &writerCounter{readCounter: readCounter{Store: b.store}, oc: b.store}
		p.Store, reads, decisions = w, &w.readCounter, w.commits.Load
		t.Cleanup(func() {
			if n := w.n.Load(); n != 0 {
				t.Errorf("%d order reads in the writer's path, want none", n)
			}
		})
	}
	send := func(p *paynotify.Processor, at time.Time, edit func(cb *paynotify.Callback)) *paynotify.Result {
		t.Helper()
		cb := callback(b.app)
		cb.ReceivedAt = at
		if edit != nil {
			edit(cb)
		}
		return p.Process(ctx, cb, facts(paidFact("T1", "P1")))
	}
	if res := send(p, t0, nil); res.Verdict != paynotify.VerdictAccepted {
		t.Fatalf("first delivery: %+v", res)
	}
	var ids []string
	for i := 1; i <= 3; i++ {
		res := send(p, t0.Add(time.Duration(i)*time.Second), nil)
		if res.Verdict != paynotify.VerdictDuplicate || !res.OK {
			t.Fatalf("duplicate %d: %+v", i, res)
		}
		ids = append(ids, res.Evidence.ID)
	}
	if ids[1] != ids[0] || ids[2] != ids[0] {
		t.Errorf("the repeats' evidence ids %q, want all the first duplicate's", ids)
	}
	if n := decisions(); n != 2 {
		t.Errorf("%d decided in full, want 2 (the first delivery and the first duplicate; a repeat is counted without a decision)", n)
	}
	dups := b.evidence(t, paynotify.EvidenceFilter{Verdict: paynotify.VerdictDuplicate})
	if len(dups) != 1 || dups[0].ID != ids[0] || dups[0].Repeats != 2 || !dups[0].ReceivedAt.Equal(t0.Add(time.Second)) ||
		!dups[0].LastReceivedAt.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("duplicate records = %+v, want one received at +1s with 2 repeats, the last at +3s", dups)
	}

	// What differs is recorded apart.
	send(p, t0.Add(4*time.Second), func(cb *paynotify.Callback) { cb.Header.Set("X-Forwarded-For", "203.0.113.9") })
	send(p, t0.Add(5*time.Second), func(cb *paynotify.Callback) { cb.Body = []byte("body ") })
	p2 := &paynotify.Processor{Store: b.store, Logger: quiet, Now: func() time.Time { return t0 }}
	send(p2, t0.Add(6*time.Second), nil)
	// The order moves on (a refund confirmed elsewhere bumps its version): the same bytes meet
	// another order version, a record of their own.
	o := b.order(t, "T1")
	next := *o
	next.Version++
	if _, err := b.store.Commit(ctx, &paynotify.Change{Order: &next, PrevVersion: o.Version}); err != nil {
		t.Fatal(err)
	}
	send(p, t0.Add(7*time.Second), nil)
	dups = b.evidence(t, paynotify.EvidenceFilter{Verdict: paynotify.VerdictDuplicate})
	if len(dups) != 5 || dups[0].OrderVersion != next.Version {
		t.Fatalf("%d duplicate records, the newest of version %d; want 5 (the repeated one, another header, another body, another Processor, another order version), the newest of %d",
			len(dups), dups[0].OrderVersion, next.Version)
	}
	for _, e := range dups[:4] {
		if e.Repeats != 0 {
			t.Errorf("record %s of a different request: repeats %d", e.ID, e.Repeats)
		}
	}

	// A body as long as the evidence cap or longer (its record keeps only its start) is never
	// counted as a repeat: every copy is decided in full and kept.
	big := func(cb *paynotify.Callback) { cb.Body = bytes.Repeat([]byte("x"), paynotify.MaxEvidenceBody+10) }
	before := len(b.evidence(t, paynotify.EvidenceFilter{Verdict: paynotify.VerdictDuplicate}))
	decidedBefore := decisions()
	for i := range 3 {
		send(p, t0.Add(time.Duration(20+i)*time.Second), big)
	}
	if got := len(b.evidence(t, paynotify.EvidenceFilter{Verdict: paynotify.VerdictDuplicate})); got != before+3 {
		t.Errorf("three duplicates with a body over the cap: %d new records, want 3", got-before)
	}
	if n := decisions() - decidedBefore; n != 3 {
		t.Errorf("three duplicates with a body over the cap: %d decided in full, want 3", n)
	}

	// A repeat whose commit fails is kept as an error record of its own; the count stays.
	last := dups[0]
	p.Store = failingCommit{p.Store}
	if res := send(p, t0.Add(8*time.Second), nil); res.Verdict != paynotify.VerdictError || res.Evidence.ID == last.ID {
		t.Fatalf("repeat on a failing store: verdict %s, evidence %s (the repeated record is %s)", res.Verdict, res.Evidence.ID, last.ID)
	}
	if errs := b.evidence(t, paynotify.EvidenceFilter{Verdict: paynotify.VerdictError}); len(errs) != 1 {
		t.Errorf("%d error records, want 1", len(errs))
	}
	if e, err := b.store.GetEvidence(ctx, last.ID); err != nil || e.Repeats != 0 {
		t.Errorf("the repeated record after a failed repeat: %+v, %v; want no repeats", e, err)
	}
	if e, err := b.store.GetEvidence(ctx, ids[0]); err != nil || e.Repeats != 2 {
		t.Errorf("the first duplicate record: %+v, %v; want 2 repeats", e, err)
	}
}

// writerCounter is readCounter over a store that decides in its writer (OrderCommitter),
// counting CommitOrder calls too. fail, when set, is what CommitOrder answers without running
// build; failAfter, when set, runs build and then fails the write with failAfter's answer
// (an error, or a panic inside the writer when it panics).
type writerCounter struct {
	readCounter
	oc        paynotify.OrderCommitter
	commits   atomic.Int64
	fail      error
	failAfter func() error
}

func (w *writerCounter) CommitOrder(ctx context.Context, app, outTradeNo string, ev *paynotify.Evidence,
	build func(*paynotify.Order) (*paynotify.Change, error)) (bool, error) {
	w.commits.Add(1)
	if w.fail != nil {
		return false, w.fail
	}
	if after := w.failAfter; after != nil {
		return w.oc.CommitOrder(ctx, app, outTradeNo, ev, func(o *paynotify.Order) (*paynotify.Change, error) {
			c, err := build(o)
			if err != nil {
				return nil, err
			}
			return c, after()
		})
	}
	return w.oc.CommitOrder(ctx, app, outTradeNo, ev, build)
}

// TestProcess_DecidedInWriter: on a store that is an OrderCommitter, a payment and its
// duplicates are read and decided inside the store's write (no GetOrder), a repeat is still
// counted on its record without a decision, a refund fact that needs the order's refunds is
// read first as before, and a failed CommitOrder answers as a failed commit does.
func TestProcess_DecidedInWriter(t *testing.T) {
	p, b := setupProcessor(t)
	b.mustOrder(t, "T1")
	ctx := context.Background()
	w := &writerCounter{readCounter: readCounter{Store: b.store}, oc: b.store}
	p.Store = w
	send := func(at time.Time, f paynotify.Fact) *paynotify.Result {
		cb := callback(b.app)
		cb.ReceivedAt = at
		return p.Process(ctx, cb, facts(f))
	}
	if res := send(t0, paidFact("T1", "P1")); res.Verdict != paynotify.VerdictAccepted || !res.OK || res.Order.Status != paynotify.StatusPaid {
		t.Fatalf("payment: %+v", res)
	}
	for i := 1; i <= 3; i++ {
		if res := send(t0.Add(time.Duration(i)*time.Second), paidFact("T1", "P1")); res.Verdict != paynotify.VerdictDuplicate || !res.OK {
			t.Fatalf("duplicate %d: %+v", i, res)
		}
	}
	if r, c := w.n.Load(), w.commits.Load(); r != 0 || c != 2 {
		t.Errorf("%d order reads and %d CommitOrder calls, want 0 and 2 (the payment and the first duplicate; the repeats are counted on its record)", r, c)
	}
	dups := b.evidence(t, paynotify.EvidenceFilter{Verdict: paynotify.VerdictDuplicate})
	if len(dups) != 1 || dups[0].Repeats != 2 || dups[0].Answer != "success" {
		t.Fatalf("duplicate records = %+v, want one with 2 repeats", dups)
	}
	acc := b.evidence(t, paynotify.EvidenceFilter{Verdict: paynotify.VerdictAccepted})
	if len(acc) != 1 || acc[0].Answer != "success" || acc[0].OrderVersion != 2 || acc[0].Headers.Get("Content-Type") != "text/plain" {
		t.Fatalf("accepted records = %+v", acc)
	}
	if got := fmt.Sprint(b.events(t, "T1")); got != "[order.paid]" {
		t.Fatalf("events = %s", got)
	}
	if fmt.Sprint(b.changed) != "[T1]" {
		t.Fatalf("OnChange calls: %v", b.changed)
	}

	// A refund fact that reads the order's refunds: loaded first, committed with Commit.
	b.pendingRefund(t, "T1", "R1", 300)
	f := paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", ProviderTradeNo: "P1", RefundTotal: 300, RefundRequestNo: "R1", Amount: 1000, HasAmount: true}
	if res := send(t0.Add(time.Minute), f); res.Verdict != paynotify.VerdictAccepted {
		t.Fatalf("refund: %+v", res)
	}
	if r, c := w.n.Load(), w.commits.Load(); r != 1 || c != 2 {
		t.Errorf("after the refund: %d order reads and %d CommitOrder calls, want 1 and 2", r, c)
	}
	if o := b.order(t, "T1"); o.RefundedAmount != 300 {
		t.Fatalf("order after the refund: %+v", o)
	}

	// A failed CommitOrder: an error answered "fail", kept as an error record, the order unchanged.
	b.mustOrder(t, "T2")
	w.fail = errors.New("disk on fire")
	if res := send(t0.Add(2*time.Minute), paidFact("T2", "P2")); res.Verdict != paynotify.VerdictError || res.OK || res.Reason != paynotify.ReasonStoreError {
		t.Fatalf("failed CommitOrder: %+v", res)
	}
	errs := b.evidence(t, paynotify.EvidenceFilter{Verdict: paynotify.VerdictError})
	if len(errs) != 1 || errs[0].Answer != "fail" || errs[0].OutTradeNo != "T2" || !strings.Contains(errs[0].Detail, "disk on fire") {
		t.Fatalf("error records = %+v", errs)
	}
	if o := b.order(t, "T2"); o.Status != paynotify.StatusPending {
		t.Fatalf("T2 = %+v", o)
	}
	w.fail = nil

	// Failures after build ran, its decision made and ev filled in: an error returned by the
	// write, and a panic inside the writer. Each is answered "fail", kept as an error record of
	// its own, and leaves the order as it was.
	for i, after := range []func() error{
		func() error { return errors.New("failed after the decision") },
		func() error { panic("panicked after the decision") },
	} {
		w.failAfter = after
		at := t0.Add(time.Duration(3+i) * time.Minute)
		res := send(at, paidFact("T2", "P2"))
		if res.Verdict != paynotify.VerdictError || res.OK || res.Reason != paynotify.ReasonStoreError || res.Evidence.Answer != "fail" {
			t.Fatalf("failure %d after build: %+v", i, res)
		}
		if o := b.order(t, "T2"); o.Status != paynotify.StatusPending || o.Version != 1 {
			t.Fatalf("T2 after failure %d: %+v", i, o)
		}
		got, err := b.store.GetEvidence(ctx, res.Evidence.ID)
		if err != nil || got.Verdict != paynotify.VerdictError || !got.ReceivedAt.Equal(at) {
			t.Fatalf("failure %d: its record %+v, %v", i, got, err)
		}
	}
	if errs := b.evidence(t, paynotify.EvidenceFilter{Verdict: paynotify.VerdictError}); len(errs) != 3 ||
		!strings.Contains(errs[0].Detail, "panicked") || !strings.Contains(errs[1].Detail, "failed after the decision") {
		t.Fatalf("error records = %+v", errs)
	}

	// A duplicate that build counts on a remembered record (Change.Repeat, ev.ID set to that
	// record's), whose write then fails: its error record keeps an id of its own, never the
	// remembered one. The remembered record is gone (as after a prune), so the counting without
	// a decision misses and the request is decided in full, in the writer.
	w.failAfter = nil
	b.mustOrder(t, "T3")
	if res := send(t0.Add(9*time.Minute), paidFact("T3", "P3")); res.Verdict != paynotify.VerdictAccepted {
		t.Fatalf("T3 payment: %+v", res)
	}
	first := send(t0.Add(9*time.Minute+time.Second), paidFact("T3", "P3"))
	if first.Verdict != paynotify.VerdictDuplicate {
		t.Fatalf("T3 duplicate: %+v", first)
	}
	remembered := first.Evidence.ID
	if _, err := b.store.SQL().ExecContext(ctx, `DELETE FROM evidence WHERE id = ?`, remembered); err != nil {
		t.Fatal(err)
	}
	w.failAfter = func() error { return errors.New("failed after counting") }
	res := send(t0.Add(10*time.Minute), paidFact("T3", "P3"))
	if res.Verdict != paynotify.VerdictError || res.Evidence.ID == remembered {
		t.Fatalf("failed repeat: %+v, id %s (the remembered record was %s)", res, res.Evidence.ID, remembered)
	}
	if _, err := b.store.GetEvidence(ctx, remembered); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
		t.Fatalf("the remembered record's id after a failed repeat: %v, want not found", err)
	}
	if got, err := b.store.GetEvidence(ctx, res.Evidence.ID); err != nil || got.Verdict != paynotify.VerdictError {
		t.Fatalf("the failed repeat's own record: %+v, %v", got, err)
	}
	// Without the failure the same request takes the remembered id back (the record is gone:
	// this one takes its place, Change.Repeat), decided in the writer.
	w.failAfter = nil
	before := w.commits.Load()
	if res := send(t0.Add(11*time.Minute), paidFact("T3", "P3")); res.Verdict != paynotify.VerdictDuplicate || res.Evidence.ID != remembered {
		t.Fatalf("repeat after the failure: %+v, id %s, want a duplicate on %s", res, res.Evidence.ID, remembered)
	}
	if n := w.commits.Load() - before; n != 1 {
		t.Fatalf("repeat after the failure: %d CommitOrder calls, want 1", n)
	}
}

// Alipay answers and notifications carry the trade's running total: R2's (7.00) applied before
// R1's (3.00) moves the order to 7.00, and R1's then moves nothing; R1 is announced all the same
// (order.refunded with its own out_request_no and amount), as every confirmed refund is, so that a
// merchant settling refunds by their number settles both.
func TestProcess_RefundsOutOfOrderEachAnnounced(t *testing.T) {
	p, b := setupProcessor(t)
	ctx := context.Background()
	b.mustOrder(t, "T1")
	p.Process(ctx, callback(b.app), facts(paidFact("T1", "P1")))
	for _, r := range []struct {
		no     string
		amount paynotify.Amount
	}{{"R1", 300}, {"R2", 400}} {
		b.pendingRefund(t, "T1", r.no, r.amount)
	}
	for _, r := range []struct {
		no    string
		total paynotify.Amount
	}{{"R2", 700}, {"R1", 300}} {
		f := paidFact("T1", "P1")
		f.Kind, f.RefundTotal, f.RefundRequestNo = paynotify.FactRefund, r.total, r.no
		if res, err := p.Apply(ctx, b.app, f, nil); err != nil || res.Verdict != paynotify.VerdictAccepted {
			t.Fatalf("%s: %+v, %v", r.no, res, err)
		}
	}
	if o := b.order(t, "T1"); o.RefundedAmount != 700 || o.Status != paynotify.StatusPaid {
		t.Fatalf("order %+v, want paid with 7.00 refunded", o)
	}
	evs, err := b.store.ListEvents(ctx, paynotify.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range evs {
		if e.Type != paynotify.EventOrderRefunded {
			continue
		}
		var d struct {
			Refund struct {
				OutRequestNo  string `json:"out_request_no"`
				Amount        any    `json:"amount"`
				RefundedTotal any    `json:"refunded_total"`
			} `json:"refund"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		got[d.Refund.OutRequestNo] = fmt.Sprint(d.Refund.Amount, " of ", d.Refund.RefundedTotal)
	}
	if len(got) != 2 || got["R1"] == "" || got["R2"] == "" {
		t.Fatalf("order.refunded announced %v, want R1 and R2", got)
	}
	rs, err := b.store.ListRefunds(ctx, "shop", "T1")
	if err != nil || len(rs) != 2 || rs[0].Status != paynotify.RefundSucceeded || rs[1].Status != paynotify.RefundSucceeded {
		t.Fatalf("refunds %+v, %v: want both succeeded", rs, err)
	}
}

// Our refund R1 (3.00) pending; a portal refund PX (4.00) made after it is notified first with
// Alipay's running total 7.00, so PX is inferred as 7.00 (it holds R1). R1's own notification
// (total 3.00) then settles R1 without a second announcement: PX's 7.00 already said it, and the
// announced amounts add up to the order's total.
func TestProcess_RefundHeldByAnInferredAmountNotAnnouncedTwice(t *testing.T) {
	p, b := setupProcessor(t)
	ctx := context.Background()
	b.mustOrder(t, "T1")
	p.Process(ctx, callback(b.app), facts(paidFact("T1", "P1")))
	b.pendingRefund(t, "T1", "R1", 300)
	p.Now = func() time.Time { return t0.Add(time.Minute) }
	for _, r := range []struct {
		no    string
		total paynotify.Amount
	}{{"PX", 700}, {"R1", 300}} {
		f := paidFact("T1", "P1")
		f.Kind, f.RefundTotal, f.RefundRequestNo = paynotify.FactRefund, r.total, r.no
		if _, err := p.Apply(ctx, b.app, f, nil); err != nil {
			t.Fatalf("%s: %v", r.no, err)
		}
	}
	evs, err := b.store.ListEvents(ctx, paynotify.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, e := range evs {
		if e.Type != paynotify.EventOrderRefunded {
			continue
		}
		var d struct {
			Refund struct {
				Amount int64 `json:"amount"` // fen
			} `json:"refund"`
		}
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		sum += d.Refund.Amount
	}
	if o := b.order(t, "T1"); int64(o.RefundedAmount) != sum || o.RefundedAmount != 700 {
		t.Fatalf("order refunded %d, the announced amounts add up to %d", o.RefundedAmount, sum)
	}
}

// TestProcess_PerRequestRefundAnomalyOnce (from a reviewer helper's audit): a WeChat refund
// message that raises an anomaly, delivered again after another refund of the order succeeded,
// raises no second order.anomaly: its key is what the message said (the refund's own amount),
// not the order's total that load derives from the other refunds, which that success moved.
func TestProcess_PerRequestRefundAnomalyOnce(t *testing.T) {
	ctx := context.Background()
	p, b := setupProcessor(t)
	b.app = &paynotify.App{Name: "shop", Provider: paynotify.ProviderWechatpay}
	wx := func(otn, tradeNo string, amount paynotify.Amount, no string) paynotify.Fact {
		return paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: otn, ProviderTradeNo: tradeNo, Amount: 1000, HasAmount: true,
			RefundPerRequest: true, RefundRequestNo: no, RefundAmount: amount, ProviderRefundNo: "W" + no}
	}
	apply := func(f paynotify.Fact, want string) {
		t.Helper()
		res, err := p.Apply(ctx, b.app, f, nil)
		if err != nil || res.Reason != want {
			t.Fatalf("%s %s: %+v, %v; want reason %q", f.OutTradeNo, f.RefundRequestNo, res, err, want)
		}
	}
	anomalies := func(otn string) int {
		t.Helper()
		n := 0
		for _, e := range b.events(t, otn) {
			if e == string(paynotify.EventOrderAnomaly) {
				n++
			}
		}
		return n
	}
	for _, otn := range []string{"T1", "T2"} {
		b.mustOrder(t, otn)
		apply(paynotify.Fact{Kind: paynotify.FactPaid, OutTradeNo: otn, ProviderTradeNo: "P1" + otn, Amount: 1000, HasAmount: true}, "")
	}
	// T1: the refund of another payment of the order (a duplicate trade), then one of ours; the
	// first again, as a notification names it (with the mchid) where the query's answer did not.
	apply(wx("T1", "P2T1", 300, "X1"), paynotify.ReasonDuplicatePaymentRefund)
	apply(wx("T1", "P1T1", 200, "R1"), "")
	apply(wx("T1", "P2T1", 300, "X1"), paynotify.ReasonDuplicatePaymentRefund)
	withMch := wx("T1", "P2T1", 300, "X1")
	withMch.MchID = "1900000001"
	apply(withMch, paynotify.ReasonDuplicatePaymentRefund)
	// T2: our refund R1 of 3.00 reported as 4.00 (answered fail: retried), another one meanwhile.
	b.pendingRefund(t, "T2", "R1", 300)
	apply(wx("T2", "P1T2", 400, "R1"), paynotify.ReasonAmountMismatch)
	apply(wx("T2", "P1T2", 200, "R2"), "")
	apply(wx("T2", "P1T2", 400, "R1"), paynotify.ReasonAmountMismatch)
	if a1, a2 := anomalies("T1"), anomalies("T2"); a1 != 1 || a2 != 1 {
		t.Fatalf("order.anomaly events: %d on T1, %d on T2; want one each (%v, %v)", a1, a2, b.events(t, "T1"), b.events(t, "T2"))
	}
}

// TestProcess_LocalCloseLosesTheRace (from a reviewer helper's audit): a close of our own (the
// provider's trade does not exist, or it has no close service) applied after a payment won the
// race changes nothing and raises no anomaly, where a close the provider reports on a paid order
// is unexpected_close.
func TestProcess_LocalCloseLosesTheRace(t *testing.T) {
	ctx := context.Background()
	p, b := setupProcessor(t)
	for _, otn := range []string{"T1", "T2"} {
		b.mustOrder(t, otn)
		if _, err := p.Apply(ctx, b.app, paynotify.Fact{Kind: paynotify.FactPaid, OutTradeNo: otn, ProviderTradeNo: "P" + otn, Amount: 1000,
			HasAmount: true}, nil); err != nil {
			t.Fatal(err)
		}
	}
	res, err := p.Apply(ctx, b.app, paynotify.Fact{Kind: paynotify.FactClosed, OutTradeNo: "T1", Local: true}, nil)
	if err != nil || res.Verdict != paynotify.VerdictDuplicate || res.Order.Status != paynotify.StatusPaid {
		t.Fatalf("local close of a paid order: %+v, %v", res, err)
	}
	res, err = p.Apply(ctx, b.app, paynotify.Fact{Kind: paynotify.FactClosed, OutTradeNo: "T2"}, nil)
	if err != nil || res.Reason != paynotify.ReasonUnexpectedClose {
		t.Fatalf("the provider's close of a paid order: %+v, %v", res, err)
	}
	if e1, e2 := b.events(t, "T1"), b.events(t, "T2"); len(e1) != 1 || len(e2) != 2 || e2[1] != string(paynotify.EventOrderAnomaly) {
		t.Fatalf("events: T1 %v (want the payment only), T2 %v (want the payment and the anomaly)", e1, e2)
	}
}

// onceGatedStore holds the first Commit that carries an anomaly until release is closed: the time
// between the Processor's read of the order and its commit, stretched so that another commit of
// the same order lands in between (as a group-commit queue does under load).
type onceGatedStore struct {
	*sqlite.DB
	once             sync.Once
	reached, release chan struct{}
}

func (s *onceGatedStore) Commit(ctx context.Context, c *paynotify.Change) (bool, error) {
	if c.Anomaly != nil {
		s.once.Do(func() {
			close(s.reached)
			<-s.release
		})
	}
	return s.DB.Commit(ctx, c)
}

// TestProcess_AnomalyEventInVersionOrder (from a reviewer helper's audit): docs/api.md says the
// events of one order come in version order. A refund message whose amount disagrees with our
// record (amount_mismatch: an anomaly, no order change) was decided on the order at v2 while
// another refund of the order committed v3: its event, with v2 and the order as it was at v2,
// came after v3's order.refunded, the order's refunded total going back. The anomaly's change is
// now conditioned on the version it was decided on (Change.OrderAt), and decided again.
func TestProcess_AnomalyEventInVersionOrder(t *testing.T) {
	ctx := context.Background()
	p, b := setupProcessor(t)
	b.mustOrder(t, "T1")
	p.Process(ctx, callback(b.app), facts(paidFact("T1", "P1"))) // v2
	b.pendingRefund(t, "T1", "R1", 300)
	b.pendingRefund(t, "T1", "R2", 200)
	gs := &onceGatedStore{DB: b.store, reached: make(chan struct{}), release: make(chan struct{})}
	p.Store = gs

	bad := paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", RefundPerRequest: true, RefundRequestNo: "R1", RefundAmount: 400}
	done := make(chan *paynotify.Result)
	go func() { done <- p.Process(ctx, callback(b.app), facts(bad)) }()
	<-gs.reached // decided on v2, about to commit

	ok := paynotify.Fact{Kind: paynotify.FactRefund, OutTradeNo: "T1", RefundPerRequest: true, RefundRequestNo: "R2", RefundAmount: 200}
	if res, err := p.Apply(ctx, b.app, ok, nil); err != nil || res.Verdict != paynotify.VerdictAccepted {
		t.Fatalf("refund R2: %+v, %v", res, err)
	}
	close(gs.release)
	if res := <-done; res.Reason != paynotify.ReasonAmountMismatch {
		t.Fatalf("anomaly: %+v", res)
	}
	evs, err := b.store.ListEvents(ctx, paynotify.EventFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	anomalies := 0
	for _, e := range evs {
		if e.Version < last {
			t.Errorf("event %s (%s) has version %d after an event of version %d", e.ID, e.Type, e.Version, last)
		}
		last = max(last, e.Version)
		if e.Type == paynotify.EventOrderAnomaly {
			anomalies++
		}
	}
	if anomalies != 1 {
		t.Errorf("%d order.anomaly events, want 1", anomalies)
	}
}
