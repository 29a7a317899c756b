package sandbox

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/alipay"
)

// TestAlipay_TimestampWindow: the gateway reads timestamp as Beijing time and refuses an API call
// more than 15 minutes off (a client whose clock writes UTC is 8 hours behind) with
// isv.invalid-timestamp, recorded in the query log; one within the window passes. Pay parameters
// (used by the buyer later) are refused only when signed in the future.
func TestAlipay_TimestampWindow(t *testing.T) {
	b := setup(t, 1000)
	client := func(offset time.Duration) *alipay.Client {
		priv, _ := alipay.ParsePrivateKey([]byte(b.keys.AlipayAppPrivateKey))
		pub, _ := alipay.ParsePublicKey([]byte(b.keys.AlipayPublicKey))
		c, err := alipay.NewClient(alipay.Config{AppID: b.keys.AlipayAppID, PrivateKey: priv, AlipayPublicKey: pub,
			Gateway: b.srv.URL + "/sandbox/alipay/gateway.do", Now: func() time.Time { return time.Now().Add(offset) }})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	subCode := func(err error) string {
		var ae *alipay.Error
		if errors.As(err, &ae) {
			return ae.SubCode
		}
		return ""
	}
	for _, tc := range []struct {
		name   string
		offset time.Duration
		want   string
	}{
		{"UTC clock", -8 * time.Hour, "isv.invalid-timestamp"},
		{"16 minutes ahead", 16 * time.Minute, "isv.invalid-timestamp"},
		{"10 minutes behind", -10 * time.Minute, "ACQ.TRADE_NOT_EXIST"},
		{"10 minutes ahead", 10 * time.Minute, "ACQ.TRADE_NOT_EXIST"},
	} {
		otn := "TS" + strings.NewReplacer(" ", "", "minutes", "m").Replace(tc.name)
		_, err := client(tc.offset).TradeQuery(b.ctx, alipay.TradeQuery{OutTradeNo: otn})
		if got := subCode(err); got != tc.want {
			t.Errorf("%s: query answered %v, want %s", tc.name, err, tc.want)
		}
		qs := b.sb.Queries(QueryFilter{OutTradeNo: otn})
		if len(qs) != 1 || qs[0].Result != tc.want {
			t.Errorf("%s: query log %+v, want one record with %s", tc.name, qs, tc.want)
		}
	}

	// A page pay URL signed 8 hours "ago" (or long ago) is still payable; one from the future is not.
	for _, tc := range []struct {
		otn    string
		offset time.Duration
		ok     bool
	}{{"TSPAGEOLD", -8 * time.Hour, true}, {"TSPAGEFUTURE", time.Hour, false}} {
		pr, err := client(tc.offset).PagePay(alipay.TradePagePay{OutTradeNo: tc.otn, TotalAmount: 100, Subject: "s"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.sb.Act("pay", ActionRequest{URL: pr.URL})
		if (err == nil) != tc.ok || !tc.ok && !strings.Contains(err.Error(), "isv.invalid-timestamp") {
			t.Errorf("%s: pay: %v, want ok=%v", tc.otn, err, tc.ok)
		}
	}
}
