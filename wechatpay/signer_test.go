package wechatpay

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
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

func TestConfigMerchantSigner(t *testing.T) {
	t.Run("OK/AppAndParams", func(t *testing.T) {
		// The same calls as TestClient_Prepay's, signed through a crypto.Signer: the fake
		// verifies the request's Authorization, the pay parameters are the openssl vector's.
		c, f := setupAPI(t)
		rs := &remoteSigner{key: c.signer}
		c.signer = nil
		signed, err := NewClient(Config{MchID: testMchID, AppID: testAppID, MerchantSigner: rs, MerchantSerialNo: testSerialNo,
			APIv3Key: []byte(testAPIv3Key), PlatformPublicKey: c.cfg.PlatformPublicKey, PlatformPublicKeyID: testPubKeyID,
			BaseURL: c.cfg.BaseURL, HTTPClient: c.http, Now: c.now, Rand: c.rand})
		if err != nil {
			t.Fatal(err)
		}
		f.answer = func(r *http.Request, body []byte) (int, string) {
			return 200, `{"prepay_id":"wx01093000123456789abcdef0123456789"}`
		}
		req := PrepayRequest{Description: "测试商品", OutTradeNo: "PN20261101000001", NotifyURL: "https://pay.example.com/notify/wechatpay/wx",
			TimeExpire: time.Date(2026, 11, 1, 3, 30, 0, 999, time.UTC)}
		req.Amount.Total = 2599
		id, err := signed.PrepayApp(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		p, err := signed.AppPayParams(id)
		want := mustOwn(t).App
		want.Package = "Sign=WXPay"
		if err != nil || p != want {
			t.Fatalf("got %+v\nwant %+v", p, want)
		}
		if rs.calls != 2 || rs.opts[0] != crypto.SHA256 || rs.opts[1] != crypto.SHA256 {
			t.Fatalf("signer called %d times with %v, want twice with SHA-256", rs.calls, rs.opts)
		}
	})
	t.Run("ErrBoth", func(t *testing.T) {
		k := mustPrivateKey(t, "shared/official_doc_test_key.pem")
		_, err := NewClient(Config{MchID: testMchID, MerchantPrivateKey: k, MerchantSigner: k, MerchantSerialNo: testSerialNo,
			APIv3Key: []byte(testAPIv3Key)})
		if err == nil || !strings.Contains(err.Error(), "not both") {
			t.Fatalf("err = %v, want MerchantPrivateKey or MerchantSigner, not both", err)
		}
	})
	t.Run("ErrNotRSA", func(t *testing.T) {
		ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		_, err = NewClient(Config{MchID: testMchID, MerchantSigner: ec, MerchantSerialNo: testSerialNo, APIv3Key: []byte(testAPIv3Key)})
		if err == nil || !strings.Contains(err.Error(), "not an RSA key") {
			t.Fatalf("err = %v, want not an RSA key", err)
		}
	})
}
