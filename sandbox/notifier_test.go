package sandbox

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/internal/wechatpaywire"
	"github.com/paynotify/paynotify/wechatpay"
)

// failFirst answers failures to the first n requests, then success.
func failFirst(n int, okStatus int, okBody string) func(int, *http.Request, []byte) (int, string) {
	return func(i int, _ *http.Request, _ []byte) (int, string) {
		if i <= n {
			return 500, "fail"
		}
		return okStatus, okBody
	}
}

// checkOffsets asserts that attempt i happened at schedule[i]/scale after the first, within tol.
func checkOffsets(t *testing.T, as []*Attempt, schedule []time.Duration, scale float64, tol time.Duration) {
	t.Helper()
	for i, a := range as {
		want := time.Duration(float64(schedule[i]) / scale)
		got := a.Offset.D()
		// Never early; late by at most tol (a loaded CI machine delays goroutines, not clocks; the
		// exact schedule is checked on ScheduledOffset below).
		if got < want-20*time.Millisecond || got > want+tol {
			t.Errorf("attempt %d at %v, want %v (±%v)", i+1, got, want, tol)
		}
		if a.ScheduledOffset.D() != schedule[i] {
			t.Errorf("attempt %d scheduled offset %v, want %v", i+1, a.ScheduledOffset.D(), schedule[i])
		}
	}
}

func TestNotifier_AlipaySchedule(t *testing.T) {
	t.Parallel()
	const scale = 1000
	b := setup(t, scale)
	m := newMerchant(t, failFirst(3, 200, "success\r\n")) // trailing whitespace is tolerated
	c := b.alipayClient(t)
	ctx := waitCtx(t, 20*time.Second)
	os1, _ := c.AppPay(alipay.TradeAppPay{OutTradeNo: "sched_a", TotalAmount: 1, Subject: "s", NotifyURL: m.srv.URL})
	if st, _, _, err := b.sb.AlipayAppPay(os1, "9000"); err != nil || st != "9000" {
		t.Fatal(st, err)
	}
	as, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "sched_a"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 4 || !as[3].Acked || as[0].Acked || as[0].Status != 500 || as[0].Response != "fail" {
		t.Fatalf("attempts %+v", as)
	}
	sched, _ := Schedule("alipay")
	checkOffsets(t, as, sched, scale, 5*time.Second)
	reqs := m.requests()
	ids := map[string]bool{}
	for _, r := range reqs {
		n, err := c.VerifyNotification(r.header, r.body)
		if err != nil {
			t.Fatal(err)
		}
		ids[n.NotifyID] = true
		if r.header.Get("User-Agent") != "Mozilla/4.0" {
			t.Errorf("User-Agent %q", r.header.Get("User-Agent"))
		}
	}
	if len(ids) != 1 {
		t.Fatalf("notify_id changed across retries: %v", ids)
	}
}

func TestNotifier_AlipayStrictAckAndExhaustion(t *testing.T) {
	t.Parallel()
	b := setup(t, 100000)
	// "SUCCESS", an HTML page around the word, a BOM, whitespace before the word (output before
	// <?php): all failures in strict mode, as at Alipay; only trailing whitespace is tolerated.
	answers := []string{"SUCCESS", "<html>success</html>", "\ufeffsuccess", " fail", "\nsuccess", "  success"}
	m := newMerchant(t, func(i int, _ *http.Request, _ []byte) (int, string) { return 200, answers[(i-1)%len(answers)] })
	c := b.alipayClient(t)
	ctx := waitCtx(t, 20*time.Second)
	if err := b.sb.SetFaults("exh", Faults{Schedule: "alipay-2m"}); err != nil {
		t.Fatal(err)
	}
	os1, _ := c.AppPay(alipay.TradeAppPay{OutTradeNo: "exh", TotalAmount: 1, Subject: "s", NotifyURL: m.srv.URL})
	b.sb.AlipayAppPay(os1, "9000")
	as, err := b.sb.WaitAttempts(ctx, AttemptFilter{OutTradeNo: "exh"}, 8)
	if err != nil {
		t.Fatal(err)
	}
	for {
		ch := b.sb.changedCh() // before the read: a change between the two is not missed
		ns, _ := b.sb.Notifications("exh")
		if ns[0].Status == NoteExhausted {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not exhausted: %+v", ns[0])
		case <-ch:
		}
	}
	for _, a := range as {
		if a.Acked {
			t.Fatalf("acked %q", a.Response)
		}
	}
	sched, _ := Schedule("alipay-2m")
	if as[7].ScheduledOffset.D() != sched[7] || sched[1] != 2*time.Minute || sched[7] != 24*time.Hour+22*time.Minute {
		t.Fatalf("2m preset: %v", sched)
	}
}

func TestNotifier_WechatSchedule(t *testing.T) {
	t.Parallel()
	const scale = 1000
	b := setup(t, scale)
	m := newMerchant(t, failFirst(6, 200, `{"code":"SUCCESS","message":"成功"}`))
	c := b.wechatClient(t)
	ctx := waitCtx(t, 20*time.Second)
	req := wechatpay.PrepayRequest{Description: "d", OutTradeNo: "sched_w", NotifyURL: m.srv.URL}
	req.Amount.Total = 1
	if _, err := c.PrepayNative(ctx, req); err != nil {
		t.Fatal(err)
	}
	b.sb.Act("pay", ActionRequest{OutTradeNo: "sched_w"})
	as, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "sched_w"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 7 {
		t.Fatalf("%d attempts", len(as))
	}
	sched, _ := Schedule("wechatpay")
	if len(sched) != 16 || sched[15] != 24*time.Hour+4*time.Minute {
		t.Fatalf("wechat schedule %v", sched)
	}
	checkOffsets(t, as, sched, scale, 5*time.Second)
	reqs := m.requests()
	sigs := map[string]bool{}
	var body0 []byte
	for i, r := range reqs {
		if _, err := c.VerifyNotification(r.header, r.body); err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		sigs[r.header.Get("Wechatpay-Nonce")] = true
		if i == 0 {
			body0 = r.body
		} else if string(r.body) != string(body0) {
			t.Fatal("body changed across retries")
		}
	}
	if len(sigs) != len(reqs) {
		t.Fatal("nonce reused across attempts")
	}
}

// TestNotifier_GlobalScheduleIsAlipays: a global schedule fault ("alipay-2m", as docs/sandbox.md
// shows) picks among Alipay's schedules; WeChat Pay's notifications keep their own 16 attempts (a
// reviewer helper's finding: they followed Alipay's 8).
func TestNotifier_GlobalScheduleIsAlipays(t *testing.T) {
	t.Parallel()
	b := setup(t, 100000)
	if err := b.sb.SetFaults("", Faults{Schedule: "alipay-2m"}); err != nil {
		t.Fatal(err)
	}
	m := newMerchant(t, func(int, *http.Request, []byte) (int, string) { return 500, "" })
	c := b.wechatClient(t)
	ctx := waitCtx(t, 20*time.Second)
	req := wechatpay.PrepayRequest{Description: "d", OutTradeNo: "gsched_w", NotifyURL: m.srv.URL}
	req.Amount.Total = 1
	if _, err := c.PrepayNative(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := b.sb.Act("pay", ActionRequest{OutTradeNo: "gsched_w"}); err != nil {
		t.Fatal(err)
	}
	ns, err := b.sb.Notifications("gsched_w")
	if err != nil || len(ns) != 1 {
		t.Fatalf("notifications %v, %v", ns, err)
	}
	want, _ := Schedule("wechatpay")
	if ns[0].Schedule != "wechatpay" || len(ns[0].Offsets) != len(want) {
		t.Fatalf("schedule %q with %d attempts, want wechatpay's %d", ns[0].Schedule, len(ns[0].Offsets), len(want))
	}
}

// TestFaults_Bounds: counts and times out of bounds are refused by the control API (400), before
// any notification keeps them (a reviewer helper's finding: concurrent_duplicate -5 crashed the
// sandbox at the payment's notification, and again at each start).
func TestFaults_Bounds(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	for _, f := range []Faults{{ConcurrentDuplicate: -5}, {ConcurrentDuplicate: maxFaultCount + 1}, {Duplicate: -1},
		{DropFirst: 1 << 30}, {SigntestProbe: -1}, {Delay: Duration(-time.Second)}, {Timeout: Duration(time.Hour)},
		{Schedule: "hourly"}} {
		if err := b.sb.SetFaults("bound_1", f); !errors.Is(err, errBadAction) {
			t.Errorf("SetFaults(%+v) = %v, want refused", f, err)
		}
	}
	if err := b.sb.SetFaults("bound_1", Faults{ConcurrentDuplicate: maxFaultCount, Delay: Duration(maxFaultWait)}); err != nil {
		t.Errorf("faults at the bounds: %v", err)
	}
}

func TestNotifier_WechatSlowMerchantTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	var n atomic.Int32
	m := newMerchant(t, func(i int, _ *http.Request, _ []byte) (int, string) {
		if n.Add(1) == 1 {
			time.Sleep(400 * time.Millisecond)
		}
		return 200, ""
	})
	c := b.wechatClient(t)
	ctx := waitCtx(t, 20*time.Second)
	if err := b.sb.SetFaults("slow_1", Faults{Timeout: Duration(100 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	req := wechatpay.PrepayRequest{Description: "d", OutTradeNo: "slow_1", NotifyURL: m.srv.URL}
	req.Amount.Total = 1
	if _, err := c.PrepayNative(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := b.sb.Act("pay", ActionRequest{OutTradeNo: "slow_1"}); err != nil {
		t.Fatal(err)
	}
	as, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "slow_1"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 2 || as[0].Acked || as[0].Error == "" || !as[1].Acked {
		t.Fatalf("attempts %+v", as)
	}
}

// TestFaults covers each injectable fault, on one sandbox.
func TestFaults(t *testing.T) {
	t.Parallel()
	b := setup(t, 1000)
	ac := b.alipayClient(t)
	wc := b.wechatClient(t)
	verifyingAlipay := func(_ int, r *http.Request, body []byte) (int, string) {
		if _, err := ac.VerifyNotification(r.Header, body); err != nil {
			return 200, "fail"
		}
		return 200, "success"
	}
	verifyingWechat := func(_ int, r *http.Request, body []byte) (int, string) {
		if _, err := wc.VerifyNotification(r.Header, body); err != nil {
			return 401, `{"code":"FAIL","message":"signature"}`
		}
		return 204, ""
	}
	payAlipay := func(t *testing.T, no string, f Faults, m *merchant) {
		t.Helper()
		if err := b.sb.SetFaults(no, f); err != nil {
			t.Fatal(err)
		}
		os1, _ := ac.AppPay(alipay.TradeAppPay{OutTradeNo: no, TotalAmount: 100, Subject: "中文 subject", NotifyURL: m.srv.URL})
		if st, _, memo, err := b.sb.AlipayAppPay(os1, "9000"); err != nil || st != "9000" {
			t.Fatal(st, memo, err)
		}
	}
	payWechat := func(t *testing.T, no string, f Faults, m *merchant) {
		t.Helper()
		if err := b.sb.SetFaults(no, f); err != nil {
			t.Fatal(err)
		}
		req := wechatpay.PrepayRequest{Description: "d", OutTradeNo: no, NotifyURL: m.srv.URL}
		req.Amount.Total = 100
		if _, err := wc.PrepayNative(waitCtx(t, 5*time.Second), req); err != nil {
			t.Fatal(err)
		}
		if _, err := b.sb.Act("pay", ActionRequest{OutTradeNo: no}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("Duplicate", func(t *testing.T) {
		t.Parallel()
		m := newMerchant(t, alipayOK)
		payAlipay(t, "f_dup", Faults{Duplicate: 2}, m)
		as, err := b.sb.WaitAttempts(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "f_dup"}, 3)
		if err != nil || as[1].Fault != "duplicate" || as[1].NotifyID != as[0].NotifyID {
			t.Fatalf("%v %+v", err, as)
		}
	})
	t.Run("ConcurrentDuplicate", func(t *testing.T) {
		t.Parallel()
		m := newMerchant(t, alipayOK)
		payAlipay(t, "f_cdup", Faults{ConcurrentDuplicate: 3}, m)
		as, err := b.sb.WaitAttempts(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "f_cdup"}, 4)
		if err != nil {
			t.Fatal(err)
		}
		reqs := m.requests()
		if len(reqs) != 4 {
			t.Fatalf("%d requests, want 4", len(reqs))
		}
		copies := 0
		for _, a := range as {
			if a.N != 1 {
				t.Fatalf("attempt %d: the copies belong to the first attempt: %+v", a.N, as)
			}
			if a.Fault == "concurrent_duplicate" {
				copies++
			}
		}
		if copies != 3 {
			t.Fatalf("%d concurrent copies, want 3: %+v", copies, as)
		}
		for _, r := range reqs[1:] {
			if string(r.body) != string(reqs[0].body) {
				t.Fatal("copies differ")
			}
		}
	})
	t.Run("Delay", func(t *testing.T) {
		t.Parallel()
		m := newMerchant(t, alipayOK)
		start := time.Now()
		payAlipay(t, "f_delay", Faults{Delay: Duration(300 * time.Millisecond)}, m)
		if _, err := b.sb.WaitAcked(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "f_delay"}, 1); err != nil {
			t.Fatal(err)
		}
		if d := m.requests()[0].at.Sub(start); d < 300*time.Millisecond {
			t.Fatalf("first attempt after %v", d)
		}
	})
	t.Run("DropFirst", func(t *testing.T) {
		t.Parallel()
		m := newMerchant(t, alipayOK)
		payAlipay(t, "f_drop", Faults{DropFirst: 2}, m)
		as, err := b.sb.WaitAcked(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "f_drop"}, 1)
		if err != nil || len(as) != 3 || as[0].Fault != "dropped" || as[1].Fault != "dropped" || len(m.requests()) != 1 {
			t.Fatalf("%v %+v", err, as)
		}
		if as[2].Offset.D() < 800*time.Millisecond { // the third attempt: +14m / 1000
			t.Fatalf("third attempt at %v", as[2].Offset.D())
		}
	})
	t.Run("Reorder", func(t *testing.T) {
		t.Parallel()
		m := newMerchant(t, alipayOK)
		payAlipay(t, "f_reorder", Faults{Reorder: true}, m)
		if _, err := b.sb.Act("refund", ActionRequest{OutTradeNo: "f_reorder", Amount: 40, OutRequestNo: "rr1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.sb.WaitAcked(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "f_reorder"}, 2); err != nil {
			t.Fatal(err)
		}
		reqs := m.requests()
		n0, _ := ac.VerifyNotification(reqs[0].header, reqs[0].body)
		n1, _ := ac.VerifyNotification(reqs[1].header, reqs[1].body)
		if !n0.IsRefund() || n1.IsRefund() {
			t.Fatalf("order: %+v then %+v", n0, n1)
		}
	})
	t.Run("NeverNotify", func(t *testing.T) {
		t.Parallel()
		m := newMerchant(t, alipayOK)
		payAlipay(t, "f_never", Faults{NeverNotify: true}, m)
		ns, err1 := b.sb.Notifications("f_never")
		tr, err2 := b.sb.Trades(ProviderAlipay, "f_never")
		if err1 != nil || err2 != nil || len(ns) != 1 || ns[0].Status != NoteSuppressed || len(tr) != 1 || tr[0].Status != alipay.TradeSuccess {
			t.Fatalf("%+v %+v %v %v", ns, tr, err1, err2)
		}
		// Past the first two scheduled attempts (0 and +4m, scaled to 240 ms), nothing was sent.
		time.Sleep(500 * time.Millisecond)
		if n := len(m.requests()); n != 0 {
			t.Fatalf("the merchant got %d requests for a never-notified payment", n)
		}
	})
	t.Run("WrongAmountAndAppID", func(t *testing.T) {
		t.Parallel()
		m := newMerchant(t, alipayOK)
		payAlipay(t, "f_wrong", Faults{WrongAmount: true, WrongAppID: true}, m)
		if _, err := b.sb.WaitAcked(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "f_wrong"}, 1); err != nil {
			t.Fatal(err)
		}
		r := m.requests()[0]
		// Signed by the sandbox's Alipay key for another app_id: the client says so, and hands
		// the notification over with the error.
		n, err := ac.VerifyNotification(r.header, r.body)
		if !errors.Is(err, alipay.ErrAppID) || n == nil || n.TotalAmount != 101 || n.AppID == b.keys.AlipayAppID {
			t.Fatalf("%+v %v", n, err)
		}
	})
	t.Run("BadSignature", func(t *testing.T) {
		t.Parallel()
		m := newMerchant(t, verifyingAlipay)
		payAlipay(t, "f_badsig", Faults{BadSignature: true}, m)
		as, err := b.sb.WaitAttempts(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "f_badsig"}, 2)
		if err != nil {
			t.Fatal(err)
		}
		if as[0].Acked || as[1].Acked || as[0].Response != "fail" {
			t.Fatalf("%+v", as)
		}
		r := m.requests()[0]
		if _, err := ac.VerifyNotification(r.header, r.body); !errors.Is(err, alipay.ErrSignature) {
			t.Fatal(err)
		}
	})
	t.Run("GBK", func(t *testing.T) {
		t.Parallel()
		m := newMerchant(t, verifyingAlipay)
		payAlipay(t, "f_gbk", Faults{Charset: "GBK"}, m)
		if _, err := b.sb.WaitAcked(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "f_gbk"}, 1); err != nil {
			t.Fatal(err)
		}
		r := m.requests()[0]
		if !strings.HasSuffix(r.header.Get("Content-Type"), "charset=gbk") || !strings.Contains(string(r.body), "charset=GBK") {
			t.Fatalf("%s %s", r.header.Get("Content-Type"), r.body)
		}
		n, err := ac.VerifyNotification(r.header, r.body)
		if err != nil {
			t.Fatal(err)
		}
		if n.Subject != "中文 subject" || !strings.Contains(string(r.body), "%D6%D0%CE%C4") {
			t.Fatalf("subject %q body %s", n.Subject, r.body)
		}
	})
	t.Run("SigntestProbe", func(t *testing.T) {
		t.Parallel()
		m := newMerchant(t, verifyingWechat)
		payWechat(t, "f_probe", Faults{SigntestProbe: 1}, m)
		as, err := b.sb.WaitAcked(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "f_probe"}, 1)
		if err != nil || len(as) != 2 || as[0].Acked || as[0].Status != 401 || !strings.HasPrefix(as[0].RequestHeaders["Wechatpay-Signature"], wechatpaywire.ProbePrefix) {
			t.Fatalf("%v %+v", err, as)
		}
		r := m.requests()[0]
		if _, err := wc.VerifyNotification(r.header, r.body); !errors.Is(err, wechatpay.ErrProbe) {
			t.Fatal(err)
		}
	})
	t.Run("WechatBadSignatureAndWrongAmount", func(t *testing.T) {
		t.Parallel()
		m := newMerchant(t, verifyingWechat)
		payWechat(t, "f_wxbad", Faults{BadSignature: true}, m)
		as, err := b.sb.WaitAttempts(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "f_wxbad"}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if as[0].Acked {
			t.Fatal("acked a bad signature")
		}
		m2 := newMerchant(t, wechatOK)
		payWechat(t, "f_wxamt", Faults{WrongAmount: true, WrongAppID: true}, m2)
		if _, err := b.sb.WaitAcked(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "f_wxamt"}, 1); err != nil {
			t.Fatal(err)
		}
		r := m2.requests()[0]
		n, err := wc.VerifyNotification(r.header, r.body)
		if err != nil || n.Transaction.Amount.Total != 101 || n.Transaction.AppID == b.keys.WechatAppID {
			t.Fatalf("%+v %v", n, err)
		}
	})
	t.Run("Global", func(t *testing.T) {
		// Not parallel with the others' expectations: uses its own sandbox.
		b2 := setup(t, 1000)
		m := newMerchant(t, alipayOK)
		if err := b2.sb.SetFaults("", Faults{Duplicate: 1}); err != nil {
			t.Fatal(err)
		}
		c2 := b2.alipayClient(t)
		os1, err := c2.AppPay(alipay.TradeAppPay{OutTradeNo: "g1", TotalAmount: 1, Subject: "s", NotifyURL: m.srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		if st, _, _, err := b2.sb.AlipayAppPay(os1, "9000"); err != nil || st != "9000" {
			t.Fatal(st, err)
		}
		as, err := b2.sb.WaitAttempts(waitCtx(t, 10*time.Second), AttemptFilter{OutTradeNo: "g1"}, 2)
		if err != nil {
			t.Fatal(err)
		}
		if as[1].Fault != "duplicate" {
			t.Fatalf("the global fault was not applied: %+v", as)
		}
	})
}

// TestOpenSSL verifies the sandbox's signatures with the openssl command line: an Alipay
// notification, an Alipay response node and a WeChat notification.
func TestOpenSSL(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Fatal("openssl is required: the sandbox's signatures are checked by an independent implementation")
	}
	b := setup(t, 1000)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	verify := func(t *testing.T, pubPEM string, msg []byte, sigB64 string) {
		t.Helper()
		sig, err := base64.StdEncoding.DecodeString(sigB64)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("openssl", "dgst", "-sha256", "-verify", write("pub.pem", []byte(pubPEM)),
			"-signature", write("sig.bin", sig), write("msg", msg)).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Verified OK") {
			t.Fatalf("openssl: %s %v", out, err)
		}
	}
	ma := newMerchant(t, alipayOK)
	mw := newMerchant(t, wechatOK)
	ac, wc := b.alipayClient(t), b.wechatClient(t)
	ctx := waitCtx(t, 10*time.Second)

	t.Run("AlipayNotification", func(t *testing.T) {
		os1, err := ac.AppPay(alipay.TradeAppPay{OutTradeNo: "ossl_a", TotalAmount: 1, Subject: "中文", NotifyURL: ma.srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := b.sb.AlipayAppPay(os1, "9000"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "ossl_a"}, 1); err != nil {
			t.Fatal(err)
		}
		r := ma.requests()[0]
		// The signed string built here, by the rule of docs/alipay.md (sorted, sign and
		// sign_type left out, empty values dropped, raw values joined with &), not by the
		// sandbox's or the verifier's own code.
		q, err := url.ParseQuery(string(r.body))
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k, vs := range q {
			if len(vs) != 1 {
				t.Fatalf("field %s %d times", k, len(vs))
			}
			if k != "sign" && k != "sign_type" && vs[0] != "" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var canon []string
		for _, k := range keys {
			canon = append(canon, k+"="+q.Get(k))
		}
		verify(t, b.keys.AlipayPublicKey, []byte(strings.Join(canon, "&")), q.Get("sign"))
	})
	t.Run("AlipayResponse", func(t *testing.T) {
		params := map[string]string{"app_id": b.keys.AlipayAppID, "method": "alipay.trade.query", "charset": "utf-8", "sign_type": "RSA2",
			"timestamp": alipay.FormatTime(time.Now()), "version": "1.0", "biz_content": `{"out_trade_no":"ossl_a"}`}
		if err := ac.SignParams(params); err != nil {
			t.Fatal(err)
		}
		body := postGateway(t, b, params)
		node, sign := splitAlipayAnswer(t, []byte(body), "alipay.trade.query")
		verify(t, b.keys.AlipayPublicKey, node, sign)
	})
	t.Run("WechatNotification", func(t *testing.T) {
		req := wechatpay.PrepayRequest{Description: "d", OutTradeNo: "ossl_w", NotifyURL: mw.srv.URL}
		req.Amount.Total = 1
		if _, err := wc.PrepayNative(ctx, req); err != nil {
			t.Fatal(err)
		}
		if _, err := b.sb.Act("pay", ActionRequest{OutTradeNo: "ossl_w"}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.sb.WaitAcked(ctx, AttemptFilter{OutTradeNo: "ossl_w"}, 1); err != nil {
			t.Fatal(err)
		}
		r := mw.requests()[0]
		// The signed message as docs/wechatpay.md gives it: timestamp, nonce and body, each line
		// ended by \n; built here, not by the verifier's code.
		msg := r.header.Get("Wechatpay-Timestamp") + "\n" + r.header.Get("Wechatpay-Nonce") + "\n" + string(r.body) + "\n"
		verify(t, b.keys.WechatPlatformPublicKey, []byte(msg), r.header.Get("Wechatpay-Signature"))
	})
}
