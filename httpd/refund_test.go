package httpd_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/internal/testsign"
	"github.com/paynotify/paynotify/provider"
)

// fakeAlipay answers gateway calls with a node per method, signed (unless unsigned) by the test
// Alipay key through openssl.
type fakeAlipay struct {
	t        *testing.T
	mu       sync.Mutex
	nodes    map[string]string // method → node JSON
	unsigned map[string]bool
	calls    map[string]int
}

func (f *fakeAlipay) set(method, node string, signed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[method], f.unsigned[method] = node, !signed
}

func (f *fakeAlipay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := r.URL.Query().Get("method")
	f.mu.Lock()
	node, unsigned := f.nodes[method], f.unsigned[method]
	f.calls[method]++
	f.mu.Unlock()
	name := strings.ReplaceAll(method, ".", "_") + "_response"
	body := `{"` + name + `":` + node
	if !unsigned {
		body += `,"sign":"` + testsign.RSA2(f.t, alipayKeyFile, []byte(node)) + `"`
	}
	w.Header().Set("Content-Type", "text/html;charset=utf-8")
	w.Write([]byte(body + "}"))
}

// newFakeAlipayApp returns an Alipay app named name whose gateway is a fakeAlipay on loopback.
func newFakeAlipayApp(t *testing.T, name string) (*fakeAlipay, *paynotify.App) {
	t.Helper()
	fake := &fakeAlipay{t: t, nodes: map[string]string{}, unsigned: map[string]bool{}, calls: map[string]int{}}
	gw := httptest.NewServer(fake)
	t.Cleanup(gw.Close)
	pub, err := os.ReadFile("testdata/alipay_public.pem")
	if err != nil {
		t.Fatal(err)
	}
	alipayPub, err := alipay.ParsePublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	client, err := alipay.NewClient(alipay.Config{AppID: alipayAppID, PrivateKey: testAppKey(t), AlipayPublicKey: alipayPub, Gateway: gw.URL + "/gateway.do"})
	if err != nil {
		t.Fatal(err)
	}
	return fake, &paynotify.App{Name: name, Provider: paynotify.ProviderAlipay, AppID: alipayAppID, SellerIDs: []string{alipaySeller},
		Gateway: &provider.Alipay{Client: client}}
}

func (f *fakeAlipay) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// TestAlipayRefund_Outcomes: only a signed, final refusal fails a refund; an unknown outcome keeps
// it pending, and the same out_request_no is asked again, so the money is never sent twice.
func TestAlipayRefund_Outcomes(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		fake, app := newFakeAlipayApp(t, "shop2")
		e := newEnv(t, s, app)
		pay := func(otn string) {
			t.Helper()
			e.createOrder(map[string]any{"app": "shop2", "out_trade_no": otn, "amount": 500, "subject": "s", "channel": "alipay.app"})
			if _, ans := e.postNotify("/notify/alipay/shop2", alipayContentType, nil, alipayNotify(t, paidFields(otn, "5.00"))); ans != "success" {
				t.Fatalf("payment answer %q", ans)
			}
		}
		refund := func(otn, no string) (int, paynotify.Refund, string) {
			t.Helper()
			var out struct {
				paynotify.Refund
				Error struct{ Code string } `json:"error"`
			}
			code := e.api("POST", "/v1/orders/shop2/"+otn+"/refunds", map[string]any{"amount": 100, "out_request_no": no}, &out)
			return code, out.Refund, out.Error.Code
		}
		status := func(otn, no string) paynotify.RefundStatus {
			t.Helper()
			var list struct {
				Refunds []paynotify.Refund `json:"refunds"`
			}
			e.api("GET", "/v1/orders/shop2/"+otn+"/refunds", nil, &list)
			for _, r := range list.Refunds {
				if r.OutRequestNo == no {
					return r.Status
				}
			}
			return ""
		}
		// The refund query's "no such refund" about refund RF0001 of otn (an answer about another
		// refund or order is no answer about this one).
		notFoundOf := func(otn string) string {
			return `{"code":"10000","msg":"Success","trade_no":"20261129220014000000000001","out_trade_no":"` + otn + `","out_request_no":"RF0001"}`
		}

		t.Run("OKUnknownOutcomeStaysPending", func(t *testing.T) {
			pay("F0001")
			fake.set("alipay.trade.refund", `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.SYSTEM_ERROR","sub_msg":"系统错误"}`, true)
			fake.set("alipay.trade.fastpay.refund.query", notFoundOf("F0001"), true)
			code, _, ecode := refund("F0001", "RF0001")
			if code != http.StatusBadGateway || ecode != "provider_unavailable" || status("F0001", "RF0001") != paynotify.RefundPending {
				t.Fatalf("answer %d %s, refund %s; want 502 provider_unavailable and pending", code, ecode, status("F0001", "RF0001"))
			}
			// The merchant retries with the same out_request_no: Alipay is asked again and confirms.
			fake.set("alipay.trade.refund", `{"code":"10000","msg":"Success","trade_no":"20261129220014000000000001","out_trade_no":"F0001","fund_change":"Y","refund_fee":"1.00"}`, true)
			code, rf, _ := refund("F0001", "RF0001")
			if code != http.StatusOK || rf.Status != paynotify.RefundSucceeded {
				t.Fatalf("retry: %d %+v", code, rf)
			}
			if got := e.getOrder("shop2", "F0001"); got.RefundedAmount != 100 {
				t.Fatalf("order = %+v", got)
			}
			if n := fake.count("alipay.trade.refund"); n != 2 {
				t.Fatalf("%d refund calls, want 2 (one per request)", n)
			}
		})

		t.Run("ErrUnsignedRefusalStaysPending", func(t *testing.T) {
			pay("F0002")
			fake.set("alipay.trade.refund", `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.REFUND_AMT_NOT_EQUAL_TOTAL","sub_msg":"退款金额超限"}`, false)
			fake.set("alipay.trade.fastpay.refund.query", notFoundOf("F0002"), true)
			if code, _, ecode := refund("F0002", "RF0001"); code != http.StatusBadGateway || ecode != "provider_unavailable" {
				t.Fatalf("answer %d %s, want 502", code, ecode)
			}
			if st := status("F0002", "RF0001"); st != paynotify.RefundPending {
				t.Fatalf("an unsigned refusal moved the refund to %s", st)
			}
		})

		t.Run("ErrFinalRefusalFails", func(t *testing.T) {
			pay("F0003")
			fake.set("alipay.trade.refund", `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.REFUND_AMT_NOT_EQUAL_TOTAL","sub_msg":"退款金额超限"}`, true)
			fake.set("alipay.trade.fastpay.refund.query", notFoundOf("F0003"), true)
			code, _, ecode := refund("F0003", "RF0001")
			if code != http.StatusUnprocessableEntity || ecode != "provider_error" || status("F0003", "RF0001") != paynotify.RefundFailed {
				t.Fatalf("answer %d %s, refund %s; want 422 provider_error and failed", code, ecode, status("F0003", "RF0001"))
			}
			n := 0
			for _, x := range e.events() {
				if x.Type == "refund.failed" && strings.Contains(string(x.Data), `"out_trade_no":"F0003"`) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%d refund.failed events, want 1", n)
			}
		})

		t.Run("ErrFinalRefusalUnconfirmedStaysPending", func(t *testing.T) {
			// A signed final refusal while the refund query does not answer: the refund may have
			// been made (a retry refused on the trade's status after a full refund), so it stays
			// pending, not failed (a reviewer helper's finding: recorded failed, refund.failed
			// raised, and the reconciliation never looked again).
			pay("F0005")
			fake.set("alipay.trade.refund", `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_STATUS_ERROR","sub_msg":"交易状态不合法"}`, true)
			fake.set("alipay.trade.fastpay.refund.query", `{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error","sub_msg":"系统繁忙"}`, false)
			code, _, ecode := refund("F0005", "RF0001")
			if code != http.StatusBadGateway || ecode != "provider_unavailable" || status("F0005", "RF0001") != paynotify.RefundPending {
				t.Fatalf("answer %d %s, refund %s; want 502 provider_unavailable and pending", code, ecode, status("F0005", "RF0001"))
			}
		})

		t.Run("ErrFinalRefusalSignedBusyQueryStaysPending", func(t *testing.T) {
			// The refund query's answer is signed but says nothing of the refund (a signed 20000,
			// a rate limit): not "no such refund", so the final refusal does not fail it.
			pay("F0007")
			fake.set("alipay.trade.refund", `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_STATUS_ERROR","sub_msg":"交易状态不合法"}`, true)
			for _, q := range []string{`{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error","sub_msg":"系统繁忙"}`,
				`{"code":"40005","msg":"Call Limited","sub_code":"aop.ACQ.TRADE_QUERY_LIMIT","sub_msg":"调用频次超限"}`} {
				fake.set("alipay.trade.fastpay.refund.query", q, true)
				code, _, ecode := refund("F0007", "RF0001")
				if code != http.StatusBadGateway || ecode != "provider_unavailable" || status("F0007", "RF0001") != paynotify.RefundPending {
					t.Fatalf("query %s: answer %d %s, refund %s; want 502 and pending", q, code, ecode, status("F0007", "RF0001"))
				}
			}
		})

		t.Run("ErrReplayOverPendingStaysPending", func(t *testing.T) {
			// The first refund's answer is lost (pending, made at Alipay), and its signed
			// fund_change=Y answer comes back for a second refund of the same amount: its running
			// total has no room for the second beside the pending first.
			pay("F0008")
			fake.set("alipay.trade.refund", `{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error","sub_msg":"系统繁忙"}`, true)
			fake.set("alipay.trade.fastpay.refund.query", `{"code":"10000","msg":"Success","trade_no":"20261129220014000000000008","out_trade_no":"F0008","out_request_no":"RF0001"}`, true)
			refund("F0008", "RF0001")
			if st := status("F0008", "RF0001"); st != paynotify.RefundPending {
				t.Fatalf("first refund %s, want pending", st)
			}
			fake.set("alipay.trade.refund", `{"code":"10000","msg":"Success","trade_no":"20261129220014000000000008","out_trade_no":"F0008","fund_change":"Y","refund_fee":"1.00"}`, true)
			fake.set("alipay.trade.fastpay.refund.query", `{"code":"10000","msg":"Success","trade_no":"20261129220014000000000008","out_trade_no":"F0008","out_request_no":"RF0002"}`, true)
			refund("F0008", "RF0002")
			if st := status("F0008", "RF0002"); st != paynotify.RefundPending {
				t.Fatalf("a replayed answer made the second refund %s beside a pending first, want pending", st)
			}
			if got := e.getOrder("shop2", "F0008"); got.RefundedAmount != 0 {
				t.Errorf("order refunded %d, want 0", got.RefundedAmount)
			}
		})

		t.Run("ErrReplayedFundChangeStaysPending", func(t *testing.T) {
			// The signed answer of the order's first refund (fund_change=Y, running total 1.00)
			// comes back for a second refund: it names no out_request_no, and its total has no
			// room for the second; the refund query, which does not find the second, decides
			// (a reviewer helper's finding: the second was recorded succeeded and announced).
			pay("F0006")
			first := `{"code":"10000","msg":"Success","trade_no":"20261129220014000000000006","out_trade_no":"F0006","fund_change":"Y","refund_fee":"1.00"}`
			fake.set("alipay.trade.refund", first, true)
			if code, rf, _ := refund("F0006", "RF0001"); code != http.StatusCreated || rf.Status != paynotify.RefundSucceeded {
				t.Fatalf("first refund: %d %+v", code, rf)
			}
			queries := fake.count("alipay.trade.fastpay.refund.query")
			fake.set("alipay.trade.fastpay.refund.query", `{"code":"10000","msg":"Success","trade_no":"20261129220014000000000006","out_trade_no":"F0006","out_request_no":"RF0002"}`, true)
			refund("F0006", "RF0002") // the same answer again
			if st := status("F0006", "RF0002"); st != paynotify.RefundPending {
				t.Fatalf("a replayed fund_change answer made the second refund %s, want pending", st)
			}
			if n := fake.count("alipay.trade.fastpay.refund.query") - queries; n != 1 {
				t.Errorf("%d refund queries for the second refund, want 1", n)
			}
			if got := e.getOrder("shop2", "F0006"); got.RefundedAmount != 100 {
				t.Errorf("order refunded %d, want 100", got.RefundedAmount)
			}
			for _, x := range e.events() {
				if x.Type == "order.refunded" && strings.Contains(string(x.Data), `"RF0002"`) {
					t.Errorf("order.refunded announced for the refund Alipay did not make: %s", x.Data)
				}
			}
		})

		t.Run("OKQueryConfirms", func(t *testing.T) {
			pay("F0004")
			// The call times out at Alipay's side (20000), but the refund happened: the query says so.
			fake.set("alipay.trade.refund", `{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error","sub_msg":"系统繁忙"}`, true)
			fake.set("alipay.trade.fastpay.refund.query", `{"code":"10000","msg":"Success","trade_no":"20261129220014000000000004","out_trade_no":"F0004","out_request_no":"RF0001","total_amount":"5.00","refund_amount":"1.00","refund_status":"REFUND_SUCCESS"}`, true)
			code, rf, _ := refund("F0004", "RF0001")
			if code != http.StatusCreated || rf.Status != paynotify.RefundSucceeded {
				t.Fatalf("answer %d %+v", code, rf)
			}
			if got := e.getOrder("shop2", "F0004"); got.RefundedAmount != 100 || got.Status != "paid" {
				t.Fatalf("order = %+v", got)
			}
		})
	})
}

// TestAlipayRefund_FinalRefusalBareNotFound: Alipay's refund query answers "no such refund" with
// code 10000 and no data at all ("查询数据全部为空。仅返回一个成功的标记": helei112g/payment#99;
// the API doc: "如果没有查询到则代表未退款成功"). 5b51e46 took such an answer for no answer (it
// names neither this order nor this refund), so a signed, final refusal of the refund
// (ACQ.REFUND_AMT_NOT_EQUAL_TOTAL) left it pending, refused again at every check (a reviewer's
// finding). A number absent names no other refund: the refund fails.
func TestAlipayRefund_FinalRefusalBareNotFound(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		fake, app := newFakeAlipayApp(t, "shop2")
		e := newEnv(t, s, app)
		e.createOrder(map[string]any{"app": "shop2", "out_trade_no": "F0009", "amount": 500, "subject": "s", "channel": "alipay.app"})
		if _, ans := e.postNotify("/notify/alipay/shop2", alipayContentType, nil, alipayNotify(t, paidFields("F0009", "5.00"))); ans != "success" {
			t.Fatalf("payment answer %q", ans)
		}
		fake.set("alipay.trade.refund", `{"code":"40004","msg":"Business Failed","sub_code":"ACQ.REFUND_AMT_NOT_EQUAL_TOTAL","sub_msg":"退款金额超限"}`, true)
		fake.set("alipay.trade.fastpay.refund.query", `{"code":"10000","msg":"Success"}`, true)
		var out struct {
			paynotify.Refund
			Error struct{ Code string } `json:"error"`
		}
		code := e.api("POST", "/v1/orders/shop2/F0009/refunds", map[string]any{"amount": 100, "out_request_no": "RF0001"}, &out)
		t.Logf("answer %d %s, refund %s", code, out.Error.Code, out.Refund.Status)
		if code != http.StatusUnprocessableEntity || out.Error.Code != "provider_error" {
			t.Errorf("a signed final refusal with the refund query's bare \"no such refund\": %d %s; want 422 provider_error, refund failed", code, out.Error.Code)
		}
		// The reconciliation's check of the pending refund: the refund query says "no such
		// refund", the refund is asked for again, refused again: still pending, every time.
		svc := e.http.Service
		for i := range 3 {
			o, _ := s.GetOrder(t.Context(), "shop2", "F0009")
			rfs, _ := s.ListRefunds(t.Context(), "shop2", "F0009")
			res, err := svc.CheckRefund(t.Context(), app, o, rfs[0], false)
			rfs, _ = s.ListRefunds(t.Context(), "shop2", "F0009")
			t.Logf("check %d: notFound=%v err=%v; refund %s", i+1, res != nil && res.NotFound, err, rfs[0].Status)
			if i == 2 && rfs[0].Status == paynotify.RefundPending {
				t.Errorf("refused %d times by Alipay, the refund is still pending", fake.count("alipay.trade.refund"))
			}
		}
	})
}
