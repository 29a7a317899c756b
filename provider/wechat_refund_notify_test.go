package provider_test

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/testsign"
	"github.com/paynotify/paynotify/internal/wechatpaywire"
)

// TestWechatRefundNotification_NoAmount: a verified REFUND.SUCCESS notification whose resource has
// no amount.refund is rejected as malformed (WeChat Pay always sends it), not acknowledged as a
// duplicate with nothing recorded; one with the amount is a refund fact.
func TestWechatRefundNotification_NoAmount(t *testing.T) {
	g, _ := fakeWechat(t, wxAnswer{status: 200, body: `{}`})
	notify := func(resource string) (paynotify.Fact, error) {
		block, err := aes.NewCipher([]byte("0123456789abcdef0123456789abcdef"))
		if err != nil {
			t.Fatal(err)
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			t.Fatal(err)
		}
		nonce, ad := "r3fundN0nce0", "refund"
		sealed := gcm.Seal(nil, []byte(nonce), []byte(resource), []byte(ad))
		body, err := json.Marshal(map[string]any{"id": "EV-refund", "create_time": "2026-12-07T10:00:05+08:00", "resource_type": "encrypt-resource",
			"event_type": "REFUND.SUCCESS", "summary": "退款成功", "resource": map[string]any{"original_type": "refund", "algorithm": "AEAD_AES_256_GCM",
				"associated_data": ad, "nonce": nonce, "ciphertext": base64.StdEncoding.EncodeToString(sealed)}})
		if err != nil {
			t.Fatal(err)
		}
		ts, n := strconv.FormatInt(time.Now().Unix(), 10), "n0nce"
		h := http.Header{"Content-Type": {"application/json"}, wechatpaywire.HeaderTimestamp: {ts}, wechatpaywire.HeaderNonce: {n},
			wechatpaywire.HeaderSerial: {wechatKeyID}, wechatpaywire.HeaderSignature: {testsign.RSA2(t, wechatKey, []byte(ts+"\n"+n+"\n"+string(body)+"\n"))}}
		return wechatVerifierOf(g).Verify(h, body, time.Time{})
	}
	const refund = `{"mchid":"1900000100","out_trade_no":"T1","transaction_id":"4200000001","out_refund_no":"R1","refund_id":"50300001",` +
		`"refund_status":"SUCCESS","success_time":"2026-12-07T10:00:00+08:00","amount":{"total":8888,"refund":%s,"payer_total":8888,"payer_refund":%s}}`
	f, err := notify(fmt.Sprintf(refund, "100", "100"))
	if err != nil || f.Kind != paynotify.FactRefund || f.RefundAmount != 100 {
		t.Fatalf("with the amount: %+v, %v", f, err)
	}
	_, err = notify(`{"mchid":"1900000100","out_trade_no":"T1","transaction_id":"4200000001","out_refund_no":"R1","refund_id":"50300001",` +
		`"refund_status":"SUCCESS","success_time":"2026-12-07T10:00:00+08:00","amount":{"total":8888}}`)
	var rej *paynotify.RejectError
	if !errors.As(err, &rej) || rej.Reason != paynotify.ReasonMalformed || rej.OutTradeNo != "T1" {
		t.Fatalf("without amount.refund: %v, want a malformed rejection", err)
	}
	// A notification's refund_status is SUCCESS, CLOSED or ABNORMAL. Any other, or none, stated
	// nothing and was acknowledged as a duplicate, the message dropped (a reviewer helper's
	// finding); it is refused, so that WeChat Pay retries while someone looks, as APIv2's.
	for status, want := range map[string]paynotify.FactKind{"CLOSED": paynotify.FactRefundFailed, "ABNORMAL": paynotify.FactRefundAbnormal,
		"PROCESSING": "", "": "", "SUCCES": ""} {
		resource := strings.Replace(fmt.Sprintf(refund, "100", "100"), `"refund_status":"SUCCESS"`, fmt.Sprintf(`"refund_status":%q`, status), 1)
		f, err := notify(resource)
		switch {
		case want != "" && (err != nil || f.Kind != want):
			t.Errorf("refund_status %q: %+v, %v; want %s", status, f, err, want)
		case want == "" && (!errors.As(err, &rej) || rej.Reason != paynotify.ReasonMalformed || rej.OutTradeNo != "T1"):
			t.Errorf("refund_status %q: %+v, %v; want a malformed rejection", status, f, err)
		}
	}
}
