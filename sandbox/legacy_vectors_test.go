package sandbox

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The shared legacy vectors (testdata/legacy, see its README): made by an independent generator
// and checked against Alipay's official PHP demo code.
const vecDir = "testdata/legacy"

func vecFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vecDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// setupVectors runs a sandbox that is the vectors' Alipay: their "Alipay" key, merchant key, MD5
// key, partner and seller.
func setupVectors(t *testing.T) *testBundle {
	t.Helper()
	files := map[string][]byte{
		"legacy_alipay_private_key.pem":   []byte(vecFile(t, "keys/alipay_private_pkcs8.pem")),
		"legacy_merchant_private_key.pem": []byte(vecFile(t, "keys/merchant_private_pkcs8.pem")),
		"legacy_md5_key":                  []byte(vecFile(t, "keys/md5_key.txt")),
		"legacy_partner":                  []byte("2088101122136241\n"),
		"legacy_seller_email":             []byte("seller@example.com\n"),
	}
	b := setupLegacy(t, 1, files, nil, false)
	if b.keys.LegacyPartner != "2088101122136241" || b.keys.LegacyMD5Key != strings.TrimSpace(vecFile(t, "keys/md5_key.txt")) {
		t.Fatalf("the sandbox did not load the vector keys: %+v", b.keys)
	}
	return b
}

// TestLegacy_VectorSigns checks that the sandbox's own signer reproduces the sign of every
// Alipay-signed vector from the vector's decoded fields (signatures are deterministic), the
// wrongly-signed cases its faults imitate included, and that its canonical strings are the
// vectors' .prestr.
func TestLegacy_VectorSigns(t *testing.T) {
	t.Parallel()
	b := setupVectors(t)
	p, err := b.sb.legacyPartner(b.keys.LegacyPartner)
	if err != nil {
		t.Fatal(err)
	}
	fields := func(t *testing.T, file string) ([]field, string) {
		t.Helper()
		text := strings.TrimSpace(vecFile(t, "cases/"+file))
		if i := strings.Index(text, "?"); i >= 0 && strings.HasSuffix(file, ".url") {
			text = text[i+1:]
		}
		fs, err := parseForm(text)
		if err != nil {
			t.Fatal(err)
		}
		sign := ""
		for _, f := range fs {
			if f.Key == "sign" {
				sign = f.Value
			}
		}
		return fs, sign
	}
	get := func(fs []field, k string) string {
		for _, f := range fs {
			if f.Key == k {
				return f.Value
			}
		}
		return ""
	}
	check := func(t *testing.T, name, st string, msg []byte, want string, prestr bool) {
		t.Helper()
		got, err := b.sb.legacySignWith(p, st, msg)
		if err != nil || got != want {
			t.Errorf("%s: sandbox sign %q (%v), vector %q", name, got, err, want)
		}
		if prestr {
			if wantPre := vecFile(t, "cases/"+name+".prestr"); string(msg) != wantPre {
				t.Errorf("%s: canonical string\n%q\nvector\n%q", name, msg, wantPre)
			}
		}
	}
	// mapi notifications and returns, WAP call_back_url: the sorted rule over the received bytes.
	for _, c := range []struct{ name, ext, st string }{
		{"mapi_md5_valid", ".body", "MD5"}, {"mapi_md5_empty_value", ".body", "MD5"}, {"mapi_md5_gbk", ".body", "MD5"},
		{"mapi_rsa_valid", ".body", "RSA"}, {"mapi_rsa_empty_value", ".body", "RSA"}, {"mapi_rsa_gbk", ".body", "RSA"},
		{"mapi_return_md5_valid", ".query", "MD5"}, {"mapi_return_rsa_valid", ".query", "RSA"},
		{"wap_callback_md5_valid", ".query", "MD5"}, {"wap_callback_0001_valid", ".query", "0001"},
	} {
		fs, sign := fields(t, c.name+c.ext)
		check(t, c.name, c.st, legacySortedString(fs), sign, true)
	}
	// GBK body signed over the UTF-8 bytes: the gbk_as_utf8 fault's signature.
	fs, sign := fields(t, "mapi_md5_gbk_signed_as_utf8.body")
	var utf []field
	for _, f := range fs {
		utf = append(utf, field{f.Key, toCharset(fromCharset(f.Value, "gbk"), "utf-8")})
	}
	check(t, "mapi_md5_gbk_signed_as_utf8", "MD5", legacySortedString(utf), sign, false)

	// WAP notifications: the fixed-order rule over the plaintext notify_data.
	for _, c := range []struct{ name, st string }{{"wap_notify_md5_valid", "MD5"}, {"wap_notify_0001_valid", "0001"}} {
		fs, sign := fields(t, c.name+".body")
		plain := vecFile(t, "cases/"+c.name+".notify_data.xml")
		check(t, c.name, c.st, legacyFixedString(get(fs, "service"), get(fs, "v"), get(fs, "sec_id"), plain), sign, true)
	}
	// The sorted_order fault's signature (WAP MD5 signed over the sorted string).
	fs, sign = fields(t, "wap_notify_md5_sorted_order.body")
	check(t, "wap_notify_md5_sorted_order", "MD5", legacySortedString([]field{{"service", get(fs, "service")}, {"v", get(fs, "v")},
		{"sec_id", get(fs, "sec_id")}, {"notify_data", vecFile(t, "cases/wap_notify_md5_sorted_order.notify_data.xml")}}), sign, false)
	// The ciphertext fault's signature (0001 signed over the received base64).
	fs, sign = fields(t, "wap_notify_0001_signed_ciphertext.body")
	check(t, "wap_notify_0001_signed_ciphertext", "0001", legacyFixedString(get(fs, "service"), get(fs, "v"), get(fs, "sec_id"), get(fs, "notify_data")), sign, false)

	// Token answers: the sorted rule with the plaintext res_data (decrypted here with openssl).
	for _, c := range []struct{ name, st string }{{"wap_token_md5_valid", "MD5"}, {"wap_token_0001_valid", "0001"}} {
		fs, sign := fields(t, c.name+".resp")
		var plain []field
		for _, f := range fs {
			if f.Key == "res_data" && c.st == "0001" {
				d, err := tOpenSSLDecrypt0001(b.keys.LegacyMerchantPrivateKey, f.Value)
				if err != nil {
					t.Fatal(err)
				}
				f.Value = string(d)
			}
			plain = append(plain, f)
		}
		check(t, c.name, c.st, legacySortedString(plain), sign, true)
	}
	// The merchant-side requests use the same rule: the sandbox's string is the vectors'.
	for _, name := range []string{"mapi_request_md5", "mapi_request_rsa", "wap_auth_execute_md5", "wap_auth_execute_0001"} {
		fs, _ := fields(t, name+".url")
		if got, want := string(legacySortedString(fs)), vecFile(t, "cases/"+name+".prestr"); got != want {
			t.Errorf("%s: canonical string %q, vector %q", name, got, want)
		}
	}
}

// TestLegacy_VectorRequests sends the vectors' merchant-signed requests to the sandbox's
// gateways: accepted as they are, refused once tampered.
func TestLegacy_VectorRequests(t *testing.T) {
	t.Parallel()
	b := setupVectors(t)
	gw := b.srv.URL + "/sandbox/alipay-legacy/gateway.do"
	rest := b.srv.URL + "/sandbox/alipay-legacy/wap/rest.htm"
	for _, name := range []string{"mapi_request_md5", "mapi_request_rsa"} {
		u := strings.Replace(strings.TrimSpace(vecFile(t, "cases/"+name+".url")), "https://mapi.alipay.com/gateway.do", gw, 1)
		if _, code, page := tGetPage(t, u); code != "" {
			t.Errorf("%s refused: %s %s", name, code, page)
		}
		if _, code, _ := tGetPage(t, strings.Replace(u, "total_fee=88.88", "total_fee=88.89", 1)); code != "ILLEGAL_SIGN" {
			t.Errorf("%s tampered: %q", name, code)
		}
	}
	if tr := legacyTrade(t, b, "LEG20261128001"); tr.Amount != 8888 || tr.Subject != "测试商品 No.1" || tr.Body != "大乐透2.1 & friends = 100% +1" {
		t.Errorf("trade %+v", tr)
	}

	// The token request: accepted; the answer verifies with the vectors' MD5 key.
	body := strings.TrimSpace(vecFile(t, "cases/wap_create_direct_request_md5.body"))
	resp, ans := postForm(t, rest, body)
	p, token, err := b.tParseTokenAnswer(ans, "MD5")
	if err != nil || resp.StatusCode != http.StatusOK || len(token) != 40 || p.get("req_id") != "20261128110001" {
		t.Fatalf("token answer: %v %s", err, ans)
	}
	if tr := legacyTrade(t, b, "LEGW1128001"); tr.Subject != "收银台{LEGW1128001} & more" || tr.Amount != 100 || tr.Request["merchant_url"] != "https://shop.example.com/cart" {
		t.Errorf("wap trade %+v", tr)
	}
	_, ans = postForm(t, rest, strings.Replace(body, "req_id=20261128110001", "req_id=20261128110009", 1))
	if q, _ := tParse(ans); !strings.Contains(q.get("res_error"), "ILLEGAL_SIGN") {
		t.Errorf("tampered token request: %s", ans)
	}

	// authAndExecute: the vectors' request_tokens, given to two waiting orders.
	for _, c := range []struct{ name, secID, token, no string }{
		{"wap_auth_execute_md5", "MD5", "20261128f0a1b2c3d4e5f60718293a4b5c6d7e8f", "LEGW_V_MD5"},
		{"wap_auth_execute_0001", "0001", "2026112801a2b3c4d5e6f708192a3b4c5d6e7f80", "LEGW_V_0001"},
	} {
		tr, err := b.sb.CreateOrder(OrderRequest{Provider: ProviderAlipayLegacy, Product: "wap", OutTradeNo: c.no, Amount: 100, NotifyURL: "http://127.0.0.1:1/n", ReturnURL: "http://127.0.0.1:1/cb"})
		if err != nil {
			t.Fatal(err)
		}
		tr.Request["request_token"], tr.SignType = c.token, c.secID
		if err := b.sb.st.saveTrade(tr); err != nil {
			t.Fatal(err)
		}
		u := strings.Replace(strings.TrimSpace(vecFile(t, "cases/"+c.name+".url")), "http://wappaygw.alipay.com/service/rest.htm", rest, 1)
		if _, code, _ := tGetPage(t, strings.Replace(u, "req_id=20261128110001", "req_id=20261128110002", 1)); code != "ILLEGAL_SIGN" {
			t.Errorf("%s tampered: %q", c.name, code)
		}
		if _, code, page := tGetPage(t, u); code != "" || !strings.Contains(page, c.no) {
			t.Errorf("%s refused: %s %s", c.name, code, page)
		}
		if tr := legacyTrade(t, b, c.no); tr.Status != "WAIT_BUYER_PAY" {
			t.Errorf("%s: %+v", c.name, tr)
		}
	}
}
