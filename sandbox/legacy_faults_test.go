package sandbox

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/paynotify/paynotify/alipay"
)

// TestLegacy_Faults injects each legacy fault and checks what the merchant receives with the
// tests' independent verifier.
func TestLegacy_Faults(t *testing.T) {
	t.Parallel()
	b := setupLegacy(t, 1000, nil, nil, true)
	// An RSA-only partner (the default merchant key): its WAP orders use sec_id 0001.
	const rsaPartner = "2088000000000004"
	pub, err := alipay.ParsePublicKey([]byte(b.keys.LegacyMerchantPublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.sb.RegisterLegacyPartner(rsaPartner, "", pub, "rsa@sandbox.example"); err != nil {
		t.Fatal(err)
	}
	recorder := func(t *testing.T) *merchant { return newMerchant(t, alipayOK) }
	pay := func(t *testing.T, no, product, partner, charset string, f Faults, m *merchant) {
		t.Helper()
		if err := b.sb.SetFaults(no, f); err != nil {
			t.Fatal(err)
		}
		if _, err := b.sb.CreateOrder(OrderRequest{Provider: ProviderAlipayLegacy, Product: product, AppID: partner, OutTradeNo: no,
			Amount: 1234, Subject: "中文 subject", NotifyURL: m.srv.URL, ReturnURL: "http://merchant.example/r", Charset: charset}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.sb.Act("pay", ActionRequest{Provider: ProviderAlipayLegacy, OutTradeNo: no}); err != nil {
			t.Fatal(err)
		}
	}
	first := func(t *testing.T, no string, m *merchant) (string, *Attempt) {
		t.Helper()
		as, err := b.sb.WaitAttempts(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: no}, 1)
		if err != nil {
			t.Fatal(err)
		}
		return string(m.requests()[0].body), as[0]
	}

	t.Run("NeverNotify", func(t *testing.T) {
		t.Parallel()
		m := recorder(t)
		pay(t, "lf_never", "direct", "", "", Faults{NeverNotify: true}, m)
		ns, _ := b.sb.Notifications("lf_never")
		if len(ns) != 1 || ns[0].Status != NoteSuppressed {
			t.Fatalf("%+v", ns)
		}
		time.Sleep(200 * time.Millisecond) // the first retry (2 min) would be due after 120 ms
		if len(m.requests()) != 0 {
			t.Fatal("a suppressed notification was sent")
		}
	})
	t.Run("BadSignature", func(t *testing.T) {
		t.Parallel()
		m := recorder(t)
		pay(t, "lf_badsig", "direct", "", "", Faults{BadSignature: true}, m)
		body, a := first(t, "lf_badsig", m)
		if _, err := b.tVerifyMapi(body, "MD5"); err == nil || a.Fault != "bad_signature" {
			t.Fatalf("verifies: %v, fault %q", err, a.Fault)
		}
	})
	t.Run("SortedOrderWAP", func(t *testing.T) {
		t.Parallel()
		m := recorder(t)
		pay(t, "lf_sorted", "wap", "", "", Faults{LegacySignature: LegacySigSortedOrder}, m)
		body, a := first(t, "lf_sorted", m)
		p, plain, err := b.tVerifyWap(body, "MD5")
		if err == nil || a.Fault != "legacy_signature:sorted_order" {
			t.Fatalf("the fixed-order signature verifies: %v %q", err, a.Fault)
		}
		sorted := tSorted(kvs{{"service", p.get("service")}, {"v", p.get("v")}, {"sec_id", p.get("sec_id")}, {"notify_data", plain}})
		if err := b.tVerifyAlipay("MD5", sorted, p.get("sign"), ""); err != nil || !strings.HasPrefix(string(sorted), "notify_data=") {
			t.Fatalf("not signed over the sorted string: %v", err)
		}
	})
	t.Run("CiphertextWAP0001", func(t *testing.T) {
		t.Parallel()
		m := recorder(t)
		pay(t, "lf_cipher", "wap", rsaPartner, "", Faults{LegacySignature: LegacySigCiphertext}, m)
		body, _ := first(t, "lf_cipher", m)
		p, plain, err := b.tVerifyWap(body, "0001")
		if err == nil || !strings.HasPrefix(plain, "<notify>") {
			t.Fatalf("the signature over the plaintext verifies (%v) or notify_data does not decrypt: %q", err, plain)
		}
		if err := b.tVerifyAlipay("0001", tFixed(p.get("service"), p.get("v"), p.get("sec_id"), p.get("notify_data")), p.get("sign"), ""); err != nil {
			t.Fatalf("not signed over the ciphertext: %v", err)
		}
	})
	t.Run("GBKSignedAsUTF8", func(t *testing.T) {
		t.Parallel()
		m := recorder(t)
		pay(t, "lf_gbk", "direct", "", "gbk", Faults{LegacySignature: LegacySigGBKAsUTF8}, m)
		body, _ := first(t, "lf_gbk", m)
		p, err := tParse(body)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.tVerifyAlipay("MD5", tSorted(p), p.get("sign"), ""); err == nil {
			t.Fatal("the GBK bytes verify")
		}
		utf := make(kvs, len(p))
		for i, kv := range p {
			v, err := simplifiedchinese.GBK.NewDecoder().String(kv[1])
			if err != nil {
				t.Fatal(err)
			}
			utf[i] = [2]string{kv[0], v}
		}
		if utf.get("subject") != "中文 subject" || p.get("subject") == utf.get("subject") {
			t.Fatalf("body is not GBK: %q", p.get("subject"))
		}
		if err := b.tVerifyAlipay("MD5", tSorted(utf), p.get("sign"), ""); err != nil {
			t.Fatal("not signed over the UTF-8 bytes")
		}
	})
	t.Run("GBK", func(t *testing.T) {
		t.Parallel()
		m := recorder(t)
		pay(t, "lf_gbk_ok", "direct", "", "gbk", Faults{}, m)
		body, _ := first(t, "lf_gbk_ok", m)
		p, err := b.tVerifyMapi(body, "MD5") // over the GBK bytes as received
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := simplifiedchinese.GBK.NewDecoder().String(p.get("subject")); s != "中文 subject" {
			t.Fatalf("subject %q", s)
		}
	})
	t.Run("DuplicateFields", func(t *testing.T) {
		t.Parallel()
		m, mw := recorder(t), recorder(t)
		pay(t, "lf_dup", "direct", "", "", Faults{DuplicateFields: true}, m)
		pay(t, "lf_dup_wap", "wap", "", "", Faults{DuplicateFields: true}, mw)
		body, a := first(t, "lf_dup", m)
		p, err := b.tVerifyMapi(body, "MD5")
		if err == nil || p.count("total_fee") != 2 || a.Fault != "duplicate_fields" {
			t.Fatalf("%v %v", err, p)
		}
		body, _ = first(t, "lf_dup_wap", mw)
		if p, _, err := b.tVerifyWap(body, "MD5"); err == nil || p.count("notify_data") != 2 {
			t.Fatalf("%v %v", err, p)
		}
	})
	t.Run("WrongAmountAndSeller", func(t *testing.T) {
		t.Parallel()
		m := recorder(t)
		pay(t, "lf_wrong", "direct", "", "", Faults{WrongAmount: true, WrongAppID: true}, m)
		body, _ := first(t, "lf_wrong", m)
		p, err := b.tVerifyMapi(body, "MD5") // properly signed
		if err != nil || p.get("total_fee") != "12.35" || p.get("seller_id") == b.keys.LegacyPartner || p.get("seller_email") == b.keys.LegacySellerEmail {
			t.Fatalf("%v %v", err, p)
		}
	})
	t.Run("DoublePay", func(t *testing.T) {
		t.Parallel()
		m := recorder(t)
		pay(t, "lf_double", "direct", "", "", Faults{DoublePay: true}, m)
		if _, err := b.sb.WaitAcked(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "lf_double"}, 2); err != nil {
			t.Fatal(err)
		}
		reqs := m.requests()
		f1, err1 := b.tVerifyMapi(string(reqs[0].body), "MD5")
		f2, err2 := b.tVerifyMapi(string(reqs[1].body), "MD5")
		if err1 != nil || err2 != nil || f1.get("trade_no") == f2.get("trade_no") || f1.get("notify_id") == f2.get("notify_id") ||
			f1.get("out_trade_no") != f2.get("out_trade_no") || f2.get("total_fee") != "12.34" || f2.get("trade_status") != "TRADE_SUCCESS" {
			t.Fatalf("%v %v\n%v\n%v", err1, err2, f1, f2)
		}
		tr := legacyTrade(t, b, "lf_double")
		if tr.DoublePay == nil || tr.DoublePay.TradeNo != f2.get("trade_no") || tr.TradeNo != f1.get("trade_no") {
			t.Fatalf("%+v", tr)
		}
	})
	for _, answer := range []string{NotifyVerifyFalse, NotifyVerifyInvalid} {
		t.Run("NotifyVerify_"+answer, func(t *testing.T) {
			t.Parallel()
			no := "lf_atn_" + answer
			got := make(chan string, 10)
			m := newMerchant(t, func(_ int, _ *http.Request, body []byte) (int, string) {
				p, _ := tParse(string(body))
				ans, _ := b.tNotifyVerify(b.keys.LegacyPartner, p.get("notify_id"))
				got <- ans
				return 200, "fail"
			})
			pay(t, no, "direct", "", "", Faults{NotifyVerify: answer}, m)
			if a := <-got; a != answer {
				t.Fatalf("notify_verify answered %q, want %s", a, answer)
			}
			recs := b.sb.Queries(QueryFilter{API: APILegacyNotifyVerify, OutTradeNo: no})
			if len(recs) == 0 || recs[0].Result != answer || recs[0].Fault != "notify_verify:"+answer {
				t.Fatalf("%+v", recs)
			}
		})
	}
	t.Run("NotifyVerifyTimeoutOnce", func(t *testing.T) {
		t.Parallel()
		no := "lf_atn_timeout"
		client := &http.Client{Timeout: 300 * time.Millisecond}
		errs := make(chan error, 10)
		m := newMerchant(t, func(_ int, _ *http.Request, body []byte) (int, string) {
			p, _ := tParse(string(body))
			resp, err := client.Get(b.srv.URL + "/sandbox/alipay-legacy/gateway.do?service=notify_verify&partner=" + b.keys.LegacyPartner + "&notify_id=" + p.get("notify_id"))
			errs <- err
			if err != nil {
				return 200, "fail" // not verified: Alipay retries
			}
			resp.Body.Close()
			return 200, "success"
		})
		pay(t, no, "direct", "", "", Faults{NotifyVerify: NotifyVerifyTimeout, NotifyVerifyTimes: 1}, m)
		as, err := b.sb.WaitAcked(waitCtx(t, 20*time.Second), AttemptFilter{OutTradeNo: no}, 1)
		if err != nil || len(as) != 2 || as[0].Acked || !as[1].Acked {
			t.Fatalf("%v %+v", err, as)
		}
		var ne net.Error
		if e := <-errs; !errors.As(e, &ne) || !ne.Timeout() {
			t.Fatalf("first notify_verify: %v", e)
		}
		recs := b.sb.Queries(QueryFilter{API: APILegacyNotifyVerify, OutTradeNo: no})
		if len(recs) != 2 || recs[0].Result != "timeout" || recs[1].Result != "true" {
			t.Fatalf("%+v", recs)
		}
	})
	t.Run("Validation", func(t *testing.T) {
		t.Parallel()
		for _, f := range []Faults{{LegacySignature: "nope"}, {NotifyVerify: "maybe"}, {NotifyVerifyTimes: -1}} {
			if err := b.sb.SetFaults("lf_val", f); err == nil {
				t.Errorf("%+v accepted", f)
			}
		}
		g := Faults{NotifyVerify: NotifyVerifyFalse, DuplicateFields: true}
		o := Faults{NotifyVerify: NotifyVerifyTimeout, NotifyVerifyTimes: 2, LegacySignature: LegacySigCiphertext}
		want := Faults{NotifyVerify: NotifyVerifyTimeout, NotifyVerifyTimes: 2, LegacySignature: LegacySigCiphertext, DuplicateFields: true}
		if got := g.merge(o); got != want {
			t.Errorf("merge: %+v", got)
		}
	})
}
