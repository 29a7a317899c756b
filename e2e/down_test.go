package e2e_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sandbox"
)

// TestServerDownAlipay: the server fails the first two notification requests (the connection
// dropped without an answer, then a 503): the sandbox retries on Alipay's schedule (time-scaled)
// and the order is paid by the third attempt, at +14m of the schedule.
func TestServerDownAlipay(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		fail := notifyFails(func(i int, w http.ResponseWriter) bool {
			switch i {
			case 1:
				panic(http.ErrAbortHandler) // the connection closes without an answer
			case 2:
				http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
				return true
			}
			return false
		})
		e := newEnv(t, s, options{middleware: fail})
		const otn = "e2e_down_alipay"
		o := e.create(paynotify.ChannelAlipayPrecreate, otn, 100)
		e.pay(paynotify.ChannelAlipayPrecreate, o.Pay)
		e.waitStatus(alipayApp, otn, "paid")
		as := e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn}, 1)
		if len(as) != 3 || as[0].Acked || as[0].Error == "" || as[1].Acked || as[1].Status != 503 || !as[2].Acked || as[2].N != 3 ||
			as[2].ScheduledOffset.D() != 14*time.Minute {
			t.Fatalf("attempts: %s", summary(as))
		}
		// The third attempt came at +14m of the schedule, time-scaled (840 ms at 1000×).
		if off := as[2].Offset.D(); off < 840*time.Millisecond {
			t.Errorf("third attempt at %v, before its scaled offset", off)
		}
		e.checkEvents(otn, "order.paid@v2")
		e.checkVerdicts(otn, map[string]int{"accepted": 1})
	})
}

// TestServerDownWechat: the server's port is closed (connections refused) while the sandbox
// makes its first attempts; it comes back on the same address and a later retry pays the order.
func TestServerDownWechat(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s, options{})
		const otn = "e2e_down_wechat"
		o := e.create(paynotify.ChannelWechatNative, otn, 100)
		e.stopServer()
		e.pay(paynotify.ChannelWechatNative, o.Pay)
		down := e.waitAttempts(sandbox.AttemptFilter{OutTradeNo: otn}, 2)
		e.restartServer()
		e.waitStatus(wechatApp, otn, "paid")
		as := e.waitAcked(sandbox.AttemptFilter{OutTradeNo: otn}, 1)
		last := as[len(as)-1]
		if !last.Acked || last.N < 3 || len(as) != last.N {
			t.Fatalf("attempts: %s", summary(as))
		}
		for _, a := range as[:len(as)-1] {
			if a.Acked || a.Error == "" || a.Status != 0 {
				t.Fatalf("an attempt while the server was down: %s", summary(as))
			}
		}
		for _, a := range down {
			if a.Error == "" {
				t.Fatalf("attempts while down: %s", summary(down))
			}
		}
		e.checkEvents(otn, "order.paid@v2")
		e.checkVerdicts(otn, map[string]int{"accepted": 1})
	})
}
