package alipay

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/testsign"
)

func TestParseAmount(t *testing.T) {
	ok := []struct {
		in   string
		want int64
	}{{"0", 0}, {"0.00", 0}, {"0.01", 1}, {"0.1", 10}, {"9", 900}, {"9.00", 900}, {"88.88", 8888}, {"100000000.00", 10000000000}}
	for _, tt := range ok {
		t.Run("OK/"+tt.in, func(t *testing.T) {
			got, err := ParseAmount(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("got %d, %v", got, err)
			}
			if tt.want > 0 && FormatAmount(got) != tt.in && !strings.HasPrefix(FormatAmount(got), tt.in) {
				t.Fatalf("format %s", FormatAmount(got))
			}
		})
	}
	for _, in := range []string{"", ".5", "1.", "01", "00.10", "1.234", "-1", "+1", "1e3", " 1", "1,00", "1.0.0", "９", "99999999999999999999"} {
		t.Run("Err/"+in, func(t *testing.T) {
			if _, err := ParseAmount(in); err == nil || !strings.HasPrefix(err.Error(), "alipay: ") {
				t.Fatalf("got %v", err)
			}
		})
	}
	if FormatAmount(1) != "0.01" || FormatAmount(8888) != "88.88" || FormatAmount(900) != "9.00" || FormatAmount(-5) != "-0.05" {
		t.Fatal("FormatAmount")
	}
}

func TestParseTime(t *testing.T) {
	t.Setenv("TZ", "America/New_York")
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2024-01-02 03:04:05", time.Date(2024, 1, 1, 19, 4, 5, 0, time.UTC)},
		{"2021-07-14 09:51:36.631", time.Date(2021, 7, 14, 1, 51, 36, 631e6, time.UTC)},
		{"2024-01-03 10:00:00.5", time.Date(2024, 1, 3, 2, 0, 0, 5e8, time.UTC)},
	}
	for _, tt := range tests {
		t.Run("OK/"+tt.in, func(t *testing.T) {
			got, err := ParseTime(tt.in)
			if err != nil || !got.Equal(tt.want) || got.Location() != Beijing() {
				t.Fatalf("got %v, %v", got, err)
			}
		})
	}
	for _, in := range []string{"", "2024-01-02", "2024-01-02T03:04:05", "2024-01-02 03:04:05.", "2024-01-02 03:04:05.1234", "2024-13-02 03:04:05", "2024-01-02 03:04:05Z"} {
		t.Run("Err/"+in, func(t *testing.T) {
			if _, err := ParseTime(in); err == nil {
				t.Fatal("no error")
			}
		})
	}
	if got := FormatTime(time.Date(2024, 1, 1, 19, 4, 5, 0, time.UTC)); got != "2024-01-02 03:04:05" {
		t.Fatal(got)
	}
}

func TestParseKeys(t *testing.T) {
	priv, pub := testKeys(t)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(priv)
	pkcs1 := x509.MarshalPKCS1PrivateKey(priv)
	pkix, _ := x509.MarshalPKIXPublicKey(pub)
	b64 := base64.StdEncoding.EncodeToString
	privForms := map[string][]byte{
		"PKCS8PEM":     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		"PKCS1PEM":     pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: pkcs1}),
		"PKCS8OneLine": []byte(b64(pkcs8)),
		"PKCS1OneLine": []byte(b64(pkcs1) + "\n"),
		"PKCS8Wrapped": []byte(b64(pkcs8)[:64] + "\r\n" + b64(pkcs8)[64:]),
	}
	for name, in := range privForms {
		t.Run("OK/Private"+name, func(t *testing.T) {
			k, err := ParsePrivateKey(in)
			if err != nil || !k.Equal(priv) {
				t.Fatal(err)
			}
		})
	}
	for name, in := range map[string][]byte{"PEM": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}), "OneLine": []byte(b64(pkix))} {
		t.Run("OK/Public"+name, func(t *testing.T) {
			k, err := ParsePublicKey(in)
			if err != nil || !k.Equal(pub) {
				t.Fatal(err)
			}
		})
	}
	t.Run("ErrPublicAsPrivate", func(t *testing.T) {
		_, err := ParsePrivateKey([]byte(b64(pkix)))
		if err == nil || !strings.Contains(err.Error(), "public key") {
			t.Fatal(err)
		}
	})
	t.Run("ErrPrivateAsPublic", func(t *testing.T) {
		_, err := ParsePublicKey([]byte(b64(pkcs8)))
		if err == nil || !strings.Contains(err.Error(), "private key") || strings.Contains(err.Error(), b64(pkcs8)[:20]) {
			t.Fatal(err)
		}
	})
	t.Run("ErrGarbage", func(t *testing.T) {
		for _, in := range []string{"", "hello world!", "-----BEGIN PRIVATE KEY-----\nxx", b64([]byte("not a key"))} {
			if _, err := ParsePrivateKey([]byte(in)); err == nil || !strings.HasPrefix(err.Error(), "alipay: ") {
				t.Fatalf("%q: %v", in, err)
			}
		}
	})
}

func TestNewClient(t *testing.T) {
	priv, pub := testKeys(t)
	t.Run("ErrOwnKey", func(t *testing.T) {
		_, err := NewClient(Config{AppID: "1", PrivateKey: priv, AlipayPublicKey: pub})
		if err == nil || !strings.Contains(err.Error(), "app's own public key") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrNoAlipayKey", func(t *testing.T) {
		if _, err := NewClient(Config{PrivateKey: priv}); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("ErrBothModes", func(t *testing.T) {
		if _, err := NewClient(Config{AlipayPublicKey: pub, AlipayCert: mustRead(t, "testdata/shared/certs/alipayCertPublicKey_RSA2.crt")}); err == nil {
			t.Fatal("no error")
		}
	})
	t.Run("ErrSignType", func(t *testing.T) {
		if _, err := NewClient(Config{AlipayPublicKey: pub, SignType: "SM2"}); !errors.Is(err, ErrSignType) {
			t.Fatal(err)
		}
	})
	t.Run("OK/CertModeSNs", func(t *testing.T) {
		c, err := NewClient(Config{AlipayCert: mustRead(t, "testdata/shared/certs/alipayCertPublicKey_RSA2.crt"),
			AlipayRootCert: mustRead(t, "testdata/shared/certs/alipayRootCert.crt"),
			AppCert:        mustRead(t, "testdata/shared/certs/appCertPublicKey_2021001161683774.crt")})
		if err != nil {
			t.Fatal(err)
		}
		if c.AppCertSN() != "866efef280dec9137a87d047ac446315" || c.AlipayCertSN() != "7513daaaa48aa3ba2e4018d84402479c" ||
			c.AlipayRootCertSN() != "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6" {
			t.Fatal(c.AppCertSN(), c.AlipayCertSN(), c.AlipayRootCertSN())
		}
	})
	t.Run("ErrCertModeAppCertMismatch", func(t *testing.T) {
		_, err := NewClient(Config{PrivateKey: priv, AlipayCert: mustRead(t, "testdata/shared/certs/alipayCertPublicKey_RSA2.crt"),
			AlipayRootCert: mustRead(t, "testdata/shared/certs/alipayRootCert.crt"),
			AppCert:        mustRead(t, "testdata/shared/certs/appCertPublicKey_2021001161683774.crt")})
		if err == nil || !strings.Contains(err.Error(), "AppCert does not match") {
			t.Fatal(err)
		}
	})
}

func TestParseForm(t *testing.T) {
	t.Run("OK/Decoding", func(t *testing.T) {
		f, err := parseForm([]byte("b=%E4%B8%AD+x&a=1%2B1&&c&d=%26quot%3B;e&z="))
		if err != nil {
			t.Fatal(err)
		}
		want := []field{{"a", "1+1"}, {"b", "中 x"}, {"c", ""}, {"d", "&quot;;e"}, {"z", ""}}
		got := f.Fields()
		if len(got) != len(want) {
			t.Fatalf("%q", got)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%d: %q", i, got[i])
			}
		}
		if got := string(canonicalNotification(f, ruleV1)); got != "a=1+1&b=中 x&d=&quot;;e" {
			t.Fatal(got)
		}
	})
	errs := map[string]string{
		"ErrDuplicate":     "a=1&b=2&a=1",
		"ErrBadEscape":     "a=%zz",
		"ErrShortEscape":   "a=%4",
		"ErrEmptyKey":      "=1",
		"ErrEscapeInKey":   "%=1",
		"ErrDuplicateEnc":  "a=1&%61=2",
		"ErrEndsOnPercent": "a=1%",
	}
	for name, in := range errs {
		t.Run(name, func(t *testing.T) {
			_, err := parseForm([]byte(in))
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v", err)
			}
		})
	}
	t.Run("OK/ContentTypes", func(t *testing.T) {
		for _, ct := range []string{"", "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; text/html; charset=utf-8", "Application/X-WWW-Form-Urlencoded;charset=GBK"} {
			if err := checkContentType(ct); err != nil {
				t.Errorf("%q: %v", ct, err)
			}
		}
		if err := checkContentType("application/json"); !errors.Is(err, ErrMalformed) {
			t.Error(err)
		}
	})
}

func TestVerifyReturn(t *testing.T) {
	p := map[string]string{"charset": "utf-8", "out_trade_no": "20240102000001", "method": "alipay.trade.page.pay.return",
		"total_amount": "88.88", "trade_no": "2024010222001400000000000001", "auth_app_id": "2014072300007148",
		"version": "1.0", "app_id": "2014072300007148", "seller_id": "2088101000000002", "timestamp": "2024-01-02 03:06:00"}
	// Signed by openssl over a V1 canonical string built independently of the package.
	p["sign"] = testsign.RSA2(t, "testdata/shared/test_private_pkcs8.pem", []byte(testsign.SortedJoin(p, "sign", "sign_type")))
	p["sign_type"] = "RSA2"
	c := verifierFor(t, RSA2)
	t.Run("OK", func(t *testing.T) {
		m, err := c.VerifyReturn("?" + encodeSorted(p))
		if err != nil || m["out_trade_no"] != "20240102000001" {
			t.Fatal(m, err)
		}
	})
	t.Run("ErrTampered", func(t *testing.T) {
		p2 := map[string]string{}
		for k, v := range p {
			p2[k] = v
		}
		p2["total_amount"] = "0.01"
		if _, err := c.VerifyReturn(encodeSorted(p2)); !errors.Is(err, ErrSignature) {
			t.Fatal(err)
		}
	})
}

// ctHeader is a request header carrying only Content-Type v.
func ctHeader(v string) http.Header { return http.Header{"Content-Type": {v}} }
