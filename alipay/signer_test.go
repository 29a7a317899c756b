package alipay

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

// remoteSigner stands for a key held in a KMS or HSM: only Public and Sign, never the key.
type remoteSigner struct {
	key   crypto.Signer
	calls int
	opts  []crypto.SignerOpts
}

func (s *remoteSigner) Public() crypto.PublicKey { return s.key.Public() }

func (s *remoteSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.calls++
	s.opts = append(s.opts, opts)
	return s.key.Sign(r, digest, opts)
}

func TestConfigSigner(t *testing.T) {
	t.Run("OK/D2_AppPayOrderString", func(t *testing.T) {
		// The orderString signed through a crypto.Signer is the vector's, derived with openssl
		// (PKCS #1 v1.5 signatures are deterministic).
		v := loadVectors(t, "derived_vectors.json")["request_app_pay"]
		priv, _ := testKeys(t)
		rs := &remoteSigner{key: priv}
		c := testClient(t, func(cfg *Config) { cfg.PrivateKey, cfg.Signer = nil, rs })
		got, err := c.AppPay(TradeAppPay{OutTradeNo: "20240102000002", TotalAmount: 1, Subject: "App 测试", TimeoutExpress: "30m"})
		if err != nil {
			t.Fatal(err)
		}
		if got != v.OrderString {
			t.Fatalf("orderString\n got %s\nwant %s", got, v.OrderString)
		}
		if rs.calls != 1 || rs.opts[0] != crypto.SHA256 {
			t.Fatalf("signer called %d times with %v, want once with SHA-256", rs.calls, rs.opts)
		}
	})
	t.Run("OKSHA1", func(t *testing.T) {
		priv, _ := testKeys(t)
		rs := &remoteSigner{key: priv}
		c := testClient(t, func(cfg *Config) { cfg.PrivateKey, cfg.Signer, cfg.SignType = nil, rs, RSA })
		if _, err := c.AppPay(TradeAppPay{OutTradeNo: "x1", TotalAmount: 1, Subject: "s"}); err != nil {
			t.Fatal(err)
		}
		if rs.calls != 1 || rs.opts[0] != crypto.SHA1 {
			t.Fatalf("signer called %d times with %v, want once with SHA-1", rs.calls, rs.opts)
		}
	})
	t.Run("ErrBoth", func(t *testing.T) {
		priv, _ := testKeys(t)
		_, err := NewClient(Config{PrivateKey: priv, Signer: priv, AlipayPublicKey: mustOtherKey(t)})
		if err == nil || !strings.Contains(err.Error(), "not both") {
			t.Fatalf("err = %v, want PrivateKey or Signer, not both", err)
		}
	})
	t.Run("ErrNotRSA", func(t *testing.T) {
		ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		_, err = NewClient(Config{Signer: ec, AlipayPublicKey: mustOtherKey(t)})
		if err == nil || !strings.Contains(err.Error(), "not an RSA key") {
			t.Fatalf("err = %v, want not an RSA key", err)
		}
	})
	t.Run("ErrOwnKey", func(t *testing.T) {
		// The own-key check looks at the signer's public key.
		priv, pub := testKeys(t)
		_, err := NewClient(Config{Signer: &remoteSigner{key: priv}, AlipayPublicKey: pub})
		if err != errOwnKey {
			t.Fatalf("err = %v, want errOwnKey", err)
		}
	})
}

// TestVerifyNotification_AppID: with Config.AppID set, a notification whose signature verifies
// (the openssl-derived vector) but names another app_id comes back with ErrAppID and the
// notification; the vector's own app_id passes.
func TestVerifyNotification_AppID(t *testing.T) {
	v := loadVectors(t, "derived_vectors.json")["notify_trade_success_utf8"]
	_, pub := testKeys(t)
	const ct = "application/x-www-form-urlencoded; text/html; charset=utf-8"
	plain, err := NewClient(Config{AlipayPublicKey: pub})
	if err != nil {
		t.Fatal(err)
	}
	n, err := plain.VerifyNotification(ctHeader(ct), []byte(v.HTTPBody))
	if err != nil || n.AppID == "" {
		t.Fatalf("without AppID: %+v %v", n, err)
	}
	own := n.AppID
	t.Run("OK", func(t *testing.T) {
		c, err := NewClient(Config{AppID: own, AlipayPublicKey: pub})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.VerifyNotification(ctHeader(ct), []byte(v.HTTPBody)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrAppID", func(t *testing.T) {
		c, err := NewClient(Config{AppID: "2021000000000999", AlipayPublicKey: pub})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.VerifyNotification(ctHeader(ct), []byte(v.HTTPBody))
		var ve *VerifyError
		if !errors.Is(err, ErrAppID) || !errors.As(err, &ve) || ve.Reason != ReasonAppIDMismatch || got == nil ||
			got.AppID != own || ve.OutTradeNo != got.OutTradeNo || !strings.Contains(ve.Detail, strconv.Quote(own)) {
			t.Fatalf("got %+v, %v (%+v); want the notification with ErrAppID", got, err, ve)
		}
		if err.Error() != "alipay: notification for another app" {
			t.Fatalf("outward text %q", err)
		}
	})
}

// TestInvalidRequest: a request refused before it is signed wraps ErrInvalidRequest.
func TestInvalidRequest(t *testing.T) {
	c := testClient(t, nil)
	for _, p := range []TradeAppPay{
		{OutTradeNo: "x1", TotalAmount: 100_000_000_01, Subject: "s"},
		{OutTradeNo: "x1", TotalAmount: 0, Subject: "s"},
		{OutTradeNo: "x1", TotalAmount: 1, Subject: " "},
		{OutTradeNo: "", TotalAmount: 1, Subject: "s"},
	} {
		if _, err := c.AppPay(p); !errors.Is(err, ErrInvalidRequest) {
			t.Errorf("AppPay(%+v): %v, want ErrInvalidRequest", p, err)
		}
	}
	if _, err := c.AppPay(TradeAppPay{OutTradeNo: "x1", TotalAmount: 100_000_000_00, Subject: "s"}); err != nil {
		t.Errorf("AppPay at the bound: %v", err)
	}
}
