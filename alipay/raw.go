package alipay

import (
	"context"

	"github.com/paynotify/paynotify/internal/rawresp"
)

// RawResponse receives an API answer exactly as it arrived (status, headers, body): see
// WithRawResponse.
type RawResponse = rawresp.Response

// WithRawResponse returns a context under which an API call stores the HTTP answer it received in
// dst, whatever came of it (verified or not, success or error), so that the caller can keep the
// signed bytes as evidence. Like httptrace.WithClientTrace it is per call: give each call its own
// dst. A call that got no answer (a transport error) leaves dst as it was.
func WithRawResponse(ctx context.Context, dst *RawResponse) context.Context {
	return rawresp.With(ctx, dst)
}
