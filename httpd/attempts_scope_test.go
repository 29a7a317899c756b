package httpd_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// TestAttempts_ReadTokenSeesNoAnswerBody: a read token sees an endpoint's URL as scheme,
// host and port only (a receiver may keep its own token in the path). The attempts of that
// endpoint, also readable with a read token, keep the first 4 KiB of the receiver's answer, and
// common frameworks' error answers repeat the request path: Spring Boot's default error JSON has
// "path", Express's 404 page says "Cannot POST /path". So a read token gets no answer's body
// (a reviewer helper's finding); a write token gets it.
func TestAttempts_ReadTokenSeesNoAnswerBody(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e, _, _ := tokenEnv(t, s, -1)
		read := issue(t, s, "reporting", paynotify.ScopeRead)
		const full = "https://hooks.example.com/services/T000/s3cr3t-path"
		code, _, body := e.call("Bearer "+testToken, "POST", "/v1/webhook-endpoints", `{"url":"`+full+`"}`)
		if code != http.StatusCreated {
			t.Fatalf("create: %d %s", code, body)
		}
		var ep struct{ ID string }
		json.Unmarshal([]byte(body), &ep)
		if _, err := e.http.Service.TestWebhookEndpoint(t.Context(), ep.ID); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		ds, err := s.ClaimWebhookDeliveries(t.Context(), ep.ID, now, time.Minute, 10)
		if err != nil || len(ds) != 1 {
			t.Fatalf("claim: %d, %v", len(ds), err)
		}
		// What a Spring Boot receiver answers when its handler fails (DefaultErrorAttributes).
		answer := `{"timestamp":"2026-12-07T10:00:00.000+00:00","status":500,"error":"Internal Server Error","path":"/services/T000/s3cr3t-path"}`
		next := now.Add(time.Minute)
		if err := s.FinishWebhookDeliveries(t.Context(), []paynotify.WebhookResult{{Delivery: ds[0], Status: paynotify.DeliveryPending,
			Next: &next, Failed: true, Attempt: &paynotify.WebhookAttempt{At: now, Status: 500, Response: []byte(answer),
				Error: "answered 500 Internal Server Error"}}}); err != nil {
			t.Fatal(err)
		}
		code, _, body = e.call("Bearer "+read, "GET", "/v1/webhook-endpoints/"+ep.ID, "")
		if code != http.StatusOK || strings.Contains(body, "s3cr3t") {
			t.Fatalf("read token GET endpoint: %d %s", code, body)
		}
		code, _, body = e.call("Bearer "+read, "GET", "/v1/webhook-endpoints/"+ep.ID+"/attempts", "")
		if code != http.StatusOK || strings.Contains(body, "s3cr3t-path") || !strings.Contains(body, `"status":500`) {
			t.Errorf("a read token's attempts: %d %s; want the attempt without the answer's body, which holds the URL's path", code, body)
		}
		code, _, body = e.call("Bearer "+testToken, "GET", "/v1/webhook-endpoints/"+ep.ID+"/attempts", "")
		if code != http.StatusOK || !strings.Contains(body, `s3cr3t-path`) {
			t.Errorf("a write token's attempts: %d %s; want the answer's body", code, body)
		}
	})
}
