package alipay_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/internal/alipaywire"
	"github.com/paynotify/paynotify/sandbox"
)

func mustReadFile(name string) []byte {
	b, err := os.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}

// Verify an asynchronous notification from the raw POST body, then answer Alipay.
func ExampleClient_VerifyNotification() {
	alipayPub, err := alipay.ParsePublicKey(mustReadFile("testdata/shared/test_public.pem")) // TESTING KEY
	if err != nil {
		panic(err)
	}
	c, err := alipay.NewClient(alipay.Config{AlipayPublicKey: alipayPub})
	if err != nil {
		panic(err)
	}
	body := []byte(strings.TrimSpace(string(mustReadFile("testdata/openssl/notify_utf8_25_fields.txt"))))

	n, err := c.VerifyNotification(http.Header{"Content-Type": {"application/x-www-form-urlencoded; text/html; charset=utf-8"}}, body)
	if err != nil {
		fmt.Println(alipay.AckFailureBody, err) // log the *alipay.VerifyError's Reason and Detail
		return
	}
	fmt.Println(n.OutTradeNo, n.TradeStatus, alipay.FormatAmount(n.TotalAmount), n.Subject)
	fmt.Println(n.GmtPayment.Format(time.RFC3339))
	// ... check app_id, seller_id, amount against your order, commit, then:
	fmt.Println(alipay.AckSuccessBody)
	// Output:
	// 20240520000001 TRADE_SUCCESS 199.00 年度会员 Annual plan
	// 2024-05-20T13:14:15+08:00
	// success
}

// A tampered notification fails with a vague error; the details are for the log.
func ExampleVerifyError() {
	alipayPub, _ := alipay.ParsePublicKey(mustReadFile("testdata/shared/test_public.pem"))
	c, _ := alipay.NewClient(alipay.Config{AlipayPublicKey: alipayPub})
	body := []byte(strings.TrimSpace(string(mustReadFile("testdata/openssl/notify_tampered_field.txt"))))

	_, err := c.VerifyNotification(nil, body)
	fmt.Println(err)
	if ve, ok := err.(*alipay.VerifyError); ok {
		fmt.Println(ve.Reason, ve.OutTradeNo)
	}
	// Output:
	// alipay: invalid signature
	// signature_invalid 20240520000001
}

// Sign an app-pay order: the orderString goes to the app, untouched.
func ExampleClient_AppPay() {
	appKey, _ := alipay.ParsePrivateKey(mustReadFile("testdata/shared/test_private_pkcs8.pem")) // TESTING KEY
	alipayPub, _ := alipay.ParsePublicKey(mustReadFile("testdata/openssl/other_public.pem"))    // TESTING KEY
	c, err := alipay.NewClient(alipay.Config{
		AppID:           "2014072300007148",
		PrivateKey:      appKey,
		AlipayPublicKey: alipayPub,
		NotifyURL:       "https://merchant.example.com/alipay/notify",
		Now:             func() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 0, alipay.Beijing()) },
	})
	if err != nil {
		panic(err)
	}
	s, err := c.AppPay(alipay.TradeAppPay{OutTradeNo: "20240102000002", TotalAmount: 1, Subject: "App 测试", TimeoutExpress: "30m"})
	if err != nil {
		panic(err)
	}
	fmt.Println(s[:strings.Index(s, "&sign=")])
	// Output:
	// app_id=2014072300007148&biz_content=%7B%22out_trade_no%22%3A%2220240102000002%22%2C%22total_amount%22%3A%220.01%22%2C%22subject%22%3A%22App+%E6%B5%8B%E8%AF%95%22%2C%22product_code%22%3A%22QUICK_MSECURITY_PAY%22%2C%22timeout_express%22%3A%2230m%22%7D&charset=utf-8&format=JSON&method=alipay.trade.app.pay&notify_url=https%3A%2F%2Fmerchant.example.com%2Falipay%2Fnotify
}

// Amounts are int64 fen, parsed strictly.
func ExampleParseAmount() {
	fen, err := alipay.ParseAmount("88.88")
	fmt.Println(fen, err, alipay.FormatAmount(fen+12))
	_, err = alipay.ParseAmount("88.888")
	fmt.Println(err)
	// Output:
	// 8888 <nil> 89.00
	// alipay: invalid amount "88.888"
}

// Certificate mode: the SNs sent with every request.
func ExampleRootCertSN() {
	sn, _ := alipay.CertSN(mustReadFile("testdata/shared/certs/appCertPublicKey_2021001161683774.crt"))
	root, _ := alipay.RootCertSN(mustReadFile("testdata/shared/certs/alipayRootCert.crt"))
	fmt.Println(sn)
	fmt.Println(root)
	// Output:
	// 866efef280dec9137a87d047ac446315
	// 687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6
}

// A notify_url handler for net/http: verify the request (its raw body, read once, at most
// MaxNotificationBytes), apply the payment, then answer.
func ExampleClient_VerifyNotificationRequest() {
	alipayKey := newKey() // stands in for Alipay's key pair: you configure the Alipay public key (支付宝公钥)
	client, err := alipay.NewClient(alipay.Config{AlipayPublicKey: &alipayKey.PublicKey})
	if err != nil {
		panic(err)
	}

	// markPaid stands for your code: check app_id, seller_id and the amount against your order,
	// then commit.
	markPaid := func(n *alipay.Notification) error {
		if n.IsPaid() {
			fmt.Println("paid", n.OutTradeNo, n.TotalAmount, "fen")
		}
		return nil
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /alipay/notify", func(w http.ResponseWriter, r *http.Request) {
		n, err := client.VerifyNotificationRequest(r)
		if err == nil {
			err = markPaid(n)
		}
		if err != nil {
			alipay.WriteAckFailure(w) // Alipay retries; log err (a *alipay.VerifyError says why)
			return
		}
		alipay.WriteAckSuccess(w) // only after the commit
	})

	w := httptest.NewRecorder()
	mux.ServeHTTP(w, notification(alipayKey, "O1001", "88.88", false))
	fmt.Printf("%d %q\n", w.Code, w.Body.String())
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, notification(alipayKey, "O1001", "88.88", true)) // the amount changed after signing
	fmt.Printf("%d %q\n", w.Code, w.Body.String())
	// Output:
	// paid O1001 8888 fen
	// 200 "success"
	// 200 "fail"
}

// Ask Alipay about a trade. The app's resultStatus 9000 proves nothing: query, or wait for the
// notification. The gateway here is paynotify's sandbox on 127.0.0.1; leave Config.Gateway empty
// for production.
func ExampleClient_TradeQuery() {
	gateway, stop := startSandbox()
	defer stop()
	client := gateway.client
	ctx := context.Background()

	orderString, err := client.AppPay(alipay.TradeAppPay{OutTradeNo: "O3001", TotalAmount: 8888, Subject: "Coffee"})
	if err != nil {
		panic(err)
	}

	// Before the buyer opens the order, Alipay does not know the trade. Only a signed error
	// (Signed true) is Alipay's word; an unsigned one proves nothing.
	_, err = client.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "O3001"})
	var aerr *alipay.Error
	if errors.As(err, &aerr) {
		fmt.Println(aerr.SubCode, "signed:", aerr.Signed)
	}

	gateway.payInApp(orderString) // the buyer pays in the Alipay app

	q, err := client.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: "O3001"})
	if err != nil {
		panic(err)
	}
	fmt.Println(q.OutTradeNo, q.TradeStatus, q.TotalAmount, "fen")
	// Output:
	// ACQ.TRADE_NOT_EXIST signed: true
	// O3001 TRADE_SUCCESS 8888 fen
}

// Refund part of a paid trade. Retry a failed call with the same OutRequestNo: Alipay refunds it
// once. The gateway here is paynotify's sandbox on 127.0.0.1.
func ExampleClient_TradeRefund() {
	gateway, stop := startSandbox()
	defer stop()
	client := gateway.client
	gateway.paid("O2001", 8888)

	for range 2 { // the second call is a retry: no money moves
		r, err := client.TradeRefund(context.Background(), alipay.TradeRefund{
			OutTradeNo: "O2001", RefundAmount: 1000, OutRequestNo: "O2001-R1", RefundReason: "one item out of stock",
		})
		if err != nil {
			fmt.Println(err) // an *alipay.Error, or unknown: query with TradeFastpayRefundQuery
			return
		}
		fmt.Println(r.OutTradeNo, "fund_change:", r.FundChange, "refunded in total:", r.RefundFee, "fen")
	}
	// Output:
	// O2001 fund_change: true refunded in total: 1000 fen
	// O2001 fund_change: false refunded in total: 1000 fen
}

// --- setup of the examples above ---

func newKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// notification builds the POST Alipay sends to a notify_url, signed with key as Alipay signs it:
// RSA2 over the sorted key=value string without sign and sign_type. tamper changes total_amount
// after signing.
func notification(key *rsa.PrivateKey, outTradeNo, amount string, tamper bool) *http.Request {
	v := url.Values{
		"notify_time": {"2024-05-20 13:14:16"}, "notify_type": {"trade_status_sync"}, "notify_id": {"2024052000222131416000000001"},
		"app_id": {"2021000000000001"}, "charset": {"utf-8"}, "version": {"1.0"},
		"trade_no": {"2024052022001400000000000001"}, "out_trade_no": {outTradeNo}, "seller_id": {"2088000000000001"},
		"trade_status": {"TRADE_SUCCESS"}, "total_amount": {amount}, "subject": {"Coffee"}, "gmt_payment": {"2024-05-20 13:14:15"},
	}
	var f alipaywire.Form
	if err := f.Parse([]byte(v.Encode())); err != nil {
		panic(err)
	}
	sign, err := alipaywire.Sign(key, "RSA2", f.AppendCanonical(nil, false, "", false))
	if err != nil {
		panic(err)
	}
	v.Set("sign", sign)
	v.Set("sign_type", "RSA2")
	if tamper {
		v.Set("total_amount", "0.01")
	}
	r := httptest.NewRequest("POST", "/alipay/notify", strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded; text/html; charset=utf-8")
	return r
}

// sandboxGateway is paynotify's provider sandbox, served on 127.0.0.1, and a client of its
// default app.
type sandboxGateway struct {
	sb     *sandbox.Sandbox
	client *alipay.Client
}

func startSandbox() (*sandboxGateway, func()) {
	dir, err := os.MkdirTemp("", "alipay-example-")
	if err != nil {
		panic(err)
	}
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	sb, err := sandbox.New(sandbox.Config{StateDir: dir, BaseURL: srv.URL, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	h = sb.Handler()
	k := sb.Keys()
	appKey, err := alipay.ParsePrivateKey([]byte(k.AlipayAppPrivateKey))
	if err != nil {
		panic(err)
	}
	alipayPub, err := alipay.ParsePublicKey([]byte(k.AlipayPublicKey))
	if err != nil {
		panic(err)
	}
	client, err := alipay.NewClient(alipay.Config{
		AppID:           k.AlipayAppID,
		PrivateKey:      appKey,
		AlipayPublicKey: alipayPub,
		Gateway:         srv.URL + "/sandbox/alipay/gateway.do",
		NotifyURL:       "http://127.0.0.1:1/alipay/notify", // never called: the sandbox's notifier is not started
	})
	if err != nil {
		panic(err)
	}
	return &sandboxGateway{sb, client}, func() {
		srv.Close()
		sb.Close()
		os.RemoveAll(dir)
	}
}

// payInApp plays the Alipay app SDK: the buyer pays the orderString.
func (g *sandboxGateway) payInApp(orderString string) {
	status, _, memo, err := g.sb.AlipayAppPay(orderString, "9000")
	if err != nil || status != "9000" {
		panic(fmt.Sprint("app pay: ", status, memo, err))
	}
}

// paid creates an app-pay order and has the buyer pay it.
func (g *sandboxGateway) paid(outTradeNo string, fen int64) {
	orderString, err := g.client.AppPay(alipay.TradeAppPay{OutTradeNo: outTradeNo, TotalAmount: fen, Subject: "Coffee"})
	if err != nil {
		panic(err)
	}
	g.payInApp(orderString)
}
