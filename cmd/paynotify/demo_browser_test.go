package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns the path of the Chromium binary. In CI (CI=true) a missing Chromium fails the
// test: .ci/run installs it, so the browser tests never skip there.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium); CI installs it and runs this test")
	return ""
}

// newBrowser starts headless Chromium for the test and returns a tab's context, ended with the
// test or after timeout.
func newBrowser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	exe := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	bctx, tcancel := context.WithTimeout(bctx, timeout)
	t.Cleanup(func() { tcancel(); bcancel(); acancel() })
	return bctx
}

// TestDemoPage_Browser drives real Chromium through the demo as a new user would: create an
// order on the console's overview (GET /, no login in demo mode), pay it in the sandbox cashier
// in another tab, and watch the order's page follow it live to paid, with the accepted
// notification's checks in its timeline.
func TestDemoPage_Browser(t *testing.T) {
	if testing.Short() {
		t.Skip("drives a browser")
	}
	bctx := newBrowser(t, 90*time.Second)
	addr := freeAddr(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		m := &Main{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr}
		done <- m.Run(ctx, []string{"serve", "--listen", addr, "--data-dir", dir})
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("serve exit %d:\n%s", code, stderr.String())
		}
	})
	base := "http://" + addr
	waitHealthy(t, base)

	// alipay.direct and alipay.wap_direct are the legacy app's (alipay-legacy-demo): their pay link
	// opens the sandbox's legacy cashier, and the notification counts once notify_verify confirms it.
	for _, channel := range []string{"alipay.page", "wechatpay.native", "alipay.direct", "alipay.wap_direct"} {
		if err := chromedp.Do(bctx,
			chromedp.Navigate(base+"/"),
			chromedp.WaitVisible(chromedp.CSS(`#paid-today`)),
			chromedp.SetValue(chromedp.CSS(`select[name=channel]`), channel),
			chromedp.Click(chromedp.CSS(`#create-button`)),
			chromedp.WaitVisible(chromedp.CSS(`a.pay-link`)),
			chromedp.WaitVisible(chromedp.CSS(`#status.pending`)),
		); err != nil {
			t.Fatalf("%s: create on the demo page: %v", channel, err)
		}
		href, err := chromedp.Run(bctx, chromedp.AttributeValue(chromedp.CSS(`a.pay-link`), "href"))
		if err != nil || !href.Exists {
			t.Fatalf("%s: pay link: %v", channel, err)
		}
		otn, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.getElementById('order').dataset.otn`))
		if strings.HasPrefix(href.Value, "/") {
			href.Value = base + href.Value
		}
		// The buyer pays in the sandbox cashier, in a tab of its own.
		cashier, ccancel := chromedp.NewContext(bctx)
		err = chromedp.Do(cashier,
			chromedp.Navigate(href.Value),
			chromedp.Click(chromedp.CSS(`form[action$="/pay"] button`)),
			// The form posts and the page changes: wait until the pay button is gone, or the tab
			// could close before the payment is submitted.
			chromedp.WaitNotPresent(chromedp.CSS(`form[action$="/pay"]`)),
		)
		cashierText, _ := chromedp.Run(cashier, chromedp.Text(chromedp.CSS(`body`)))
		ccancel()
		if err != nil {
			t.Fatalf("%s: pay in the cashier at %s: %v", channel, href.Value, err)
		}
		// The order's page long-polls and reloads itself when the notification is committed.
		if err := chromedp.Do(bctx,
			chromedp.WaitVisible(chromedp.CSS(`#status.paid`)),
			chromedp.WaitVisible(chromedp.CSS(`#timeline li.kind-notification`)),
		); err != nil {
			t.Fatalf("%s: order %s never showed paid on its page (cashier said %q): %v", channel, otn, cashierText, err)
		}
		status, _ := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#status`)))
		notification, _ := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#timeline li.kind-notification`)))
		if status != "paid" || !strings.Contains(notification, "accepted") || !strings.Contains(notification, "signature") {
			t.Fatalf("%s: status %q, notification %q", channel, status, notification)
		}
		// The page came back by console.js's live reload, marked by its cookie (not a use of a
		// session), which the loaded page cleared: what the operator does next counts. A later
		// change of the order's records reloads it once more, the cookie set again until that
		// page loads (a CI run read it in between): asked until it holds, for up to 5 s.
		var nav, cookie string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			nav, _ = chromedp.Run(bctx, chromedp.Evaluate[string](`performance.getEntriesByType('navigation')[0].type`))
			cookie, _ = chromedp.Run(bctx, chromedp.Evaluate[string](`document.cookie`))
			if nav == "reload" && !strings.Contains(cookie, "paynotify_live") || time.Now().After(deadline) {
				break
			}
		}
		if nav != "reload" || strings.Contains(cookie, "paynotify_live") {
			t.Errorf("%s: the order's page came by %q, cookies %q: want a reload and no paynotify_live left", channel, nav, cookie)
		}
	}
}
