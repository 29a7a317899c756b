package console

import (
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/provider"
)

// TestRemedy_EveryReason: every reason a provider callback can be refused or raised with has a
// remedy on its page, but a signature probe's (nothing to do).
func TestRemedy_EveryReason(t *testing.T) {
	for _, prov := range []string{paynotify.ProviderAlipay, paynotify.ProviderWechatpay, paynotify.ProviderAlipayLegacy} {
		for _, o := range provider.CallbackOutcomes(prov) {
			verdict, reason := o[0], o[1]
			if reason == "" || reason == paynotify.ReasonProbe || reason == paynotify.ReasonEndpointNotTaken || reason == paynotify.ReasonBodyUnreadable {
				continue // nothing to do, or counted without a record (no page)
			}
			ev := &paynotify.Evidence{Provider: prov, Verdict: paynotify.Verdict(verdict), Reason: reason}
			if remedy(ev, &paynotify.App{Provider: prov}) == "" {
				t.Errorf("%s %s/%s: no remedy", prov, verdict, reason)
			}
		}
	}
}
