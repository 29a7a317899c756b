package alipay

import (
	"context"
	"crypto/rsa"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/alipaywire"
	"github.com/paynotify/paynotify/internal/testsign"
)

// d1Clock is the clock of D1 and D2: 2024-01-02 03:04:05 Beijing() time, given in UTC so that the
// test proves the zone conversion.
func d1Clock() time.Time { return time.Date(2024, 1, 1, 19, 4, 5, 0, time.UTC) }

func testClient(tb testing.TB, mod func(*Config)) *Client {
	tb.Helper()
	priv, _ := testKeys(tb)
	// The derived vectors are signed and verified with the same test pair, so the "Alipay" key is
	// the app's own key here: build the client without the own-key check, then set it.
	cfg := Config{AppID: "2014072300007148", PrivateKey: priv, Now: d1Clock,
		NotifyURL:       "https://merchant.example.com/alipay/notify",
		AlipayPublicKey: mustOtherKey(tb)}
	if mod != nil {
		mod(&cfg)
	}
	c, err := NewClient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// verifierFor returns a verify-only client for the test public key.
func verifierFor(tb testing.TB, st SignType) *Client {
	tb.Helper()
	_, pub := testKeys(tb)
	c, err := NewClient(Config{AlipayPublicKey: pub, SignType: st})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func mustOtherKey(tb testing.TB) *rsa.PublicKey {
	tb.Helper()
	pub, err := ParsePublicKey(mustRead(tb, "testdata/openssl/other_public.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	return pub
}

func TestDerivedRequests(t *testing.T) {
	vs := loadVectors(t, "derived_vectors.json")
	priv, pub := testKeys(t)
	t.Run("OK/D1_Canonical", func(t *testing.T) {
		v := vs["request_page_pay"]
		if got := alipaywire.CanonicalRequest(v.Params); got != v.Canonical {
			t.Fatalf("canonical\n got %s\nwant %s", got, v.Canonical)
		}
		for _, tt := range []struct {
			st         SignType
			canon, sig string
		}{{RSA2, v.Canonical, v.SignRSA2}, {RSA, v.RSACanonical, v.SignRSA}} {
			got, err := signWith(priv, tt.st, []byte(tt.canon))
			if err != nil || got != tt.sig {
				t.Fatalf("%s: sign %s, %v", tt.st, got, err)
			}
			if err := verify(pub, tt.st, []byte(tt.canon), tt.sig); err != nil {
				t.Fatal(err)
			}
		}
	})
	t.Run("OK/D1_PagePayURL", func(t *testing.T) {
		v := vs["request_page_pay"]
		c := testClient(t, nil)
		pr, err := c.PagePay(TradePagePay{OutTradeNo: "20240102000001", TotalAmount: 8888, Subject: "测试商品 Test",
			ReturnURL: "https://merchant.example.com/alipay/return"})
		if err != nil {
			t.Fatal(err)
		}
		if pr.URL != v.GetURL {
			t.Fatalf("URL\n got %s\nwant %s", pr.URL, v.GetURL)
		}
		if pr.Params["sign"] != v.SignRSA2 {
			t.Fatal("sign differs")
		}
		for _, want := range []string{`action="https://openapi.alipay.com/gateway.do?app_id=2014072300007148&amp;charset=utf-8`,
			`name="biz_content" value="{&#34;out_trade_no&#34;:&#34;20240102000001&#34;`, "document.forms[0].submit()"} {
			if !strings.Contains(pr.Form, want) {
				t.Fatalf("form lacks %q:\n%s", want, pr.Form)
			}
		}
	})
	t.Run("OK/D2_AppPayOrderString", func(t *testing.T) {
		v := vs["request_app_pay"]
		c := testClient(t, nil)
		got, err := c.AppPay(TradeAppPay{OutTradeNo: "20240102000002", TotalAmount: 1, Subject: "App 测试", TimeoutExpress: "30m"})
		if err != nil {
			t.Fatal(err)
		}
		if got != v.OrderString {
			t.Fatalf("orderString\n got %s\nwant %s", got, v.OrderString)
		}
	})
	t.Run("OK/TimeExpireBeijing", func(t *testing.T) {
		c := testClient(t, nil)
		s, err := c.AppPay(TradeAppPay{OutTradeNo: "x1", TotalAmount: 100, Subject: "s",
			TimeExpire: time.Date(2024, 1, 2, 0, 30, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		q, _ := url.ParseQuery(s)
		if !strings.Contains(q.Get("biz_content"), `"time_expire":"2024-01-02 08:30:00"`) {
			t.Fatalf("biz_content %s", q.Get("biz_content"))
		}
	})
	t.Run("ErrRequests", func(t *testing.T) {
		c := testClient(t, nil)
		for _, p := range []TradeAppPay{{TotalAmount: 1, Subject: "s"}, {OutTradeNo: "a", Subject: "s"},
			{OutTradeNo: "a", TotalAmount: -5, Subject: "s"}, {OutTradeNo: "a", TotalAmount: 1}} {
			if _, err := c.AppPay(p); err == nil {
				t.Errorf("%+v: no error", p)
			}
		}
		v := verifierFor(t, RSA2)
		if _, err := v.AppPay(TradeAppPay{OutTradeNo: "a", TotalAmount: 1, Subject: "s"}); err == nil {
			t.Error("verify-only client signed")
		}
	})
}

func TestDerivedNotifications(t *testing.T) {
	vs := loadVectors(t, "derived_vectors.json")
	c := verifierFor(t, RSA2)
	t.Run("OK/D3_UTF8", func(t *testing.T) {
		v := vs["notify_trade_success_utf8"]
		f, err := parseForm([]byte(v.HTTPBody))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(canonicalNotification(f, ruleV1)); got != v.CanonicalV1 {
			t.Fatalf("canonical\n got %s\nwant %s", got, v.CanonicalV1)
		}
		n, err := c.VerifyNotification(ctHeader("application/x-www-form-urlencoded; text/html; charset=utf-8"), []byte(v.HTTPBody))
		if err != nil {
			t.Fatal(err)
		}
		if n.PassbackParams != "a%3D1%26b%3D2" || n.TotalAmount != 8888 || n.IsRefund() || !n.IsPaid() {
			t.Fatalf("decoded %+v", n)
		}
	})
	t.Run("OK/D3_FullRefund", func(t *testing.T) {
		v := vs["notify_full_refund"]
		n, err := c.VerifyNotification(nil, []byte(v.HTTPBody))
		if err != nil {
			t.Fatal(err)
		}
		if n.TradeStatus != TradeClosed || n.RefundFee != 8888 || n.OutBizNo != "RF20240103001" ||
			!n.GmtRefund.Equal(time.Date(2024, 1, 3, 2, 0, 0, 123e6, time.UTC)) || n.GmtClose.IsZero() {
			t.Fatalf("decoded %+v", n)
		}
	})
	t.Run("OK/D4_GBK", func(t *testing.T) {
		v := vs["notify_trade_success_gbk"]
		n, err := c.VerifyNotification(ctHeader("application/x-www-form-urlencoded; text/html; charset=gbk"), []byte(v.GBKBody))
		if err != nil {
			t.Fatal(err)
		}
		if n.Subject != "中文标题" || n.Body != "商品描述" || n.Raw["subject"] != "中文标题" || n.TotalAmount != 1230 {
			t.Fatalf("decoded %+v", n)
		}
	})
	t.Run("ErrD4_SignedOverUTF8", func(t *testing.T) {
		v := vs["notify_trade_success_gbk"]
		body := strings.Replace(v.GBKBody, url.QueryEscape(v.Sign), url.QueryEscape(v.WrongUTF8), 1)
		_, err := c.VerifyNotification(nil, []byte(body))
		if !errors.Is(err, ErrSignature) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestDerivedResponses(t *testing.T) {
	vs := loadVectors(t, "derived_vectors.json")
	c := verifierFor(t, RSA2)
	tests := []struct {
		name, vec, method string
	}{
		{"D5_Query", "response_trade_query", "alipay.trade.query"},
		{"D6_NotExist", "response_trade_query_not_exist", "alipay.trade.query"},
		{"D8_EscapedSlash", "response_precreate_escaped_slash", "alipay.trade.precreate"},
	}
	for _, tt := range tests {
		t.Run("OK/"+tt.name, func(t *testing.T) {
			v := vs[tt.vec]
			r, err := extractResponse([]byte(v.RawBody), tt.method)
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Node) != v.SignedSub || r.Sign != v.Sign {
				t.Fatalf("node %s", r.Node)
			}
			// Exact bytes verify without the \/ fallback.
			if err := verify(c.alipayKey, RSA2, r.Node, r.Sign); err != nil {
				t.Fatal(err)
			}
			node, signed, err := c.VerifyResponse([]byte(v.RawBody), tt.method)
			if err != nil || !signed || string(node) != v.SignedSub {
				t.Fatalf("VerifyResponse: %v %v", signed, err)
			}
		})
	}
	t.Run("OK/D7_CertMode", func(t *testing.T) {
		v := vs["response_trade_close_certmode"]
		// D7 is signed with the test key although its alipay_cert_sn names sandbox_alipayPublicCert.crt
		// (whose own key does not verify it): map that SN to the test key.
		_, pub := testKeys(t)
		sn, _, err := CertPublicKey(mustRead(t, "testdata/shared/certs/sandbox_alipayPublicCert.crt"))
		if err != nil || sn != "05d88faef76d723019c5c14d3ecd014a" {
			t.Fatal(sn, err)
		}
		cc := &Client{signType: RSA2, alipayKey: pub, alipaySN: sn, alipayKeys: map[string]*rsa.PublicKey{sn: pub}}
		if _, signed, err := cc.VerifyResponse([]byte(v.RawBody), "alipay.trade.close"); err != nil || !signed {
			t.Fatal(err)
		}
		// An SN it does not know is not trusted.
		body := strings.Replace(v.RawBody, "05d88faef76d723019c5c14d3ecd014a", "00000000000000000000000000000000", 1)
		_, _, err = cc.VerifyResponse([]byte(body), "alipay.trade.close")
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Reason != ReasonUnknownSerial {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrSpliced", func(t *testing.T) {
		v := vs["response_trade_query"]
		body := `{"alipay_trade_query_response":{"code":"10000","trade_status":"TRADE_SUCCESS"},` + v.RawBody[1:]
		_, _, err := c.VerifyResponse([]byte(body), "alipay.trade.query")
		if !errors.Is(err, ErrDuplicateKey) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrTamperedNode", func(t *testing.T) {
		v := vs["response_trade_query"]
		body := strings.Replace(v.RawBody, `"total_amount":"88.88"`, `"total_amount":"88.89"`, 1)
		if _, _, err := c.VerifyResponse([]byte(body), "alipay.trade.query"); !errors.Is(err, ErrSignature) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("OK/EscapedSlashFallback", func(t *testing.T) {
		// A node signed over "/" but sent as "\/" verifies through the fallback.
		node := `{"code":"10000","msg":"Success","out_trade_no":"1","qr_code":"https://qr.alipay.com/x"}`
		sig := testsign.RSA2(t, "testdata/shared/test_private_pkcs8.pem", []byte(node)) // by openssl, over "/"
		body := `{"alipay_trade_precreate_response":` + strings.ReplaceAll(node, "/", `\/`) + `,"sign":"` + sig + `"}`
		if _, signed, err := c.VerifyResponse([]byte(body), "alipay.trade.precreate"); err != nil || !signed {
			t.Fatal(err)
		}
	})
}

// fakeGateway serves canned response bodies by method, and records requests.
func fakeGateway(t *testing.T, bodies map[string]string) (*httptest.Server, *[]*http.Request) {
	t.Helper()
	var reqs []*http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		reqs = append(reqs, r)
		w.Header().Set("Content-Type", "text/html;charset=utf-8")
		io.WriteString(w, bodies[r.URL.Query().Get("method")])
	}))
	t.Cleanup(srv.Close)
	return srv, &reqs
}

func TestClientCalls(t *testing.T) {
	vs := loadVectors(t, "derived_vectors.json")
	priv, pub := testKeys(t)
	srv, reqs := fakeGateway(t, map[string]string{
		"alipay.trade.query":     vs["response_trade_query"].RawBody,
		"alipay.trade.precreate": vs["response_precreate_escaped_slash"].RawBody,
		"alipay.trade.close":     `{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature","sub_msg":"x"}}`,
	})
	// The test pair signs both sides here: the fake gateway's responses were signed with it.
	c := &Client{appID: "2014072300007148", priv: priv, signType: RSA2, gateway: srv.URL, httpClient: srv.Client(),
		now: d1Clock, alipayKey: pub}
	ctx := context.Background()
	t.Run("OK/Query", func(t *testing.T) {
		r, err := c.TradeQuery(ctx, TradeQuery{OutTradeNo: "20240102000001"})
		if err != nil {
			t.Fatal(err)
		}
		if r.TotalAmount != 8888 || r.TradeStatus != TradeSuccess || len(r.FundBills) != 1 ||
			!r.SendPayDate.Equal(time.Date(2024, 1, 2, 3, 5, 1, 0, Beijing())) {
			t.Fatalf("%+v", r)
		}
		req := (*reqs)[len(*reqs)-1]
		q := req.URL.Query()
		if q.Get("timestamp") != "2024-01-02 03:04:05" || q.Get("biz_content") != "" || q.Get("sign") == "" {
			t.Fatalf("query %v", q)
		}
		body, _ := io.ReadAll(req.Body)
		form, _ := url.ParseQuery(string(body))
		// The gateway's view: the union of query and body verifies with the app public key.
		all := map[string]string{}
		for k := range q {
			all[k] = q.Get(k)
		}
		all["biz_content"] = form.Get("biz_content")
		// openssl checks it over the request canonical string (sign_type signed), built here.
		testsign.VerifyRSA2(t, "testdata/shared/test_public.pem", []byte(testsign.SortedJoin(all, "sign")), all["sign"])
	})
	t.Run("OK/Precreate", func(t *testing.T) {
		r, err := c.TradePrecreate(ctx, TradePrecreate{OutTradeNo: "20240102000004", TotalAmount: 100, Subject: "QR"})
		if err != nil {
			t.Fatal(err)
		}
		if r.QRCode != "https://qr.alipay.com/bax00000000000000000000" {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("ErrUnsignedError", func(t *testing.T) {
		_, err := c.TradeClose(ctx, TradeClose{OutTradeNo: "1"})
		var e *Error
		if !errors.As(err, &e) || e.SubCode != "isv.invalid-signature" || e.Signed {
			t.Fatalf("got %v", err)
		}
	})
}
