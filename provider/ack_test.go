package provider

import (
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
)

// TestAck pins the notification answers' bytes, which come from the protocol packages.
func TestAck(t *testing.T) {
	const v2OK = `<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>`
	const v2Fail = `<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[FAIL]]></return_msg></xml>`
	tests := []struct {
		name   string
		acker  paynotify.Acker
		res    paynotify.Result
		status int
		ctype  string
		body   string
	}{
		{"AlipayOK", alipayVerifier{}, paynotify.Result{OK: true}, 200, "text/plain; charset=utf-8", "success"},
		{"AlipayFail", alipayVerifier{}, paynotify.Result{Verdict: paynotify.VerdictRejected}, 200, "text/plain; charset=utf-8", "fail"},
		{"LegacyOK", legacyVerifier{}, paynotify.Result{OK: true}, 200, "text/plain; charset=utf-8", "success"},
		{"LegacyFail", legacyVerifier{}, paynotify.Result{}, 200, "text/plain; charset=utf-8", "fail"},
		{"WechatOK", wechatVerifier{}, paynotify.Result{OK: true}, 204, "", ""},
		{"WechatRejected", wechatVerifier{}, paynotify.Result{Verdict: paynotify.VerdictRejected, Reason: paynotify.ReasonSignatureInvalid}, 401, "application/json", `{"code":"FAIL","message":"` + paynotify.ReasonSignatureInvalid + `"}`},
		{"WechatError", wechatVerifier{}, paynotify.Result{Verdict: paynotify.VerdictError}, 500, "application/json", `{"code":"FAIL","message":"` + string(paynotify.VerdictError) + `"}`},
		{"WechatAnomaly", wechatVerifier{}, paynotify.Result{Verdict: paynotify.VerdictAnomaly, Reason: "amount_mismatch"}, 400, "application/json", `{"code":"FAIL","message":"amount_mismatch"}`},
		{"WechatV2OK", &WechatV2{}, paynotify.Result{OK: true}, 200, "text/xml; charset=utf-8", v2OK},
		{"WechatV2Fail", &WechatV2{}, paynotify.Result{}, 200, "text/xml; charset=utf-8", v2Fail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			tt.acker.WriteAck(w, &tt.res)
			if w.Code != tt.status || w.Header().Get("Content-Type") != tt.ctype || w.Body.String() != tt.body {
				t.Errorf("WriteAck = %d %q %q, want %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body.String(), tt.status, tt.ctype, tt.body)
			}
			// The evidence records what was written: the body, and for WeChat Pay APIv3 (whose
			// answer is its status) the status first.
			want := tt.body
			if _, v3 := tt.acker.(wechatVerifier); v3 {
				want = strings.TrimSpace(strconv.Itoa(tt.status) + " " + tt.body)
			}
			if got := tt.acker.AckText(&tt.res); got != want {
				t.Errorf("AckText = %q, want %q", got, want)
			}
		})
	}
}
