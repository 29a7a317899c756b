package provider_test

import (
	"slices"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/provider"
)

// TestCallbackOutcomes: each provider's callbacks are shown with the reasons of its own
// verifier (legacy Alipay's notify_verify and its rejections; WeChat Pay's timestamp window and
// APIv2 endpoint), not another provider's; a late payment is accepted, not an anomaly.
func TestCallbackOutcomes(t *testing.T) {
	has := func(prov, verdict, reason string) bool {
		return slices.Contains(provider.CallbackOutcomes(prov), [2]string{verdict, reason})
	}
	for _, c := range []struct {
		prov, verdict, reason string
		want                  bool
	}{
		{paynotify.ProviderAlipay, "rejected", "signature_invalid", true},
		{paynotify.ProviderAlipay, "anomaly", "seller_mismatch", true},
		{paynotify.ProviderAlipay, "rejected", "timestamp_skew", false},
		{paynotify.ProviderWechatpay, "rejected", "timestamp_skew", true},
		{paynotify.ProviderWechatpay, "rejected", "endpoint_not_taken", true},
		{paynotify.ProviderWechatpay, "anomaly", "seller_mismatch", false},
		{paynotify.ProviderAlipayLegacy, "rejected", "notify_id_unconfirmed", true},
		{paynotify.ProviderAlipayLegacy, "rejected", "wrong_partner", true},
		{paynotify.ProviderAlipayLegacy, "error", "verify_unavailable", true},
		{paynotify.ProviderAlipay, "error", "verify_unavailable", false},
		{paynotify.ProviderAlipay, "accepted", "late_payment", true},
		// Pairs no callback produces are not shown (a reviewer helper's finding).
		{paynotify.ProviderWechatpay, "rejected", "mchid_mismatch", false},
		{paynotify.ProviderWechatpay, "rejected", "duplicate_key", false},
		{paynotify.ProviderWechatpay, "anomaly", "currency_mismatch", true},
		{paynotify.ProviderAlipay, "anomaly", "currency_mismatch", false},
		{paynotify.ProviderAlipayLegacy, "rejected", "req_id_mismatch", false},
		{paynotify.ProviderAlipay, "error", "client_gone", true},
		{paynotify.ProviderAlipay, "anomaly", "late_payment", false},
	} {
		if got := has(c.prov, c.verdict, c.reason); got != c.want {
			t.Errorf("%s %s/%s shown: %t, want %t", c.prov, c.verdict, c.reason, got, c.want)
		}
	}
}
