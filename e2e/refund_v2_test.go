package e2e_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sandbox"
)

const wechatV2Key = "0123456789abcdef0123456789abcdef"

// v2RefundNotification is an APIv2 refund notification as WeChat Pay sends it: an unsigned
// envelope, and req_info, the refund's <root> (its fields in WeChat Pay's order, out_refund_no
// first) encrypted with the openssl command line under the hex of md5(APIv2 key), AES-256-ECB.
func v2RefundNotification(t *testing.T, key string, fields [][2]string) []byte {
	t.Helper()
	var root strings.Builder
	root.WriteString("<root>")
	for _, f := range fields {
		fmt.Fprintf(&root, "<%s><![CDATA[%s]]></%s>", f[0], f[1], f[0])
	}
	root.WriteString("</root>")
	sum := md5.Sum([]byte(key))
	cmd := exec.Command("openssl", "enc", "-aes-256-ecb", "-K", hex.EncodeToString([]byte(hex.EncodeToString(sum[:]))), "-a", "-A")
	cmd.Stdin = strings.NewReader(root.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl enc: %v", err)
	}
	return []byte("<xml><return_code>SUCCESS</return_code><appid><![CDATA[wx0000000000000000]]></appid><mch_id><![CDATA[0000000000]]></mch_id>" +
		"<nonce_str><![CDATA[TeqClE3i0mvn3DrK]]></nonce_str><req_info><![CDATA[" + strings.TrimSpace(string(out)) + "]]></req_info></xml>")
}

// TestRefundWechatV2Notification (a reviewer helper's finding): an APIv2 refund notification's
// req_info is encrypted, not signed — blocks of a genuine one can be dropped or repeated to name
// another refund — so paynotify applies what WeChat Pay's signed refund query says about the
// refund it names, over loopback from the sandbox: a refund still PROCESSING there is answered
// FAIL (sent again), the same notification once the refund succeeded books it with the query's
// amount (not the notification's), and a refund number the query does not know is rejected,
// changing nothing. The envelope's appid and mch_id (here another merchant's) decide nothing.
func TestRefundWechatV2Notification(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{wechatV2Key: wechatV2Key})
		const otn = "e2e_refund_v2"
		e.faults(otn, sandbox.Faults{ManualRefund: true})
		e.payAndWait(paynotify.ChannelWechatNative, otn, 1000)
		if code, r := e.refund(wechatApp, otn, "refund_v2_r1", 300); code != http.StatusCreated || r.Status != "pending" {
			t.Fatalf("refund: HTTP %d %+v", code, r)
		}
		tr := e.trade(otn)
		rs := e.sandboxRefunds(otn)
		if len(rs) != 1 || rs[0].Status != "PROCESSING" {
			t.Fatalf("sandbox refunds %+v", rs)
		}
		claim := func(outRefundNo, refundFee string) []byte {
			return v2RefundNotification(t, wechatV2Key, [][2]string{{"out_refund_no", outRefundNo}, {"out_trade_no", otn},
				{"refund_account", "REFUND_SOURCE_UNSETTLED_FUNDS"}, {"refund_fee", refundFee}, {"refund_id", rs[0].RefundID},
				{"refund_recv_accout", "支付用户零钱"}, {"refund_request_source", "API"}, {"refund_status", "SUCCESS"},
				{"settlement_refund_fee", refundFee}, {"settlement_total_fee", "1000"}, {"success_time", "2026-12-07 10:00:00"},
				{"total_fee", "1000"}, {"transaction_id", tr.TradeNo}})
		}
		post := func(body []byte) string {
			t.Helper()
			resp, err := http.Post(e.URL+"/notify/wechatpay-v2/"+wechatApp, "text/xml", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("HTTP %d %s", resp.StatusCode, b)
			}
			return string(b)
		}
		const ok, fail = "<return_code><![CDATA[SUCCESS]]></return_code>", "<return_code><![CDATA[FAIL]]></return_code>"
		genuine := claim("refund_v2_r1", "300")

		// WeChat Pay's query says PROCESSING: not settled, whatever the notification says.
		if ans := post(genuine); !strings.Contains(ans, fail) {
			t.Fatalf("while PROCESSING: %s", ans)
		}
		if r := e.refunds(wechatApp, otn); len(r) != 1 || r[0].Status != "pending" {
			t.Fatalf("refunds after the unconfirmed notification: %+v", r)
		}

		// Settled at WeChat Pay (its own APIv3 notifications dropped): the same notification books it.
		e.faults(otn, sandbox.Faults{ManualRefund: true, DropFirst: 100})
		if err := e.sb.CompleteRefund(otn, "refund_v2_r1", "SUCCESS"); err != nil {
			t.Fatal(err)
		}
		if ans := post(genuine); !strings.Contains(ans, ok) {
			t.Fatalf("once SUCCESS: %s", ans)
		}
		if o := e.get(wechatApp, otn, 0); o.RefundedAmount != 300 || o.Version != 3 {
			t.Fatalf("order after the confirmed refund: %+v", o)
		}
		// One that claims 9.00 for the same refund: the query says 3.00, as recorded.
		if ans := post(claim("refund_v2_r1", "900")); !strings.Contains(ans, ok) {
			t.Fatalf("a claim of another amount: %s", ans)
		}
		// Another refund number (as moved blocks give): WeChat Pay knows no such refund.
		if ans := post(claim("refund_v2_r1_r1", "300")); !strings.Contains(ans, fail) {
			t.Fatalf("an altered refund number: %s", ans)
		}
		if o := e.get(wechatApp, otn, 0); o.RefundedAmount != 300 || o.Version != 3 {
			t.Fatalf("order after the altered notifications: %+v", o)
		}
		if r := e.refunds(wechatApp, otn); len(r) != 1 || r[0].Status != "succeeded" || r[0].Amount != 300 {
			t.Fatalf("refunds %+v", r)
		}
		e.checkEvents(otn, "order.paid@v2", "order.refunded@v3")
		byReason := map[string]int{}
		for _, ev := range e.evidence(otn) {
			byReason[ev.Verdict+"/"+ev.Reason]++
		}
		want := map[string]int{"accepted/": 2, "error/verify_unavailable": 1, "duplicate/": 1, "rejected/refund_unconfirmed": 1}
		if fmt.Sprint(byReason) != fmt.Sprint(want) {
			t.Fatalf("evidence %v, want %v (the payment, the PROCESSING one, the confirmed one, the claim of 9.00, the altered one)", byReason, want)
		}
	})
}
