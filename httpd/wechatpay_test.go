package httpd_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/wechatpay"
)

// wechatVectors are the independently generated notifications of the wechatpay package
// (python3 + openssl; see ../wechatpay/testdata/README.md).
type wechatVectors struct {
	APIv3Key      string `json:"apiv3_key"`
	PubKeyID      string `json:"pub_key_id"`
	Notifications []struct {
		Name    string            `json:"name"`
		Now     int64             `json:"now"`
		Expect  string            `json:"expect"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	} `json:"notifications"`
}

func loadWechatVectors(t *testing.T) *wechatVectors {
	b, err := os.ReadFile("../wechatpay/testdata/own_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v wechatVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Notifications) != 24 {
		t.Fatalf("own_vectors.json: %d notifications, want 24", len(v.Notifications))
	}
	return &v
}

// wechatApp builds the app "wx" of the vectors, with a clock the test sets.
func wechatApp(t *testing.T, v *wechatVectors, now *atomic.Int64) *paynotify.App {
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	priv, err := wechatpay.ParsePrivateKey(read("../wechatpay/testdata/shared/official_doc_test_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := wechatpay.ParsePublicKey(read("../wechatpay/testdata/shared/go_sdk_test_public_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := wechatpay.NewClient(wechatpay.Config{MchID: "1900000100", AppID: "wxd678efh567hg6787", MerchantPrivateKey: priv,
		MerchantSerialNo: "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB", APIv3Key: []byte(v.APIv3Key), PlatformPublicKey: pub,
		PlatformPublicKeyID: v.PubKeyID, PlatformCerts: read("../wechatpay/testdata/shared/go_sdk_notify_test_cert.pem"), BaseURL: "http://127.0.0.1:1", Now: func() time.Time { return time.Unix(now.Load(), 0) }})
	if err != nil {
		t.Fatal(err)
	}
	return &paynotify.App{Name: "wx", Provider: paynotify.ProviderWechatpay, AppID: "wxd678efh567hg6787", MchID: "1900000100",
		Gateway: &provider.Wechat{Client: client}}
}

func TestWechatNotify(t *testing.T) {
	t.Parallel()
	v := loadWechatVectors(t)
	byName := map[string]int{}
	for i, n := range v.Notifications {
		byName[n.Name] = i
	}
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		var now atomic.Int64
		e := newEnv(t, s, wechatApp(t, v, &now))
		created := time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)
		if _, _, err := s.CreateOrder(context.Background(), &paynotify.Order{App: "wx", OutTradeNo: "PN20261101000001", Channel: "wechatpay.jsapi",
			Status: paynotify.StatusPending, Amount: 2599, Currency: "CNY", Subject: "s", Version: 1, CreatedAt: created, ExpiresAt: created.Add(2 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		post := func(name string) (int, string) {
			t.Helper()
			n := v.Notifications[byName[name]]
			now.Store(n.Now)
			h := http.Header{}
			for k, val := range n.Headers {
				h.Set(k, val)
			}
			return e.postNotify("/notify/wechatpay/wx", "application/json", h, []byte(n.Body))
		}
		for _, name := range []string{"pay_probe", "pay_tampered_body", "pay_reserialized", "pay_stale_300s", "pay_other_apiv3_key", "pay_unknown_pubkey_id"} {
			code, body := post(name)
			want := v.Notifications[byName[name]].Expect
			if code != http.StatusUnauthorized || !strings.Contains(body, `"code":"FAIL"`) || !strings.Contains(body, want) {
				t.Fatalf("%s: answer %d %s, want 401 FAIL %s", name, code, body, want)
			}
		}
		if got := e.getOrder("wx", "PN20261101000001"); got.Status != "pending" {
			t.Fatalf("a rejected notification moved the order: %+v", got)
		}
		rejected := e.evidence("app=wx&verdict=rejected")
		if len(rejected) != 6 {
			t.Fatalf("%d rejected evidence records, want 6", len(rejected))
		}
		reasons := map[string]bool{}
		for _, r := range rejected {
			reasons[r.Reason] = true
			// The claimed order is readable whenever the resource decrypts under our key.
			if r.Reason != "decrypt_failed" && r.OutTradeNo != "PN20261101000001" {
				t.Errorf("rejected %s evidence claims out_trade_no %q", r.Reason, r.OutTradeNo)
			}
		}
		for _, want := range []string{"probe", "signature_invalid", "timestamp_skew", "decrypt_failed", "unknown_serial"} {
			if !reasons[want] {
				t.Errorf("no rejected evidence with reason %s: %v", want, reasons)
			}
		}

		if code, body := post("pay_ok_pubkey"); code != http.StatusNoContent || body != "" {
			t.Fatalf("payment answer %d %q, want 204", code, body)
		}
		if got := e.getOrder("wx", "PN20261101000001"); got.Status != "paid" || got.ProviderTradeNo != "4200002000202611010000000001" {
			t.Fatalf("order = %+v", got)
		}
		// The same event signed by the platform certificate: a duplicate.
		if code, _ := post("pay_ok_cert"); code != http.StatusNoContent {
			t.Fatalf("duplicate answer %d", code)
		}
		if got := e.getOrder("wx", "PN20261101000001"); got.Version != 2 {
			t.Fatalf("duplicate moved the order: %+v", got)
		}

		// Refunds: WeChat reports each refund's own amount.
		for i := 0; i < 2; i++ {
			if code, _ := post("refund_success"); code != http.StatusNoContent {
				t.Fatalf("refund answer %d", code)
			}
		}
		if got := e.getOrder("wx", "PN20261101000001"); got.Status != "paid" || got.RefundedAmount != 1000 || got.Version != 3 {
			t.Fatalf("after refund: %+v", got)
		}
		// ABNORMAL (a refund made in the merchant platform, which paynotify never asked for):
		// acknowledged, raised as refund_abnormal, and neither booked as made nor as failed.
		if code, _ := post("refund_abnormal"); code != http.StatusNoContent {
			t.Fatalf("abnormal refund answer %d", code)
		}
		if an := e.evidence("app=wx&reason=refund_abnormal"); len(an) != 1 || an[0].Verdict != "anomaly" {
			t.Fatalf("evidence of the ABNORMAL refund: %+v, want one refund_abnormal anomaly", an)
		}
		var refunds struct {
			Refunds []paynotify.Refund `json:"refunds"`
		}
		e.api("GET", "/v1/orders/wx/PN20261101000001/refunds", nil, &refunds)
		status := map[string]paynotify.RefundStatus{}
		for _, r := range refunds.Refunds {
			status[r.OutRequestNo] = r.Status
		}
		if status["RFSUCCESS"] != paynotify.RefundSucceeded || len(status) != 1 {
			t.Fatalf("refunds = %+v", refunds.Refunds)
		}
		var types []string
		for _, x := range e.events() {
			if strings.Contains(string(x.Data), `"out_trade_no":"PN20261101000001"`) {
				types = append(types, x.Type)
			}
		}
		if strings.Join(types, ",") != "order.paid,order.refunded,order.anomaly" {
			t.Fatalf("events = %v", types)
		}
	})
}

// TestWechatNotifyV2 posts the independently generated APIv2 XML notifications to
// /notify/wechatpay-v2/{app}: payments signed MD5 or HMAC-SHA256, a tampered one, and a refund
// whose req_info is encrypted under md5(key).
func TestWechatNotifyV2(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../wechatpay/testdata/own_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		V2Key string `json:"v2_key"`
		V2    []struct {
			Name, Expect, Body string
		} `json:"v2"`
		V2Refund struct{ Body, Plaintext string } `json:"v2_refund"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.V2) != 6 || v.V2Refund.Body == "" {
		t.Fatalf("own_vectors.json: %d v2 vectors and a v2_refund of %d bytes, want 6 and one", len(v.V2), len(v.V2Refund.Body))
	}
	body := map[string]string{}
	for _, x := range v.V2 {
		body[x.Name] = x.Body
	}
	const otn = "1409811653"
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		var now atomic.Int64
		wx := wechatApp(t, loadWechatVectors(t), &now)
		wx.Name, wx.AppID, wx.MchID = "wx2", "wx2421b1c4370ec43b", "10000100"
		// WeChat Pay's refund query, as the client returns its verified answer: the refund of the
		// vector's req_info (which its plaintext in own_vectors.json shows).
		q := &v2RefundQueries{answer: map[string]*wechatpay.Refund{"RF20261102000001": {OutTradeNo: otn,
			TransactionID: "1004400740201409030005092168", OutRefundNo: "RF20261102000001", RefundID: "50000408942026110200000000001",
			RefundStatus: "SUCCESS", SuccessTime: time.Date(2026, 11, 2, 1, 30, 5, 0, time.UTC),
			Amount: wechatRefundAmount(2599, 1000)}}}
		wx.Gateway.(*provider.Wechat).V2 = &provider.WechatV2{APIKey: []byte(v.V2Key), Refunds: q}
		e := newEnv(t, s, wx)
		created := time.Date(2014, 9, 3, 5, 0, 0, 0, time.UTC)
		if _, _, err := s.CreateOrder(context.Background(), &paynotify.Order{App: "wx2", OutTradeNo: otn, Channel: "wechatpay.native",
			Status: paynotify.StatusPending, Amount: 2599, Currency: "CNY", Subject: "s", Version: 1, CreatedAt: created, ExpiresAt: created.Add(2 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		post := func(xml string) string {
			t.Helper()
			code, ans := e.postNotify("/notify/wechatpay-v2/wx2", "text/xml", nil, []byte(xml))
			if code != http.StatusOK {
				t.Fatalf("status %d", code)
			}
			return ans
		}
		const ok, fail = "<return_code><![CDATA[SUCCESS]]></return_code>", "<return_code><![CDATA[FAIL]]></return_code>"
		// A refund before the payment: the payment is implied.
		if ans := post(v.V2Refund.Body); !strings.Contains(ans, ok) {
			t.Fatalf("refund answer %s", ans)
		}
		if got := e.getOrder("wx2", otn); got.Status != "paid" || got.RefundedAmount != 1000 {
			t.Fatalf("after the refund: %+v", got)
		}
		if got := q.asked(); fmt.Sprint(got) != "[RF20261102000001]" {
			t.Fatalf("refund queries %v, want the notification's refund asked about once", got)
		}
		// req_info is AES-ECB, unauthenticated: one encrypted under the key (here by openssl) with
		// another out_refund_no, as blocks moved inside a genuine one give, is only a claim.
		// WeChat Pay's query does not know that refund: rejected, answered FAIL, nothing booked.
		forged := strings.Replace(v.V2Refund.Body, v2ReqInfo(t, v.V2Refund.Body), opensslV2ReqInfo(t, v.V2Key,
			strings.Replace(v.V2Refund.Plaintext, "RF20261102000001", "RF20261102000009", 1)), 1)
		if ans := post(forged); !strings.Contains(ans, fail) {
			t.Fatalf("forged refund answer %s", ans)
		}
		if got := q.asked(); fmt.Sprint(got) != "[RF20261102000001 RF20261102000009]" {
			t.Fatalf("refund queries %v", got)
		}
		if got := e.getOrder("wx2", otn); got.RefundedAmount != 1000 || got.Version != 3 {
			t.Fatalf("after the forged refund: %+v", got)
		}
		if ev := e.evidence("app=wx2&verdict=rejected"); len(ev) != 1 || ev[0].Reason != provider.ReasonRefundUnconfirmed || ev[0].OutTradeNo != otn {
			t.Fatalf("rejected evidence = %+v", ev)
		}
		if ans := post(body["v2_md5_tampered"]); !strings.Contains(ans, fail) {
			t.Fatalf("tampered answer %s", ans)
		}
		for _, name := range []string{"v2_md5", "v2_hmac", "v2_md5_no_cdata"} {
			if ans := post(body[name]); !strings.Contains(ans, ok) {
				t.Fatalf("%s answer %s", name, ans)
			}
		}
		if got := e.getOrder("wx2", otn); got.Status != "paid" || got.Version != 3 {
			t.Fatalf("order = %+v", got)
		}
		if ev := e.evidence("app=wx2&verdict=rejected"); len(ev) != 2 || ev[0].Reason != "signature_invalid" || ev[0].OutTradeNo != otn {
			t.Fatalf("rejected evidence = %+v", ev)
		}
		// The APIv3 route of an app is not its APIv2 route, and an app without an APIv2 key has none.
		if code, _ := e.postNotify("/notify/wechatpay-v2/shop", "text/xml", nil, []byte(body["v2_md5"])); code != http.StatusNotFound {
			t.Fatalf("v2 callback to an Alipay app: %d", code)
		}
	})
}

// TestWechatNotify_AnomalyLeavesRefunds: a verified refund notification that disagrees with our
// app (another mchid) changes nothing: no refund recorded, no version bump, one anomaly.
func TestWechatNotify_AnomalyLeavesRefunds(t *testing.T) {
	t.Parallel()
	v := loadWechatVectors(t)
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		var now atomic.Int64
		wx := wechatApp(t, v, &now)
		wx.MchID = "1900000999" // not the vectors' 1900000100
		e := newEnv(t, s, wx)
		created := time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC)
		if _, _, err := s.CreateOrder(context.Background(), &paynotify.Order{App: "wx", OutTradeNo: "PN20261101000001", Channel: "wechatpay.jsapi",
			Status: paynotify.StatusPending, Amount: 2599, Currency: "CNY", Subject: "s", Version: 1, CreatedAt: created, ExpiresAt: created.Add(2 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"refund_success", "refund_abnormal", "refund_success"} {
			for _, n := range v.Notifications {
				if n.Name != name {
					continue
				}
				now.Store(n.Now)
				h := http.Header{}
				for k, val := range n.Headers {
					h.Set(k, val)
				}
				if code, body := e.postNotify("/notify/wechatpay/wx", "application/json", h, []byte(n.Body)); code != http.StatusBadRequest || !strings.Contains(body, "app_id_mismatch") {
					t.Fatalf("%s: answer %d %s, want 400 app_id_mismatch", name, code, body)
				}
			}
		}
		if got := e.getOrder("wx", "PN20261101000001"); got.Version != 1 || got.Status != "pending" || got.RefundedAmount != 0 {
			t.Fatalf("order = %+v", got)
		}
		refunds, err := s.ListRefunds(context.Background(), "wx", "PN20261101000001")
		if err != nil || len(refunds) != 0 {
			t.Fatalf("refunds recorded by an anomaly: %+v, %v", refunds, err)
		}
		n := 0
		for _, x := range e.events() {
			if x.Type == "order.anomaly" {
				n++
			} else {
				t.Fatalf("event %s raised by an anomaly", x.Type)
			}
		}
		if n != 2 { // two distinct anomalies (the success and the abnormal refund), not three
			t.Fatalf("%d anomaly events, want 2", n)
		}
	})
}

// v2RefundQueries plays WeChat Pay's refund query for an APIv2 app (provider.V2RefundQuerier):
// the verified answer of each known out_refund_no, RESOURCE_NOT_EXISTS (signed) for the others.
type v2RefundQueries struct {
	mu     sync.Mutex
	answer map[string]*wechatpay.Refund
	nos    []string
}

func (q *v2RefundQueries) QueryRefund(_ context.Context, outRefundNo string) (*wechatpay.Refund, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.nos = append(q.nos, outRefundNo)
	if r, ok := q.answer[outRefundNo]; ok {
		c := *r
		return &c, nil
	}
	return nil, &wechatpay.Error{StatusCode: http.StatusNotFound, Code: "RESOURCE_NOT_EXISTS", Message: "退款单不存在", Signed: true}
}

func (q *v2RefundQueries) asked() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.nos...)
}

func wechatRefundAmount(total, refund int64) (a struct {
	Total       int64
	Refund      int64
	PayerTotal  int64
	PayerRefund int64
	Currency    string
}) {
	a.Total, a.Refund, a.PayerTotal, a.PayerRefund, a.Currency = total, refund, total, refund, "CNY"
	return a
}

// v2ReqInfo returns the req_info of an APIv2 refund notification (its CDATA or text).
func v2ReqInfo(t *testing.T, body string) string {
	t.Helper()
	m := regexp.MustCompile(`<req_info>(?:<!\[CDATA\[)?([^<\]]*)(?:\]\]>)?</req_info>`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no req_info in %q", body)
	}
	return m[1]
}

// opensslV2ReqInfo encrypts plaintext as WeChat Pay's req_info with the openssl command line:
// AES-256-ECB under the 32 ASCII characters of lowercase hex md5(key), PKCS#7, base64.
func opensslV2ReqInfo(t *testing.T, key, plaintext string) string {
	t.Helper()
	sum := md5.Sum([]byte(key))
	cmd := exec.Command("openssl", "enc", "-aes-256-ecb", "-K", hex.EncodeToString([]byte(hex.EncodeToString(sum[:]))), "-a", "-A")
	cmd.Stdin = strings.NewReader(plaintext)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl enc: %v", err)
	}
	return strings.TrimSpace(string(out))
}
