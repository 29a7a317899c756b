package wechatpay

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// fieldsOf splits an APIv2 stringA back into its fields.
func fieldsOf(stringA string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(stringA, "&") {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func unsortedV2XML(f map[string]string) []byte {
	var b strings.Builder
	b.WriteString("<xml>")
	for k, v := range f {
		b.WriteString("<" + k + "><![CDATA[" + v + "]]></" + k + ">")
	}
	b.WriteString("</xml>")
	return []byte(b.String())
}

func TestV2Sign_SharedVectors(t *testing.T) {
	v := mustShared(t)
	key := []byte(v.V8.Key)
	t.Run("OK/OfficialRulesPage", func(t *testing.T) {
		// The worked example of WeChat Pay's APIv2 signing rules page
		// (pay.weixin.qq.com/wiki/doc/api/jsapi.php?chapter=4_3).
		f := fieldsOf("appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100&nonce_str=ibuaiVcKdpRxkhJA")
		k := []byte("192006250b4c09247ec02edce69f6a2d")
		if got, _ := v2Sign(f, k, "MD5"); got != "9A0A8659F005D6984697E2CA0A9CF3B7" {
			t.Fatal(got)
		}
		if got, _ := v2Sign(f, k, "HMAC-SHA256"); got != "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6" {
			t.Fatal(got)
		}
	})
	for _, tt := range []struct{ name, stringA, sign string }{
		{"OK/V8MD5", v.V8.StringAMD5, v.V8.SignMD5},
		{"OK/V8HMAC", v.V8.StringAHMAC, v.V8.SignHMAC},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := fieldsOf(tt.stringA)
			if got := V2SignString(f); got != tt.stringA {
				t.Fatalf("canonical %q", got)
			}
			f["sign"] = tt.sign
			f["device_info"] = "" // empty fields are not signed
			n, err := VerifyV2Notification(unsortedV2XML(f), key)
			if err != nil {
				t.Fatal(err)
			}
			if n.TotalFee != 1 || n.CashFee != 1 || n.OutTradeNo != "1409811653" || n.TransactionID != "1004400740201409030005092168" ||
				n.ResultCode != "SUCCESS" || n.AppID != "wx2421b1c4370ec43b" || n.MchID != "10000100" || n.Attach != "支付测试" ||
				!n.TimeEnd.Equal(time.Date(2014, 9, 3, 13, 15, 40, 0, Beijing())) {
				t.Fatalf("%+v", n)
			}
			f["total_fee"] = "2"
			_, err = VerifyV2Notification(unsortedV2XML(f), key)
			var ve *VerifyError
			if !errors.Is(err, ErrSignature) || !errors.As(err, &ve) || ve.OutTradeNo != "1409811653" {
				t.Fatalf("tampered: %v (claimed out_trade_no %+v)", err, ve)
			}
		})
	}
	t.Run("OK/V9ReqInfo", func(t *testing.T) {
		r, err := DecryptV2RefundReqInfo(v.V9.ReqInfo, []byte(v.V9.Key))
		if err != nil {
			t.Fatal(err)
		}
		if r.OutRefundNo != "RF20240602000001" || r.RefundFee != 1 || r.TotalFee != 1 || r.RefundStatus != "SUCCESS" ||
			r.RefundRecvAccount != "支付用户零钱" || r.RefundID != "50000408942018111907145868882" ||
			!r.SuccessTime.Equal(time.Date(2024, 6, 2, 10, 0, 5, 0, Beijing())) {
			t.Fatalf("%+v", r)
		}
	})
}

func TestV2_OwnVectors(t *testing.T) {
	v := mustOwn(t)
	key := []byte(v.V2Key)
	for _, n := range v.V2 {
		name := "OK/" + n.Name
		if n.Expect != "valid" {
			name = "Err/" + n.Name
		}
		t.Run(name, func(t *testing.T) {
			got, err := VerifyV2Notification([]byte(n.Body), key)
			if r := reasonOfErr(err); r != n.Expect {
				t.Fatalf("got %s (%v), want %s", r, err, n.Expect)
			}
			if err == nil && (got.TotalFee != 2599 || got.Fields["version"] != "1.0" || got.Fields["promotion_detail"] == "") {
				t.Fatalf("%+v", got)
			}
		})
	}
	t.Run("OK/RefundNotification", func(t *testing.T) {
		n, err := ParseV2RefundNotification([]byte(v.V2Refund.Body), key)
		if err != nil {
			t.Fatal(err)
		}
		r := n.Info
		if n.MchID != "10000100" || r.OutRefundNo != "RF20261102000001" || r.RefundFee != 1000 || r.TotalFee != 2599 ||
			r.SettlementTotalFee != 2599 || r.RefundRecvAccount != "招商银行信用卡0403" || r.RefundRequestSource != "VENDOR_PLATFORM" {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("ErrRefundOtherKey", func(t *testing.T) {
		_, err := DecryptV2RefundReqInfo(v.V2RefundOtherKey, key)
		if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrRefundWrongKey", func(t *testing.T) {
		_, err := DecryptV2RefundReqInfo(v.V2Refund.ReqInfo, []byte("00000000000000000000000000000000"))
		if !errors.Is(err, ErrDecrypt) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestParseV2XML(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]string
	}{
		{"OK/CDATA", `<xml><a><![CDATA[x<y]]></a><b>1</b></xml>`, map[string]string{"a": "x<y", "b": "1"}},
		{"OK/Whitespace", "<?xml version=\"1.0\"?>\n<xml>\n  <a>x &amp; y</a>\n</xml>\n", map[string]string{"a": "x & y"}},
		{"OK/Empty", `<xml><a></a><b/></xml>`, map[string]string{"a": "", "b": ""}},
		{"ErrNested", `<xml><a><b>1</b></a></xml>`, nil},
		{"ErrRepeated", `<xml><a>1</a><a>2</a></xml>`, nil},
		{"ErrText", `<xml>junk<a>1</a></xml>`, nil},
		{"ErrTwoRoots", `<xml></xml><xml></xml>`, nil},
		{"ErrUnclosed", `<xml><a>1</a>`, nil},
		{"ErrNotXML", `success`, nil},
		{"ErrEmpty", ``, nil},
		{"ErrDoctype", `<!DOCTYPE xml [<!ENTITY e "x">]><xml><a>&e;</a></xml>`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseV2XML([]byte(tt.in))
			if tt.want == nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("got %v, %v", got, err)
				}
				return
			}
			if err != nil || len(got) != len(tt.want) {
				t.Fatalf("got %v, %v", got, err)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("%s: %q", k, got[k])
				}
			}
		})
	}
}

func TestV2Ack(t *testing.T) {
	t.Run("OK/Success", func(t *testing.T) {
		if got := string(V2Ack(true, "ignored")); got != `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>` {
			t.Fatal(got)
		}
	})
	t.Run("OK/Fail", func(t *testing.T) {
		got := V2Ack(false, "bad ]]> sign")
		f, err := ParseV2XML(got)
		if err != nil || f["return_code"] != "FAIL" || f["return_msg"] != "bad ]]> sign" {
			t.Fatalf("%s %v %v", got, f, err)
		}
	})
}

func TestV2Builders(t *testing.T) {
	v := mustShared(t)
	t.Run("OK/EncryptReqInfoMatchesV9", func(t *testing.T) {
		got, err := encryptV2RefundReqInfo([]byte(v.V9.Plaintext), []byte(v.V9.Key))
		if err != nil || got != v.V9.ReqInfo {
			t.Fatalf("%v", err)
		}
	})
	t.Run("OK/XMLRoundTrip", func(t *testing.T) {
		f := fieldsOf(v.V8.StringAHMAC)
		sign, _ := v2Sign(f, []byte(v.V8.Key), V2SignHMACSHA256)
		if sign != v.V8.SignHMAC {
			t.Fatal(sign)
		}
		f["sign"] = sign
		f["weird"] = "a]]>b<c>"
		f["sign"], _ = v2Sign(f, []byte(v.V8.Key), V2SignHMACSHA256)
		n, err := VerifyV2Notification(v2XML(f), []byte(v.V8.Key))
		if err != nil || n.Fields["weird"] != "a]]>b<c>" {
			t.Fatalf("%v", err)
		}
	})
}

// opensslV2MD5 is the APIv2 MD5 sign of fields (sorted, empty values left out, "&key=" and the
// key appended, upper-case hex), computed by the openssl command line.
func opensslV2MD5(t *testing.T, fields [][2]string, key string) string {
	t.Helper()
	sorted := slices.Clone(fields)
	slices.SortFunc(sorted, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	var b strings.Builder
	for _, f := range sorted {
		if f[1] != "" {
			b.WriteString(f[0] + "=" + f[1] + "&")
		}
	}
	b.WriteString("key=" + key)
	cmd := exec.Command("openssl", "dgst", "-md5", "-r")
	cmd.Stdin = strings.NewReader(b.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	return strings.ToUpper(strings.Fields(string(out))[0])
}

func signedV2XML(fields [][2]string, sign string) []byte {
	var b strings.Builder
	b.WriteString("<xml>")
	for _, f := range append(fields, [2]string{"sign", sign}) {
		b.WriteString("<" + f[0] + "><![CDATA[" + f[1] + "]]></" + f[0] + ">")
	}
	b.WriteString("</xml>")
	return []byte(b.String())
}

// TestVerifyV2Notification_Regrouped: the APIv2 sign covers the fields joined with "&", not where
// each ends. A genuine payment of T1 (signed here by openssl) whose attach is
// "gift&mch_id=10000100&out_trade_no=T2&p=", regrouped so that attach ends at "gift" and its tail
// becomes mch_id and out_trade_no T2 while T1's own fields fold into nonce_str, has the same
// signed string; VerifyV2Notification refuses it, and the genuine one, as malformed, naming the
// field. An attach holding "&" and "=" without a decision field's name passes.
func TestVerifyV2Notification_Regrouped(t *testing.T) {
	const key = "192006250b4c09247ec02edce69f6a2d"
	genuine := [][2]string{{"appid", "wx2421b1c4370ec43b"}, {"attach", "gift&mch_id=10000100&out_trade_no=T2&p="},
		{"bank_type", "CFT"}, {"cash_fee", "100"}, {"fee_type", "CNY"}, {"is_subscribe", "N"}, {"mch_id", "10000100"},
		{"nonce_str", "abc"}, {"openid", "o1"}, {"out_trade_no", "T1"}, {"result_code", "SUCCESS"}, {"return_code", "SUCCESS"},
		{"time_end", "20261129100000"}, {"total_fee", "100"}, {"trade_type", "JSAPI"}, {"transaction_id", "4200000001"}}
	// The same signed string, cut elsewhere: attach=gift, mch_id=10000100, out_trade_no=T2, and p
	// holding the rest ("&bank_type=…&out_trade_no=T1&…").
	regrouped := [][2]string{{"appid", "wx2421b1c4370ec43b"}, {"attach", "gift"}, {"mch_id", "10000100"}, {"out_trade_no", "T2"},
		{"p", "&bank_type=CFT&cash_fee=100&fee_type=CNY&is_subscribe=N&mch_id=10000100&nonce_str=abc&openid=o1&out_trade_no=T1" +
			"&result_code=SUCCESS&return_code=SUCCESS&time_end=20261129100000&total_fee=100&trade_type=JSAPI&transaction_id=4200000001"}}
	// p sorts after out_trade_no: the tail of the signed string is p's value.
	sign := opensslV2MD5(t, genuine, key)
	if got := opensslV2MD5(t, regrouped, key); got != sign {
		t.Fatalf("control: the regrouped fields sign to %s, the genuine ones to %s", got, sign)
	}
	for _, tc := range []struct {
		name, holder string
		body         []byte
	}{{"Regrouped", "p", signedV2XML(regrouped, sign)}, {"Genuine", "attach", signedV2XML(genuine, sign)}} {
		n, err := VerifyV2Notification(tc.body, []byte(key))
		var ve *VerifyError
		if n != nil || !errors.Is(err, ErrMalformed) || !errors.As(err, &ve) || !strings.Contains(ve.Detail, tc.holder+` holds "&`) {
			t.Errorf("%s: %+v, %v; want ErrMalformed naming %s", tc.name, n, err, tc.holder)
		}
	}
	ok := slices.Clone(genuine)
	ok[1][1] = "a=1&b=2"
	if n, err := VerifyV2Notification(signedV2XML(ok, opensslV2MD5(t, ok, key)), []byte(key)); err != nil || n.OutTradeNo != "T1" {
		t.Fatalf("an ordinary attach: %+v, %v", n, err)
	}
}

// TestVerifyV2Notification_StrictFen: total_fee and cash_fee are integer fen as WeChat Pay writes
// them; anything else, signed or not, is malformed: a sign, spaces, decimals, an exponent, a
// leading zero (a reviewer helper's finding: "0100" was read as 100), past int64. Signed here by
// openssl.
func TestVerifyV2Notification_StrictFen(t *testing.T) {
	const key = "192006250b4c09247ec02edce69f6a2d"
	msg := func(fee string) [][2]string {
		return [][2]string{{"appid", "wx2421b1c4370ec43b"}, {"cash_fee", "100"}, {"fee_type", "CNY"}, {"mch_id", "10000100"},
			{"nonce_str", "abc"}, {"out_trade_no", "T1"}, {"result_code", "SUCCESS"}, {"return_code", "SUCCESS"},
			{"time_end", "20261129100000"}, {"total_fee", fee}, {"transaction_id", "4200000001"}}
	}
	for _, fee := range []string{"0100", "00", "+100", " 100", "100 ", "100.00", "1e2", "-1", "0x64", "１００", "9223372036854775808"} {
		f := msg(fee)
		if n, err := VerifyV2Notification(signedV2XML(f, opensslV2MD5(t, f, key)), []byte(key)); !errors.Is(err, ErrMalformed) {
			t.Errorf("total_fee %q: %+v, %v; want ErrMalformed", fee, n, err)
		}
	}
	for fee, want := range map[string]int64{"100": 100, "0": 0, "9223372036854775807": 9223372036854775807} {
		f := msg(fee)
		if n, err := VerifyV2Notification(signedV2XML(f, opensslV2MD5(t, f, key)), []byte(key)); err != nil || n.TotalFee != want {
			t.Errorf("total_fee %q: %+v, %v; want %d", fee, n, err, want)
		}
	}
}
