package alipay_test

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/paynotify/paynotify/alipay"
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

	n, err := c.VerifyNotification(body, "application/x-www-form-urlencoded; text/html; charset=utf-8")
	if err != nil {
		fmt.Println(alipay.AckFail, err) // log the *alipay.VerifyError's Reason and Detail
		return
	}
	fmt.Println(n.OutTradeNo, n.TradeStatus, alipay.FormatAmount(n.TotalAmount), n.Subject)
	fmt.Println(n.GmtPayment.Format(time.RFC3339))
	// ... check app_id, seller_id, amount against your order, commit, then:
	fmt.Println(alipay.AckSuccess)
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

	_, err := c.VerifyNotification(body, "")
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
		Now:             func() time.Time { return time.Date(2024, 1, 2, 3, 4, 5, 0, alipay.Beijing) },
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
