package alipaylegacy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/paynotify/paynotify/alipaylegacy"
)

// A notify_url handler: verify the body, confirm the notify_id with notify_verify, apply, and only
// then answer "success". (The key is the vectors' TESTING KEY, and a local stand-in plays Alipay's
// notify_verify.)
func Example_notifyHandler() {
	key, err := os.ReadFile("testdata/keys/md5_key.txt") // TESTING KEY
	if err != nil {
		panic(err)
	}
	atn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "true") // Alipay's answer for a genuine, current notify_id
	}))
	defer atn.Close()
	c, err := alipaylegacy.New(alipaylegacy.Config{
		Partner:         "2088101122136241",
		SignType:        alipaylegacy.SignMD5,
		MD5Key:          string(key), // New trims the file's newline
		InputCharset:    "utf-8",
		NotifyVerifyURL: atn.URL + "/gateway.do?service=notify_verify", // default: alipaylegacy.NotifyVerifyHTTPS
	})
	if err != nil {
		panic(err)
	}

	notify := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			io.WriteString(w, alipaylegacy.AckFail)
			return
		}
		n, err := c.VerifyNotification(body)
		if err != nil {
			var ve *alipaylegacy.VerifyError
			if errors.As(err, &ve) {
				fmt.Println("rejected:", ve.Reason) // log ve.Detail and keep ve.Canonical as evidence
			}
			io.WriteString(w, alipaylegacy.AckFail)
			return
		}
		// The notification counts only once notify_verify answers exactly "true".
		if err := c.NotifyVerify(r.Context(), n.NotifyID); err != nil {
			// ErrNotifyVerifyUnavailable: Alipay will retry. ErrNotConfirmed: not genuine.
			io.WriteString(w, alipaylegacy.AckFail)
			return
		}
		// Check it against the order (out_trade_no, amount in fen, seller), apply it durably, then
		// acknowledge.
		fmt.Println(n.OutTradeNo, n.TradeStatus, n.TotalFee, n.IsPaid(), c.SellerMatches(n))
		io.WriteString(w, alipaylegacy.AckSuccess)
	}

	body, err := os.ReadFile("testdata/cases/mapi_md5_valid.body")
	if err != nil {
		panic(err)
	}
	for _, b := range [][]byte{body, bytes.Replace(body, []byte("total_fee=88.88"), []byte("total_fee=0.01"), 1)} {
		rec := httptest.NewRecorder()
		notify(rec, httptest.NewRequest(http.MethodPost, "/notify/alipay-legacy/shop", bytes.NewReader(b)))
		fmt.Println(rec.Body.String())
	}
	// Output:
	// LEG20261128001 TRADE_SUCCESS 8888 true true
	// success
	// rejected: signature_invalid
	// fail
}

// A create_direct_pay_by_user URL to send the buyer's browser to.
func ExampleClient_DirectPayURL() {
	key, err := os.ReadFile("testdata/keys/md5_key.txt") // TESTING KEY
	if err != nil {
		panic(err)
	}
	c, err := alipaylegacy.New(alipaylegacy.Config{
		Partner:     "2088101122136241",
		SignType:    alipaylegacy.SignMD5,
		MD5Key:      string(key),
		SellerEmail: "seller@example.com",
	})
	if err != nil {
		panic(err)
	}
	u, err := c.DirectPayURL(&alipaylegacy.DirectPay{
		OutTradeNo: "LEG20261128001",
		Subject:    "测试商品 No.1",
		TotalFee:   8888, // fen: 88.88 yuan
		Body:       "大乐透2.1 & friends = 100% +1",
		ShowURL:    "https://shop.example.com/item/1",
		NotifyURL:  "https://shop.example.com/alipay/notify",
		ReturnURL:  "https://shop.example.com/alipay/return",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(u)
	// Output:
	// https://mapi.alipay.com/gateway.do?_input_charset=utf-8&body=%E5%A4%A7%E4%B9%90%E9%80%8F2.1+%26+friends+%3D+100%25+%2B1&notify_url=https%3A%2F%2Fshop.example.com%2Falipay%2Fnotify&out_trade_no=LEG20261128001&partner=2088101122136241&payment_type=1&return_url=https%3A%2F%2Fshop.example.com%2Falipay%2Freturn&seller_email=seller%40example.com&service=create_direct_pay_by_user&show_url=https%3A%2F%2Fshop.example.com%2Fitem%2F1&subject=%E6%B5%8B%E8%AF%95%E5%95%86%E5%93%81+No.1&total_fee=88.88&sign=881390a873b9b02039c9305e827fb6ca&sign_type=MD5
}
