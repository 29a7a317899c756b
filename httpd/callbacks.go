package httpd

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/paynotify/paynotify"
)

// Callback routes: provider path segment → the app's provider.
var callbackProviders = map[string]string{
	"alipay":       paynotify.ProviderAlipay,
	"wechatpay":    paynotify.ProviderWechatpay,
	"wechatpay-v2": paynotify.ProviderWechatpay,
	// Legacy Alipay: mapi and WAP notifications alike (the verifier tells them apart).
	"alipay-legacy": paynotify.ProviderAlipayLegacy,
}

// clipLog cuts what a request says (a path, a claimed order number) for a log line: anyone can
// send these, up to the header limit of 64 KiB.
func clipLog(s string) string { return paynotify.ClipText(s, 256) }

// handleNotify receives a provider's asynchronous notification: raw bytes to the Processor, and
// the answer in the provider's exact format once the Processor has committed (or failed).
func (s *Server) handleNotify(w http.ResponseWriter, r *http.Request) {
	endpoint := r.PathValue("provider")
	provider, ok := callbackProviders[endpoint]
	a, known := s.Service.Apps[r.PathValue("app")]
	if !ok || !known || a.Provider != provider {
		s.unknownApp.log(s.log(r), s.now(), "callback to unknown app", "path", clipLog(r.URL.Path))
		http.NotFound(w, r)
		return
	}
	received := s.now()
	limit := s.callbackBodyMax()
	body, err := readCallbackBody(r, limit)
	if err != nil {
		s.unreadable.log(s.log(r), s.now(), "read callback body", "app", a.Name, "err", err)
		s.countUnprocessed(a, paynotify.ReasonBodyUnreadable)
		http.Error(w, "body unreadable", http.StatusBadRequest)
		return
	}
	verifier := a.Gateway.Verifier(endpoint)
	if verifier == nil {
		s.notTaken.log(s.log(r), s.now(), "callback to an endpoint the app does not take (APIv2 without an APIv2 key?)", "app", a.Name, "endpoint", endpoint)
		s.countUnprocessed(a, paynotify.ReasonEndpointNotTaken)
		http.NotFound(w, r)
		return
	}
	// The provider's verifier answers in the provider's exact format (the packages' ack helpers).
	acker, ok := verifier.(paynotify.Acker)
	if !ok {
		s.log(r).Error("the app's verifier cannot answer notifications", "app", a.Name, "endpoint", endpoint)
		http.Error(w, "cannot answer", http.StatusInternalServerError)
		return
	}
	if int64(len(body)) > limit {
		// Kept as rejected evidence (capped like any), then refused.
		verifier = rejectAll{&paynotify.RejectError{Reason: paynotify.ReasonMalformed, Detail: fmt.Sprintf("body larger than %d bytes", limit)}}
	}
	header := r.Header.Clone()
	header.Del("Authorization")
	header.Del("Proxy-Authorization")
	header.Del("Cookie")
	res := s.Service.Processor.Process(r.Context(), &paynotify.Callback{App: a, Endpoint: endpoint, Header: header, Body: body,
		ReceivedAt: received, Answer: acker.AckText, Logger: s.log(r)}, verifier)
	acker.WriteAck(w, res)
}

// countUnprocessed counts, as rejected with reason, a callback to app a that never reached the
// Processor (and so kept no evidence): its logs are bounded, and a misconfigured endpoint would
// otherwise show nowhere in the metrics while the provider retries and gives up. Metrics that
// can count without a duration (metrics.Prometheus.Unprocessed) are told so: such a request's
// time is the client's (a dribbled body), not the server's.
func (s *Server) countUnprocessed(a *paynotify.App, reason string) {
	switch m := s.Service.Processor.Metrics.(type) {
	case nil:
	case interface {
		Unprocessed(*paynotify.App, string)
	}:
		m.Unprocessed(a, reason)
	default:
		m.Callback(a, paynotify.VerdictRejected, reason, 0)
	}
}

// handleAlipayReturn is where Alipay sends the buyer after page or wap pay. It never changes
// state (the query string proves nothing the notification has not): it logs whether the
// signature holds and sends the buyer to the app's return_url, where the merchant page asks the
// API.
//
// GET /return/alipay-legacy/{app} does the same for legacy Alipay's return_url and WAP
// call_back_url visits.
func (s *Server) handleAlipayReturn(w http.ResponseWriter, r *http.Request) {
	provider := paynotify.ProviderAlipay
	if strings.HasPrefix(r.URL.Path, "/return/alipay-legacy/") {
		provider = paynotify.ProviderAlipayLegacy
	}
	a, ok := s.Service.Apps[r.PathValue("app")]
	if !ok || a.Provider != provider {
		http.NotFound(w, r)
		return
	}
	otn := r.URL.Query().Get("out_trade_no")
	log := s.log(r).With("app", a.Name, "out_trade_no", clipLog(otn))
	if rv, ok := a.Gateway.(paynotify.ReturnVerifier); ok {
		if err := rv.VerifyReturn(r.URL.RawQuery); err != nil {
			s.badReturn.log(log, s.now(), "return_url signature invalid", "err", err)
		} else {
			s.goodReturn.logAt(log, slog.LevelInfo, s.now(), "return_url signature valid")
		}
	}
	if a.ReturnURL == "" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, returnPage)
		return
	}
	target, err := url.Parse(a.ReturnURL)
	if err != nil {
		http.Error(w, "bad return_url", http.StatusInternalServerError)
		return
	}
	q := target.Query()
	q.Set("app", a.Name)
	q.Set("out_trade_no", otn)
	target.RawQuery = q.Encode()
	http.Redirect(w, r, target.String(), http.StatusFound)
}

// rejectAll rejects every request with the same reason.
type rejectAll struct{ rej *paynotify.RejectError }

func (v rejectAll) Verify(http.Header, []byte, time.Time) (paynotify.Fact, error) {
	return paynotify.Fact{}, v.rej
}

const returnPage = `<!doctype html><meta charset="utf-8"><title>Payment submitted</title>
<p>Payment submitted. The merchant confirms it once the provider's notification arrives.</p>`

// exactBodyMax bounds the declared length readCallbackBody allocates for at once: providers'
// notifications are a few KiB (a larger declared length is read as its bytes arrive).
const exactBodyMax = 16 << 10

// callbackBodyMax is the most of a callback's body the server reads: MaxBodyBytes, but not past
// paynotify.MaxEvidenceBody (64 KiB; a notification is a few KiB, and no more of a body is kept).
// At the API's 1 MiB, an open notify URL held about 1.6 MiB per connection anyone opened (a
// reviewer helper's finding: 1,000 slow bodies took the server from 63 MB to 2.25 GB).
func (s *Server) callbackBodyMax() int64 {
	return min(s.maxBody(), paynotify.MaxEvidenceBody)
}

// readCallbackBody reads at most limit+1 bytes of r's body: one more than allowed, so that a
// body over the limit is seen as such (and kept, cut, as a malformed request's evidence). A body
// that declares a length up to exactBodyMax (and within the limit) is read at once into a buffer
// of that length (net/http ends it there) rather than into one grown and copied as it comes:
// io.ReadAll's growth was the largest allocation of a notification (docs/performance.md). A
// larger declared length is not trusted with memory before its bytes arrive: the endpoint is
// open to anyone, and headers alone must not pin a buffer of the limit's size.
func readCallbackBody(r *http.Request, limit int64) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= min(limit, exactBodyMax) {
		body := make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, err
		}
		return body, nil
	}
	return io.ReadAll(io.LimitReader(r.Body, limit+1))
}
