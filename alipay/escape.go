package alipay

import "net/url"

// queryEscape form-encodes s as Alipay's SDKs do (space becomes '+').
func queryEscape(s string) string { return url.QueryEscape(s) }
