package provider_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/provider"
)

// TestSignedText: each verifier shows the bytes its signature covers. The expected strings are
// written out here by hand from the protocols' rules (docs/alipay.md, docs/wechatpay.md,
// docs/alipay-legacy.md), not computed by the code under test.
func TestSignedText(t *testing.T) {
	text := func(t *testing.T, v paynotify.Verifier, h http.Header, body string) (string, string) {
		t.Helper()
		st, ok := v.(paynotify.SignedTexter)
		if !ok {
			t.Fatalf("%T is not a SignedTexter", v)
		}
		b, how, err := st.SignedText(h, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return string(b), how
	}
	t.Run("OKAlipay", func(t *testing.T) {
		g, _ := fakeAlipay(t, nil)
		got, how := text(t, g.Verifier("alipay"), nil,
			"trade_status=TRADE_SUCCESS&app_id=2021000000000001&sign_type=RSA2&empty=&subject=%E6%B5%8B+x&total_amount=88.88&sign=abc%2B")
		if want := "app_id=2021000000000001&subject=测 x&total_amount=88.88&trade_status=TRADE_SUCCESS"; got != want {
			t.Errorf("got  %q\nwant %q", got, want)
		}
		if !strings.HasPrefix(how, "RSA2 over") || !strings.Contains(how, "rule V1") {
			t.Errorf("how %q", how)
		}
	})
	t.Run("OKWechatV3", func(t *testing.T) {
		g := &provider.Wechat{}
		h := http.Header{"Wechatpay-Timestamp": {"1700000000"}, "Wechatpay-Nonce": {"n0nce"}, "Wechatpay-Serial": {"PUB_KEY_ID_1"}}
		got, how := text(t, wechatVerifierOf(g), h, `{"id":"1"}`)
		if want := "1700000000\nn0nce\n{\"id\":\"1\"}\n"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		if !strings.Contains(how, "PUB_KEY_ID_1") {
			t.Errorf("how %q lacks the key id", how)
		}
	})
	t.Run("OKWechatV2", func(t *testing.T) {
		v := &provider.WechatV2{APIKey: []byte("secret-apiv2-key-0123456789abcdef")}
		got, how := text(t, v, nil, `<xml><return_code><![CDATA[SUCCESS]]></return_code><appid>wx1</appid><nonce_str>n</nonce_str><attach></attach><sign>X</sign><total_fee>1</total_fee></xml>`)
		if want := "appid=wx1&nonce_str=n&return_code=SUCCESS&total_fee=1&key=…"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		if strings.Contains(got+how, "secret-apiv2-key") {
			t.Error("the APIv2 key is shown")
		}
		refund, how := text(t, v, nil, `<xml><return_code>SUCCESS</return_code><req_info>abc</req_info></xml>`)
		if refund != "" || !strings.Contains(how, "no signature") {
			t.Errorf("refund: %q, %q", refund, how)
		}
	})
	t.Run("OKLegacy", func(t *testing.T) {
		g := legacyAdapter(t, nil)
		got, how := text(t, g.Verifier("alipay-legacy"), nil, "trade_status=TRADE_SUCCESS&sign_type=MD5&out_trade_no=L1&notify_id=n1&seller_email=&total_fee=1.00&sign=x")
		if want := "notify_id=n1&out_trade_no=L1&total_fee=1.00&trade_status=TRADE_SUCCESS"; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
		if !strings.Contains(how, "MD5 key appended (not shown)") || strings.Contains(got+how, lgKey) {
			t.Errorf("how %q", how)
		}
		wap, how := text(t, g.Verifier("alipay-legacy"), nil, "v=1.0&sec_id=MD5&service=alipay.wap.trade.create.direct&notify_data=%3Cnotify%3E%3C%2Fnotify%3E&sign=x")
		if want := "service=alipay.wap.trade.create.direct&v=1.0&sec_id=MD5&notify_data=<notify></notify>"; wap != want {
			t.Errorf("WAP: got %q, want %q", wap, want)
		}
		if !strings.Contains(how, "fixed order") {
			t.Errorf("WAP how %q", how)
		}
	})
	t.Run("ErrMalformed", func(t *testing.T) {
		g, _ := fakeAlipay(t, nil)
		if _, _, err := g.Verifier("alipay").(paynotify.SignedTexter).SignedText(nil, []byte("a=1&a=2")); err == nil {
			t.Error("a duplicate key parsed")
		}
	})
}

// wechatVerifierOf returns the APIv3 verifier of g.
func wechatVerifierOf(g *provider.Wechat) paynotify.Verifier { return g.Verifier("wechatpay") }
