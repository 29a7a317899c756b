package e2e_test

import (
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipaylegacy"
	"github.com/paynotify/paynotify/internal/sandboxapps"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/sandbox"
)

// Legacy Alipay (issue 10: the mapi create_direct_pay_by_user and the old WAP pair) against the
// real server and the sandbox's legacy simulator, on both stores: payments through each channel
// with MD5 and RSA (sec_id 0001 on the WAP pair), the notify_verify check (unconfirmed, timed
// out), the notifications that must be refused, the order API without query, close and refund
// services, and the return route.

const (
	legacyDemo = sandboxapps.Legacy // MD5, seller_email, notify_verify over gateway.do
	legacyRSA  = "alipay-legacy-rsa"
)

// addLegacyApp adds a legacy app on the sandbox's default partner: the demo app's settings (MD5,
// the partner's seller_email, notify_verify on) as changed by mod. Call it before the env serves
// any request for the app.
func (e *env) addLegacyApp(name string, mod func(c *alipaylegacy.Config, g *provider.AlipayLegacy)) *paynotify.App {
	e.t.Helper()
	k := e.keys
	cfg := alipaylegacy.Config{Partner: k.LegacyPartner, SignType: alipaylegacy.SignMD5, MD5Key: k.LegacyMD5Key,
		SellerEmail: k.LegacySellerEmail, Gateway: e.sbURL + "/sandbox/alipay-legacy/gateway.do",
		WAPGateway: e.sbURL + "/sandbox/alipay-legacy/wap/rest.htm", NotifyVerifyURL: e.sbURL + "/sandbox/alipay-legacy/gateway.do?service=notify_verify"}
	g := &provider.AlipayLegacy{NotifyVerify: true, Seller: k.LegacySellerEmail}
	if mod != nil {
		mod(&cfg, g)
	}
	c, err := alipaylegacy.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	g.Client = c
	a := &paynotify.App{Name: name, Provider: paynotify.ProviderAlipayLegacy, SellerIDs: []string{g.Seller}, Gateway: g,
		ReturnURL: e.URL + "/shop/paid", Reconcile: paynotify.DefaultReconcile}
	e.svc.Apps[name] = a
	return a
}

// rsaLegacy configures an RSA app from the sandbox's legacy keys: Alipay's public key verifies
// what Alipay signs, the merchant key signs requests and decrypts 0001 data. notify_verify goes
// over the http form (trade/notify_query.do).
func (e *env) rsaLegacy(c *alipaylegacy.Config, _ *provider.AlipayLegacy) {
	e.t.Helper()
	pub, err := alipaylegacy.ParsePublicKey([]byte(e.keys.LegacyAlipayPublicKey))
	if err != nil {
		e.t.Fatal(err)
	}
	priv, err := alipaylegacy.ParsePrivateKey([]byte(e.keys.LegacyMerchantPrivateKey))
	if err != nil {
		e.t.Fatal(err)
	}
	c.SignType, c.MD5Key, c.AlipayPublicKey, c.MerchantPrivateKey = alipaylegacy.SignRSA, "", pub, priv
	c.NotifyVerifyURL = e.sbURL + "/sandbox/alipay-legacy/trade/notify_query.do"
}

// createLegacy creates an order of a legacy app through the API.
func (e *env) createLegacy(app, channel, otn string, extra ...string) order {
	e.t.Helper()
	return e.create(channel, otn, 1234, append([]string{"app", app}, extra...)...)
}

// legacyPayParams reads the pay parameters of a legacy order and checks their shape.
func (e *env) legacyPayParams(o order) map[string]string {
	e.t.Helper()
	var p map[string]string
	mustUnmarshal(e.t, o.Pay, &p)
	u, err := url.Parse(p["url"])
	if err != nil {
		e.t.Fatalf("pay url %q: %v", p["url"], err)
	}
	q := u.Query()
	switch o.Channel {
	case paynotify.ChannelAlipayDirect:
		if u.Path != "/sandbox/alipay-legacy/gateway.do" || q.Get("service") != "create_direct_pay_by_user" || q.Get("out_trade_no") != o.OutTradeNo ||
			q.Get("total_fee") != "12.34" || q.Get("notify_url") != e.URL+"/notify/alipay-legacy/"+o.App ||
			q.Get("return_url") != e.URL+"/return/alipay-legacy/"+o.App || q.Get("sign") == "" {
			e.t.Fatalf("direct pay url %s", p["url"])
		}
		if !strings.Contains(p["form"], `name="sign"`) || !strings.Contains(p["form"], "/sandbox/alipay-legacy/gateway.do") {
			e.t.Fatalf("direct pay form %q", p["form"])
		}
	case paynotify.ChannelAlipayWapDirect:
		if u.Path != "/sandbox/alipay-legacy/wap/rest.htm" || q.Get("service") != alipaylegacy.ServiceWAPAuthAndExecute || p["request_token"] == "" ||
			!strings.Contains(q.Get("req_data"), "<request_token>"+p["request_token"]+"</request_token>") || q.Get("sign_type") != "" {
			e.t.Fatalf("WAP pay %v", p)
		}
	}
	return p
}

// payLegacy plays the buyer: the browser opens the pay URL (the mapi gateway or the WAP
// authAndExecute URL), pays on the cashier, and is sent to our return route, which sends it on
// to the app's return page. It returns the signed return URL Alipay sent the browser to.
func (e *env) payLegacy(o order) string {
	e.t.Helper()
	p := e.legacyPayParams(o)
	resp, page := e.browse("GET", p["url"], "", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Sandbox-Error") != "" {
		e.t.Fatalf("cashier: HTTP %d %s: %s", resp.StatusCode, resp.Header.Get("X-Sandbox-Error"), page)
	}
	resp, _ = e.click(page, "Pay")
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, e.URL+"/return/alipay-legacy/"+o.App+"?") {
		e.t.Fatalf("after paying: HTTP %d to %q, want a redirect to our legacy return URL", resp.StatusCode, loc)
	}
	e.checkLegacyReturn(o.App, o.OutTradeNo, loc)
	return loc
}

// checkLegacyReturn visits a return URL and checks that it redirects to the app's return page.
func (e *env) checkLegacyReturn(app, otn, rawURL string) {
	e.t.Helper()
	resp, _ := e.browse("GET", rawURL, "", nil)
	next, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || next.Path != "/shop/paid" || next.Query().Get("app") != app || next.Query().Get("out_trade_no") != otn {
		e.t.Fatalf("return URL %s: HTTP %d to %q", rawURL, resp.StatusCode, resp.Header.Get("Location"))
	}
}

// notifyVerifies returns the sandbox's notify_verify answers about an order, in call order.
func (e *env) notifyVerifies(otn string) []string {
	var out []string
	for _, q := range e.sb.Queries(sandbox.QueryFilter{API: sandbox.APILegacyNotifyVerify, OutTradeNo: otn}) {
		out = append(out, q.Result)
	}
	return out
}

// checkLegacyPaid waits for a legacy order to be paid by one notification, answered exactly
// success after notify_verify confirmed it: one order.paid event, one accepted evidence record.
func (e *env) checkLegacyPaid(app, otn string) *sandbox.Attempt {
	e.t.Helper()
	o := e.waitStatus(app, otn, "paid")
	tr := e.trade(otn)
	if o.Version != 2 || o.ProviderTradeNo == "" || o.ProviderTradeNo != tr.TradeNo || o.PaidAt == nil {
		e.t.Fatalf("order %+v, sandbox trade %s %s", o, tr.TradeNo, tr.Status)
	}
	as := e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn}, 1)
	if len(as) != 1 || as[0].Status != http.StatusOK || as[0].Response != "success" {
		e.t.Fatalf("attempts: %s", summary(as))
	}
	e.checkEvents(otn, "order.paid@v2")
	evs := e.checkVerdicts(otn, map[string]int{"accepted": 1})
	if evs[0].Answer != "success" || evs[0].OrderVersion != 2 {
		e.t.Fatalf("evidence %+v", evs[0])
	}
	if got := strings.Join(e.notifyVerifies(otn), ","); got != "true" {
		e.t.Fatalf("notify_verify answers %q, want one true", got)
	}
	return as[0]
}

// postNotify posts a notification body to the app's legacy notify URL, as Alipay would, and
// returns the answer.
func (e *env) postNotify(app string, body []byte) (int, string) {
	e.t.Helper()
	resp, answer := e.browse("POST", e.URL+"/notify/alipay-legacy/"+app, "application/x-www-form-urlencoded", strings.NewReader(string(body)))
	return resp.StatusCode, answer
}

// TestLegacyChannels: an order paid through each legacy channel, with the MD5 demo app and with
// an RSA app (0001 on the WAP pair: notify_data arrives encrypted), ends paid through one
// notification answered exactly success; the return route verifies the return and redirects,
// also for a tampered return.
func TestLegacyChannels(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		e.addLegacyApp(legacyRSA, e.rsaLegacy)
		cases := []struct {
			app, channel, otn string
			signType, secID   string // the notification's sign_type (mapi) or sec_id (WAP)
		}{
			{legacyDemo, paynotify.ChannelAlipayDirect, "e2e_legacy_md5_direct", "MD5", ""},
			{legacyDemo, paynotify.ChannelAlipayWapDirect, "e2e_legacy_md5_wap", "", "MD5"},
			{legacyRSA, paynotify.ChannelAlipayDirect, "e2e_legacy_rsa_direct", "RSA", ""},
			{legacyRSA, paynotify.ChannelAlipayWapDirect, "e2e_legacy_rsa_wap", "", "0001"},
		}
		for _, c := range cases {
			o := e.createLegacy(c.app, c.channel, c.otn)
			ret := e.payLegacy(o)
			a := e.checkLegacyPaid(c.app, c.otn)
			if tr := e.trade(c.otn); tr.SignType != c.signType+c.secID {
				t.Fatalf("%s: the sandbox trade was signed %s", c.otn, tr.SignType)
			}
			f, err := url.ParseQuery(string(a.RequestBody))
			if err != nil {
				t.Fatal(err)
			}
			if f.Get("sign_type") != c.signType || f.Get("sec_id") != c.secID {
				t.Fatalf("%s: notification %s", c.otn, a.RequestBody)
			}
			if c.secID != "" {
				// The WAP notification: notify_data, in plaintext under MD5, encrypted under 0001.
				nd := f.Get("notify_data")
				if plain := strings.HasPrefix(nd, "<notify>"); plain != (c.secID == "MD5") || (plain && !strings.Contains(nd, "<out_trade_no>"+c.otn+"<")) {
					t.Fatalf("%s: notify_data %q", c.otn, nd)
				}
			} else if f.Get("out_trade_no") != c.otn || f.Get("total_fee") != "12.34" {
				t.Fatalf("%s: notification %s", c.otn, a.RequestBody)
			}

			// The return: signed by the sandbox, verified by the app; a tampered one does not
			// verify and still sends the buyer on (the return never changes an order).
			gw := e.svc.Apps[c.app].Gateway.(paynotify.ReturnVerifier)
			u, _ := url.Parse(ret)
			if err := gw.VerifyReturn(u.RawQuery); err != nil {
				t.Fatalf("%s: the sandbox's return does not verify: %v (%s)", c.otn, err, ret)
			}
			tampered := strings.Replace(ret, "&trade_no=", "&trade_no=1", 1)
			tu, _ := url.Parse(tampered)
			if tampered == ret || gw.VerifyReturn(tu.RawQuery) == nil {
				t.Fatalf("%s: a tampered return verifies: %s", c.otn, tampered)
			}
			e.checkLegacyReturn(c.app, c.otn, tampered)
			if got := e.get(c.app, c.otn, 0); got.Version != 2 {
				t.Fatalf("%s: the returns changed the order: %+v", c.otn, got)
			}
		}
	})
}

// TestLegacyNotifyVerify: a notification whose notify_id the sandbox does not confirm is refused
// (notify_id_unconfirmed) on every attempt; a notify_verify that times out answers fail
// (verify_unavailable, an error, not a verdict), and Alipay's retry, confirmed, pays the order.
func TestLegacyNotifyVerify(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		const slowApp = "alipay-legacy-1s"
		e.addLegacyApp(slowApp, func(_ *alipaylegacy.Config, g *provider.AlipayLegacy) { g.Timeout = time.Second })

		const unconfirmed = "e2e_legacy_nv_false"
		e.faults(unconfirmed, sandbox.Faults{NotifyVerify: sandbox.NotifyVerifyFalse})
		e.payLegacy(e.createLegacy(legacyDemo, paynotify.ChannelAlipayDirect, unconfirmed))
		e.checkRefused(legacyDemo, unconfirmed, "rejected", provider.ReasonNotifyIDUnconfirmed)
		e.checkEvents(unconfirmed)
		for _, r := range e.notifyVerifies(unconfirmed) {
			if r != "false" {
				t.Fatalf("notify_verify answers %v", e.notifyVerifies(unconfirmed))
			}
		}

		const timeout = "e2e_legacy_nv_timeout"
		e.faults(timeout, sandbox.Faults{NotifyVerify: sandbox.NotifyVerifyTimeout, NotifyVerifyTimes: 1})
		e.payLegacy(e.createLegacy(slowApp, paynotify.ChannelAlipayWapDirect, timeout))
		e.waitStatus(slowApp, timeout, "paid")
		as := e.waitAcked(sandbox.AttemptFilter{OutTradeNo: timeout}, 1)
		if len(as) != 2 || as[0].Acked || as[0].Status != http.StatusOK || as[0].Response != "fail" ||
			as[0].Latency.D() < time.Second || !as[1].Acked || as[1].Response != "success" || as[1].N != 2 || as[0].NotifyID != as[1].NotifyID {
			t.Fatalf("attempts: %s", summary(as))
		}
		if got := strings.Join(e.notifyVerifies(timeout), ","); got != "timeout,true" {
			t.Fatalf("notify_verify answers %q", got)
		}
		e.checkEvents(timeout, "order.paid@v2")
		// The app's evidence: the unanswered check (an error, answered fail) and the payment.
		evs := e.evidenceQuery("app=" + slowApp)
		if got := verdicts(evs); len(evs) != 2 || got["accepted"] != 1 || got["error/verify_unavailable"] != 1 {
			t.Fatalf("evidence of %s: %v", slowApp, got)
		}
		for _, ev := range evs {
			if ev.Verdict == "error" && (ev.Answer != "fail" || !strings.Contains(ev.Detail, "notify_verify") || ev.OrderVersion != 0) {
				t.Fatalf("evidence %+v", ev)
			}
			if ev.OutTradeNo != timeout {
				t.Errorf("%s evidence carries out_trade_no %q, want %q: it is not found by its order", ev.Verdict, ev.OutTradeNo, timeout)
			}
		}
		// Both are found by the order (the error's out_trade_no is the one the verified message
		// states).
		e.checkVerdicts(timeout, map[string]int{"accepted": 1, "error/verify_unavailable": 1})
	})
}

// TestLegacyRefused: notifications that must not count: a bad signature, a key that is not the
// partner's, a GBK message signed over its UTF-8 text, a field sent twice, a notification for
// another seller, a captured body altered, and a captured body replayed after it was
// acknowledged. None of them reaches notify_verify unless its signature holds, and none changes
// the order. A GBK order whose notifications are right is paid.
func TestLegacyRefused(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{scale: 5000})
		const wrongKeyApp, gbkApp, dupApp = "alipay-legacy-wrongkey", "alipay-legacy-gbk", "alipay-legacy-dup"
		// The wrong-key app pays with the partner's key but verifies with another MD5 key.
		right := e.addLegacyApp(wrongKeyApp, nil).Gateway.(*provider.AlipayLegacy)
		wrong := e.addLegacyApp("alipay-legacy-other-key", func(c *alipaylegacy.Config, _ *provider.AlipayLegacy) {
			c.MD5Key = strings.Repeat("k", 32)
		}).Gateway.(*provider.AlipayLegacy)
		e.svc.Apps[wrongKeyApp].Gateway = verifyWith{right, wrong}
		e.addLegacyApp(gbkApp, func(c *alipaylegacy.Config, _ *provider.AlipayLegacy) { c.InputCharset = "gbk" })
		e.addLegacyApp(dupApp, nil)

		refused := []struct {
			app, channel, otn string
			faults            sandbox.Faults
			verdict, reason   string
			extra             []string
		}{
			{legacyDemo, paynotify.ChannelAlipayDirect, "e2e_legacy_badsig", sandbox.Faults{BadSignature: true}, "rejected", "signature_invalid", nil},
			{legacyDemo, paynotify.ChannelAlipayWapDirect, "e2e_legacy_badsig_wap", sandbox.Faults{BadSignature: true}, "rejected", "signature_invalid", nil},
			{legacyDemo, paynotify.ChannelAlipayWapDirect, "e2e_legacy_sorted", sandbox.Faults{LegacySignature: sandbox.LegacySigSortedOrder}, "rejected", "signature_invalid", nil},
			{wrongKeyApp, paynotify.ChannelAlipayDirect, "e2e_legacy_wrongkey", sandbox.Faults{}, "rejected", "signature_invalid", nil},
			{gbkApp, paynotify.ChannelAlipayDirect, "e2e_legacy_gbk_as_utf8", sandbox.Faults{LegacySignature: sandbox.LegacySigGBKAsUTF8}, "rejected", "signature_invalid", []string{"subject", "测试商品：中文标题"}},
			{legacyDemo, paynotify.ChannelAlipayDirect, "e2e_legacy_seller", sandbox.Faults{WrongAppID: true}, "anomaly", paynotify.ReasonSellerMismatch, nil},
		}
		dups := []order{}
		for _, c := range refused {
			e.faults(c.otn, c.faults)
			e.payLegacy(e.createLegacy(c.app, c.channel, c.otn, c.extra...))
		}
		for _, ch := range []string{paynotify.ChannelAlipayDirect, paynotify.ChannelAlipayWapDirect} {
			otn := "e2e_legacy_dup_" + strings.TrimPrefix(ch, "alipay.")
			e.faults(otn, sandbox.Faults{DuplicateFields: true})
			o := e.createLegacy(dupApp, ch, otn)
			e.payLegacy(o)
			dups = append(dups, o)
		}
		for _, c := range refused {
			e.checkRefused(c.app, c.otn, c.verdict, c.reason)
			if c.verdict == "anomaly" {
				e.checkEvents(c.otn, "order.anomaly@v1")
			} else {
				e.checkEvents(c.otn)
				// An unverified message must not make us call notify_verify.
				if nv := e.notifyVerifies(c.otn); len(nv) != 0 {
					t.Fatalf("%s: notify_verify called for a message that did not verify: %v", c.otn, nv)
				}
			}
		}

		// A GBK order with a Chinese subject, notified in GBK and signed over the GBK bytes: paid.
		const gbk = "e2e_legacy_gbk"
		const subject = "测试商品：中文标题"
		e.payLegacy(e.createLegacy(gbkApp, paynotify.ChannelAlipayDirect, gbk, "subject", subject))
		a := e.checkLegacyPaid(gbkApp, gbk)
		wantGBK, err := simplifiedchinese.GBK.NewEncoder().String(subject)
		if err != nil {
			t.Fatal(err)
		}
		if f, err := url.ParseQuery(string(a.RequestBody)); err != nil || f.Get("subject") != wantGBK {
			t.Fatalf("GBK notification %s", a.RequestBody)
		}

		// A captured, accepted notification: altered, it does not verify; replayed as it was after
		// it was acknowledged, notify_verify no longer confirms it. The order stays as it was.
		const otn = "e2e_legacy_replay"
		e.payLegacy(e.createLegacy(legacyDemo, paynotify.ChannelAlipayDirect, otn))
		acked := e.checkLegacyPaid(legacyDemo, otn)
		altered := strings.Replace(string(acked.RequestBody), "total_fee=12.34", "total_fee=0.01", 1)
		if altered == string(acked.RequestBody) {
			t.Fatalf("no total_fee in %s", acked.RequestBody)
		}
		if code, answer := e.postNotify(legacyDemo, []byte(altered)); code != http.StatusOK || answer != "fail" {
			t.Fatalf("altered notification: HTTP %d %q", code, answer)
		}
		if code, answer := e.postNotify(legacyDemo, acked.RequestBody); code != http.StatusOK || answer != "fail" {
			t.Fatalf("replayed notification: HTTP %d %q", code, answer)
		}
		if got := strings.Join(e.notifyVerifies(otn), ","); got != "true,false" {
			t.Fatalf("notify_verify answers %q, want true (the delivery), false (the replay)", got)
		}
		e.checkVerdicts(otn, map[string]int{"accepted": 1, "rejected/signature_invalid": 1, "rejected/" + provider.ReasonNotifyIDUnconfirmed: 1})
		e.checkEvents(otn, "order.paid@v2")
		if got := e.get(legacyDemo, otn, 0); got.Status != "paid" || got.Version != 2 {
			t.Fatalf("order after the replay: %+v", got)
		}

		// A field sent twice (total_fee on mapi, notify_data on WAP) is refused as duplicate_key
		// (PHP would keep the last copy, Java join them: what was signed is ambiguous), before
		// notify_verify, on every attempt.
		for _, o := range dups {
			e.waitAttempts(sandbox.AttemptFilter{OutTradeNo: o.OutTradeNo}, 3)
		}
		byDetail := map[string]int{}
		for _, ev := range e.evidenceQuery("app=" + dupApp) {
			byDetail[ev.Verdict+"/"+ev.Reason+" "+ev.Detail]++
		}
		if len(byDetail) != 2 || byDetail[`rejected/duplicate_key duplicate key "total_fee"`] < 3 || byDetail[`rejected/duplicate_key duplicate key "notify_data"`] < 3 {
			t.Fatalf("evidence of the duplicate-field notifications: %v", byDetail)
		}
		for _, o := range dups {
			if nv := e.notifyVerifies(o.OutTradeNo); len(nv) != 0 {
				t.Fatalf("%s: notify_verify called for a message that did not verify: %v", o.OutTradeNo, nv)
			}
			e.checkEvents(o.OutTradeNo)
			// The evidence is found by the order the message claims, like every rejected one.
			if len(e.evidence(o.OutTradeNo)) == 0 {
				t.Fatalf("%s: the duplicate_key evidence carries no out_trade_no (the one the body claims): it is not found by its order", o.OutTradeNo)
			}
			e.checkRefused(dupApp, o.OutTradeNo, "rejected", "duplicate_key")
		}
	})
}

// verifyWith is a legacy app that pays with one client and verifies notifications with another.
type verifyWith struct {
	*provider.AlipayLegacy
	v *provider.AlipayLegacy
}

func (w verifyWith) Verifier(endpoint string) paynotify.Verifier { return w.v.Verifier(endpoint) }

// TestLegacyOrderAPI: legacy Alipay has no close or refund service: closing answers 422
// provider_error and refunding a paid order 422 with a message that says why (the refund is
// recorded failed, the order keeps its money); an expired order is closed locally by the
// reconciliation, without any call to the provider, and a payment notified after that is still
// applied (late_payment).
func TestLegacyOrderAPI(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		var skew atomic.Int64
		now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		e := newEnv(t, s, options{reconcile: fastReconcile, serverNow: now})

		// Close: refused, the order stays pending.
		const pending = "e2e_legacy_close"
		e.createLegacy(legacyDemo, paynotify.ChannelAlipayDirect, pending)
		var ae apiError
		if code := e.api("POST", "/v1/orders/"+legacyDemo+"/"+pending+"/close", nil, &ae); code != http.StatusUnprocessableEntity ||
			ae.Error.Code != paynotify.EPROVIDER || !strings.Contains(ae.Error.Message, "no close service") {
			t.Fatalf("close: HTTP %d %+v", code, ae)
		}
		if got := e.get(legacyDemo, pending, 0); got.Status != "pending" || got.Version != 1 {
			t.Fatalf("after close: %+v", got)
		}

		// Refund: refused with the reason, recorded failed.
		const paid = "e2e_legacy_refund"
		e.payLegacy(e.createLegacy(legacyDemo, paynotify.ChannelAlipayWapDirect, paid))
		e.checkLegacyPaid(legacyDemo, paid)
		var re apiError
		if code := e.api("POST", "/v1/orders/"+legacyDemo+"/"+paid+"/refunds", map[string]any{"amount": 100, "out_request_no": "legacy_r1"}, &re); code != http.StatusUnprocessableEntity ||
			re.Error.Code != paynotify.EPROVIDER || !strings.Contains(re.Error.Message, "no refund service") {
			t.Fatalf("refund: HTTP %d %+v", code, re)
		}
		if rs := e.refunds(legacyDemo, paid); len(rs) != 1 || rs[0].Status != "failed" || rs[0].OutRequestNo != "legacy_r1" {
			t.Fatalf("refunds %+v", rs)
		}
		if got := e.get(legacyDemo, paid, 0); got.Status != "paid" || got.RefundedAmount != 0 {
			t.Fatalf("after the refund: %+v", got)
		}
		e.checkEvents(paid, "order.paid@v2", "refund.failed@v3")

		// Expiry: one order of each channel, the buyer on the cashier but not paying. Past their
		// expiry (the server's clock), the reconciliation closes them locally.
		var expiring []order
		for _, ch := range []string{paynotify.ChannelAlipayDirect, paynotify.ChannelAlipayWapDirect} {
			o := e.createLegacy(legacyDemo, ch, "e2e_legacy_expire_"+strings.TrimPrefix(ch, "alipay."), "expires_in", "1m")
			p := e.legacyPayParams(o)
			if resp, page := e.browse("GET", p["url"], "", nil); resp.StatusCode != http.StatusOK || !strings.Contains(page, "Pay") {
				t.Fatalf("cashier: HTTP %d %s", resp.StatusCode, page)
			}
			expiring = append(expiring, o)
		}
		skew.Store(int64(2 * time.Minute))
		for _, o := range expiring {
			e.waitStatus(legacyDemo, o.OutTradeNo, "closed")
			e.checkEvents(o.OutTradeNo, "order.closed@v2")
			if qs := e.sb.Queries(sandbox.QueryFilter{OutTradeNo: o.OutTradeNo}); len(qs) != 0 {
				t.Fatalf("%s: provider calls %+v", o.OutTradeNo, qs)
			}
			if ev := e.evidence(o.OutTradeNo); len(ev) != 0 {
				t.Fatalf("%s: evidence %+v", o.OutTradeNo, ev)
			}
		}
		// The pending order of the close test was created with the default 2 h: still pending.
		if got := e.get(legacyDemo, pending, 0); got.Status != "pending" {
			t.Fatalf("%s: %+v", pending, got)
		}
		// The buyer pays one of them anyway (the sandbox's clock has not moved): the verified
		// payment is applied, and flagged.
		late := expiring[0]
		p := e.legacyPayParams(late)
		if _, _, err := e.sbc.LegacyPay(e.ctx, p["url"]); err != nil {
			t.Fatal(err)
		}
		e.waitAcked(sandbox.AttemptFilter{OutTradeNo: late.OutTradeNo}, 1)
		got := e.get(legacyDemo, late.OutTradeNo, 0)
		if got.Status != "paid" {
			t.Fatalf("late payment: %+v", got)
		}
		evs := e.checkEvents(late.OutTradeNo, "order.closed@v2", "order.paid@v3", "order.anomaly@v3")
		if a := evs[2].Data.Anomaly; a == nil || a.Reason != paynotify.ReasonLatePayment {
			t.Fatalf("anomaly %+v", a)
		}
	})
}
