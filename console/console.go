// Package console is the operator console: server-rendered pages (html/template, embedded) over
// a paynotify.Service, with a little vanilla JavaScript for live updates (long-poll) and copy
// buttons, and no build step. Pages live under /console/; /login and /logout hold the session
// (docs/console.md). In demo mode there is no login, and the overview carries the demo's
// create-and-pay form.
package console

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/paynotify/paynotify"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// beijing is the time zone the console shows (UTC+8, no daylight saving), with UTC on hover.
var beijing = time.FixedZone("CST", 8*60*60)

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"money": func(a paynotify.Amount) string { return "¥" + a.String() },
	// rejectedShown is how many rejected records the order page shows (orderEvidence).
	"rejectedShown": func() int { return orderRejected },
	"bj": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.In(beijing).Format("2006-01-02 15:04:05")
	},
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000000Z07:00")
	},
	"deref": func(t *time.Time) time.Time {
		if t == nil {
			return time.Time{}
		}
		return *t
	},
	"query": func(kv ...string) template.URL {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				v.Set(kv[i], kv[i+1])
			}
		}
		return template.URL("?" + v.Encode())
	},
	"path": url.PathEscape,
	"add":  func(a, b int) int { return a + b },
}).ParseFS(templateFS, "templates/*.html"))

// Console is the operator console's handler and its dependencies.
type Console struct {
	// Service runs the actions (the same workflows as the API) and its Store serves the pages.
	Service *paynotify.Service
	// PasswordHash is the admin password's argon2id or bcrypt hash (HashPassword). Required
	// unless Demo.
	PasswordHash string
	// Demo turns the login off (the demo listens on loopback only) and puts the create-and-pay
	// form on the overview; its script calls the API with APIToken, a local demo credential.
	Demo     bool
	APIToken string
	// SecureCookie gives the session cookie the Secure attribute on every request (public_url
	// is https behind a TLS-terminating proxy); requests that came over TLS always get it.
	SecureCookie bool
	Logger       *slog.Logger
	// Now returns the current time; defaults to time.Now.
	Now func() time.Time
	// WaitTimeout is how long a live-update long-poll waits for a change; defaults to 25s.
	WaitTimeout time.Duration
	// PollInterval is how often a long-poll looks at the store; defaults to 500ms.
	PollInterval time.Duration

	sessions   sessions
	demo       *session
	verifyOnce sync.Once
	verifySem  chan struct{}

	stopMu   sync.Mutex
	stopping chan struct{} // closed by StopLongPolls
}

// StopLongPolls makes every live-update long-poll answer now, and later ones not wait: call it
// when a graceful shutdown begins (httpd.Server.OnStopLongPolls), so that shutdown does not wait
// out their 25 s.
func (c *Console) StopLongPolls() {
	ch := c.stopped()
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// stopped returns the channel StopLongPolls closes.
func (c *Console) stopped() chan struct{} {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	if c.stopping == nil {
		c.stopping = make(chan struct{})
	}
	return c.stopping
}

func (c *Console) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Console) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// Routes returns the console's handlers by ServeMux pattern, to be mounted on the server's mux
// (httpd.Server.Mount): GET /, /login, POST /logout and /console/.
func (c *Console) Routes() map[string]http.Handler {
	if c.Demo && c.demo == nil {
		c.demo = &session{id: "demo", csrf: randomToken()}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.handleRoot)
	mux.HandleFunc("GET /login", c.handleLoginForm)
	mux.HandleFunc("POST /login", c.handleLogin)
	mux.HandleFunc("POST /logout", c.handleLogout)
	mux.Handle("GET /console/{$}", c.guard(c.handleOverview))
	mux.Handle("GET /console/orders", c.guard(c.handleOrders))
	mux.Handle("GET /console/orders/{app}/{otn}", c.guard(c.handleOrder))
	mux.Handle("GET /console/notifications", c.guard(c.handleNotifications))
	mux.Handle("GET /console/notifications/{id}", c.guard(c.handleNotification))
	mux.Handle("GET /console/anomalies", c.guard(c.handleAnomalies))
	mux.Handle("GET /console/wait", c.guard(c.handleWait))
	mux.Handle("POST /console/actions/{action}", c.guard(c.handleAction))
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	mux.Handle("/console/", c.guard(func(w http.ResponseWriter, r *http.Request, ss *session) {
		c.render(w, r, http.StatusNotFound, "error", &page{Title: "Not found", Error: "No such console page."})
	}))
	h := securityHeaders(c.sameOrigin(mux))
	return map[string]http.Handler{"GET /{$}": h, "/login": h, "/logout": h, "/console/": h}
}

// sameOrigin refuses a POST that a browser says comes from another site (Sec-Fetch-Site, or an
// Origin whose host is not the request's: Go's http.CrossOriginProtection), before anything
// counts it. The forms carry a CSRF token besides; the login's cannot (there is no session
// yet), and a page on any site could post wrong passwords from the operator's browser until the
// login limit locked every operator behind the same proxy out (a reviewer helper's finding).
func (c *Console) sameOrigin(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusForbidden, "error", &page{Title: "Forbidden",
			Error: "A form of another site was posted here: refused. Use the console's own pages."})
	}))
	return cop.Handler(h)
}

// securityHeaders sets the headers every console answer carries: no caching, no framing, a
// content security policy that allows only the console's own script and style.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
		h.ServeHTTP(w, r)
	})
}

// handleRoot serves GET /: the overview in demo mode (the Alipay page cashier returns the buyer
// to /?app=&out_trade_no=: that order's page); otherwise the console or the login form.
func (c *Console) handleRoot(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if app, otn := q.Get("app"), q.Get("out_trade_no"); app != "" && otn != "" {
		http.Redirect(w, r, orderPath(app, otn), http.StatusSeeOther)
		return
	}
	if c.Demo {
		c.handleOverview(w, r, c.demo)
		return
	}
	if c.session(r) == nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

// orderPath is the console page of an order.
func orderPath(app, otn string) string {
	return "/console/orders/" + url.PathEscape(app) + "/" + url.PathEscape(otn)
}

// urlQueryEscape escapes s for a query value.
func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// page is what every template gets.
type page struct {
	Title string
	// Nav names the menu entry to highlight.
	Nav   string
	CSRF  string
	Demo  bool
	Token string // demo only: the API token of the create form's script
	// Error and Flash are shown at the top.
	Error string
	Flash string
	// Live, when set, is the query of /console/wait that the page long-polls, and Stamp the
	// state it was rendered from: a different answer reloads the page.
	Live  string
	Stamp string
	Data  any
}

// render executes the template name with p, completing it from the session.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p *page) {
	p.Demo = c.Demo
	ss := c.session(r)
	if ss != nil {
		p.CSRF = ss.csrf
	}
	if c.Demo {
		p.Token = c.APIToken
	}
	if p.Flash == "" {
		p.Flash = flashFor(r, ss)
	}
	var b strings.Builder
	if err := templates.ExecuteTemplate(&b, name, p); err != nil {
		c.logger().Error("console: render", "template", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprint(w, b.String())
}

// fail renders the error page for err: its code's status and its message (internal errors are
// logged, never shown).
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch paynotify.ErrorCode(err) {
	case paynotify.ENOTFOUND:
		status = http.StatusNotFound
	case paynotify.EINVALID:
		status = http.StatusBadRequest
	case paynotify.ECONFLICT:
		status = http.StatusConflict
	case paynotify.EPROVIDER:
		status = http.StatusUnprocessableEntity
	case paynotify.EPROVIDERUNAVAILABLE:
		status = http.StatusBadGateway
	}
	if paynotify.ErrorCode(err) == paynotify.EINTERNAL {
		c.logger().Error("console", "path", r.URL.Path, "err", err)
	}
	c.render(w, r, status, "error", &page{Title: "Error", Error: paynotify.ErrorMessage(err)})
}
