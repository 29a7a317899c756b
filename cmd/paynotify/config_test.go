package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipaylegacy"
	"github.com/paynotify/paynotify/provider"
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
	t.Run("OKTrailingDocumentMarker", func(t *testing.T) {
		// A trailing "---", with nothing or only comments after it, holds no setting.
		for _, tail := range []string{"---\n", "---\n# another config, commented out\n# database: x\n", "...\n"} {
			if _, err := ParseConfig([]byte(validConfig+tail), env(map[string]string{"TOKEN": "0123456789abcdef0123"})); err != nil {
				t.Errorf("%q after the config: %v", tail, err)
			}
		}
	})
	t.Run("OKSameMchIDOtherAppID", func(t *testing.T) {
		// One merchant, two appids (an app and a mini program): WeChat Pay's answers name the
		// appid, and one about the other app's order is an anomaly, not a payment.
		src := validConfig + "  - name: wx2\n    provider: wechatpay\n    mchid: \"1900000001\"\n    appid: \"wx0000000000000002\"\n    merchant_private_key_file: m.pem\n    merchant_serial_no: \"ABC\"\n    apiv3_key_file: k\n    platform_public_key_file: p.pem\n    platform_public_key_id: \"PUB_KEY_ID_0001\"\n"
		if _, err := ParseConfig([]byte(src), env(map[string]string{"TOKEN": "0123456789abcdef0123"})); err != nil {
			t.Fatal(err)
		}
	})
	tests := []struct {
		name, from, to string
		env            map[string]string
		want           string
	}{
		{"ErrUnsetEnv", "", "", map[string]string{}, "api_token: environment variable TOKEN is not set"},
		{"ErrShortToken", "", "", map[string]string{"TOKEN": "short"}, "api_token: too short"},
		{"ErrEmptyToken", "", "", map[string]string{"TOKEN": ""}, "api_token: environment variable TOKEN is empty"},
		{"ErrEmptyDatabase", `listen: "127.0.0.1:9090"`, "listen: x\ndatabase: \"${DB}\"", map[string]string{"TOKEN": "0123456789abcdef0123", "DB": ""}, "database: environment variable DB is empty"},
		{"ErrSecondDocument", `listen: "127.0.0.1:9090"`, "listen: x\n---\ndatabase: \"postgres://127.0.0.1/x\"", nil, "more than one YAML document"},
		{"ErrSameAlipayAppID", "  - name: wx\n", "  - name: shop-b\n    provider: alipay\n    app_id: \"2021000000000001\"\n    app_private_key_file: k.pem\n    alipay_public_key_file: p.pem\n  - name: wx\n", nil,
			`apps[1] (shop-b).app_id: "2021000000000001" is also apps[0] (shop)'s: one app per provider app`},
		{"ErrSameWechatApp", "    platform_public_key_id: \"PUB_KEY_ID_0001\"\n", "    platform_public_key_id: \"PUB_KEY_ID_0001\"\n  - name: wx2\n    provider: wechatpay\n    mchid: \"1900000001\"\n    appid: \"wx0000000000000001\"\n    merchant_private_key_file: m.pem\n    merchant_serial_no: \"ABC\"\n    apiv3_key_file: k\n    platform_public_key_file: p.pem\n    platform_public_key_id: \"PUB_KEY_ID_0001\"\n", nil,
			`apps[2] (wx2).appid: mchid "1900000001" with appid "wx0000000000000001" is also apps[1] (wx)'s`},
		{"ErrUnknownKey", `listen: "127.0.0.1:9090"`, "listen: x\nlisten_port: 80", nil, `unknown key "listen_port"`},
		{"ErrUnknownAppKey", "seller_id:", "seler_id:", nil, `unknown key "seler_id"`},
		{"ErrPublicURLQuery", `"https://pay.example.com"`, `"https://pay.example.com/?a=b"`, nil, "public_url:"},
		{"ErrPublicURLSecret", `"https://pay.example.com"`, `"https://u:S3cretPw@pay.example.com/?a=b"`, nil, `public_url: "https://…@pay.example.com/?a=b" must be`},
		{"ErrNATSURLScheme", `listen: "127.0.0.1:9090"`, "listen: x\nnats: {url: \"natss://user:S3cretNats@127.0.0.1:4222\"}", nil, `nats.url: server 1 of 1 is not a nats:// or tls:// URL`},
		{"ErrNATSURLList", `listen: "127.0.0.1:9090"`, "listen: x\nnats: {url: \"nats://user:S3cretNats@127.0.0.1:4222,http://v:S3cretNats@127.0.0.2:4222\"}", nil, `nats.url: server 2 of 2 is not a nats://`},
		{"ErrNATSURLListNoScheme", `listen: "127.0.0.1:9090"`, "listen: x\nnats: {url: \"nats://127.0.0.1:4222,S3cretTok@127.0.0.2:4222\"}", nil, `nats.url: server 2 of 2 is not a nats://`},
		{"ErrNATSURLCommaInPassword", `listen: "127.0.0.1:9090"`, "listen: x\nnats: {url: \"nats://u:S3cret,Pw@127.0.0.1:4222\"}", nil, `nats.url: server 1 of 2 is not a nats://`},
		{"ErrNATSURLToken", `listen: "127.0.0.1:9090"`, "listen: x\nnats: {url: \"nats:/S3cretToken@127.0.0.1\"}", nil, `nats.url: server 1 of 1 is not`},
		{"ErrPublicURLUserInfo", `"https://pay.example.com"`, `"https://admin:S3cretPw@pay.example.com"`, nil, `public_url: "https://…@pay.example.com" must not hold a user name or password`},
		{"ErrGatewayUserInfo", "    alipay_public_key_file: keys/alipay_public.pem\n", "    alipay_public_key_file: keys/alipay_public.pem\n    gateway: \"https://gw:S3cretGw@openapi.alipay.com/gateway.do\"\n", nil, `apps[0] (shop).gateway: "https://…@openapi.alipay.com/gateway.do" must not hold`},
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
		{"ErrReconcileUnknownKey", "    seller_id:", "    reconcile: {every: 1m}\n    seller_id:", nil, `unknown key "every"`},
		{"ErrReconcileNegative", "    seller_id:", "    reconcile: {max_checks: -1}\n    seller_id:", nil, "apps[0] (shop).reconcile.max_checks: must be positive"},
		{"ErrAdminListenOverlap", `listen: "127.0.0.1:9090"`, "listen: \":9090\"\nadmin_listen: \"127.0.0.1:9090\"", nil, `admin_listen: "127.0.0.1:9090" overlaps listen ":9090"`},
		{"ErrMaxChecksNaN", `listen: "127.0.0.1:9090"`, "listen: x\njobs: {max_checks_per_second: .nan}", nil, "jobs.max_checks_per_second: must be a positive number"},
		{"ErrMaxChecksInf", `listen: "127.0.0.1:9090"`, "listen: x\njobs: {max_checks_per_second: .inf}", nil, "jobs.max_checks_per_second: must be a positive number"},
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
			if strings.Contains(err.Error(), "0123456789abcdef0123") || strings.Contains(err.Error(), "S3cret") {
				t.Fatalf("error leaks the token: %v", err)
			}
		})
	}
}

// legacyConfig has one legacy Alipay app of each sign type (provider alipay-legacy).
const legacyConfig = `
public_url: "https://pay.example.com"
api_token: "0123456789abcdef0123"
apps:
  - name: old-md5
    provider: alipay-legacy
    partner: "2088101122136241"
    seller_id: "2088101122136241"
    sign_type: MD5
    md5_key_file: keys/md5_key.txt
  - name: old-rsa
    provider: alipay-legacy
    partner: "2088101122136241"
    seller_email: "seller@example.com"
    sign_type: RSA
    input_charset: gbk
    alipay_public_key_file: keys/alipay_public.pem
    merchant_private_key_file: keys/merchant_private_pkcs1.pem
`

func TestParseConfig_Legacy(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		c, err := ParseConfig([]byte(legacyConfig), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range c.Apps {
			if a.Gateway != alipaylegacy.DefaultGateway || a.WAPGateway != alipaylegacy.DefaultWAPGateway || a.NotifyVerifyURL != alipaylegacy.NotifyVerifyHTTPS ||
				a.NotifyVerify == nil || !*a.NotifyVerify {
				t.Fatalf("%s: legacy defaults = %+v", a.Name, a)
			}
		}
		if c.Apps[0].InputCharset != "utf-8" || c.Apps[1].InputCharset != "gbk" {
			t.Fatalf("input_charset = %q, %q", c.Apps[0].InputCharset, c.Apps[1].InputCharset)
		}
		if c.Apps[0].SignType != "MD5" || c.Apps[1].SignType != "RSA" {
			t.Fatalf("sign_type = %q, %q (no alipay default applied)", c.Apps[0].SignType, c.Apps[1].SignType)
		}
	})
	t.Run("OKExplicit", func(t *testing.T) {
		src := strings.Replace(legacyConfig, "    sign_type: MD5\n", "    sign_type: MD5\n    input_charset: UTF-8\n    notify_verify: false\n"+
			"    notify_verify_url: \"http://notify.alipay.com/trade/notify_query.do\"\n    gateway: \"http://127.0.0.1:8090/gateway.do\"\n"+
			"    wap_gateway: \"http://127.0.0.1:8090/service/rest.htm\"\n    return_url: \"https://shop.example.com/alipay/return\"\n", 1)
		c, err := ParseConfig([]byte(src), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		a := c.Apps[0]
		if *a.NotifyVerify || a.NotifyVerifyURL != alipaylegacy.NotifyVerifyHTTP || a.Gateway != "http://127.0.0.1:8090/gateway.do" ||
			a.WAPGateway != "http://127.0.0.1:8090/service/rest.htm" || a.InputCharset != "UTF-8" || a.ReturnURL != "https://shop.example.com/alipay/return" {
			t.Fatalf("explicit values = %+v", a)
		}
	})
	t.Run("OKEnv", func(t *testing.T) {
		src := strings.Replace(legacyConfig, `partner: "2088101122136241"`, `partner: "${PID}"`, 1)
		c, err := ParseConfig([]byte(src), env(map[string]string{"PID": "2088000000000009"}))
		if err != nil || c.Apps[0].Partner != "2088000000000009" {
			t.Fatalf("partner from the environment: %v", err)
		}
	})
	tests := []struct {
		name, base, from, to string
		want                 string
	}{
		// partner
		{"ErrPartnerMissing", legacyConfig, "    partner: \"2088101122136241\"\n    seller_id:", "    seller_id:", "apps[0] (old-md5).partner: required for a alipay-legacy app"},
		{"ErrPartnerEmpty", legacyConfig, `partner: "2088101122136241"`, `partner: ""`, "apps[0] (old-md5).partner: required"},
		// MD5 needs md5_key_file and forbids the RSA key files.
		{"ErrMD5KeyMissing", legacyConfig, "    md5_key_file: keys/md5_key.txt\n", "", "apps[0] (old-md5).md5_key_file: required for a alipay-legacy app"},
		{"ErrMD5WithAlipayPublicKey", legacyConfig, "    md5_key_file: keys/md5_key.txt\n", "    md5_key_file: keys/md5_key.txt\n    alipay_public_key_file: keys/alipay_public.pem\n",
			"apps[0] (old-md5).alipay_public_key_file: not a alipay-legacy setting (sign_type MD5 uses md5_key_file)"},
		{"ErrMD5WithMerchantKey", legacyConfig, "    md5_key_file: keys/md5_key.txt\n", "    md5_key_file: keys/md5_key.txt\n    merchant_private_key_file: keys/merchant_private_pkcs1.pem\n",
			"apps[0] (old-md5).merchant_private_key_file: not a alipay-legacy setting (sign_type MD5 uses md5_key_file)"},
		// RSA needs both key files and forbids md5_key_file.
		{"ErrRSAPublicKeyMissing", legacyConfig, "    alipay_public_key_file: keys/alipay_public.pem\n", "", "apps[1] (old-rsa).alipay_public_key_file: required for a alipay-legacy app"},
		{"ErrRSAPrivateKeyMissing", legacyConfig, "    merchant_private_key_file: keys/merchant_private_pkcs1.pem\n", "", "apps[1] (old-rsa).merchant_private_key_file: required for a alipay-legacy app"},
		{"ErrRSAWithMD5Key", legacyConfig, "    input_charset: gbk\n", "    input_charset: gbk\n    md5_key_file: keys/md5_key.txt\n",
			"apps[1] (old-rsa).md5_key_file: not a alipay-legacy setting (sign_type RSA uses the key files)"},
		// sign_type is MD5 or RSA: no default, no RSA2, no sec_id spelling.
		{"ErrSignTypeMissing", legacyConfig, "    sign_type: MD5\n", "", `apps[0] (old-md5).sign_type: "" must be MD5 or RSA for an alipay-legacy app`},
		{"ErrSignTypeRSA2", legacyConfig, "sign_type: RSA\n", "sign_type: RSA2\n", `apps[1] (old-rsa).sign_type: "RSA2" must be MD5 or RSA`},
		{"ErrSignType0001", legacyConfig, "sign_type: RSA\n", "sign_type: \"0001\"\n", `apps[1] (old-rsa).sign_type: "0001" must be MD5 or RSA`},
		// seller_id xor seller_email
		{"ErrSellerBoth", legacyConfig, `    seller_email: "seller@example.com"`, "    seller_email: \"seller@example.com\"\n    seller_id: \"2088101122136241\"",
			"apps[1] (old-rsa).seller_email: set seller_id or seller_email, not both"},
		{"ErrSellerIDs", legacyConfig, `    seller_id: "2088101122136241"`, `    seller_ids: ["2088101122136241"]`, "apps[0] (old-md5).seller_ids: not a alipay-legacy setting"},
		// input_charset utf-8 or gbk
		{"ErrCharset", legacyConfig, "input_charset: gbk", "input_charset: big5", `apps[1] (old-rsa).input_charset: "big5" must be utf-8 or gbk`},
		{"ErrCharsetGB2312", legacyConfig, "input_charset: gbk", "input_charset: gb2312", `apps[1] (old-rsa).input_charset: "gb2312" must be utf-8 or gbk`},
		// URLs
		{"ErrGateway", legacyConfig, "    sign_type: MD5\n", "    sign_type: MD5\n    gateway: mapi.alipay.com/gateway.do\n", `apps[0] (old-md5).gateway: "mapi.alipay.com/gateway.do" must be an absolute http(s) URL`},
		{"ErrWAPGateway", legacyConfig, "    sign_type: MD5\n", "    sign_type: MD5\n    wap_gateway: \"ftp://wappaygw.alipay.com/\"\n", "apps[0] (old-md5).wap_gateway:"},
		{"ErrNotifyVerifyURL", legacyConfig, "    sign_type: MD5\n", "    sign_type: MD5\n    notify_verify_url: \"/notify_query.do\"\n", "apps[0] (old-md5).notify_verify_url:"},
		{"ErrReturnURL", legacyConfig, "    sign_type: MD5\n", "    sign_type: MD5\n    return_url: \"shop/return\"\n", "apps[0] (old-md5).return_url:"},
		{"ErrNotifyVerifyNotBool", legacyConfig, "    sign_type: MD5\n", "    sign_type: MD5\n    notify_verify: maybe\n", "line 10: cannot unmarshal !!str `maybe` into bool"},
		// Keys of the other providers are refused on a legacy app.
		{"ErrAppIDOnLegacy", legacyConfig, "    sign_type: MD5\n", "    sign_type: MD5\n    app_id: \"2021000000000001\"\n", "apps[0] (old-md5).app_id: not a alipay-legacy setting"},
		{"ErrAppCertOnLegacy", legacyConfig, "    sign_type: MD5\n", "    sign_type: MD5\n    app_cert_file: a.crt\n", "apps[0] (old-md5).app_cert_file: not a alipay-legacy setting"},
		{"ErrMchIDOnLegacy", legacyConfig, "    sign_type: MD5\n", "    sign_type: MD5\n    mchid: \"1900000001\"\n", "apps[0] (old-md5).mchid: not a alipay-legacy setting"},
		{"ErrAPIv3KeyOnLegacy", legacyConfig, "    sign_type: MD5\n", "    sign_type: MD5\n    apiv3_key_file: k\n", "apps[0] (old-md5).apiv3_key_file: not a alipay-legacy setting"},
		{"ErrAPIBaseOnLegacy", legacyConfig, "    sign_type: MD5\n", "    sign_type: MD5\n    api_base: \"https://api.mch.weixin.qq.com\"\n", "apps[0] (old-md5).api_base: not a alipay-legacy setting"},
		// Legacy-only keys are refused on alipay and wechatpay apps.
		{"ErrPartnerOnAlipay", validConfig, "    seller_id:", "    partner: \"2088101122136241\"\n    seller_id:", "apps[0] (shop).partner: not a alipay setting"},
		{"ErrSellerEmailOnAlipay", validConfig, "    seller_id:", "    seller_email: s@example.com\n    seller_id:", "apps[0] (shop).seller_email: not a alipay setting"},
		{"ErrMD5KeyOnAlipay", validConfig, "    seller_id:", "    md5_key_file: k\n    seller_id:", "apps[0] (shop).md5_key_file: not a alipay setting"},
		{"ErrCharsetOnAlipay", validConfig, "    seller_id:", "    input_charset: gbk\n    seller_id:", "apps[0] (shop).input_charset: not a alipay setting"},
		{"ErrWAPGatewayOnAlipay", validConfig, "    seller_id:", "    wap_gateway: \"http://wappaygw.alipay.com/service/rest.htm\"\n    seller_id:", "apps[0] (shop).wap_gateway: not a alipay setting"},
		{"ErrNotifyVerifyURLOnAlipay", validConfig, "    seller_id:", "    notify_verify_url: \"https://mapi.alipay.com/gateway.do?service=notify_verify\"\n    seller_id:", "apps[0] (shop).notify_verify_url: not a alipay setting"},
		{"ErrNotifyVerifyOnAlipay", validConfig, "    seller_id:", "    notify_verify: true\n    seller_id:", "apps[0] (shop).notify_verify: not a alipay setting"},
		{"ErrPartnerOnWechatpay", validConfig, `merchant_serial_no: "ABC"`, "merchant_serial_no: \"ABC\"\n    partner: \"2088101122136241\"", "apps[1] (wx).partner: not a wechatpay setting"},
		{"ErrMD5KeyOnWechatpay", validConfig, `merchant_serial_no: "ABC"`, "merchant_serial_no: \"ABC\"\n    md5_key_file: k", "apps[1] (wx).md5_key_file: not a wechatpay setting"},
		{"ErrNotifyVerifyOnWechatpay", validConfig, `merchant_serial_no: "ABC"`, "merchant_serial_no: \"ABC\"\n    notify_verify: false", "apps[1] (wx).notify_verify: not a wechatpay setting"},
		{"ErrCharsetOnWechatpay", validConfig, `merchant_serial_no: "ABC"`, "merchant_serial_no: \"ABC\"\n    input_charset: utf-8", "apps[1] (wx).input_charset: not a wechatpay setting"},
		// Unknown keys are rejected, also near-misses of the legacy ones.
		{"ErrUnknownMD5Key", legacyConfig, "md5_key_file:", "md5_key:", `unknown key "md5_key"`},
		{"ErrUnknownKeyPath", legacyConfig, "md5_key_file:", "key_path:", `unknown key "key_path"`},
		{"ErrUnknownTransport", legacyConfig, "    sign_type: MD5\n", "    sign_type: MD5\n    transport: https\n", `unknown key "transport"`},
		{"ErrUnknownSecID", legacyConfig, "sign_type: RSA\n", "sign_type: RSA\n    sec_id: \"0001\"\n", `unknown key "sec_id"`},
		{"ErrUnknownCharsetSpelling", legacyConfig, "input_charset: gbk", "_input_charset: gbk", `unknown key "_input_charset"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(tt.base, tt.from) {
				t.Fatalf("test setup: %q not in config", tt.from)
			}
			src := strings.Replace(tt.base, tt.from, tt.to, 1)
			_, err := ParseConfig([]byte(src), env(map[string]string{"TOKEN": "0123456789abcdef0123"}))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// legacyKeyDir copies the legacy vectors' TESTING KEYs into a fresh directory's keys/ and returns
// the directory.
func legacyKeyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(legacyTestdata, "keys")
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "keys", e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestConfig_BuildLegacyApps loads configs with the vectors' keys (relative paths, resolved against the
// config file's directory) and checks that the built apps verify the vectors: MD5 (the key file's
// surrounding whitespace trimmed) and RSA with the merchant key in PKCS#1 and PKCS#8, PEM and one
// line (the 0001 notification needs it to decrypt).
func TestConfig_BuildLegacyApps(t *testing.T) {
	// The vectors' keys are published: the apps' gateways are on loopback (closed ports, not
	// called here), or the keys are refused (published.go).
	const loopbackGateways = "    gateway: \"http://127.0.0.1:1/gateway.do\"\n    wap_gateway: \"http://127.0.0.1:1/rest.htm\"\n"
	dir := legacyKeyDir(t)
	md5Key := strings.TrimSpace(string(readLegacy(t, "keys/md5_key.txt")))
	if err := os.WriteFile(filepath.Join(dir, "keys", "md5_padded.txt"), []byte(" \t"+md5Key+"\r\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var atnAsked []string
	atn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atnAsked = append(atnAsked, r.URL.RawQuery)
		io.WriteString(w, "true")
	}))
	defer atn.Close()
	rsaApp := func(name, pub, priv string) string {
		return fmt.Sprintf("  - name: %s\n    provider: alipay-legacy\n    partner: \"%s\"\n    sign_type: RSA\n    alipay_public_key_file: keys/%s\n    merchant_private_key_file: keys/%s\n",
			name, legacyPartner, pub, priv) + loopbackGateways + "    notify_verify_url: \"http://127.0.0.1:1/gateway.do?service=notify_verify\"\n"
	}
	src := "public_url: \"https://pay.example.com\"\napi_token: \"0123456789abcdef0123\"\napps:\n" +
		"  - name: md5\n    provider: alipay-legacy\n    partner: \"" + legacyPartner + "\"\n    seller_email: seller@example.com\n    sign_type: MD5\n    md5_key_file: keys/md5_padded.txt\n" +
		"    notify_verify_url: \"" + atn.URL + "/gateway.do?service=notify_verify\"\n" + loopbackGateways +
		rsaApp("rsa-pkcs1-pem", "alipay_public.pem", "merchant_private_pkcs1.pem") +
		"    seller_id: \"2088101122136241\"\n    notify_verify: false\n" +
		rsaApp("rsa-pkcs8-pem", "alipay_public.pem", "merchant_private_pkcs8.pem") +
		rsaApp("rsa-pkcs8-oneline", "alipay_public.oneline", "merchant_private_pkcs8.oneline") +
		"    input_charset: gbk\n"
	path := filepath.Join(dir, "paynotify.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	apps, err := buildApps(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(apps) != 4 {
		t.Fatalf("%d apps", len(apps))
	}
	gateway := func(name string) *provider.AlipayLegacy {
		t.Helper()
		a := apps[name]
		if a == nil || a.Name != name || a.Provider != paynotify.ProviderAlipayLegacy {
			t.Fatalf("app %s = %+v", name, a)
		}
		g, ok := a.Gateway.(*provider.AlipayLegacy)
		if !ok || g.Client == nil || g.Client.Partner() != legacyPartner {
			t.Fatalf("app %s gateway = %#v", name, a.Gateway)
		}
		return g
	}
	verify := func(name, file string) {
		t.Helper()
		if _, err := gateway(name).Client.VerifyNotification(readLegacy(t, "cases/"+file)); err != nil {
			t.Fatalf("%s does not verify %s: %v", name, file, err)
		}
	}

	t.Run("MD5", func(t *testing.T) {
		g := gateway("md5")
		if g.Client.SignType() != alipaylegacy.SignMD5 || g.Client.Charset() != "utf-8" || !g.NotifyVerify || g.Seller != "seller@example.com" ||
			fmt.Sprint(apps["md5"].SellerIDs) != "[seller@example.com]" {
			t.Fatalf("md5 app: sign type %s, charset %s, notify_verify %v, seller %q %v", g.Client.SignType(), g.Client.Charset(), g.NotifyVerify, g.Seller, apps["md5"].SellerIDs)
		}
		verify("md5", "mapi_md5_valid.body")
		verify("md5", "wap_notify_md5_valid.body")
		if _, err := g.Client.VerifyNotification(readLegacy(t, "cases/mapi_md5_wrong_key.body")); err == nil {
			t.Fatal("the md5 app accepts a notification signed with another key")
		}
		// notify_verify_url is the configured one.
		if err := g.Client.NotifyVerify(context.Background(), "abc123"); err != nil || len(atnAsked) != 1 ||
			atnAsked[0] != "service=notify_verify&partner="+legacyPartner+"&notify_id=abc123" {
			t.Fatalf("notify_verify: %v, asked %q", err, atnAsked)
		}
	})
	t.Run("RSA", func(t *testing.T) {
		for _, name := range []string{"rsa-pkcs1-pem", "rsa-pkcs8-pem", "rsa-pkcs8-oneline"} {
			g := gateway(name)
			if g.Client.SignType() != alipaylegacy.SignRSA {
				t.Fatalf("%s: sign type %s", name, g.Client.SignType())
			}
			verify(name, "wap_notify_0001_valid.body") // decrypts with the merchant key
			if name == "rsa-pkcs8-oneline" {
				if g.Client.Charset() != "gbk" {
					t.Fatalf("charset %s", g.Client.Charset())
				}
				verify(name, "mapi_rsa_gbk.body")
			} else {
				verify(name, "mapi_rsa_valid.body")
			}
		}
		if g := gateway("rsa-pkcs1-pem"); g.NotifyVerify || g.Seller != "2088101122136241" {
			t.Fatalf("rsa-pkcs1-pem: notify_verify %v, seller %q", g.NotifyVerify, g.Seller)
		}
		if g := gateway("rsa-pkcs8-pem"); !g.NotifyVerify || g.Seller != legacyPartner {
			t.Fatalf("rsa-pkcs8-pem: notify_verify %v, seller %q (the partner when neither seller is set)", g.NotifyVerify, g.Seller)
		}
	})

	// Key errors name the app and the field, never the key.
	errTests := []struct {
		name, from, to, want string
	}{
		{"ErrMD5KeyFileMissing", "keys/md5_padded.txt", "keys/nope.txt", "apps[0] (md5).md5_key_file: open "},
		{"ErrMD5KeyShort", "keys/md5_padded.txt", "keys/alipay_public.oneline", "apps[0] (md5).md5_key_file: "},
		{"ErrPublicKeyIsPrivate", "alipay_public_key_file: keys/alipay_public.pem\n    merchant_private_key_file: keys/merchant_private_pkcs1.pem",
			"alipay_public_key_file: keys/merchant_private_pkcs1.pem\n    merchant_private_key_file: keys/merchant_private_pkcs1.pem", "apps[1] (rsa-pkcs1-pem).alipay_public_key_file: alipaylegacy: public key: this is a private key"},
		{"ErrPrivateKeyIsPublic", "merchant_private_key_file: keys/merchant_private_pkcs1.pem", "merchant_private_key_file: keys/merchant_public.pem",
			"apps[1] (rsa-pkcs1-pem).merchant_private_key_file: alipaylegacy: private key: this is a public key"},
		{"ErrPrivateKeyFileMissing", "merchant_private_key_file: keys/merchant_private_pkcs1.pem", "merchant_private_key_file: keys/nope.pem",
			"apps[1] (rsa-pkcs1-pem).merchant_private_key_file: open "},
		{"ErrOwnPublicKey", "alipay_public_key_file: keys/alipay_public.pem\n    merchant_private_key_file: keys/merchant_private_pkcs1.pem",
			"alipay_public_key_file: keys/merchant_public.pem\n    merchant_private_key_file: keys/merchant_private_pkcs1.pem", "apps[1] (rsa-pkcs1-pem)."}, // then the library's sentence, checked below
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(src, tt.from) {
				t.Fatalf("test setup: %q not in config", tt.from)
			}
			p := filepath.Join(dir, tt.name+".yaml")
			if err := os.WriteFile(p, []byte(strings.Replace(src, tt.from, tt.to, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(p)
			if err != nil {
				t.Fatal(err)
			}
			_, err = buildApps(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if tt.name == "ErrOwnPublicKey" && !strings.Contains(err.Error(), "merchant's own public key") {
				t.Fatalf("err = %v", err)
			}
			if strings.Contains(err.Error(), md5Key) || strings.Contains(err.Error(), "MII") {
				t.Fatalf("error leaks key material: %v", err)
			}
		})
	}
}

// TestConfig_Log: the log block's defaults, its refusals, and what the handlers write.
func TestConfig_Log(t *testing.T) {
	vars := env(map[string]string{"TOKEN": "0123456789abcdef0123"})
	parse := func(t *testing.T, block string) (*Config, error) {
		t.Helper()
		return ParseConfig([]byte(validConfig+block), vars)
	}
	t.Run("OKDefaults", func(t *testing.T) {
		c, err := parse(t, "")
		if err != nil || c.Log.Level != "info" || c.Log.Format != "text" {
			t.Fatalf("%+v %v", c.Log, err)
		}
		var b strings.Builder
		log := slog.New(c.Log.handler(&b))
		log.Debug("hidden")
		log.Info("shown", "k", "v")
		if got := b.String(); strings.Contains(got, "hidden") || !strings.Contains(got, "level=INFO msg=shown k=v") {
			t.Fatalf("text at info: %q", got)
		}
	})
	t.Run("OKJSONWarn", func(t *testing.T) {
		c, err := parse(t, "log:\n  level: warn\n  format: json\n")
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		log := slog.New(c.Log.handler(&b))
		log.Info("hidden")
		log.Warn("shown", "k", "v")
		var line map[string]any
		if err := json.Unmarshal([]byte(b.String()), &line); err != nil || line["msg"] != "shown" || line["level"] != "WARN" || line["k"] != "v" {
			t.Fatalf("json at warn: %q (%v)", b.String(), err)
		}
	})
	for _, tt := range []struct{ name, block, want string }{
		{"ErrLevel", "log:\n  level: verbose\n", `log.level: "verbose" is not debug, info, warn or error`},
		{"ErrFormat", "log:\n  format: xml\n", `log.format: "xml" is not text or json`},
		{"ErrUnknownKey", "log:\n  colour: true\n", "colour"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parse(t, tt.block); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestConfig_PublicURLScheme: public_url's scheme is kept in lower case, whatever its case in the
// file ("HTTPS://" is valid): serve tells https by the prefix, for the console's Secure cookie,
// which "HTTPS://…" left off (a reviewer helper's finding).
func TestConfig_PublicURLScheme(t *testing.T) {
	vars := env(map[string]string{"TOKEN": "0123456789abcdef0123"})
	c, err := ParseConfig([]byte(strings.Replace(validConfig, `public_url: "https://pay.example.com"`, `public_url: "HTTPS://Pay.Example.com/PN"`, 1)), vars)
	if err != nil {
		t.Fatal(err)
	}
	if c.PublicURL != "https://Pay.Example.com/PN" {
		t.Fatalf("public_url = %q, want the scheme in lower case and the rest as written", c.PublicURL)
	}
}

// TestConfig_UnknownKeys: an unknown key is named by its YAML block and line, never by a Go type,
// with the nearest known key when one is near.
func TestConfig_UnknownKeys(t *testing.T) {
	vars := env(map[string]string{"TOKEN": "0123456789abcdef0123"})
	for _, tt := range []struct{ name, src, want string }{
		{"TopLevel", validConfig + "webhook:\n  allow_http: true\n", `unknown key "webhook" (did you mean webhooks?)`},
		{"App", strings.Replace(validConfig, "    seller_id:", "    selller_id:", 1), `apps[…]: unknown key "selller_id" (did you mean seller_id?)`},
		{"Nested", validConfig + "webhooks:\n  concurency: 4\n", `webhooks: unknown key "concurency" (did you mean concurrency?)`},
		{"Reconcile", strings.Replace(validConfig, "    seller_id:", "    reconcile:\n      schedul: [1m]\n    seller_id:", 1), `apps[…].reconcile: unknown key "schedul" (did you mean schedule?)`},
		{"NothingNear", validConfig + "colour: blue\n", `unknown key "colour"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.src), vars)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "main.") || strings.Contains(err.Error(), "Config") {
				t.Fatalf("err = %v, want %q and no Go type", err, tt.want)
			}
			if tt.name == "NothingNear" && strings.Contains(err.Error(), "did you mean") {
				t.Fatalf("err = %v: nothing is near colour", err)
			}
		})
	}
}

// TestConfig_Retention: the retention block's defaults, its units, off, the old
// webhooks.retention, and its refusals by YAML path.
func TestConfig_Retention(t *testing.T) {
	vars := env(map[string]string{"TOKEN": "0123456789abcdef0123"})
	for _, tt := range []struct {
		name, block        string
		evidence, attempts time.Duration
	}{
		{"OKDefaults", "", 180 * day, 30 * day},
		{"OKDays", "retention:\n  evidence: 90d\n  webhook_attempts: 7d\n", 90 * day, 7 * day},
		{"OKGoDurations", "retention:\n  evidence: 2160h\n  webhook_attempts: 36h30m\n", 90 * day, 36*time.Hour + 30*time.Minute},
		{"OKOff", "retention:\n  evidence: off\n  webhook_attempts: 1d\n", 0, day},
		{"OKOneSet", "retention:\n  webhook_attempts: off\n", 180 * day, 0},
		{"OKEnv", "retention:\n  evidence: ${KEEP}\n", 365 * day, 30 * day},
		{"OKOldWebhooksRetention", "webhooks:\n  retention: 240h\n", 180 * day, 10 * day},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(validConfig+tt.block), env(map[string]string{"TOKEN": "0123456789abcdef0123", "KEEP": "365d"}))
			if err != nil {
				t.Fatal(err)
			}
			ev, wa, err := c.Retention.periods()
			if err != nil || ev != tt.evidence || wa != tt.attempts {
				t.Fatalf("periods = %s, %s, %v; want %s, %s", ev, wa, err, tt.evidence, tt.attempts)
			}
		})
	}
	t.Run("OKZeroValue", func(t *testing.T) {
		// A config built in code (the demo) gets the defaults.
		ev, wa, err := RetentionConfig{}.periods()
		if err != nil || ev != 180*day || wa != 30*day {
			t.Fatalf("periods = %s, %s, %v", ev, wa, err)
		}
		if rj, err := (RetentionConfig{}).rejectedPeriod(); err != nil || rj != 30*day {
			t.Fatalf("rejected_evidence = %s, %v; want the default 30d", rj, err)
		}
	})
	for _, tt := range []struct {
		block string
		want  time.Duration
	}{{"retention:\n  rejected_evidence: 7d\n", 7 * day}, {"retention:\n  rejected_evidence: off\n", 0},
		// A config that kept everything before the key existed keeps the rejected records too.
		{"retention:\n  evidence: off\n", 0},
		{"retention:\n  evidence: off\n  rejected_evidence: 10d\n", 10 * day}} {
		c, err := ParseConfig([]byte(validConfig+tt.block), env(map[string]string{"TOKEN": "0123456789abcdef0123"}))
		if err != nil {
			t.Fatal(err)
		}
		if rj, err := c.Retention.rejectedPeriod(); err != nil || rj != tt.want {
			t.Errorf("%q: rejected_evidence = %s, %v; want %s", tt.block, rj, err, tt.want)
		}
	}
	for _, tt := range []struct{ name, block, want string }{
		{"ErrNegativeDays", "retention:\n  evidence: -5d\n", `retention.evidence: "-5d" is negative`},
		{"ErrNegative", "retention:\n  webhook_attempts: -720h\n", `retention.webhook_attempts: "-720h" is negative`},
		{"ErrZero", "retention:\n  evidence: 0\n", `retention.evidence: "0" would delete everything: write off to keep everything`},
		{"ErrZeroDays", "retention:\n  webhook_attempts: 0d\n", `retention.webhook_attempts: "0d" would delete everything`},
		{"ErrShort", "retention:\n  evidence: 12h\n", `retention.evidence: "12h" is shorter than 1d`},
		{"ErrNoUnit", "retention:\n  evidence: 180\n", `retention.evidence: "180" is not a period: use days (180d), a Go duration (720h) or off`},
		{"ErrWord", "retention:\n  evidence: forever\n", `retention.evidence: "forever" is not a period`},
		{"ErrHuge", "retention:\n  evidence: 99999999999999999999d\n", `retention.evidence: "99999999999999999999d" is longer than 36500d`},
		{"ErrLong", "retention:\n  evidence: 36501d\n", `is longer than 36500d`},
		{"ErrBoth", "retention:\n  webhook_attempts: 30d\nwebhooks:\n  retention: 720h\n", "webhooks.retention: replaced by retention.webhook_attempts: set only that one"},
		{"ErrOldShort", "webhooks:\n  retention: 1h\n", "webhooks.retention: 1h0m0s is shorter than 24h"},
		{"ErrUnknownKey", "retention:\n  evidense: 90d\n", `retention: unknown key "evidense" (did you mean evidence?)`},
		{"ErrRejectedShort", "retention:\n  rejected_evidence: 1h\n", `retention.rejected_evidence: "1h" is shorter than 1d`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseConfig([]byte(validConfig+tt.block), vars); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestLibField: an error of a protocol package's Config is reported under the config key of the
// field it names (a reviewer helper's finding: every WeChat Pay error was labelled
// merchant_private_key_file, every Alipay cert mode error alipay_cert_file).
func TestLibField(t *testing.T) {
	for _, c := range []struct {
		err      string
		fields   map[string]string
		fallback string
		want     string
	}{
		{`wechatpay: config: PlatformPublicKeyID "0119000001" does not start with PUB_KEY_ID_`, wechatpayFields, "merchant_private_key_file", "platform_public_key_id"},
		{`wechatpay: config: PlatformCerts: certificate 2: PEM block "RSA PRIVATE KEY"`, wechatpayFields, "merchant_private_key_file", "platform_cert_files"},
		{"wechatpay: config: PlatformPublicKey and PlatformPublicKeyID go together", wechatpayFields, "merchant_private_key_file", "platform_public_key_file"},
		{"wechatpay: config: set MerchantPrivateKey or MerchantSigner, not both", wechatpayFields, "x", "merchant_private_key_file"},
		{"alipay: AppCert does not match the app private key", alipayFields, "alipay_cert_file", "app_cert_file"},
		{"alipay: AlipayRootCert: no CERTIFICATE block", alipayFields, "alipay_cert_file", "alipay_root_cert_file"},
		{"alipay: AlipayCert: not yet valid", alipayFields, "alipay_public_key_file", "alipay_cert_file"},
		{"alipaylegacy: Gateway: has a query", legacyFields, "md5_key_file", "gateway"},
		{"alipaylegacy: WAPGateway: has a query", legacyFields, "md5_key_file", "wap_gateway"},
		{"alipaylegacy: something else", legacyFields, "md5_key_file", "md5_key_file"},
	} {
		if got := libField(errors.New(c.err), c.fields, c.fallback); got != c.want {
			t.Errorf("%q: %s, want %s", c.err, got, c.want)
		}
	}
}
