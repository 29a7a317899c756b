package sandbox

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// wapCreate is an alipay.wap.trade.create.direct request (unsigned).
func wapCreate(b *testBundle, secID, no, notifyURL string) kvs {
	reqData := "<direct_trade_create_req><notify_url>" + notifyURL + "</notify_url>" +
		"<call_back_url>http://merchant.example/wap/callback</call_back_url>" +
		"<seller_account_name>" + b.keys.LegacySellerEmail + "</seller_account_name><out_trade_no>" + no + "</out_trade_no>" +
		"<subject>收银台{" + no + "} &amp; more</subject><total_fee>1.00</total_fee>" +
		"<merchant_url>http://merchant.example/cart</merchant_url></direct_trade_create_req>"
	return kvs{{"service", "alipay.wap.trade.create.direct"}, {"partner", b.keys.LegacyPartner}, {"sec_id", secID}, {"format", "xml"},
		{"v", "2.0"}, {"req_id", "20261128110001"}, {"req_data", reqData}, {"_input_charset", "utf-8"}}
}

// postForm POSTs an application/x-www-form-urlencoded body and returns the response and body.
func postForm(t *testing.T, u, body string) (*http.Response, string) {
	t.Helper()
	resp, err := noRedirect.Post(u, "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// tParseTokenAnswer reads a token answer the way docs/alipay-legacy.md §11.2 recommends (split on &
// and the first =, then decode each value), decrypts res_data under 0001, verifies the sign over
// the sorted string with the plaintext res_data, and returns the fields (res_data in plaintext) and
// the token.
func (b *testBundle) tParseTokenAnswer(body, secID string) (kvs, string, error) {
	p, err := tParse(body)
	if err != nil {
		return nil, "", err
	}
	if secID == "0001" && p.get("res_data") != "" {
		plain, err := tOpenSSLDecrypt0001(b.keys.LegacyMerchantPrivateKey, p.get("res_data"))
		if err != nil {
			return p, "", err
		}
		p = p.set("res_data", string(plain))
	}
	if p.get("res_error") != "" {
		return p, "", nil
	}
	return p, xmlText(p.get("res_data"), "request_token"), b.tVerifyAlipay(secID, tSorted(p), p.get("sign"), "")
}

// TestLegacy_Wap runs the old WAP pair with sec_id MD5 and 0001: the token request (form-encoded
// and multipart), the token answer (res_data encrypted under 0001, decrypted here with openssl
// pkeyutl per 128-byte block), authAndExecute, the signed call_back_url, and the notification
// signed over the fixed-order string with the plaintext notify_data.
func TestLegacy_Wap(t *testing.T) {
	t.Parallel()
	for _, secID := range []string{"MD5", "0001"} {
		t.Run(secID, func(t *testing.T) {
			t.Parallel()
			b := setupLegacy(t, 1000, nil, nil, true)
			m := newMerchant(t, func(_ int, _ *http.Request, body []byte) (int, string) {
				_, plain, err := b.tVerifyWap(string(body), secID)
				if err != nil {
					return 200, "fail"
				}
				if ans, _ := b.tNotifyVerify(b.keys.LegacyPartner, xmlText(plain, "notify_id")); ans != "true" {
					return 200, "fail"
				}
				return 200, "success"
			})
			no := "leg_wap_" + secID
			rest := b.srv.URL + "/sandbox/alipay-legacy/wap/rest.htm"
			create := wapCreate(b, secID, no, m.srv.URL)
			sign, err := b.tSign(secID, tSorted(create))
			if err != nil {
				t.Fatal(err)
			}
			signed := append(create, [2]string{"sign", sign})

			// Forged: the req_data changed after signing.
			_, body := postForm(t, rest+"?_input_charset=utf-8", tEncode(signed.set("req_data", strings.Replace(create.get("req_data"), "1.00", "0.01", 1))))
			if ans, _ := tParse(body); !strings.Contains(ans.get("res_error"), "<code>ILLEGAL_SIGN</code>") || ans.get("sign") != "" {
				t.Fatalf("forged token request: %s", body)
			}
			// Signed: form-encoded for MD5 (the 2.0 demo), multipart for 0001 (the 3.3 demo's curl).
			var resp *http.Response
			if secID == "MD5" {
				resp, body = postForm(t, rest+"?_input_charset=utf-8", tEncode(signed))
			} else {
				resp, body = postMultipart(t, rest+"?_input_charset=utf-8", signed)
			}
			ans, token, err := b.tParseTokenAnswer(body, secID)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("token answer: %v %d %s", err, resp.StatusCode, body)
			}
			if ans.get("partner") != b.keys.LegacyPartner || ans.get("req_id") != "20261128110001" || ans.get("sec_id") != secID ||
				ans.get("service") != "alipay.wap.trade.create.direct" || ans.get("v") != "2.0" || len(token) != 40 ||
				!strings.HasPrefix(ans.get("res_data"), `<?xml version="1.0" encoding="utf-8"?><direct_trade_create_res>`) {
				t.Fatalf("token answer %v", ans)
			}
			if secID == "0001" {
				raw, _ := tParse(body)
				if strings.Contains(raw.get("res_data"), "request_token") {
					t.Fatal("0001 res_data is not encrypted")
				}
			}

			// authAndExecute: the buyer's browser; a forged one is refused.
			auth := kvs{{"service", "alipay.wap.auth.authAndExecute"}, {"partner", b.keys.LegacyPartner}, {"sec_id", secID},
				{"format", "xml"}, {"v", "2.0"}, {"req_id", "20261128110001"},
				{"req_data", "<auth_and_execute_req><request_token>" + token + "</request_token></auth_and_execute_req>"}, {"_input_charset", "utf-8"}}
			authURL := b.legacyURL(t, "wap/rest.htm", auth, secID)
			if _, code, _ := tGetPage(t, strings.Replace(authURL, "req_id=20261128110001", "req_id=20261128110002", 1)); code != "ILLEGAL_SIGN" {
				t.Fatalf("forged authAndExecute: %q", code)
			}
			status, code, page := tGetPage(t, authURL)
			if status != 200 || code != "" || !strings.Contains(page, no) {
				t.Fatalf("cashier: %q %s", code, page)
			}
			tr := legacyTrade(t, b, no)
			if tr.Status != "WAIT_BUYER_PAY" || tr.Subject != "收银台{"+no+"} & more" || tr.Amount != 100 {
				t.Fatalf("trade %+v", tr)
			}
			// Cancel sends the buyer to merchant_url; the order stays payable.
			if resp := tCashierPost(t, b, tr.Token, "cancel"); resp.Header.Get("Location") != "http://merchant.example/cart" {
				t.Fatalf("cancel: %d %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			// Pay: call_back_url?out_trade_no&request_token&result&trade_no&sign, sorted rule.
			resp = tCashierPost(t, b, tr.Token, "pay")
			loc := resp.Header.Get("Location")
			if !strings.HasPrefix(loc, "http://merchant.example/wap/callback?") {
				t.Fatalf("pay: %d %q", resp.StatusCode, loc)
			}
			cb, err := tParse(loc[strings.Index(loc, "?")+1:])
			if err != nil {
				t.Fatal(err)
			}
			if err := b.tVerifyAlipay(secID, tSorted(cb), cb.get("sign"), ""); err != nil {
				t.Fatalf("call_back_url does not verify: %v %s", err, loc)
			}
			if len(cb) != 5 || cb.get("result") != "success" || cb.get("request_token") != token || cb.get("out_trade_no") != no ||
				cb.get("trade_no") != legacyTrade(t, b, no).TradeNo {
				t.Fatalf("call_back_url fields %v", cb)
			}

			if _, err := b.sb.WaitAcked(waitCtx(t, 20*time.Second), AttemptFilter{OutTradeNo: no}, 1); err != nil {
				t.Fatal(err)
			}
			r := m.requests()[0]
			f, plain, err := b.tVerifyWap(string(r.body), secID)
			if err != nil {
				t.Fatal(err)
			}
			if secID == "0001" && strings.Contains(f.get("notify_data"), "<notify>") {
				t.Fatal("0001 notify_data is not encrypted")
			}
			if !strings.HasPrefix(plain, "<notify><payment_type>1</payment_type><subject>收银台{"+no+"} &amp; more</subject>") ||
				xmlText(plain, "trade_status") != "TRADE_SUCCESS" || xmlText(plain, "total_fee") != "1.00" ||
				xmlText(plain, "out_trade_no") != no || xmlText(plain, "seller_id") != b.keys.LegacyPartner ||
				xmlText(plain, "seller_email") != b.keys.LegacySellerEmail || len(xmlText(plain, "notify_id")) != 34 {
				t.Fatalf("notify_data %s", plain)
			}
			// The same trade's authAndExecute URL is refused once paid.
			if _, code, _ := tGetPage(t, authURL); code != "TRADE_HAS_SUCCESS" {
				t.Fatalf("authAndExecute after payment: %q", code)
			}
		})
	}
}

// TestLegacy_WapRefusals checks the token request's res_error answers and authAndExecute errors.
func TestLegacy_WapRefusals(t *testing.T) {
	t.Parallel()
	b := setupLegacy(t, 1, nil, nil, false)
	rest := b.srv.URL + "/sandbox/alipay-legacy/wap/rest.htm"
	token := func(p kvs, st string, extra ...[2]string) kvs {
		t.Helper()
		sign, err := b.tSign(st, tSorted(p))
		if err != nil {
			t.Fatal(err)
		}
		_, body := postForm(t, rest, tEncode(append(append(p, extra...), [2]string{"sign", sign})))
		ans, err := tParse(body)
		if err != nil {
			t.Fatal(err)
		}
		return ans
	}
	base := wapCreate(b, "MD5", "leg_wap_refuse", "http://merchant.example/n")
	for _, c := range []struct {
		name  string
		ans   kvs
		code  string
		sign  bool
		token bool
	}{
		{"unknown partner", token(base.set("partner", "2088000000000001"), "MD5"), "0005", false, false},
		{"sign_type sent", token(base, "MD5", [2]string{"sign_type", "MD5"}), "ILLEGAL_ARGUMENT", false, false},
		{"bad sec_id", token(base.set("sec_id", "RSA"), "RSA"), "ILLEGAL_SIGN_TYPE", false, false},
		{"DTD in req_data", token(base.set("req_data", `<!DOCTYPE x [<!ENTITY e "x">]>`+base.get("req_data")), "MD5"), "ILLEGAL_ARGUMENT", false, false},
		{"no call_back_url", token(base.set("req_data", strings.Replace(base.get("req_data"), "call_back_url", "cbu", 2)), "MD5"), "ILLEGAL_ARGUMENT", false, false},
		{"ok", token(base, "MD5"), "", true, true},
	} {
		errXML := c.ans.get("res_error")
		if c.code != "" && (!strings.Contains(errXML, "<code>"+c.code+"</code>") || !strings.HasPrefix(errXML, `<?xml version="1.0" encoding="utf-8"?><err>`)) {
			t.Errorf("%s: %v", c.name, c.ans)
		}
		if (c.ans.get("sign") != "") != c.sign || (xmlText(c.ans.get("res_data"), "request_token") != "") != c.token {
			t.Errorf("%s: sign/token %v", c.name, c.ans)
		}
		if c.ans.get("service") != "alipay.wap.trade.create.direct" || c.ans.get("v") != "2.0" {
			t.Errorf("%s: %v", c.name, c.ans)
		}
	}
	if a := token(base.set("partner", "2088000000000001"), "MD5"); !strings.Contains(a.get("res_error"), "<msg>partner illegal</msg>") {
		t.Errorf("0005: %v", a)
	}
	// A token replaced by a later request for the same unpaid order is dead.
	t1 := xmlText(token(wapCreate(b, "MD5", "leg_wap_re", "http://merchant.example/n"), "MD5").get("res_data"), "request_token")
	t2 := xmlText(token(wapCreate(b, "MD5", "leg_wap_re", "http://merchant.example/n"), "MD5").get("res_data"), "request_token")
	auth := func(tok string) kvs {
		return kvs{{"service", "alipay.wap.auth.authAndExecute"}, {"partner", b.keys.LegacyPartner}, {"sec_id", "MD5"}, {"format", "xml"},
			{"v", "2.0"}, {"req_data", "<auth_and_execute_req><request_token>" + tok + "</request_token></auth_and_execute_req>"}}
	}
	if t1 == "" || t1 == t2 {
		t.Fatalf("tokens %q %q", t1, t2)
	}
	if _, code, _ := tGetPage(t, b.legacyURL(t, "wap/rest.htm", auth(t1), "MD5")); code != "ILLEGAL_ARGUMENT" {
		t.Errorf("replaced token: %q", code)
	}
	// Act with the authAndExecute URL pays.
	tr, err := b.sb.Act("pay", ActionRequest{URL: b.legacyURL(t, "wap/rest.htm", auth(t2), "MD5")})
	if err != nil || tr.Status != "TRADE_SUCCESS" || tr.OutTradeNo != "leg_wap_re" {
		t.Fatalf("Act pay with the authAndExecute URL: %+v %v", tr, err)
	}
	// The token was issued for MD5: authAndExecute under 0001 is refused.
	t3 := xmlText(token(wapCreate(b, "MD5", "leg_wap_sec", "http://merchant.example/n"), "MD5").get("res_data"), "request_token")
	a3 := auth(t3).set("sec_id", "0001")
	if _, code, _ := tGetPage(t, b.legacyURL(t, "wap/rest.htm", a3, "0001")); code != "ILLEGAL_SIGN_TYPE" {
		t.Errorf("sec_id switched: %q", code)
	}
}
