package console

import (
	"strings"
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

// TestExplain_StepAfterTheSignature: a WeChat Pay notification whose resource does not decrypt
// (a wrong APIv3 key) verified its signature; a store failure happened after a verified
// signature. Each shows its own failing row, the signature passing: a wrong APIv3 key read as a
// signature failure, and a store's error was appended to "Verified" (a reviewer helper's finding).
func TestExplain_StepAfterTheSignature(t *testing.T) {
	for _, tc := range []struct {
		ev       paynotify.Evidence
		row, has string
	}{
		{paynotify.Evidence{Endpoint: "wechatpay", Verdict: paynotify.VerdictRejected, Reason: paynotify.ReasonDecryptFailed, Detail: "authentication failed"},
			"decrypt", "does not decrypt with the app's APIv3 key"},
		{paynotify.Evidence{Endpoint: "alipay", Verdict: paynotify.VerdictError, Reason: paynotify.ReasonClientGone, Detail: "commit: context canceled"},
			"commit", "Not committed (client_gone): commit: context canceled"},
		{paynotify.Evidence{Endpoint: "alipay-legacy", Verdict: paynotify.VerdictRejected, Reason: "notify_id_unconfirmed", Detail: `notify_verify answered "false"`},
			"notify_verify", `notify_verify answered "false"`},
		{paynotify.Evidence{Endpoint: "wechatpay-v2", Verdict: paynotify.VerdictRejected, Reason: "refund_unconfirmed", Detail: "no such refund",
			Body: []byte("<xml><return_code>SUCCESS</return_code><req_info>abc=</req_info></xml>")},
			"refund query", "no such refund"},
		{paynotify.Evidence{Endpoint: "wechatpay-v2", Verdict: paynotify.VerdictError, Reason: paynotify.ReasonVerifyUnavailable, Detail: "PROCESSING",
			Body: []byte("<xml><return_code>SUCCESS</return_code><req_info>abc=</req_info></xml>")},
			"refund query", "Could not confirm it now: PROCESSING"},
	} {
		v := explain(&tc.ev, nil, nil)
		if len(v.Checks) < 2 || v.Checks[0].Name != "signature" || v.Checks[0].Outcome != "pass" {
			t.Fatalf("%s: checks %+v, want the signature passing first", tc.ev.Reason, v.Checks)
		}
		if c := v.Checks[1]; c.Name != tc.row || c.Outcome != "fail" || !strings.Contains(c.Text, tc.has) {
			t.Errorf("%s: second row %+v, want %s failing with %q", tc.ev.Reason, c, tc.row, tc.has)
		}
	}
}

// TestExplain_AnomalyDetail: what disagreed (the record's detail, for a WeChat Pay resource the
// only place it is readable) is on the status row, not appended to the signature's.
func TestExplain_AnomalyDetail(t *testing.T) {
	ev := &paynotify.Evidence{Endpoint: "wechatpay", Verdict: paynotify.VerdictAnomaly, Reason: paynotify.ReasonAmountMismatch,
		Detail: "the message states a total of 10.01, the order's is 10.00"}
	v := explain(ev, nil, nil)
	if v.Checks[0].Text != "Verified." {
		t.Errorf("signature row %q, want just Verified.", v.Checks[0].Text)
	}
	if last := v.Checks[len(v.Checks)-1]; last.Name != "status" || !strings.Contains(last.Text, "(the message states a total of 10.01, the order's is 10.00)") {
		t.Errorf("status row %+v, want what disagreed", last)
	}
}

// TestExplain_V2Refund (a reviewer's finding): an APIv2 refund notification has no signature: its
// page does not say "Verified.", but what was applied (the refund query's answer), and does not
// show the unsigned envelope's appid as checked.
func TestExplain_V2Refund(t *testing.T) {
	ev := &paynotify.Evidence{Endpoint: "wechatpay-v2", Provider: paynotify.ProviderWechatpay, Verdict: paynotify.VerdictAccepted,
		Body: []byte("<xml><return_code>SUCCESS</return_code><appid>wx0</appid><mch_id>1</mch_id><req_info>abc=</req_info></xml>")}
	v := explain(ev, &paynotify.App{Provider: paynotify.ProviderWechatpay, AppID: "wx1", MchID: "2"}, nil)
	if c := v.Checks[0]; c.Name != "signature" || strings.Contains(c.Text, "Verified") || !strings.Contains(c.Text, "refund query") {
		t.Errorf("signature row %+v", c)
	}
	if c := v.Checks[1]; c.Name != "app id" || c.Outcome != "skip" || strings.Contains(c.Text, "wx0") {
		t.Errorf("app id row %+v, want skipped, not the envelope's appid", c)
	}
}

// TestRemedy_ByEndpoint: WeChat Pay's APIv2 refund notifications carry no signature and decrypt
// with the APIv2 key: their remedy names apiv2_key_file, not the APIv3 key (a reviewer helper's
// finding), and the reprocess command given can run (--config, --app and --since are required).
func TestRemedy_ByEndpoint(t *testing.T) {
	a := &paynotify.App{Name: "wx", Provider: paynotify.ProviderWechatpay}
	v2 := remedy(&paynotify.Evidence{App: "wx", Endpoint: "wechatpay-v2", Reason: paynotify.ReasonDecryptFailed}, a)
	if !strings.Contains(v2, "apiv2_key_file") || strings.Contains(v2, "APIv3") || strings.Contains(v2, "signature held") {
		t.Errorf("APIv2 decrypt_failed remedy: %q", v2)
	}
	v3 := remedy(&paynotify.Evidence{App: "wx", Endpoint: "wechatpay", Reason: paynotify.ReasonDecryptFailed}, a)
	if !strings.Contains(v3, "APIv3 key") || !strings.Contains(v3, "paynotify reprocess --config FILE --app wx --reason decrypt_failed --since 24h") {
		t.Errorf("APIv3 decrypt_failed remedy: %q", v3)
	}
}
