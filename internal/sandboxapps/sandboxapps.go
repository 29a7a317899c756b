// Package sandboxapps builds the apps of the sandbox's default Alipay app, WeChat Pay merchant and
// legacy Alipay partner (alipay-demo, wechatpay-demo and alipay-legacy-demo) as the demo mode runs
// them: used by the demo, the end-to-end tests and the load tools, so that all of them talk to the
// sandbox the same way.
package sandboxapps

import (
	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/alipaylegacy"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/sandbox"
	"github.com/paynotify/paynotify/wechatpay"
)

// The demo apps' names.
const (
	Alipay = "alipay-demo"
	Wechat = "wechatpay-demo"
	// Legacy is the legacy Alipay app (mapi and the old WAP pair, MD5) of the sandbox's default
	// legacy partner.
	Legacy = "alipay-legacy-demo"
)

// Apps returns alipay-demo and wechatpay-demo on the sandbox whose keys are k and whose handler is
// reachable at sandboxURL (its /sandbox/… routes); returnURL is where Alipay's page and wap pay
// send the buyer back. Both apps get the default reconciliation policy.
func Apps(k sandbox.Keys, sandboxURL, returnURL string) (map[string]*paynotify.App, error) {
	appKey, err := alipay.ParsePrivateKey([]byte(k.AlipayAppPrivateKey))
	if err != nil {
		return nil, err
	}
	alipayPub, err := alipay.ParsePublicKey([]byte(k.AlipayPublicKey))
	if err != nil {
		return nil, err
	}
	ac, err := alipay.NewClient(alipay.Config{AppID: k.AlipayAppID, PrivateKey: appKey, AlipayPublicKey: alipayPub,
		Gateway: sandboxURL + "/sandbox/alipay/gateway.do"})
	if err != nil {
		return nil, err
	}
	mchKey, err := wechatpay.ParsePrivateKey([]byte(k.WechatMerchantPrivateKey))
	if err != nil {
		return nil, err
	}
	platformPub, err := wechatpay.ParsePublicKey([]byte(k.WechatPlatformPublicKey))
	if err != nil {
		return nil, err
	}
	wc, err := wechatpay.NewClient(wechatpay.Config{MchID: k.WechatMchID, AppID: k.WechatAppID, MerchantPrivateKey: mchKey,
		MerchantSerialNo: k.WechatMerchantSerialNo, APIv3Key: []byte(k.WechatAPIv3Key), PlatformPublicKey: platformPub,
		PlatformPublicKeyID: k.WechatPlatformPublicKeyID, BaseURL: sandboxURL + "/sandbox/wechatpay"})
	if err != nil {
		return nil, err
	}
	lc, err := alipaylegacy.New(alipaylegacy.Config{Partner: k.LegacyPartner, SignType: alipaylegacy.SignMD5, MD5Key: k.LegacyMD5Key,
		SellerEmail: k.LegacySellerEmail, Gateway: sandboxURL + "/sandbox/alipay-legacy/gateway.do",
		WAPGateway: sandboxURL + "/sandbox/alipay-legacy/wap/rest.htm", NotifyVerifyURL: sandboxURL + "/sandbox/alipay-legacy/gateway.do?service=notify_verify"})
	if err != nil {
		return nil, err
	}
	return map[string]*paynotify.App{
		Legacy: {Name: Legacy, Provider: paynotify.ProviderAlipayLegacy, SellerIDs: []string{k.LegacySellerEmail},
			Gateway: &provider.AlipayLegacy{Client: lc, NotifyVerify: true, Seller: k.LegacySellerEmail}, ReturnURL: returnURL,
			Reconcile: paynotify.DefaultReconcile},
		Alipay: {Name: Alipay, Provider: paynotify.ProviderAlipay, AppID: k.AlipayAppID, SellerIDs: []string{k.AlipaySellerID},
			Gateway: &provider.Alipay{Client: ac}, ReturnURL: returnURL, Reconcile: paynotify.DefaultReconcile},
		Wechat: {Name: Wechat, Provider: paynotify.ProviderWechatpay, AppID: k.WechatAppID, MchID: k.WechatMchID,
			Gateway: &provider.Wechat{Client: wc}, Reconcile: paynotify.DefaultReconcile},
	}, nil
}
