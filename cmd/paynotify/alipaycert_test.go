package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/paynotify/paynotify/sandbox"
)

// TestBinary_AlipayCertMode: an Alipay app in certificate mode (app_cert_file, alipay_cert_file,
// alipay_root_cert_file: the sandbox's own authority) against the sandbox: a precreate order is
// paid there, its notification verified with the key of the Alipay certificate, and a refund's
// answer (which names the certificate, alipay_cert_sn) verified too.
func TestBinary_AlipayCertMode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	bin := buildBinary(t)
	dir := t.TempDir()
	sb := newTestSandbox(t, 1)
	k := sb.Keys()
	for name, content := range map[string]string{"app.pem": k.AlipayAppPrivateKey, "app_cert.crt": k.AlipayAppCert,
		"alipay_cert.crt": k.AlipayCert, "root_cert.crt": k.AlipayRootCert} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	cfg := fmt.Sprintf(`listen: %q
database: %q
public_url: "http://%s"
api_token: "${PAYNOTIFY_API_TOKEN}"
apps:
  - name: certs
    provider: alipay
    app_id: %q
    seller_id: %q
    gateway: "%s/sandbox/alipay/gateway.do"
    app_private_key_file: app.pem
    app_cert_file: app_cert.crt
    alipay_cert_file: alipay_cert.crt
    alipay_root_cert_file: root_cert.crt
`, addr, "sqlite:"+filepath.Join(dir, "data", "paynotify.db"), addr, k.AlipayAppID, k.AlipaySellerID, sb.URL)
	config := filepath.Join(dir, "paynotify.yaml")
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startBinary(t, bin, config, addr)
	base := "http://" + addr

	code, body := binAPI(t, "POST", base+"/v1/orders", map[string]any{"app": "certs", "out_trade_no": "CERT0001", "amount": 500, "subject": "s", "channel": "alipay.precreate"})
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, body)
	}
	pay, _ := body["pay"].(map[string]any)
	qr, _ := pay["qr_code"].(string)
	if _, err := sb.Act("pay", sandbox.ActionRequest{URL: qr}); err != nil {
		t.Fatal(err)
	}
	if code, o := binAPI(t, "GET", base+"/v1/orders/certs/CERT0001?wait=20s", nil); code != http.StatusOK || o["status"] != "paid" {
		t.Fatalf("after the payment: %d %v; want paid by the notification", code, o)
	}
	code, body = binAPI(t, "POST", base+"/v1/orders/certs/CERT0001/refunds", map[string]any{"out_request_no": "REFUND1", "amount": 100})
	if code != http.StatusCreated || body["status"] != "succeeded" {
		t.Fatalf("refund: %d %v; want succeeded", code, body)
	}
	_, ev := binAPI(t, "GET", base+"/v1/notifications?out_trade_no=CERT0001&verdict=accepted", nil)
	if recs, _ := ev["notifications"].([]any); len(recs) == 0 {
		t.Fatalf("no accepted notification record: %v", ev)
	}
}
