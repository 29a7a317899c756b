package alipaylegacy

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestNotifyVerify(t *testing.T) {
	t.Parallel()
	const id = "RqPnCoPT3K9%2Fvwbh3InQ%2BxMjzdWkNOKcT1W4o3D5A8%2FxZqpSg1bFZtrYEe7q3qNq"
	answers := []struct {
		name, body string
		ok         bool
	}{
		{"OK", "true", true},
		{"ErrFalse", "false", false},
		{"ErrInvalid", "invalid", false},
		{"ErrUpper", "TRUE", false},
		{"ErrSuffix", "xtrue", false},
		{"ErrLeadingSpace", " true", false},
		{"OKNewline", "true\n", true},
		{"OKCRLF", "true\r\n", true},
		{"ErrSecondLine", "true\nfalse", false},
		{"ErrEmpty", "", false},
		{"ErrHTML", "<html>true</html>\ntrue", false},
	}
	for _, a := range answers {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			atn := newATN(t, a.body)
			c := testClient(t, SignMD5, func(cfg *Config) { cfg.NotifyVerifyURL = atn.URL + "/gateway.do?service=notify_verify" })
			err := c.NotifyVerify(context.Background(), id)
			if q := atn.asked(); len(q) != 1 || q[0] != "service=notify_verify&partner="+testPartner+"&notify_id="+id {
				t.Fatalf("asked %q", q)
			}
			if a.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ne *NotifyVerifyError
			if !errors.Is(err, ErrNotConfirmed) || errors.Is(err, ErrNotifyVerifyUnavailable) || !errors.As(err, &ne) {
				t.Fatalf("got %v", err)
			}
			if ne.Answer != a.body || ne.Status != 200 || ne.NotifyID != id {
				t.Fatalf("%+v", ne)
			}
		})
	}
	t.Run("OK/HTTPForm", func(t *testing.T) {
		t.Parallel()
		atn := newATN(t, "true")
		c := testClient(t, SignMD5, func(cfg *Config) { cfg.NotifyVerifyURL = atn.URL + "/trade/notify_query.do" })
		if err := c.NotifyVerify(context.Background(), "abc"); err != nil {
			t.Fatal(err)
		}
		if q := atn.asked(); q[0] != "partner="+testPartner+"&notify_id=abc" {
			t.Fatal(q)
		}
	})
	t.Run("ErrTimeout", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			io.WriteString(w, "true")
		}))
		defer srv.Close()
		defer close(release)
		c := testClient(t, SignMD5, func(cfg *Config) { cfg.NotifyVerifyURL = srv.URL; cfg.Timeout = 50 * time.Millisecond })
		err := c.NotifyVerify(context.Background(), "abc")
		if !errors.Is(err, ErrNotifyVerifyUnavailable) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotConfirmed) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrStatus", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "true")
		}))
		defer srv.Close()
		c := testClient(t, SignMD5, func(cfg *Config) { cfg.NotifyVerifyURL = srv.URL })
		var ne *NotifyVerifyError
		if err := c.NotifyVerify(context.Background(), "abc"); !errors.Is(err, ErrNotifyVerifyUnavailable) || !errors.As(err, &ne) || ne.Status != 502 {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrConnectionRefused", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		c := testClient(t, SignMD5, func(cfg *Config) { cfg.NotifyVerifyURL = "http://" + addr + "/gateway.do" })
		if err := c.NotifyVerify(context.Background(), "abc"); !errors.Is(err, ErrNotifyVerifyUnavailable) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrUnsendableID", func(t *testing.T) {
		t.Parallel()
		atn := newATN(t, "true")
		c := testClient(t, SignMD5, func(cfg *Config) { cfg.NotifyVerifyURL = atn.URL })
		for _, id := range []string{"", "a&partner=2088000000000000", "a b", "a#b", "a%zz", "a%2", "中", strings.Repeat("a", 257)} {
			if err := c.NotifyVerify(context.Background(), id); !errors.Is(err, ErrNotConfirmed) {
				t.Errorf("%q: %v", id, err)
			}
		}
		if q := atn.asked(); len(q) != 0 {
			t.Fatalf("sent %q", q)
		}
	})
}

func TestDirectPay(t *testing.T) {
	t.Parallel()
	c := testClient(t, SignMD5, func(cfg *Config) { cfg.SellerID = "2088000000000001" })
	order := func() *DirectPay {
		return &DirectPay{OutTradeNo: "T1", Subject: `Tom's "best" <b>&co</b>`, TotalFee: 1, ReturnURL: "https://shop.example.com/return",
			Extra: map[string]string{"qr_pay_mode": "2", "empty": ""}}
	}
	t.Run("OK/URL", func(t *testing.T) {
		u, err := c.DirectPayURL(order())
		if err != nil {
			t.Fatal(err)
		}
		q := strings.TrimPrefix(u, DefaultGateway+"?")
		vals, err := url.ParseQuery(q)
		if err != nil || q == u {
			t.Fatal(u, err)
		}
		want := []kv{{"_input_charset", "utf-8"}, {"out_trade_no", "T1"}, {"partner", testPartner}, {"payment_type", "1"},
			{"qr_pay_mode", "2"}, {"return_url", "https://shop.example.com/return"}, {"seller_id", "2088000000000001"},
			{"service", "create_direct_pay_by_user"}, {"subject", `Tom's "best" <b>&co</b>`}, {"total_fee", "0.01"}}
		if vals.Get("sign") != opensslMD5(t, sortedString(want), md5Key(t)) || vals.Get("sign_type") != "MD5" || len(vals) != len(want)+2 {
			t.Fatalf("%v", vals)
		}
		if !strings.HasSuffix(u, "&sign="+vals.Get("sign")+"&sign_type=MD5") {
			t.Fatal("sign and sign_type are not last")
		}
	})
	t.Run("OK/Form", func(t *testing.T) {
		f, err := c.DirectPayForm(order())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(f, `name="subject" value="Tom&#39;s &#34;best&#34; &lt;b&gt;&amp;co&lt;/b&gt;"`) ||
			!strings.Contains(f, `action="https://mapi.alipay.com/gateway.do?_input_charset=utf-8"`) ||
			!strings.Contains(f, `name="sign_type" value="MD5"`) || strings.Contains(f, "<b>") {
			t.Fatal(f)
		}
	})
	t.Run("OK/GBK", func(t *testing.T) {
		g := testClient(t, SignMD5, func(cfg *Config) { cfg.InputCharset = "gbk" })
		u, err := g.DirectPayURL(&DirectPay{OutTradeNo: "T1", Subject: "中文", TotalFee: 8888})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(u, "subject=%D6%D0%CE%C4") || !strings.Contains(u, "_input_charset=gbk") {
			t.Fatal(u)
		}
		want := []kv{{"_input_charset", "gbk"}, {"out_trade_no", "T1"}, {"partner", testPartner}, {"payment_type", "1"},
			{"seller_id", testPartner}, {"service", "create_direct_pay_by_user"}, {"subject", "\xd6\xd0\xce\xc4"}, {"total_fee", "88.88"}}
		if !strings.Contains(u, "&sign="+opensslMD5(t, sortedString(want), md5Key(t))+"&") {
			t.Fatal("sign is not over the GBK bytes")
		}
		f, _ := g.DirectPayForm(&DirectPay{OutTradeNo: "T1", Subject: "中文", TotalFee: 8888})
		if !strings.Contains(f, `accept-charset="gbk"`) || !strings.Contains(f, `value="中文"`) {
			t.Fatal(f)
		}
		if _, err := g.DirectPayURL(&DirectPay{OutTradeNo: "T1", Subject: "😀", TotalFee: 1}); err == nil {
			t.Fatal("a character GBK cannot hold")
		}
	})
	t.Run("OK/RSA", func(t *testing.T) {
		r := testClient(t, SignRSA, func(cfg *Config) { cfg.SellerEmail = "seller@example.com" })
		u, err := r.DirectPayURL(&DirectPay{OutTradeNo: "T1", Subject: "s", TotalFee: 100})
		if err != nil {
			t.Fatal(err)
		}
		vals, _ := url.ParseQuery(strings.TrimPrefix(u, DefaultGateway+"?"))
		want := []kv{{"_input_charset", "utf-8"}, {"out_trade_no", "T1"}, {"partner", testPartner}, {"payment_type", "1"},
			{"seller_email", "seller@example.com"}, {"service", "create_direct_pay_by_user"}, {"subject", "s"}, {"total_fee", "1.00"}}
		// PKCS#1 v1.5 signatures are deterministic: openssl makes the same one.
		if vals.Get("sign") != opensslSHA1(t, "keys/merchant_private_pkcs1.pem", sortedString(want)) || vals.Get("sign_type") != "RSA" {
			t.Fatal(vals)
		}
		noKey := testClient(t, SignRSA, func(cfg *Config) { cfg.MerchantPrivateKey = nil })
		if _, err := noKey.DirectPayURL(&DirectPay{OutTradeNo: "T1", Subject: "s", TotalFee: 100}); err == nil {
			t.Fatal("signed without a merchant key")
		}
	})
	bad := map[string]*DirectPay{
		"ErrNoOutTradeNo":   {Subject: "s", TotalFee: 1},
		"ErrLongOutTradeNo": {OutTradeNo: strings.Repeat("1", 65), Subject: "s", TotalFee: 1},
		"ErrNoSubject":      {OutTradeNo: "T1", Subject: " ", TotalFee: 1},
		"ErrZeroFee":        {OutTradeNo: "T1", Subject: "s"},
		"ErrHugeFee":        {OutTradeNo: "T1", Subject: "s", TotalFee: maxFen + 1},
		"ErrNotifyQuery":    {OutTradeNo: "T1", Subject: "s", TotalFee: 1, NotifyURL: "https://shop.example.com/n?id=1"},
		"ErrReturnScheme":   {OutTradeNo: "T1", Subject: "s", TotalFee: 1, ReturnURL: "javascript:alert(1)"},
		"ErrExtraSign":      {OutTradeNo: "T1", Subject: "s", TotalFee: 1, Extra: map[string]string{"sign": "x"}},
		"ErrExtraClash":     {OutTradeNo: "T1", Subject: "s", TotalFee: 1, Extra: map[string]string{"total_fee": "0.01"}},
	}
	for name, p := range bad {
		t.Run(name, func(t *testing.T) {
			if _, err := c.DirectPayURL(p); err == nil || !strings.HasPrefix(err.Error(), "alipaylegacy: ") {
				t.Fatal(err)
			}
		})
	}
}

func TestEscrow(t *testing.T) {
	t.Parallel()
	c := testClient(t, SignMD5, nil)
	p := &EscrowTrade{Service: ServiceCreatePartnerTradeByBuyer, OutTradeNo: "E1", Subject: "s", Price: 1000, Quantity: 2,
		LogisticsType: "EXPRESS", LogisticsPayment: "SELLER_PAY", ReceiveName: "张三"}
	u, err := c.EscrowURL(p)
	if err != nil {
		t.Fatal(err)
	}
	vals, _ := url.ParseQuery(strings.TrimPrefix(u, DefaultGateway+"?"))
	want := []kv{{"_input_charset", "utf-8"}, {"logistics_fee", "0.00"}, {"logistics_payment", "SELLER_PAY"}, {"logistics_type", "EXPRESS"},
		{"out_trade_no", "E1"}, {"partner", testPartner}, {"payment_type", "1"}, {"price", "10.00"}, {"quantity", "2"},
		{"receive_name", "张三"}, {"seller_id", testPartner}, {"service", ServiceCreatePartnerTradeByBuyer}, {"subject", "s"}}
	if vals.Get("sign") != opensslMD5(t, sortedString(want), md5Key(t)) || vals.Has("total_fee") {
		t.Fatal(vals)
	}
	if f, err := c.EscrowForm(p); err != nil || !strings.Contains(f, `name="logistics_fee" value="0.00"`) {
		t.Fatal(f, err)
	}
	for name, mod := range map[string]func(*EscrowTrade){
		"ErrService":   func(e *EscrowTrade) { e.Service = ServiceDirectPay },
		"ErrQuantity":  func(e *EscrowTrade) { e.Quantity = 0 },
		"ErrPrice":     func(e *EscrowTrade) { e.Price = 0 },
		"ErrLogistics": func(e *EscrowTrade) { e.LogisticsType = "" },
	} {
		q := *p
		mod(&q)
		if _, err := c.EscrowURL(&q); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// wapGateway answers every POST with answer, after checking the request is signed (MD5).
func wapGateway(t *testing.T, answer func(reqID string) []byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var fs []kv
		for k := range r.PostForm {
			fs = append(fs, kv{k, r.PostForm.Get(k)})
		}
		if r.PostForm.Get("sign") != opensslMD5(t, sortedString(fs), md5Key(t)) || r.PostForm.Has("sign_type") {
			http.Error(w, "ILLEGAL_SIGN", 400)
			return
		}
		w.Write(answer(r.PostForm.Get("req_id")))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// tokenAnswer is an MD5-signed token answer (sorted rule, docs/alipay-legacy.md §11.2).
func tokenAnswer(t *testing.T, partner, reqID, token string) []byte {
	fs := []kv{{"partner", partner}, {"req_id", reqID},
		{"res_data", `<?xml version="1.0" encoding="utf-8"?><direct_trade_create_res><request_token>` + token + `</request_token></direct_trade_create_res>`},
		{"sec_id", "MD5"}, {"service", ServiceWAPCreateDirect}, {"v", "2.0"}}
	return md5Notify(t, fs)
}

func TestWAPCreateDirect(t *testing.T) {
	t.Parallel()
	trade := func() *WAPTrade {
		return &WAPTrade{OutTradeNo: "W1", Subject: "a<b>&c", TotalFee: 1, CallBackURL: "https://shop.example.com/cb", SellerAccountName: "s@example.com", PayExpire: 30}
	}
	run := func(t *testing.T, answer func(reqID string) []byte) (string, error) {
		gw := wapGateway(t, answer)
		c := testClient(t, SignMD5, func(cfg *Config) { cfg.WAPGateway = gw.URL + "/service/rest.htm" })
		return c.WAPCreateDirect(context.Background(), trade())
	}
	t.Run("OK", func(t *testing.T) {
		tok, err := run(t, func(id string) []byte { return tokenAnswer(t, testPartner, id, "tok123") })
		if err != nil || tok != "tok123" {
			t.Fatal(tok, err)
		}
	})
	t.Run("ErrWrongPartner", func(t *testing.T) {
		_, err := run(t, func(id string) []byte { return tokenAnswer(t, "2088000000000000", id, "tok123") })
		wantReasonOf(t, err, ReasonWrongPartner)
	})
	t.Run("ErrReqID", func(t *testing.T) {
		_, err := run(t, func(id string) []byte { return tokenAnswer(t, testPartner, id+"9", "tok123") })
		wantReasonOf(t, err, ReasonReqIDMismatch)
	})
	t.Run("ErrTampered", func(t *testing.T) {
		_, err := run(t, func(id string) []byte {
			return []byte(strings.Replace(string(tokenAnswer(t, testPartner, id, "tok123")), "tok123", "tok999", 1))
		})
		wantReasonOf(t, err, ReasonSignatureInvalid)
	})
	t.Run("ErrEmptyToken", func(t *testing.T) {
		_, err := run(t, func(id string) []byte { return tokenAnswer(t, testPartner, id, "") })
		wantReasonOf(t, err, ReasonMissingField)
	})
	t.Run("ErrUnsigned", func(t *testing.T) {
		_, err := run(t, func(id string) []byte { return []byte("partner=" + testPartner + "&req_id=" + id + "&res_data=x") })
		wantReasonOf(t, err, ReasonUnsigned)
	})
	t.Run("ErrStatus", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", 503) }))
		defer srv.Close()
		c := testClient(t, SignMD5, func(cfg *Config) { cfg.WAPGateway = srv.URL })
		_, err := c.WAPCreateDirect(context.Background(), trade())
		var ve *VerifyError
		if err == nil || errors.As(err, &ve) || !strings.Contains(err.Error(), "503") {
			t.Fatal(err)
		}
	})
	t.Run("OK/RequestXMLEscaped", func(t *testing.T) {
		c := testClient(t, SignMD5, nil)
		b, _, err := c.wapCreateBody(trade())
		if err != nil {
			t.Fatal(err)
		}
		vals, _ := url.ParseQuery(b)
		want := "<direct_trade_create_req><call_back_url>https://shop.example.com/cb</call_back_url><seller_account_name>s@example.com</seller_account_name>" +
			"<out_trade_no>W1</out_trade_no><subject>a&lt;b&gt;&amp;c</subject><total_fee>0.01</total_fee><pay_expire>30</pay_expire></direct_trade_create_req>"
		if vals.Get("req_data") != want || vals.Has("sign_type") || vals.Get("sec_id") != "MD5" || len(vals.Get("req_id")) != 20 {
			t.Fatal(vals)
		}
		if _, _, err := c.wapCreateBody(&WAPTrade{OutTradeNo: "W1", Subject: "s", TotalFee: 1, CallBackURL: "https://x/cb"}); err == nil {
			t.Fatal("no seller_account_name")
		}
		if _, _, err := c.wapCreateBody(&WAPTrade{OutTradeNo: "W1", Subject: "s\x00", TotalFee: 1, CallBackURL: "https://x/cb", SellerAccountName: "s"}); err == nil {
			t.Fatal("a NUL in XML")
		}
	})
}

func TestWAPAuthURL(t *testing.T) {
	t.Parallel()
	c := testClient(t, SignMD5, nil)
	c.now = func() time.Time { return time.Date(2026, 11, 28, 3, 0, 1, 0, time.UTC) }
	u, err := c.WAPAuthURL("tok")
	if err != nil {
		t.Fatal(err)
	}
	vals, _ := url.ParseQuery(strings.TrimPrefix(u, DefaultWAPGateway+"?"))
	if !strings.HasPrefix(vals.Get("req_id"), "20261128110001") || vals.Has("sign_type") ||
		vals.Get("req_data") != "<auth_and_execute_req><request_token>tok</request_token></auth_and_execute_req>" {
		t.Fatal(vals)
	}
	var fs []kv
	for k := range vals {
		fs = append(fs, kv{k, vals.Get(k)})
	}
	if vals.Get("sign") != opensslMD5(t, sortedString(fs), md5Key(t)) {
		t.Fatal("sign")
	}
	if _, err := c.WAPAuthURL(""); err == nil {
		t.Fatal("empty token")
	}
}

// TestParseTokenAnswer0001: a token answer under 0001 carries res_data encrypted to the merchant
// key and signed, by Alipay's key, over the sorted string with res_data in plaintext
// (docs/alipay-legacy.md §7, §11.2); a block that does not decrypt is told apart only after the
// signature check has run (decryptBlinded).
func TestParseTokenAnswer0001(t *testing.T) {
	t.Parallel()
	c := testClient(t, SignRSA, nil)
	res := `<?xml version="1.0" encoding="utf-8"?><direct_trade_create_res><request_token>tok0001</request_token></direct_trade_create_res>`
	answer := func(sent string) []byte {
		fs := []kv{{"partner", testPartner}, {"req_id", "R1"}, {"res_data", res}, {"sec_id", "0001"}, {"service", ServiceWAPCreateDirect}, {"v", "2.0"}}
		sig := opensslSHA1(t, "keys/alipay_private_pkcs1.pem", sortedString(fs))
		fs[2][1] = sent
		return body(append(fs, kv{"sign", sig}))
	}
	tok, err := c.parseTokenAnswer(answer(opensslEncrypt0001(t, "keys/merchant_public.pem", []byte(res))), "R1")
	if err != nil || tok != "tok0001" {
		t.Fatal(tok, err)
	}
	first, _ := base64.StdEncoding.DecodeString(opensslEncrypt0001(t, "keys/attacker_public.pem", []byte(res[:117])))
	rest, _ := base64.StdEncoding.DecodeString(opensslEncrypt0001(t, "keys/merchant_public.pem", []byte(res[117:])))
	_, err = c.parseTokenAnswer(answer(base64.StdEncoding.EncodeToString(append(first, rest...))), "R1")
	// From Alipay's gateway over TLS, not from anyone: named as what it is (a wrong merchant key).
	wantReasonOf(t, err, ReasonDecryptFailed)
}
