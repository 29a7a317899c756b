package paynotify

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"time"
)

// Webhook event types that are not about an order (docs/webhooks.md).
const (
	// EventWebhookTest is sent to one endpoint by POST /v1/webhook-endpoints/{id}/test. It is not
	// in the event log.
	EventWebhookTest EventType = "webhook.test"
	// EventEndpointDisabled is appended to the event log (with no app and no order) when an
	// endpoint is disabled for failing (410 Gone, or every attempt failing for 5 days).
	EventEndpointDisabled EventType = "endpoint.disabled"
)

// EventTypes are the event types an endpoint can subscribe to.
var EventTypes = []EventType{EventOrderPaid, EventOrderFinished, EventOrderClosed, EventOrderRefunded,
	EventRefundFailed, EventOrderAnomaly, EventEndpointDisabled, EventWebhookTest}

// Webhook endpoint kinds.
const (
	// EndpointHTTP delivers by HTTPS (Standard Webhooks).
	EndpointHTTP = "http"
	// EndpointNATS publishes to NATS JetStream; the one such endpoint has the id EndpointNATSID
	// and is not listed by the API.
	EndpointNATS   = "nats"
	EndpointNATSID = "nats"
)

// Webhook endpoint statuses.
const (
	EndpointEnabled  = "enabled"
	EndpointDisabled = "disabled"
)

// Webhook delivery statuses.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	// DeliveryFailed: given up (retries exhausted, or its endpoint was disabled).
	DeliveryFailed = "failed"
)

// WebhookEndpoint is where events are delivered.
type WebhookEndpoint struct {
	ID   string
	Kind string // EndpointHTTP or EndpointNATS
	URL  string
	// Events and Apps filter what is delivered; empty means every type / every app (events
	// without an app, endpoint.disabled, pass any Apps filter).
	Events      []EventType
	Apps        []string
	Description string
	Status      string // EndpointEnabled or EndpointDisabled
	// DisabledReason says why a disabled endpoint was disabled ("" when enabled).
	DisabledReason string
	// Secret is "whsec_" + base64 of the key. OldSecret, until OldSecretUntil, is the secret it
	// replaced: deliveries are signed with both.
	Secret         string
	OldSecret      string
	OldSecretUntil *time.Time
	// Cursor is the Seq of the last event considered for this endpoint.
	Cursor int64
	// FailingSince is the time of the first failed attempt since the last delivered one.
	FailingSince *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Wants reports whether the endpoint subscribes to events of type typ about app ("" for events
// that are about no app: they pass every Apps filter).
func (e *WebhookEndpoint) Wants(typ EventType, app string) bool {
	if len(e.Events) > 0 && !slices.Contains(e.Events, typ) {
		return false
	}
	if app != "" && len(e.Apps) > 0 && !slices.Contains(e.Apps, app) {
		return false
	}
	return true
}

// WebhookDelivery is one event to deliver to one endpoint.
type WebhookDelivery struct {
	ID         string
	EndpointID string
	EventID    string
	EventType  EventType
	// EventSeq is the event's position in the log; 0 for an event outside it (webhook.test).
	EventSeq   int64
	App        string
	OutTradeNo string
	// Payload is the body delivered: the event's JSON exactly as GET /v1/events returns it.
	// Filled by ClaimWebhookDeliveries.
	Payload []byte
	Status  string
	// Attempts is the number of attempts made so far.
	Attempts int
	// NextAttemptAt is when a pending delivery is due (nil when not pending).
	NextAttemptAt *time.Time
	// Token identifies the claim that holds the delivery ("" when none).
	Token       string
	LastError   string
	CreatedAt   time.Time
	UpdatedAt   time.Time
	DeliveredAt *time.Time
}

// WebhookAttempt is one attempt to deliver, kept for the retention period.
type WebhookAttempt struct {
	ID         string
	DeliveryID string
	EndpointID string
	EventID    string
	EventType  EventType
	At         time.Time
	// Status is the HTTP status answered, 0 when there was no answer.
	Status     int
	DurationMS int64
	// Response is the first 4 KiB of the answer's body.
	Response []byte
	// Error says why the attempt failed ("" when delivered).
	Error string
}

// WebhookResult is how one claimed delivery ends its attempt (WebhookStore.FinishWebhookDeliveries).
type WebhookResult struct {
	Delivery *WebhookDelivery // as claimed: ID and Token are used
	// Attempt is recorded; nil when the claim is only released (shutdown before the attempt).
	Attempt *WebhookAttempt
	// Status is the delivery's new status; Next, for a pending one, when it is due again.
	Status string
	Next   *time.Time
	// Failed is true when the attempt failed: the endpoint's FailingSince is set if it is not;
	// a delivered attempt clears it.
	Failed bool
}

// DisabledQueued is the LastError of a delivery queued while its endpoint was disabled, failed
// when the endpoint is enabled again (WebhookEndpointUpdate.Status).
const DisabledQueued = "endpoint disabled: queued while it was disabled"

// WebhookEndpointUpdate changes an endpoint; nil fields are left alone.
type WebhookEndpointUpdate struct {
	URL         *string
	Events      *[]EventType
	Apps        *[]string
	Description *string
	// Status: enabling a disabled endpoint moves its Cursor to the last event (it continues from
	// that moment) and clears FailingSince and DisabledReason; disabling it sets DisabledReason
	// and fails its pending deliveries (LastError "endpoint disabled: <reason>"), so that recover
	// can deliver them again. Enabling fails the pending deliveries made while it was disabled
	// (LastError DisabledQueued): a recover, resend or test that checked the endpoint just before
	// a disable committed them, and they must not go out unasked once it is enabled.
	Status         *string
	DisabledReason string
	// Secret, when set, replaces the secret; the old one is kept as OldSecret until
	// OldSecretUntil.
	Secret         *string
	OldSecretUntil *time.Time
	// IfStatus, when set, applies the update only if the endpoint's status is still this one
	// (the store answers ECONFLICT otherwise): two processes disabling an endpoint raise one
	// endpoint.disabled.
	IfStatus string
	// IfFailingBefore, when set, applies the update only if the endpoint's FailingSince is set
	// and not after this time (ECONFLICT otherwise): a disable for failing decided on a copy of
	// the endpoint read before an attempt is not applied to an endpoint that has delivered
	// since, here or in another process.
	IfFailingBefore *time.Time
	// Event, when set, is appended to the event log in the same transaction.
	Event *Event
}

// WebhookAttemptFilter selects attempts, newest first.
type WebhookAttemptFilter struct {
	EndpointID string
	EventID    string
	Limit      int // 0 means 100
}

// WebhookStore keeps webhook endpoints, their deliveries and the attempts.
//
// Deliveries are made from the event log by cursor (FanOutWebhooks), so that an event is never
// delivered unless it was committed, and claimed with a lease like the reconciliation's checks, so
// that several processes share the work and a killed one leaves its claims due again.
type WebhookStore interface {
	// CreateWebhookEndpoint inserts e; its Cursor is set to the Seq of the last event in the log
	// (a new endpoint receives what is committed after it). e.Cursor is updated.
	CreateWebhookEndpoint(ctx context.Context, e *WebhookEndpoint) error
	// GetWebhookEndpoint returns one endpoint, or ENOTFOUND.
	GetWebhookEndpoint(ctx context.Context, id string) (*WebhookEndpoint, error)
	// ListWebhookEndpoints returns every endpoint of kind ("" for all), oldest first.
	ListWebhookEndpoints(ctx context.Context, kind string) ([]*WebhookEndpoint, error)
	// UpdateWebhookEndpoint applies u to endpoint id in one transaction and returns the endpoint
	// as stored; ENOTFOUND when it does not exist.
	UpdateWebhookEndpoint(ctx context.Context, id string, u *WebhookEndpointUpdate) (*WebhookEndpoint, error)
	// DeleteWebhookEndpoint deletes the endpoint with its deliveries and attempts; ENOTFOUND when
	// it does not exist.
	DeleteWebhookEndpoint(ctx context.Context, id string) error

	// FanOutWebhooks reads, for each enabled endpoint, up to limit events after its Cursor, adds
	// a pending delivery (due now) for each event the endpoint Wants, and moves the Cursor past
	// them, in one transaction per endpoint whose Cursor is compared and set, so that two
	// processes never add the same deliveries. It returns the number of deliveries added.
	FanOutWebhooks(ctx context.Context, now time.Time, limit int) (int, error)
	// AddWebhookDelivery inserts a pending delivery of an event outside the log (webhook.test),
	// with its Payload, due now.
	AddWebhookDelivery(ctx context.Context, d *WebhookDelivery) error
	// ClaimWebhookDeliveries claims up to limit pending deliveries of endpoint that are due at
	// now, earliest due first, and that no earlier pending delivery (by creation order) of the
	// same endpoint, App and OutTradeNo precedes: a later event of an order waits for the
	// earlier one. Each claimed delivery moves to now+lease under a new Token and is returned
	// with its Payload.
	ClaimWebhookDeliveries(ctx context.Context, endpoint string, now time.Time, lease time.Duration, limit int) ([]*WebhookDelivery, error)
	// FinishWebhookDeliveries ends claims in one transaction: each result's attempt is recorded,
	// and, if its Token still holds the delivery, the delivery gets the result's Status and Next
	// (Attempts grows by one when an attempt was made; the claim is released). The endpoint's
	// FailingSince is set by a failed attempt (when not set) and cleared by a delivered one.
	FinishWebhookDeliveries(ctx context.Context, results []WebhookResult) error
	// ListWebhookAttempts returns attempts, newest first.
	ListWebhookAttempts(ctx context.Context, filter WebhookAttemptFilter) ([]*WebhookAttempt, error)
	// ListWebhookDeliveries returns the deliveries of an event (every endpoint), oldest first.
	ListWebhookDeliveries(ctx context.Context, eventID string) ([]*WebhookDelivery, error)

	// RedeliverEvent makes the event with eventID pending, due now, for each of endpoints: a
	// delivery that exists is reset (Attempts 0, claim released) unless it is pending, a missing
	// one is added. It returns how many deliveries it made pending; ENOTFOUND when the event is
	// not in the log.
	RedeliverEvent(ctx context.Context, eventID string, endpoints []string, now time.Time) (int, error)
	// RecoverWebhooks makes pending again, due now, the endpoint's failed deliveries created at or
	// after since, and adds deliveries for the events committed (event timestamp) at or after
	// since, up to its Cursor, that the endpoint Wants and never had (missed while it was
	// disabled). It returns how many deliveries it made pending.
	RecoverWebhooks(ctx context.Context, endpoint string, since, now time.Time) (int, error)
	// PruneWebhooks deletes the attempts made before before, and the deliveries no longer pending
	// that were last updated before it, at most batch rows (at least 1) per transaction, oldest
	// first, looping until none is left or ctx ends. It returns how many attempts and deliveries
	// it deleted, also when it stops on an error.
	PruneWebhooks(ctx context.Context, before time.Time, batch int) (attempts, deliveries int64, err error)
	// DropOldSecrets forgets the OldSecret of every endpoint whose OldSecretUntil is at or before
	// now (no signature uses it after then), so that a secret rotated away does not stay in the
	// database and its backups. It returns how many endpoints it changed.
	DropOldSecrets(ctx context.Context, now time.Time) (int64, error)
}

// EventJSON is an event's JSON as the event log serves it (GET /v1/events) and as webhooks deliver
// it.
// The encoding does not escape HTML characters, as the API's; the stored data is copied as it is.
func EventJSON(e *Event) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		panic(err) // plain struct and valid raw JSON from the store
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'})
}
