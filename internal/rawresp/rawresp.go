// Package rawresp carries a provider API answer, as received, out of a call: the shared
// implementation of alipay.WithRawResponse and wechatpay.WithRawResponse.
package rawresp

import (
	"context"
	"net/http"
)

// Response is an HTTP answer exactly as it arrived.
type Response struct {
	StatusCode int
	Header     http.Header
	Body       []byte
}

type key struct{}

// With returns a context under which Record stores into dst.
func With(ctx context.Context, dst *Response) context.Context {
	return context.WithValue(ctx, key{}, dst)
}

// Record stores an answer in the Response of ctx, if any.
func Record(ctx context.Context, status int, h http.Header, body []byte) {
	if dst, ok := ctx.Value(key{}).(*Response); ok && dst != nil {
		dst.StatusCode, dst.Header, dst.Body = status, h.Clone(), append([]byte(nil), body...)
	}
}
