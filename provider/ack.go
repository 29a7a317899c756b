package provider

import (
	"io"
	"net/http"
	"strconv"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/alipaylegacy"
	"github.com/paynotify/paynotify/wechatpay"
)

// The notification verifiers answer the provider with the packages' ack helpers.
var (
	_ paynotify.Acker = alipayVerifier{}
	_ paynotify.Acker = legacyVerifier{}
	_ paynotify.Acker = wechatVerifier{}
	_ paynotify.Acker = (*WechatV2)(nil)
)

// AckText is alipay.AckSuccessBody or alipay.AckFailureBody.
func (alipayVerifier) AckText(res *paynotify.Result) string {
	if res.OK {
		return alipay.AckSuccessBody
	}
	return alipay.AckFailureBody
}

// WriteAck answers Alipay with status 200 and the plain text AckText.
func (v alipayVerifier) WriteAck(w http.ResponseWriter, res *paynotify.Result) {
	if res.OK {
		alipay.WriteAckSuccess(w)
	} else {
		alipay.WriteAckFailure(w)
	}
}

// AckText is alipaylegacy.AckSuccess or alipaylegacy.AckFail.
func (legacyVerifier) AckText(res *paynotify.Result) string {
	if res.OK {
		return alipaylegacy.AckSuccess
	}
	return alipaylegacy.AckFail
}

// WriteAck answers legacy Alipay with status 200 and the plain text AckText.
func (v legacyVerifier) WriteAck(w http.ResponseWriter, res *paynotify.Result) {
	if res.OK {
		alipaylegacy.WriteAckSuccess(w)
	} else {
		alipaylegacy.WriteAckFailure(w)
	}
}

// AckText is the APIv3 answer as written: "204", or the status and the FAIL body, e.g.
// `401 {"code":"FAIL","message":"signature_invalid"}`.
func (wechatVerifier) AckText(res *paynotify.Result) string {
	if res.OK {
		return strconv.Itoa(http.StatusNoContent)
	}
	status, message := wechatFailure(res)
	return strconv.Itoa(status) + " " + string(wechatpay.AckFailureBody(message))
}

// WriteAck answers WeChat Pay APIv3: 204 on success; otherwise {"code":"FAIL",…} with 500 when we
// failed (store), 401 for a rejected request, 400 otherwise. Any non-2xx makes WeChat Pay retry.
func (wechatVerifier) WriteAck(w http.ResponseWriter, res *paynotify.Result) {
	if res.OK {
		wechatpay.WriteAckSuccess(w)
		return
	}
	status, message := wechatFailure(res)
	wechatpay.WriteAckFailure(w, status, message)
}

// wechatFailure is the status and message of a failure answer to WeChat Pay APIv3.
func wechatFailure(res *paynotify.Result) (int, string) {
	status := http.StatusBadRequest
	switch res.Verdict {
	case paynotify.VerdictError:
		status = http.StatusInternalServerError
	case paynotify.VerdictRejected:
		status = http.StatusUnauthorized
	}
	reason := res.Reason
	if reason == "" {
		reason = string(res.Verdict)
	}
	return status, reason
}

// AckText is the APIv2 XML answer: wechatpay.V2Ack(ok, "FAIL").
func (*WechatV2) AckText(res *paynotify.Result) string {
	return string(wechatpay.V2Ack(res.OK, "FAIL"))
}

// WriteAck answers WeChat Pay APIv2 with status 200 and the XML AckText.
func (v *WechatV2) WriteAck(w http.ResponseWriter, res *paynotify.Result) {
	writeText(w, "text/xml; charset=utf-8", v.AckText(res))
}

func writeText(w http.ResponseWriter, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, body)
}
