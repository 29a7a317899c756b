// Package httpd serves paynotify over HTTP: the merchant JSON API, the provider callbacks and the
// Alipay return URL; the console (package console) and the sandbox are mounted on it. It holds the
// one translation from application errors to HTTP statuses.
package httpd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/docs"
)

// Server is the HTTP server's handler and its dependencies.
type Server struct {
	// Service runs the workflows; its Store, Processor and Apps serve the reads and callbacks.
	Service *paynotify.Service
	// APIToken is the merchant API's bearer token of the config (scope write). The store's named
	// tokens (paynotify.APITokenStore, through Service.Store) are accepted too (auth.go).
	APIToken string
	Logger   *slog.Logger
	// Now returns the current time; defaults to time.Now.
	Now func() time.Time
	// Mount adds extra handlers (the sandbox under /sandbox/, the console) by pattern.
	Mount map[string]http.Handler
	// OnStopLongPolls are called by StopLongPolls: the long-polls of the mounted handlers (the
	// console's live updates, the sandbox's attempts), which a graceful shutdown would otherwise
	// wait out (a reviewer helper's finding: an open console page held every stop for 25 s).
	OnStopLongPolls []func()
	// MaxBodyBytes caps request bodies; defaults to 1 MiB.
	MaxBodyBytes int64
	// PollInterval is how often a long-poll re-reads the order, for changes made by other
	// instances; defaults to 1s.
	PollInterval time.Duration
	// AllowHost, if set, is asked about the host of every request's Host header (without the
	// port); a request it refuses is answered 421 and goes no further. The demo accepts loopback
	// names only, so that a page on another site cannot reach it through DNS rebinding.
	AllowHost func(host string) bool
	// Ready, if set, tells GET /readyz whether the server can do its work (the database answers,
	// its schema is current). Its error text is shown to whoever asks: no secrets in it.
	Ready func(ctx context.Context) error
	// TokenCacheTTL is how long a stored API token, once found, is trusted without asking the
	// store again: a token revoked meanwhile is still accepted for at most this long. Defaults
	// to DefaultTokenCacheTTL (5s); a negative value asks the store on every request.
	TokenCacheTTL time.Duration

	tokens tokenCache
	// These bound the log lines of requests anyone can send: callbacks to unknown apps, to an
	// endpoint the app does not take, whose body cannot be read, return_url visits, and requests
	// whose client left while the store was asked.
	unknownApp, notTaken, unreadable, badReturn, goodReturn, clientGone logLimit

	waitMu   sync.Mutex
	waiters  map[string][]chan struct{}
	stopping chan struct{} // closed by StopLongPolls
	stopOnce sync.Once
}

// StopLongPolls makes every long-poll answer now, and later ones not wait: call it when a graceful
// shutdown begins (http.Server.RegisterOnShutdown), so that shutdown does not wait out their
// timeouts.
func (s *Server) StopLongPolls() {
	s.stopOnce.Do(func() {
		s.waitMu.Lock()
		if s.stopping == nil {
			s.stopping = make(chan struct{})
		}
		close(s.stopping)
		s.waitMu.Unlock()
		for _, f := range s.OnStopLongPolls {
			f()
		}
	})
}

// stopped returns the channel closed by StopLongPolls.
func (s *Server) stopped() chan struct{} {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	if s.stopping == nil {
		s.stopping = make(chan struct{})
	}
	return s.stopping
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Handler returns the server's routes. It also hooks the Processor's change notifications, for
// long-polls.
func (s *Server) Handler() http.Handler {
	if p := s.Service.Processor; p != nil && p.OnChange == nil {
		p.OnChange = s.orderChanged
	}
	mux := http.NewServeMux()
	// Each route with the query parameters it reads: any other is refused (400), not ignored: a
	// client paging with ?offset= got the first page again and again (a reviewer helper's
	// finding).
	api := func(pattern string, h http.HandlerFunc, params ...string) {
		mux.Handle(pattern, s.authorized(onlyParams(h, params...)))
	}
	api("POST /v1/orders", s.handleCreateOrder)
	api("GET /v1/orders/{app}/{out_trade_no}", s.handleGetOrder, "wait")
	api("POST /v1/orders/{app}/{out_trade_no}/close", s.handleCloseOrder)
	api("POST /v1/orders/{app}/{out_trade_no}/refunds", s.handleCreateRefund)
	api("GET /v1/orders/{app}/{out_trade_no}/refunds", s.handleListRefunds)
	api("GET /v1/orders", s.handleListOrders, "app", "status", "limit")
	api("GET /v1/events", s.handleListEvents, "after", "app", "limit")
	api("GET /v1/notifications", s.handleListNotifications, "app", "out_trade_no", "verdict", "reason", "source", "limit")
	api("GET /v1/notifications/{id}", s.handleGetNotification)
	api("POST /v1/notifications/{id}/reprocess", s.handleReprocess)
	api("POST /v1/webhook-endpoints", s.handleCreateEndpoint)
	api("GET /v1/webhook-endpoints", s.handleListEndpoints)
	api("GET /v1/webhook-endpoints/{id}", s.handleGetEndpoint)
	api("PATCH /v1/webhook-endpoints/{id}", s.handleUpdateEndpoint)
	api("DELETE /v1/webhook-endpoints/{id}", s.handleDeleteEndpoint)
	api("POST /v1/webhook-endpoints/{id}/rotate-secret", s.handleRotateSecret)
	api("POST /v1/webhook-endpoints/{id}/test", s.handleTestEndpoint)
	api("GET /v1/webhook-endpoints/{id}/attempts", s.handleListAttempts, "event_id", "limit")
	api("POST /v1/webhook-endpoints/{id}/recover", s.handleRecover)
	api("POST /v1/events/{id}/resend", s.handleResendEvent)
	// The API's own description is public, like /healthz: it holds no secret, and client
	// generators fetch it without a token.
	mux.HandleFunc("GET /v1/openapi.yaml", handleOpenAPI)
	mux.HandleFunc("POST /notify/{provider}/{app}", s.handleNotify)
	mux.HandleFunc("GET /return/alipay/{app}", s.handleAlipayReturn)
	mux.HandleFunc("GET /return/alipay-legacy/{app}", s.handleAlipayReturn)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.handleReady)
	for pattern, h := range s.Mount {
		mux.Handle(pattern, h)
	}
	h := s.withRequestID(apiNotRouted(mux))
	if s.AllowHost == nil {
		return h
	}
	return AllowHosts(h, s.AllowHost)
}

// onlyParams refuses a request whose query h would not read as written: a parameter h does not
// read, one given twice (h reads the first), or a query that does not parse (URL.Query drops the
// pairs it cannot read: "?app=x;status=paid" listed every app's orders), naming the part.
func onlyParams(h http.HandlerFunc, params ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		refuse := func(format string, args ...any) {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": paynotify.EINVALID,
				"message": fmt.Sprintf(format, args...)}})
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			refuse("The query does not parse (%s): separate parameters with &, and percent-encode ; and %%.", paynotify.ClipText(err.Error(), 128))
			return
		}
		for name, vs := range q {
			if !slices.Contains(params, name) {
				takes := "none"
				if len(params) > 0 {
					takes = strings.Join(params, ", ")
				}
				refuse("Unknown query parameter %q: this route takes %s.", paynotify.ClipText(name, 64), takes)
				return
			}
			if len(vs) > 1 {
				refuse("Query parameter %q is given %d times: give it once.", name, len(vs))
				return
			}
		}
		h(w, r)
	}
}

// apiNotRouted answers a /v1/ request that no route takes with the API's error JSON, as every
// other API answer: a path of no route is 404 not_found, a route's path with another method 405
// method_not_allowed with its Allow header (the mux's own answers are text/plain, which a client
// reading the error's code cannot read: a reviewer helper's finding).
func apiNotRouted(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			mux.ServeHTTP(w, r)
			return
		}
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// The mux's answer says which: 404, or 405 with the methods its routes take.
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusMethodNotAllowed:
			allow := rec.header.Get("Allow")
			w.Header().Set("Allow", allow)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": map[string]any{"code": "method_not_allowed",
				"message": fmt.Sprintf("%s is not a method of %s (it takes %s).", clipLog(r.Method), clipLog(r.URL.Path), allow)}})
		case http.StatusNotFound:
			writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"code": paynotify.ENOTFOUND,
				"message": fmt.Sprintf("No API route %s %s.", clipLog(r.Method), clipLog(r.URL.Path))}})
		default: // a redirect (a path to clean, a trailing slash): the mux's own
			mux.ServeHTTP(w, r)
		}
	})
}

// headerRecorder keeps the status and headers a handler writes, and drops its body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header { return h.header }
func (h *headerRecorder) WriteHeader(code int) {
	if h.status == 0 {
		h.status = code
	}
}
func (h *headerRecorder) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return len(b), nil
}

// AllowHosts serves h only to requests whose Host header (without its port) allow accepts, and
// answers the others 421 Misdirected Request: on loopback, a page on a name its DNS points at
// 127.0.0.1 (rebinding) would otherwise be "same origin" with itself.
func AllowHosts(h http.Handler, allow func(host string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		if !allow(host) {
			http.Error(w, "misdirected request: this server answers to loopback host names only", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// LoopbackHost reports whether host (a Host header without its port) names the local machine:
// localhost, or a loopback IP address (127.0.0.0/8, ::1, with or without brackets).
func LoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// handleReady answers 200 "ok" when Ready says so (or is not set), 503 "not ready: …" otherwise;
// Ready gets at most 5 seconds.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", err)
			return
		}
	}
	fmt.Fprintln(w, "ok")
}

// handleOpenAPI serves docs/openapi.yaml as it was built into the binary.
func handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(docs.OpenAPI)))
	_, _ = w.Write(docs.OpenAPI)
}

// NewHTTPServer wraps h in an http.Server with explicit timeouts. The write timeout leaves room
// for the longest long-poll (60s).
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      75 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	// scopeKey holds the scope of the request's API token (authorized).
	scopeKey
)

// writeScope reports whether the request's API token has scope write.
func writeScope(r *http.Request) bool {
	scope, _ := r.Context().Value(scopeKey).(string)
	return scope == paynotify.ScopeWrite
}

// withRequestID gives every request an id, echoed in X-Request-Id and carried by its log lines.
func (s *Server) withRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := paynotify.NewID("req")
		w.Header().Set("X-Request-Id", id)
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

// log returns the logger for a request.
func (s *Server) log(r *http.Request) *slog.Logger {
	id, _ := r.Context().Value(requestIDKey).(string)
	return s.logger().With("request_id", id)
}

// statusOf is the one translation from application error codes to HTTP statuses.
var statusOf = map[string]int{
	paynotify.EINVALID:             http.StatusBadRequest,
	paynotify.ENOTFOUND:            http.StatusNotFound,
	paynotify.ECONFLICT:            http.StatusConflict,
	paynotify.EUNAUTHORIZED:        http.StatusUnauthorized,
	paynotify.EFORBIDDEN:           http.StatusForbidden,
	paynotify.EPROVIDERUNAVAILABLE: http.StatusBadGateway,
	paynotify.EPROVIDER:            http.StatusUnprocessableEntity,
	paynotify.EINTERNAL:            http.StatusInternalServerError,
}

// writeError answers with the error JSON of docs/api.md, "Errors". Internal errors are logged,
// never shown.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := paynotify.ErrorCode(err)
	switch {
	case code == paynotify.EINTERNAL && r.Context().Err() != nil && errors.Is(err, r.Context().Err()):
		// The client left while the store was asked (a token's lookup, a list), and the error
		// is that cancellation: not our failure, and anyone can cause it, so a bounded warning,
		// not an ERROR line per request. A real failure after the client left (a commit on a
		// context of its own, as a provider's answer is recorded) stays an ERROR.
		s.clientGone.log(s.log(r), s.now(), "request ended by the client before its answer", "method", r.Method,
			"path", clipLog(r.URL.Path), "err", err)
	case code == paynotify.EINTERNAL:
		s.log(r).Error("internal error", "method", r.Method, "path", clipLog(r.URL.Path), "err", err)
	}
	body := map[string]any{"code": code, "message": paynotify.ErrorMessage(err)}
	var e *paynotify.Error
	if errors.As(err, &e) && e.ProviderCode != "" {
		body["provider_code"] = e.ProviderCode
	}
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, map[string]any{"error": body})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	// The answers quote stored text unescaped (SetEscapeHTML(false)): never sniffed as a page.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// orderChanged wakes the long-polls waiting on o.
func (s *Server) orderChanged(o *paynotify.Order) {
	key := o.App + "\x00" + o.OutTradeNo
	s.waitMu.Lock()
	chans := s.waiters[key]
	delete(s.waiters, key)
	s.waitMu.Unlock()
	for _, c := range chans {
		close(c)
	}
}

// waitChange returns a channel closed at the next change of the order.
func (s *Server) waitChange(app, outTradeNo string) chan struct{} {
	key := app + "\x00" + outTradeNo
	c := make(chan struct{})
	s.waitMu.Lock()
	if s.waiters == nil {
		s.waiters = make(map[string][]chan struct{})
	}
	s.waiters[key] = append(s.waiters[key], c)
	s.waitMu.Unlock()
	return c
}
