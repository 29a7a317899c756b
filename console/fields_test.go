package console

import (
	"net/url"
	"testing"

	"github.com/paynotify/paynotify"
)

// TestFields_LegacyWAPSignedOnly: a legacy WAP notification's signature covers notify_data (with
// service, v, sec_id), so the checks page takes its amount, seller and status from notify_data
// alone, never from form fields anyone can add; under 0001 notify_data is encrypted and none is
// shown.
func TestFields_LegacyWAPSignedOnly(t *testing.T) {
	extra := "&total_fee=0.01&seller_id=2088999&trade_status=TRADE_CLOSED&app_id=x"
	for _, tc := range []struct {
		name, notifyData, amount, seller, status string
	}{
		{"0001", "QUJDREVG", "", "", ""},
		{"MD5", "<notify><seller_id>2088001</seller_id><trade_status>TRADE_SUCCESS</trade_status><total_fee>12.30</total_fee></notify>",
			"¥12.30", "2088001", "TRADE_SUCCESS"},
	} {
		ev := &paynotify.Evidence{Endpoint: "alipay-legacy", Verdict: paynotify.VerdictAccepted,
			Body: []byte("service=alipay.wap.trade.create.direct&sign=x&sec_id=0001&v=1.0&notify_data=" + url.QueryEscape(tc.notifyData) + extra)}
		f := fields(ev)
		if f.amount != tc.amount || f.seller != tc.seller || f.status != tc.status || f.appID != "" {
			t.Errorf("%s: amount %q seller %q status %q app %q; want %q %q %q and no app", tc.name, f.amount, f.seller, f.status, f.appID,
				tc.amount, tc.seller, tc.status)
		}
	}
}
