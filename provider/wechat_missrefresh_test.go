package provider_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/wechatpaywire"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/wechatpay"
)

// TestWechatVerifier_RefreshAfterMiss: on the server's path a notification signed with a
// certificate serial the app does not know starts one background download of the certificates
// when the app has MissRefresh (platform certificates), none without it, and none when evidence
// is processed again (a time given): a reviewer's finding, the server waited for the 12-hour
// refresh after a rotation, refusing payments meanwhile.
func TestWechatVerifier_RefreshAfterMiss(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	read := func(p string) []byte {
		b, err := os.ReadFile("../wechatpay/testdata/" + p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	merchant, err := wechatpay.ParsePrivateKey(read("shared/official_doc_test_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	// other_key.pem is labelled TESTING KEY, so that scanners skip it.
	other, err := wechatpay.ParsePrivateKey([]byte(strings.ReplaceAll(string(read("other_key.pem")), "TESTING KEY", "PRIVATE KEY")))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c, err := wechatpay.NewClient(wechatpay.Config{MchID: "1900007291", MerchantSerialNo: "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB",
		MerchantPrivateKey: merchant, APIv3Key: []byte("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"),
		PlatformCerts: read("shared/go_sdk_notify_test_cert.pem"), BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	h, body, err := wechatpaywire.BuildNotification(other, "5A5A0123456789ABCDEF5A5A0123456789ABCDEF", []byte("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"),
		wechatpaywire.NotificationParams{ID: "EV-1", CreateTime: now, EventType: "TRANSACTION.SUCCESS", OriginalType: "transaction",
			Plaintext: []byte(`{"mchid":"1900007291","out_trade_no":"O1","trade_state":"SUCCESS","amount":{"total":1}}`)})
	if err != nil {
		t.Fatal(err)
	}
	unknown := func(v paynotify.Verifier, at time.Time) {
		t.Helper()
		_, err := v.Verify(h, body, at)
		var re *paynotify.RejectError
		if !errors.As(err, &re) || re.Reason != paynotify.ReasonUnknownSerial {
			t.Fatalf("verify: %v, want %s", err, paynotify.ReasonUnknownSerial)
		}
	}

	unknown((&provider.Wechat{Client: c}).Verifier(paynotify.ProviderWechatpay), time.Time{})
	done := make(chan error, 1)
	g := &provider.Wechat{Client: c, MissRefresh: func(err error) { done <- err }}
	unknown(g.Verifier(paynotify.ProviderWechatpay), now) // evidence processed again
	time.Sleep(100 * time.Millisecond)
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d downloads without MissRefresh or on a reprocess, want 0", n)
	}
	unknown(g.Verifier(paynotify.ProviderWechatpay), time.Time{})
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the download of a server answering 500 succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no download after a notification with an unknown serial")
	}
	unknown(g.Verifier(paynotify.ProviderWechatpay), time.Time{}) // within the minute: none more
	time.Sleep(100 * time.Millisecond)
	if n := hits.Load(); n != 1 {
		t.Fatalf("%d downloads, want 1", n)
	}
}
