package httpd_test

import (
	"net/http"
	"testing"

	"github.com/paynotify/paynotify"
)

// TestBadPathsDocumented (from a reviewer helper's audit): a path or query holding NUL or bytes
// that are not UTF-8 is refused with 400 invalid before any store is asked (docs/api.md), on
// every API operation; docs/openapi.yaml listed no 400 for eight of them, so a generated client
// met an undocumented answer. Every exchange here is checked against the document (specCheck).
func TestBadPathsDocumented(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		for _, p := range [][2]string{
			{"GET", "/v1/orders/shop/T%00/refunds"},
			{"POST", "/v1/orders/shop/T%00/close"},
			{"POST", "/v1/notifications/ntf_%00/reprocess"},
			{"GET", "/v1/webhook-endpoints?x=%FF"},
			{"GET", "/v1/webhook-endpoints/we_%FF"},
			{"DELETE", "/v1/webhook-endpoints/we_%FF"},
			{"POST", "/v1/webhook-endpoints/we_%FF/rotate-secret"},
			{"POST", "/v1/webhook-endpoints/we_%FF/test"},
		} {
			if code, body := e.raw(p[0], p[1], "", true); code != http.StatusBadRequest {
				t.Errorf("%s %s: %d %s, want 400", p[0], p[1], code, body)
			}
		}
	})
}
