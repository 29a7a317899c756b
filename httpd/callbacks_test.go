package httpd_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// waitLongPoll waits until a long-poll is waiting in the server.
func (e *env) waitLongPoll() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.http.LongPolls() == 0 {
		if time.Now().After(deadline) {
			e.t.Fatal("no long-poll is waiting")
		}
		time.Sleep(time.Millisecond)
	}
}

func newAlipayOrder(e *env, otn string, amount int64) order {
	return e.createOrder(map[string]any{"app": "shop", "out_trade_no": otn, "amount": amount, "subject": "测试 order", "channel": "alipay.app"})
}

func TestAlipayNotify(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)

		t.Run("OK", func(t *testing.T) {
			o := newAlipayOrder(e, "T0001", 8888)
			if !strings.Contains(string(o.Pay), "order_string") || o.Status != "pending" || o.Version != 1 {
				t.Fatalf("created order = %+v", o)
			}
			body := alipayNotify(t, paidFields("T0001", "88.88"))
			code, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, body)
			if code != 200 || ans != "success" {
				t.Fatalf("answer = %d %q, want 200 success", code, ans)
			}
			got := e.getOrder("shop", "T0001")
			if got.Status != "paid" || got.Version != 2 || got.PaidAt == nil || got.ProviderTradeNo != "20261129220014000000000001" {
				t.Fatalf("order = %+v", got)
			}
			want := time.Date(2026, 11, 29, 2, 0, 0, 0, time.UTC) // 10:00 Beijing
			if !got.PaidAt.Equal(want) {
				t.Fatalf("paid_at = %v, want %v", got.PaidAt, want)
			}
			ev := e.evidence("app=shop&out_trade_no=T0001")
			if len(ev) != 1 || ev[0].Verdict != "accepted" || ev[0].Answer != "success" || ev[0].OrderVersion != 2 {
				t.Fatalf("evidence = %+v", ev)
			}
			n := 0
			for _, x := range e.events() {
				if strings.Contains(string(x.Data), `"out_trade_no":"T0001"`) {
					n++
					if x.Type != "order.paid" || x.Version != 2 || !strings.Contains(string(x.Data), `"status":"paid"`) {
						t.Fatalf("event = %+v", x)
					}
				}
			}
			if n != 1 {
				t.Fatalf("%d events for T0001, want 1", n)
			}

			// The same notification again: success, no effect, no event.
			code, ans = e.postNotify("/notify/alipay/shop", alipayContentType, nil, body)
			if code != 200 || ans != "success" {
				t.Fatalf("duplicate answer = %d %q", code, ans)
			}
			if got := e.getOrder("shop", "T0001"); got.Version != 2 {
				t.Fatalf("duplicate changed the order: %+v", got)
			}
			if ev := e.evidence("app=shop&out_trade_no=T0001&verdict=duplicate"); len(ev) != 1 || ev[0].Repeats != 0 {
				t.Fatalf("duplicate evidence = %+v", ev)
			}
			// Twice more, byte for byte: counted on that record (docs/api.md, "Repeated
			// duplicates"), each answered success.
			for range 2 {
				if code, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, body); code != 200 || ans != "success" {
					t.Fatalf("repeated duplicate answer = %d %q", code, ans)
				}
			}
			if ev := e.evidence("app=shop&out_trade_no=T0001&verdict=duplicate"); len(ev) != 1 || ev[0].Repeats != 2 {
				t.Fatalf("duplicate evidence after two repeats = %+v, want one record with 2 repeats", ev)
			}
			// Another header: a record of its own.
			if code, ans := e.postNotify("/notify/alipay/shop", alipayContentType, http.Header{"X-Forwarded-For": {"192.0.2.1"}}, body); code != 200 || ans != "success" {
				t.Fatalf("duplicate with another header: %d %q", code, ans)
			}
			if ev := e.evidence("app=shop&out_trade_no=T0001&verdict=duplicate"); len(ev) != 2 || ev[0].Repeats != 0 {
				t.Fatalf("duplicate evidence after one with another header = %+v, want a second record", ev)
			}
		})

		t.Run("OKFiftyConcurrentDuplicates", func(t *testing.T) {
			newAlipayOrder(e, "T0050", 100)
			body := alipayNotify(t, paidFields("T0050", "1.00"))
			var wg sync.WaitGroup
			answers := make([]string, 50)
			for i := range answers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, answers[i] = e.postNotify("/notify/alipay/shop", alipayContentType, nil, body)
				}()
			}
			wg.Wait()
			for i, a := range answers {
				if a != "success" {
					t.Fatalf("answer %d = %q", i, a)
				}
			}
			paid := 0
			for _, x := range e.events() {
				if x.Type == "order.paid" && strings.Contains(string(x.Data), `"out_trade_no":"T0050"`) {
					paid++
				}
			}
			if paid != 1 {
				t.Fatalf("%d order.paid events, want exactly 1", paid)
			}
			if got := e.getOrder("shop", "T0050"); got.Status != "paid" || got.Version != 2 {
				t.Fatalf("order = %+v", got)
			}
			if acc := e.evidence("out_trade_no=T0050&verdict=accepted"); len(acc) != 1 {
				t.Fatalf("%d accepted evidence records, want 1", len(acc))
			}
			if dup := e.evidence("out_trade_no=T0050&verdict=duplicate"); requests(dup) != 49 {
				t.Fatalf("%d duplicate requests recorded, want 49 (records %+v)", requests(dup), dup)
			}
		})

		t.Run("ErrTamperedAmount", func(t *testing.T) {
			newAlipayOrder(e, "T0002", 8888)
			body := alipayNotify(t, paidFields("T0002", "88.88"))
			tampered := []byte(strings.Replace(string(body), "total_amount=88.88", "total_amount=0.01", 1))
			if string(tampered) == string(body) {
				t.Fatal("test setup: nothing tampered")
			}
			code, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, tampered)
			if code != 200 || ans != "fail" {
				t.Fatalf("answer = %d %q, want fail", code, ans)
			}
			if got := e.getOrder("shop", "T0002"); got.Status != "pending" || got.Version != 1 {
				t.Fatalf("order = %+v", got)
			}
			ev := e.evidence("out_trade_no=T0002")
			if len(ev) != 1 || ev[0].Verdict != "rejected" || ev[0].Reason != "signature_invalid" || ev[0].Answer != "fail" {
				t.Fatalf("evidence = %+v", ev)
			}
		})

		t.Run("ErrDuplicateKey", func(t *testing.T) {
			newAlipayOrder(e, "T0003", 100)
			body := append(alipayNotify(t, paidFields("T0003", "1.00")), []byte("&total_amount=1.00")...)
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, body); ans != "fail" {
				t.Fatalf("answer = %q", ans)
			}
			ev := e.evidence("out_trade_no=T0003")
			if len(ev) != 1 || ev[0].Reason != "duplicate_key" {
				t.Fatalf("evidence = %+v", ev)
			}
		})

		t.Run("ErrAmountMismatchOneAnomaly", func(t *testing.T) {
			newAlipayOrder(e, "T0004", 8888)
			body := alipayNotify(t, paidFields("T0004", "0.01")) // properly signed, wrong amount
			for i := 0; i < 3; i++ {                             // Alipay retries
				if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, body); ans != "fail" {
					t.Fatalf("answer = %q, want fail", ans)
				}
			}
			if got := e.getOrder("shop", "T0004"); got.Status != "pending" || got.Version != 1 {
				t.Fatalf("order = %+v", got)
			}
			anomalies := 0
			for _, x := range e.events() {
				if x.Type == "order.anomaly" && strings.Contains(string(x.Data), `"out_trade_no":"T0004"`) {
					anomalies++
					if !strings.Contains(string(x.Data), `"reason":"amount_mismatch"`) || x.Version != 1 {
						t.Fatalf("anomaly event = %+v", x)
					}
				}
			}
			if anomalies != 1 {
				t.Fatalf("%d anomaly events, want 1", anomalies)
			}
			if ev := e.evidence("out_trade_no=T0004&verdict=anomaly"); len(ev) != 3 || ev[0].Reason != "amount_mismatch" {
				t.Fatalf("evidence = %+v", ev)
			}
		})

		t.Run("ErrUnknownOrder", func(t *testing.T) {
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, paidFields("T9999", "1.00"))); ans != "fail" {
				t.Fatalf("answer = %q", ans)
			}
			found := false
			for _, x := range e.events() {
				if x.Type == "order.anomaly" && strings.Contains(string(x.Data), `"out_trade_no":"T9999"`) {
					found = strings.Contains(string(x.Data), `"reason":"unknown_order"`)
				}
			}
			if !found {
				t.Fatal("no unknown_order anomaly event")
			}
		})

		t.Run("ErrAppIDMismatch", func(t *testing.T) {
			newAlipayOrder(e, "T0005", 100)
			body := alipayNotify(t, with(paidFields("T0005", "1.00"), "app_id", "2021000000000999"))
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, body); ans != "fail" {
				t.Fatalf("answer = %q", ans)
			}
			if ev := e.evidence("out_trade_no=T0005"); len(ev) != 1 || ev[0].Reason != "app_id_mismatch" {
				t.Fatalf("evidence = %+v", ev)
			}
		})

		t.Run("ErrSellerMismatch", func(t *testing.T) {
			newAlipayOrder(e, "T0006", 100)
			body := alipayNotify(t, with(paidFields("T0006", "1.00"), "seller_id", "2088999999999999"))
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, body); ans != "fail" {
				t.Fatalf("answer = %q", ans)
			}
			if ev := e.evidence("out_trade_no=T0006"); len(ev) != 1 || ev[0].Reason != "seller_mismatch" {
				t.Fatalf("evidence = %+v", ev)
			}
		})

		t.Run("OKRefundBeforePayment", func(t *testing.T) {
			newAlipayOrder(e, "T0007", 1000)
			refund := with(paidFields("T0007", "10.00"), "notify_id", "n-refund-T0007", "refund_fee", "3.00",
				"gmt_refund", "2026-11-29 11:00:00.123", "out_biz_no", "R1")
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, refund)); ans != "success" {
				t.Fatalf("refund answer = %q", ans)
			}
			got := e.getOrder("shop", "T0007")
			if got.Status != "paid" || got.RefundedAmount != 300 || got.Version != 3 {
				t.Fatalf("order = %+v", got)
			}
			// The late payment notification is stale now.
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, paidFields("T0007", "10.00"))); ans != "success" {
				t.Fatalf("payment answer = %q", ans)
			}
			var types []string
			for _, x := range e.events() {
				if strings.Contains(string(x.Data), `"out_trade_no":"T0007"`) {
					types = append(types, fmt.Sprintf("%s@%d", x.Type, x.Version))
				}
			}
			if strings.Join(types, ",") != "order.paid@2,order.refunded@3" {
				t.Fatalf("events = %v", types)
			}
			var refunds struct {
				Refunds []paynotify.Refund `json:"refunds"`
			}
			e.api("GET", "/v1/orders/shop/T0007/refunds", nil, &refunds)
			if len(refunds.Refunds) != 1 || refunds.Refunds[0].OutRequestNo != "R1" || refunds.Refunds[0].Amount != 300 || refunds.Refunds[0].Status != "succeeded" {
				t.Fatalf("refunds = %+v", refunds)
			}
			// Full refund: TRADE_CLOSED with the cumulative refund_fee.
			full := with(refund, "notify_id", "n-full-T0007", "trade_status", "TRADE_CLOSED", "refund_fee", "10.00", "out_biz_no", "R2",
				"gmt_close", "2026-11-29 12:00:00")
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, full)); ans != "success" {
				t.Fatalf("full refund answer = %q", ans)
			}
			if got := e.getOrder("shop", "T0007"); got.Status != "refunded" || got.RefundedAmount != 1000 || got.Version != 4 {
				t.Fatalf("order = %+v", got)
			}
		})

		t.Run("OKFinishedBeforePayment", func(t *testing.T) {
			newAlipayOrder(e, "T0008", 100)
			body := alipayNotify(t, with(paidFields("T0008", "1.00"), "trade_status", "TRADE_FINISHED", "notify_id", "n-fin"))
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, body); ans != "success" {
				t.Fatalf("answer = %q", ans)
			}
			if got := e.getOrder("shop", "T0008"); got.Status != "finished" || got.Version != 3 {
				t.Fatalf("order = %+v", got)
			}
		})

		t.Run("OKCloseUnpaid", func(t *testing.T) {
			newAlipayOrder(e, "T0009", 100)
			body := alipayNotify(t, with(paidFields("T0009", "1.00"), "trade_status", "TRADE_CLOSED", "gmt_payment", "", "gmt_close", "2026-11-29 12:00:00"))
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, body); ans != "success" {
				t.Fatalf("answer = %q", ans)
			}
			if got := e.getOrder("shop", "T0009"); got.Status != "closed" {
				t.Fatalf("order = %+v", got)
			}
			// A payment after the close is applied, with a late_payment anomaly, and acknowledged.
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, paidFields("T0009", "1.00"))); ans != "success" {
				t.Fatalf("late payment answer = %q", ans)
			}
			if got := e.getOrder("shop", "T0009"); got.Status != "paid" {
				t.Fatalf("order = %+v", got)
			}
			if ev := e.evidence("out_trade_no=T0009&verdict=accepted"); len(ev) != 2 || ev[0].Reason != "late_payment" {
				t.Fatalf("evidence = %+v", ev)
			}
		})

		t.Run("OKNoSecretInLogs", func(t *testing.T) {
			logs := e.logs.String()
			if !strings.Contains(logs, "request_id=") || !strings.Contains(logs, "out_trade_no=T0001") {
				t.Fatalf("callback logs lack request_id or out_trade_no:\n%s", logs)
			}
			for _, secret := range []string{testToken, "PRIVATE KEY", "Bearer"} {
				if strings.Contains(logs, secret) {
					t.Fatalf("logs contain %q", secret)
				}
			}
		})

		t.Run("ErrUnknownApp", func(t *testing.T) {
			code, _ := e.postNotify("/notify/alipay/nosuchapp", alipayContentType, nil, alipayNotify(t, paidFields("T0010", "1.00")))
			if code != http.StatusNotFound {
				t.Fatalf("status = %d, want 404", code)
			}
			if ev := e.evidence("app=nosuchapp"); len(ev) != 0 {
				t.Fatalf("evidence stored for an unknown app: %+v", ev)
			}
			// Anyone can send a long path, or a long claimed order number to a return URL: the
			// log line quotes 256 bytes of it.
			before := len(e.logs.String())
			long := strings.Repeat("x", 30<<10)
			if code, _ := e.postNotify("/notify/alipay/"+long, alipayContentType, nil, []byte("a=1")); code != http.StatusNotFound {
				t.Fatalf("status = %d, want 404", code)
			}
			resp, err := http.Get(e.srv.URL + "/return/alipay/shop?out_trade_no=" + long)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if n := len(e.logs.String()) - before; n > 4<<10 {
				t.Fatalf("%d bytes of log for two requests quoting 30 KiB each", n)
			}
		})
	})
}

// failingStore fails every Commit and InsertEvidence: the answer must be a failure.
type failingStore struct{ paynotify.Store }

func (failingStore) Commit(context.Context, *paynotify.Change) (bool, error) {
	return false, errors.New("disk on fire")
}

func TestAlipayNotify_ErrStoreFailure(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		newAlipayOrder(e, "T0100", 100)
		e.http.Service.Processor.Store = failingStore{s}
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, paidFields("T0100", "1.00"))); ans != "fail" {
			t.Fatalf("answer = %q, want fail", ans)
		}
		if got := e.getOrder("shop", "T0100"); got.Status != "pending" {
			t.Fatalf("order = %+v", got)
		}
		ev := e.evidence("out_trade_no=T0100")
		if len(ev) != 1 || ev[0].Verdict != "error" || ev[0].Reason != "store_error" || ev[0].Answer != "fail" {
			t.Fatalf("evidence = %+v", ev)
		}
		// Once the store is back, the provider's retry succeeds.
		e.http.Service.Processor.Store = s
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, paidFields("T0100", "1.00"))); ans != "success" {
			t.Fatalf("retry answer = %q", ans)
		}
	})
}

func TestOrdersAPI(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		t.Run("ErrUnauthorized", func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.srv.URL+"/v1/events", nil)
			req.Header.Set("Authorization", "Bearer wrong-token-0123456789")
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status = %d", resp.StatusCode)
			}
		})
		t.Run("OKIdempotentCreate", func(t *testing.T) {
			req := map[string]any{"app": "shop", "out_trade_no": "I0001", "amount": 100, "subject": "s", "channel": "alipay.app", "expires_in": "30m"}
			first := e.createOrder(req)
			var again order
			if code := e.api("POST", "/v1/orders", req, &again); code != http.StatusOK {
				t.Fatalf("re-create status = %d", code)
			}
			if string(again.Pay) != string(first.Pay) || again.Version != 1 {
				t.Fatalf("re-create = %+v, want the stored pay", again)
			}
			if d := first.ExpiresAt.Sub(first.CreatedAt); d != 30*time.Minute {
				t.Fatalf("expires_at - created_at = %v", d)
			}
			// The signed order string carries time_expire in Beijing time.
			var pay struct {
				OrderString string `json:"order_string"`
			}
			json.Unmarshal(first.Pay, &pay)
			want := first.ExpiresAt.In(time.FixedZone("CST", 8*3600)).Format("2006-01-02 15:04:05")
			if !strings.Contains(pay.OrderString, strings.ReplaceAll(strings.ReplaceAll(want, " ", "+"), ":", "%3A")) {
				t.Fatalf("order_string %q lacks time_expire %q", pay.OrderString, want)
			}
			if !strings.Contains(pay.OrderString, "notify_url=https%3A%2F%2Fpay.example.com%2Fnotify%2Falipay%2Fshop&") {
				t.Fatalf("order_string %q lacks the notify_url", pay.OrderString)
			}
			req["amount"] = 200
			var errBody struct {
				Error struct{ Code string } `json:"error"`
			}
			if code := e.api("POST", "/v1/orders", req, &errBody); code != http.StatusConflict || errBody.Error.Code != "conflict" {
				t.Fatalf("conflicting re-create = %d %+v", code, errBody)
			}
		})
		t.Run("OKGeneratedTradeNo", func(t *testing.T) {
			o := e.createOrder(map[string]any{"app": "shop", "amount": 1, "subject": "s", "channel": "alipay.page"})
			if len(o.OutTradeNo) != 24 || strings.Trim(o.OutTradeNo, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != "" {
				t.Fatalf("generated out_trade_no %q", o.OutTradeNo)
			}
			var pay struct{ URL, Form string }
			json.Unmarshal(o.Pay, &pay)
			if !strings.HasPrefix(pay.URL, "http://127.0.0.1:1/gateway.do?") || !strings.Contains(pay.Form, "<form") ||
				!strings.Contains(pay.URL, "return_url=https%3A%2F%2Fpay.example.com%2Freturn%2Falipay%2Fshop") {
				t.Fatalf("pay = %+v", pay)
			}
		})
		t.Run("ErrInvalid", func(t *testing.T) {
			for name, req := range map[string]map[string]any{
				"FloatAmount":  {"app": "shop", "amount": 1.5, "subject": "s", "channel": "alipay.app"},
				"StringAmount": {"app": "shop", "amount": "100", "subject": "s", "channel": "alipay.app"},
				"ZeroAmount":   {"app": "shop", "amount": 0, "subject": "s", "channel": "alipay.app"},
				"WrongChannel": {"app": "shop", "amount": 1, "subject": "s", "channel": "wechatpay.native"},
				"NoSubject":    {"app": "shop", "amount": 1, "channel": "alipay.app"},
				"BadExpiry":    {"app": "shop", "amount": 1, "subject": "s", "channel": "alipay.app", "expires_in": "20d"},
				"UnknownField": {"app": "shop", "amount": 1, "subject": "s", "channel": "alipay.app", "amout": 1},
				"BadTradeNo":   {"app": "shop", "amount": 1, "subject": "s", "channel": "alipay.app", "out_trade_no": "a b"},
			} {
				if code := e.api("POST", "/v1/orders", req, nil); code != http.StatusBadRequest {
					t.Errorf("%s: status %d, want 400", name, code)
				}
			}
		})
		t.Run("OKLongPoll", func(t *testing.T) {
			newAlipayOrder(e, "W0001", 100)
			done := make(chan order, 1)
			start := time.Now()
			go func() {
				var o order
				e.api("GET", "/v1/orders/shop/W0001?wait=20s", nil, &o)
				done <- o
			}()
			e.waitLongPoll() // the order is still pending, and the poll waits for it
			e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, paidFields("W0001", "1.00")))
			select {
			case o := <-done:
				if o.Status != "paid" {
					t.Fatalf("long-poll answered %+v", o)
				}
				if time.Since(start) > 15*time.Second {
					t.Fatalf("long-poll took %v", time.Since(start))
				}
			case <-time.After(20 * time.Second):
				t.Fatal("long-poll did not answer")
			}
		})
		t.Run("OKEventsCursor", func(t *testing.T) {
			type page struct {
				Events []event `json:"events"`
				Next   string  `json:"next"`
			}
			for _, otn := range []string{"E0001", "E0002"} {
				newAlipayOrder(e, otn, 100)
				if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, paidFields(otn, "1.00"))); ans != "success" {
					t.Fatalf("answer %q", ans)
				}
			}
			all := e.events()
			if len(all) < 2 {
				t.Fatalf("%d events: the test needs at least 2", len(all))
			}
			var first, rest, empty page
			if code := e.api("GET", "/v1/events?limit=1", nil, &first); code != http.StatusOK || len(first.Events) != 1 || first.Next == "" {
				t.Fatalf("first page: %d %+v", code, first)
			}
			if code := e.api("GET", "/v1/events?limit=1000&after="+first.Next, nil, &rest); code != http.StatusOK {
				t.Fatalf("rest: status %d", code)
			}
			if len(rest.Events) != len(all)-1 {
				t.Fatalf("after the first event: %d events, want %d", len(rest.Events), len(all)-1)
			}
			for i, x := range rest.Events {
				if x.ID != all[i+1].ID {
					t.Fatalf("event %d after the cursor is %s, want %s", i, x.ID, all[i+1].ID)
				}
			}
			if code := e.api("GET", "/v1/events?after="+rest.Next, nil, &empty); code != http.StatusOK || len(empty.Events) != 0 || empty.Next != rest.Next {
				t.Fatalf("after the end: %d %+v (next %q)", code, empty, rest.Next)
			}
			if code := e.api("GET", "/v1/events?after=bogus", nil, nil); code != http.StatusBadRequest {
				t.Fatalf("bad cursor: status %d", code)
			}
		})

	})
}

func TestAlipayReturn(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		newAlipayOrder(e, "R0001", 100)
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		get := func(path string) *http.Response {
			t.Helper()
			resp, err := client.Get(e.srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp
		}
		// Without a return_url: a plain page.
		if resp := get("/return/alipay/shop?out_trade_no=R0001&trade_status=TRADE_SUCCESS"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		e.http.Service.Apps["shop"].ReturnURL = "https://shop.example.com/paid?from=alipay"
		resp := get("/return/alipay/shop?out_trade_no=R0001&total_amount=1.00&sign=forged&sign_type=RSA2")
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://shop.example.com/paid?app=shop&from=alipay&out_trade_no=R0001" {
			t.Fatalf("answer %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		// The return proves nothing: the order is unchanged and nothing is recorded.
		if got := e.getOrder("shop", "R0001"); got.Status != "pending" || got.Version != 1 {
			t.Fatalf("order = %+v", got)
		}
		if ev := e.evidence("out_trade_no=R0001"); len(ev) != 0 {
			t.Fatalf("evidence = %+v", ev)
		}
		if resp := get("/return/alipay/nosuchapp?out_trade_no=R0001"); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("unknown app: status %d", resp.StatusCode)
		}
	})
}

func TestAlipayNotify_RejectedCap(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		e.http.Service.Processor.RejectedPerMinute = 3
		newAlipayOrder(e, "C0001", 100)
		body := alipayNotify(t, paidFields("C0001", "1.00"))
		forged := []byte(strings.Replace(string(body), "total_amount=1.00", "total_amount=2.00", 1))
		for i := 0; i < 5; i++ {
			if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, forged); ans != "fail" {
				t.Fatalf("answer %q", ans)
			}
		}
		if ev := e.evidence("app=shop&verdict=rejected"); len(ev) != 3 {
			t.Fatalf("%d rejected records stored, want the cap of 3", len(ev))
		}
		// Verified notifications are never capped.
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, body); ans != "success" {
			t.Fatalf("valid answer %q", ans)
		}
	})
}

// TestNotify_CredentialHeadersNotKept: a notification's evidence keeps its headers but the
// credentials a proxy or browser may add (Authorization, Proxy-Authorization, Cookie).
func TestNotify_CredentialHeadersNotKept(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		newAlipayOrder(e, "H0001", 100)
		h := http.Header{"Authorization": {"Bearer s3cret-a"}, "Proxy-Authorization": {"Basic s3cret-p"}, "Cookie": {"sid=s3cret-c"}, "X-Trace": {"kept"}}
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, h, alipayNotify(t, paidFields("H0001", "1.00"))); ans != "success" {
			t.Fatalf("answer %q", ans)
		}
		var out struct {
			Notifications []struct {
				Headers http.Header `json:"headers"`
			} `json:"notifications"`
		}
		if code := e.api("GET", "/v1/notifications?out_trade_no=H0001", nil, &out); code != http.StatusOK || len(out.Notifications) != 1 {
			t.Fatalf("notifications: %d, %d records", code, len(out.Notifications))
		}
		got := out.Notifications[0].Headers
		if got.Get("X-Trace") != "kept" {
			t.Fatalf("headers %v: the others are not kept", got)
		}
		for _, k := range []string{"Authorization", "Proxy-Authorization", "Cookie"} {
			if v := got.Get(k); v != "" {
				t.Errorf("evidence keeps %s: %q", k, v)
			}
		}
	})
}

// TestLongPoll_StopOnShutdown: a graceful shutdown does not wait out long-polls.
func TestLongPoll_StopOnShutdown(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		newAlipayOrder(e, "S0001", 100)
		done := make(chan order, 1)
		go func() {
			var o order
			e.api("GET", "/v1/orders/shop/S0001?wait=60s", nil, &o)
			done <- o
		}()
		e.waitLongPoll()
		e.http.StopLongPolls()
		select {
		case o := <-done:
			if o.Status != "pending" || o.OutTradeNo != "S0001" {
				t.Fatalf("answer %+v", o)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the long-poll did not answer after StopLongPolls")
		}
	})
}
