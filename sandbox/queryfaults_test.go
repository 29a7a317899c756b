package sandbox

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/internal/alipaywire"
	"github.com/paynotify/paynotify/wechatpay"
)

// lastQuery returns the newest query record of outTradeNo for api.
func lastQuery(t *testing.T, sb *Sandbox, api, outTradeNo string) QueryRecord {
	t.Helper()
	rs := sb.Queries(QueryFilter{API: api, OutTradeNo: outTradeNo})
	if len(rs) == 0 {
		t.Fatalf("no %s record for %s", api, outTradeNo)
	}
	return rs[len(rs)-1]
}

// TestQueryFaults sets each query fault on a paid trade of each provider and queries it by
// out_trade_no with the SDK clients, which verify the answers: a bad signature must fail
// verification, every other fault must verify and carry the false value. The same trade queried
// by its trade number must be answered truly, and the log must record the fault applied.
func TestQueryFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ac, wc := b.alipayClient(t), b.wechatClient(t)
	m := newMerchant(t, func(_ int, r *http.Request, _ []byte) (int, string) { return 200, "success" })

	alipayCases := []struct {
		fault, applied string
		check          func(t *testing.T, q *alipay.TradeQueryResponse, err error)
	}{
		{QueryFaultBadSignature, QueryFaultBadSignature, func(t *testing.T, q *alipay.TradeQueryResponse, err error) {
			if !errors.Is(err, alipay.ErrSignature) {
				t.Fatalf("got %+v %v, want a signature error", q, err)
			}
		}},
		{QueryFaultWrongOutTradeNo, QueryFaultWrongOutTradeNo, func(t *testing.T, q *alipay.TradeQueryResponse, err error) {
			if err != nil || q.OutTradeNo != "sandbox_wrong_out_trade_no" || q.TotalAmount != 100 {
				t.Fatalf("got %+v %v", q, err)
			}
		}},
		// Alipay's answer has no app id: the fault changes nothing and is not recorded.
		{QueryFaultWrongAppID, "", func(t *testing.T, q *alipay.TradeQueryResponse, err error) {
			if err != nil || q.OutTradeNo != "qf_a_wrong_app_id" || q.TotalAmount != 100 {
				t.Fatalf("got %+v %v", q, err)
			}
		}},
		{QueryFaultWrongAmount, QueryFaultWrongAmount, func(t *testing.T, q *alipay.TradeQueryResponse, err error) {
			if err != nil || q.TotalAmount != 101 || q.BuyerPayAmount != 101 || q.ReceiptAmount != 101 || q.OutTradeNo != "qf_a_wrong_amount" {
				t.Fatalf("got %+v %v", q, err)
			}
		}},
	}
	for _, tc := range alipayCases {
		t.Run("Alipay_"+tc.fault, func(t *testing.T) {
			t.Parallel()
			ctx := waitCtx(t, 10*time.Second)
			no := "qf_a_" + tc.fault
			payAlipayApp(t, b, ac, no, 100, m.srv.URL)
			truth, err := ac.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: no})
			if err != nil || truth.OutTradeNo != no || truth.TotalAmount != 100 {
				t.Fatalf("before the fault: %+v %v", truth, err)
			}
			if err := b.sb.SetFaults(no, Faults{Query: tc.fault}); err != nil {
				t.Fatal(err)
			}
			q, err := ac.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: no})
			tc.check(t, q, err)
			if r := lastQuery(t, b.sb, APIAlipayTradeQuery, no); r.Fault != tc.applied || r.Result != alipay.TradeSuccess || r.TradeNo != truth.TradeNo {
				t.Fatalf("record %+v, want fault %q", r, tc.applied)
			}
			// By trade_no the answer is true.
			byNo, err := ac.TradeQuery(ctx, alipay.TradeQuery{TradeNo: truth.TradeNo})
			if err != nil || byNo.OutTradeNo != no || byNo.TotalAmount != 100 {
				t.Fatalf("by trade_no: %+v %v", byNo, err)
			}
			if r := lastQuery(t, b.sb, APIAlipayTradeQuery, no); r.Fault != "" {
				t.Fatalf("by trade_no recorded fault %q", r.Fault)
			}
		})
	}

	wechatCases := []struct {
		fault string
		check func(t *testing.T, tx *wechatpay.Transaction, err error)
	}{
		{QueryFaultBadSignature, func(t *testing.T, tx *wechatpay.Transaction, err error) {
			// Every header is there and well formed (the timestamp is fresh, the serial known):
			// only the signature check fails.
			var ve *wechatpay.VerifyError
			if !errors.As(err, &ve) || ve.Check != wechatpay.CheckSignature || !errors.Is(err, wechatpay.ErrSignature) {
				t.Fatalf("got %+v %v, want a failed signature check", tx, err)
			}
			if !strings.Contains(string(ve.Message), `"out_trade_no":"qf_w_bad_signature"`) {
				t.Fatalf("the answer is not the true transaction: %s", ve.Message)
			}
		}},
		{QueryFaultWrongOutTradeNo, func(t *testing.T, tx *wechatpay.Transaction, err error) {
			if err != nil || tx.OutTradeNo != "sandbox_wrong_out_trade_no" || tx.Amount.Total != 100 || tx.AppID != b.keys.WechatAppID {
				t.Fatalf("got %+v %v", tx, err)
			}
		}},
		{QueryFaultWrongAppID, func(t *testing.T, tx *wechatpay.Transaction, err error) {
			if err != nil || tx.AppID != "wx0000000000009999" || tx.OutTradeNo != "qf_w_wrong_app_id" || tx.Amount.Total != 100 {
				t.Fatalf("got %+v %v", tx, err)
			}
		}},
		{QueryFaultWrongAmount, func(t *testing.T, tx *wechatpay.Transaction, err error) {
			if err != nil || tx.Amount.Total != 101 || tx.Amount.PayerTotal != 101 || tx.OutTradeNo != "qf_w_wrong_amount" {
				t.Fatalf("got %+v %v", tx, err)
			}
		}},
	}
	for _, tc := range wechatCases {
		t.Run("Wechat_"+tc.fault, func(t *testing.T) {
			t.Parallel()
			ctx := waitCtx(t, 10*time.Second)
			no := "qf_w_" + tc.fault
			prepayWechat(ctx, t, wc, no, 100, m.srv.URL)
			if _, err := b.sb.Act("pay", ActionRequest{OutTradeNo: no}); err != nil {
				t.Fatal(err)
			}
			truth, err := wc.QueryByOutTradeNo(ctx, no)
			if err != nil || truth.OutTradeNo != no || truth.Amount.Total != 100 || truth.AppID != b.keys.WechatAppID {
				t.Fatalf("before the fault: %+v %v", truth, err)
			}
			if err := b.sb.SetFaults(no, Faults{Query: tc.fault}); err != nil {
				t.Fatal(err)
			}
			tx, err := wc.QueryByOutTradeNo(ctx, no)
			tc.check(t, tx, err)
			if r := lastQuery(t, b.sb, APIWechatQuery, no); r.Fault != tc.fault || r.Result != "SUCCESS" || r.TradeNo != truth.TransactionID {
				t.Fatalf("record %+v, want fault %q", r, tc.fault)
			}
			byID, err := wc.QueryByTransactionID(ctx, truth.TransactionID)
			if err != nil || byID.OutTradeNo != no || byID.Amount.Total != 100 || byID.AppID != b.keys.WechatAppID {
				t.Fatalf("by transaction_id: %+v %v", byID, err)
			}
			if r := lastQuery(t, b.sb, APIWechatQueryByID, no); r.Fault != "" {
				t.Fatalf("by transaction_id recorded fault %q", r.Fault)
			}
		})
	}

	// The bad Alipay signature is a real one (256 bytes of RSA-2048) over other bytes: the node
	// itself is the true answer.
	t.Run("AlipayBadSignatureBytes", func(t *testing.T) {
		t.Parallel()
		no := "qf_a_badsig_raw"
		payAlipayApp(t, b, ac, no, 100, m.srv.URL)
		if err := b.sb.SetFaults(no, Faults{Query: QueryFaultBadSignature}); err != nil {
			t.Fatal(err)
		}
		params := map[string]string{"app_id": b.keys.AlipayAppID, "method": "alipay.trade.query", "charset": "utf-8", "sign_type": "RSA2",
			"timestamp": alipay.FormatTime(time.Now()), "version": "1.0", "biz_content": `{"out_trade_no":"` + no + `"}`}
		if err := ac.SignParams(params); err != nil {
			t.Fatal(err)
		}
		node, sign := splitAlipayAnswer(t, []byte(postGateway(t, b, params)), "alipay.trade.query")
		sig, err := base64.StdEncoding.DecodeString(sign)
		if err != nil || len(sig) != 256 {
			t.Fatalf("sign %q: %d bytes, %v", sign, len(sig), err)
		}
		if !strings.Contains(string(node), `"out_trade_no":"`+no+`"`) || !strings.Contains(string(node), `"total_amount":"1.00"`) {
			t.Fatalf("node %s", node)
		}
		pub, err := alipay.ParsePublicKey([]byte(b.keys.AlipayPublicKey))
		if err != nil {
			t.Fatal(err)
		}
		if err := alipaywire.Verify(pub, string(alipay.RSA2), node, sign); err == nil {
			t.Fatal("the bad signature verifies")
		}
	})

	// A trade that does not exist (or, at Alipay, not yet) is answered truly: a signed refusal.
	t.Run("OnlyExistingTrades", func(t *testing.T) {
		t.Parallel()
		ctx := waitCtx(t, 10*time.Second)
		for _, no := range []string{"qf_missing", "qf_unopened"} {
			if err := b.sb.SetFaults(no, Faults{Query: QueryFaultBadSignature}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.sb.CreateOrder(OrderRequest{Provider: ProviderAlipay, Product: "page", OutTradeNo: "qf_unopened", Amount: 1, NotifyURL: m.srv.URL}); err != nil {
			t.Fatal(err)
		}
		for _, no := range []string{"qf_missing", "qf_unopened"} {
			_, err := ac.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: no})
			var ae *alipay.Error
			if !errors.As(err, &ae) || ae.SubCode != "ACQ.TRADE_NOT_EXIST" || !ae.Signed {
				t.Fatalf("alipay %s: %v (want a verified ACQ.TRADE_NOT_EXIST)", no, err)
			}
		}
		_, err := wc.QueryByOutTradeNo(ctx, "qf_missing")
		var we *wechatpay.Error
		if !errors.As(err, &we) || we.Code != "ORDER_NOT_EXIST" || !we.Signed {
			t.Fatalf("wechatpay: %v (want a verified ORDER_NOT_EXIST)", err)
		}
		for _, api := range []string{APIAlipayTradeQuery, APIWechatQuery} {
			if r := lastQuery(t, b.sb, api, "qf_missing"); r.Fault != "" || !r.Failed {
				t.Fatalf("record %+v", r)
			}
		}
	})

	t.Run("ErrUnknownFault", func(t *testing.T) {
		t.Parallel()
		ctx := waitCtx(t, 10*time.Second)
		if err := b.sb.SetFaults("qf_bad", Faults{Query: "wrong_everything"}); !errors.Is(err, errBadAction) {
			t.Fatalf("in process: %v", err)
		}
		err := (&Client{BaseURL: b.srv.URL}).SetFaults(ctx, "qf_bad", Faults{Duplicate: 1, Query: "wrong_everything"})
		if err == nil || !strings.Contains(err.Error(), `unknown query fault "wrong_everything"`) {
			t.Fatalf("control API: %v", err)
		}
		resp, err := http.NewRequestWithContext(ctx, http.MethodPut, b.srv.URL+"/sandbox/api/faults?out_trade_no=qf_bad", strings.NewReader(`{"query":"nope"}`))
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(resp)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("PUT faults: HTTP %d, want 400", res.StatusCode)
		}
		if f, err := b.sb.GetFaults("qf_bad"); err != nil || f != (Faults{}) {
			t.Fatalf("refused faults were stored: %+v %v", f, err)
		}
		for _, q := range []string{"", QueryFaultBadSignature, QueryFaultWrongOutTradeNo, QueryFaultWrongAppID, QueryFaultWrongAmount} {
			if err := (Faults{Query: q}).validate(); err != nil {
				t.Fatalf("%q: %v", q, err)
			}
		}
	})
}

// TestFaults_MergeNew checks that the trade's double_pay and query faults lie over the global
// ones like the others.
func TestFaults_MergeNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		global, trade, want Faults
	}{
		{Faults{DoublePay: true}, Faults{}, Faults{DoublePay: true}},
		{Faults{}, Faults{DoublePay: true}, Faults{DoublePay: true}},
		{Faults{Query: QueryFaultWrongAmount}, Faults{}, Faults{Query: QueryFaultWrongAmount}},
		{Faults{Query: QueryFaultWrongAmount}, Faults{Query: QueryFaultBadSignature}, Faults{Query: QueryFaultBadSignature}},
	} {
		if got := tc.global.merge(tc.trade); got != tc.want {
			t.Errorf("%+v over %+v: %+v, want %+v", tc.trade, tc.global, got, tc.want)
		}
	}
}
