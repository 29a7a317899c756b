package sandbox

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// directParams is a create_direct_pay_by_user request whose values hold & = % + and Chinese.
func directParams(b *testBundle, no, notifyURL string) kvs {
	return kvs{{"service", "create_direct_pay_by_user"}, {"partner", b.keys.LegacyPartner}, {"_input_charset", "utf-8"},
		{"payment_type", "1"}, {"notify_url", notifyURL}, {"return_url", "http://merchant.example/alipay/return"},
		{"seller_email", b.keys.LegacySellerEmail}, {"out_trade_no", no}, {"subject", "测试商品 No.1"}, {"total_fee", "88.88"},
		{"body", "大乐透2.1 & friends = 100% +1"}, {"extra_common_param", "uid=42&src=web"}, {"anti_phishing_key", ""}}
}

// TestLegacy_DirectPay runs create_direct_pay_by_user signed MD5 and RSA: a forged request is
// refused, a signed one shows the cashier; paying redirects to a signed return_url with a
// double-encoded notify_id and sends a notification that verifies (independent verifier, openssl
// for RSA) and whose notify_id notify_verify confirms while it is unacknowledged only.
func TestLegacy_DirectPay(t *testing.T) {
	t.Parallel()
	for _, st := range []string{"MD5", "RSA"} {
		t.Run(st, func(t *testing.T) {
			t.Parallel()
			b := setupLegacy(t, 1000, nil, nil, true)
			var mu sync.Mutex
			var atn []string
			m := newMerchant(t, func(_ int, _ *http.Request, body []byte) (int, string) {
				f, err := b.tVerifyMapi(string(body), st)
				if err != nil {
					return 200, "fail"
				}
				ans, err := b.tNotifyVerify(b.keys.LegacyPartner, f.get("notify_id"))
				mu.Lock()
				atn = append(atn, ans)
				mu.Unlock()
				if err != nil || ans != "true" {
					return 200, "fail"
				}
				return 200, "success"
			})
			no := "leg_direct_" + st
			payURL := b.legacyURL(t, "gateway.do", directParams(b, no, m.srv.URL+"/alipay/notify"), st)

			// Forged: an amount changed after signing, a sign of the other key.
			_, code, _ := tGetPage(t, strings.Replace(payURL, "total_fee=88.88", "total_fee=0.01", 1))
			if code != "ILLEGAL_SIGN" {
				t.Fatalf("tampered request: error %q", code)
			}
			if ts, _ := b.sb.Trades(ProviderAlipayLegacy, no); len(ts) != 0 {
				t.Fatal("a refused request created a trade")
			}
			// Signed: the cashier.
			status, code, page := tGetPage(t, payURL)
			if status != 200 || code != "" || !strings.Contains(page, no) || !strings.Contains(page, "88.88") {
				t.Fatalf("cashier: %d %q %s", status, code, page)
			}
			tr := legacyTrade(t, b, no)
			if tr.Status != "WAIT_BUYER_PAY" || tr.Amount != 8888 || tr.SignType != st || tr.Passback != "uid=42&src=web" {
				t.Fatalf("trade %+v", tr)
			}
			// A second visit shows the same trade.
			if _, code, _ := tGetPage(t, payURL); code != "" {
				t.Fatalf("second visit: %s", code)
			}

			resp := tCashierPost(t, b, tr.Token, "pay")
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, "http://merchant.example/alipay/return?") {
				t.Fatalf("pay: %d %q", resp.StatusCode, loc)
			}
			query := loc[strings.Index(loc, "?")+1:]
			ret, err := b.tVerifyMapi(query, st)
			if err != nil {
				t.Fatalf("return_url does not verify: %v\n%s", err, query)
			}
			nid := ret.get("notify_id")
			if !strings.Contains(query, "%252F") || !strings.Contains(nid, "%2F") || !strings.Contains(nid, "%2B") {
				t.Fatalf("return notify_id is not double-encoded: %q in %s", nid, query)
			}
			if ret.get("is_success") != "T" || ret.get("trade_status") != "TRADE_SUCCESS" || ret.get("total_fee") != "88.88" ||
				ret.get("exterface") != "create_direct_pay_by_user" || ret.get("extra_common_param") != "uid=42&src=web" ||
				ret.get("out_trade_no") != no || ret.get("seller_id") != b.keys.LegacyPartner {
				t.Fatalf("return fields %v", ret)
			}
			// notify_verify: the once-decoded notify_id verbatim is confirmed; decoded twice or
			// re-encoded it is not.
			for _, c := range []struct{ id, want string }{
				{nid, "true"}, {mustUnescape(t, nid), "false"}, {url.QueryEscape(nid), "false"}, {nid, "true"},
			} {
				if got, err := b.tNotifyVerify(b.keys.LegacyPartner, c.id); err != nil || got != c.want {
					t.Errorf("notify_verify(%q) = %q %v, want %s", c.id, got, err, c.want)
				}
			}

			ctx := waitCtx(t, 20*time.Second)
			as, err := b.sb.WaitAcked(ctx, AttemptFilter{Provider: ProviderAlipayLegacy, OutTradeNo: no}, 1)
			if err != nil || len(as) != 1 {
				t.Fatalf("acked attempts: %v %+v", err, as)
			}
			reqs := m.requests()
			r := reqs[0]
			if ct := r.header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type %q", ct)
			}
			f, err := b.tVerifyMapi(string(r.body), st)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"trade_status": "TRADE_SUCCESS", "total_fee": "88.88", "price": "88.88", "quantity": "1",
				"out_trade_no": no, "seller_id": b.keys.LegacyPartner, "seller_email": b.keys.LegacySellerEmail, "notify_type": "trade_status_sync",
				"subject": "测试商品 No.1", "body": "大乐透2.1 & friends = 100% +1", "extra_common_param": "uid=42&src=web",
				"payment_type": "1", "discount": "0.00", "is_total_fee_adjust": "N", "use_coupon": "N", "trade_no": tr.TradeNo}
			for k, v := range want {
				if f.get(k) != v {
					t.Errorf("%s = %q, want %q", k, f.get(k), v)
				}
			}
			for _, k := range []string{"notify_time", "gmt_create", "gmt_payment", "buyer_id", "buyer_email"} {
				if f.get(k) == "" {
					t.Errorf("%s missing", k)
				}
			}
			if len(f.get("notify_id")) != 34 || as[0].NotifyID != f.get("notify_id") {
				t.Errorf("notify_id %q", f.get("notify_id"))
			}
			mu.Lock()
			if len(atn) != 1 || atn[0] != "true" {
				t.Errorf("notify_verify during delivery: %v", atn)
			}
			mu.Unlock()
			// Acknowledged: its notify_id is no longer confirmed (a replay is refused).
			if got, _ := b.tNotifyVerify(b.keys.LegacyPartner, f.get("notify_id")); got != "false" {
				t.Errorf("notify_verify after the acknowledgement: %q", got)
			}
			// Paid: the pay URL is refused now.
			if _, code, _ := tGetPage(t, payURL); code != "TRADE_HAS_SUCCESS" {
				t.Errorf("pay URL of a paid trade: %q", code)
			}
		})
	}
}

func mustUnescape(t *testing.T, s string) string {
	t.Helper()
	v, err := url.QueryUnescape(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLegacy_GatewayRefusals checks the mapi gateway's error codes.
func TestLegacy_GatewayRefusals(t *testing.T) {
	t.Parallel()
	b := setupLegacy(t, 1, nil, nil, false)
	base := directParams(b, "leg_refuse", "http://merchant.example/notify")
	for _, c := range []struct {
		name   string
		params kvs
		st     string
		tamper func(string) string
		want   string
	}{
		{"unknown service", base.set("service", "create_something"), "MD5", nil, "ILLEGAL_SERVICE"},
		{"unknown partner", base.set("partner", "2088000000000001"), "MD5", nil, "ILLEGAL_PARTNER"},
		{"bad charset", base.set("_input_charset", "latin1"), "MD5", nil, "ILLEGAL_CHARSET"},
		{"DSA", base, "DSA", nil, "ILLEGAL_SIGN_TYPE"},
		{"upper-case MD5 hex", base, "MD5", func(u string) string {
			i := strings.Index(u, "&sign=") + len("&sign=")
			return u[:i] + strings.ToUpper(u[i:i+32]) + u[i+32:]
		}, "ILLEGAL_SIGN"},
		{"unsigned parameter added", base, "MD5", func(u string) string { return u + "&it_b_pay=1d" }, "ILLEGAL_SIGN"},
		{"other seller", base.set("seller_email", "someone@example.com"), "MD5", nil, "ILLEGAL_ARGUMENT"},
		{"query in notify_url", base.set("notify_url", "http://merchant.example/notify?id=1"), "MD5", nil, "ILLEGAL_ARGUMENT"},
		{"no amount", base.set("total_fee", ""), "RSA", nil, "ILLEGAL_ARGUMENT"},
	} {
		st := c.st
		if st == "DSA" {
			st = "MD5"
		}
		u := b.legacyURL(t, "gateway.do", c.params, st)
		if c.st == "DSA" {
			u = strings.Replace(u, "sign_type=MD5", "sign_type=DSA", 1)
		}
		if c.tamper != nil {
			u = c.tamper(u)
		}
		if _, code, page := tGetPage(t, u); code != c.want {
			t.Errorf("%s: %q, want %s\n%s", c.name, code, c.want, page)
		}
	}
	// The same parameters POSTed as multipart/form-data (the 3.3 demos' buildRequestHttp), with
	// _input_charset also in the query, are accepted.
	u := b.legacyURL(t, "gateway.do", base, "MD5")
	p, _ := tParse(u[strings.Index(u, "?")+1:])
	resp, _ := postMultipart(t, b.srv.URL+"/sandbox/alipay-legacy/gateway.do?_input_charset=utf-8", p)
	if resp.Header.Get("X-Sandbox-Error") != "" {
		t.Fatalf("multipart POST refused: %s", resp.Header.Get("X-Sandbox-Error"))
	}
	if tr := legacyTrade(t, b, "leg_refuse"); tr.Status != "WAIT_BUYER_PAY" {
		t.Fatalf("%+v", tr)
	}
}

// TestLegacy_NotifyVerify checks notify_verify: true only for a notify_id the sandbox issued to
// that partner and still valid (an unacknowledged notification's, a return visit's for one
// minute); false for an unknown one, another partner's, an expired one; invalid without
// parameters; both URL forms; every call in the query log.
func TestLegacy_NotifyVerify(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	b := setupLegacy(t, 1, nil, clock, false) // notifier stopped: notifications stay pending
	const p2, key2 = "2088000000000002", "0123456789abcdefghijklmnopqrstuv"
	if err := b.sb.RegisterLegacyPartner(p2, key2, nil, "p2@sandbox.example"); err != nil {
		t.Fatal(err)
	}
	p1 := b.keys.LegacyPartner
	pay := func(partner, no string) (string, string) {
		t.Helper()
		tr, err := b.sb.CreateOrder(OrderRequest{Provider: ProviderAlipayLegacy, Product: "direct", AppID: partner, OutTradeNo: no,
			Amount: 100, NotifyURL: "http://127.0.0.1:1/notify", ReturnURL: "http://merchant.example/return"})
		if err != nil {
			t.Fatal(err)
		}
		_, ret, err := b.sb.LegacyPay(tr.CashierURL)
		if err != nil {
			t.Fatal(err)
		}
		ns, _ := b.sb.Notifications(no)
		q, _ := tParse(ret[strings.Index(ret, "?")+1:])
		return ns[0].NotifyID, q.get("notify_id")
	}
	n1, r1 := pay(p1, "nv_1")
	n2, _ := pay(p2, "nv_2")
	check := func(partner, id, want string) {
		t.Helper()
		if got, err := b.tNotifyVerify(partner, id); err != nil || got != want {
			t.Errorf("notify_verify(%s, %q) = %q %v, want %s", partner, id, got, err, want)
		}
	}
	check(p1, n1, "true")
	check(p2, n2, "true")
	check(p1, n2, "false") // another partner's
	check(p2, n1, "false")
	check(p1, "4e127d6cc7ac3e426b8ed50363625d2f6k", "false") // unknown
	check(p1, r1, "true")
	check(p2, r1, "false")
	check("", n1, "invalid")
	check(p1, "", "invalid")
	// The transport=http form.
	if got, _ := tGetText(b.srv.URL + "/sandbox/alipay-legacy/trade/notify_query.do?partner=" + p1 + "&notify_id=" + n1); got != "true" {
		t.Errorf("notify_query.do: %q", got)
	}
	// A minute later the return's notify_id has expired; the pending notification's has not.
	offset.Store(int64(61 * time.Second))
	check(p1, r1, "false")
	check(p1, n1, "true")
	// An acknowledged or exhausted notification's notify_id is no longer confirmed.
	ns, _ := b.sb.Notifications("nv_1")
	ns[0].Status = NoteAcked
	b.sb.st.saveNotification(ns[0])
	check(p1, n1, "false")

	recs := b.sb.Queries(QueryFilter{Provider: ProviderAlipayLegacy, API: APILegacyNotifyVerify, OutTradeNo: "nv_1"})
	if len(recs) == 0 || recs[0].NotifyID != n1 || recs[0].Result != "true" || recs[0].AppID != p1 {
		t.Fatalf("query log %+v", recs)
	}
	var sawReturn bool
	for _, r := range recs {
		sawReturn = sawReturn || r.NotifyID == mustUnescape(t, r1)
	}
	if !sawReturn {
		t.Errorf("the return notify_id is not logged as received (once decoded): %+v", recs)
	}
}

// TestLegacy_RetrySchedule checks the legacy schedule (docs/alipay-legacy.md §9.6: 2m, 10m, 10m,
// 1h, 2h, 6h, 15h, here compressed by TimeScale), strict acknowledgement (exactly "success"), one
// notify_id and one body across retries, and exhaustion after 8 attempts.
func TestLegacy_RetrySchedule(t *testing.T) {
	t.Parallel()
	sched, ok := Schedule(ProviderAlipayLegacy)
	want := []time.Duration{0, 2 * time.Minute, 12 * time.Minute, 22 * time.Minute, 82 * time.Minute, 202 * time.Minute, 562 * time.Minute, 1462 * time.Minute}
	if !ok || len(sched) != len(want) {
		t.Fatalf("schedule %v", sched)
	}
	for i := range want {
		if sched[i] != want[i] {
			t.Fatalf("schedule %v, want %v", sched, want)
		}
	}
	t.Run("AckOnExactSuccess", func(t *testing.T) {
		t.Parallel()
		const scale = 1000
		b := setupLegacy(t, scale, nil, nil, true)
		answers := []string{"fail", "SUCCESS", "success\n"}
		m := newMerchant(t, func(i int, _ *http.Request, _ []byte) (int, string) {
			if i <= len(answers) {
				return 200, answers[i-1]
			}
			return 200, "success"
		})
		tr, err := b.sb.CreateOrder(OrderRequest{Provider: ProviderAlipayLegacy, Product: "direct", OutTradeNo: "leg_sched", Amount: 1, NotifyURL: m.srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.sb.Act("pay", ActionRequest{URL: tr.CashierURL}); err != nil {
			t.Fatal(err)
		}
		as, err := b.sb.WaitAcked(waitCtx(t, 20*time.Second), AttemptFilter{OutTradeNo: "leg_sched"}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(as) != 4 || !as[3].Acked || as[0].Acked || as[1].Acked || as[2].Acked {
			t.Fatalf("attempts %+v", as)
		}
		checkOffsets(t, as, want, scale, 5*time.Second)
		reqs := m.requests()
		for _, r := range reqs[1:] {
			if string(r.body) != string(reqs[0].body) {
				t.Fatal("a retry sent other bytes")
			}
		}
		for _, a := range as {
			if a.NotifyID != as[0].NotifyID || a.Provider != ProviderAlipayLegacy {
				t.Fatalf("attempt %+v", a)
			}
		}
	})
	t.Run("Exhaustion", func(t *testing.T) {
		t.Parallel()
		b := setupLegacy(t, 100000, nil, nil, true)
		m := newMerchant(t, func(int, *http.Request, []byte) (int, string) { return 200, "fail" })
		tr, err := b.sb.CreateOrder(OrderRequest{Provider: ProviderAlipayLegacy, Product: "wap", OutTradeNo: "leg_exh", Amount: 1, NotifyURL: m.srv.URL, ReturnURL: "http://merchant.example/cb"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.sb.Act("pay", ActionRequest{OutTradeNo: tr.OutTradeNo, Provider: ProviderAlipayLegacy}); err != nil {
			t.Fatal(err)
		}
		ctx := waitCtx(t, 20*time.Second)
		if _, err := b.sb.WaitAttempts(ctx, AttemptFilter{OutTradeNo: "leg_exh"}, 8); err != nil {
			t.Fatal(err)
		}
		for {
			ch := b.sb.changedCh() // before the read: a change between the two is not missed
			ns, _ := b.sb.Notifications("leg_exh")
			if ns[0].Status == NoteExhausted {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("not exhausted: %+v", ns[0])
			case <-ch:
			}
		}
		if as, _ := b.sb.Attempts(AttemptFilter{OutTradeNo: "leg_exh"}); len(as) != 8 {
			t.Fatalf("%d attempts", len(as))
		}
	})
}

// TestLegacy_Escrow runs create_partner_trade_by_buyer (and trade_create_by_buyer paid at once)
// through its states: WAIT_BUYER_PAY, WAIT_SELLER_SEND_GOODS, WAIT_BUYER_CONFIRM_GOODS,
// TRADE_FINISHED, each notified with its own notify_id.
func TestLegacy_Escrow(t *testing.T) {
	t.Parallel()
	b := setupLegacy(t, 1000, nil, nil, true)
	m := newMerchant(t, alipayOK)
	params := kvs{{"service", "create_partner_trade_by_buyer"}, {"partner", b.keys.LegacyPartner}, {"_input_charset", "utf-8"},
		{"payment_type", "1"}, {"notify_url", m.srv.URL}, {"return_url", "http://merchant.example/return"},
		{"seller_id", b.keys.LegacyPartner}, {"out_trade_no", "leg_escrow"}, {"subject", "担保 goods"}, {"price", "10.00"}, {"quantity", "2"},
		{"logistics_fee", "5.00"}, {"logistics_type", "EXPRESS"}, {"logistics_payment", "BUYER_PAY"}, {"receive_name", "张三"}}
	payURL := b.legacyURL(t, "gateway.do", params, "MD5")
	// Act with the pay URL: verified, created (WAIT_BUYER_PAY, notified), paid.
	tr, err := b.sb.Act("pay", ActionRequest{URL: payURL})
	if err != nil || tr.Status != LegacyWaitSellerSendGoods || tr.Amount != 2500 {
		t.Fatalf("pay: %+v %v", tr, err)
	}
	if _, err := b.sb.Act("confirm", ActionRequest{Provider: ProviderAlipayLegacy, OutTradeNo: "leg_escrow"}); err == nil {
		t.Fatal("confirmed before the goods were sent")
	}
	if tr, err = b.sb.Act("send", ActionRequest{Provider: ProviderAlipayLegacy, OutTradeNo: "leg_escrow"}); err != nil || tr.Status != LegacyWaitBuyerConfirmGoods {
		t.Fatalf("send: %+v %v", tr, err)
	}
	if tr, err = b.sb.Act("confirm", ActionRequest{Provider: ProviderAlipayLegacy, OutTradeNo: "leg_escrow"}); err != nil || tr.Status != "TRADE_FINISHED" {
		t.Fatalf("confirm: %+v %v", tr, err)
	}
	if _, err := b.sb.Act("refund", ActionRequest{Provider: ProviderAlipayLegacy, OutTradeNo: "leg_escrow"}); err == nil {
		t.Fatal("refund accepted")
	}
	if _, err := b.sb.WaitAcked(waitCtx(t, 20*time.Second), AttemptFilter{OutTradeNo: "leg_escrow"}, 4); err != nil {
		t.Fatal(err)
	}
	ns, _ := b.sb.Notifications("leg_escrow")
	wantKinds := []string{"create", "payment", "send", "finish"}
	wantStatus := []string{"WAIT_BUYER_PAY", LegacyWaitSellerSendGoods, LegacyWaitBuyerConfirmGoods, "TRADE_FINISHED"}
	ids := map[string]bool{}
	for i, n := range ns {
		f, err := b.tVerifyMapi(string(n.Body), "MD5")
		if err != nil {
			t.Fatal(err)
		}
		if n.Kind != wantKinds[i] || f.get("trade_status") != wantStatus[i] || f.get("total_fee") != "25.00" || f.get("price") != "10.00" ||
			f.get("quantity") != "2" || f.get("logistics_fee") != "5.00" || f.get("logistics_payment") != "BUYER_PAY" || f.get("receive_name") != "张三" {
			t.Errorf("notification %d (%s): %v", i, n.Kind, f)
		}
		if (i == 3) != (f.get("gmt_close") != "") || (i == 0) != (f.get("gmt_payment") == "") {
			t.Errorf("notification %d times: %v", i, f)
		}
		ids[f.get("notify_id")] = true
	}
	if len(ns) != 4 || len(ids) != 4 {
		t.Fatalf("%d notifications, %d notify_ids", len(ns), len(ids))
	}

	// trade_create_by_buyer: the buyer pays at once (即时到账): TRADE_FINISHED.
	dual := params.set("service", "trade_create_by_buyer").set("out_trade_no", "leg_dual")
	status, code, page := tGetPage(t, b.legacyURL(t, "gateway.do", dual, "MD5"))
	if status != 200 || code != "" || !strings.Contains(page, "pay_instant") {
		t.Fatalf("dual cashier: %q %s", code, page)
	}
	if resp := tCashierPost(t, b, legacyTrade(t, b, "leg_dual").Token, "pay_instant"); resp.StatusCode != http.StatusFound {
		t.Fatalf("pay_instant: %d", resp.StatusCode)
	}
	if tr := legacyTrade(t, b, "leg_dual"); tr.Status != "TRADE_FINISHED" {
		t.Fatalf("dual: %+v", tr)
	}
}

// TestLegacy_ControlAPI pays through POST /sandbox/api/alipay-legacy/pay and registers a partner
// through the API.
func TestLegacy_ControlAPI(t *testing.T) {
	t.Parallel()
	b := setupLegacy(t, 1, nil, nil, false)
	payURL := b.legacyURL(t, "gateway.do", directParams(b, "leg_api", "http://127.0.0.1:1/n"), "RSA")
	c := &Client{BaseURL: b.srv.URL}
	tr, ret, err := c.LegacyPay(b.ctx, payURL)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Status != "TRADE_SUCCESS" || !strings.HasPrefix(ret, "http://merchant.example/alipay/return?") {
		t.Fatalf("%+v %q", tr, ret)
	}
	if _, err := b.tVerifyMapi(ret[strings.Index(ret, "?")+1:], "RSA"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.LegacyPay(b.ctx, payURL); err == nil {
		t.Fatal("paid twice")
	}
	const key3 = "abcdefghijklmnopqrstuvwxyz012345"
	if err := c.RegisterLegacyPartner(b.ctx, "2088000000000003", key3, b.keys.LegacyMerchantPublicKey, "p3@sandbox.example"); err != nil {
		t.Fatal(err)
	}
	if p, err := b.sb.legacyPartner("2088000000000003"); err != nil || p.MD5Key != key3 || p.pub == nil {
		t.Fatalf("%+v %v", p, err)
	}
	if err := c.RegisterLegacyPartner(b.ctx, "123", key3, "", ""); err == nil {
		t.Fatal("a bad partner was registered")
	}
}
