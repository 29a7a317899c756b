package console

import "github.com/paynotify/paynotify"

// remedy says, for a record's reason, what the operator does about it: the console said "fix the
// cause, then reprocess" for every reason, which for most of them fixes nothing (a reviewer
// helper's audit of what an operator can diagnose: an amount mismatch reprocessed is the same
// anomaly; an unknown order cannot be imported; a timestamp_skew cannot be reprocessed). ""
// when there is nothing to do.
func remedy(ev *paynotify.Evidence, a *paynotify.App) string {
	provider := ev.Provider
	if a != nil {
		provider = a.Provider
	}
	switch ev.Reason {
	case "signature_invalid":
		key := "the provider's public key"
		switch provider {
		case paynotify.ProviderAlipay:
			key = "alipay_public_key_file: Alipay's public key (支付宝公钥) of this app_id, not the app's own (or alipay_cert_file in certificate mode)"
		case paynotify.ProviderWechatpay:
			key = "the WeChat Pay platform public key (platform_public_key_file) or certificates of this mchid"
		case paynotify.ProviderAlipayLegacy:
			key = "the merchant's MD5 key or Alipay's RSA public key of this partner"
		}
		return "If every notification of the app fails so, the config holds the wrong key: set " + key +
			"; paynotify doctor checks it. Then reprocess them (paynotify reprocess --reason signature_invalid --since …); the reconciliation also finds the payments. " +
			"A single one among good ones is a forgery, or a body changed on the way (a proxy re-encoding it): nothing to apply."
	case "decrypt_failed":
		if provider == paynotify.ProviderWechatpay {
			return "The signature held, but the resource does not decrypt with apiv3_key_file: set the APIv3 key of this mchid (商户平台 → 账户中心 → API安全), " +
				"then paynotify reprocess --reason decrypt_failed; the reconciliation also finds the payments."
		}
		return "The notification does not decrypt with the configured key: check the key, then reprocess."
	case "unknown_serial":
		return "The message names a key paynotify does not have: for WeChat Pay add the platform public key (PUB_KEY_ID_…) or, for a 40-hex serial, " +
			"its platform certificate (serve also downloads new certificates itself); for Alipay certificate mode, the new Alipay certificate. " +
			"paynotify doctor lists what is configured. Then reprocess."
	case "timestamp_skew":
		return "Its timestamp was over 5 minutes from this server's clock when it arrived: fix the clock (NTP). It cannot be reprocessed " +
			"(the window is checked against its arrival); the provider's retries and the reconciliation find the payment."
	case "probe":
		return ""
	case "malformed", "duplicate_key", "missing_field", "bad_charset", "bad_amount", "unsigned", "unsupported_sign_type":
		return "Not a notification this endpoint takes as it arrived: junk, or a body cut or re-encoded on the way — check that the proxy passes " +
			"bodies unchanged (docs/deploy.md). A provider's retries of a real one arrive the same way until that is fixed; the reconciliation finds the payments."
	case "wrong_partner", paynotify.ReasonAppIDMismatch:
		return "Verified, but for another app (app_id, mchid or partner) than this one: one app's notify URL is set on another, or two apps share it. " +
			"Set the provider app's notify URL to its own paynotify app; this one cannot be reprocessed into this app."
	case paynotify.ReasonSellerMismatch:
		return "Verified, but its seller is not among the app's seller_ids: if the seller is yours, add it to seller_ids and reprocess; otherwise another merchant's payment was sent here."
	case paynotify.ReasonUnknownOrder:
		return "Verified, but paynotify has no order of this number: an order created outside paynotify, a database restored from a backup older than the order, " +
			"or another app's notify URL. paynotify cannot apply a payment to an order it does not have (recreating it through the API fails: the provider says it is paid): " +
			"ship or refund it from the provider's portal and your own records."
	case paynotify.ReasonAmountMismatch, paynotify.ReasonCurrencyMismatch:
		return "Verified, but the provider states another amount or currency than the order's (or a refund other than the one recorded): the money is not the order's price. " +
			"Do not ship; refund the trade in the provider's portal, or settle it with the buyer. Reprocessing gives the same anomaly."
	case paynotify.ReasonLatePayment:
		return "The money arrived after the order was closed, and the order is paid now: ship, or refund."
	case paynotify.ReasonUnexpectedClose:
		return "The provider reports the trade closed though the order is paid here: look at the trade in the provider's portal (a reversal, a full refund)."
	case paynotify.ReasonDuplicatePayment:
		return "Money arrived twice, under another trade number: refund that other trade in the provider's portal; the order keeps its first payment."
	case paynotify.ReasonDuplicatePaymentRefund:
		return "A refund of a duplicate payment: nothing to do, unless it is a refund of yours that stays pending (settle it with the portal in view)."
	case paynotify.ReasonRefundAbnormal:
		return "WeChat Pay could not pay the refund into the buyer's account: settle it in 商户平台 → 交易中心 → 退款管理 (to the buyer's balance, or back to you). " +
			"Do not refund again under a new number; its settlement is seen when it comes."
	case paynotify.ReasonOutTradeNoMismatch:
		return "A signed answer about another order than the one asked for (a provider fault, or an answer replayed): nothing was applied; the order is asked again later."
	case paynotify.ReasonStoreError:
		return "paynotify's database failed (the log and /readyz say why): nothing was committed, and the provider retries."
	case paynotify.ReasonClientGone:
		return "The provider hung up before the change was committed (the store was slow, or locked by another process): nothing was committed, and the provider retries. If frequent, look at the store's health (/readyz, the log)."
	case "notify_id_unconfirmed":
		return "The signature held, but Alipay's notify_verify did not confirm the notify_id: a forgery with a leaked MD5 key (change the key in Alipay's merchant portal), or an old notification replayed. Nothing was applied."
	case paynotify.ReasonVerifyUnavailable:
		return "notify_verify could not be asked (a timeout, a network error): nothing was applied; Alipay retries."
	}
	return ""
}
