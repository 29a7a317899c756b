package provider_test

import (
	"crypto/md5"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/provider"
)

// v2Signed is an APIv2 message whose MD5 signature this test computes by hand, from the fields
// sorted by name as WeChat's documentation says (string1 = k=v&…&key=KEY, MD5, upper-case hex),
// with crypto/md5 and not our signing code.
func v2Signed(key string, fields [][2]string) string {
	var sb, xml strings.Builder
	for _, f := range fields { // given in name order
		fmt.Fprintf(&sb, "%s=%s&", f[0], f[1])
		fmt.Fprintf(&xml, "<%s><![CDATA[%s]]></%s>", f[0], f[1], f[0])
	}
	sign := fmt.Sprintf("%X", md5.Sum([]byte(sb.String()+"key="+key)))
	return "<xml>" + xml.String() + "<sign><![CDATA[" + sign + "]]></sign></xml>"
}

// TestWechatV2_OnlyNotificationsPay: WeChat signs its APIv2 answers with the notifications' key
// and form. An orderquery answer about an unpaid order (result_code SUCCESS, trade_state NOTPAY)
// or a refund call's answer, posted to the notification URL, is no payment; a payment
// notification is.
func TestWechatV2_OnlyNotificationsPay(t *testing.T) {
	const key = "192006250b4c09247ec02edce69f6a2d"
	v := &provider.WechatV2{APIKey: []byte(key)}
	common := [][2]string{{"appid", "wx2421b1c4370ec43b"}, {"mch_id", "10000100"}, {"nonce_str", "IITRi8Iabbblz1Jc"}}
	with := func(extra ...[2]string) [][2]string {
		all := append(append([][2]string{}, common...), extra...)
		for i := range all { // name order
			for j := i + 1; j < len(all); j++ {
				if all[j][0] < all[i][0] {
					all[i], all[j] = all[j], all[i]
				}
			}
		}
		return all
	}
	for _, c := range []struct {
		name   string
		fields [][2]string
		paid   bool
	}{
		{"Notification", with([2]string{"return_code", "SUCCESS"}, [2]string{"result_code", "SUCCESS"}, [2]string{"out_trade_no", "1409811653"},
			[2]string{"transaction_id", "1004400740201409030005092168"}, [2]string{"total_fee", "1"}, [2]string{"time_end", "20140903131540"},
			[2]string{"openid", "oUpF8uMEb4qRXf22hE3X68TekukE"}, [2]string{"trade_type", "JSAPI"}), true},
		{"OrderQueryNotPaid", with([2]string{"return_code", "SUCCESS"}, [2]string{"return_msg", "OK"}, [2]string{"result_code", "SUCCESS"},
			[2]string{"out_trade_no", "1409811653"}, [2]string{"trade_state", "NOTPAY"}, [2]string{"trade_state_desc", "订单未支付"},
			[2]string{"total_fee", "1"}), false},
		{"OrderQueryNotPaidWithTransaction", with([2]string{"return_code", "SUCCESS"}, [2]string{"result_code", "SUCCESS"},
			[2]string{"out_trade_no", "1409811653"}, [2]string{"trade_state", "USERPAYING"}, [2]string{"transaction_id", "1004400740201409030005092168"},
			[2]string{"time_end", "20140903131540"}, [2]string{"total_fee", "1"}), false},
		{"RefundAnswer", with([2]string{"return_code", "SUCCESS"}, [2]string{"result_code", "SUCCESS"}, [2]string{"out_trade_no", "1409811653"},
			[2]string{"transaction_id", "1004400740201409030005092168"}, [2]string{"out_refund_no", "R1"}, [2]string{"refund_id", "5000"},
			[2]string{"refund_fee", "1"}, [2]string{"total_fee", "1"}), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := v.Verify(nil, []byte(v2Signed(key, c.fields)), time.Now())
			if c.paid {
				if err != nil || f.Kind != paynotify.FactPaid || f.Amount != 1 || f.ProviderTradeNo == "" {
					t.Fatalf("payment notification: %+v, %v", f, err)
				}
				return
			}
			var rej *paynotify.RejectError
			if !errors.As(err, &rej) || rej.Reason != paynotify.ReasonMalformed || f.Kind == paynotify.FactPaid {
				t.Fatalf("a signed API answer: fact %+v, err %v; want rejected as malformed", f, err)
			}
		})
	}
}
