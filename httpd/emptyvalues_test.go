package httpd_test

import (
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/testsign"
	"github.com/paynotify/paynotify/provider"
)

// TestAlipayNotify_EmptyValueRule: a notification with an empty value signed over the string that
// keeps it (the PHP SDK's rule) pays the order and its evidence says which rule matched; one
// signed over the usual string pays as before with no such note; a tampered one is rejected.
func TestAlipayNotify_EmptyValueRule(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		for _, tc := range []struct {
			otn       string
			withEmpty bool
		}{{"TEMPTY1", true}, {"TEMPTY2", false}} {
			newAlipayOrder(e, tc.otn, 8888)
			fields := paidFields(tc.otn, "88.88")
			fields["body"] = ""
			var body []byte
			if tc.withEmpty {
				body = testsign.AlipayNotifyWithEmpty(t, alipayKeyFile, fields)
			} else {
				body = alipayNotify(t, fields)
			}
			tampered := []byte(strings.Replace(string(body), "&trade_no=", "&trade_no=9", 1))
			if code, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, tampered); code == 200 && ans == "success" {
				t.Fatalf("%s: a tampered notification was accepted", tc.otn)
			}
			if code, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, body); code != 200 || ans != "success" {
				t.Fatalf("%s: answer %d %q", tc.otn, code, ans)
			}
			if o := e.getOrder("shop", tc.otn); o.Status != "paid" {
				t.Fatalf("%s: order %+v", tc.otn, o)
			}
			var accepted, rejected int
			for _, ev := range e.evidence("app=shop&out_trade_no=" + tc.otn) {
				switch ev.Verdict {
				case "accepted":
					accepted++
					if want := map[bool]string{true: provider.AlipaySignedWithEmptyDetail, false: ""}[tc.withEmpty]; ev.Detail != want {
						t.Errorf("%s: accepted evidence detail %q, want %q", tc.otn, ev.Detail, want)
					}
				case "rejected":
					rejected++
					if ev.Reason != "signature_invalid" {
						t.Errorf("%s: rejected evidence %+v", tc.otn, ev)
					}
				}
			}
			if accepted != 1 || rejected != 1 {
				t.Errorf("%s: %d accepted, %d rejected evidence, want 1 and 1", tc.otn, accepted, rejected)
			}
		}
	})
}
