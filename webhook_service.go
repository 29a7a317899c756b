package paynotify

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Webhook limits (docs/webhooks.md).
const (
	// SecretOverlap is how long, after a rotation, deliveries are signed with the old secret too.
	SecretOverlap = 24 * time.Hour
	// maxWebhookURL and maxWebhookDescription bound what an endpoint stores.
	maxWebhookURL         = 2048
	maxWebhookDescription = 512
)

// NewWebhookSecret returns a new endpoint secret: "whsec_" and the standard padded base64 of 32
// random bytes, the HMAC key.
func NewWebhookSecret() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(b[:])
}

// WebhookEndpointRequest is a new endpoint, or the changes to one (nil fields unchanged).
type WebhookEndpointRequest struct {
	URL         *string
	Events      *[]EventType
	Apps        *[]string
	Description *string
	// Status (update only): EndpointEnabled or EndpointDisabled.
	Status *string
}

// validate checks the fields that are set; create requires URL.
func (s *Service) validateEndpoint(r *WebhookEndpointRequest, create bool) error {
	if r.URL == nil && create {
		return Errorf(EINVALID, "url: required.")
	}
	if r.URL != nil {
		if len(*r.URL) > maxWebhookURL {
			return Errorf(EINVALID, "url: longer than %d bytes.", maxWebhookURL)
		}
		check := s.CheckWebhookURL
		if check == nil {
			check = checkHTTPSURL
		}
		if err := check(*r.URL); err != nil {
			return Errorf(EINVALID, "%s", err.Error())
		}
	}
	if r.Events != nil {
		for _, t := range *r.Events {
			if !slices.Contains(EventTypes, t) {
				return Errorf(EINVALID, "events: unknown event type %q.", t)
			}
		}
	}
	if r.Apps != nil {
		for _, a := range *r.Apps {
			if _, ok := s.Apps[a]; !ok {
				return Errorf(EINVALID, "apps: unknown app %q.", a)
			}
		}
	}
	if r.Description != nil && len(*r.Description) > maxWebhookDescription {
		return Errorf(EINVALID, "description: longer than %d bytes.", maxWebhookDescription)
	}
	if r.Description != nil {
		if err := checkText("description", *r.Description); err != nil {
			return err
		}
	}
	if r.Status != nil && *r.Status != EndpointEnabled && *r.Status != EndpointDisabled {
		return Errorf(EINVALID, "status: must be %q or %q.", EndpointEnabled, EndpointDisabled)
	}
	return nil
}

// checkHTTPSURL is the URL check when Service.CheckWebhookURL is not set: an absolute https URL.
func checkHTTPSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("url: must be an absolute https URL without user info or fragment")
	}
	return nil
}

// CreateWebhookEndpoint adds an enabled endpoint; it receives the events committed from now on.
// The returned endpoint carries its Secret: the only time it is shown, with RotateWebhookSecret.
func (s *Service) CreateWebhookEndpoint(ctx context.Context, r *WebhookEndpointRequest) (*WebhookEndpoint, error) {
	if r.Status != nil {
		return nil, Errorf(EINVALID, "status: not accepted on creation.")
	}
	if err := s.validateEndpoint(r, true); err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Microsecond) // as stored
	e := &WebhookEndpoint{ID: NewID("we"), Kind: EndpointHTTP, URL: *r.URL, Events: []EventType{}, Apps: []string{},
		Status: EndpointEnabled, Secret: NewWebhookSecret(), CreatedAt: now, UpdatedAt: now}
	if r.Events != nil {
		e.Events = dedupe(*r.Events)
	}
	if r.Apps != nil {
		e.Apps = dedupe(*r.Apps)
	}
	if r.Description != nil {
		e.Description = *r.Description
	}
	if err := s.Store.CreateWebhookEndpoint(ctx, e); err != nil {
		return nil, err
	}
	s.logger().Info("webhook endpoint created", "endpoint", e.ID, "url", RedactURL(e.URL)) // a path or query may hold a token
	return e, nil
}

func dedupe[T comparable](in []T) []T {
	out := make([]T, 0, len(in))
	for _, v := range in {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// httpEndpoint returns endpoint id if it is one the API manages (not the NATS sink).
func (s *Service) httpEndpoint(ctx context.Context, id string) (*WebhookEndpoint, error) {
	e, err := s.Store.GetWebhookEndpoint(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.Kind != EndpointHTTP {
		return nil, Errorf(ENOTFOUND, "Webhook endpoint not found.")
	}
	return e, nil
}

// GetWebhookEndpoint returns an endpoint, or ENOTFOUND.
func (s *Service) GetWebhookEndpoint(ctx context.Context, id string) (*WebhookEndpoint, error) {
	return s.httpEndpoint(ctx, id)
}

// ListWebhookEndpoints returns the HTTP endpoints, oldest first.
func (s *Service) ListWebhookEndpoints(ctx context.Context) ([]*WebhookEndpoint, error) {
	return s.Store.ListWebhookEndpoints(ctx, EndpointHTTP)
}

// UpdateWebhookEndpoint changes an endpoint's URL, filters, description or status. An endpoint
// enabled again receives the events committed from then on; recover delivers what it missed.
func (s *Service) UpdateWebhookEndpoint(ctx context.Context, id string, r *WebhookEndpointRequest) (*WebhookEndpoint, error) {
	if err := s.validateEndpoint(r, false); err != nil {
		return nil, err
	}
	if _, err := s.httpEndpoint(ctx, id); err != nil {
		return nil, err
	}
	u := &WebhookEndpointUpdate{URL: r.URL, Description: r.Description, Status: r.Status}
	if r.Events != nil {
		ev := dedupe(*r.Events)
		u.Events = &ev
	}
	if r.Apps != nil {
		apps := dedupe(*r.Apps)
		u.Apps = &apps
	}
	if r.Status != nil && *r.Status == EndpointDisabled {
		u.DisabledReason = "disabled through the API"
	}
	e, err := s.Store.UpdateWebhookEndpoint(ctx, id, u)
	if err != nil {
		return nil, err
	}
	s.logger().Info("webhook endpoint updated", "endpoint", e.ID, "status", e.Status)
	s.wakeWebhooks()
	return e, nil
}

// DeleteWebhookEndpoint deletes an endpoint with its deliveries and attempts.
func (s *Service) DeleteWebhookEndpoint(ctx context.Context, id string) error {
	if _, err := s.httpEndpoint(ctx, id); err != nil {
		return err
	}
	if err := s.Store.DeleteWebhookEndpoint(ctx, id); err != nil {
		return err
	}
	s.logger().Info("webhook endpoint deleted", "endpoint", id)
	return nil
}

// RotateWebhookSecret gives an endpoint a new secret and returns the endpoint with it; for
// SecretOverlap, deliveries carry a signature with the old secret too.
func (s *Service) RotateWebhookSecret(ctx context.Context, id string) (*WebhookEndpoint, error) {
	if _, err := s.httpEndpoint(ctx, id); err != nil {
		return nil, err
	}
	secret := NewWebhookSecret()
	until := s.now().UTC().Add(SecretOverlap)
	e, err := s.Store.UpdateWebhookEndpoint(ctx, id, &WebhookEndpointUpdate{Secret: &secret, OldSecretUntil: &until})
	if err != nil {
		return nil, err
	}
	s.logger().Info("webhook secret rotated", "endpoint", id, "old_secret_until", until)
	return e, nil
}

// TestWebhookEndpoint queues a webhook.test event for the endpoint alone and returns it.
func (s *Service) TestWebhookEndpoint(ctx context.Context, id string) (*Event, error) {
	e, err := s.httpEndpoint(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.Status != EndpointEnabled {
		return nil, Errorf(ECONFLICT, "The endpoint is disabled.")
	}
	now := s.now().UTC()
	data, _ := json.Marshal(map[string]string{"endpoint_id": e.ID})
	ev := &Event{ID: NewID("evt"), Type: EventWebhookTest, Timestamp: now, Data: data}
	d := &WebhookDelivery{EndpointID: e.ID, EventID: ev.ID, EventType: ev.Type, OutTradeNo: ev.ID,
		Payload: EventJSON(ev), CreatedAt: now}
	if err := s.Store.AddWebhookDelivery(ctx, d); err != nil {
		return nil, err
	}
	s.wakeWebhooks()
	return ev, nil
}

// ListWebhookAttempts returns an endpoint's attempts, newest first.
func (s *Service) ListWebhookAttempts(ctx context.Context, id, eventID string, limit int) ([]*WebhookAttempt, error) {
	if _, err := s.httpEndpoint(ctx, id); err != nil {
		return nil, err
	}
	return s.Store.ListWebhookAttempts(ctx, WebhookAttemptFilter{EndpointID: id, EventID: eventID, Limit: limit})
}

// ResendEvent delivers an event of the log again: to endpointID, or, when it is "", to every
// enabled endpoint (and the NATS sink) that subscribes to it. It returns how many deliveries it
// queued.
func (s *Service) ResendEvent(ctx context.Context, eventID, endpointID string) (int, error) {
	if StorableText(endpointID) != endpointID { // no endpoint has such an id; PostgreSQL cannot even look for it
		return 0, Errorf(EINVALID, "endpoint_id: holds NUL or bytes that are not UTF-8.")
	}
	ev, err := s.Store.GetEvent(ctx, eventID)
	if err != nil {
		return 0, err
	}
	var ids []string
	if endpointID != "" {
		e, err := s.httpEndpoint(ctx, endpointID)
		if err != nil {
			return 0, err
		}
		if e.Status != EndpointEnabled {
			return 0, Errorf(ECONFLICT, "The endpoint is disabled.")
		}
		ids = []string{e.ID}
	} else {
		all, err := s.Store.ListWebhookEndpoints(ctx, "")
		if err != nil {
			return 0, err
		}
		own := disabledEndpoint(ev)
		for _, e := range all {
			if e.Status == EndpointEnabled && e.Wants(ev.Type, ev.App) && e.ID != own {
				ids = append(ids, e.ID)
			}
		}
	}
	n := 0
	if len(ids) > 0 {
		if n, err = s.Store.RedeliverEvent(ctx, eventID, ids, s.now().UTC()); err != nil {
			return 0, err
		}
	}
	s.logger().Info("webhook event resent", "event", eventID, "deliveries", n)
	s.wakeWebhooks()
	return n, nil
}

// RecoverWebhooks delivers again to an enabled endpoint what failed, or what it missed while
// disabled, since a moment. It returns how many deliveries it queued.
func (s *Service) RecoverWebhooks(ctx context.Context, id string, since time.Time) (int, error) {
	e, err := s.httpEndpoint(ctx, id)
	if err != nil {
		return 0, err
	}
	if e.Status != EndpointEnabled {
		return 0, Errorf(ECONFLICT, "The endpoint is disabled: enable it first.")
	}
	now := s.now().UTC()
	if since.After(now) {
		return 0, Errorf(EINVALID, "since: in the future.")
	}
	n, err := s.Store.RecoverWebhooks(ctx, id, since.UTC(), now)
	if err != nil {
		return 0, err
	}
	s.logger().Info("webhook deliveries recovered", "endpoint", id, "since", since, "deliveries", n)
	s.wakeWebhooks()
	return n, nil
}

func (s *Service) wakeWebhooks() {
	if s.WakeWebhooks != nil {
		s.WakeWebhooks()
	}
}

// RedactSecret returns the endpoint without its secrets, as every answer but creation and
// rotation shows it.
func (e *WebhookEndpoint) RedactSecret() *WebhookEndpoint {
	c := *e
	c.Secret, c.OldSecret = "", ""
	return &c
}

// secretPrefix is what every secret starts with.
const secretPrefix = "whsec_"

// WebhookKey returns the HMAC key of a secret: the bytes its base64 encodes.
func WebhookKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return nil, fmt.Errorf("webhook secret: not %s…", secretPrefix)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("webhook secret: not the base64 of 24 to 64 bytes")
	}
	return key, nil
}

// RedactURL returns u's scheme, host and port only, and "/…" in place of a path: a path, query,
// fragment or user info may hold a token (receivers such as "/hooks/<secret>" authenticate by
// the path). It is what an endpoint.disabled event, delivered to other endpoints whatever their
// apps, and paynotify's log say of an endpoint's URL; the endpoint's id names it exactly.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return ""
	}
	r := &url.URL{Scheme: p.Scheme, Host: p.Host}
	if p.Path != "" && p.Path != "/" || p.RawPath != "" {
		return r.String() + "/…"
	}
	return r.String()
}

// EndpointDisabledData is the data of an endpoint.disabled event.
type EndpointDisabledData struct {
	EndpointID   string     `json:"endpoint_id"`
	URL          string     `json:"url"` // RedactURL of the endpoint's: scheme, host and port
	Reason       string     `json:"reason"`
	FailingSince *time.Time `json:"failing_since,omitempty"`
}

// disabledEndpoint is the id of the endpoint an endpoint.disabled event is about ("" for other
// events): the event goes to the other endpoints, not to that one.
func disabledEndpoint(ev *Event) string {
	if ev.Type != EventEndpointDisabled {
		return ""
	}
	var d EndpointDisabledData
	if json.Unmarshal(ev.Data, &d) != nil {
		return ""
	}
	return d.EndpointID
}

// NewEndpointDisabledEvent builds the endpoint.disabled event: in the log, about no app or order.
func NewEndpointDisabledEvent(id string, at time.Time, data *EndpointDisabledData) *Event {
	b, err := json.Marshal(data)
	if err != nil {
		panic(err)
	}
	return &Event{ID: id, Type: EventEndpointDisabled, Timestamp: at.UTC(), Data: b}
}
