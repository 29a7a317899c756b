package httpd

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// logsPerMinute is how many lines of one kind that anyone can cause (a callback to an unknown
// app or to an endpoint the app does not take, a body that cannot be read, a return_url visit)
// a server logs in a minute; the rest are counted
// and the count is logged with the next minute's first line.
const logsPerMinute = 20

// logLimit bounds the log lines of one kind that an anonymous request causes, so that the log
// grows with the minutes, not with an attacker's request rate.
type logLimit struct {
	mu      sync.Mutex
	start   time.Time
	n       int
	dropped int64
}

// log writes the line (msg, args) at level WARN through l unless the minute's lines are spent.
// A line that starts a new minute says how many the previous one dropped.
func (ll *logLimit) log(l *slog.Logger, now time.Time, msg string, args ...any) {
	ll.logAt(l, slog.LevelWarn, now, msg, args...)
}

// logAt is log at the given level.
func (ll *logLimit) logAt(l *slog.Logger, level slog.Level, now time.Time, msg string, args ...any) {
	ll.mu.Lock()
	var dropped int64
	if now.Sub(ll.start) >= time.Minute {
		dropped, ll.dropped, ll.start, ll.n = ll.dropped, 0, now, 0
	}
	ok := ll.n < logsPerMinute
	if ok {
		ll.n++
	} else {
		ll.dropped++
	}
	ll.mu.Unlock()
	if dropped > 0 {
		l.Warn("log lines over the minute's limit were dropped", "kind", msg, "dropped", dropped)
	}
	if ok {
		l.Log(context.Background(), level, msg, args...)
	}
}
