package wechatpay_test

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/paynotify/paynotify/wechatpay"
)

// v1 reads the shared vector V1: a signed and encrypted TRANSACTION.SUCCESS notification.
func v1() (http.Header, []byte) {
	b, _ := os.ReadFile("testdata/shared/vectors.json")
	var v struct {
		V1 struct {
			Headers map[string]string `json:"headers"`
			Body    string            `json:"body"`
		} `json:"V1_transaction_success"`
	}
	json.Unmarshal(b, &v)
	h := http.Header{}
	for k, val := range v.V1.Headers {
		h.Set(k, val)
	}
	return h, []byte(v.V1.Body)
}

// Verify and decrypt a payment notification. In a handler, h is r.Header and body the bytes of
// io.ReadAll(r.Body), exactly as received.
func ExampleClient_ParseNotification() {
	certPEM, _ := os.ReadFile("testdata/shared/go_sdk_notify_test_cert.pem")
	cert, err := wechatpay.ParseCertificate(certPEM)
	if err != nil {
		panic(err)
	}
	client, err := wechatpay.NewClient(wechatpay.Config{
		APIv3Key:      []byte("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"), // test key; load yours from a file
		PlatformCerts: []*x509.Certificate{cert},
		// The vector is from 2024: pin the clock inside its 5-minute window.
		Now: func() time.Time { return time.Unix(1717216561, 0) },
	})
	if err != nil {
		panic(err)
	}
	h, body := v1()
	n, err := client.ParseNotification(h, body)
	if err != nil {
		panic(err)
	}
	tx := n.Transaction
	fmt.Println(n.EventType, tx.OutTradeNo, tx.TradeState, tx.Amount.Total, tx.Amount.Currency)
	fmt.Println(tx.SuccessTime.Format(time.RFC3339))

	// The same bytes with one changed are rejected; the reason is for logs and evidence.
	body[len(body)-3] ^= 1
	_, err = client.ParseNotification(h, body)
	var ve *wechatpay.VerifyError
	fmt.Println(errors.Is(err, wechatpay.ErrSignature), errors.As(err, &ve) && ve.Reason == "signature_invalid", err)
	// Output:
	// TRANSACTION.SUCCESS ORD20240601123456 SUCCESS 100 CNY
	// 2024-06-01T12:35:00+08:00
	// true true wechatpay: invalid signature
}

// Answer a notification: 204 once the effect is committed, else 4xx/5xx with the FAIL body.
func ExampleWriteAckFailure() {
	w := httptest.NewRecorder()
	wechatpay.WriteAckFailure(w, http.StatusUnauthorized, "signature_invalid")
	fmt.Println(w.Code, w.Body.String())
	w = httptest.NewRecorder()
	wechatpay.WriteAckSuccess(w)
	fmt.Println(w.Code, w.Body.Len())
	// Output:
	// 401 {"code":"FAIL","message":"signature_invalid"}
	// 204 0
}

// Sign an APIv3 request with the merchant key (the official documentation's example).
func ExampleSignRequest() {
	keyPEM, _ := os.ReadFile("testdata/shared/official_doc_test_key.pem")
	key, err := wechatpay.ParsePrivateKey(keyPEM)
	if err != nil {
		panic(err)
	}
	a, err := wechatpay.SignRequest(key, "1900007291", "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB", "GET",
		"/v3/pay/transactions/out-trade-no/1217752501201407033233368018?mchid=1900007291", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", nil)
	if err != nil {
		panic(err)
	}
	head, _, _ := strings.Cut(a.String(), ",signature=")
	fmt.Println(head)
	fmt.Println(a.Signature[:40])
	// Output:
	// WECHATPAY2-SHA256-RSA2048 mchid="1900007291",nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",timestamp="1554208460",serial_no="408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB"
	// cVvdVujlEmASmAYpcmKXmIrlQualKxd87f8XZtnT
}

// Verify an APIv2 XML payment notification and answer it.
func ExampleVerifyV2Notification() {
	body := []byte(`<xml><appid><![CDATA[wxd930ea5d5a258f4f]]></appid><body>test</body><device_info>1000</device_info>` +
		`<mch_id>10000100</mch_id><nonce_str>ibuaiVcKdpRxkhJA</nonce_str><sign>9A0A8659F005D6984697E2CA0A9CF3B7</sign></xml>`)
	n, err := wechatpay.VerifyV2Notification(body, []byte("192006250b4c09247ec02edce69f6a2d"))
	if err != nil {
		fmt.Printf("%s\n", wechatpay.V2Ack(false, "invalid sign"))
		return
	}
	fmt.Println(n.MchID, n.Fields["body"])
	fmt.Printf("%s\n", wechatpay.V2Ack(true, ""))
	// Output:
	// 10000100 test
	// <xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>
}

// Time values sent to WeChat Pay, such as time_expire, are RFC 3339 in Beijing time.
func ExampleFormatTime() {
	fmt.Println(wechatpay.FormatTime(time.Date(2026, 11, 1, 3, 30, 0, 500, time.UTC)))
	// Output: 2026-11-01T11:30:00+08:00
}
