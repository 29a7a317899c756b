package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/sandbox"
	"github.com/paynotify/paynotify/wechatpay"
)

// checkRootV3 checks that base serves the WeChat Pay APIv3 at its real paths /v3/…: an unsigned
// request gets WeChat's 401 JSON error, and the wechatpay client with BaseURL base (no
// /sandbox/wechatpay) creates and queries an order. token, when set, is what the sandbox's keys
// need (the demo's API token).
func checkRootV3(t *testing.T, base, token string) {
	t.Helper()
	resp, err := http.Post(base+"/v3/pay/transactions/native", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct{ Code string }
	if resp.StatusCode != 401 || json.Unmarshal(body, &e) != nil || e.Code != "SIGN_ERROR" {
		t.Fatalf("unsigned /v3 request: %d %s", resp.StatusCode, body)
	}
	keysReq, _ := http.NewRequest("GET", base+"/sandbox/api/keys", nil)
	if token != "" {
		keysReq.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err = http.DefaultClient.Do(keysReq)
	if err != nil {
		t.Fatal(err)
	}
	var k sandbox.Keys
	err = json.NewDecoder(resp.Body).Decode(&k)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := wechatpay.ParsePrivateKey([]byte(k.WechatMerchantPrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := wechatpay.ParsePublicKey([]byte(k.WechatPlatformPublicKey))
	if err != nil {
		t.Fatal(err)
	}
	c, err := wechatpay.NewClient(wechatpay.Config{MchID: k.WechatMchID, AppID: k.WechatAppID, MerchantPrivateKey: priv,
		MerchantSerialNo: k.WechatMerchantSerialNo, APIv3Key: []byte(k.WechatAPIv3Key), PlatformPublicKey: pub,
		PlatformPublicKeyID: k.WechatPlatformPublicKeyID, BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := wechatpay.PrepayRequest{Description: "root v3", OutTradeNo: "root_v3_check", NotifyURL: "https://merchant.example/notify"}
	req.Amount.Total = 100
	if _, err := c.PrepayNative(ctx, req); err != nil {
		t.Fatalf("prepay at %s/v3: %v", base, err)
	}
	if tx, err := c.QueryByOutTradeNo(ctx, req.OutTradeNo); err != nil || tx.TradeState != "NOTPAY" {
		t.Fatalf("query at %s/v3: %+v %v", base, tx, err)
	}
}
