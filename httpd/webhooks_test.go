package httpd_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/webhook"
)

// The webhook endpoints API (docs/api.md, "Webhook endpoints") over a real socket on both stores.
// No dispatcher runs here: creating an endpoint connects to nothing, so the example.com URLs
// below are never contacted; deliveries are checked in the store.

// endpointJSON is a webhook endpoint as the API shows it.
type endpointJSON struct {
	ID                 string     `json:"id"`
	URL                string     `json:"url"`
	Events             []string   `json:"events"`
	Apps               []string   `json:"apps"`
	Description        string     `json:"description"`
	Status             string     `json:"status"`
	DisabledReason     string     `json:"disabled_reason"`
	Secret             string     `json:"secret"`
	OldSecretExpiresAt *time.Time `json:"old_secret_expires_at"`
	CreatedAt          time.Time  `json:"created_at"`
	UpdatedAt          time.Time  `json:"updated_at"`
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// newWebhookEnv is newEnv with the URL check serve uses: https only, no private networks.
func newWebhookEnv(t *testing.T, s paynotify.Store) *env {
	t.Helper()
	e := newEnv(t, s)
	e.http.Service.CheckWebhookURL = func(u string) error { return webhook.CheckURL(u, false, false) }
	return e
}

// raw sends body as it is (nil: no body) with the API token (when token is set) and returns the
// status and the answer's bytes.
func (e *env) raw(method, path, body string, token bool) (int, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// createEndpoint creates an endpoint and checks the answer's contract.
func (e *env) createEndpoint(body map[string]any) endpointJSON {
	e.t.Helper()
	var ep endpointJSON
	if code := e.api("POST", "/v1/webhook-endpoints", body, &ep); code != http.StatusCreated {
		e.t.Fatalf("create endpoint %v: HTTP %d", body, code)
	}
	checkSecret(e.t, ep.Secret)
	return ep
}

// checkSecret checks the Standard Webhooks form: "whsec_" and the padded standard base64 of 24
// to 64 bytes.
func checkSecret(t *testing.T, secret string) {
	t.Helper()
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		t.Fatalf("secret %q does not start with whsec_", secret)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) < 24 || len(key) > 64 {
		t.Fatalf("secret %q: not the standard base64 of 24 to 64 bytes (%d bytes, %v)", secret, len(key), err)
	}
}

// expectError checks an error answer: its status, its code, and a message naming want.
func expectError(t *testing.T, code int, body []byte, status int, want string) {
	t.Helper()
	var ae apiError
	if err := json.Unmarshal(body, &ae); err != nil {
		t.Fatalf("HTTP %d, body %q: not the error JSON: %v", code, body, err)
	}
	if code != status || !strings.Contains(ae.Error.Message, want) {
		t.Fatalf("HTTP %d %q, want %d with a message naming %q", code, body, status, want)
	}
	if wantCode := map[int]string{400: "invalid", 401: "unauthorized", 404: "not_found", 409: "conflict"}[status]; ae.Error.Code != wantCode {
		t.Fatalf("code %q, want %q", ae.Error.Code, wantCode)
	}
}

// TestWebhookEndpointsAPI: create answers every contract field with the secret; the secret is
// never shown again but by rotate-secret; PATCH changes the status and the filters; DELETE
// deletes.
func TestWebhookEndpointsAPI(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newWebhookEnv(t, s)
		before := time.Now()

		// Create: 201 with every field of the contract.
		code, body := e.raw("POST", "/v1/webhook-endpoints",
			`{"url": "https://hooks.example.com/paynotify", "events": ["order.paid", "order.refunded", "order.paid"], "apps": ["shop"], "description": "orders"}`, true)
		if code != http.StatusCreated {
			t.Fatalf("create: HTTP %d %s", code, body)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(body, &fields); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"id", "url", "events", "apps", "description", "status", "secret", "created_at"} {
			if _, ok := fields[f]; !ok {
				t.Errorf("create answer %s lacks %q", body, f)
			}
		}
		var ep endpointJSON
		if err := json.Unmarshal(body, &ep); err != nil {
			t.Fatal(err)
		}
		checkSecret(t, ep.Secret)
		if !strings.HasPrefix(ep.ID, "we_") || ep.URL != "https://hooks.example.com/paynotify" || ep.Status != "enabled" ||
			ep.Description != "orders" || strings.Join(ep.Events, ",") != "order.paid,order.refunded" || strings.Join(ep.Apps, ",") != "shop" {
			t.Fatalf("created %+v", ep)
		}
		if ep.CreatedAt.Before(before.Add(-time.Second)) || ep.CreatedAt.After(time.Now().Add(time.Second)) || ep.CreatedAt.Location() != time.UTC {
			t.Fatalf("created_at %v (between %v and now, UTC)", ep.CreatedAt, before)
		}
		secret := ep.Secret

		// Defaults: every event type and every app, as empty lists (not null).
		code, body = e.raw("POST", "/v1/webhook-endpoints", `{"url": "https://other.example.com/hook"}`, true)
		if code != http.StatusCreated || !bytes.Contains(body, []byte(`"events":[]`)) || !bytes.Contains(body, []byte(`"apps":[]`)) ||
			!bytes.Contains(body, []byte(`"description":""`)) {
			t.Fatalf("create with defaults: HTTP %d %s", code, body)
		}
		var other endpointJSON
		json.Unmarshal(body, &other)
		checkSecret(t, other.Secret)
		if other.Secret == secret || other.ID == ep.ID {
			t.Fatalf("two endpoints share an id or a secret")
		}

		// The secret is never in GET (one, list) nor in PATCH answers.
		noSecret := func(what string, b []byte) {
			t.Helper()
			if bytes.Contains(b, []byte("whsec_")) || bytes.Contains(b, []byte(`"secret"`)) {
				t.Fatalf("%s shows a secret: %s", what, b)
			}
		}
		code, body = e.raw("GET", "/v1/webhook-endpoints/"+ep.ID, "", true)
		noSecret("GET", body)
		var got endpointJSON
		json.Unmarshal(body, &got)
		// (The stores keep microseconds: the create answer may show more digits.)
		if code != http.StatusOK || got.ID != ep.ID || got.URL != ep.URL || !got.CreatedAt.Equal(ep.CreatedAt.Truncate(time.Microsecond)) || got.Status != "enabled" {
			t.Fatalf("get: HTTP %d %s (created_at at creation %s)", code, body, ep.CreatedAt.Format(time.RFC3339Nano))
		}
		code, body = e.raw("GET", "/v1/webhook-endpoints", "", true)
		noSecret("list", body)
		var list struct {
			Endpoints []endpointJSON `json:"webhook_endpoints"`
		}
		json.Unmarshal(body, &list)
		if code != http.StatusOK || len(list.Endpoints) != 2 || list.Endpoints[0].ID != ep.ID || list.Endpoints[1].ID != other.ID {
			t.Fatalf("list (oldest first): HTTP %d %s", code, body)
		}

		// PATCH: disable, filters, enable.
		code, body = e.raw("PATCH", "/v1/webhook-endpoints/"+ep.ID, `{"status": "disabled"}`, true)
		noSecret("PATCH", body)
		json.Unmarshal(body, &got)
		if code != http.StatusOK || got.Status != "disabled" || got.DisabledReason == "" {
			t.Fatalf("disable: HTTP %d %s", code, body)
		}
		code, body = e.raw("PATCH", "/v1/webhook-endpoints/"+ep.ID, `{"events": ["order.closed"], "apps": [], "description": "closed only", "url": "https://hooks.example.com/v2"}`, true)
		noSecret("PATCH", body)
		got = endpointJSON{}
		json.Unmarshal(body, &got)
		if code != http.StatusOK || got.Status != "disabled" || strings.Join(got.Events, ",") != "order.closed" || len(got.Apps) != 0 ||
			got.Description != "closed only" || got.URL != "https://hooks.example.com/v2" {
			t.Fatalf("filters: HTTP %d %s", code, body)
		}
		code, body = e.raw("PATCH", "/v1/webhook-endpoints/"+ep.ID, `{"status": "enabled"}`, true)
		got = endpointJSON{}
		json.Unmarshal(body, &got)
		if code != http.StatusOK || got.Status != "enabled" || got.DisabledReason != "" || strings.Join(got.Events, ",") != "order.closed" {
			t.Fatalf("enable: HTTP %d %s", code, body)
		}
		if code, body := e.raw("PATCH", "/v1/webhook-endpoints/"+ep.ID, `{}`, true); code != http.StatusOK {
			t.Fatalf("empty PATCH: HTTP %d %s", code, body)
		}

		// Rotation: a new secret, shown once; the old one is valid for 24 hours more.
		code, body = e.raw("POST", "/v1/webhook-endpoints/"+ep.ID+"/rotate-secret", "", true)
		var rot endpointJSON
		json.Unmarshal(body, &rot)
		if code != http.StatusOK || rot.ID != ep.ID {
			t.Fatalf("rotate: HTTP %d %s", code, body)
		}
		checkSecret(t, rot.Secret)
		if rot.Secret == secret {
			t.Fatal("rotate kept the secret")
		}
		if rot.OldSecretExpiresAt == nil || rot.OldSecretExpiresAt.Sub(time.Now().Add(24*time.Hour)).Abs() > time.Minute {
			t.Fatalf("old_secret_expires_at %v, want about 24h from now", rot.OldSecretExpiresAt)
		}
		stored, err := s.GetWebhookEndpoint(context.Background(), ep.ID)
		if err != nil || stored.Secret != rot.Secret || stored.OldSecret != secret {
			t.Fatalf("stored secrets after rotation: %v", err)
		}
		code, body = e.raw("GET", "/v1/webhook-endpoints/"+ep.ID, "", true)
		noSecret("GET after rotation", body)
		got = endpointJSON{}
		json.Unmarshal(body, &got)
		if code != http.StatusOK || got.OldSecretExpiresAt == nil || !got.OldSecretExpiresAt.Equal(rot.OldSecretExpiresAt.Truncate(time.Microsecond)) {
			t.Fatalf("get after rotation: HTTP %d %s", code, body)
		}
		if logs := e.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, rot.Secret) || strings.Contains(logs, other.Secret) {
			t.Fatal("the log shows a secret")
		}

		// DELETE: 204, then 404 everywhere.
		code, body = e.raw("DELETE", "/v1/webhook-endpoints/"+ep.ID, "", true)
		if code != http.StatusNoContent || len(body) != 0 {
			t.Fatalf("delete: HTTP %d %q", code, body)
		}
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/v1/webhook-endpoints/" + ep.ID, ""},
			{"PATCH", "/v1/webhook-endpoints/" + ep.ID, `{"status": "disabled"}`},
			{"DELETE", "/v1/webhook-endpoints/" + ep.ID, ""},
			{"POST", "/v1/webhook-endpoints/" + ep.ID + "/rotate-secret", ""},
			{"POST", "/v1/webhook-endpoints/" + ep.ID + "/test", ""},
			{"GET", "/v1/webhook-endpoints/" + ep.ID + "/attempts", ""},
			{"POST", "/v1/webhook-endpoints/" + ep.ID + "/recover", `{"since": "2026-01-01T00:00:00Z"}`},
		} {
			code, body := e.raw(c.method, c.path, c.body, true)
			expectError(t, code, body, http.StatusNotFound, "")
		}
		e.api("GET", "/v1/webhook-endpoints", nil, &list)
		if len(list.Endpoints) != 1 || list.Endpoints[0].ID != other.ID {
			t.Fatalf("list after delete: %+v", list.Endpoints)
		}

		// The NATS sink (serve's, when configured) is an endpoint the API neither shows nor changes.
		now := time.Now().UTC()
		if err := s.CreateWebhookEndpoint(context.Background(), &paynotify.WebhookEndpoint{ID: paynotify.EndpointNATSID, Kind: paynotify.EndpointNATS,
			URL: "PAYNOTIFY paynotify", Status: paynotify.EndpointEnabled, Secret: "-", CreatedAt: now, UpdatedAt: now}); err != nil {
			t.Fatal(err)
		}
		e.api("GET", "/v1/webhook-endpoints", nil, &list)
		if len(list.Endpoints) != 1 || list.Endpoints[0].ID != other.ID {
			t.Fatalf("list with the NATS sink: %+v", list.Endpoints)
		}
		for _, c := range []struct{ method, path, body string }{
			{"GET", "/v1/webhook-endpoints/nats", ""},
			{"PATCH", "/v1/webhook-endpoints/nats", `{"status": "disabled"}`},
			{"DELETE", "/v1/webhook-endpoints/nats", ""},
			{"POST", "/v1/webhook-endpoints/nats/rotate-secret", ""},
			{"POST", "/v1/webhook-endpoints/nats/test", ""},
			{"GET", "/v1/webhook-endpoints/nats/attempts", ""},
			{"POST", "/v1/webhook-endpoints/nats/recover", `{"since": "2026-01-01T00:00:00Z"}`},
		} {
			code, body := e.raw(c.method, c.path, c.body, true)
			expectError(t, code, body, http.StatusNotFound, "")
		}
		if n, err := s.GetWebhookEndpoint(context.Background(), paynotify.EndpointNATSID); err != nil || n.Status != paynotify.EndpointEnabled {
			t.Fatalf("the NATS sink after the API's refusals: %v %+v", err, n)
		}
	})
}

// TestWebhookTestAndResend: test queues a webhook.test delivery for the endpoint tested alone;
// resend queues an event of the log again, to the endpoints that want it or to the one named.
func TestWebhookTestAndResend(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		ctx := context.Background()
		e := newWebhookEnv(t, s)

		// An event of the log: an order paid by a signed notification.
		newAlipayOrder(e, "WH0001", 100)
		if _, ans := e.postNotify("/notify/alipay/shop", alipayContentType, nil, alipayNotify(t, paidFields("WH0001", "1.00"))); ans != "success" {
			t.Fatalf("notify answer %q", ans)
		}
		evs := e.events()
		if len(evs) != 1 || evs[0].Type != "order.paid" {
			t.Fatalf("events %v", eventTypes(evs))
		}
		paid := evs[0].ID

		all := e.createEndpoint(map[string]any{"url": "https://a.example.com/hook"})
		closed := e.createEndpoint(map[string]any{"url": "https://b.example.com/hook", "events": []string{"order.closed"}})
		off := e.createEndpoint(map[string]any{"url": "https://c.example.com/hook"})
		if code := e.api("PATCH", "/v1/webhook-endpoints/"+off.ID, map[string]any{"status": "disabled"}, nil); code != http.StatusOK {
			t.Fatalf("disable: HTTP %d", code)
		}

		t.Run("Test", func(t *testing.T) {
			var out struct {
				Event struct {
					ID   string          `json:"id"`
					Type string          `json:"type"`
					Data json.RawMessage `json:"data"`
				} `json:"event"`
			}
			if code := e.api("POST", "/v1/webhook-endpoints/"+closed.ID+"/test", nil, &out); code != http.StatusAccepted {
				t.Fatalf("test: HTTP %d", code)
			}
			if out.Event.Type != "webhook.test" || !strings.HasPrefix(out.Event.ID, "evt_") || !bytes.Contains(out.Event.Data, []byte(closed.ID)) {
				t.Fatalf("test event %+v", out.Event)
			}
			ds, err := s.ListWebhookDeliveries(ctx, out.Event.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 1 || ds[0].EndpointID != closed.ID || ds[0].Status != paynotify.DeliveryPending || ds[0].EventType != paynotify.EventWebhookTest {
				t.Fatalf("deliveries of the test event: %+v (want one, pending, to %s only)", ds, closed.ID)
			}
			// Not in the log.
			for _, ev := range e.events() {
				if ev.ID == out.Event.ID {
					t.Fatal("webhook.test is in the event log")
				}
			}
			code, body := e.raw("POST", "/v1/webhook-endpoints/"+off.ID+"/test", "", true)
			expectError(t, code, body, http.StatusConflict, "disabled")
			code, body = e.raw("POST", "/v1/webhook-endpoints/we_nope/test", "", true)
			expectError(t, code, body, http.StatusNotFound, "")
		})

		t.Run("Resend", func(t *testing.T) {
			var out struct {
				Deliveries *int `json:"deliveries"`
			}
			// To every enabled endpoint that wants it: only "all".
			if code := e.api("POST", "/v1/events/"+paid+"/resend", nil, &out); code != http.StatusAccepted || out.Deliveries == nil || *out.Deliveries != 1 {
				t.Fatalf("resend: HTTP %d %+v", code, out)
			}
			ds, err := s.ListWebhookDeliveries(ctx, paid)
			if err != nil {
				t.Fatal(err)
			}
			if len(ds) != 1 || ds[0].EndpointID != all.ID || ds[0].Status != paynotify.DeliveryPending || ds[0].EventType != "order.paid" {
				t.Fatalf("deliveries %+v, want one pending to %s", ds, all.ID)
			}
			// Again while it is pending: nothing more.
			out.Deliveries = nil
			if code := e.api("POST", "/v1/events/"+paid+"/resend", map[string]any{}, &out); code != http.StatusAccepted || out.Deliveries == nil || *out.Deliveries != 0 {
				t.Fatalf("resend again: HTTP %d %+v", code, out)
			}
			// To one endpoint, named: whatever its filter.
			if code := e.api("POST", "/v1/events/"+paid+"/resend", map[string]any{"endpoint_id": closed.ID}, &out); code != http.StatusAccepted || *out.Deliveries != 1 {
				t.Fatalf("resend to %s: HTTP %d %+v", closed.ID, code, out)
			}
			ds, _ = s.ListWebhookDeliveries(ctx, paid)
			if len(ds) != 2 || ds[1].EndpointID != closed.ID {
				t.Fatalf("deliveries %+v", ds)
			}
			for _, c := range []struct {
				path, body string
				status     int
				want       string
			}{
				{"/v1/events/evt_nope/resend", ``, http.StatusNotFound, ""},
				{"/v1/events/evt_nope/resend", `{"endpoint_id": "` + all.ID + `"}`, http.StatusNotFound, ""},
				{"/v1/events/" + paid + "/resend", `{"endpoint_id": "we_nope"}`, http.StatusNotFound, ""},
				{"/v1/events/" + paid + "/resend", `{"endpoint_id": "` + off.ID + `"}`, http.StatusConflict, "disabled"},
				{"/v1/events/" + paid + "/resend", `{"endpoint_id": "a", "endpoint_id": "b"}`, http.StatusBadRequest, "endpoint_id"},
				{"/v1/events/" + paid + "/resend", `{"endpoint": "x"}`, http.StatusBadRequest, "endpoint"},
				{"/v1/events/" + paid + "/resend", `{"endpoint_id": 7}`, http.StatusBadRequest, "endpoint_id"},
				{"/v1/events/" + paid + "/resend", `{} {}`, http.StatusBadRequest, "trailing"},
			} {
				code, body := e.raw("POST", c.path, c.body, true)
				expectError(t, code, body, c.status, c.want)
			}
		})

		t.Run("RecoverBeforeCreation", func(t *testing.T) {
			// An endpoint created after the event gets it from recover, once.
			late := e.createEndpoint(map[string]any{"url": "https://d.example.com/hook", "events": []string{"order.paid"}})
			since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
			var out struct {
				Deliveries int `json:"deliveries"`
			}
			if code := e.api("POST", "/v1/webhook-endpoints/"+late.ID+"/recover", map[string]any{"since": since}, &out); code != http.StatusAccepted || out.Deliveries != 1 {
				t.Fatalf("recover: HTTP %d %+v, want the order.paid committed before the endpoint", code, out)
			}
			ds, _ := s.ListWebhookDeliveries(ctx, paid)
			if len(ds) != 3 || ds[2].EndpointID != late.ID || ds[2].Status != paynotify.DeliveryPending {
				t.Fatalf("deliveries %+v", ds)
			}
			if code := e.api("POST", "/v1/webhook-endpoints/"+late.ID+"/recover", map[string]any{"since": since}, &out); code != http.StatusAccepted || out.Deliveries != 0 {
				t.Fatalf("recover again: HTTP %d %+v, want nothing more", code, out)
			}
			// Since after the event: nothing.
			e2 := e.createEndpoint(map[string]any{"url": "https://e.example.com/hook"})
			if code := e.api("POST", "/v1/webhook-endpoints/"+e2.ID+"/recover", map[string]any{"since": time.Now().UTC().Format(time.RFC3339Nano)}, &out); code != http.StatusAccepted || out.Deliveries != 0 {
				t.Fatalf("recover since now: HTTP %d %+v", code, out)
			}
		})
	})
}

// TestWebhookAttemptsAndRecover: attempts are listed newest first (none for a new endpoint);
// recover needs since, and queues the failed deliveries again.
func TestWebhookAttemptsAndRecover(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		ctx := context.Background()
		e := newWebhookEnv(t, s)
		ep := e.createEndpoint(map[string]any{"url": "https://a.example.com/hook"})

		code, body := e.raw("GET", "/v1/webhook-endpoints/"+ep.ID+"/attempts", "", true)
		if code != http.StatusOK || strings.TrimSpace(string(body)) != `{"attempts":[]}` {
			t.Fatalf("attempts of a new endpoint: HTTP %d %s", code, body)
		}
		code, body = e.raw("GET", "/v1/webhook-endpoints/we_nope/attempts", "", true)
		expectError(t, code, body, http.StatusNotFound, "")
		code, body = e.raw("GET", "/v1/webhook-endpoints/"+ep.ID+"/attempts?limit=0", "", true)
		expectError(t, code, body, http.StatusBadRequest, "limit")

		// A test delivery whose one attempt failed, recorded as the dispatcher would.
		var test struct {
			Event struct {
				ID string `json:"id"`
			} `json:"event"`
		}
		if code := e.api("POST", "/v1/webhook-endpoints/"+ep.ID+"/test", nil, &test); code != http.StatusAccepted {
			t.Fatalf("test: HTTP %d", code)
		}
		now := time.Now()
		claimed, err := s.ClaimWebhookDeliveries(ctx, ep.ID, now.Add(time.Second), time.Minute, 10)
		if err != nil || len(claimed) != 1 || claimed[0].EventID != test.Event.ID {
			t.Fatalf("claim: %v %+v", err, claimed)
		}
		err = s.FinishWebhookDeliveries(ctx, []paynotify.WebhookResult{{Delivery: claimed[0], Status: paynotify.DeliveryFailed, Failed: true,
			Attempt: &paynotify.WebhookAttempt{DeliveryID: claimed[0].ID, EndpointID: ep.ID, EventID: test.Event.ID, EventType: paynotify.EventWebhookTest,
				At: now, Status: 500, DurationMS: 12, Response: []byte("oops"), Error: "HTTP 500"}}})
		if err != nil {
			t.Fatal(err)
		}
		var attempts struct {
			Attempts []struct {
				ID         string    `json:"id"`
				DeliveryID string    `json:"delivery_id"`
				EventID    string    `json:"event_id"`
				EventType  string    `json:"event_type"`
				At         time.Time `json:"at"`
				Status     int       `json:"status"`
				DurationMS int64     `json:"duration_ms"`
				Response   string    `json:"response"`
				Error      string    `json:"error"`
			} `json:"attempts"`
		}
		if code := e.api("GET", "/v1/webhook-endpoints/"+ep.ID+"/attempts", nil, &attempts); code != http.StatusOK || len(attempts.Attempts) != 1 {
			t.Fatalf("attempts: HTTP %d %+v", code, attempts)
		}
		if a := attempts.Attempts[0]; a.ID == "" || a.DeliveryID != claimed[0].ID || a.EventID != test.Event.ID || a.EventType != "webhook.test" ||
			a.Status != 500 || a.DurationMS != 12 || a.Response != "oops" || a.Error != "HTTP 500" || a.At.Sub(now).Abs() > time.Second {
			t.Fatalf("attempt %+v", a)
		}
		attempts.Attempts = nil
		if code := e.api("GET", "/v1/webhook-endpoints/"+ep.ID+"/attempts?event_id=evt_other&limit=5", nil, &attempts); code != http.StatusOK || len(attempts.Attempts) != 0 {
			t.Fatalf("attempts of another event: HTTP %d %+v", code, attempts)
		}

		// Recover: since is required and must be RFC 3339, not in the future.
		for _, c := range []struct{ body, want string }{
			{``, "since"},
			{`{}`, "since"},
			{`{"since": null}`, "since"},
			{`{"since": "24h"}`, "since"},
			{`{"since": "2026-01-02"}`, "since"},
			{`{"since": 1767225600}`, "since"},
			{`{"since": "` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`, "since"},
			{`{"since": "2026-01-01T00:00:00Z", "since": "2026-01-02T00:00:00Z"}`, "since"},
			{`{"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"}`, "until"},
		} {
			code, body := e.raw("POST", "/v1/webhook-endpoints/"+ep.ID+"/recover", c.body, true)
			expectError(t, code, body, http.StatusBadRequest, c.want)
		}
		var out struct {
			Deliveries *int `json:"deliveries"`
		}
		since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		if code := e.api("POST", "/v1/webhook-endpoints/"+ep.ID+"/recover", map[string]any{"since": since}, &out); code != http.StatusAccepted || out.Deliveries == nil || *out.Deliveries != 1 {
			t.Fatalf("recover: HTTP %d %+v, want the failed delivery queued again", code, out)
		}
		ds, err := s.ListWebhookDeliveries(ctx, test.Event.ID)
		if err != nil || len(ds) != 1 || ds[0].Status != paynotify.DeliveryPending || ds[0].Attempts != 0 {
			t.Fatalf("after recover: %v %+v", err, ds)
		}
		// A disabled endpoint is enabled first.
		e.api("PATCH", "/v1/webhook-endpoints/"+ep.ID, map[string]any{"status": "disabled"}, nil)
		code, body = e.raw("POST", "/v1/webhook-endpoints/"+ep.ID+"/recover", `{"since": "`+since+`"}`, true)
		expectError(t, code, body, http.StatusConflict, "disabled")
	})
}

// TestWebhookEndpointsBadInput: every refusal is 400 invalid, naming the field.
func TestWebhookEndpointsBadInput(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newWebhookEnv(t, s)
		ep := e.createEndpoint(map[string]any{"url": "https://a.example.com/hook"})
		tests := []struct {
			name, body, want string
		}{
			{"InvalidURL", `{"url": "https://a.example.com/%zz"}`, "url"},
			{"NotAURL", `{"url": "hooks at a.example.com"}`, "url"},
			{"BadPort", `{"url": "https://a.example.com:99999/x"}`, "url"},
			{"RelativeURL", `{"url": "/hooks/paynotify"}`, "url"},
			{"NoHost", `{"url": "https:///hooks"}`, "url"},
			{"EmptyURL", `{"url": ""}`, "url"},
			{"MissingURL", `{"events": ["order.paid"]}`, "url"},
			{"NullURL", `{"url": null}`, "url"},
			{"HTTP", `{"url": "http://a.example.com/hook"}`, "url"},
			{"OtherScheme", `{"url": "ftp://a.example.com/hook"}`, "url"},
			{"UserInfo", `{"url": "https://user:pass@a.example.com/hook"}`, "url"},
			{"Fragment", `{"url": "https://a.example.com/hook#x"}`, "url"},
			{"Private", `{"url": "https://10.0.0.1/hook"}`, "url"},
			{"Loopback", `{"url": "https://127.0.0.1/hook"}`, "url"},
			{"LoopbackV6", `{"url": "https://[::1]:8443/hook"}`, "url"},
			{"LinkLocal", `{"url": "https://169.254.169.254/latest"}`, "url"},
			{"Localhost", `{"url": "https://localhost/hook"}`, "url"},
			{"NumericHost", `{"url": "https://2130706433/hook"}`, "url"},
			{"TooLong", `{"url": "https://a.example.com/` + strings.Repeat("x", 2100) + `"}`, "url"},
			{"UnknownEventType", `{"url": "https://a.example.com/hook", "events": ["order.paid", "order.shipped"]}`, "events"},
			{"EventsNotList", `{"url": "https://a.example.com/hook", "events": "order.paid"}`, "events"},
			{"UnknownApp", `{"url": "https://a.example.com/hook", "apps": ["nope"]}`, "apps"},
			{"AppsWrongType", `{"url": "https://a.example.com/hook", "apps": [1]}`, "apps"},
			{"LongDescription", `{"url": "https://a.example.com/hook", "description": "` + strings.Repeat("d", 600) + `"}`, "description"},
			{"StatusOnCreate", `{"url": "https://a.example.com/hook", "status": "disabled"}`, "status"},
			{"DuplicateURL", `{"url": "https://a.example.com/x", "url": "https://b.example.com/y"}`, "url"},
			{"DuplicateEvents", `{"url": "https://a.example.com/x", "events": [], "events": ["order.paid"]}`, "events"},
			{"DuplicateNested", `{"url": "https://a.example.com/x", "events": [{"t": 1, "t": 2}]}`, "duplicate"},
			{"UnknownField", `{"url": "https://a.example.com/hook", "secret": "whsec_AAAA"}`, "secret"},
			{"WrongType", `{"url": 42}`, "url"},
			{"TrailingData", `{"url": "https://a.example.com/hook"} {"url": "https://b.example.com/hook"}`, "trailing"},
			{"TrailingGarbage", `{"url": "https://a.example.com/hook"} x`, "trailing"},
			{"NotJSON", `url=https://a.example.com/hook`, "JSON"},
			{"Truncated", `{"url": "https://a.example.com/hook"`, "JSON"},
		}
		for _, tt := range tests {
			t.Run("Create"+tt.name, func(t *testing.T) {
				code, body := e.raw("POST", "/v1/webhook-endpoints", tt.body, true)
				expectError(t, code, body, http.StatusBadRequest, tt.want)
			})
		}
		patches := []struct {
			name, body, want string
		}{
			{"HTTP", `{"url": "http://a.example.com/hook"}`, "url"},
			{"Private", `{"url": "https://10.0.0.1/"}`, "url"},
			{"Loopback", `{"url": "https://127.0.0.1/"}`, "url"},
			{"BadStatus", `{"status": "paused"}`, "status"},
			{"UnknownEventType", `{"events": ["order.shipped"]}`, "events"},
			{"UnknownApp", `{"apps": ["nope"]}`, "apps"},
			{"DuplicateStatus", `{"status": "enabled", "status": "disabled"}`, "status"},
			{"UnknownField", `{"cursor": 0}`, "cursor"},
			{"WrongType", `{"description": ["a"]}`, "description"},
			{"TrailingData", `{"status": "disabled"}]`, "trailing"},
		}
		for _, tt := range patches {
			t.Run("Patch"+tt.name, func(t *testing.T) {
				code, body := e.raw("PATCH", "/v1/webhook-endpoints/"+ep.ID, tt.body, true)
				expectError(t, code, body, http.StatusBadRequest, tt.want)
			})
		}
		// Nothing was created or changed.
		var list struct {
			Endpoints []endpointJSON `json:"webhook_endpoints"`
		}
		e.api("GET", "/v1/webhook-endpoints", nil, &list)
		if len(list.Endpoints) != 1 || list.Endpoints[0].Status != "enabled" || list.Endpoints[0].URL != "https://a.example.com/hook" || len(list.Endpoints[0].Events) != 0 {
			t.Fatalf("endpoints after bad input: %+v", list.Endpoints)
		}
		// The refusals never repeat a URL (it may hold a token).
		code, body := e.raw("POST", "/v1/webhook-endpoints", `{"url": "http://a.example.com/hook?token=s3cr3t"}`, true)
		expectError(t, code, body, http.StatusBadRequest, "url")
		if bytes.Contains(body, []byte("s3cr3t")) {
			t.Fatalf("the error repeats the URL: %s", body)
		}
	})
}

// TestWebhookEndpointsAuth: every route needs the API token.
func TestWebhookEndpointsAuth(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newWebhookEnv(t, s)
		ep := e.createEndpoint(map[string]any{"url": "https://a.example.com/hook"})
		for _, c := range []struct{ method, path, body string }{
			{"POST", "/v1/webhook-endpoints", `{"url": "https://b.example.com/hook"}`},
			{"GET", "/v1/webhook-endpoints", ""},
			{"GET", "/v1/webhook-endpoints/" + ep.ID, ""},
			{"PATCH", "/v1/webhook-endpoints/" + ep.ID, `{"status": "disabled"}`},
			{"DELETE", "/v1/webhook-endpoints/" + ep.ID, ""},
			{"POST", "/v1/webhook-endpoints/" + ep.ID + "/rotate-secret", ""},
			{"POST", "/v1/webhook-endpoints/" + ep.ID + "/test", ""},
			{"GET", "/v1/webhook-endpoints/" + ep.ID + "/attempts", ""},
			{"POST", "/v1/webhook-endpoints/" + ep.ID + "/recover", `{"since": "2026-01-01T00:00:00Z"}`},
			{"POST", "/v1/events/evt_x/resend", ""},
		} {
			code, body := e.raw(c.method, c.path, c.body, false)
			expectError(t, code, body, http.StatusUnauthorized, "token")
		}
		// Nothing happened.
		var got endpointJSON
		if code := e.api("GET", "/v1/webhook-endpoints/"+ep.ID, nil, &got); code != http.StatusOK || got.Status != "enabled" {
			t.Fatalf("after unauthorized calls: HTTP %d %+v", code, got)
		}
		stored, err := s.GetWebhookEndpoint(context.Background(), ep.ID)
		if err != nil || stored.Secret != ep.Secret {
			t.Fatalf("the secret changed: %v", err)
		}
		var list struct {
			Endpoints []endpointJSON `json:"webhook_endpoints"`
		}
		if e.api("GET", "/v1/webhook-endpoints", nil, &list); len(list.Endpoints) != 1 {
			t.Fatalf("endpoints %+v", list.Endpoints)
		}
	})
}
