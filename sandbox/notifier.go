package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/paynotify/paynotify/internal/wechatpaywire"
)

// notifier delivers notifications on their retry schedules. Its timing uses the real clock
// (time.Now), divided by Config.TimeScale; notification contents use Config.Now.
type notifier struct {
	s        *Sandbox
	mu       sync.Mutex
	pending  map[int64]*Notification // pending and held notifications, by id
	inflight map[int64]bool
	wake     chan struct{}
	wg       sync.WaitGroup
}

func newNotifier(s *Sandbox) *notifier {
	return &notifier{s: s, pending: map[int64]*Notification{}, inflight: map[int64]bool{}, wake: make(chan struct{}, 1)}
}

func (n *notifier) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// enqueue stores a new notification and schedules its first attempt. The caller holds s.mu.
func (n *notifier) enqueue(note *Notification) error {
	s := n.s
	note.CreatedAt = s.now()
	if note.Schedule == "" {
		note.Schedule = note.Faults.Schedule
	}
	if _, ok := schedules[note.Schedule]; !ok || !scheduleFits(note.Schedule, note.Provider) {
		note.Schedule = note.Provider
	}
	note.Offsets = nil
	for _, d := range schedules[note.Schedule] {
		note.Offsets = append(note.Offsets, Duration(d))
	}
	note.Status = NotePending
	switch {
	case note.Faults.NeverNotify && note.Kind == "payment":
		note.Status = NoteSuppressed
	case note.AfterID != 0, note.Faults.Reorder && note.Kind == "payment":
		note.Status = NoteHeld
	}
	note.NextAt = time.Now().Add(note.Faults.Delay.D())
	if err := s.st.saveNotification(note); err != nil {
		return err
	}
	if note.Status == NotePending || note.Status == NoteHeld {
		n.mu.Lock()
		if _, ok := n.pending[note.ID]; !ok { // never a second copy of one notification
			n.pending[note.ID] = note
		}
		n.mu.Unlock()
		n.poke()
	}
	s.notifyChanged()
	return nil
}

// releaseHeld makes the held notifications of a trade due now, except those waiting for another
// notification (AfterID): releaseAfter releases those. The caller holds s.mu.
func (n *notifier) releaseHeld(tradeID int64) {
	n.release(func(p *Notification) bool { return p.TradeID == tradeID && p.AfterID == 0 })
}

// releaseAfter makes the notifications held until notification id's first attempt due now. The
// caller holds s.mu.
func (n *notifier) releaseAfter(id int64) {
	n.release(func(p *Notification) bool { return p.AfterID == id })
}

func (n *notifier) release(match func(*Notification) bool) {
	n.mu.Lock()
	for _, p := range n.pending {
		if p.Status == NoteHeld && match(p) {
			p.Status = NotePending
			p.NextAt = time.Now()
			n.s.st.saveNotification(p)
		}
	}
	n.mu.Unlock()
	n.poke()
}

// retryNow makes every pending or held notification of a trade (all trades when tradeID is 0)
// due now, keeping its place in the schedule.
func (n *notifier) retryNow(tradeID int64) int {
	n.mu.Lock()
	c := 0
	for _, p := range n.pending {
		if tradeID == 0 || p.TradeID == tradeID {
			if p.Status == NoteHeld {
				p.Status = NotePending
			}
			p.NextAt = time.Now()
			c++
		}
	}
	n.mu.Unlock()
	n.poke()
	return c
}

func (n *notifier) forgetAll() {
	n.mu.Lock()
	n.pending = map[int64]*Notification{}
	n.mu.Unlock()
}

func (n *notifier) forgetTrade(id int64) {
	n.mu.Lock()
	for k, p := range n.pending {
		if p.TradeID == id {
			delete(n.pending, k)
		}
	}
	n.mu.Unlock()
}

func (n *notifier) wait() { n.wg.Wait() }

// run delivers due notifications until ctx ends.
func (n *notifier) run(ctx context.Context) {
	// Resume what an earlier run left pending. Under s.mu, as enqueue runs: otherwise a
	// notification enqueued while this loads could be read from the store here and also added by
	// enqueue, as two copies that would each make the first attempt.
	n.s.mu.Lock()
	if notes, err := n.s.st.notificationsWhere("WHERE status IN (?, ?)", NotePending, NoteHeld); err == nil {
		n.mu.Lock()
		for _, note := range notes {
			if _, ok := n.pending[note.ID]; !ok {
				n.pending[note.ID] = note
			}
		}
		n.mu.Unlock()
	} else {
		n.s.log.Error("sandbox: load pending notifications", "err", err)
	}
	n.s.mu.Unlock()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		next := now.Add(time.Hour)
		n.mu.Lock()
		for id, p := range n.pending {
			if n.inflight[id] || p.Status != NotePending {
				continue
			}
			if !p.NextAt.After(now) {
				n.inflight[id] = true
				n.wg.Add(1)
				go n.deliver(ctx, p)
			} else if p.NextAt.Before(next) {
				next = p.NextAt
			}
		}
		n.mu.Unlock()
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-n.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// deliver makes the notification's next scheduled attempt (with its fault copies) and schedules
// the one after.
func (n *notifier) deliver(ctx context.Context, note *Notification) {
	defer n.wg.Done()
	s := n.s
	k := note.Attempts // 0-based index in the schedule
	start := time.Now()
	if note.FirstAttemptAt.IsZero() {
		note.FirstAttemptAt = start
	}
	base := Attempt{
		NotificationID: note.ID, TradeID: note.TradeID, Provider: note.Provider, OutTradeNo: note.OutTradeNo,
		NotifyID: note.NotifyID, Kind: note.Kind, N: k + 1, URL: note.URL,
	}
	if k < len(note.Offsets) {
		base.ScheduledOffset = note.Offsets[k]
	}
	acked := false
	sentIndex := k + 1 - note.Faults.DropFirst // 1-based among the attempts actually sent
	switch {
	case k < note.Faults.DropFirst:
		a := base
		a.At, a.Offset = start, Duration(start.Sub(note.FirstAttemptAt))
		a.Fault, a.Error = "dropped", "dropped by the drop_first fault: not sent"
		if note.DoublePay {
			a.Fault = joinFault(a.Fault, "double_pay")
		}
		n.record(&a)
	default:
		copies := 1
		if sentIndex == 1 {
			// Bounded here too: a notification kept by an older sandbox may carry any count.
			copies += min(max(note.Faults.ConcurrentDuplicate, 0), maxFaultCount)
		}
		results := make([]Attempt, copies)
		var wg sync.WaitGroup
		for i := range copies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := base
				a.Copy = i
				if i > 0 {
					a.Fault = "concurrent_duplicate"
				}
				n.send(ctx, note, &a, sentIndex)
				results[i] = a
			}()
		}
		wg.Wait()
		for i := range results {
			acked = acked || results[i].Acked
		}
		if acked {
			// The acknowledgement is saved before the attempts are recorded: whoever waits for an
			// acked attempt (WaitAcked) then finds the notification acked too (notify_verify no
			// longer confirms its notify_id).
			s.mu.Lock()
			n.mu.Lock()
			_, still := n.pending[note.ID]
			note.Status = NoteAcked
			n.mu.Unlock()
			if still {
				s.st.saveNotification(note)
			}
			s.mu.Unlock()
		}
		for i := range results {
			n.record(&results[i])
		}
		if acked {
			for i := 1; i <= min(note.Faults.Duplicate, maxFaultCount) && ctx.Err() == nil; i++ {
				a := base
				a.Copy, a.Fault = copies-1+i, "duplicate"
				n.send(ctx, note, &a, sentIndex)
				n.record(&a)
			}
		}
	}

	s.mu.Lock()
	n.mu.Lock()
	delete(n.inflight, note.ID)
	_, still := n.pending[note.ID] // a reset may have removed it
	note.Attempts = k + 1
	switch {
	case acked:
		note.Status = NoteAcked
		delete(n.pending, note.ID)
	case note.Attempts >= len(note.Offsets):
		note.Status = NoteExhausted
		delete(n.pending, note.ID)
	default:
		scale := s.cfg.TimeScale
		note.NextAt = note.FirstAttemptAt.Add(time.Duration(float64(note.Offsets[note.Attempts]) / scale))
	}
	n.mu.Unlock()
	if still {
		s.st.saveNotification(note)
	}
	if k == 0 && note.Kind != "payment" {
		n.releaseHeld(note.TradeID)
	}
	if k == 0 {
		// Under s.mu with the save of the attempt count above. Should a crash fall between the
		// two writes, the waiting notification stays held until `retry` releases it.
		n.releaseAfter(note.ID)
	}
	s.mu.Unlock()
	s.notifyChanged()
	n.poke()
}

// record stores an attempt and wakes waiters.
func (n *notifier) record(a *Attempt) {
	if err := n.s.st.insertAttempt(a); err != nil {
		n.s.log.Error("sandbox: record attempt", "err", err)
	}
	n.s.notifyChanged()
}

// send makes one HTTP delivery and fills a with what happened. sentIndex is the 1-based number
// of the attempt among those actually sent (for signature probes).
func (n *notifier) send(ctx context.Context, note *Notification, a *Attempt, sentIndex int) {
	s := n.s
	h := http.Header{}
	body := note.Body
	if note.DoublePay {
		a.Fault = joinFault(a.Fault, "double_pay")
	}
	switch note.Provider {
	case ProviderAlipay, ProviderAlipayLegacy:
		h.Set("Content-Type", note.ContentType)
		h.Set("User-Agent", "Mozilla/4.0")
	case ProviderWechatpay:
		ts := s.now().Unix()
		nonce := randAlnum(32)
		serial := note.WechatpaySerial
		if serial == "" {
			serial = s.keys.pubKeyID
		}
		sh, err := wechatpaywire.SignHeaders(s.keys.platform, serial, ts, nonce, body)
		if err != nil {
			a.Error = "sign: " + err.Error()
			return
		}
		if note.Faults.BadSignature {
			bad, _ := wechatpaywire.SignHeaders(s.keys.platform, serial, ts, nonce, append(append([]byte{}, body...), ' '))
			sh.Set(wechatpaywire.HeaderSignature, bad.Get(wechatpaywire.HeaderSignature))
			a.Fault = joinFault(a.Fault, "bad_signature")
		}
		if sentIndex <= note.Faults.SigntestProbe {
			junk := make([]byte, 180)
			rand.Read(junk)
			sh.Set(wechatpaywire.HeaderSignature, wechatpaywire.ProbePrefix+base64.StdEncoding.EncodeToString(junk))
			a.Fault = joinFault(a.Fault, "signtest_probe")
		}
		for k, v := range sh {
			h[k] = v
		}
		h.Set("Content-Type", "application/json")
		h.Set("User-Agent", "Mozilla/4.0")
		h.Set(wechatpaywire.HeaderRequestID, randHex(16))
	}
	if note.Provider == ProviderAlipay && note.Faults.BadSignature {
		a.Fault = joinFault(a.Fault, "bad_signature")
	}
	if note.Provider == ProviderAlipayLegacy {
		labelLegacyAttempt(a, note)
	}
	a.RequestHeaders = map[string]string{}
	for k := range h {
		a.RequestHeaders[k] = h.Get(k)
	}
	a.RequestBody = body

	client := s.cfg.HTTPClient
	if t := note.Faults.Timeout.D(); t > 0 {
		c := *client
		c.Timeout = t
		client = &c
	}
	start := time.Now()
	a.At = start
	a.Offset = Duration(start.Sub(note.FirstAttemptAt))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, note.URL, bytes.NewReader(body))
	if err != nil {
		a.Error = "request: " + err.Error()
		return
	}
	req.Header = h
	resp, err := client.Do(req)
	if err != nil {
		a.Latency = Duration(time.Since(start))
		a.Error = err.Error()
		return
	}
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	a.Latency = Duration(time.Since(start))
	a.Status = resp.StatusCode
	a.Response = string(rb)
	if err != nil {
		a.Error = "read answer: " + err.Error()
		return
	}
	switch note.Provider {
	case ProviderAlipay:
		// Trailing whitespace only: Alipay's own Java demo answers println("success"), which
		// works; a blank line or a space before the word (output before <?php) is the classic
		// failure (docs/sandbox.md).
		ans := strings.TrimRight(string(rb), " \t\r\n")
		a.Acked = resp.StatusCode/100 == 2 && (ans == "success" || note.Faults.LenientAck && strings.EqualFold(ans, "success"))
	case ProviderWechatpay:
		a.Acked = resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNoContent
	case ProviderAlipayLegacy:
		a.Acked = legacyAcked(resp.StatusCode, rb, note.Faults)
	}
}

func joinFault(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}
