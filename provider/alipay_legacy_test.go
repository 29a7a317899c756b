package provider_test

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipaylegacy"
	"github.com/paynotify/paynotify/provider"
)

// The legacy Alipay adapter (provider.AlipayLegacy): notifications signed here, independently of
// the code under test (MD5 with crypto/md5 over a canonical string built by this file, RSA by
// openssl), the facts they state, the seller check, notify_verify against a fake on loopback,
// the pay parameters of both channels, and the services legacy Alipay does not have.

const (
	lgPartner = "2088101122136241"
	lgKey     = "bd5kecdsvhcy2fhrrwzxojynrtnxr8ij" // alipaylegacy/testdata/keys/md5_key.txt
	lgSeller  = "seller@example.com"
	lgOther   = "2088000000009999"
	lgAliKey  = "../alipaylegacy/testdata/keys/alipay_private_pkcs8.pem" // plays Alipay (RSA)
	lgAliPub  = "../alipaylegacy/testdata/keys/alipay_public.pem"
)

// legacyAdapter returns an MD5 adapter of partner lgPartner receiving at lgSeller (seller_email),
// notify_verify off, as changed by mod.
func legacyAdapter(t *testing.T, mod func(c *alipaylegacy.Config, g *provider.AlipayLegacy)) *provider.AlipayLegacy {
	t.Helper()
	cfg := alipaylegacy.Config{Partner: lgPartner, SignType: alipaylegacy.SignMD5, MD5Key: lgKey, SellerEmail: lgSeller}
	g := &provider.AlipayLegacy{Seller: lgSeller}
	if mod != nil {
		mod(&cfg, g)
	}
	c, err := alipaylegacy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.Client = c
	return g
}

// sortedCanonical is the sorted rule: sign and sign_type and empty values left out, names
// sorted, name=value joined with '&', values raw.
func sortedCanonical(fields map[string]string) string {
	var keys []string
	for k, v := range fields {
		if k != "sign" && k != "sign_type" && v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k + "=" + fields[k])
	}
	return b.String()
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// md5Notify returns the form body of a mapi notification with fields, signed MD5 with key.
func md5Notify(fields map[string]string, key string) []byte {
	v := url.Values{}
	for k, x := range fields {
		v.Set(k, x)
	}
	v.Set("sign", md5Hex(sortedCanonical(fields)+key))
	v.Set("sign_type", "MD5")
	return []byte(v.Encode())
}

// rsaNotify returns the form body of a mapi notification with fields, signed RSA (SHA1withRSA)
// by openssl with the key that plays Alipay.
func rsaNotify(t *testing.T, fields map[string]string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", "dgst", "-sha1", "-sign", lgAliKey)
	cmd.Stdin = strings.NewReader(sortedCanonical(fields))
	sig, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	v := url.Values{}
	for k, x := range fields {
		v.Set(k, x)
	}
	v.Set("sign", base64.StdEncoding.EncodeToString(sig))
	v.Set("sign_type", "RSA")
	return []byte(v.Encode())
}

// legacyFields returns the fields of a mapi notification of order otn for 88.88 yuan in status
// st, from seller lgSeller (seller_id the partner).
func legacyFields(otn, st string) map[string]string {
	return map[string]string{
		"notify_id": "4e127d6cc7ac3e426b8ed50363625d2f6k", "notify_time": "2026-11-28 10:05:21", "notify_type": "trade_status_sync",
		"out_trade_no": otn, "trade_no": "2026112821001004880012345678", "trade_status": st, "total_fee": "88.88",
		"price": "88.88", "quantity": "1", "subject": "测试", "payment_type": "1", "seller_id": lgPartner, "seller_email": lgSeller,
		"buyer_id": "2088102122524333", "buyer_email": "buyer@example.com", "gmt_create": "2026-11-28 10:04:00",
		"gmt_payment": "2026-11-28 10:05:20", "discount": "0.00", "is_total_fee_adjust": "N", "use_coupon": "N",
	}
}

func beijing(s string) time.Time {
	t, err := time.ParseInLocation("2006-01-02 15:04:05", s, time.FixedZone("CST", 8*3600))
	if err != nil {
		panic(err)
	}
	return t
}

func verifyLegacy(g *provider.AlipayLegacy, body []byte) (paynotify.Fact, error) {
	return g.Verifier(paynotify.ProviderAlipayLegacy).Verify(http.Header{}, body, time.Now())
}

// TestAlipayLegacyFact: every trade_status maps to its fact (docs/alipay-legacy.md §9.2): paid on
// TRADE_SUCCESS and, for escrow, WAIT_SELLER_SEND_GOODS; finished (a payment when the order is
// pending) on TRADE_FINISHED; paid on WAIT_BUYER_CONFIRM_GOODS too; nothing on WAIT_BUYER_PAY; a close on
// TRADE_CLOSED, a full refund when it reports one. The amounts are integer fen.
func TestAlipayLegacyFact(t *testing.T) {
	g := legacyAdapter(t, nil)
	if g.Verifier("alipay") != nil || g.Verifier("wechatpay") != nil {
		t.Fatal("the legacy app verifies at another endpoint")
	}
	cases := []struct {
		status string
		extra  map[string]string
		kind   paynotify.FactKind
		at     string // "" for a zero time
		refund paynotify.Amount
	}{
		{alipaylegacy.TradeSuccess, nil, paynotify.FactPaid, "2026-11-28 10:05:20", 0},
		{alipaylegacy.TradeFinished, map[string]string{"gmt_close": "2026-11-28 10:06:00"}, paynotify.FactFinished, "2026-11-28 10:05:20", 0},
		{alipaylegacy.TradeWaitSellerSendGoods, nil, paynotify.FactPaid, "2026-11-28 10:05:20", 0},
		{alipaylegacy.TradeWaitBuyerPay, map[string]string{"gmt_payment": ""}, paynotify.FactIgnored, "", 0},
		{alipaylegacy.TradeWaitBuyerConfirmGoods, nil, paynotify.FactPaid, "2026-11-28 10:05:20", 0},
		{alipaylegacy.TradeClosed, map[string]string{"gmt_payment": "", "gmt_close": "2026-11-28 12:00:00"}, paynotify.FactClosed, "2026-11-28 12:00:00", 0},
		// A full refund: At (paid_at, when the refund implies the payment) is gmt_payment, or
		// gmt_refund without one (it was gmt_refund: a reviewer helper's finding).
		{alipaylegacy.TradeClosed, map[string]string{"gmt_close": "2026-11-29 09:00:00", "refund_status": "REFUND_SUCCESS", "gmt_refund": "2026-11-29 08:59:59"},
			paynotify.FactRefund, "2026-11-28 10:05:20", 8888},
		{alipaylegacy.TradeClosed, map[string]string{"gmt_payment": "", "gmt_close": "2026-11-29 09:00:00", "refund_status": "REFUND_SUCCESS", "gmt_refund": "2026-11-29 08:59:59"},
			paynotify.FactRefund, "2026-11-29 08:59:59", 8888},
		// Another refund_status is no refund made (REFUND_CLOSED was booked as a full refund: a
		// reviewer helper's finding): a close, an anomaly on a paid order.
		{alipaylegacy.TradeClosed, map[string]string{"gmt_close": "2026-11-29 09:00:00", "refund_status": "REFUND_CLOSED", "gmt_refund": "2026-11-29 08:59:59"},
			paynotify.FactClosed, "2026-11-29 09:00:00", 0},
	}
	for _, c := range cases {
		name := c.status
		if c.extra["refund_status"] != "" {
			name += "+" + c.extra["refund_status"]
		}
		if c.extra["gmt_payment"] == "" && c.extra != nil {
			if _, ok := c.extra["gmt_payment"]; ok {
				name += "+unpaid"
			}
		}
		t.Run(name, func(t *testing.T) {
			fields := legacyFields("legacy_fact_1", c.status)
			for k, v := range c.extra {
				fields[k] = v
			}
			f, err := verifyLegacy(g, md5Notify(fields, lgKey))
			if err != nil {
				t.Fatalf("%v", err)
			}
			if f.Kind != c.kind || f.RefundTotal != c.refund {
				t.Fatalf("fact %s refund %d, want %s refund %d", f.Kind, f.RefundTotal, c.kind, c.refund)
			}
			var at time.Time
			if c.at != "" {
				at = beijing(c.at)
			}
			if !f.At.Equal(at) {
				t.Errorf("At %v, want %v", f.At, at)
			}
			if f.OutTradeNo != "legacy_fact_1" || f.ProviderTradeNo != "2026112821001004880012345678" || f.Amount != 8888 || !f.HasAmount ||
				f.NotificationID != "4e127d6cc7ac3e426b8ed50363625d2f6k" || f.SellerID != lgSeller || f.AppID != "" {
				t.Errorf("fact %+v", f)
			}
		})
	}

	// The same fact from an RSA app (openssl plays Alipay) and from a WAP notification (the
	// fixed-order string over the notify_data XML).
	t.Run("RSA", func(t *testing.T) {
		pub, err := alipaylegacy.ParsePublicKey(readFile(t, lgAliPub))
		if err != nil {
			t.Fatal(err)
		}
		r := legacyAdapter(t, func(c *alipaylegacy.Config, _ *provider.AlipayLegacy) {
			c.SignType, c.MD5Key, c.AlipayPublicKey = alipaylegacy.SignRSA, "", pub
		})
		body := rsaNotify(t, legacyFields("legacy_rsa_1", alipaylegacy.TradeSuccess))
		if f, err := verifyLegacy(r, body); err != nil || f.Kind != paynotify.FactPaid || f.Amount != 8888 || f.OutTradeNo != "legacy_rsa_1" {
			t.Fatalf("RSA: %+v %v", f, err)
		}
		// The MD5 app refuses it (the configuration chooses the algorithm), and so does the RSA
		// app an MD5 notification.
		if _, err := verifyLegacy(g, body); rejectReason(err) != "unsupported_sign_type" {
			t.Fatalf("RSA notification to the MD5 app: %v", err)
		}
		if _, err := verifyLegacy(r, md5Notify(legacyFields("legacy_rsa_2", alipaylegacy.TradeSuccess), lgKey)); rejectReason(err) != "unsupported_sign_type" {
			t.Fatalf("MD5 notification to the RSA app: %v", err)
		}
	})
	t.Run("WAP", func(t *testing.T) {
		nd := "<notify><payment_type>1</payment_type><subject>测试</subject><trade_no>2026112821001004880012345679</trade_no>" +
			"<buyer_email>buyer@example.com</buyer_email><gmt_create>2026-11-28 10:04:00</gmt_create><notify_type>trade_status_sync</notify_type>" +
			"<quantity>1</quantity><out_trade_no>legacy_wap_1</out_trade_no><notify_time>2026-11-28 10:05:21</notify_time>" +
			"<seller_id>" + lgPartner + "</seller_id><trade_status>TRADE_FINISHED</trade_status><total_fee>0.01</total_fee>" +
			"<gmt_payment>2026-11-28 10:05:20</gmt_payment><seller_email>" + lgSeller + "</seller_email>" +
			"<notify_id>wap4e127d6cc7ac3e426b8ed50363625d</notify_id></notify>"
		sign := md5Hex("service=alipay.wap.trade.create.direct&v=1.0&sec_id=MD5&notify_data=" + nd + lgKey)
		body := url.Values{"service": {"alipay.wap.trade.create.direct"}, "v": {"1.0"}, "sec_id": {"MD5"}, "notify_data": {nd}, "sign": {sign}}
		f, err := verifyLegacy(g, []byte(body.Encode()))
		if err != nil || f.Kind != paynotify.FactFinished || f.Amount != 1 || f.OutTradeNo != "legacy_wap_1" ||
			f.ProviderTradeNo != "2026112821001004880012345679" || f.SellerID != lgSeller || !f.At.Equal(beijing("2026-11-28 10:05:20")) {
			t.Fatalf("WAP: %+v %v", f, err)
		}
	})
}

// TestAlipayLegacyFact_RefundOnOpenTrade (a reviewer helper's finding): a partial refund, or an
// escrow buyer's refund request, is reported on a trade that stays open, with no refund amount:
// nothing is booked, but the record says so instead of passing for a plain duplicate.
func TestAlipayLegacyFact_RefundOnOpenTrade(t *testing.T) {
	g := legacyAdapter(t, nil)
	for status, rs := range map[string]string{alipaylegacy.TradeSuccess: "REFUND_SUCCESS", alipaylegacy.TradeWaitSellerSendGoods: "WAIT_SELLER_AGREE"} {
		fields := legacyFields("legacy_refund_open", status)
		fields["refund_status"], fields["gmt_refund"] = rs, "2026-11-29 08:59:59"
		f, err := verifyLegacy(g, md5Notify(fields, lgKey))
		if err != nil || f.Kind != paynotify.FactPaid || f.RefundTotal != 0 || !strings.Contains(f.Detail, "refund_status "+rs) ||
			!strings.Contains(f.Detail, "no refund amount") {
			t.Errorf("%s with refund_status %s: %+v, %v", status, rs, f, err)
		}
	}
}

// rejectReason returns the reason of a *paynotify.RejectError in err's chain, or "".
func rejectReason(err error) string {
	var rej *paynotify.RejectError
	if errors.As(err, &rej) {
		return rej.Reason
	}
	return ""
}

// TestAlipayLegacySeller: the fact names the app's configured seller when the message is about
// it (seller_id when seller_id is configured, else seller_email, ignoring case, else the
// partner), and otherwise what the message says in the field compared, which is not among the
// app's SellerIDs, so the Processor raises seller_mismatch.
func TestAlipayLegacySeller(t *testing.T) {
	const sellerID = "2088000000000002"
	byID := func(c *alipaylegacy.Config, g *provider.AlipayLegacy) {
		c.SellerID, c.SellerEmail, g.Seller = sellerID, "", sellerID
	}
	both := func(c *alipaylegacy.Config, g *provider.AlipayLegacy) { c.SellerID, g.Seller = sellerID, sellerID }
	none := func(c *alipaylegacy.Config, g *provider.AlipayLegacy) { c.SellerEmail, g.Seller = "", lgPartner }
	cases := []struct {
		name                string
		mod                 func(*alipaylegacy.Config, *provider.AlipayLegacy)
		sellerID, sellerEml string // in the message
		want                string
	}{
		{"email/match", nil, lgPartner, lgSeller, lgSeller},
		{"email/match-case", nil, lgPartner, "Seller@Example.COM", lgSeller},
		// An app configured by email is compared by the message's seller_email: the fact names
		// that, not the message's seller_id (the merchant's PID beside the configured email hid
		// what differed: a reviewer helper's finding).
		{"email/other", nil, lgOther, "other@example.com", "other@example.com"},
		{"email/other-email-only", nil, "", "other@example.com", "other@example.com"},
		{"email/absent", nil, lgPartner, "", "(none)"},
		{"id/match", byID, sellerID, "whoever@example.com", sellerID},
		{"id/other", byID, lgOther, lgSeller, lgOther},
		{"id-and-email/id-decides", both, lgOther, lgSeller, lgOther},
		{"none/partner", none, lgPartner, "x@example.com", lgPartner},
		{"none/other", none, lgOther, lgSeller, lgOther},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := legacyAdapter(t, c.mod)
			fields := legacyFields("legacy_seller", alipaylegacy.TradeSuccess)
			fields["seller_id"], fields["seller_email"] = c.sellerID, c.sellerEml
			f, err := verifyLegacy(g, md5Notify(fields, lgKey))
			if err != nil {
				t.Fatal(err)
			}
			if f.SellerID != c.want {
				t.Fatalf("SellerID %q, want %q", f.SellerID, c.want)
			}
		})
	}
}

// fakeNotifyVerify is a notify_verify endpoint on loopback answering answer ("hang": never, until
// the caller gives up; a number: that HTTP status), recording the queries it gets.
func fakeNotifyVerify(t *testing.T, answer string) (string, func() []url.Values) {
	t.Helper()
	var mu sync.Mutex
	var got []url.Values
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.Query())
		mu.Unlock()
		switch answer {
		case "hang":
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		case "500":
			http.Error(w, "busy", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(answer))
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("not on loopback: %s", srv.URL)
	}
	return srv.URL + "/gateway.do?service=notify_verify", func() []url.Values {
		mu.Lock()
		defer mu.Unlock()
		return append([]url.Values(nil), got...)
	}
}

// TestAlipayLegacyNotifyVerify: with notify_verify on, a notification counts only when Alipay
// answers exactly "true" for its notify_id; any other answer refuses it (notify_id_unconfirmed);
// no answer (timeout, HTTP error) is not a verdict: ErrVerifyUnavailable, so that it is answered
// fail and sent again. With it off no call is made. A message whose signature fails never
// causes a call.
func TestAlipayLegacyNotifyVerify(t *testing.T) {
	fields := legacyFields("legacy_nv", alipaylegacy.TradeSuccess)
	body := md5Notify(fields, lgKey)
	on := func(u string, timeout time.Duration) func(*alipaylegacy.Config, *provider.AlipayLegacy) {
		return func(c *alipaylegacy.Config, g *provider.AlipayLegacy) {
			c.NotifyVerifyURL, g.NotifyVerify, g.Timeout = u, true, timeout
		}
	}

	t.Run("off", func(t *testing.T) {
		u, calls := fakeNotifyVerify(t, "false")
		g := legacyAdapter(t, func(c *alipaylegacy.Config, g *provider.AlipayLegacy) { c.NotifyVerifyURL = u })
		if f, err := verifyLegacy(g, body); err != nil || f.Kind != paynotify.FactPaid {
			t.Fatalf("%+v %v", f, err)
		}
		if n := len(calls()); n != 0 {
			t.Fatalf("%d notify_verify calls with notify_verify off", n)
		}
	})
	t.Run("true", func(t *testing.T) {
		u, calls := fakeNotifyVerify(t, "true")
		g := legacyAdapter(t, on(u, 0))
		if f, err := verifyLegacy(g, body); err != nil || f.Kind != paynotify.FactPaid || f.OutTradeNo != "legacy_nv" {
			t.Fatalf("%+v %v", f, err)
		}
		c := calls()
		if len(c) != 1 || c[0].Get("service") != "notify_verify" || c[0].Get("partner") != lgPartner || c[0].Get("notify_id") != fields["notify_id"] {
			t.Fatalf("calls %v", c)
		}
	})
	for _, answer := range []string{"false", "invalid", "TRUE", " true", "true\nfalse", "xtrue", ""} {
		t.Run("answer="+answer, func(t *testing.T) {
			u, calls := fakeNotifyVerify(t, answer)
			g := legacyAdapter(t, on(u, 0))
			_, err := verifyLegacy(g, body)
			var rej *paynotify.RejectError
			if !errors.As(err, &rej) || rej.Reason != provider.ReasonNotifyIDUnconfirmed || rej.OutTradeNo != "legacy_nv" || errors.Is(err, paynotify.ErrVerifyUnavailable) {
				t.Fatalf("answer %q: %v (%+v)", answer, err, rej)
			}
			if len(calls()) != 1 {
				t.Fatalf("calls %v", calls())
			}
		})
	}
	for _, answer := range []string{"hang", "500"} {
		t.Run("unavailable/"+answer, func(t *testing.T) {
			u, calls := fakeNotifyVerify(t, answer)
			g := legacyAdapter(t, on(u, 300*time.Millisecond))
			start := time.Now()
			_, err := verifyLegacy(g, body)
			took := time.Since(start)
			if !errors.Is(err, paynotify.ErrVerifyUnavailable) || rejectReason(err) == provider.ReasonNotifyIDUnconfirmed {
				t.Fatalf("%v", err)
			}
			if answer == "hang" && (took < 300*time.Millisecond || took > 3*time.Second) {
				t.Fatalf("the check took %v with a 300ms timeout", took)
			}
			if len(calls()) != 1 {
				t.Fatalf("calls %v", calls())
			}
			// The Processor keeps the evidence under the order the verified message states,
			// read from a *RejectError in the chain (processor.go).
			var rej *paynotify.RejectError
			if !errors.As(err, &rej) || rej.OutTradeNo != "legacy_nv" {
				t.Errorf("the verify_unavailable error does not carry the out_trade_no for the evidence: %v", err)
			}
		})
	}
	t.Run("bad-signature", func(t *testing.T) {
		u, calls := fakeNotifyVerify(t, "true")
		g := legacyAdapter(t, on(u, 0))
		fs := legacyFields("legacy_nv_bad", alipaylegacy.TradeSuccess)
		tampered := strings.Replace(string(md5Notify(fs, lgKey)), "total_fee=88.88", "total_fee=0.01", 1)
		_, err := verifyLegacy(g, []byte(tampered))
		var rej *paynotify.RejectError
		if !errors.As(err, &rej) || rej.Reason != "signature_invalid" || rej.OutTradeNo != "legacy_nv_bad" {
			t.Fatalf("%v %+v", err, rej)
		}
		if _, err := verifyLegacy(g, md5Notify(fs, strings.Repeat("k", 32))); rejectReason(err) != "signature_invalid" {
			t.Fatalf("wrong key: %v", err)
		}
		if len(calls()) != 0 {
			t.Fatalf("notify_verify called for messages that did not verify: %v", calls())
		}
	})
	t.Run("no-notify_id", func(t *testing.T) {
		u, calls := fakeNotifyVerify(t, "true")
		g := legacyAdapter(t, on(u, 0))
		fs := legacyFields("legacy_nv_noid", alipaylegacy.TradeSuccess)
		delete(fs, "notify_id")
		if _, err := verifyLegacy(g, md5Notify(fs, lgKey)); rejectReason(err) != "missing_field" {
			t.Fatalf("%v", err)
		}
		if len(calls()) != 0 {
			t.Fatalf("calls %v", calls())
		}
	})
}

// TestAlipayLegacyPay: alipay.direct is a create_direct_pay_by_user URL and form signed MD5 over
// the sorted rule, carrying the order and its expiry; alipay.wap_direct asks the WAP gateway for
// a request_token (a fake on loopback that checks the request and signs its answer), then
// returns the signed authAndExecute URL. A refused token request is EPROVIDER with Alipay's code;
// an unreachable gateway EPROVIDERUNAVAILABLE.
func TestAlipayLegacyPay(t *testing.T) {
	ctx := context.Background()
	o := &paynotify.Order{App: "legacy", OutTradeNo: "legacy_pay_1", Channel: paynotify.ChannelAlipayDirect, Amount: 8888,
		Subject: "测试 & <商品>", Body: "body", ExpiresAt: time.Now().Add(30 * time.Minute)}
	const notifyURL, returnURL = "https://pay.example.com/notify/alipay-legacy/legacy", "https://pay.example.com/return/alipay-legacy/legacy"

	t.Run("direct", func(t *testing.T) {
		g := legacyAdapter(t, func(c *alipaylegacy.Config, _ *provider.AlipayLegacy) {
			c.Gateway = "https://mapi.example.com/gateway.do"
		})
		raw, err := g.Pay(ctx, o, notifyURL, returnURL)
		if err != nil {
			t.Fatal(err)
		}
		var p map[string]string
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(p["url"])
		if err != nil || u.Scheme+"://"+u.Host+u.Path != "https://mapi.example.com/gateway.do" {
			t.Fatalf("url %q", p["url"])
		}
		q := map[string]string{}
		for k, v := range u.Query() {
			if len(v) != 1 {
				t.Fatalf("%s sent %d times", k, len(v))
			}
			q[k] = v[0]
		}
		want := map[string]string{"service": "create_direct_pay_by_user", "partner": lgPartner, "_input_charset": "utf-8",
			"out_trade_no": "legacy_pay_1", "subject": o.Subject, "body": "body", "total_fee": "88.88", "notify_url": notifyURL,
			"return_url": returnURL, "it_b_pay": "30m", "seller_email": lgSeller, "payment_type": "1", "sign_type": "MD5"}
		for k, v := range want {
			if q[k] != v {
				t.Errorf("%s = %q, want %q (%s)", k, q[k], v, p["url"])
			}
		}
		if q["sign"] != md5Hex(sortedCanonical(q)+lgKey) {
			t.Fatalf("sign %q does not verify over %q", q["sign"], sortedCanonical(q))
		}
		// The form: the same signed request, its values HTML-escaped.
		if !strings.Contains(p["form"], "https://mapi.example.com/gateway.do") || !strings.Contains(p["form"], q["sign"]) ||
			strings.Contains(p["form"], "<商品>") || !strings.Contains(p["form"], "&lt;商品&gt;") {
			t.Fatalf("form %s", p["form"])
		}
	})

	t.Run("wap", func(t *testing.T) {
		const token = "20261128" + "0123456789abcdef0123456789abcdef"
		var mu sync.Mutex
		var reqs []url.Values
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.ParseForm()
			mu.Lock()
			reqs = append(reqs, r.PostForm)
			mu.Unlock()
			f := map[string]string{}
			for k, v := range r.PostForm {
				f[k] = v[0]
			}
			if f["sign"] != md5Hex(sortedCanonical(f)+lgKey) {
				http.Error(w, "bad sign", http.StatusBadRequest)
				return
			}
			res := `<?xml version="1.0" encoding="utf-8"?><direct_trade_create_res><request_token>` + token + `</request_token></direct_trade_create_res>`
			ans := map[string]string{"partner": f["partner"], "req_id": f["req_id"], "res_data": res, "sec_id": "MD5",
				"service": "alipay.wap.trade.create.direct", "v": "2.0"}
			v := url.Values{}
			for k, x := range ans {
				v.Set(k, x)
			}
			v.Set("sign", md5Hex(sortedCanonical(ans)+lgKey))
			w.Write([]byte(v.Encode()))
		}))
		defer srv.Close()
		g := legacyAdapter(t, func(c *alipaylegacy.Config, _ *provider.AlipayLegacy) { c.WAPGateway = srv.URL + "/service/rest.htm" })
		w := *o
		w.Channel = paynotify.ChannelAlipayWapDirect
		raw, err := g.Pay(ctx, &w, notifyURL, returnURL)
		if err != nil {
			t.Fatal(err)
		}
		var p map[string]string
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		if p["request_token"] != token {
			t.Fatalf("pay %v", p)
		}
		if len(reqs) != 1 {
			t.Fatalf("%d token requests", len(reqs))
		}
		rq := reqs[0]
		rd := rq.Get("req_data")
		for _, s := range []string{"<out_trade_no>legacy_pay_1</out_trade_no>", "<total_fee>88.88</total_fee>", "<notify_url>" + notifyURL + "</notify_url>",
			"<call_back_url>" + returnURL + "</call_back_url>", "<seller_account_name>" + lgSeller + "</seller_account_name>",
			"<pay_expire>30</pay_expire>", "<subject>测试 &amp; &lt;商品&gt;</subject>"} {
			if !strings.Contains(rd, s) {
				t.Errorf("req_data %s lacks %s", rd, s)
			}
		}
		if rq.Get("service") != "alipay.wap.trade.create.direct" || rq.Get("sec_id") != "MD5" || rq.Get("partner") != lgPartner || rq.Get("sign_type") != "" {
			t.Errorf("token request %v", rq)
		}
		u, err := url.Parse(p["url"])
		if err != nil || !strings.HasPrefix(p["url"], srv.URL+"/service/rest.htm?") {
			t.Fatalf("url %q", p["url"])
		}
		q := map[string]string{}
		for k, v := range u.Query() {
			q[k] = v[0]
		}
		if q["service"] != "alipay.wap.auth.authAndExecute" || q["req_data"] != "<auth_and_execute_req><request_token>"+token+"</request_token></auth_and_execute_req>" ||
			q["sec_id"] != "MD5" || q["sign"] != md5Hex(sortedCanonical(q)+lgKey) {
			t.Fatalf("authAndExecute url %v", q)
		}
	})

	t.Run("wap-refused", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			res := `<?xml version="1.0" encoding="utf-8"?><err><code>0005</code><sub_code>0005</sub_code><msg>partner illegal</msg><detail>合作伙伴没有开通接口访问权限</detail></err>`
			w.Write([]byte(url.Values{"res_error": {res}, "partner": {lgPartner}, "service": {"alipay.wap.trade.create.direct"}, "sec_id": {"MD5"}, "v": {"2.0"}}.Encode()))
		}))
		defer srv.Close()
		g := legacyAdapter(t, func(c *alipaylegacy.Config, _ *provider.AlipayLegacy) { c.WAPGateway = srv.URL + "/service/rest.htm" })
		w := *o
		w.Channel = paynotify.ChannelAlipayWapDirect
		_, err := g.Pay(ctx, &w, notifyURL, returnURL)
		var pe *paynotify.Error
		if !errors.As(err, &pe) || pe.Code != paynotify.EPROVIDER || pe.ProviderCode != "0005" || !strings.Contains(pe.Message, "partner illegal") {
			t.Fatalf("%v (%+v)", err, pe)
		}
	})

	t.Run("wap-unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		gw := srv.URL + "/service/rest.htm"
		srv.Close()
		g := legacyAdapter(t, func(c *alipaylegacy.Config, _ *provider.AlipayLegacy) { c.WAPGateway = gw })
		w := *o
		w.Channel = paynotify.ChannelAlipayWapDirect
		if _, err := g.Pay(ctx, &w, notifyURL, returnURL); paynotify.ErrorCode(err) != paynotify.EPROVIDERUNAVAILABLE {
			t.Fatalf("%v", err)
		}
	})

	t.Run("other-channel", func(t *testing.T) {
		g := legacyAdapter(t, nil)
		w := *o
		w.Channel = paynotify.ChannelAlipayPage
		if _, err := g.Pay(ctx, &w, notifyURL, returnURL); paynotify.ErrorCode(err) != paynotify.EINVALID {
			t.Fatalf("%v", err)
		}
	})
}

// TestAlipayLegacyNoServices: close is refused as EPROVIDER that is also ErrNoCloseService (the
// reconciliation then closes locally at expiry); refund is EPROVIDER, not ErrNoCloseService; both
// say why. Query and QueryRefund are ErrNoQueryService.
func TestAlipayLegacyNoServices(t *testing.T) {
	ctx := context.Background()
	g := legacyAdapter(t, nil)
	o := &paynotify.Order{App: "legacy", OutTradeNo: "legacy_ns_1", Channel: paynotify.ChannelAlipayDirect, Amount: 100, Status: paynotify.StatusPending}

	f, err := g.Close(ctx, o)
	if paynotify.ErrorCode(err) != paynotify.EPROVIDER || !errors.Is(err, paynotify.ErrNoCloseService) || f.Kind != "" {
		t.Fatalf("close: %v (%s), fact %+v", err, paynotify.ErrorCode(err), f)
	}
	if msg := paynotify.ErrorMessage(err); !strings.Contains(msg, "no close service") || !strings.Contains(msg, "expiry") {
		t.Fatalf("close message %q", msg)
	}

	rf, err := g.Refund(ctx, o, &paynotify.Refund{OutRequestNo: "legacy_r1", Amount: 100}, "")
	if paynotify.ErrorCode(err) != paynotify.EPROVIDER || errors.Is(err, paynotify.ErrNoCloseService) || rf != nil {
		t.Fatalf("refund: %v (%s), fact %+v", err, paynotify.ErrorCode(err), rf)
	}
	if msg := paynotify.ErrorMessage(err); !strings.Contains(msg, "no refund service") {
		t.Fatalf("refund message %q", msg)
	}

	if ans, err := g.Query(ctx, o); !errors.Is(err, paynotify.ErrNoQueryService) || ans != nil {
		t.Fatalf("query: %+v %v", ans, err)
	}
	if ans, err := g.QueryRefund(ctx, o, &paynotify.Refund{OutRequestNo: "legacy_r1"}); !errors.Is(err, paynotify.ErrNoQueryService) || ans != nil {
		t.Fatalf("query refund: %+v %v", ans, err)
	}
}

// TestAlipayLegacyRegrouped: the mapi rule, like the open platform's, signs the fields joined with
// "&": a genuine notification whose subject is a buyer's "礼物&out_trade_no=L2", regrouped so that
// notify_type takes in its real out_trade_no and the subject's tail becomes out_trade_no=L2, still
// verifies, and is refused before notify_verify (which confirms only its notify_id); so is the
// genuine one holding the text (the reconciliation's query finds that payment). A value holding
// "&" without a field name paynotify decides by passes (extra_common_param as a query string).
func TestAlipayLegacyRegrouped(t *testing.T) {
	g := legacyAdapter(t, nil)
	genuine := legacyFields("L1", alipaylegacy.TradeSuccess)
	genuine["subject"] = "礼物&out_trade_no=L2"
	regrouped := map[string]string{}
	for k, v := range genuine {
		regrouped[k] = v
	}
	delete(regrouped, "subject")
	regrouped["notify_type"] = "trade_status_sync&out_trade_no=L1&payment_type=1&price=88.88&quantity=1&seller_email=" + lgSeller +
		"&seller_id=" + lgPartner + "&subject=礼物"
	delete(regrouped, "payment_type")
	delete(regrouped, "price")
	delete(regrouped, "quantity")
	delete(regrouped, "seller_email")
	delete(regrouped, "seller_id")
	regrouped["out_trade_no"] = "L2"
	if sortedCanonical(regrouped) != sortedCanonical(genuine) {
		t.Fatalf("not the same signed string:\n%s\n%s", sortedCanonical(regrouped), sortedCanonical(genuine))
	}
	for name, fields := range map[string]map[string]string{"Regrouped": regrouped, "Genuine": genuine} {
		_, err := verifyLegacy(g, md5Notify(fields, lgKey))
		var rej *paynotify.RejectError
		if !errors.As(err, &rej) || rej.Reason != paynotify.ReasonMalformed || !strings.Contains(rej.Detail, `holds "&out_trade_no="`) {
			t.Errorf("%s: %v, want malformed", name, err)
		}
	}
	// The text taken in can sit in a field's name too (from a reviewer's read of the fix).
	intoKey := legacyFields("L1", alipaylegacy.TradeSuccess)
	intoKey["subject"] = "礼物&out_trade_no=L2&price=88.88&quantity=1&seller_email=" + lgSeller + "&seller_id=" + lgPartner
	keyed := map[string]string{}
	for k, v := range intoKey {
		keyed[k] = v
	}
	big := "notify_type=trade_status_sync&out_trade_no=L1&payment_type=1&price=88.88&quantity=1&seller_email=" + lgSeller + "&seller_id=" + lgPartner + "&subject"
	for _, k := range []string{"notify_type", "payment_type", "subject"} {
		delete(keyed, k)
	}
	keyed[big] = "礼物"
	keyed["out_trade_no"] = "L2"
	if sortedCanonical(keyed) != sortedCanonical(intoKey) {
		t.Fatalf("not the same signed string:\n%s\n%s", sortedCanonical(keyed), sortedCanonical(intoKey))
	}
	if _, err := verifyLegacy(g, md5Notify(keyed, lgKey)); rejectReason(err) != paynotify.ReasonMalformed {
		t.Errorf("text taken into a field's name: %v, want malformed", err)
	}
	ok := legacyFields("L3", alipaylegacy.TradeSuccess)
	ok["extra_common_param"] = "uid=42&src=web"
	if f, err := verifyLegacy(g, md5Notify(ok, lgKey)); err != nil || f.OutTradeNo != "L3" {
		t.Fatalf("extra_common_param as a query string: %+v, %v", f, err)
	}
}
