package httpd_test

import (
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
)

// regrouped re-encodes a genuine notification's fields after change moved text between them:
// Alipay's signature covers the fields joined with "&" (docs/alipay.md, "Canonical strings"), so
// the result still verifies (each test checks the control first).
func regrouped(t *testing.T, genuine []byte, change func(q url.Values)) []byte {
	t.Helper()
	q, err := url.ParseQuery(string(genuine))
	if err != nil {
		t.Fatal(err)
	}
	change(q)
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(k) + "=" + url.QueryEscape(q.Get(k)))
	}
	return []byte(b.String())
}

// TestAlipay_RegroupedFieldsRefused (from a reviewer helper's audit): a genuine notification
// whose fields are regrouped verifies, so a verified value holding "&name=" for a field paynotify
// decides by is refused as malformed, and nothing is applied:
//   - T0301's payment, whose subject is a buyer's "Gift&out_trade_no=T0302", with its real
//     out_trade_no folded into notify_type and the subject's tail split off: it named T0302,
//     which was marked paid by T0301's money;
//   - a payment to another seller with its seller_id folded into seller_email: it passed the
//     app's seller_ids.
//
// The genuine T0301 notification is refused too (its subject holds "&out_trade_no="): the
// reconciliation's query finds that payment.
func TestAlipay_RegroupedFieldsRefused(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		newAlipayOrder(e, "T0301", 100)
		newAlipayOrder(e, "T0302", 100)
		genuine := alipayNotify(t, with(paidFields("T0301", "1.00"), "subject", "Gift&out_trade_no=T0302"))
		forged := regrouped(t, genuine, func(q url.Values) {
			q.Set("notify_type", "trade_status_sync&out_trade_no=T0301&receipt_amount="+q.Get("receipt_amount")+
				"&seller_id="+q.Get("seller_id")+"&subject=Gift")
			q.Set("out_trade_no", "T0302")
			q.Del("receipt_amount")
			q.Del("seller_id")
			q.Del("subject")
		})
		for _, tc := range []struct {
			name, otn, holder string
			body              []byte
		}{{"Retargeted", "T0302", "notify_type", forged}, {"GenuineWithTheText", "T0301", "subject", genuine}} {
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, tc.body); ans != "fail" {
				t.Errorf("%s: answer %q, want fail", tc.name, ans)
			}
			if o := e.getOrder("shop", tc.otn); o.Status != "pending" {
				t.Errorf("%s: %s is %s", tc.name, tc.otn, o.Status)
			}
			ev := e.evidence("out_trade_no=" + tc.otn)
			if len(ev) != 1 || ev[0].Verdict != "rejected" || ev[0].Reason != paynotify.ReasonMalformed ||
				!strings.Contains(ev[0].Detail, tc.holder+` holds "&out_trade_no="`) {
				t.Errorf("%s: evidence %+v", tc.name, ev)
			}
		}

		// The text taken in can sit in a field's name too (from a reviewer's read of the fix): a
		// field named "notify_time=…&out_trade_no=T0401&…&subject" with the value "Gift", and
		// no value holding "&".
		newAlipayOrder(e, "T0401", 100)
		newAlipayOrder(e, "T0402", 100)
		genuine4 := alipayNotify(t, with(paidFields("T0401", "1.00"), "subject",
			"Gift&notify_type=trade_status_sync&out_trade_no=T0402&seller_id="+alipaySeller))
		q, err := url.ParseQuery(string(genuine4))
		if err != nil {
			t.Fatal(err)
		}
		big := "notify_time=" + q.Get("notify_time") + "&notify_type=trade_status_sync&out_trade_no=T0401&receipt_amount=" +
			q.Get("receipt_amount") + "&seller_id=" + q.Get("seller_id") + "&subject"
		for _, k := range []string{"notify_time", "receipt_amount", "subject"} {
			q.Del(k)
		}
		q.Set(big, "Gift")
		q.Set("out_trade_no", "T0402")
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, []byte(q.Encode())); ans != "fail" {
			t.Errorf("text taken into a field's name: answer %q", ans)
		}
		if o := e.getOrder("shop", "T0402"); o.Status != "pending" {
			t.Errorf("T0402 is %s after T0401's payment regrouped into a field's name", o.Status)
		}
		if ev := e.evidence("out_trade_no=T0402"); len(ev) != 1 || ev[0].Verdict != "rejected" || !strings.Contains(ev[0].Detail, "a field's name") {
			t.Errorf("text taken into a field's name: evidence %+v", ev)
		}

		newAlipayOrder(e, "T0106", 100)
		other := alipayNotify(t, with(paidFields("T0106", "1.00"), "seller_id", "2088999999999999", "seller_email", "other@seller.example"))
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, other); ans != "fail" ||
			e.evidence("out_trade_no=T0106")[0].Reason != paynotify.ReasonSellerMismatch {
			t.Fatalf("control: another seller's payment answered %q", ans)
		}
		folded := regrouped(t, other, func(q url.Values) {
			q.Set("seller_email", q.Get("seller_email")+"&seller_id="+q.Get("seller_id"))
			q.Del("seller_id")
		})
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, folded); ans != "fail" {
			t.Errorf("seller_id folded into seller_email: answer %q", ans)
		}
		if o := e.getOrder("shop", "T0106"); o.Status != "pending" {
			t.Errorf("T0106 is %s after another seller's payment", o.Status)
		}
	})
}

// TestAlipay_NoSellerAndOddStatuses: a notification that names no seller fails the app's
// seller_ids (it skipped the check); WAIT_BUYER_PAY is acknowledged and moves nothing; an unknown
// or missing trade_status is rejected, not acknowledged as a duplicate.
func TestAlipay_NoSellerAndOddStatuses(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		newAlipayOrder(e, "T0107", 100)
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, with(paidFields("T0107", "1.00"), "seller_id", ""))); ans != "fail" {
			t.Errorf("no seller_id: answer %q", ans)
		}
		if ev := e.evidence("out_trade_no=T0107"); len(ev) != 1 || ev[0].Reason != paynotify.ReasonSellerMismatch || e.getOrder("shop", "T0107").Status != "pending" {
			t.Errorf("no seller_id: evidence %+v", ev)
		}
		for _, tc := range []struct{ otn, status, answer, verdict string }{
			{"T0201", "WAIT_BUYER_PAY", "success", "accepted"},
			{"T0202", "TRADE_SUCCES", "fail", "rejected"},
			{"T0203", "", "fail", "rejected"},
		} {
			newAlipayOrder(e, tc.otn, 100)
			_, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, with(paidFields(tc.otn, "1.00"), "trade_status", tc.status)))
			ev := e.evidence("out_trade_no=" + tc.otn)
			if ans != tc.answer || len(ev) != 1 || ev[0].Verdict != tc.verdict || e.getOrder("shop", tc.otn).Status != "pending" {
				t.Errorf("trade_status %q: answer %q, evidence %+v", tc.status, ans, ev)
			}
		}
	})
}
