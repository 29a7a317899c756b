package console_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/teststore"
	"github.com/paynotify/paynotify/storetest"
)

// countingStore counts the body and header bytes ListEvidence hands the console.
type countingStore struct {
	paynotify.Store
	mu      sync.Mutex
	loaded  int
	budgets []int
}

func (s *countingStore) ListEvidence(ctx context.Context, f paynotify.EvidenceFilter) ([]*paynotify.Evidence, error) {
	evs, err := s.Store.ListEvidence(ctx, f)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.budgets = append(s.budgets, f.BodyBudget)
	for _, e := range evs {
		s.loaded += len(e.Body)
		for k, vs := range e.Headers {
			for _, v := range vs {
				s.loaded += len(k) + len(v)
			}
		}
	}
	return evs, err
}

func (s *countingStore) take() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.loaded
	s.loaded, s.budgets = 0, nil
	return n
}

// junk is a rejected (forged) notification about order otn of app1, as the Processor keeps one
// that anyone can post to /notify/alipay/app1: verdict rejected, the claimed out_trade_no kept.
func junk(id, otn string, at time.Time, size int) *paynotify.Evidence {
	ev := storetest.NewEvidence(id, &paynotify.Order{App: "app1", OutTradeNo: otn}, at)
	ev.Endpoint, ev.Source, ev.Verdict, ev.Reason, ev.Detail, ev.Answer = "alipay", paynotify.SourceNotification,
		paynotify.VerdictRejected, paynotify.ReasonSignatureInvalid, "RSA2 signature does not verify", "fail"
	ev.OrderVersion = 0
	body := []byte("out_trade_no=" + otn + "&trade_status=TRADE_SUCCESS&sign_type=RSA2&sign=eA&n=" + id + "&pad=")
	ev.Body = append(body, bytes.Repeat([]byte("x"), max(0, size-len(body)))...)
	return ev
}

// TestConsole_ListsLoadNoBodies: the notifications list shows no body, and loaded all 100
// records' bodies; the live-update long-poll read the newest record's body twice a second (a
// reviewer helper's finding). Neither reads a body now.
func TestConsole_ListsLoadNoBodies(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, s paynotify.Store) {
		ctx := t.Context()
		base := storetest.T0.Add(time.Minute)
		for i := range 100 {
			if err := s.InsertEvidence(ctx, junk(fmt.Sprintf("ntf_J%03d", i), "NOPE", base.Add(time.Duration(i)*time.Millisecond), 60<<10)); err != nil {
				t.Fatal(err)
			}
		}
		cs := &countingStore{Store: s}
		e := setup(t, cs, nil)
		e.login()
		cs.take()
		code, _, body := e.do("GET", "/console/notifications", nil)
		loaded := cs.take()
		t.Logf("GET /console/notifications: %d, page %d bytes, bodies+headers loaded %d bytes", code, len(body), loaded)
		if strings.Contains(body, strings.Repeat("x", 100)) {
			t.Fatal("the list shows bodies after all")
		}
		if loaded > 1<<20 {
			t.Errorf("the notifications list (which shows no body) loaded %d bytes of bodies and headers (%.1f MiB) for a %d-byte page", loaded, float64(loaded)/(1<<20), len(body))
		}
		// One live-update long-poll of the overview, until its (test) timeout of 300 ms.
		_, _, stamp := e.do("GET", "/console/wait?scope=all&stamp=", nil)
		cs.take()
		s2 := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(stamp), `{"stamp":"`), `"}`)
		e.do("GET", "/console/wait?scope=all&stamp="+url.QueryEscape(s2), nil)
		if n := cs.take(); n > 0 {
			t.Errorf("one 300 ms long-poll of the overview (polling every 20 ms) read %d bytes of bodies to compare an id: in production, 50 reads of up to 64 KiB per 25 s per open tab", n)
		}
	})
}

// TestConsole_OrderPageKeepsGenuineRecords: the order page listed the newest 500 evidence
// records of the order and nothing said there were more, so rejected (forged) notifications,
// which anyone can post with the order's out_trade_no, pushed the genuine payment notification,
// its checks and its Reprocess button off the page (a reviewer helper's finding). Every record
// but the rejected ones is shown now, the newest 50 rejected ones, and a link to the rest.
func TestConsole_OrderPageKeepsGenuineRecords(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, s paynotify.Store) {
		ctx := t.Context()
		a := storetest.MustCreateOrder(t, ctx, s, storetest.NewOrder("app1", "A", storetest.T0))
		paid := storetest.PaidChange(a, "evt_A", "ntf_GENUINE", storetest.T0.Add(time.Minute))
		paid.Evidence.Endpoint, paid.Evidence.Source = "alipay", paynotify.SourceNotification
		storetest.MustCommit(t, ctx, s, paid)
		e := setup(t, s, nil)
		e.login()
		if _, _, body := e.do("GET", "/console/orders/app1/A", nil); !strings.Contains(body, `data-copy="ntf_GENUINE"`) {
			t.Fatal("precondition: the genuine notification is not on the page")
		}
		for i := range 500 {
			if err := s.InsertEvidence(ctx, junk(fmt.Sprintf("ntf_F%03d", i), "A", storetest.T0.Add(2*time.Minute+time.Duration(i)*time.Second), 200)); err != nil {
				t.Fatal(err)
			}
		}
		_, _, body := e.do("GET", "/console/orders/app1/A", nil)
		forged := strings.Count(body, `data-copy="ntf_F`)
		if !strings.Contains(body, `data-copy="ntf_GENUINE"`) || forged != 50 || !strings.Contains(body, `id="rejected-more"`) ||
			!strings.Contains(body, `/console/notifications?app=app1&amp;out_trade_no=A&amp;verdict=rejected`) {
			t.Errorf("after 500 forged notifications about order A, its page shows %d of them (want 50), the genuine ntf_GENUINE %v, the link to the rest %v",
				forged, strings.Contains(body, `data-copy="ntf_GENUINE"`), strings.Contains(body, `id="rejected-more"`))
		}
		// The link lists the order's rejected records.
		if _, _, list := e.do("GET", "/console/notifications?app=app1&out_trade_no=A&verdict=rejected", nil); strings.Count(list, `/console/notifications/ntf_F`) != 100 {
			t.Errorf("the order's rejected records listed: %d, want the newest 100", strings.Count(list, `/console/notifications/ntf_F`))
		}
	})
}

// TestConsole_OrderPageBounded: 500 forged notifications of 60 KiB about one order (an hour of
// the per-app rejected cap, 512 KiB a minute) made every view of the order's page read ~30 MiB of
// bodies and send tens of MiB of HTML, and an open page reloaded on each new one (the stamp named
// the order's newest evidence record): a reviewer helper's finding. The page reads a bounded
// amount, and a rejected record does not change the order's stamp.
func TestConsole_OrderPageBounded(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, s paynotify.Store) {
		ctx := t.Context()
		storetest.MustCreateOrder(t, ctx, s, storetest.NewOrder("app1", "A", storetest.T0))
		for i := range 500 {
			if err := s.InsertEvidence(ctx, junk(fmt.Sprintf("ntf_F%03d", i), "A", storetest.T0.Add(2*time.Minute+time.Duration(i)*time.Second), 60<<10)); err != nil {
				t.Fatal(err)
			}
		}
		cs := &countingStore{Store: s}
		e := setup(t, cs, nil)
		e.login()
		cs.take()
		start := time.Now()
		code, _, body := e.do("GET", "/console/orders/app1/A", nil)
		took := time.Since(start)
		loaded := cs.take()
		t.Logf("GET /console/orders/app1/A: %d in %v, page %.1f MiB, bodies loaded %.1f MiB", code, took, float64(len(body))/(1<<20), float64(loaded)/(1<<20))
		if code != http.StatusOK || len(body) > 4<<20 || loaded > 1<<20 {
			t.Errorf("one view of an order page with 500 forged 60 KiB notifications: %d, %.1f MiB of HTML, %.1f MiB of bodies loaded (%v)",
				code, float64(len(body))/(1<<20), float64(loaded)/(1<<20), took)
		}
		if !strings.Contains(body, "are not loaded on this page") {
			t.Error("the records left without their body do not say so")
		}
		stampOf := func() string {
			_, _, b := e.do("GET", "/console/wait?app=app1&otn=A&stamp=old", nil)
			return b
		}
		before := stampOf()
		if err := s.InsertEvidence(ctx, junk("ntf_F999", "A", storetest.T0.Add(time.Hour), 200)); err != nil {
			t.Fatal(err)
		}
		if after := stampOf(); after != before {
			t.Errorf("a forged notification changed the order page's stamp: %s -> %s (every open page reloads)", before, after)
		}
	})
}

// TestConsole_ChecksNotMadeAreSkipped: a record whose verification stopped before the Processor's
// checks (verify_unavailable: legacy notify_verify could not be asked) showed its seller and
// amount as "pass" although neither was compared, with values that disagree with the config and
// the order; an unknown_order anomaly showed its amount "pass" against "no order" (a reviewer
// helper's finding). They are "skip", saying why.
func TestConsole_ChecksNotMadeAreSkipped(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, s paynotify.Store) {
		ctx := t.Context()
		storetest.MustCreateOrder(t, ctx, s, storetest.NewOrder("app1", "A", storetest.T0)) // ¥12.34
		vu := storetest.NewEvidence("ntf_VU", &paynotify.Order{App: "app1", OutTradeNo: "A"}, storetest.T0.Add(time.Minute))
		vu.Provider, vu.Endpoint, vu.Source = paynotify.ProviderAlipayLegacy, "alipay-legacy", paynotify.SourceNotification
		vu.Verdict, vu.Reason, vu.Detail, vu.Answer, vu.OrderVersion = paynotify.VerdictError, paynotify.ReasonVerifyUnavailable, "notify_verify: dial tcp: i/o timeout", "fail", 0
		vu.Body = []byte("notify_id=n1&out_trade_no=A&seller_id=2088999999999999&total_fee=0.01&trade_status=TRADE_SUCCESS&sign_type=MD5&sign=00")
		if err := s.InsertEvidence(ctx, vu); err != nil {
			t.Fatal(err)
		}
		uo := storetest.NewEvidence("ntf_UO", &paynotify.Order{App: "app1", OutTradeNo: "GHOST"}, storetest.T0.Add(time.Minute))
		uo.Endpoint, uo.Source, uo.Verdict, uo.Reason, uo.Detail, uo.Answer = "alipay", paynotify.SourceNotification, paynotify.VerdictAnomaly, paynotify.ReasonUnknownOrder, "", "fail"
		uo.Body = []byte("app_id=2021000000000001&seller_id=2088000000000001&out_trade_no=GHOST&total_amount=99999.00&trade_status=TRADE_SUCCESS&sign_type=RSA2&sign=c2ln")
		if err := s.InsertEvidence(ctx, uo); err != nil {
			t.Fatal(err)
		}
		e := setup(t, s, nil)
		e.login()
		_, _, body := e.do("GET", "/console/notifications/ntf_VU", nil)
		for _, row := range []string{
			`<th>seller</th><td class="outcome">pass</td><td>The message says “2088999999999999”; the config allows “2088000000000001”.</td>`,
			`<th>amount</th><td class="outcome">pass</td><td>The message says “¥0.01”; the order is ¥12.34.</td>`,
		} {
			if strings.Contains(body, row) {
				t.Errorf("verify_unavailable record (never checked against config or order) shows: %s", row)
			}
		}
		for _, name := range []string{"app id", "seller", "amount", "status"} {
			if !strings.Contains(body, `<th>`+name+`</th><td class="outcome">skip</td>`) {
				t.Errorf("verify_unavailable record: the %s row is not skip", name)
			}
		}
		_, _, body = e.do("GET", "/console/notifications/ntf_UO", nil)
		if row := `<th>amount</th><td class="outcome">skip</td><td>Not checked: no order “GHOST” to compare it with`; !strings.Contains(body, row) {
			t.Errorf("unknown_order record: its amount row is not %s", row)
		}
	})
}

// TestConsole_OrderPageKeepsRejectedThatAreNotJunk: the order page kept only the newest 50
// rejected records, taking every rejected record for junk "anyone can post". Not all are: a
// provider's signed query answer refused as about another order (source query), and legacy
// Alipay's notify_id_unconfirmed (its signature held: a leaked key's trace, which retention keeps
// for that reason); 50 forged posts naming the order pushed them off the page (a reviewer's
// finding). Only rejected notifications are capped now.
func TestConsole_OrderPageKeepsRejectedThatAreNotJunk(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, s paynotify.Store) {
		ctx := t.Context()
		a := storetest.MustCreateOrder(t, ctx, s, storetest.NewOrder("app1", "A", storetest.T0))
		q := storetest.NewEvidence("qry_MISMATCH", a, storetest.T0.Add(time.Minute))
		q.Endpoint, q.Source, q.Verdict, q.Reason, q.Detail = "alipay.trade.query", paynotify.SourceQuery, paynotify.VerdictRejected,
			paynotify.ReasonOutTradeNoMismatch, "asked about A, answered about B"
		n := storetest.NewEvidence("ntf_LEAKEDKEY", a, storetest.T0.Add(2*time.Minute))
		n.Provider, n.Endpoint, n.Source, n.Verdict, n.Reason, n.Detail = paynotify.ProviderAlipayLegacy, "alipay-legacy", paynotify.SourceNotification,
			paynotify.VerdictRejected, "notify_id_unconfirmed", "notify_verify answered false"
		for _, ev := range []*paynotify.Evidence{q, n} {
			if err := s.InsertEvidence(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		e := setup(t, s, nil)
		e.login()
		_, _, body := e.do("GET", "/console/orders/app1/A", nil)
		if !strings.Contains(body, `data-copy="qry_MISMATCH"`) || !strings.Contains(body, `data-copy="ntf_LEAKEDKEY"`) {
			t.Fatal("precondition: both records on the page")
		}
		for i := range 50 {
			if err := s.InsertEvidence(ctx, junk(fmt.Sprintf("ntf_F%03d", i), "A", storetest.T0.Add(10*time.Minute+time.Duration(i)*time.Second), 200)); err != nil {
				t.Fatal(err)
			}
		}
		_, _, body = e.do("GET", "/console/orders/app1/A", nil)
		for _, id := range []string{"qry_MISMATCH", "ntf_LEAKEDKEY"} {
			if !strings.Contains(body, `data-copy="`+id+`"`) {
				t.Errorf("after 50 forged posts naming the order, %s (not junk: retention keeps it as such) is no longer on the order page", id)
			}
		}
	})
}

// TestConsole_OmittedBodyNoReprocess: the order page decided "Reprocess" by Evidence.Cut(),
// len(Body) >= 64 KiB, and a record left without its body by the page's budget (BodyOmitted) has
// a nil Body, so a record kept cut at 64 KiB, which is never reprocessed (its own page says so
// and offers no button), got a Reprocess button there, and its checks read an empty body (a
// reviewer's finding). A record without its body offers no action and shows no checks here.
func TestConsole_OmittedBodyNoReprocess(t *testing.T) {
	teststore.ForEach(t, func(t *testing.T, s paynotify.Store) {
		ctx := t.Context()
		storetest.MustCreateOrder(t, ctx, s, storetest.NewOrder("app1", "A", storetest.T0))
		for i := range 12 {
			if err := s.InsertEvidence(ctx, junk(fmt.Sprintf("ntf_C%03d", i), "A", storetest.T0.Add(time.Minute+time.Duration(i)*time.Second), paynotify.MaxEvidenceBody)); err != nil {
				t.Fatal(err)
			}
		}
		e := setup(t, s, nil)
		e.login()
		_, _, one := e.do("GET", "/console/notifications/ntf_C000", nil)
		_, _, body := e.do("GET", "/console/orders/app1/A", nil)
		re := regexp.MustCompile(`name="id" value="(ntf_C\d+)"><button>Reprocess`)
		offered := re.FindAllStringSubmatch(body, -1)
		t.Logf("its own page offers Reprocess: %v; the order page offers it for %d of the 12 cut records", strings.Contains(one, "<button>Reprocess"), len(offered))
		if len(offered) > 0 {
			t.Errorf("the order page offers Reprocess for cut records left without their body (e.g. %s); their own page does not", offered[0][1])
		}
		if strings.Contains(body, "The message says “”") || !strings.Contains(body, "Not shown here: this page loads a few MiB of bodies at most") {
			t.Error("records without their body show checks read from an empty body")
		}
	})
}
