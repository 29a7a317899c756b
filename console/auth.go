package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/reqtext"
)

// Session and login limits (docs/console.md, "Security model").
const (
	cookieName = "paynotify_console"
	// liveCookie marks the reload of a page that console.js does when its live update saw a
	// change: set by the script just before location.reload(), cleared by it when the page
	// loads. Such a reload is not a use of the session, as the long-poll before it is not.
	liveCookie = "paynotify_live"
	// sessionTTL is how long a session lasts from its login; sessionIdle how long it lasts unused.
	sessionTTL  = 12 * time.Hour
	sessionIdle = 2 * time.Hour
	// maxSessions bounds the sessions held: the oldest goes first.
	maxSessions = 1000
	// A client IP gets loginPerIP failed logins per loginWindow, every client together loginGlobal;
	// past either, logins are answered 429 until the window moves on.
	loginWindow = time.Minute
	loginPerIP  = 5
	loginGlobal = 20
)

// session is one logged-in browser, held in memory: a restart logs everyone out, and several
// instances behind a load balancer need sticky sessions (docs/console.md).
type session struct {
	id      string
	csrf    string
	created time.Time
	used    time.Time
}

// sessions holds the sessions and the login failures.
type sessions struct {
	mu       sync.Mutex
	byID     map[string]*session
	failures map[string][]time.Time // by client IP
	global   []time.Time
}

// randomToken returns 32 random bytes in hex.
func randomToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// create starts a session.
func (s *sessions) create(now time.Time) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID = map[string]*session{}
	}
	if len(s.byID) >= maxSessions {
		var oldest *session
		for _, ss := range s.byID {
			if oldest == nil || ss.created.Before(oldest.created) {
				oldest = ss
			}
		}
		delete(s.byID, oldest.id)
	}
	ss := &session{id: randomToken(), csrf: randomToken(), created: now, used: now}
	s.byID[ss.id] = ss
	return ss
}

// get returns the live session with id, or nil; touch marks the session used.
func (s *sessions) get(id string, now time.Time, touch bool) *session {
	if id == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.byID[id]
	if ss == nil {
		return nil
	}
	if now.Sub(ss.created) > sessionTTL || now.Sub(ss.used) > sessionIdle {
		delete(s.byID, id)
		return nil
	}
	if touch {
		ss.used = now
	}
	return ss
}

// end deletes the session with id.
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// recent drops the times before the window and returns the rest.
func recent(ts []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= loginWindow {
		i++
	}
	return ts[i:]
}

// limited reports whether ip (or everyone) has used up its failed logins.
func (s *sessions) limited(ip string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limitedLocked(ip, now)
}

func (s *sessions) limitedLocked(ip string, now time.Time) bool {
	s.global = recent(s.global, now)
	if s.failures == nil {
		s.failures = map[string][]time.Time{}
	}
	f := recent(s.failures[ip], now)
	if len(f) == 0 {
		delete(s.failures, ip)
	} else {
		s.failures[ip] = f
	}
	return len(f) >= loginPerIP || len(s.global) >= loginGlobal
}

// attempt admits a login of ip unless a limit is reached, and counts it as failed at once, in the
// same lock: parallel attempts cannot all pass the check before any of them is counted.
// succeeded takes the count back when the password was right.
func (s *sessions) attempt(ip string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limitedLocked(ip, now) {
		return false
	}
	s.failedLocked(ip, now)
	return true
}

// succeeded takes back the failure attempt counted for a login of ip at now.
func (s *sessions) succeeded(ip string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures[ip] = dropOne(s.failures[ip], now)
	if len(s.failures[ip]) == 0 {
		delete(s.failures, ip)
	}
	s.global = dropOne(s.global, now)
}

// dropOne removes the last occurrence of t from ts.
func dropOne(ts []time.Time, t time.Time) []time.Time {
	for i := len(ts) - 1; i >= 0; i-- {
		if ts[i].Equal(t) {
			return append(ts[:i], ts[i+1:]...)
		}
	}
	return ts
}

// failed counts a failed login of ip.
func (s *sessions) failed(ip string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failedLocked(ip, now)
}

func (s *sessions) failedLocked(ip string, now time.Time) {
	if s.failures == nil {
		s.failures = map[string][]time.Time{}
	}
	if len(s.failures) > 10000 { // bounded: a flood of addresses forgets the oldest state
		clear(s.failures)
	}
	s.failures[ip] = append(s.failures[ip], now)
	s.global = append(s.global, now)
}

// verifyConcurrency is how many password checks run at once.
const verifyConcurrency = 2

// verifying returns the semaphore of the password checks.
func (c *Console) verifying() chan struct{} {
	c.verifyOnce.Do(func() { c.verifySem = make(chan struct{}, verifyConcurrency) })
	return c.verifySem
}

// clientIP is the request's peer address. Headers such as X-Forwarded-For are not trusted: behind
// a reverse proxy every client shares the proxy's address, and the global limit still holds.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// secure reports whether the session cookie gets the Secure attribute: the request came over TLS,
// or the console was told its public URL is https (a TLS-terminating proxy in front).
func (c *Console) secure(r *http.Request) bool {
	return r.TLS != nil || c.SecureCookie
}

// session returns the request's session, or nil. In demo mode every request has the demo's one
// session (no login: the demo listens on loopback only).
func (c *Console) session(r *http.Request) *session {
	if c.Demo {
		return c.demo
	}
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	// A live-update long-poll (GET /console/wait, every 25 s from an open page), or the reload
	// of the page it triggers, is not a use: an unattended tab must not keep the session from
	// ending after sessionIdle.
	return c.sessions.get(ck.Value, c.now(), r.URL.Path != "/console/wait" && !liveReload(r))
}

// liveReload reports whether r is console.js's reload of a page after a live update (liveCookie).
func liveReload(r *http.Request) bool {
	ck, err := r.Cookie(liveCookie)
	return err == nil && ck.Value == "1" && r.Method == http.MethodGet
}

// checkCSRF reports whether the POST's csrf field matches the session's token.
func checkCSRF(r *http.Request, ss *session) bool {
	got := r.PostFormValue("csrf")
	return ss != nil && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) == 1
}

// handleLoginForm serves GET /login.
func (c *Console) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	if c.Demo || c.session(r) != nil {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "login", &page{Title: "Log in", Data: r.URL.Query().Get("next")})
}

// handleLogin serves POST /login: the password against the hash, rate-limited, then a new
// session (a new id at every login: no fixation).
func (c *Console) handleLogin(w http.ResponseWriter, r *http.Request) {
	if c.Demo {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
		return
	}
	now := c.now()
	ip := clientIP(r)
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	next := r.PostFormValue("next")
	// Counted as failed before the password is checked (taken back when it is right), so that
	// parallel guesses meet the limit; and at most verifyConcurrency checks run at once, each
	// an argon2id of 64 MiB, so that a burst of logins cannot exhaust memory.
	// The check's slot first: a login refused for want of one is not checked, so not counted
	// (counted, it used up an operator's right password: a reviewer helper's finding).
	select {
	case c.verifying() <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "1")
		c.render(w, r, http.StatusTooManyRequests, "login", &page{Title: "Log in", Error: "Too many logins at once: try again.", Data: next})
		return
	}
	if !c.sessions.attempt(ip, now) {
		<-c.verifying()
		w.Header().Set("Retry-After", "60")
		c.render(w, r, http.StatusTooManyRequests, "login", &page{Title: "Log in", Error: "Too many failed logins: wait a minute.", Data: next})
		return
	}
	password := r.PostFormValue("password")
	ok := password != "" && VerifyPassword(c.PasswordHash, password)
	<-c.verifying()
	if !ok {
		c.logger().Warn("console: failed login", "client_ip", ip)
		c.render(w, r, http.StatusUnauthorized, "login", &page{Title: "Log in", Error: "Wrong password.", Data: next})
		return
	}
	c.sessions.succeeded(ip, now)
	if old := c.session(r); old != nil {
		// The browser's session before this login ends with it: an id that leaked stays valid
		// no longer than its owner's next login (a reviewer helper's finding).
		c.sessions.end(old.id)
	}
	ss := c.sessions.create(now)
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: ss.id, Path: "/", HttpOnly: true, Secure: c.secure(r),
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL / time.Second)})
	c.logger().Info("console: login", "client_ip", ip)
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

// safeNext returns next when it is a path of the console's own (after cleaning: "..", "\" and
// encoded forms cannot leave /console/), else /console/: the page to come back to after a login
// is never another site (no open redirect).
func safeNext(next string) string {
	const home = "/console/"
	if next == "" || strings.ContainsAny(next, "\\") {
		return home
	}
	for _, r := range next {
		if r < 0x20 || r == 0x7f {
			return home
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return home
	}
	p := u.EscapedPath()
	if strings.Contains(strings.ToLower(p), "%5c") || strings.Contains(strings.ToLower(p), "%2f") {
		return home
	}
	clean := path.Clean(u.Path)
	if !strings.HasPrefix(clean+"/", home) || strings.HasPrefix(clean, "//") {
		return home
	}
	if clean != u.Path && clean+"/" != u.Path {
		return home
	}
	out := &url.URL{Path: u.Path, RawQuery: u.RawQuery}
	return out.String()
}

// handleLogout serves POST /logout (CSRF-checked like every form).
func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request) {
	ss := c.session(r)
	if ss == nil || !checkCSRF(r, ss) {
		http.Error(w, "forbidden: missing or wrong CSRF token", http.StatusForbidden)
		return
	}
	if !c.Demo {
		c.sessions.end(ss.id)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", HttpOnly: true, Secure: c.secure(r),
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// guard passes requests with a session to h: without one, a GET is redirected to /login (with
// the page to come back to) and anything else is answered 401. Every POST must carry the
// session's CSRF token (403 otherwise).
func (c *Console) guard(h func(w http.ResponseWriter, r *http.Request, ss *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss := c.session(r)
		if ss == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			http.Error(w, "unauthorized: log in at /login", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if !checkCSRF(r, ss) {
				c.logger().Warn("console: refused a POST without its CSRF token", "path", r.URL.Path, "client_ip", clientIP(r))
				http.Error(w, "forbidden: missing or wrong CSRF token", http.StatusForbidden)
				return
			}
		}
		// Ids, keys and filters no stored row can hold: bad input, before any store is asked.
		if where := reqtext.Unstorable(r); where != "" {
			c.fail(w, r, paynotify.Errorf(paynotify.EINVALID, "The request's %s holds NUL or bytes that are not UTF-8.", where))
			return
		}
		h(w, r, ss)
	})
}
