package alipay

import (
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// Vectors copied from ../shared/vectors/alipay (see testdata/shared/README.md).

type publishedVector struct {
	Source       string            `json:"source"`
	Rule         string            `json:"rule"`
	KeyCertPEM   string            `json:"key_certificate_pem"`
	KeyB64       string            `json:"alipay_public_key_b64"`
	KeyPEM       string            `json:"alipay_public_key_pem"`
	Params       map[string]string `json:"params"`
	Sign         string            `json:"sign"`
	HTTPBody     string            `json:"http_body"`
	Expect       string            `json:"expect"`
	CanonicalV1  string            `json:"canonical_v1"`
	Canonical    string            `json:"canonical"`
	SignRSA2     string            `json:"sign_rsa2"`
	SignRSA      string            `json:"sign_rsa"`
	RSACanonical string            `json:"rsa_variant_canonical"`
	GetURL       string            `json:"get_url"`
	OrderString  string            `json:"order_string"`
	SignedSub    string            `json:"signed_substring"`
	RawBody      string            `json:"raw_body"`
	GBKBody      string            `json:"http_body_gbk_percent_encoded"`
	WrongUTF8    string            `json:"sign_if_wrongly_utf8"`
}

func loadVectors(tb testing.TB, name string) map[string]publishedVector {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "shared", name))
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]publishedVector
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func (v publishedVector) key(tb testing.TB) *rsa.PublicKey {
	tb.Helper()
	var src string
	switch {
	case v.KeyCertPEM != "":
		_, pub, err := CertPublicKey([]byte(v.KeyCertPEM))
		if err != nil {
			tb.Fatal(err)
		}
		return pub
	case v.KeyB64 != "":
		src = v.KeyB64
	default:
		src = v.KeyPEM
	}
	pub, err := ParsePublicKey([]byte(src))
	if err != nil {
		tb.Fatal(err)
	}
	return pub
}

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// testKeys returns the test key pair published in alipay-sdk-java-all's RSA2EncryptorTest
// (TESTING KEY: never use it elsewhere).
func testKeys(tb testing.TB) (*rsa.PrivateKey, *rsa.PublicKey) {
	tb.Helper()
	priv, err := ParsePrivateKey(mustRead(tb, "testdata/shared/test_private_pkcs8.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := ParsePublicKey(mustRead(tb, "testdata/shared/test_public.pem"))
	if err != nil {
		tb.Fatal(err)
	}
	return priv, pub
}

// formOf builds a form from decoded params (as a parsed body would give), for vectors given as maps.
func formOf(tb testing.TB, params map[string]string) *form {
	tb.Helper()
	var b strings.Builder
	for k, v := range params {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(queryEscape(k) + "=" + queryEscape(v))
	}
	f, err := parseForm([]byte(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func TestPublishedVectors(t *testing.T) {
	vs := loadVectors(t, "published_vectors.json")
	t.Run("OK/P1P2P3_RequestV2", func(t *testing.T) {
		for _, name := range []string{"P1_java_rsacheck_rsa2_v2", "P2_java_rsacheck_rsa_sha1_v2", "P3_java_rsacheck_utf8_v2"} {
			v := vs[name]
			st := SignType(v.Params["sign_type"])
			canon := alipaywire.CanonicalRequest(v.Params)
			if err := verify(v.key(t), st, []byte(canon), v.Sign); err != nil {
				t.Errorf("%s: %v over %q", name, err, canon)
			}
			// The notification V2 rule gives the same bytes.
			if got := string(canonicalNotification(formOf(t, v.Params), ruleV2)); got != canon {
				t.Errorf("%s: V2 %q, request %q", name, got, canon)
			}
		}
	})
	t.Run("ErrP1WithoutSignType", func(t *testing.T) {
		v := vs["P1_java_rsacheck_rsa2_v2"]
		canon := canonicalNotification(formOf(t, v.Params), ruleV1)
		if err := verify(v.key(t), RSA2, canon, v.Sign); !errors.Is(err, ErrSignature) {
			t.Fatalf("got %v, want ErrSignature", err)
		}
	})
	t.Run("ErrP2SHA1UnderRSA2", func(t *testing.T) {
		v := vs["P2_java_rsacheck_rsa_sha1_v2"]
		if err := verify(v.key(t), RSA2, []byte(alipaywire.CanonicalRequest(v.Params)), v.Sign); !errors.Is(err, ErrSignature) {
			t.Fatalf("got %v, want ErrSignature", err)
		}
	})
	t.Run("OK/P4_NotificationV1", func(t *testing.T) {
		v := vs["P4_real_trade_notification_v1"]
		p := map[string]string{"sign": v.Sign}
		for k, x := range v.Params {
			p[k] = x
		}
		c, err := NewClient(Config{AlipayPublicKey: v.key(t)})
		if err != nil {
			t.Fatal(err)
		}
		body := encodeSorted(p)
		n, err := c.VerifyNotification(ctHeader("application/x-www-form-urlencoded; text/html; charset=utf-8"), []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if n.TotalAmount != 10 || n.Subject != "语雀空间 500人规模" || len(n.FundBills) != 1 || n.FundBills[0].Amount != 10 {
			t.Fatalf("decoded %+v", n)
		}
		want := time.Date(2019, 8, 15, 15, 56, 24, 0, Beijing())
		if !n.GmtPayment.Equal(want) {
			t.Fatalf("gmt_payment %v", n.GmtPayment)
		}
		// V2 must fail.
		f, _ := parseForm([]byte(body))
		if err := c.verifyForm(f, ruleV2); !errors.Is(err, ErrSignature) {
			t.Fatalf("V2: %v", err)
		}
	})
	t.Run("OK/P5_RawRefundBody", func(t *testing.T) {
		v := vs["P5_real_full_refund_raw_body_v1"]
		c, err := NewClient(Config{AlipayPublicKey: v.key(t)})
		if err != nil {
			t.Fatal(err)
		}
		n, err := c.VerifyNotification(nil, []byte(v.HTTPBody))
		if err != nil {
			t.Fatal(err)
		}
		if n.TradeStatus != TradeClosed || n.RefundFee != 60 || n.TotalAmount != 60 || !n.IsRefund() ||
			n.GmtRefund.Nanosecond() != 631e6 || n.OutBizNo != "1415126234332921856" || n.Subject != "上海益药药业" {
			t.Fatalf("decoded %+v", n)
		}
	})
	t.Run("OK/P6_Response", func(t *testing.T) {
		v := vs["P6_real_sandbox_response_raw_substring"]
		r, err := extractResponse([]byte(v.HTTPBody), "alipay.open.file.upload")
		if err != nil {
			t.Fatal(err)
		}
		if string(r.Node) != `{"code":"10000","msg":"Success","file_id":"CAxAToWB1JsAAAAAAAAAAAAADgSLAQBr"}` {
			t.Fatalf("node %s", r.Node)
		}
		if err := verify(v.key(t), RSA2, r.Node, r.Sign); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OK/P7_GatewayV2", func(t *testing.T) {
		v := vs["P7_real_gateway_notification_v2"]
		p := map[string]string{"sign": v.Sign}
		for k, x := range v.Params {
			p[k] = x
		}
		c, err := NewClient(Config{AlipayPublicKey: v.key(t)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.verifyGatewayNotification([]byte(encodeSorted(p)), ""); err != nil {
			t.Fatal(err)
		}
		_, err = c.VerifyNotification(nil, []byte(encodeSorted(p)))
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Reason != ReasonSignatureInvalid || !strings.Contains(ve.Detail, "verifies under the V2 rule") {
			t.Fatalf("V1: %v %+v", err, ve)
		}
	})
}

// encodeSorted form-encodes params in key order.
func encodeSorted(p map[string]string) string {
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(queryEscape(k) + "=" + queryEscape(p[k]))
	}
	return b.String()
}

func TestCertSN(t *testing.T) {
	tests := []struct {
		file, want string
		root       bool
	}{
		{"appCertPublicKey_2021001161683774.crt", "866efef280dec9137a87d047ac446315", false},
		{"alipayCertPublicKey_RSA2.crt", "7513daaaa48aa3ba2e4018d84402479c", false},
		{"alipayRootCert.crt", "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6", true},
		{"appCertPublicKey_2019091767145019.crt", "11b1abe5035f1498e334be6fc2d4943a", false},
		{"sandbox_appPublicCert.crt", "9c51a0ddeb34866e5a331e613f57bf0f", false},
		{"sandbox_alipayPublicCert.crt", "05d88faef76d723019c5c14d3ecd014a", false},
		{"sandbox_alipayRootCert.crt", "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6", true},
	}
	for _, tt := range tests {
		t.Run("OK/"+tt.file, func(t *testing.T) {
			b := mustRead(t, filepath.Join("testdata", "shared", "certs", tt.file))
			f := CertSN
			if tt.root {
				f = RootCertSN
			}
			got, err := f(b)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
	t.Run("ErrNoCertificate", func(t *testing.T) {
		if _, err := CertSN([]byte("hello")); err == nil {
			t.Fatal("no error")
		}
		if _, err := RootCertSN(mustRead(t, "testdata/shared/test_public.pem")); err == nil {
			t.Fatal("no error")
		}
	})
}
