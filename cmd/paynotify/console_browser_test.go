package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"image/png"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/paynotify/paynotify/console"
)

// TestConsole_Browser drives real Chromium through the console of a server with a real config
// (the console block set) against the sandbox: the login form, a wrong password, the right one,
// a forged POST refused for its CSRF token, the search by out_trade_no and by the provider's trade
// number, the timelines of a paid order and of one whose notification was tampered with, and the
// five actions through their confirmation pages: a refund and a close end to end (checked through
// the API too), a resend, a query and a reprocess. It saves a screenshot of a timeline (docs/console.png
// when PAYNOTIFY_CONSOLE_SCREENSHOT names it; README shows it).
func TestConsole_Browser(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser")
	}
	bctx := newBrowser(t, 120*time.Second)
	sb := newTestSandbox(t, 1)
	dir := t.TempDir()
	addr := freeAddr(t)
	hash, err := console.HashPassword("operator pass")
	if err != nil {
		t.Fatal(err)
	}
	cfg := writeSandboxConfig(t, dir, addr, "sqlite:"+filepath.Join(dir, "paynotify.db"), sb, "", "console:\n  admin_password_hash: '"+hash+"'")
	t.Setenv("PAYNOTIFY_API_TOKEN", binToken)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr}
		done <- m.Run(ctx, []string{"serve", "--config", cfg})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("serve exit %d:\n%s", code, stderr.String())
		}
	})
	base := "http://" + addr
	waitHealthy(t, base)

	// Two orders: A is paid at the sandbox (its notification is accepted), B gets a notification
	// whose signature does not hold (rejected).
	orders := map[string]testOrder{}
	for _, name := range []string{"A", "B"} {
		o := testOrder{app: "alipay-demo", channel: "alipay.app", otn: "console" + name + time.Now().Format("150405")}
		code, body := binAPI(t, "POST", base+"/v1/orders", map[string]any{"app": o.app, "out_trade_no": o.otn, "amount": 100, "subject": "console test", "channel": o.channel})
		if code != http.StatusCreated {
			t.Fatalf("create %s: %d %v", name, code, body)
		}
		pay, _ := body["pay"].(map[string]any)
		o.pay = map[string]string{"order_string": pay["order_string"].(string)}
		orders[name] = o
	}
	a, b := orders["A"], orders["B"]
	payAt(t, sb, a)
	var tradeNo string
	for deadline := time.Now().Add(20 * time.Second); ; {
		_, body := binAPI(t, "GET", base+"/v1/orders/"+a.app+"/"+a.otn, nil)
		if body["status"] == "paid" {
			tradeNo, _ = body["provider_trade_no"].(string)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("order A never paid: %v", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	k := sb.Keys()
	forged := url.Values{"app_id": {k.AlipayAppID}, "seller_id": {k.AlipaySellerID}, "out_trade_no": {b.otn}, "trade_no": {"2026120622001400000000009999"},
		"total_amount": {"1.00"}, "trade_status": {"TRADE_SUCCESS"}, "notify_time": {"2026-12-06 10:00:00"}, "charset": {"utf-8"},
		"sign_type": {"RSA2"}, "sign": {base64.StdEncoding.EncodeToString(make([]byte, 256))}}
	resp, err := http.Post(base+"/notify/alipay/alipay-demo", "application/x-www-form-urlencoded", strings.NewReader(forged.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	text := func(sel string) string {
		t.Helper()
		for i := 0; ; i++ {
			s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
			// The page may reload between finding the node and reading it: the console's live
			// update reloads an order's page when the order changes (the sandbox's refund
			// notification, right after a refund). The reloaded page has the node again.
			if err != nil && strings.Contains(err.Error(), "No node with given id") && i < 50 {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatalf("text of %s: %v", sel, err)
			}
			return s
		}
	}
	location := func() string {
		t.Helper()
		l, _ := chromedp.Run(bctx, chromedp.Location())
		return l
	}

	// Without a session: the login form.
	if err := chromedp.Do(bctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS(`input[type=password]`))); err != nil {
		t.Fatalf("login form: %v", err)
	}
	if l := location(); l != base+"/login" {
		t.Errorf("GET / went to %s, want /login", l)
	}
	// A wrong password, then the right one.
	if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.CSS(`input[type=password]`), "wrong pass"), chromedp.Click(chromedp.CSS(`#login-button`)),
		chromedp.WaitVisible(chromedp.CSS(`#error`))); err != nil {
		t.Fatalf("wrong password: %v", err)
	}
	if got := text(`#error`); got != "Wrong password." {
		t.Errorf("wrong password says %q", got)
	}
	if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.CSS(`input[type=password]`), "operator pass"), chromedp.Click(chromedp.CSS(`#login-button`)),
		chromedp.WaitVisible(chromedp.CSS(`#paid-today`))); err != nil {
		t.Fatalf("login: %v", err)
	}
	if got := text(`#paid-today`); !strings.Contains(got, "1 orders · ¥1.00") || !strings.Contains(got, "alipay-demo") {
		t.Errorf("paid today: %q", got)
	}

	// A POST from the page's own origin with the session cookie but a forged CSRF token: 403.
	status, err := chromedp.Run(bctx, chromedp.Evaluate[int](`fetch('/console/actions/close', {method: 'POST',
		headers: {'Content-Type': 'application/x-www-form-urlencoded'},
		body: 'app=alipay-demo&otn=`+b.otn+`&confirm=yes&csrf=forged'}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if err != nil || status != http.StatusForbidden {
		t.Errorf("forged CSRF token: status %d, %v; want 403", status, err)
	}

	// Search B by its out_trade_no: its page, pending, with the rejected notification spelled out.
	// search types q into the header's search box and waits for the page of order otn.
	search := func(q, otn string) {
		t.Helper()
		if err := chromedp.Do(bctx, chromedp.SendKeys(chromedp.CSS(`form.search input[name=q]`), q), chromedp.Submit(chromedp.CSS(`form.search input[name=q]`)),
			chromedp.WaitVisible(chromedp.CSS(`#order[data-otn="`+otn+`"]`))); err != nil {
			t.Fatalf("search %s: %v", q, err)
		}
	}
	search(b.otn, b.otn)
	if got := text(`#status`); got != "pending" {
		t.Errorf("B is %q after the forged close and the tampered notification", got)
	}
	tampered := text(`#timeline li.kind-notification`)
	for _, want := range []string{"rejected", "signature_invalid", "signature\tfail", "amount\tskip", "Our answer: fail"} {
		if !strings.Contains(tampered, want) {
			t.Errorf("the tampered notification's entry lacks %q:\n%s", want, tampered)
		}
	}

	// Search A by the provider's trade number: paid, the accepted notification's checks all pass.
	search(tradeNo, a.otn)
	if got := text(`#status`); got != "paid" {
		t.Errorf("A is %q", got)
	}
	accepted := text(`#timeline li.kind-notification`)
	for _, want := range []string{"accepted", "signature\tpass\tVerified.", "app id\tpass\tThe message says “" + k.AlipayAppID + "”",
		"seller\tpass", "amount\tpass\tThe message says “¥1.00”; the order is ¥1.00.", "status\tpass\tThe message says “TRADE_SUCCESS”", "Our answer: success"} {
		if !strings.Contains(accepted, want) {
			t.Errorf("the accepted notification's entry lacks %q:\n%s", want, accepted)
		}
	}
	if ev := text(`#timeline li.kind-event`); !strings.Contains(ev, "order.paid") {
		t.Errorf("the event entry: %q", ev)
	}

	// The screenshot of A's timeline, its signed string open.
	shot, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`document.querySelector('#timeline li.kind-notification details.signed').open = true`))
	if err != nil || !shot {
		t.Fatalf("open the signed string: %v", err)
	}
	// The signed string is the alipay package's canonical string of the notification.
	if signed := text(`#timeline li.kind-notification details.signed`); !strings.Contains(signed, "rule V1") ||
		!strings.Contains(signed, "&out_trade_no="+a.otn+"&") || !strings.Contains(signed, "&total_amount=1.00&") || strings.Contains(signed, "sign_type=") {
		t.Errorf("the signed string: %q", signed)
	}
	img, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	cfgImg, err := png.DecodeConfig(bytes.NewReader(img))
	if err != nil || cfgImg.Width < 1000 || cfgImg.Height < 600 {
		t.Fatalf("screenshot: %v, %dx%d", err, cfgImg.Width, cfgImg.Height)
	}
	if path := os.Getenv("PAYNOTIFY_CONSOLE_SCREENSHOT"); path != "" {
		if err := os.WriteFile(path, img, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Refund half of A, confirmed on the confirmation page.
	if err := chromedp.Do(bctx, chromedp.SetValue(chromedp.CSS(`#refund-form input[name=amount]`), "0.50"), chromedp.Click(chromedp.CSS(`#action-refund`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-button`))); err != nil {
		t.Fatalf("refund: %v", err)
	}
	if ask := text(`form.confirm p`); !strings.Contains(ask, "Refund ¥0.50 of order "+a.otn) {
		t.Errorf("the confirmation asks %q", ask)
	}
	// The refund's number is fixed on the confirmation page: confirming twice is one refund.
	refundNo, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS(`form.confirm input[name=out_request_no]`), "value"))
	if err != nil || len(refundNo.Value) != 24 {
		t.Fatalf("the confirmation's out_request_no: %q, %v", refundNo.Value, err)
	}
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#confirm-button`)), chromedp.WaitVisible(chromedp.CSS(`#flash`))); err != nil {
		t.Fatalf("confirm the refund: %v", err)
	}
	if flash := text(`#flash`); flash != "Refund "+refundNo.Value+" of ¥0.50: succeeded." {
		t.Errorf("after the refund: %q", flash)
	}
	if r := text(`#timeline li.kind-refund`); !strings.Contains(r, "succeeded") || !strings.Contains(r, "¥0.50") {
		t.Errorf("the refund entry: %q", r)
	}
	_, body := binAPI(t, "GET", base+"/v1/orders/"+a.app+"/"+a.otn, nil)
	if body["refunded_amount"] != float64(50) {
		t.Errorf("A's refunded_amount through the API = %v, want 50", body["refunded_amount"])
	}

	// Resend A's order.paid event to the webhooks (none is registered: nothing queued).
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#timeline li.kind-event button.resend`)), chromedp.WaitVisible(chromedp.CSS(`#confirm-button`)),
		chromedp.Click(chromedp.CSS(`#confirm-button`)), chromedp.WaitVisible(chromedp.CSS(`#flash`))); err != nil {
		t.Fatalf("resend: %v", err)
	}
	if flash := text(`#flash`); flash != "Resent: 0 deliveries queued." {
		t.Errorf("after the resend: %q", flash)
	}

	// Query B now: the sandbox never saw it opened, so there is nothing to apply.
	search(b.otn, b.otn)
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#action-query`)), chromedp.WaitVisible(chromedp.CSS(`#confirm-button`)),
		chromedp.Click(chromedp.CSS(`#confirm-button`)), chromedp.WaitVisible(chromedp.CSS(`#flash`))); err != nil {
		t.Fatalf("query: %v", err)
	}
	if flash := text(`#flash`); !strings.HasPrefix(flash, "Queried: the provider says ") || !strings.HasSuffix(flash, "Nothing to apply.") {
		t.Errorf("after the query: %q", flash)
	}
	// Reprocess B's tampered notification: rejected again, kept as a reprocess record.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#timeline li.kind-notification form.inline button`)), chromedp.WaitVisible(chromedp.CSS(`#confirm-button`)),
		chromedp.Click(chromedp.CSS(`#confirm-button`)), chromedp.WaitVisible(chromedp.CSS(`#timeline li.kind-reprocess`))); err != nil {
		t.Fatalf("reprocess: %v", err)
	}
	if flash, entry := text(`#flash`), text(`#timeline li.kind-reprocess`); flash != "Reprocessed: rejected signature_invalid." || !strings.Contains(entry, "signature\tfail") {
		t.Errorf("after the reprocess: flash %q, entry %q", flash, entry)
	}

	// Close B, confirmed: closed at the sandbox, as the API sees it.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#action-close`)), chromedp.WaitVisible(chromedp.CSS(`#confirm-button`)),
		chromedp.Click(chromedp.CSS(`#confirm-button`)), chromedp.WaitVisible(chromedp.CSS(`#flash`))); err != nil {
		t.Fatalf("close: %v", err)
	}
	if flash, st := text(`#flash`), text(`#status`); flash != "Closed: the order is closed." || st != "closed" {
		t.Errorf("after the close: flash %q, status %q", flash, st)
	}
	if _, body := binAPI(t, "GET", base+"/v1/orders/"+b.app+"/"+b.otn, nil); body["status"] != "closed" {
		t.Errorf("B through the API: %v", body["status"])
	}

	// Log out: the console asks for the password again.
	if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`header form button.link`)), chromedp.WaitVisible(chromedp.CSS(`input[type=password]`)),
		chromedp.Navigate(base+"/console/orders"), chromedp.WaitVisible(chromedp.CSS(`input[type=password]`))); err != nil {
		t.Fatalf("logout: %v", err)
	}
}
