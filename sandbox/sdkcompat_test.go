package sandbox

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/internal/wechatpaywire"
	"github.com/paynotify/paynotify/wechatpay"
)

// The official PHP SDK's pageExecute (POST form) sends charset both in the query of
// gateway.do?charset=UTF-8 and in the body, as gopay does for every call.
func TestAlipayGateway_CharsetInQueryAndBody(t *testing.T) {
	t.Parallel()
	b := setupStopped(t, 1000)
	c := b.alipayClient(t)
	signed := func(charset string) url.Values {
		params := map[string]string{"app_id": b.keys.AlipayAppID, "method": "alipay.trade.query", "charset": charset, "sign_type": "RSA2",
			"timestamp": alipay.FormatTime(time.Now()), "version": "1.0", "biz_content": `{"out_trade_no":"dup_charset"}`}
		if err := c.SignParams(params); err != nil {
			t.Fatal(err)
		}
		v := url.Values{}
		for k, val := range params {
			v.Set(k, val)
		}
		return v
	}
	post := func(query, body string) string {
		t.Helper()
		resp, err := http.Post(b.srv.URL+"/sandbox/alipay/gateway.do?"+query, "application/x-www-form-urlencoded;charset=UTF-8", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return string(out)
	}
	t.Run("SameValue", func(t *testing.T) {
		body := post("charset=UTF-8", signed("UTF-8").Encode())
		if !contains(body, "ACQ.TRADE_NOT_EXIST") {
			t.Fatalf("got %s", body)
		}
	})
	t.Run("SameValueOtherCase", func(t *testing.T) {
		// The query's spelling wins; the signature is over the body's, so sign with the query's.
		v := signed("utf-8")
		v.Set("charset", "UTF-8")
		body := post("charset=utf-8", v.Encode())
		if !contains(body, "ACQ.TRADE_NOT_EXIST") {
			t.Fatalf("got %s", body)
		}
	})
	t.Run("DifferentValues", func(t *testing.T) {
		body := post("charset=GBK", signed("utf-8").Encode())
		if !contains(body, "isv.invalid-parameter") || !contains(body, "different values") {
			t.Fatalf("got %s", body)
		}
	})
	t.Run("OtherParameterDifferent", func(t *testing.T) {
		body := post("app_id=2021000000000000", signed("utf-8").Encode())
		if !contains(body, "isv.invalid-parameter") {
			t.Fatalf("got %s", body)
		}
	})
	t.Run("TwiceInTheBody", func(t *testing.T) {
		body := post("", signed("utf-8").Encode()+"&charset=utf-8")
		if !contains(body, "isv.invalid-parameter") || !contains(body, "appears twice") {
			t.Fatalf("got %s", body)
		}
	})
	t.Run("TwiceInTheQuery", func(t *testing.T) {
		body := post("charset=utf-8&charset=utf-8", signed("utf-8").Encode())
		if !contains(body, "isv.invalid-parameter") || !contains(body, "appears twice") {
			t.Fatalf("got %s", body)
		}
	})
}

// wxSigned sends a request to path signed (by the default merchant) over signedURI.
func wxSigned(t *testing.T, b *testBundle, method, path, signedURI string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	priv, err := wechatpay.ParsePrivateKey([]byte(b.keys.WechatMerchantPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(method, b.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if signedURI != "" {
		a, err := wechatpaywire.SignRequest(priv, b.keys.WechatMchID, b.keys.WechatMerchantSerialNo, method, signedURI,
			strconv.FormatInt(time.Now().Unix(), 10), randAlnum(32), body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", a.String())
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, out
}

func TestWechat_RootV3Paths(t *testing.T) {
	t.Parallel()
	b := setupStopped(t, 1000)
	prepay := []byte(`{"appid":"` + b.keys.WechatAppID + `","mchid":"` + b.keys.WechatMchID + `","description":"root","out_trade_no":"wx_root_1",` +
		`"notify_url":"https://merchant.example/notify","amount":{"total":100,"currency":"CNY"}}`)
	const root = "/v3/pay/transactions/native"
	t.Run("SignedOverRoot", func(t *testing.T) {
		st, h, body := wxSigned(t, b, "POST", root, root, prepay)
		if st != 200 || !contains(string(body), `"code_url":"weixin://wxpay/bizpayurl?pr=`) {
			t.Fatalf("%d %s", st, body)
		}
		if h.Get("Wechatpay-Serial") != b.keys.WechatPlatformPublicKeyID || h.Get("Wechatpay-Signature") == "" {
			t.Fatalf("headers %v", h)
		}
	})
	t.Run("RootSignatureOnPrefixedPath", func(t *testing.T) {
		st, _, body := wxSigned(t, b, "POST", "/sandbox/wechatpay"+root, root, prepay)
		if st != 401 || !contains(string(body), `"code":"SIGN_ERROR"`) {
			t.Fatalf("%d %s", st, body)
		}
	})
	t.Run("PrefixedSignatureOnRootPath", func(t *testing.T) {
		st, _, body := wxSigned(t, b, "POST", root, "/sandbox/wechatpay"+root, prepay)
		if st != 401 || !contains(string(body), `"code":"SIGN_ERROR"`) {
			t.Fatalf("%d %s", st, body)
		}
	})
	t.Run("PrefixedPathStillWorks", func(t *testing.T) {
		p := "/sandbox/wechatpay" + root
		if st, _, body := wxSigned(t, b, "POST", p, p, prepay); st != 200 {
			t.Fatalf("%d %s", st, body)
		}
	})
	t.Run("Unsigned", func(t *testing.T) {
		for _, c := range []struct{ method, path string }{{"POST", root}, {"GET", "/v3/pay/transactions/out-trade-no/wx_root_1?mchid=" + b.keys.WechatMchID},
			{"GET", "/v3/certificates"}, {"POST", "/v3/refund/domestic/refunds"}} {
			st, h, body := wxSigned(t, b, c.method, c.path, "", prepay)
			var e struct{ Code, Message string }
			if st != 401 || json.Unmarshal(body, &e) != nil || e.Code != "SIGN_ERROR" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
				t.Fatalf("%s %s: %d %s", c.method, c.path, st, body)
			}
		}
	})
	t.Run("ClientAtRoot", func(t *testing.T) {
		c := b.wechatClientAt(t, b.srv.URL, false)
		ctx := waitCtx(t, 10*time.Second)
		req := wechatpay.PrepayRequest{Description: "根路径", OutTradeNo: "wx_root_2", NotifyURL: "https://merchant.example/notify"}
		req.Amount.Total = 321
		if _, err := c.PrepayNative(ctx, req); err != nil {
			t.Fatal(err)
		}
		tx, err := c.QueryByOutTradeNo(ctx, "wx_root_2")
		if err != nil || tx.TradeState != "NOTPAY" || tx.Amount.Total != 321 {
			t.Fatalf("query: %+v %v", tx, err)
		}
	})
}

// wechatClientAt is the default merchant's client with base URL base, verifying with the platform
// public key, or with the platform certificate only.
func (b *testBundle) wechatClientAt(t *testing.T, base string, certOnly bool) *wechatpay.Client {
	t.Helper()
	priv, err := wechatpay.ParsePrivateKey([]byte(b.keys.WechatMerchantPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	cfg := wechatpay.Config{MchID: b.keys.WechatMchID, AppID: b.keys.WechatAppID, MerchantPrivateKey: priv,
		MerchantSerialNo: b.keys.WechatMerchantSerialNo, APIv3Key: []byte(b.keys.WechatAPIv3Key), BaseURL: base}
	if certOnly {
		cfg.PlatformCerts = []byte(b.keys.WechatPlatformCertificate)
	} else {
		pub, err := wechatpay.ParsePublicKey([]byte(b.keys.WechatPlatformPublicKey))
		if err != nil {
			t.Fatal(err)
		}
		cfg.PlatformPublicKey, cfg.PlatformPublicKeyID = pub, b.keys.WechatPlatformPublicKeyID
	}
	c, err := wechatpay.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func registerMerchantJSON(t *testing.T, b *testBundle, mode string) (int, map[string]any) {
	t.Helper()
	req := map[string]string{"mchid": b.keys.WechatMchID, "appid": b.keys.WechatAppID, "serial_no": b.keys.WechatMerchantSerialNo,
		"public_key": b.keys.WechatMerchantPublicKey}
	if mode != "" {
		req["platform_key_mode"] = mode
	}
	j, _ := json.Marshal(req)
	resp, err := http.Post(b.srv.URL+"/sandbox/api/wechatpay/merchants", "application/json", bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestWechat_PlatformKeyMode(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	m := newMerchant(t, wechatOK)
	ctx := waitCtx(t, 20*time.Second)

	// The default merchant is in public key mode; re-registering without a mode keeps it.
	if st, out := registerMerchantJSON(t, b, ""); st != 200 || out["platform_key_mode"] != "public_key" || out["wechatpay_serial"] != b.keys.WechatPlatformPublicKeyID {
		t.Fatalf("%d %v", st, out)
	}
	if st, out := registerMerchantJSON(t, b, "x509"); st != 400 {
		t.Fatalf("bad mode: %d %v", st, out)
	}
	certClient := b.wechatClientAt(t, b.srv.URL+"/sandbox/wechatpay", true)
	req := wechatpay.PrepayRequest{Description: "证书模式", OutTradeNo: "wx_certmode_1", NotifyURL: m.srv.URL + "/notify"}
	req.Amount.Total = 500
	// In public key mode an answer to a request that names no platform serial is signed under
	// the public key id.
	queryPath := "/v3/pay/transactions/out-trade-no/wx_certmode_1?mchid=" + b.keys.WechatMchID
	if st, h, body := wxSigned(t, b, "GET", queryPath, queryPath, nil); st != 404 || h.Get("Wechatpay-Serial") != b.keys.WechatPlatformPublicKeyID {
		t.Fatalf("%d serial %q %s", st, h.Get("Wechatpay-Serial"), body)
	}

	if st, out := registerMerchantJSON(t, b, "certificate"); st != 200 || out["platform_key_mode"] != "certificate" || out["wechatpay_serial"] != b.keys.WechatPlatformCertSerial {
		t.Fatalf("%d %v", st, out)
	}
	// Answers (at both base URLs) and notifications now carry the certificate serial.
	for _, base := range []string{b.srv.URL + "/sandbox/wechatpay", b.srv.URL} {
		c := b.wechatClientAt(t, base, true)
		if _, err := c.PrepayNative(ctx, req); err != nil {
			t.Fatalf("%s: prepay: %v", base, err)
		}
		if tx, err := c.QueryByOutTradeNo(ctx, req.OutTradeNo); err != nil || tx.TradeState != "NOTPAY" {
			t.Fatalf("%s: query: %+v %v", base, tx, err)
		}
	}
	st, h, _ := wxSigned(t, b, "GET", queryPath, queryPath, nil)
	if st != 200 || h.Get("Wechatpay-Serial") != b.keys.WechatPlatformCertSerial {
		t.Fatalf("%d serial %q", st, h.Get("Wechatpay-Serial"))
	}
	if _, err := b.sb.Act("pay", ActionRequest{Provider: ProviderWechatpay, OutTradeNo: req.OutTradeNo}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: req.OutTradeNo}, 1); err != nil {
		t.Fatal(err)
	}
	r := m.requests()[0]
	if r.header.Get("Wechatpay-Serial") != b.keys.WechatPlatformCertSerial {
		t.Fatalf("notification serial %q", r.header.Get("Wechatpay-Serial"))
	}
	n, err := certClient.VerifyNotification(r.header, r.body)
	if err != nil || n.Transaction == nil || n.Transaction.OutTradeNo != req.OutTradeNo || n.Transaction.TradeState != "SUCCESS" {
		t.Fatalf("notification: %+v %v", n, err)
	}
	// Back to public key mode.
	if st, out := registerMerchantJSON(t, b, "public_key"); st != 200 || out["wechatpay_serial"] != b.keys.WechatPlatformPublicKeyID {
		t.Fatalf("%d %v", st, out)
	}
}
