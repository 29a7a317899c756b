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
	reprocess := func(reason string) string {
		return "paynotify reprocess --config FILE --app " + ev.App + " --reason " + reason + " --since 24h"
	}
	switch ev.Reason {
	case paynotify.ReasonSignatureInvalid:
		key := "the provider's public key"
		switch {
		case ev.Endpoint == "wechatpay-v2":
			key = "apiv2_key_file: the APIv2 key of this mchid (商户平台 → API安全)"
		case provider == paynotify.ProviderAlipay:
			key = "alipay_public_key_file: Alipay's public key (支付宝公钥) of this app_id, not the app's own (or alipay_cert_file in certificate mode)"
		case provider == paynotify.ProviderWechatpay:
			key = "the WeChat Pay platform public key (platform_public_key_file) or certificates of this mchid"
		case provider == paynotify.ProviderAlipayLegacy:
			key = "the merchant's MD5 key or Alipay's RSA public key of this partner"
		}
		return "If every notification of the app fails so, the config holds the wrong key: set " + key +
			"; paynotify doctor checks it. Then " + reprocess(paynotify.ReasonSignatureInvalid) + "; the reconciliation also finds the payments. " +
			"A single one among good ones is a forgery, or a body changed on the way (a proxy re-encoding it): nothing to apply."
	case paynotify.ReasonDecryptFailed:
		switch {
		case ev.Endpoint == "wechatpay":
			return "The signature held, but the resource does not decrypt with apiv3_key_file: if every notification fails so, set the APIv3 key of this mchid " +
				"(商户平台 → 账户中心 → API安全; paynotify doctor checks it), then " + reprocess(paynotify.ReasonDecryptFailed) + "; the reconciliation also finds the payments."
		case ev.Endpoint == "wechatpay-v2":
			return "The APIv2 refund notification's req_info (it carries no signature) does not decrypt with apiv2_key_file: if every one fails so, set the APIv2 key " +
				"of this mchid, then " + reprocess(paynotify.ReasonDecryptFailed) + "; a single one is junk anyone can post."
		}
		return "The notification does not decrypt with the configured key: if every one fails so, check the key, then reprocess them; a single one is junk."
	case paynotify.ReasonUnknownSerial:
		return "The message names a key paynotify does not have: for WeChat Pay add the platform public key (PUB_KEY_ID_…) or, for a 40-hex serial, " +
			"its platform certificate (serve also downloads new certificates itself); for Alipay certificate mode, the new Alipay certificate. " +
			"paynotify doctor lists what is configured. Then " + reprocess(paynotify.ReasonUnknownSerial) + "."
	case paynotify.ReasonTimestampSkew:
		return "Its timestamp was over 5 minutes from this server's clock when it arrived. If every notification fails so, the clock is off: fix it (NTP); " +
			"a single one is a replay or a late delivery. It cannot be reprocessed (the window is checked against its arrival); the provider's retries " +
			"and the reconciliation find the payment."
	case paynotify.ReasonProbe:
		return ""
	case paynotify.ReasonMalformed, paynotify.ReasonDuplicateKey, "missing_field", "bad_charset", "bad_amount", "unsigned", "unsupported_sign_type":
		return "Not a notification this endpoint takes as it arrived: junk, or a body cut or re-encoded on the way — check that the proxy passes " +
			"bodies unchanged (docs/deploy.md). A provider's retries of a real one arrive the same way until that is fixed; the reconciliation finds the payments."
	case "wrong_partner", paynotify.ReasonAppIDMismatch:
		return "Verified, but for another app (app_id, mchid or partner) than this one: one app's notify URL is set on another, or two apps share it. " +
			"Set the provider app's notify URL to its own paynotify app; this one cannot be reprocessed into this app."
	case paynotify.ReasonSellerMismatch:
		return "Verified, but its seller is not among the app's seller_ids: if the seller is yours, add it to seller_ids and reprocess; otherwise another merchant's payment was sent here."
	case paynotify.ReasonUnknownOrder:
		return "Verified, but paynotify has no order of this number. Look at the trade in the provider's portal first. If it is another system's order " +
			"(another app's notify URL pointing here), fix that URL and do not refund it. If paynotify lost it (a database restored from an older backup), " +
			"create it again with the same number and amount and reprocess: an order whose payment paynotify signs itself (Alipay app, page and wap, legacy Alipay) " +
			"can be created again; one the provider prepares (Alipay precreate, WeChat Pay) the provider refuses as paid — settle that one from the portal and your own records."
	case paynotify.ReasonAmountMismatch, paynotify.ReasonCurrencyMismatch:
		return "Verified, but what the provider states disagrees with the order: its total, its currency, or a refund's amount beside the one recorded (the record's detail says which). " +
			"Look at the trade in the provider's portal before acting: if it was paid another amount, do not ship, and refund it there or settle with the buyer; " +
			"if it is closed, or the message is about a refund, do not refund again. Reprocessing gives the same anomaly."
	case paynotify.ReasonRefundedAtProvider:
		return "WeChat Pay says this order was paid, then refunded (trade_state REFUND), and paynotify knows of no refund of it: one was made in 商户平台 (its notification went elsewhere). " +
			"Do not ship before looking at the trade there: a full refund means nothing is owed; record the refund here with its own number once you have it."
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
		return "paynotify's database failed (the record's detail and the log say why): nothing was committed, and the provider retries."
	case paynotify.ReasonClientGone:
		return "The provider hung up before the change was committed (the store was slow, or locked by another process): nothing was committed, and the provider retries. If frequent, look at the store's health (/readyz, the log)."
	case "notify_id_unconfirmed":
		return "The signature held, but Alipay's notify_verify did not confirm the notify_id (Alipay confirms one only until paynotify has answered it success). " +
			"If the order already holds this payment (the same trade number), it is a delivery of a notification already applied, again: nothing to do. " +
			"Otherwise a forgery with a leaked MD5 key (change the key in Alipay's merchant portal), or an old notification replayed. Nothing was applied."
	case paynotify.ReasonVerifyUnavailable:
		if ev.Endpoint == "wechatpay-v2" {
			return "WeChat Pay's refund query, which confirms an APIv2 refund notification (it is encrypted, not signed), did not answer, or says the refund " +
				"is not settled yet (the record's detail says which): nothing was applied; WeChat Pay sends it again, and the reconciliation asks about paynotify's own refunds."
		}
		return "notify_verify could not be asked (a timeout, a network error): nothing was applied; Alipay retries."
	case "refund_unconfirmed":
		return "The APIv2 refund notification decrypted with the APIv2 key, but WeChat Pay's signed refund query has no refund of that number: " +
			"its req_info (encrypted, not signed) was altered or forged, from a genuine notification of this merchant (a captured body: check who can read them) " +
			"or with the APIv2 key (change it in 商户平台 → API安全). Nothing was applied."
	}
	return ""
}
