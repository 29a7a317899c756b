package paynotify

import (
	"bytes"
	"context"
	"slices"
	"time"
)

// Reprocess runs the notification kept as evidence record id through verification and processing
// again, as if it had just arrived, but with time windows checked as of when it first arrived
// (WeChat Pay's five minutes): the fix for a day of notifications rejected by a wrong key. The
// result is a new evidence record (source reprocess, ReprocessedFrom id). Applying is idempotent
// as for any notification: however many copies are reprocessed, an order is paid once.
//
// Only notifications can be reprocessed (not query answers, not earlier reprocessing): ECONFLICT.
// A record of an app that is no longer configured is ECONFLICT too.
func (s *Service) Reprocess(ctx context.Context, id string) (*Result, error) {
	ev, err := s.Store.GetEvidence(ctx, id)
	if err != nil {
		return nil, err
	}
	if ev.Source != "" && ev.Source != SourceNotification {
		return nil, Errorf(ECONFLICT, "Evidence %s is a %s record: only notifications are reprocessed (reprocess %s instead).", ev.ID, ev.Source, reprocessHint(ev))
	}
	if ev.Cut() {
		// Kept cut at MaxEvidenceBody (or exactly that long): the bytes that arrived are not all
		// here, and a cut copy may verify where the whole did not (a genuine notification with
		// text appended past the cut; a reviewer helper's finding). Only the bytes received are
		// ever verified.
		return nil, Errorf(ECONFLICT, "Evidence %s keeps the first %d bytes of a larger request: a copy cut short is not verified again.", ev.ID, MaxEvidenceBody)
	}
	a, ok := s.Apps[ev.App]
	if !ok {
		return nil, Errorf(ECONFLICT, "Evidence %s is of app %q, which is not configured.", ev.ID, ev.App)
	}
	endpoint := ev.Endpoint
	if endpoint == "" {
		endpoint = guessEndpoint(ev)
	}
	v := a.Gateway.Verifier(endpoint)
	if v == nil {
		return nil, Errorf(ECONFLICT, "App %s takes no notifications at /notify/%s/ any more.", a.Name, endpoint)
	}
	res := s.Processor.Process(ctx, &Callback{App: a, Endpoint: endpoint, Header: ev.Headers, Body: ev.Body,
		ReceivedAt: s.now(), VerifyAt: ev.ReceivedAt, Source: SourceReprocess, ReprocessedFrom: ev.ID,
		Logger: s.logger().With("reprocessed_from", ev.ID)}, v)
	return res, nil
}

func reprocessHint(ev *Evidence) string {
	if ev.ReprocessedFrom != "" {
		return ev.ReprocessedFrom
	}
	return "the notification"
}

// guessEndpoint names the endpoint of a record kept before endpoints were recorded: WeChat Pay's
// APIv2 sends XML, its APIv3 JSON.
func guessEndpoint(ev *Evidence) string {
	if ev.Provider == ProviderWechatpay && bytes.HasPrefix(bytes.TrimSpace(ev.Body), []byte("<xml")) {
		return "wechatpay-v2"
	}
	return ev.Provider
}

// ReprocessFilter selects the notifications ReprocessAll runs again.
type ReprocessFilter struct {
	App    string    // "" for every app
	Since  time.Time // received at or after
	Reason string    // "" for every reason
}

// ReprocessStats counts what ReprocessAll did, by the verdict of each new record.
type ReprocessStats struct {
	Reprocessed, Accepted, Duplicate, Rejected, Anomaly, Errors int
}

// reprocessLimit bounds the records one ReprocessAll reads.
const reprocessLimit = 1_000_000

// ReprocessAll reprocesses, oldest first, every notification received since filter.Since whose
// verdict was rejected, anomaly or error, but those kept cut at MaxEvidenceBody (a larger
// request, which Reprocess refuses: they are left out, not counted as errors). progress, if set,
// is called after each.
func (s *Service) ReprocessAll(ctx context.Context, filter ReprocessFilter, progress func(done, total int)) (ReprocessStats, error) {
	var todo []*Evidence
	for _, v := range []Verdict{VerdictRejected, VerdictAnomaly, VerdictError} {
		list, err := s.Store.ListEvidence(ctx, EvidenceFilter{App: filter.App, Verdict: v, Reason: filter.Reason,
			Source: SourceNotification, Since: filter.Since, Limit: reprocessLimit})
		if err != nil {
			return ReprocessStats{}, err
		}
		for _, ev := range list {
			if !ev.Cut() { // a copy cut short is not reprocessed (Reprocess)
				todo = append(todo, ev)
			}
		}
	}
	slices.SortStableFunc(todo, func(a, b *Evidence) int { return a.ReceivedAt.Compare(b.ReceivedAt) })
	var st ReprocessStats
	for i, ev := range todo {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		st.Reprocessed++
		res, err := s.Reprocess(ctx, ev.ID)
		switch {
		case err != nil:
			st.Errors++
			s.logger().Warn("reprocess", "notification_id", ev.ID, "err", err)
		case res.Verdict == VerdictAccepted:
			st.Accepted++
		case res.Verdict == VerdictDuplicate:
			st.Duplicate++
		case res.Verdict == VerdictRejected:
			st.Rejected++
		case res.Verdict == VerdictAnomaly:
			st.Anomaly++
		default:
			st.Errors++
		}
		if progress != nil {
			progress(i+1, len(todo))
		}
	}
	return st, nil
}
