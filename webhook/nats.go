package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paynotify/paynotify"
)

// DefaultDuplicateWindow is the stream's de-duplication window when NATSConfig leaves it zero.
const DefaultDuplicateWindow = 24 * time.Hour

// NATSConfig is the config's nats block.
type NATSConfig struct {
	URL           string // e.g. nats://127.0.0.1:4222
	Stream        string // the JetStream stream's name
	SubjectPrefix string // one or more subject tokens, e.g. "paynotify" or "acme.payments"
	// DuplicateWindow is the window of a stream that paynotify creates (DefaultDuplicateWindow
	// when zero). An existing stream keeps its own.
	DuplicateWindow time.Duration
}

// NATS publishes events to a JetStream stream (docs/webhooks.md, "NATS JetStream").
//
// Subjects are {prefix}.{app}.{type}, e.g. paynotify.shop.order.paid:
//   - app is one subject token: "" (an event about no app) is "_". App names are [a-z0-9-]
//     (config), so in practice they are used as they are; any byte that is not allowed or not
//     safe in a token ('.', '*', '>', '%', whitespace, control characters and non-ASCII bytes) is
//     written %XX (upper-case hex), and an app named "_" is written %5F. The mapping is
//     deterministic and one to one: no two apps share a subject token.
//   - type keeps its dots: they are the subject's hierarchy (order.paid is two tokens, so that
//     paynotify.*.order.> selects every order event). Within each dot-separated part the same
//     %XX escaping applies; a type that is empty or has an empty part ("order..paid") is refused:
//     types are the fixed set paynotify.EventTypes, so it is a bug, not data.
//
// Each message has the header Nats-Msg-Id = the event id, so that JetStream de-duplicates a
// re-published event within the stream's duplicate window.
type NATS struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	cfg    NATSConfig
	stream string
	prefix string

	startErr error // why the first connection failed (OpenNATS), nil when it did not

	mu      sync.Mutex
	checked bool          // the stream was found (or created) with settings that fit
	window  time.Duration // its duplicate window, once checked
}

// OpenNATS connects to cfg.URL and makes sure the stream exists: it creates it, when missing,
// with the subjects {prefix}.> and cfg.DuplicateWindow; an existing stream's settings are never
// changed, and one whose subjects do not cover {prefix}.> is an error.
//
// A server that does not answer is not an error: the sink is optional, and refusing to start
// took the payment server down with it (a reviewer helper's finding). The connection is then
// retried in the background, Ready is false, and the stream is made sure of at the first
// Publish that reaches the server (a publication fails until then, and the dispatcher retries
// it). Only what the server answers (a stream of the wrong settings, a refused creation) is an
// error here.
func OpenNATS(ctx context.Context, cfg NATSConfig) (*NATS, error) {
	if cfg.URL == "" {
		return nil, errors.New("nats: url is required")
	}
	if err := checkStreamName(cfg.Stream); err != nil {
		return nil, err
	}
	if err := checkSubjectPrefix(cfg.SubjectPrefix); err != nil {
		return nil, err
	}
	if cfg.DuplicateWindow < 0 {
		return nil, errors.New("nats: duplicate_window must not be negative")
	}
	if cfg.DuplicateWindow == 0 {
		cfg.DuplicateWindow = DefaultDuplicateWindow
	}
	opts := []nats.Option{nats.Name("paynotify"), nats.MaxReconnects(-1)}
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			opts = append(opts, nats.Timeout(d))
		}
	}
	// Once as usual, to learn why it fails; then retrying in the background (RetryOnFailedConnect
	// keeps no error). nats errors do not repeat the URL, which may hold credentials.
	var certAsked atomic.Bool
	first := opts
	if strings.Contains(cfg.URL, "tls://") { // already TLS: a config changes nothing else
		first = append(first[:len(first):len(first)], func(o *nats.Options) error {
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				certAsked.Store(true) // paynotify has none to give: the server will refuse
				return &tls.Certificate{}, nil
			}}
			return nil
		})
	}
	nc, startErr := nats.Connect(cfg.URL, first...)
	if startErr != nil && errors.Is(startErr, nats.ErrTLS) && certAsked.Load() {
		return nil, fmt.Errorf("nats: connect: the server requires a client certificate, which paynotify does not present: %w", startErr)
	}
	if startErr != nil && refusedConnect(startErr) {
		// A server answered and refused (the credentials, TLS): a configuration error, not an
		// outage, and nats.go would give up on it after two tries (a reviewer's finding).
		return nil, fmt.Errorf("nats: connect: %w", startErr)
	}
	if startErr != nil {
		var err error
		if nc, err = nats.Connect(cfg.URL, append(opts, nats.RetryOnFailedConnect(true))...); err != nil {
			return nil, fmt.Errorf("nats: connect: %w", err)
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats: %w", err)
	}
	n := &NATS{nc: nc, js: js, cfg: cfg, stream: cfg.Stream, prefix: cfg.SubjectPrefix, window: cfg.DuplicateWindow, startErr: startErr}
	if !nc.IsConnected() {
		return n, nil // retried in the background; the stream at the first Publish
	}
	if err := n.ensureStream(ctx); err != nil {
		var apiErr *jetstream.APIError
		if errors.Is(err, errStreamSettings) || errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 {
			// What JetStream answered: a stream of the wrong settings, a refused creation. Its
			// 503s are not ready, as no answer: "temporarily unavailable" (a cluster without a
			// leader) and "not enabled for account", which is an account's configuration but
			// also what a server whose JetStream switched itself off (a full disk) answers every
			// account (reviewers' findings, both ways): the sink is optional, and its
			// publications say why they fail.
			nc.Close()
			return nil, err
		}
		// JetStream did not answer (a cluster without a leader, a server restarting it): as a
		// server that does not answer (a reviewer's finding: it still stopped serve).
		n.startErr = err
	}
	return n, nil
}

// refusedConnect reports whether a connection's error is a server's refusal (authorization,
// TLS), which a retry does not mend, rather than no answer (refused, reset, closed, a timeout, a
// name that does not resolve): nats.go returns only "connection refused" as ErrNoServers (a
// reviewer's finding: an L4 proxy that accepts and closes, or a silent port, stopped serve).
func refusedConnect(err error) bool {
	for _, e := range []error{nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired,
		nats.ErrPermissionViolation, nats.ErrSecureConnRequired, nats.ErrSecureConnWanted, nats.ErrClientCertOrRootCAsRequired} {
		if errors.Is(err, e) {
			return true
		}
	}
	var (
		unknownCA   x509.UnknownAuthorityError
		hostname    x509.HostnameError
		invalid     x509.CertificateInvalidError
		verifyError *tls.CertificateVerificationError
		alert       tls.AlertError
		recordError tls.RecordHeaderError
		op          *net.OpError
	)
	// Over TCP crypto/tls reports an alert the server sent (a client certificate required) as a
	// *net.OpError of Op "remote error", not as tls.AlertError (a reviewer's finding). Not
	// nats.ErrTLS itself: nats.go wraps every handshake failure in it, a reset, a timeout or a
	// close after the handshake included, which are outages (a reviewer's finding). A server
	// that asks for a client certificate, whose alert may be lost to the close, is told by
	// OpenNATS from its certificate request.
	return errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verifyError) ||
		errors.As(err, &alert) || errors.As(err, &recordError) || errors.As(err, &op) && op.Op == "remote error"
}

// errStreamSettings marks a stream whose settings do not fit (openStream).
var errStreamSettings = errors.New("the stream's settings do not fit")

// StartError is why the sink was not ready when OpenNATS returned (no server answered, or
// JetStream did not): the connection is retried in the background and the stream checked at the
// first publication. Nil when it was ready.
func (n *NATS) StartError() error { return n.startErr }

var errNotConnected = errors.New("not connected to the NATS server yet (retried in the background)")

// Ready says whether the stream has been made sure of (OpenNATS reached the server, or a
// Publish has since).
func (n *NATS) Ready() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.checked
}

// ensureStream makes sure of the stream once (OpenNATS); until it succeeds, every call tries.
func (n *NATS) ensureStream(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.checked {
		return nil
	}
	if n.nc.IsClosed() {
		return fmt.Errorf("the connection to NATS is closed: %w", n.nc.LastError())
	}
	if !n.nc.IsConnected() {
		// At once, not after a wait under the lock that every publication would queue behind.
		return errNotConnected
	}
	w, err := openStream(ctx, n.js, n.cfg)
	if err != nil {
		return err
	}
	n.checked, n.window = true, w
	return nil
}

// openStream finds or creates the stream and returns its duplicate window.
func openStream(ctx context.Context, js jetstream.JetStream, cfg NATSConfig) (time.Duration, error) {
	want := cfg.SubjectPrefix + ".>"
	s, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        cfg.Stream,
			Description: "paynotify events",
			Subjects:    []string{want},
			Storage:     jetstream.FileStorage,
			Duplicates:  cfg.DuplicateWindow,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, cfg.Stream) // created meanwhile by another process
		} else if err != nil {
			return 0, fmt.Errorf("nats: create stream %s with subjects %s: %w", cfg.Stream, want, err)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("nats: stream %s: %w", cfg.Stream, err)
	}
	info := s.CachedInfo()
	if !subjectsCover(info.Config.Subjects, want) {
		return 0, fmt.Errorf("nats: stream %s exists with subjects %s, which do not cover %s; paynotify never changes an existing stream: add %s to its subjects or configure another stream (%w)",
			cfg.Stream, strings.Join(info.Config.Subjects, ", "), want, want, errStreamSettings)
	}
	if info.Config.NoAck {
		return 0, fmt.Errorf("nats: stream %s exists with no_ack set: paynotify needs publish acks (%w)", cfg.Stream, errStreamSettings)
	}
	return info.Config.Duplicates, nil
}

// DuplicateWindow is the stream's de-duplication window: the configured one for a stream that
// OpenNATS created, the stream's own for an existing one (the configured one until the stream
// has been made sure of: Ready).
func (n *NATS) DuplicateWindow() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.window
}

// Subject is the subject that an event of type typ about app is published to.
func (n *NATS) Subject(app string, typ paynotify.EventType) (string, error) {
	return natsSubject(n.prefix, app, typ)
}

// Publish publishes payload to {prefix}.{app}.{type} with Nats-Msg-Id = eventID and waits for
// JetStream's ack: nil means the event is stored in the stream (or was already, within the
// duplicate window). Without a deadline on ctx, the wait is JetStream's default (5 s).
func (n *NATS) Publish(ctx context.Context, app string, typ paynotify.EventType, eventID string, payload []byte) error {
	if eventID == "" {
		return errors.New("nats: an event id is required (Nats-Msg-Id)")
	}
	subject, err := n.Subject(app, typ)
	if err != nil {
		return err
	}
	if err := n.ensureStream(ctx); err != nil {
		return fmt.Errorf("nats: publish %s: %w", eventID, err)
	}
	msg := &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{}}
	ack, err := n.js.PublishMsg(ctx, msg, jetstream.WithMsgID(eventID), jetstream.WithExpectStream(n.stream))
	if err != nil {
		return fmt.Errorf("nats: publish %s to %s: %w", eventID, subject, err)
	}
	if ack == nil || ack.Stream != n.stream {
		return fmt.Errorf("nats: publish %s to %s: not acknowledged by stream %s", eventID, subject, n.stream)
	}
	return nil
}

// Close closes the connection.
func (n *NATS) Close() {
	n.nc.Close()
}

func natsSubject(prefix, app string, typ paynotify.EventType) (string, error) {
	appToken := "_"
	switch app {
	case "":
	case "_":
		appToken = "%5F"
	default:
		appToken = escapeToken(app)
	}
	if typ == "" {
		return "", errors.New("nats: an event type is required")
	}
	parts := strings.Split(string(typ), ".")
	for i, p := range parts {
		if p == "" {
			return "", fmt.Errorf("nats: event type %q has an empty part", string(typ))
		}
		parts[i] = escapeToken(p)
	}
	return prefix + "." + appToken + "." + strings.Join(parts, "."), nil
}

// escapeToken writes s as one subject token: bytes that are not printable ASCII, or are one of
// . * > % (and whitespace, which is not printable here), become %XX.
func escapeToken(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func checkStreamName(name string) error {
	if name == "" {
		return errors.New("nats: stream is required")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(".*>/\\", c) >= 0 {
			return fmt.Errorf("nats: stream %q: a stream name has no spaces, dots, wildcards or slashes", name)
		}
	}
	return nil
}

func checkSubjectPrefix(prefix string) error {
	if prefix == "" {
		return errors.New("nats: subject_prefix is required")
	}
	for _, tok := range strings.Split(prefix, ".") {
		bad := tok == ""
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c <= ' ' || c == 0x7f || c == '*' || c == '>' {
				bad = true
			}
		}
		if bad {
			return fmt.Errorf("nats: subject_prefix %q: must be dot-separated tokens without wildcards or spaces", prefix)
		}
	}
	return nil
}

// subjectsCover reports whether one of the stream's subject filters matches every subject that
// the filter want matches.
func subjectsCover(filters []string, want string) bool {
	for _, f := range filters {
		if filterCovers(f, want) {
			return true
		}
	}
	return false
}

func filterCovers(filter, want string) bool {
	ft, wt := strings.Split(filter, "."), strings.Split(want, ".")
	for i, f := range ft {
		if f == ">" {
			return i < len(wt) // ">" matches one or more tokens, whatever they are
		}
		if i >= len(wt) {
			return false
		}
		w := wt[i]
		switch {
		case w == ">":
			return false // want matches subjects of any length here; filter does not
		case f == "*":
		case f != w:
			return false
		}
	}
	return len(ft) == len(wt)
}

// EnsureNATSEndpoint records the NATS sink as the endpoint of kind nats (id
// paynotify.EndpointNATSID), so that the dispatcher delivers to it like to the others: created
// enabled, receiving the events committed from then on, the first time; enabled again, from that
// moment, if it was disabled. label (the stream and prefix) is shown as its URL.
func EnsureNATSEndpoint(ctx context.Context, st paynotify.WebhookStore, label string) error {
	e, err := st.GetWebhookEndpoint(ctx, paynotify.EndpointNATSID)
	switch {
	case paynotify.ErrorCode(err) == paynotify.ENOTFOUND:
		now := time.Now().UTC()
		err = st.CreateWebhookEndpoint(ctx, &paynotify.WebhookEndpoint{ID: paynotify.EndpointNATSID, Kind: paynotify.EndpointNATS,
			URL: label, Events: []paynotify.EventType{}, Apps: []string{}, Status: paynotify.EndpointEnabled,
			Secret: "-", CreatedAt: now, UpdatedAt: now})
		if err != nil {
			if _, gerr := st.GetWebhookEndpoint(ctx, paynotify.EndpointNATSID); gerr == nil {
				return nil // another process created it meanwhile
			}
		}
	case err == nil && (e.URL != label || e.Status != paynotify.EndpointEnabled):
		enabled := paynotify.EndpointEnabled
		_, err = st.UpdateWebhookEndpoint(ctx, e.ID, &paynotify.WebhookEndpointUpdate{URL: &label, Status: &enabled})
	}
	if err != nil {
		return fmt.Errorf("nats endpoint: %w", err)
	}
	return nil
}

// DisableNATSEndpoint disables the NATS sink's endpoint, if there is one and it is enabled: a
// server started without the nats block stops queueing deliveries nothing would publish (its
// pending ones are marked failed, and pruned with the rest after the retention).
func DisableNATSEndpoint(ctx context.Context, st paynotify.WebhookStore) error {
	e, err := st.GetWebhookEndpoint(ctx, paynotify.EndpointNATSID)
	if paynotify.ErrorCode(err) == paynotify.ENOTFOUND || err == nil && e.Status != paynotify.EndpointEnabled {
		return nil
	}
	if err == nil {
		disabled := paynotify.EndpointDisabled
		_, err = st.UpdateWebhookEndpoint(ctx, e.ID, &paynotify.WebhookEndpointUpdate{Status: &disabled,
			DisabledReason: "the config has no nats block", IfStatus: paynotify.EndpointEnabled})
		if paynotify.ErrorCode(err) == paynotify.ECONFLICT {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("nats endpoint: %w", err)
	}
	return nil
}
