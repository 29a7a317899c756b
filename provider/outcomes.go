package provider

import (
	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/alipaylegacy"
	"github.com/paynotify/paynotify/wechatpay"
)

// CallbackOutcomes are the verdicts and reasons a provider callback to an app of prov can end
// with: its verifier's rejections, the Processor's anomalies and failures, and the server's
// (httpd) for callbacks it never hands over. metrics.Prometheus.Apps shows each at 0 from the
// start (docs/operations.md, "Metrics").
func CallbackOutcomes(prov string) [][2]string {
	out := [][2]string{{string(paynotify.VerdictAccepted), ""}, {string(paynotify.VerdictDuplicate), ""},
		// A payment after the order closed is applied, and raised: accepted, with its reason.
		{string(paynotify.VerdictAccepted), paynotify.ReasonLatePayment},
		{string(paynotify.VerdictError), paynotify.ReasonStoreError}, {string(paynotify.VerdictError), paynotify.ReasonClientGone}}
	rejected := []string{paynotify.ReasonSignatureInvalid, paynotify.ReasonMalformed, paynotify.ReasonBodyUnreadable}
	anomalies := []string{paynotify.ReasonUnknownOrder, paynotify.ReasonAmountMismatch,
		paynotify.ReasonUnexpectedClose, paynotify.ReasonDuplicatePayment, paynotify.ReasonDuplicatePaymentRefund}
	switch prov {
	case paynotify.ProviderAlipay:
		rejected = append(rejected, alipay.ReasonDuplicateKey, alipay.ReasonUnknownSerial)
		anomalies = append(anomalies, paynotify.ReasonAppIDMismatch, paynotify.ReasonSellerMismatch)
	case paynotify.ProviderWechatpay:
		// A notification of another mchid is the app_id_mismatch anomaly (the verifier hands it
		// on), and a duplicate element is malformed: no mchid_mismatch nor duplicate_key here.
		rejected = append(rejected, wechatpay.ReasonTimestampSkew, wechatpay.ReasonProbe, wechatpay.ReasonUnknownSerial,
			wechatpay.ReasonDecryptFailed, paynotify.ReasonEndpointNotTaken, ReasonRefundUnconfirmed)
		// An APIv2 refund notification is confirmed by the refund query before it counts.
		out = append(out, [2]string{string(paynotify.VerdictError), paynotify.ReasonVerifyUnavailable})
		// Only WeChat Pay's facts carry a currency, and only its refunds end ABNORMAL.
		anomalies = append(anomalies, paynotify.ReasonAppIDMismatch, paynotify.ReasonCurrencyMismatch, paynotify.ReasonRefundAbnormal)
	case paynotify.ProviderAlipayLegacy:
		// req_id_mismatch is the WAP token call's, never a notification's.
		rejected = append(rejected, alipaylegacy.ReasonDuplicateKey, alipaylegacy.ReasonUnsigned, alipaylegacy.ReasonUnsupportedSignType,
			alipaylegacy.ReasonDecryptFailed, alipaylegacy.ReasonMissingField, alipaylegacy.ReasonBadCharset,
			alipaylegacy.ReasonBadAmount, alipaylegacy.ReasonWrongPartner, ReasonNotifyIDUnconfirmed)
		anomalies = append(anomalies, paynotify.ReasonSellerMismatch)
		out = append(out, [2]string{string(paynotify.VerdictError), paynotify.ReasonVerifyUnavailable})
	}
	for _, r := range rejected {
		out = append(out, [2]string{string(paynotify.VerdictRejected), r})
	}
	for _, r := range anomalies {
		out = append(out, [2]string{string(paynotify.VerdictAnomaly), r})
	}
	return out
}
