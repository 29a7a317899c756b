package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/alipaylegacy"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/wechatpay"
)

// buildApps loads every app's keys once and builds its provider gateway. Errors name the app and
// the field, never key material.
func buildApps(cfg *Config) (map[string]*paynotify.App, error) {
	if err := refusePublishedToken(cfg); err != nil {
		return nil, err
	}
	apps := make(map[string]*paynotify.App, len(cfg.Apps))
	for i := range cfg.Apps {
		ac := &cfg.Apps[i]
		a, err := buildApp(ac, publishedGuard{on: ac.realGateway()})
		if err != nil {
			return nil, fmt.Errorf("apps[%d] (%s).%w", i, ac.Name, err)
		}
		a.Reconcile = ac.Reconcile.policy()
		apps[ac.Name] = a
	}
	return apps, nil
}

// buildApp loads one app's keys, refusing the published ones as g says, and builds its gateway.
func buildApp(ac *AppConfig, g publishedGuard) (*paynotify.App, error) {
	switch ac.Provider {
	case paynotify.ProviderAlipay:
		return buildAlipayApp(ac, g)
	case paynotify.ProviderWechatpay:
		return buildWechatApp(ac, g)
	case paynotify.ProviderAlipayLegacy:
		return buildLegacyApp(ac, g)
	}
	return nil, fmt.Errorf("provider: %q is not known", ac.Provider) // the config's validation refuses it first
}

// readKeyFile reads a key file, naming the config field in errors.
func readKeyFile(field, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return b, nil
}

func buildAlipayApp(ac *AppConfig, g publishedGuard) (*paynotify.App, error) {
	b, err := readKeyFile("app_private_key_file", ac.AppPrivateKeyFile)
	if err != nil {
		return nil, err
	}
	priv, err := alipay.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("app_private_key_file: %w", err)
	}
	if err := g.key("app_private_key_file", &priv.PublicKey); err != nil {
		return nil, err
	}
	cfg := alipay.Config{AppID: ac.AppID, PrivateKey: priv, SignType: alipay.SignType(ac.SignType), Gateway: ac.Gateway}
	if ac.AlipayPublicKeyFile != "" {
		b, err := readKeyFile("alipay_public_key_file", ac.AlipayPublicKeyFile)
		if err != nil {
			return nil, err
		}
		if cfg.AlipayPublicKey, err = alipay.ParsePublicKey(b); err != nil {
			return nil, fmt.Errorf("alipay_public_key_file: %w", err)
		}
		if err := g.key("alipay_public_key_file", cfg.AlipayPublicKey); err != nil {
			return nil, err
		}
	} else {
		for _, f := range []struct {
			field, path string
			dst         *[]byte
		}{{"app_cert_file", ac.AppCertFile, &cfg.AppCert}, {"alipay_cert_file", ac.AlipayCertFile, &cfg.AlipayCert},
			{"alipay_root_cert_file", ac.AlipayRootCertFile, &cfg.AlipayRootCert}} {
			if *f.dst, err = readKeyFile(f.field, f.path); err != nil {
				return nil, err
			}
			if err := g.certs(f.field, *f.dst); err != nil {
				return nil, err
			}
		}
	}
	gw := &provider.Alipay{}
	cfg.OnCertDownload = gw.OnCertDownload
	client, err := alipay.NewClient(cfg)
	gw.Client = client
	if err != nil {
		field := "alipay_public_key_file"
		if ac.AlipayPublicKeyFile == "" {
			field = "alipay_cert_file"
		}
		return nil, fmt.Errorf("%s: %w", libField(err, alipayFields, field), err)
	}
	return &paynotify.App{Name: ac.Name, Provider: paynotify.ProviderAlipay, AppID: ac.AppID, SellerIDs: ac.Sellers(),
		Gateway: gw, ReturnURL: ac.ReturnURL}, nil
}

// readSecretFile reads a key file holding a short secret (APIv3 or APIv2 key), without the
// trailing newline an editor adds.
func readSecretFile(field, path string) ([]byte, error) {
	b, err := readKeyFile(field, path)
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(b, " \t\r\n"), nil
}

func buildWechatApp(ac *AppConfig, g publishedGuard) (*paynotify.App, error) {
	b, err := readKeyFile("merchant_private_key_file", ac.MerchantPrivateKeyFile)
	if err != nil {
		return nil, err
	}
	cfg := wechatpay.Config{MchID: ac.MchID, AppID: ac.WechatAppID, MerchantSerialNo: ac.MerchantSerialNo, BaseURL: ac.APIBase,
		PlatformPublicKeyID: ac.PlatformPublicKeyID}
	if cfg.MerchantPrivateKey, err = wechatpay.ParsePrivateKey(b); err != nil {
		return nil, fmt.Errorf("merchant_private_key_file: %w", err)
	}
	if err := g.key("merchant_private_key_file", &cfg.MerchantPrivateKey.PublicKey); err != nil {
		return nil, err
	}
	if cfg.APIv3Key, err = readSecretFile("apiv3_key_file", ac.APIv3KeyFile); err != nil {
		return nil, err
	}
	if err := g.secret("apiv3_key_file", cfg.APIv3Key); err != nil {
		return nil, err
	}
	if len(cfg.APIv3Key) != 32 {
		return nil, fmt.Errorf("apiv3_key_file: the APIv3 key must be 32 bytes, the file holds %d", len(cfg.APIv3Key))
	}
	if ac.PlatformPublicKeyFile != "" {
		b, err := readKeyFile("platform_public_key_file", ac.PlatformPublicKeyFile)
		if err != nil {
			return nil, err
		}
		if cfg.PlatformPublicKey, err = wechatpay.ParsePublicKey(b); err != nil {
			return nil, fmt.Errorf("platform_public_key_file: %w", err)
		}
		if err := g.key("platform_public_key_file", cfg.PlatformPublicKey); err != nil {
			return nil, err
		}
	}
	for i, p := range ac.PlatformCertFiles {
		field := fmt.Sprintf("platform_cert_files[%d]", i)
		b, err := readKeyFile(field, p)
		if err != nil {
			return nil, err
		}
		if _, err := wechatpay.ParseCertificate(b); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		if err := g.certs(field, b); err != nil {
			return nil, err
		}
		cfg.PlatformCerts = append(append(cfg.PlatformCerts, b...), '\n')
	}
	client, err := wechatpay.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", libField(err, wechatpayFields, "merchant_private_key_file"), err)
	}
	gw := &provider.Wechat{Client: client}
	if ac.APIv2KeyFile != "" {
		key, err := readSecretFile("apiv2_key_file", ac.APIv2KeyFile)
		if err != nil {
			return nil, err
		}
		if len(key) != 32 {
			return nil, fmt.Errorf("apiv2_key_file: the APIv2 key must be 32 characters, the file holds %d", len(key))
		}
		if err := g.secret("apiv2_key_file", key); err != nil {
			return nil, err
		}
		gw.V2 = &provider.WechatV2{APIKey: key, Refunds: client}
	}
	return &paynotify.App{Name: ac.Name, Provider: paynotify.ProviderWechatpay, AppID: ac.WechatAppID, MchID: ac.MchID, Gateway: gw}, nil
}

// buildLegacyApp builds a legacy Alipay app (mapi gateway and the old WAP pair).
func buildLegacyApp(ac *AppConfig, g publishedGuard) (*paynotify.App, error) {
	cfg := alipaylegacy.Config{Partner: ac.Partner, SellerID: ac.SellerID, SellerEmail: ac.SellerEmail,
		SignType: alipaylegacy.SignType(strings.ToUpper(ac.SignType)), InputCharset: ac.InputCharset, Gateway: ac.Gateway,
		WAPGateway: ac.WAPGateway, NotifyVerifyURL: ac.NotifyVerifyURL}
	// The partner and seller formats are checked by the config: what New refuses is a key.
	field := "alipay_public_key_file"
	if ac.MD5KeyFile != "" {
		key, err := readSecretFile("md5_key_file", ac.MD5KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.MD5Key, field = string(bytes.TrimSpace(key)), "md5_key_file"
		if err := g.secret("md5_key_file", key); err != nil {
			return nil, err
		}
	} else {
		b, err := readKeyFile("alipay_public_key_file", ac.AlipayPublicKeyFile)
		if err != nil {
			return nil, err
		}
		if cfg.AlipayPublicKey, err = alipaylegacy.ParsePublicKey(b); err != nil {
			return nil, fmt.Errorf("alipay_public_key_file: %w", err)
		}
		if err := g.key("alipay_public_key_file", cfg.AlipayPublicKey); err != nil {
			return nil, err
		}
		if b, err = readKeyFile("merchant_private_key_file", ac.MerchantPrivateKeyFile); err != nil {
			return nil, err
		}
		if cfg.MerchantPrivateKey, err = alipaylegacy.ParsePrivateKey(b); err != nil {
			return nil, fmt.Errorf("merchant_private_key_file: %w", err)
		}
		if err := g.key("merchant_private_key_file", &cfg.MerchantPrivateKey.PublicKey); err != nil {
			return nil, err
		}
	}
	client, err := alipaylegacy.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", libField(err, legacyFields, field), err)
	}
	seller := ac.SellerID
	if seller == "" {
		seller = ac.SellerEmail
	}
	if seller == "" {
		seller = ac.Partner
	}
	return &paynotify.App{Name: ac.Name, Provider: paynotify.ProviderAlipayLegacy, SellerIDs: []string{seller}, ReturnURL: ac.ReturnURL,
		Gateway: &provider.AlipayLegacy{Client: client, NotifyVerify: ac.NotifyVerify == nil || *ac.NotifyVerify, Seller: seller}}, nil
}

// The config keys of the protocol packages' Config fields, for libField.
var (
	// SignType is left out: the config checks sign_type, and the packages' messages that name it
	// are about the key it needs ("SignType MD5 needs MD5Key").
	alipayFields = map[string]string{"AppID": "app_id", "PrivateKey": "app_private_key_file", "Gateway": "gateway", "AlipayPublicKey": "alipay_public_key_file", "AppCert": "app_cert_file",
		"AlipayCert": "alipay_cert_file", "AlipayRootCert": "alipay_root_cert_file"}
	wechatpayFields = map[string]string{"MchID": "mchid", "AppID": "appid", "MerchantSerialNo": "merchant_serial_no",
		"MerchantPrivateKey": "merchant_private_key_file", "APIv3Key": "apiv3_key_file", "BaseURL": "api_base",
		"PlatformPublicKey": "platform_public_key_file", "PlatformPublicKeyID": "platform_public_key_id",
		"PlatformCerts": "platform_cert_files"}
	legacyFields = map[string]string{"Partner": "partner", "SellerID": "seller_id", "SellerEmail": "seller_email",
		"InputCharset": "input_charset", "Gateway": "gateway", "WAPGateway": "wap_gateway",
		"NotifyVerifyURL": "notify_verify_url", "MD5Key": "md5_key_file", "AlipayPublicKey": "alipay_public_key_file",
		"MerchantPrivateKey": "merchant_private_key_file"}
)

// libField names the config key that a protocol package's Config error is about: the packages
// name the Config field at fault ("AppCert does not match the app private key", "PlatformPublicKeyID
// … does not start with PUB_KEY_ID_"), and the first field named in err's text, as a whole word,
// is the key reported; fallback when it names none. An error labelled with the wrong key sends
// the operator to replace the wrong file.
func libField(err error, fields map[string]string, fallback string) string {
	msg, at, key := err.Error(), -1, fallback
	for name, k := range fields {
		for i := 0; i+len(name) <= len(msg); {
			j := strings.Index(msg[i:], name)
			if j < 0 {
				break
			}
			j += i
			end := j + len(name)
			if (j == 0 || !isWordByte(msg[j-1])) && (end == len(msg) || !isWordByte(msg[end])) {
				if at < 0 || j < at {
					at, key = j, k
				}
				break
			}
			i = j + 1
		}
	}
	return key
}

func isWordByte(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}
