package wechatpay_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/paynotify/paynotify/internal/wechatpaywire"
	"github.com/paynotify/paynotify/sandbox"
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
func ExampleClient_VerifyNotification() {
	certPEM, _ := os.ReadFile("testdata/shared/go_sdk_notify_test_cert.pem")
	client, err := wechatpay.NewClient(wechatpay.Config{
		APIv3Key:      []byte("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"), // test key; load yours from a file
		PlatformCerts: certPEM,
		// The vector is from 2024: pin the clock inside its 5-minute window.
		Now: func() time.Time { return time.Unix(1717216561, 0) },
	})
	if err != nil {
		panic(err)
	}
	h, body := v1()
	n, err := client.VerifyNotification(h, body)
	if err != nil {
		panic(err)
	}
	tx := n.Transaction
	fmt.Println(n.EventType, tx.OutTradeNo, tx.TradeState, tx.Amount.Total, tx.Amount.Currency)
	fmt.Println(tx.SuccessTime.Format(time.RFC3339))

	// The same bytes with one changed are rejected; the reason is for logs and evidence.
	body[len(body)-3] ^= 1
	_, err = client.VerifyNotification(h, body)
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

// A notify_url handler for net/http: verify and decrypt the request (its raw body, read once,
// at most MaxNotificationBytes), apply the payment, then answer 204.
func ExampleClient_VerifyNotificationRequest() {
	wechatKey := newKey() // stands in for WeChat Pay's key: you configure its public key (微信支付公钥) and id
	apiv3Key := []byte("0123456789abcdef0123456789abcdef")
	client, err := wechatpay.NewClient(wechatpay.Config{
		APIv3Key:            apiv3Key,
		PlatformPublicKey:   &wechatKey.PublicKey,
		PlatformPublicKeyID: "PUB_KEY_ID_0112345678202401010000000000000001",
	})
	if err != nil {
		panic(err)
	}

	// markPaid stands for your code: check mchid, appid and the amount against your order, then
	// commit.
	markPaid := func(n *wechatpay.Notification) error {
		if tx := n.Transaction; n.EventType == wechatpay.EventTransactionSuccess && tx != nil {
			fmt.Println("paid", tx.OutTradeNo, tx.Amount.Total, "fen")
		}
		return nil
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /wechatpay/notify", func(w http.ResponseWriter, r *http.Request) {
		n, err := client.VerifyNotificationRequest(r)
		if err != nil {
			wechatpay.WriteAckFailure(w, http.StatusUnauthorized, "verification failed") // log err: a *wechatpay.VerifyError
			return
		}
		if err := markPaid(n); err != nil {
			wechatpay.WriteAckFailure(w, http.StatusInternalServerError, "not applied") // WeChat Pay retries
			return
		}
		wechatpay.WriteAckSuccess(w) // 204, only after the commit
	})

	w := httptest.NewRecorder()
	mux.ServeHTTP(w, notification(wechatKey, apiv3Key, "O1001", 8888, false))
	fmt.Println(answer(w))
	w = httptest.NewRecorder()
	mux.ServeHTTP(w, notification(wechatKey, apiv3Key, "O1001", 8888, true)) // one body byte changed after signing
	fmt.Println(answer(w))
	// Output:
	// paid O1001 8888 fen
	// 204 (no body)
	// 401 {"code":"FAIL","message":"verification failed"}
}

// Create a JSAPI (official account, mini program) order, then sign the parameters the page hands
// to wx.requestPayment. The API here is paynotify's sandbox on 127.0.0.1; leave Config.BaseURL
// empty for production.
func ExampleClient_PrepayJSAPI() {
	api, stop := startSandbox()
	defer stop()
	client := api.client

	req := wechatpay.PrepayRequest{Description: "Coffee", OutTradeNo: "ORDER4001", NotifyURL: "https://merchant.example.com/wechatpay/notify"}
	req.Amount.Total = 8888
	req.Payer.OpenID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
	prepayID, err := client.PrepayJSAPI(context.Background(), req)
	if err != nil {
		panic(err) // a refusal is a *wechatpay.Error, with WeChat Pay's code and message
	}
	p, err := client.JSAPIPayParams(prepayID)
	if err != nil {
		panic(err)
	}
	b, _ := json.Marshal(p) // to the page, as the argument of wx.requestPayment
	fmt.Println(p.AppID, p.Package[:len("prepay_id=wx")]+"…", p.SignType)
	fmt.Println(jsonKeys(b))
	// Output:
	// wxd678efh567hg6787 prepay_id=wx… RSA
	// [appId nonceStr package paySign signType timeStamp]
}

// Create an APP order, then sign the parameters of the WeChat OpenSDK's PayReq. The API here is
// paynotify's sandbox on 127.0.0.1.
func ExampleClient_PrepayApp() {
	api, stop := startSandbox()
	defer stop()
	client := api.client

	req := wechatpay.PrepayRequest{Description: "Coffee", OutTradeNo: "ORDER4002", NotifyURL: "https://merchant.example.com/wechatpay/notify"}
	req.Amount.Total = 8888
	prepayID, err := client.PrepayApp(context.Background(), req)
	if err != nil {
		panic(err)
	}
	p, err := client.AppPayParams(prepayID)
	if err != nil {
		panic(err)
	}
	b, _ := json.Marshal(p) // to the app
	fmt.Println(p.AppID, p.PartnerID, p.PrepayID[:2]+"…", p.Package)
	fmt.Println(jsonKeys(b))
	// Output:
	// wxd678efh567hg6787 1900000109 wx… Sign=WXPay
	// [appid noncestr package partnerid prepayid sign timestamp]
}

// --- setup of the examples above ---

func newKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

// notification builds a TRANSACTION.SUCCESS notification as WeChat Pay sends it, signed with key:
// wechatpaywire.BuildNotification plays WeChat Pay's side. tamper changes one byte of the body after signing.
func notification(key *rsa.PrivateKey, apiv3Key []byte, outTradeNo string, fen int64, tamper bool) *http.Request {
	tx := fmt.Sprintf(`{"mchid":"1900000109","appid":"wxd678efh567hg6787","out_trade_no":%q,"transaction_id":"4200000000202405200000000001",`+
		`"trade_type":"JSAPI","trade_state":"SUCCESS","trade_state_desc":"支付成功","bank_type":"OTHERS","attach":"",`+
		`"success_time":"2024-05-20T13:14:15+08:00","payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},`+
		`"amount":{"total":%d,"payer_total":%d,"currency":"CNY","payer_currency":"CNY"}}`, outTradeNo, fen, fen)
	h, body, err := wechatpaywire.BuildNotification(key, "PUB_KEY_ID_0112345678202401010000000000000001", apiv3Key, wechatpaywire.NotificationParams{
		ID: "EV-2024052000000001", CreateTime: time.Now(), EventType: wechatpay.EventTransactionSuccess,
		Summary: "支付成功", OriginalType: "transaction", Plaintext: []byte(tx),
	})
	if err != nil {
		panic(err)
	}
	if tamper {
		body[len(body)-3] ^= 1
	}
	r := httptest.NewRequest("POST", "/wechatpay/notify", strings.NewReader(string(body)))
	for k, v := range h {
		r.Header[k] = v
	}
	r.Header.Set("Content-Type", "application/json")
	return r
}

// answer is the status and body of a recorded answer.
func answer(w *httptest.ResponseRecorder) string {
	if w.Body.Len() == 0 {
		return fmt.Sprint(w.Code, " (no body)")
	}
	return fmt.Sprint(w.Code, " ", w.Body)
}

// jsonKeys returns the keys of a JSON object, sorted: the example's output cannot show the
// signature, nonce and timestamp, which change on every run.
func jsonKeys(b []byte) []string {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sandboxAPI is paynotify's provider sandbox, served on 127.0.0.1, with a merchant registered
// under a key generated here, and that merchant's client.
type sandboxAPI struct {
	sb     *sandbox.Sandbox
	client *wechatpay.Client
}

func startSandbox() (*sandboxAPI, func()) {
	dir, err := os.MkdirTemp("", "wechatpay-example-")
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

	merchantKey := newKey() // apiclient_key.pem
	const mchID, appID, serial = "1900000109", "wxd678efh567hg6787", "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
	if err := sb.RegisterWechatMerchant(mchID, appID, serial, &merchantKey.PublicKey); err != nil {
		panic(err)
	}
	k := sb.Keys()
	platformKey, err := wechatpay.ParsePublicKey([]byte(k.WechatPlatformPublicKey))
	if err != nil {
		panic(err)
	}
	client, err := wechatpay.NewClient(wechatpay.Config{
		MchID:               mchID,
		AppID:               appID,
		MerchantPrivateKey:  merchantKey,
		MerchantSerialNo:    serial,
		APIv3Key:            []byte(k.WechatAPIv3Key),
		PlatformPublicKey:   platformKey,
		PlatformPublicKeyID: k.WechatPlatformPublicKeyID,
		BaseURL:             srv.URL, // the sandbox also serves the APIv3 at its real paths, /v3/…
	})
	if err != nil {
		panic(err)
	}
	return &sandboxAPI{sb, client}, func() {
		srv.Close()
		sb.Close()
		os.RemoveAll(dir)
	}
}
