package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

const validConfig = `
listen: "127.0.0.1:9090"
public_url: "https://pay.example.com"
api_token: "${TOKEN}"
apps:
  - name: shop
    provider: alipay
    app_id: "2021000000000001"
    seller_id: "2088000000000002"
    app_private_key_file: keys/app_private.pem
    alipay_public_key_file: keys/alipay_public.pem
  - name: wx
    provider: wechatpay
    mchid: "1900000001"
    appid: "wx0000000000000001"
    merchant_private_key_file: keys/wx_merchant.pem
    merchant_serial_no: "ABC"
    apiv3_key_file: keys/wx_apiv3.key
    platform_public_key_file: keys/wx_platform_pub.pem
    platform_public_key_id: "PUB_KEY_ID_0001"
`

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestParseConfig(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		c, err := ParseConfig([]byte(validConfig), env(map[string]string{"TOKEN": "0123456789abcdef0123"}))
		if err != nil {
			t.Fatal(err)
		}
		if c.APIToken != "0123456789abcdef0123" || c.Database != DefaultDatabase || c.Listen != "127.0.0.1:9090" {
			t.Fatalf("config = %+v", c)
		}
		if a := c.Apps[0]; a.Gateway != "https://openapi.alipay.com/gateway.do" || a.SignType != "RSA2" || a.Sellers()[0] != "2088000000000002" {
			t.Fatalf("alipay defaults = %+v", a)
		}
		if a := c.Apps[1]; a.APIBase != "https://api.mch.weixin.qq.com" {
			t.Fatalf("wechatpay defaults = %+v", a)
		}
		if c.Jobs.SweepInterval != 5*time.Second || c.Jobs.MaxChecksPerSecond != 10 {
			t.Fatalf("jobs = %+v", c.Jobs)
		}
		if p := c.Apps[0].Reconcile.policy(); fmt.Sprint(p) != fmt.Sprint(paynotify.DefaultReconcile) {
			t.Fatalf("reconcile = %+v, want the defaults", p)
		}
	})
	t.Run("OKReconcile", func(t *testing.T) {
		src := strings.Replace(validConfig, "    seller_id:", "    reconcile:\n      schedule: [30s, 2m]\n      then_every: 15m\n      max_checks: 6\n      concurrency: 2\n    seller_id:", 1)
		src = "jobs:\n  sweep_interval: 2s\n  max_checks_per_second: 10\n" + src
		c, err := ParseConfig([]byte(src), env(map[string]string{"TOKEN": "0123456789abcdef0123"}))
		if err != nil {
			t.Fatal(err)
		}
		want := paynotify.ReconcilePolicy{Schedule: []time.Duration{30 * time.Second, 2 * time.Minute}, ThenEvery: 15 * time.Minute, MaxChecks: 6, Concurrency: 2}
		if p := c.Apps[0].Reconcile.policy(); fmt.Sprint(p) != fmt.Sprint(want) || c.Jobs.SweepInterval != 2*time.Second || c.Jobs.MaxChecksPerSecond != 10 {
			t.Fatalf("reconcile = %+v, sweep %s", p, c.Jobs.SweepInterval)
		}
	})
	tests := []struct {
		name, from, to string
		env            map[string]string
		want           string
	}{
		{"ErrUnsetEnv", "", "", map[string]string{}, "api_token: environment variable TOKEN is not set"},
		{"ErrShortToken", "", "", map[string]string{"TOKEN": "short"}, "api_token: too short"},
		{"ErrEmptyToken", "", "", map[string]string{"TOKEN": ""}, "api_token: required"},
		{"ErrUnknownKey", `listen: "127.0.0.1:9090"`, "listen: x\nlisten_port: 80", nil, "field listen_port not found"},
		{"ErrUnknownAppKey", "seller_id:", "seler_id:", nil, "field seler_id not found"},
		{"ErrPublicURLQuery", `"https://pay.example.com"`, `"https://pay.example.com/?a=b"`, nil, "public_url:"},
		{"ErrPublicURLMissing", `public_url: "https://pay.example.com"`, ``, nil, "public_url: required"},
		{"ErrAppName", "name: shop", "name: Shop_1", nil, "apps[0] (Shop_1).name:"},
		{"ErrDuplicateName", "name: wx", "name: shop", nil, `apps[1] (shop).name: duplicate app name "shop"`},
		{"ErrProvider", "provider: alipay", "provider: paypal", nil, `apps[0] (shop).provider: "paypal"`},
		{"ErrAlipayKeyMissing", "    alipay_public_key_file: keys/alipay_public.pem\n", "", nil, "apps[0] (shop).alipay_public_key_file: required"},
		{"ErrAppIDEmpty", `app_id: "2021000000000001"`, `app_id: ""`, nil, "apps[0] (shop).app_id: required"},
		{"ErrSignType", "    seller_id:", "    sign_type: MD5\n    seller_id:", nil, "apps[0] (shop).sign_type:"},
		{"ErrCertModePartial", "    alipay_public_key_file: keys/alipay_public.pem\n", "    app_cert_file: a.crt\n", nil, "apps[0] (shop).alipay_cert_file: required"},
		{"ErrMchIDMissing", `mchid: "1900000001"`, `mchid: ""`, nil, "apps[1] (wx).mchid: required"},
		{"ErrPlatformKeyID", `platform_public_key_id: "PUB_KEY_ID_0001"`, ``, nil, "apps[1] (wx).platform_public_key_id:"},
		{"ErrReconcileOrder", "    seller_id:", "    reconcile: {schedule: [3m, 1m]}\n    seller_id:", nil, "apps[0] (shop).reconcile.schedule: offsets must be positive and increasing"},
		{"ErrReconcileShort", "    seller_id:", "    reconcile: {schedule: [100ms]}\n    seller_id:", nil, "apps[0] (shop).reconcile.schedule: 100ms is shorter than 1s"},
		{"ErrReconcileUnknownKey", "    seller_id:", "    reconcile: {every: 1m}\n    seller_id:", nil, "field every not found"},
		{"ErrReconcileNegative", "    seller_id:", "    reconcile: {max_checks: -1}\n    seller_id:", nil, "apps[0] (shop).reconcile.max_checks: must be positive"},
		{"ErrSweepInterval", `listen: "127.0.0.1:9090"`, "listen: x\njobs: {sweep_interval: 10ms}", nil, "jobs.sweep_interval: 10ms is shorter than 1s"},
		{"ErrWrongProviderField", `merchant_serial_no: "ABC"`, "merchant_serial_no: \"ABC\"\n    seller_id: \"2088\"", nil, "apps[1] (wx).seller_id: not a wechatpay setting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := validConfig
			if tt.from != "" || tt.to != "" {
				if !strings.Contains(src, tt.from) {
					t.Fatalf("test setup: %q not in config", tt.from)
				}
				src = strings.Replace(src, tt.from, tt.to, 1)
			}
			vars := tt.env
			if vars == nil {
				vars = map[string]string{"TOKEN": "0123456789abcdef0123"}
			}
			_, err := ParseConfig([]byte(src), env(vars))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "0123456789abcdef0123") {
				t.Fatalf("error leaks the token: %v", err)
			}
		})
	}
}
