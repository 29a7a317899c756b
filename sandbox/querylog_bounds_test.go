package sandbox

import (
	"strings"
	"testing"
)

// TestQueryLog_Bounds: what callers send is kept at most maxQueryField bytes a field in the query
// log, and notify_verify counts only the notify_ids the sandbox issued (a reviewer helper's
// measurement: 100,000 notify_verify calls with 2 KB ids held 262 MB for good).
func TestQueryLog_Bounds(t *testing.T) {
	b := setup(t, 1)
	long := strings.Repeat("n", 4096)
	for range 20 {
		if _, err := b.tNotifyVerify(b.keys.LegacyPartner, long+randDigits(6)); err != nil {
			t.Fatal(err)
		}
	}
	b.sb.legacy.mu.Lock()
	counted := len(b.sb.legacy.verifyCalls)
	b.sb.legacy.mu.Unlock()
	if counted != 0 {
		t.Errorf("notify_verify counted %d notify_ids the sandbox never issued", counted)
	}
	recs := b.sb.queries.list(QueryFilter{})
	if len(recs) != 20 {
		t.Fatalf("%d query records, want 20", len(recs))
	}
	for _, r := range recs {
		if len(r.NotifyID) != maxQueryField || !strings.HasPrefix(long, r.NotifyID) {
			t.Fatalf("a record keeps %d bytes of the notify_id, want its first %d", len(r.NotifyID), maxQueryField)
		}
	}
}
