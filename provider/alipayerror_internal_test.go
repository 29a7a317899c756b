package provider

import (
	"fmt"
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
)

// TestAlipayError_UnknownSerial (a reviewer helper's finding): an API answer signed with an Alipay
// certificate the config does not hold (Alipay rotated it) was "could not be verified
// (unknown_serial)": the SN Alipay named, the one configured and what to do were lost, in the
// API's answer and the log. Other verification failures keep their detail too.
func TestAlipayError_UnknownSerial(t *testing.T) {
	err := alipayError(&alipay.VerifyError{Reason: alipay.ReasonUnknownSerial,
		Detail: `response alipay_cert_sn "688ff317" is not the configured Alipay certificate (7513daaa)`})
	msg := paynotify.ErrorMessage(err)
	if paynotify.ErrorCode(err) != paynotify.EPROVIDERUNAVAILABLE || !strings.Contains(msg, `"688ff317"`) || !strings.Contains(msg, "7513daaa") ||
		!strings.Contains(msg, "alipay_cert_file") {
		t.Fatalf("%v: want provider_unavailable naming both SNs and alipay_cert_file", err)
	}
	// The client tried to download the certificate and could not trust it: the cause is said.
	err = alipayError(fmt.Errorf("%w; %w", &alipay.VerifyError{Reason: alipay.ReasonUnknownSerial, Detail: `response alipay_cert_sn "688ff317" is not the configured Alipay certificate (7513daaa)`},
		&alipay.CertDownloadError{SN: "688ff317", Cause: "its common name \"x\" is not the configured Alipay certificate's \"y\""}))
	if msg := paynotify.ErrorMessage(err); !strings.Contains(msg, `Alipay certificate download failed (SN "688ff317"): its common name`) || !strings.Contains(msg, "alipay_cert_file") {
		t.Fatalf("%v: want the download's failure and the remedy", err)
	}
	err = alipayError(&alipay.VerifyError{Reason: alipay.ReasonSignatureInvalid, Detail: "RSA2 (SHA256withRSA) signature does not verify"})
	if msg := paynotify.ErrorMessage(err); !strings.Contains(msg, "signature_invalid: RSA2 (SHA256withRSA) signature does not verify") {
		t.Fatalf("%v: want the detail", err)
	}
}
