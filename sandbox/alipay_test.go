package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/internal/alipaywire"
)

func TestAlipay_PagePayLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	m := newMerchant(t, alipayOK)
	c := b.alipayClient(t)
	ctx := waitCtx(t, 20*time.Second)

	pr, err := c.PagePay(alipay.TradePagePay{OutTradeNo: "page_1", TotalAmount: 1000, Subject: "测试 order", NotifyURL: m.srv.URL + "/notify", ReturnURL: "http://merchant.example/return"})
	if err != nil {
		t.Fatal(err)
	}
	// Before the buyer opens the cashier the trade does not exist.
	_, err = c.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "page_1"})
	var ae *alipay.Error
	if !errors.As(err, &ae) || ae.SubCode != "ACQ.TRADE_NOT_EXIST" || !ae.Signed {
		t.Fatalf("query before open: %v", err)
	}
	// The buyer's browser opens the GET URL: the cashier page.
	resp, err := http.Get(pr.URL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !contains(string(page), "Alipay sandbox cashier") || !contains(string(page), "page_1") {
		t.Fatalf("cashier page: %s", page)
	}
	_, err = c.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "page_1"})
	if !errors.As(err, &ae) || ae.SubCode != "ACQ.TRADE_NOT_EXIST" {
		t.Fatalf("query after viewing cashier: %v", err)
	}
	tr, _ := b.sb.Trades(ProviderAlipay, "page_1")
	token := tr[0].Token

	// Scan / log in: the trade exists, WAIT_BUYER_PAY.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	mustPost(t, noRedirect, b.srv.URL+"/sandbox/alipay/cashier/"+token+"/open")
	q, err := c.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "page_1"})
	if err != nil || q.TradeStatus != alipay.TradeWaitBuyerPay || q.TotalAmount != 1000 {
		t.Fatalf("query after open: %+v %v", q, err)
	}
	// Pay: redirected to the signed return_url.
	resp = mustPost(t, noRedirect, b.srv.URL+"/sandbox/alipay/cashier/"+token+"/pay")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "http://merchant.example/return?") {
		t.Fatalf("pay: %d %q", resp.StatusCode, loc)
	}
	ret, err := c.VerifyReturn(loc[strings.Index(loc, "?"):])
	if err != nil || ret["method"] != "alipay.trade.page.pay.return" || ret["total_amount"] != "10.00" || ret["trade_no"] != q.TradeNo {
		t.Fatalf("return_url: %v %v", ret, err)
	}
	if _, ok := ret["trade_status"]; ok {
		t.Fatal("return_url carries trade_status")
	}

	as, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "page_1"}, 1)
	if err != nil {
		t.Fatalf("no acked attempt: %v %+v", err, as)
	}
	reqs := m.requests()
	if len(reqs) != 1 {
		t.Fatalf("merchant got %d requests", len(reqs))
	}
	ct := reqs[0].header.Get("Content-Type")
	if ct != "application/x-www-form-urlencoded; text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	n, err := c.VerifyNotification(http.Header{"Content-Type": {ct}}, reqs[0].body)
	if err != nil {
		t.Fatalf("notification does not verify: %v", err)
	}
	if n.TradeStatus != alipay.TradeSuccess || n.TotalAmount != 1000 || n.OutTradeNo != "page_1" || n.AppID != b.keys.AlipayAppID ||
		n.SellerID != b.keys.AlipaySellerID || n.Subject != "测试 order" || n.IsRefund() || n.GmtPayment.IsZero() {
		t.Fatalf("notification: %+v", n)
	}

	// Refunds: partial, repeated, the rest.
	r1, err := c.TradeRefund(ctx, alipay.TradeRefund{OutTradeNo: "page_1", RefundAmount: 300, OutRequestNo: "r1"})
	if err != nil || !r1.FundChange || r1.RefundFee != 300 {
		t.Fatalf("refund 1: %+v %v", r1, err)
	}
	r1b, err := c.TradeRefund(ctx, alipay.TradeRefund{OutTradeNo: "page_1", RefundAmount: 300, OutRequestNo: "r1"})
	if err != nil || r1b.FundChange || r1b.RefundFee != 300 {
		t.Fatalf("refund 1 again: %+v %v", r1b, err)
	}
	_, err = c.TradeRefund(ctx, alipay.TradeRefund{OutTradeNo: "page_1", RefundAmount: 400, OutRequestNo: "r1"})
	if !errors.As(err, &ae) || ae.SubCode != "ACQ.DISCORDANT_REPEAT_REQUEST" {
		t.Fatalf("discordant repeat: %v", err)
	}
	_, err = c.TradeRefund(ctx, alipay.TradeRefund{OutTradeNo: "page_1", RefundAmount: 800, OutRequestNo: "r2"})
	if !errors.As(err, &ae) || ae.SubCode != "ACQ.REASON_TRADE_REFUND_FEE_ERR" {
		t.Fatalf("too much: %v", err)
	}
	r2, err := c.TradeRefund(ctx, alipay.TradeRefund{OutTradeNo: "page_1", RefundAmount: 700, OutRequestNo: "r2"})
	if err != nil || !r2.FundChange || r2.RefundFee != 1000 {
		t.Fatalf("refund 2: %+v %v", r2, err)
	}
	q, err = c.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "page_1"})
	if err != nil || q.TradeStatus != alipay.TradeClosed {
		t.Fatalf("query after full refund: %+v %v", q, err)
	}
	rq, err := c.TradeFastpayRefundQuery(ctx, alipay.TradeFastpayRefundQuery{OutTradeNo: "page_1", OutRequestNo: "r2"})
	if err != nil || rq.RefundStatus != "REFUND_SUCCESS" || rq.RefundAmount != 700 || rq.TotalAmount != 1000 {
		t.Fatalf("refund query: %+v %v", rq, err)
	}
	rq, err = c.TradeFastpayRefundQuery(ctx, alipay.TradeFastpayRefundQuery{OutTradeNo: "page_1", OutRequestNo: "nope"})
	if err != nil || rq.RefundStatus != "" || rq.RefundAmount != 0 {
		t.Fatalf("unknown refund query: %+v %v", rq, err)
	}

	// The full refund's TRADE_CLOSED is not notified for page pay (docs/alipay.md, "Trade
	// statuses"): two notifications, the payment's and the partial refund's.
	if _, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "page_1"}, 2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // a third would have been sent by now (time scale 1000)
	reqs = m.requests()
	var statuses []string
	for _, r := range reqs {
		n, err := c.VerifyNotification(r.header, r.body)
		if err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, n.TradeStatus+"/"+alipay.FormatAmount(n.RefundFee)+"/"+n.OutBizNo)
		if n.TradeStatus == alipay.TradeClosed && n.GmtClose.IsZero() {
			t.Error("full refund without gmt_close")
		}
	}
	want := "TRADE_SUCCESS/0.00/,TRADE_SUCCESS/3.00/r1"
	if strings.Join(statuses, ",") != want {
		t.Fatalf("notifications %v, want %s", statuses, want)
	}
}

// TestAlipay_WapFullRefundNotified: a wap trade's full refund is notified, TRADE_CLOSED with the
// refund's fields and gmt_close (while a page-pay trade's is not: TestAlipay_PagePayLifecycle).
func TestAlipay_WapFullRefundNotified(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	m := newMerchant(t, alipayOK)
	c := b.alipayClient(t)
	ctx := waitCtx(t, 20*time.Second)
	wr, err := c.WapPay(alipay.TradeWapPay{OutTradeNo: "wap_1", TotalAmount: 1000, Subject: "s", NotifyURL: m.srv.URL + "/notify", ReturnURL: "http://merchant.example/return"})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(wr.URL) // the buyer's browser opens the cashier
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tr, _ := b.sb.Trades(ProviderAlipay, "wap_1")
	if len(tr) != 1 {
		t.Fatalf("%d trades after the cashier was opened", len(tr))
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	mustPost(t, noRedirect, b.srv.URL+"/sandbox/alipay/cashier/"+tr[0].Token+"/open")
	mustPost(t, noRedirect, b.srv.URL+"/sandbox/alipay/cashier/"+tr[0].Token+"/pay")
	if r, err := c.TradeRefund(ctx, alipay.TradeRefund{OutTradeNo: "wap_1", RefundAmount: 1000, OutRequestNo: "r1"}); err != nil || !r.FundChange {
		t.Fatalf("refund: %+v %v", r, err)
	}
	if _, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "wap_1"}, 2); err != nil {
		t.Fatal(err)
	}
	reqs := m.requests()
	n, err := c.VerifyNotification(reqs[len(reqs)-1].header, reqs[len(reqs)-1].body)
	if err != nil || n.TradeStatus != alipay.TradeClosed || n.RefundFee != 1000 || n.OutBizNo != "r1" || n.GmtClose.IsZero() {
		t.Fatalf("the full refund's notification: %+v %v", n, err)
	}
}

func mustPost(t *testing.T, c *http.Client, u string) *http.Response {
	t.Helper()
	resp, err := c.Post(u, "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestAlipay_GatewaySignature(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	c := b.alipayClient(t)
	ctx := waitCtx(t, 10*time.Second)

	t.Run("OK", func(t *testing.T) {
		_, err := c.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "nothing"})
		var ae *alipay.Error
		if !errors.As(err, &ae) || ae.SubCode != "ACQ.TRADE_NOT_EXIST" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrSignature", func(t *testing.T) {
		params := map[string]string{"app_id": b.keys.AlipayAppID, "method": "alipay.trade.query", "charset": "utf-8", "sign_type": "RSA2",
			"timestamp": alipay.FormatTime(time.Now()), "version": "1.0", "biz_content": `{"out_trade_no":"x"}`}
		if err := c.SignParams(params); err != nil {
			t.Fatal(err)
		}
		params["biz_content"] = `{"out_trade_no":"y"}` // tampered after signing
		body := postGateway(t, b, params)
		if !contains(body, `"sub_code":"isv.invalid-signature"`) || !contains(body, `"code":"40002"`) || contains(body, `"sign"`) {
			t.Fatalf("got %s", body)
		}
		if !contains(body, `out_trade_no\":\"y`) {
			t.Fatalf("sub_msg lacks the canonical string: %s", body)
		}
	})
	t.Run("ErrSignTypeNotSigned", func(t *testing.T) {
		// sign_type is part of the signed content: signing without it fails.
		params := map[string]string{"app_id": b.keys.AlipayAppID, "method": "alipay.trade.query", "charset": "utf-8",
			"timestamp": alipay.FormatTime(time.Now()), "version": "1.0", "biz_content": `{"out_trade_no":"x"}`}
		priv, _ := alipay.ParsePrivateKey([]byte(b.keys.AlipayAppPrivateKey))
		sig, _ := alipaywire.Sign(priv, string(alipay.RSA2), []byte(alipaywire.CanonicalRequest(params)))
		params["sign"], params["sign_type"] = sig, "RSA2"
		if body := postGateway(t, b, params); !contains(body, "isv.invalid-signature") {
			t.Fatalf("got %s", body)
		}
	})
	t.Run("ErrUnknownApp", func(t *testing.T) {
		params := map[string]string{"app_id": "2021999999999999", "method": "alipay.trade.query", "charset": "utf-8", "sign_type": "RSA2",
			"timestamp": alipay.FormatTime(time.Now()), "version": "1.0", "sign": "AAAA"}
		if body := postGateway(t, b, params); !contains(body, "isv.invalid-app-id") {
			t.Fatalf("got %s", body)
		}
	})
	t.Run("ErrTimestamp", func(t *testing.T) {
		params := map[string]string{"app_id": b.keys.AlipayAppID, "method": "alipay.trade.query", "charset": "utf-8", "sign_type": "RSA2",
			"timestamp": "2024/01/01", "version": "1.0", "sign": "AAAA"}
		if body := postGateway(t, b, params); !contains(body, "isv.invalid-timestamp") {
			t.Fatalf("got %s", body)
		}
	})
	t.Run("ErrUnknownMethod", func(t *testing.T) {
		params := map[string]string{"app_id": b.keys.AlipayAppID, "method": "alipay.trade.nope", "sign": "x"}
		if body := postGateway(t, b, params); !contains(body, `{"error_response":`) {
			t.Fatalf("got %s", body)
		}
	})
}

func postGateway(t *testing.T, b *testBundle, params map[string]string) string {
	t.Helper()
	v := url.Values{}
	for k, val := range params {
		v.Set(k, val)
	}
	resp, err := http.PostForm(b.srv.URL+"/sandbox/alipay/gateway.do", v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

func TestAlipay_AppPayAndClose(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	m := newMerchant(t, alipayOK)
	c := b.alipayClient(t)
	ctx := waitCtx(t, 20*time.Second)

	// A cancelled app payment leaves no trade.
	os1, _ := c.AppPay(alipay.TradeAppPay{OutTradeNo: "app_1", TotalAmount: 1, Subject: "s", NotifyURL: m.srv.URL})
	status, _, _, err := b.sb.AlipayAppPay(os1, "6001")
	if err != nil || status != "6001" {
		t.Fatalf("6001: %s %v", status, err)
	}
	if _, err := c.TradeClose(ctx, alipay.TradeClose{OutTradeNo: "app_1"}); !isSub(err, "ACQ.TRADE_NOT_EXIST") {
		t.Fatalf("close unopened: %v", err)
	}
	// Paid through the SDK stand-in over HTTP.
	resp, err := http.Post(b.srv.URL+"/sandbox/alipay/app-sdk?result=9000", "text/plain", strings.NewReader(os1))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !contains(string(body), `"resultStatus": "9000"`) || !contains(string(body), `alipay_trade_app_pay_response`) {
		t.Fatalf("app-sdk: %s", body)
	}
	if _, err := c.TradeClose(ctx, alipay.TradeClose{OutTradeNo: "app_1"}); !isSub(err, "ACQ.TRADE_STATUS_ERROR") {
		t.Fatalf("close paid: %v", err)
	}

	// A second app order opened and closed: app pay notifies TRADE_CLOSED.
	os2, _ := c.AppPay(alipay.TradeAppPay{OutTradeNo: "app_2", TotalAmount: 250, Subject: "s", NotifyURL: m.srv.URL})
	if _, err := b.sb.Act("open", ActionRequest{OrderString: os2}); err == nil {
		// open with an orderString is not an action: it needs the app SDK
	}
	status, _, _, _ = b.sb.AlipayAppPay(os2, "4000")
	if status != "4000" {
		t.Fatal(status)
	}
	if _, err := b.sb.Act("open", ActionRequest{OutTradeNo: "app_2"}); err != nil {
		t.Fatal(err)
	}
	cl, err := c.TradeClose(ctx, alipay.TradeClose{OutTradeNo: "app_2"})
	if err != nil || cl.OutTradeNo != "app_2" || cl.TradeNo == "" {
		t.Fatalf("close: %+v %v", cl, err)
	}
	if _, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "app_2"}, 1); err != nil {
		t.Fatal(err)
	}
	ns, _ := b.sb.Notifications("app_2")
	if len(ns) != 1 || ns[0].EventType != alipay.TradeClosed {
		t.Fatalf("app_2 notifications %+v", ns)
	}
	n, err := c.VerifyNotification(http.Header{"Content-Type": {ns[0].ContentType}}, ns[0].Body)
	if err != nil || n.GmtClose.IsZero() || n.RefundFee != 0 {
		t.Fatalf("close notification %+v %v", n, err)
	}
}

func isSub(err error, sub string) bool {
	var ae *alipay.Error
	return errors.As(err, &ae) && ae.SubCode == sub
}

func TestAlipay_Precreate(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	m := newMerchant(t, alipayOK)
	c := b.alipayClient(t)
	ctx := waitCtx(t, 20*time.Second)
	pc, err := c.TradePrecreate(ctx, alipay.TradePrecreate{OutTradeNo: "qr_1", TotalAmount: 88, Subject: "s", NotifyURL: m.srv.URL})
	if err != nil || !strings.HasPrefix(pc.QRCode, b.srv.URL+"/sandbox/alipay/cashier/") {
		t.Fatalf("precreate %+v %v", pc, err)
	}
	if !contains(string(pc.Raw), `\/sandbox\/alipay`) {
		t.Errorf("qr_code not \\/-escaped: %s", pc.Raw)
	}
	if _, err := c.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "qr_1"}); !isSub(err, "ACQ.TRADE_NOT_EXIST") {
		t.Fatalf("query before scan: %v", err)
	}
	if _, err := b.sb.Act("pay", ActionRequest{URL: pc.QRCode}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "qr_1"}, 1); err != nil {
		t.Fatal(err)
	}
	q, err := c.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "qr_1"})
	if err != nil || q.TradeStatus != alipay.TradeSuccess {
		t.Fatalf("%+v %v", q, err)
	}
}

// TestAlipay_OrderLimits: orders Alipay refuses are refused (a reviewer helper's finding: a
// 1,000-character subject and timeout_express "1.5h", read as 15 days, passed); those at the
// limits are taken.
func TestAlipay_OrderLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	c := b.alipayClient(t)
	ctx := waitCtx(t, 20*time.Second)
	for i, p := range []alipay.TradePrecreate{
		{Subject: strings.Repeat("商", 257)},
		{Subject: "s", Body: strings.Repeat("b", 129)},
		{Subject: "s", TimeoutExpress: "1.5h"},
		{Subject: "s", TimeoutExpress: "90"},
		{Subject: "s", TimeoutExpress: "16d"},
		{Subject: "s", TimeoutExpress: "0m"},
	} {
		p.OutTradeNo, p.TotalAmount = fmt.Sprintf("lim_bad_%d", i), 100
		if _, err := c.TradePrecreate(ctx, p); !isSub(err, "ACQ.INVALID_PARAMETER") {
			t.Errorf("%+v: %v, want ACQ.INVALID_PARAMETER", p, err)
		}
	}
	for i, p := range []alipay.TradePrecreate{
		{Subject: strings.Repeat("商", 256), Body: strings.Repeat("b", 128), TimeoutExpress: "90m"},
		{Subject: "s", TimeoutExpress: "15d"},
		{Subject: "s", TimeoutExpress: "1c"},
	} {
		p.OutTradeNo, p.TotalAmount = fmt.Sprintf("lim_ok_%d", i), 100
		if _, err := c.TradePrecreate(ctx, p); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
}

// waitNotes waits until outTradeNo has n notifications.
func waitNotes(ctx context.Context, t *testing.T, sb *Sandbox, outTradeNo string, n int) []*Notification {
	t.Helper()
	for {
		ch := sb.changedCh()
		ns, _ := sb.Notifications(outTradeNo)
		if len(ns) >= n {
			return ns
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %d notifications of %s: %d", n, outTradeNo, len(ns))
		case <-ch:
		}
	}
}
