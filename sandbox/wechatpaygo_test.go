package sandbox_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
	"github.com/wechatpay-apiv3/wechatpay-go/core/auth/verifiers"
	"github.com/wechatpay-apiv3/wechatpay-go/core/notify"
	"github.com/wechatpay-apiv3/wechatpay-go/core/option"
	"github.com/wechatpay-apiv3/wechatpay-go/services/payments"
	"github.com/wechatpay-apiv3/wechatpay-go/services/payments/native"
	"github.com/wechatpay-apiv3/wechatpay-go/services/refunddomestic"
	"github.com/wechatpay-apiv3/wechatpay-go/utils"

	"github.com/paynotify/paynotify/sandbox"
)

// toSandbox is the transport docs/sandbox.md gives for wechatpay-go, which has no base-URL option:
// it rewrites the scheme and host of requests for api.mch.weixin.qq.com to the sandbox's loopback
// listener and leaves everything else (path /v3/…, headers, body) alone. It refuses any other host,
// so nothing leaves 127.0.0.1.
type toSandbox struct{ host string }

func (t toSandbox) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != "api.mch.weixin.qq.com" {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("toSandbox: refusing %s", req.URL.Host)
	}
	r := req.Clone(req.Context())
	r.URL.Scheme, r.URL.Host = "http", t.host
	return http.DefaultTransport.RoundTrip(r)
}

// TestWechatpayGo runs the official wechatpay-go SDK, unmodified, against the sandbox's root
// listener (docs/sandbox.md, the wechatpay-go row): prepay, pay (the sandbox's Act), the payment
// notification parsed by the SDK's notify handler, query, refund; prepay, close, query. The SDK
// verifies every answer's Wechatpay-Signature with the platform public key.
func TestWechatpayGo(t *testing.T) {
	t.Parallel()
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	sb, err := sandbox.New(sandbox.Config{StateDir: t.TempDir(), BaseURL: srv.URL, TimeScale: 1000,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h = sb.Handler()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	done := make(chan struct{})
	go func() { sb.Start(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if err := sb.Close(); err != nil {
			t.Error(err)
		}
	})
	keys := sb.Keys()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(u.Host, "127.0.0.1:") {
		t.Fatalf("sandbox not on loopback: %s", u.Host)
	}

	priv, err := utils.LoadPrivateKey(keys.WechatMerchantPrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := utils.LoadPublicKey(keys.WechatPlatformPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	httpClient := &http.Client{Transport: toSandbox{host: u.Host}, Timeout: 10 * time.Second}
	client, err := core.NewClient(ctx,
		option.WithWechatPayPublicKeyAuthCipher(keys.WechatMchID, keys.WechatMerchantSerialNo, priv, keys.WechatPlatformPublicKeyID, pub),
		option.WithHTTPClient(httpClient))
	if err != nil {
		t.Fatal(err)
	}
	nat := native.NativeApiService{Client: client}
	refunds := refunddomestic.RefundsApiService{Client: client}

	// The merchant's notify endpoint: the SDK's handler verifies and decrypts each notification.
	handler, err := notify.NewRSANotifyHandler(keys.WechatAPIv3Key, verifiers.NewSHA256WithRSAPubkeyVerifier(keys.WechatPlatformPublicKeyID, *pub))
	if err != nil {
		t.Fatal(err)
	}
	type parsed struct {
		req *notify.Request
		tx  payments.Transaction
		err error
	}
	notified := make(chan parsed, 8)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p parsed
		p.req, p.err = handler.ParseNotifyRequest(r.Context(), r, &p.tx)
		notified <- p
		if p.err != nil {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"code":"FAIL","message":"bad notification"}`)
			return
		}
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"code":"SUCCESS","message":"成功"}`)
	}))
	t.Cleanup(receiver.Close)

	prepay := func(t *testing.T, outTradeNo string, total int64) string {
		t.Helper()
		resp, res, err := nat.Prepay(ctx, native.PrepayRequest{
			Appid:       core.String(keys.WechatAppID),
			Mchid:       core.String(keys.WechatMchID),
			Description: core.String("wechatpay-go 示例"),
			OutTradeNo:  core.String(outTradeNo),
			NotifyUrl:   core.String(receiver.URL + "/notify"),
			Amount:      &native.Amount{Total: core.Int64(total), Currency: core.String("CNY")},
		})
		if err != nil {
			t.Fatalf("prepay %s: %v", outTradeNo, err)
		}
		if res.Response.StatusCode != 200 || resp.CodeUrl == nil || !strings.HasPrefix(*resp.CodeUrl, "weixin://wxpay/bizpayurl?pr=") {
			t.Fatalf("prepay %s: %d %+v", outTradeNo, res.Response.StatusCode, resp)
		}
		if res.Response.Header.Get("Wechatpay-Serial") != keys.WechatPlatformPublicKeyID {
			t.Fatalf("prepay answer signed with %q", res.Response.Header.Get("Wechatpay-Serial"))
		}
		return *resp.CodeUrl
	}
	query := func(t *testing.T, outTradeNo string) *payments.Transaction {
		t.Helper()
		tx, res, err := nat.QueryOrderByOutTradeNo(ctx, native.QueryOrderByOutTradeNoRequest{
			OutTradeNo: core.String(outTradeNo), Mchid: core.String(keys.WechatMchID)})
		if err != nil {
			t.Fatalf("query %s: %v", outTradeNo, err)
		}
		if res.Response.StatusCode != 200 || tx.OutTradeNo == nil || *tx.OutTradeNo != outTradeNo ||
			tx.Mchid == nil || *tx.Mchid != keys.WechatMchID || tx.Appid == nil || *tx.Appid != keys.WechatAppID || tx.TradeState == nil {
			t.Fatalf("query %s: %d %+v", outTradeNo, res.Response.StatusCode, tx)
		}
		return tx
	}

	t.Run("PayNotifyQueryRefund", func(t *testing.T) {
		const no, total = "wxgo_pay_1", int64(1234)
		codeURL := prepay(t, no, total)
		if tx := query(t, no); *tx.TradeState != "NOTPAY" {
			t.Fatalf("before pay: %s", *tx.TradeState)
		}
		if _, err := sb.Act("pay", sandbox.ActionRequest{URL: codeURL}); err != nil {
			t.Fatal(err)
		}

		var p parsed
		select {
		case p = <-notified:
		case <-ctx.Done():
			t.Fatal("no notification")
		}
		if p.err != nil {
			t.Fatalf("the SDK rejected the notification: %v", p.err)
		}
		if p.req.EventType != "TRANSACTION.SUCCESS" || p.req.ResourceType != "encrypt-resource" || p.req.Resource == nil ||
			p.req.Resource.OriginalType != "transaction" {
			t.Fatalf("notification envelope: %+v %+v", p.req, p.req.Resource)
		}
		tx := p.tx
		if tx.OutTradeNo == nil || *tx.OutTradeNo != no || tx.TradeState == nil || *tx.TradeState != "SUCCESS" ||
			tx.Amount == nil || tx.Amount.Total == nil || *tx.Amount.Total != total || tx.Amount.PayerTotal == nil || *tx.Amount.PayerTotal != total ||
			tx.Mchid == nil || *tx.Mchid != keys.WechatMchID || tx.Appid == nil || *tx.Appid != keys.WechatAppID ||
			tx.TransactionId == nil || *tx.TransactionId == "" || tx.TradeType == nil || *tx.TradeType != "NATIVE" ||
			tx.SuccessTime == nil || tx.Payer == nil || tx.Payer.Openid == nil || *tx.Payer.Openid == "" {
			t.Fatalf("notified transaction: %+v", tx)
		}
		if _, err := time.Parse(time.RFC3339, *tx.SuccessTime); err != nil {
			t.Fatalf("success_time %q: %v", *tx.SuccessTime, err)
		}

		q := query(t, no)
		if *q.TradeState != "SUCCESS" || q.TransactionId == nil || *q.TransactionId != *tx.TransactionId ||
			q.Amount == nil || q.Amount.Total == nil || *q.Amount.Total != total {
			t.Fatalf("query after pay: %+v", q)
		}

		ref, res, err := refunds.Create(ctx, refunddomestic.CreateRequest{
			OutTradeNo:  core.String(no),
			OutRefundNo: core.String("wxgo_refund_1"),
			Reason:      core.String("wechatpay-go"),
			Amount:      &refunddomestic.AmountReq{Refund: core.Int64(400), Total: core.Int64(total), Currency: core.String("CNY")},
		})
		if err != nil {
			t.Fatalf("refund: %v", err)
		}
		if res.Response.StatusCode != 200 || ref.Status == nil || (*ref.Status != refunddomestic.STATUS_PROCESSING && *ref.Status != refunddomestic.STATUS_SUCCESS) ||
			ref.OutRefundNo == nil || *ref.OutRefundNo != "wxgo_refund_1" || ref.OutTradeNo == nil || *ref.OutTradeNo != no ||
			ref.TransactionId == nil || *ref.TransactionId != *tx.TransactionId || ref.RefundId == nil || *ref.RefundId == "" ||
			ref.Amount == nil || ref.Amount.Refund == nil || *ref.Amount.Refund != 400 || ref.Amount.Total == nil || *ref.Amount.Total != total {
			t.Fatalf("refund: %d %+v", res.Response.StatusCode, ref)
		}
		got, _, err := refunds.QueryByOutRefundNo(ctx, refunddomestic.QueryByOutRefundNoRequest{OutRefundNo: core.String("wxgo_refund_1")})
		if err != nil {
			t.Fatalf("refund query: %v", err)
		}
		if got.RefundId == nil || *got.RefundId != *ref.RefundId || got.Status == nil {
			t.Fatalf("refund query: %+v", got)
		}
	})

	t.Run("CloseQuery", func(t *testing.T) {
		const no = "wxgo_close_1"
		prepay(t, no, 500)
		res, err := nat.CloseOrder(ctx, native.CloseOrderRequest{OutTradeNo: core.String(no), Mchid: core.String(keys.WechatMchID)})
		if err != nil {
			t.Fatalf("close: %v", err)
		}
		if res.Response.StatusCode != http.StatusNoContent {
			t.Fatalf("close: %d", res.Response.StatusCode)
		}
		if tx := query(t, no); *tx.TradeState != "CLOSED" {
			t.Fatalf("after close: %s", *tx.TradeState)
		}
	})

	t.Run("WrongPlatformKey", func(t *testing.T) {
		// A client that trusts another public key under the same id must refuse the sandbox's
		// answer: the SDK does verify Wechatpay-Signature.
		other, err := utils.LoadPublicKey(keys.WechatMerchantPublicKey)
		if err != nil {
			t.Fatal(err)
		}
		bad, err := core.NewClient(ctx,
			option.WithWechatPayPublicKeyAuthCipher(keys.WechatMchID, keys.WechatMerchantSerialNo, priv, keys.WechatPlatformPublicKeyID, other),
			option.WithHTTPClient(httpClient))
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = (&native.NativeApiService{Client: bad}).Prepay(ctx, native.PrepayRequest{
			Appid: core.String(keys.WechatAppID), Mchid: core.String(keys.WechatMchID), Description: core.String("bad key"),
			OutTradeNo: core.String("wxgo_badkey_1"), NotifyUrl: core.String(receiver.URL + "/notify"),
			Amount: &native.Amount{Total: core.Int64(1)}})
		if err == nil || !strings.Contains(err.Error(), "verify") {
			t.Fatalf("prepay with a wrong platform key: %v", err)
		}
		var apiErr *core.APIError
		if errors.As(err, &apiErr) {
			t.Fatalf("expected a signature failure, not an API error: %v", err)
		}
	})

	// Last, as it switches the default merchant: in certificate mode the sandbox signs with
	// Wechatpay-Serial = the platform certificate's serial, which the SDK's certificate option
	// looks its key up by.
	t.Run("CertificateMode", func(t *testing.T) {
		if err := sb.SetWechatPlatformKeyMode(keys.WechatMchID, sandbox.PlatformKeyCertificate); err != nil {
			t.Fatal(err)
		}
		cert, err := utils.LoadCertificate(keys.WechatPlatformCertificate)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := core.NewClient(ctx,
			option.WithWechatPayAuthCipher(keys.WechatMchID, keys.WechatMerchantSerialNo, priv, []*x509.Certificate{cert}),
			option.WithHTTPClient(httpClient))
		if err != nil {
			t.Fatal(err)
		}
		cn := native.NativeApiService{Client: cc}
		resp, res, err := cn.Prepay(ctx, native.PrepayRequest{
			Appid: core.String(keys.WechatAppID), Mchid: core.String(keys.WechatMchID), Description: core.String("证书模式"),
			OutTradeNo: core.String("wxgo_cert_1"), NotifyUrl: core.String(receiver.URL + "/notify"),
			Amount: &native.Amount{Total: core.Int64(77)}})
		if err != nil {
			t.Fatalf("prepay: %v", err)
		}
		if resp.CodeUrl == nil || res.Response.Header.Get("Wechatpay-Serial") != keys.WechatPlatformCertSerial {
			t.Fatalf("prepay: %+v serial %q", resp, res.Response.Header.Get("Wechatpay-Serial"))
		}
		tx, _, err := cn.QueryOrderByOutTradeNo(ctx, native.QueryOrderByOutTradeNoRequest{
			OutTradeNo: core.String("wxgo_cert_1"), Mchid: core.String(keys.WechatMchID)})
		if err != nil || tx.TradeState == nil || *tx.TradeState != "NOTPAY" || tx.Amount == nil || *tx.Amount.Total != 77 {
			t.Fatalf("query: %+v %v", tx, err)
		}
		// The public-key client no longer finds its key under the certificate's serial.
		if _, _, err := nat.QueryOrderByOutTradeNo(ctx, native.QueryOrderByOutTradeNoRequest{
			OutTradeNo: core.String("wxgo_cert_1"), Mchid: core.String(keys.WechatMchID)}); err == nil {
			t.Fatal("the public-key client accepted an answer signed under the certificate's serial")
		}
	})
}
