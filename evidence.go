package paynotify

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Verdict is the outcome of one provider callback request.
type Verdict string

const (
	VerdictAccepted  Verdict = "accepted"  // verified and applied
	VerdictDuplicate Verdict = "duplicate" // verified, already applied: no effect
	VerdictRejected  Verdict = "rejected"  // signature or format: unverified, no effect
	VerdictAnomaly   Verdict = "anomaly"   // verified, disagrees with our order or config: no effect
	VerdictError     Verdict = "error"     // store or internal failure: no effect, retried by the provider
)

// Evidence sources: what the record is of.
const (
	// SourceNotification: a provider's callback request, as received.
	SourceNotification = "notification"
	// SourceQuery: a provider's signed answer to a query of ours (reconciliation).
	SourceQuery = "query"
	// SourceReprocess: a stored notification run through verification and processing again.
	SourceReprocess = "reprocess"
)

// MaxEvidenceBody caps the body kept as evidence.
const MaxEvidenceBody = 64 << 10

// Evidence is the record kept for every callback request to a known app, and for every provider
// answer that a decision was made on: the raw request or answer, the verdict with its reason, and
// the answer we gave.
type Evidence struct {
	ID       string `json:"id"`
	App      string `json:"app"`
	Provider string `json:"provider"`
	// Source is SourceNotification, SourceQuery or SourceReprocess.
	Source string `json:"source"`
	// Endpoint is the callback endpoint of a notification ("alipay", "wechatpay",
	// "wechatpay-v2") or the provider API of a query answer ("alipay.trade.query", …).
	Endpoint string `json:"endpoint"`
	// ReprocessedFrom is, for SourceReprocess, the id of the record whose bytes were reprocessed.
	ReprocessedFrom string    `json:"reprocessed_from,omitempty"`
	ReceivedAt      time.Time `json:"received_at"`
	Verdict         Verdict   `json:"verdict"`
	Reason          string    `json:"reason"`
	Detail          string    `json:"detail"`
	// OutTradeNo is the value the request claims whenever it can be parsed, rejected requests included.
	OutTradeNo   string      `json:"out_trade_no"`
	OrderVersion int64       `json:"order_version"`
	Answer       string      `json:"answer"`
	DurationMS   int64       `json:"duration_ms"`
	Headers      http.Header `json:"headers"`
	// Body is the raw body, capped at MaxEvidenceBody.
	Body []byte `json:"-"`
	// Repeats counts the requests recorded on this record after the first: duplicates whose
	// record would be identical (the same app, endpoint, headers and body as kept, met with the
	// same verdict, reason, order version and answer) are kept as a count on the record of the
	// first instead of a copy each (Change.Repeat).
	Repeats int64 `json:"repeats"`
	// LastReceivedAt is when the last of the repeats arrived; zero while Repeats is 0.
	LastReceivedAt time.Time `json:"last_received_at,omitzero"`
	// BodyOmitted marks a record of a list answer sent without its body and headers (the
	// answer's budget of such bytes spent): GET /v1/notifications/{id} has them. Not stored.
	BodyOmitted bool `json:"-"`

	// baseDetail is Detail before the Processor's decision added what an anomaly disagreed on
	// (Processor.change, which runs again on a version conflict: it starts from this each time).
	baseDetail  string
	detailSaved bool
}

// MarshalJSON adds body_base64 and, when the body is text (valid UTF-8 without control
// characters but tab, CR and LF: what providers send), body_text. A body another's text escapes
// six-fold (\u0001) is in body_base64 only. BodyOmitted, set by a list answer whose budget is
// spent, leaves both out, and the headers, and says so.
func (e *Evidence) MarshalJSON() ([]byte, error) {
	type plain Evidence
	out := struct {
		*plain
		BodyBase64  string `json:"body_base64"`
		BodyText    string `json:"body_text,omitempty"`
		BodyOmitted bool   `json:"body_omitted,omitempty"`
	}{plain: (*plain)(e)}
	if e.BodyOmitted {
		out.BodyOmitted = true
		p := *out.plain
		p.Headers = nil
		out.plain = &p
		return json.Marshal(out)
	}
	out.BodyBase64 = base64.StdEncoding.EncodeToString(e.Body)
	if isText(e.Body) {
		out.BodyText = string(e.Body)
	}
	return json.Marshal(out)
}

// isText reports whether b is valid UTF-8 without control characters but tab, CR and LF.
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\r' && c != '\n' || c == 0x7f {
			return false
		}
	}
	return true
}

// StorableText is s as the stores keep the text fields of an evidence record (out_trade_no,
// detail, reason, answer): bytes that are not UTF-8 and NUL, which a request can claim but a
// PostgreSQL text column cannot hold, each become U+FFFD, on both stores alike. The raw body is
// kept as it came.
func StorableText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// Cut reports whether e's Body may be a cut copy: bodies are kept up to MaxEvidenceBody bytes, so
// one that long may have been longer when it arrived. Such a record is never verified again
// (Service.Reprocess): only the bytes received are.
func (e *Evidence) Cut() bool { return len(e.Body) >= MaxEvidenceBody }

// ClipText cuts s to at most n bytes (n ≥ 3), at a rune boundary, marking the cut with "…": for
// what a request says (anyone's) in a record or a log line.
func ClipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := max(n-len("…"), 0)
	for j := i; i > 0 && i > j-utf8.UTFMax && !utf8.RuneStart(s[i]); {
		i--
	}
	return s[:i] + "…"
}
