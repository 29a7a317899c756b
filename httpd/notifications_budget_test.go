package httpd_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/storetest"
)

// TestListNotifications_BodyBudget (from a reviewer helper's audit): anyone can post 64 KiB
// bodies to a notify URL, kept as rejected evidence; a body of control bytes was sent twice
// (base64, and text escaped six-fold), so a list of a thousand such records made an answer of
// hundreds of MB. A list carries at most 4 MiB of bodies, newest first, the rest marked
// body_omitted; GET /v1/notifications/{id} has one record's body; a body of control bytes has no
// body_text.
func TestListNotifications_BodyBudget(t *testing.T) {
	forEachStore(t, func(t *testing.T, s paynotify.Store) {
		e := newEnv(t, s)
		ctx := t.Context()
		body := bytes.Repeat([]byte{0x01}, paynotify.MaxEvidenceBody)
		const n = 80 // 5 MiB of bodies
		for i := range n {
			ev := storetest.NewEvidence(fmt.Sprintf("ntf_B%03d", i), &paynotify.Order{App: "shop", OutTradeNo: "B"}, storetest.T0.Add(time.Duration(i)*time.Second))
			ev.Verdict, ev.Reason, ev.Body = paynotify.VerdictRejected, paynotify.ReasonSignatureInvalid, body
			if err := s.InsertEvidence(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		code, raw := e.raw("GET", "/v1/notifications?limit=1000", "", true)
		if code != http.StatusOK {
			t.Fatalf("list: %d", code)
		}
		var page struct {
			Notifications []struct {
				ID          string  `json:"id"`
				BodyBase64  string  `json:"body_base64"`
				BodyText    *string `json:"body_text"`
				BodyOmitted bool    `json:"body_omitted"`
			} `json:"notifications"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			t.Fatal(err)
		}
		withBody, omitted := 0, 0
		for i, x := range page.Notifications {
			switch {
			case x.BodyOmitted && x.BodyBase64 == "" && omitted == i-withBody:
				omitted++
			case !x.BodyOmitted && len(x.BodyBase64) > 0 && omitted == 0:
				withBody++
				if x.BodyText != nil {
					t.Errorf("%s: body_text for a body of control bytes", x.ID)
				}
			default:
				t.Fatalf("record %d (%s): body %d bytes, omitted %v, after %d omitted", i, x.ID, len(x.BodyBase64), x.BodyOmitted, omitted)
			}
		}
		// 4 MiB: 64 bodies of 64 KiB, one fewer with their headers.
		if len(page.Notifications) != n || withBody < 63 || withBody > 64 || omitted != n-withBody || len(raw) > 7<<20 {
			t.Fatalf("%d records, %d with their bodies, %d omitted, %d bytes; want %d, 63 or 64 (4 MiB), the rest, under 7 MiB",
				len(page.Notifications), withBody, omitted, len(raw), n)
		}
		// The oldest, omitted from the list, in full on its own.
		last := page.Notifications[n-1]
		code, raw = e.raw("GET", "/v1/notifications/"+last.ID, "", true)
		var one struct {
			ID         string `json:"id"`
			BodyBase64 string `json:"body_base64"`
		}
		if code != http.StatusOK || json.Unmarshal(raw, &one) != nil || one.ID != last.ID || len(one.BodyBase64) < paynotify.MaxEvidenceBody {
			t.Fatalf("GET %s: %d, %d bytes of base64", last.ID, code, len(one.BodyBase64))
		}
		// Not for a cache to keep: an API answer holds evidence, pay parameters, secrets.
		req, err := http.NewRequest("GET", e.srv.URL+"/v1/notifications/"+last.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q, want no-store", cc)
		}
		// Headers count too (anyone can send 64 KiB of them, kept with the record; a reviewer
		// helper's finding): past the budget a record has neither body nor headers.
		pad := strings.Repeat(`"`, 60<<10)
		for i := range 100 {
			ev := storetest.NewEvidence(fmt.Sprintf("ntf_H%03d", i), &paynotify.Order{App: "shop", OutTradeNo: "H"}, storetest.T0.Add(time.Hour+time.Duration(i)*time.Second))
			ev.Verdict, ev.Reason, ev.Body = paynotify.VerdictRejected, paynotify.ReasonSignatureInvalid, []byte("a=b")
			ev.Headers = http.Header{"X-Pad": {pad}}
			if err := s.InsertEvidence(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		code, raw = e.raw("GET", "/v1/notifications?limit=1000&out_trade_no=H", "", true)
		var hpage struct {
			Notifications []struct {
				Headers     http.Header `json:"headers"`
				BodyOmitted bool        `json:"body_omitted"`
			} `json:"notifications"`
		}
		if code != http.StatusOK || json.Unmarshal(raw, &hpage) != nil || len(hpage.Notifications) != 100 {
			t.Fatalf("list of padded headers: %d, %d records", code, len(hpage.Notifications))
		}
		omittedH := 0
		for _, x := range hpage.Notifications {
			if x.BodyOmitted {
				omittedH++
				if x.Headers != nil {
					t.Fatal("a record past the budget carries its headers")
				}
			}
		}
		if omittedH == 0 || len(raw) > 16<<20 {
			t.Errorf("%d records past the budget, an answer of %d bytes; want some, under 16 MiB", omittedH, len(raw))
		}
		if code, _ := e.raw("GET", "/v1/notifications/ntf_nosuch", "", true); code != http.StatusNotFound {
			t.Errorf("GET an unknown record: %d, want 404", code)
		}
		if code, _ := e.raw("GET", "/v1/notifications/"+last.ID, "", false); code != http.StatusUnauthorized {
			t.Errorf("GET without a token: %d, want 401", code)
		}
	})
}
