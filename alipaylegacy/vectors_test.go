package alipaylegacy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The vectors of testdata/ (copied from shared/vectors/alipay-legacy, see testdata/README.md) were
// made by an independent generator and agree 36/36 with Alipay's official PHP code. Every case runs
// through the package here, with the extra obligations of the README's table.

type vector struct {
	Case   string `json:"case"`
	Expect string `json:"expect"`
	Kind   string `json:"kind"`
	File   string `json:"file"`
	Config struct {
		Partner            string `json:"partner"`
		SignType           string `json:"sign_type"`
		InputCharset       string `json:"input_charset"`
		MD5KeyFile         string `json:"md5_key_file"`
		AlipayPublicKey    string `json:"alipay_public_key"`
		MerchantPrivateKey string `json:"merchant_private_key"`
	} `json:"config"`
	AnswerBody     string            `json:"answer_body"`
	VerifierPrestr string            `json:"verifier_prestr"`
	NotifyIDSent   string            `json:"notify_id_sent"`
	Fields         map[string]string `json:"fields"`
	RequestToken   string            `json:"request_token"`
	Sign           string            `json:"sign"`
	PlainNotify    string            `json:"plaintext_notify_data"`
}

func loadVectors(tb testing.TB) []vector {
	tb.Helper()
	var m struct {
		Partner string   `json:"partner"`
		Cases   []vector `json:"cases"`
	}
	if err := json.Unmarshal(mustRead(tb, "manifest.json"), &m); err != nil {
		tb.Fatal(err)
	}
	return m.Cases
}

// mustRead reads a file of testdata/.
func mustRead(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// configFor returns the Config a vector names (TESTING KEYs), with the notify_verify URL given.
func configFor(tb testing.TB, v vector) Config {
	tb.Helper()
	cfg := Config{Partner: v.Config.Partner, SignType: SignType(v.Config.SignType), InputCharset: v.Config.InputCharset}
	if v.Config.MD5KeyFile != "" {
		cfg.MD5Key = string(mustRead(tb, v.Config.MD5KeyFile)) // New trims the newline
	}
	if v.Config.AlipayPublicKey != "" {
		var err error
		if cfg.AlipayPublicKey, err = ParsePublicKey(mustRead(tb, v.Config.AlipayPublicKey)); err != nil {
			tb.Fatal(err)
		}
		if cfg.MerchantPrivateKey, err = ParsePrivateKey(mustRead(tb, v.Config.MerchantPrivateKey)); err != nil {
			tb.Fatal(err)
		}
	}
	return cfg
}

func mustNew(tb testing.TB, cfg Config) *Client {
	tb.Helper()
	c, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// atnServer is a notify_verify endpoint on 127.0.0.1 that records the raw queries it is asked and
// answers answer.
type atnServer struct {
	*httptest.Server
	mu      sync.Mutex
	queries []string
}

func newATN(tb testing.TB, answer string) *atnServer {
	tb.Helper()
	a := &atnServer{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.queries = append(a.queries, r.URL.RawQuery)
		a.mu.Unlock()
		io.WriteString(w, answer)
	}))
	tb.Cleanup(a.Close)
	return a
}

func (a *atnServer) asked() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.queries...)
}

// wantReason is the VerifyError reason of each invalid vector; the others are signature_invalid.
var wantReason = map[string]string{
	"mapi_md5_missing_sign": ReasonUnsigned,
	"mapi_rsa_missing_sign": ReasonUnsigned,
}

// handleNotify is the notify handler the package documents: verify, then notify_verify, then
// (here) acknowledge. It returns the answer body and the notification.
func handleNotify(ctx context.Context, c *Client, body []byte) (string, *Notification, error) {
	n, err := c.VerifyNotification(body)
	if err != nil {
		return AckFail, nil, err
	}
	if err := c.NotifyVerify(ctx, n.NotifyID); err != nil {
		return AckFail, n, err
	}
	return AckSuccess, n, nil
}

func TestVectors(t *testing.T) {
	vs := loadVectors(t)
	if len(vs) != 36 {
		t.Fatalf("%d vectors, want 36", len(vs))
	}
	for _, v := range vs {
		t.Run(v.Case, func(t *testing.T) {
			data := mustRead(t, v.File)
			switch v.Kind {
			case "mapi_notify", "wap_notify":
				testNotifyVector(t, v, data)
			case "mapi_return", "wap_callback":
				testReturnVector(t, v, data)
			case "wap_token":
				testTokenVector(t, v, data)
			case "wap_request", "mapi_request":
				testRequestVector(t, v, data)
			default:
				t.Fatalf("unknown kind %q", v.Kind)
			}
		})
	}
}

func checkInvalid(t *testing.T, v vector, err error) {
	t.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *VerifyError, got %v", err)
	}
	want := wantReason[v.Case]
	if want == "" {
		want = ReasonSignatureInvalid
	}
	if ve.Reason != want {
		t.Fatalf("reason %s (%s), want %s", ve.Reason, ve.Detail, want)
	}
	if !errors.Is(err, ErrSignature) {
		t.Fatalf("%v does not wrap ErrSignature", err)
	}
	// The verifier computed the canonical string the vector says a correct verifier computes.
	if want == ReasonSignatureInvalid && string(ve.Canonical) != string(mustRead(t, v.VerifierPrestr)) {
		t.Fatalf("canonical string\n%q\nwant\n%q", ve.Canonical, mustRead(t, v.VerifierPrestr))
	}
	claimed := v.Fields["out_trade_no"]
	if v.Kind == "wap_notify" {
		claimed = between(string(mustRead(t, v.PlainNotify)), "<out_trade_no>", "</out_trade_no>")
	}
	if claimed != "" && ve.OutTradeNo != claimed {
		t.Fatalf("claimed out_trade_no %q, want %q", ve.OutTradeNo, claimed)
	}
}

func testNotifyVector(t *testing.T, v vector, body []byte) {
	atn := newATN(t, "true")
	cfg := configFor(t, v)
	cfg.NotifyVerifyURL = atn.URL + "/gateway.do?service=notify_verify"
	c := mustNew(t, cfg)
	answer, n, err := handleNotify(context.Background(), c, body)
	if answer != v.AnswerBody {
		t.Fatalf("answer %q, want %q (%v)", answer, v.AnswerBody, err)
	}
	if v.Expect == "invalid" {
		checkInvalid(t, v, err)
		if q := atn.asked(); len(q) != 0 {
			t.Fatalf("notify_verify asked about an invalid notification: %q", q)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if string(n.Canonical) != string(mustRead(t, v.VerifierPrestr)) {
		t.Fatalf("canonical string\n%q\nwant\n%q", n.Canonical, mustRead(t, v.VerifierPrestr))
	}
	wantID := v.NotifyIDSent
	if v.Kind == "wap_notify" {
		if n.Kind != KindWAP || n.Return {
			t.Fatalf("kind %s return %v", n.Kind, n.Return)
		}
		plain := string(mustRead(t, v.PlainNotify))
		if got, _ := xmlGet(n.Fields, "notify_data"); got != plain {
			t.Fatalf("notify_data %q, want the plaintext %q", got, plain)
		}
		// notify_id comes from inside the XML.
		wantID = between(plain, "<notify_id>", "</notify_id>")
		if n.OutTradeNo != between(plain, "<out_trade_no>", "</out_trade_no>") || n.TradeStatus != between(plain, "<trade_status>", "</trade_status>") {
			t.Fatalf("typed fields: %+v", n)
		}
		if n.TotalFee != fen(t, between(plain, "<total_fee>", "</total_fee>")) {
			t.Fatalf("total_fee %d", n.TotalFee)
		}
	} else {
		if n.Kind != KindMAPI || n.Return {
			t.Fatalf("kind %s return %v", n.Kind, n.Return)
		}
		f := v.Fields
		if n.OutTradeNo != f["out_trade_no"] || n.TradeNo != f["trade_no"] || n.TradeStatus != f["trade_status"] || n.TotalFee != fen(t, f["total_fee"]) {
			t.Fatalf("typed fields: %+v, want %v", n, f)
		}
		if !n.IsPaid() || !c.SellerMatches(n) {
			t.Fatal("IsPaid or SellerMatches")
		}
	}
	if n.NotifyID != wantID {
		t.Fatalf("notify_id %q, want %q", n.NotifyID, wantID)
	}
	wantQ := "service=notify_verify&partner=" + v.Config.Partner + "&notify_id=" + wantID
	if q := atn.asked(); len(q) != 1 || q[0] != wantQ {
		t.Fatalf("notify_verify asked %q, want [%q]", q, wantQ)
	}
}

func testReturnVector(t *testing.T, v vector, query []byte) {
	atn := newATN(t, "true")
	cfg := configFor(t, v)
	cfg.NotifyVerifyURL = atn.URL + "/gateway.do?service=notify_verify"
	c := mustNew(t, cfg)
	n, err := c.VerifyReturn("?" + string(query))
	if v.Expect == "invalid" {
		checkInvalid(t, v, err)
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !n.Return || string(n.Canonical) != string(mustRead(t, v.VerifierPrestr)) {
		t.Fatalf("return %v, canonical %q", n.Return, n.Canonical)
	}
	if v.Kind == "wap_callback" {
		if n.Kind != KindWAP || n.Result != "success" || n.RequestToken == "" || n.OutTradeNo != "LEGW1128001" {
			t.Fatalf("%+v", n)
		}
		return
	}
	if n.Kind != KindMAPI || n.IsSuccess != "T" || n.Exterface != ServiceDirectPay {
		t.Fatalf("%+v", n)
	}
	// The once-decoded notify_id, %2F and %2B included, goes to notify_verify unchanged.
	if n.NotifyID != v.NotifyIDSent {
		t.Fatalf("notify_id %q, want %q", n.NotifyID, v.NotifyIDSent)
	}
	if err := c.NotifyVerify(context.Background(), n.NotifyID); err != nil {
		t.Fatal(err)
	}
	wantQ := "service=notify_verify&partner=" + v.Config.Partner + "&notify_id=" + v.NotifyIDSent
	if q := atn.asked(); len(q) != 1 || q[0] != wantQ {
		t.Fatalf("notify_verify asked %q, want [%q]", q, wantQ)
	}
}

func testTokenVector(t *testing.T, v vector, resp []byte) {
	vals, err := url.ParseQuery(string(resp))
	if err != nil {
		t.Fatal(err)
	}
	var got url.Values
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Query().Get("_input_charset") != "utf-8" {
			http.Error(w, "bad request line", 400)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		got = r.PostForm
		w.Write(resp)
	}))
	defer gw.Close()
	cfg := configFor(t, v)
	cfg.WAPGateway = gw.URL + "/service/rest.htm"
	cfg.SellerEmail = "seller@example.com"
	c := mustNew(t, cfg)
	token, err := c.WAPCreateDirect(context.Background(), &WAPTrade{
		OutTradeNo: "LEGW1128001", Subject: "收银台", TotalFee: 100, CallBackURL: "https://shop.example.com/alipay/wap/return",
		ReqID: vals.Get("req_id"),
	})
	if got.Get("sec_id") != c.SignType().SecID() || got.Has("sign_type") || got.Get("service") != ServiceWAPCreateDirect {
		t.Fatalf("request %v", got)
	}
	if v.Expect == "invalid" {
		var we *WAPError
		if !errors.As(err, &we) || token != "" {
			t.Fatalf("want a *WAPError, got %q, %v", token, err)
		}
		if we.Code != "0005" || we.Msg != "partner illegal" || we.Detail != "合作伙伴没有开通接口访问权限" {
			t.Fatalf("%+v", we)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if token != v.RequestToken {
		t.Fatalf("token %q, want %q", token, v.RequestToken)
	}
}

func testRequestVector(t *testing.T, v vector, data []byte) {
	cfg := configFor(t, v)
	cfg.SellerEmail = "seller@example.com"
	c := mustNew(t, cfg)
	c.newReqID = func() string { return "20261128110001" }
	raw := string(data)
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[i+1:]
	}
	// Re-signing the received parameters without sign and sign_type gives exactly sign.
	fs, err := ParseForm([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	sign, _ := xmlGet(fs, "sign")
	if sign != v.Sign {
		t.Fatalf("sign %q, manifest %q", sign, v.Sign)
	}
	canon := CanonicalSorted(fs)
	if string(canon) != string(mustRead(t, v.VerifierPrestr)) {
		t.Fatalf("canonical %q", canon)
	}
	again, err := c.sign(canon)
	if err != nil || again != v.Sign {
		t.Fatalf("re-signed %q, %v; want %q", again, err, v.Sign)
	}
	if c.SignType() == SignRSA {
		if err := RSAVerify(&cfg.MerchantPrivateKey.PublicKey, canon, sign); err != nil {
			t.Fatal(err)
		}
	} else if err := MD5Verify(canon, c.md5Key, sign); err != nil {
		t.Fatal(err)
	}
	st, hasST := xmlGet(fs, "sign_type")
	if v.Kind == "wap_request" {
		if hasST {
			t.Fatal("sign_type on a WAP service")
		}
	} else if st != string(c.SignType()) {
		t.Fatalf("sign_type %q", st)
	}
	// And the package builds exactly this request from the same order.
	switch v.Case {
	case "mapi_request_md5", "mapi_request_rsa":
		u, err := c.DirectPayURL(&DirectPay{
			OutTradeNo: "LEG20261128001", Subject: "测试商品 No.1", TotalFee: 8888, Body: "大乐透2.1 & friends = 100% +1",
			ShowURL: "https://shop.example.com/item/1", NotifyURL: "https://shop.example.com/alipay/notify",
			ReturnURL: "https://shop.example.com/alipay/return",
		})
		if err != nil || u != string(data) {
			t.Fatalf("DirectPayURL\n%s\nwant\n%s\n%v", u, data, err)
		}
	case "wap_auth_execute_md5", "wap_auth_execute_0001":
		token := between(raw, "%3Crequest_token%3E", "%3C%2Frequest_token%3E")
		u, err := c.WAPAuthURL(token)
		if err != nil || u != string(data) {
			t.Fatalf("WAPAuthURL\n%s\nwant\n%s\n%v", u, data, err)
		}
	case "wap_create_direct_request_md5":
		body, _, err := c.wapCreateBody(&WAPTrade{
			NotifyURL: "https://shop.example.com/alipay/wap/notify", CallBackURL: "https://shop.example.com/alipay/wap/return",
			OutTradeNo: "LEGW1128001", Subject: "收银台{LEGW1128001} & more", TotalFee: 100,
			MerchantURL: "https://shop.example.com/cart", ReqID: "20261128110001",
		})
		if err != nil || body != string(data) {
			t.Fatalf("WAP request body\n%s\nwant\n%s\n%v", body, data, err)
		}
	default:
		t.Fatalf("no builder check for %s", v.Case)
	}
}

// between returns the text of s between the first open and the next close.
func between(s, open, close string) string {
	_, after, ok := strings.Cut(s, open)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(after, close)
	return v
}

// fen converts a yuan string with two decimals to fen, independently of the package.
func fen(tb testing.TB, yuan string) int64 {
	tb.Helper()
	ip, fp, ok := strings.Cut(yuan, ".")
	if !ok || len(fp) != 2 {
		tb.Fatalf("test amount %q", yuan)
	}
	var v int64
	for _, c := range ip + fp {
		v = v*10 + int64(c-'0')
	}
	return v
}
