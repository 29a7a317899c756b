package alipay

import (
	"bytes"
	"encoding/json"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// Response is a gateway response split into its parts, without any decoding of the node.
type splitResponse struct {
	// Name is the node's key, e.g. "alipay_trade_query_response" or "error_response".
	Name string
	// Node is the exact bytes of the node's JSON value as they appear in the body: what Alipay signs.
	// It aliases the body.
	Node []byte
	// Sign is the decoded top-level sign, "" when absent.
	Sign string
	// CertSN is the top-level alipay_cert_sn (certificate mode), "" when absent.
	CertSN string
}

// extractResponse splits a gateway response body (docs/alipay.md, "Canonical strings"). It requires
// a well-formed JSON object, rejects a duplicated top-level key (the anti-splicing check: Go's
// encoding/json would keep the last copy, Java the first), and returns the exact bytes of the
// "<method>_response" value, or of "error_response" when the method's node is absent, together with
// the top-level sign and alipay_cert_sn. It never re-serializes anything. Errors are *VerifyError
// (malformed or duplicate_key).
func extractResponse(body []byte, method string) (*splitResponse, error) {
	if !json.Valid(body) {
		return nil, malformed("response is not valid JSON")
	}
	want := alipaywire.ResponseNodeName(method)
	i := skipWS(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, malformed("response is not a JSON object")
	}
	i = skipWS(body, i+1)
	seen := make(map[string]bool, 4)
	var r splitResponse
	var errNode []byte
	for i < len(body) && body[i] != '}' {
		ke := scanString(body, i)
		key, ok := jsonString(body[i:ke])
		if !ok {
			return nil, malformed("bad key in response")
		}
		if seen[key] {
			return nil, &VerifyError{Reason: ReasonDuplicateKey, Detail: "duplicate top-level key " + quoteShort(key) + " in response", err: ErrDuplicateKey}
		}
		seen[key] = true
		i = skipWS(body, ke)
		i = skipWS(body, i+1) // ':'
		ve := skipValue(body, i)
		val := body[i:ve]
		switch key {
		case want:
			r.Name, r.Node = key, val
		case "error_response":
			errNode = val
		case "sign", "alipay_cert_sn":
			s, ok := jsonString(val)
			if !ok || val[0] != '"' {
				return nil, malformed(key + " is not a JSON string")
			}
			if key == "sign" {
				r.Sign = s
			} else {
				r.CertSN = s
			}
		}
		i = skipWS(body, ve)
		if i < len(body) && body[i] == ',' {
			i = skipWS(body, i+1)
		}
	}
	if r.Node == nil && errNode != nil {
		r.Name, r.Node = "error_response", errNode
	}
	if r.Node == nil {
		return nil, malformed("response has no " + want + " node")
	}
	return &r, nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\r', '\n':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString returns the index just past the JSON string starting at b[i] == '"'.
func scanString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the JSON value starting at b[i]. b is valid JSON.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return scanString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = scanString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default:
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return i
			}
			i++
		}
		return len(b)
	}
}

// jsonString decodes a JSON string token; other tokens are returned as their raw text.
func jsonString(tok []byte) (string, bool) {
	if len(tok) < 2 || tok[0] != '"' {
		return string(tok), len(tok) > 0
	}
	if bytes.IndexByte(tok, '\\') < 0 {
		return string(tok[1 : len(tok)-1]), true
	}
	var s string
	if json.Unmarshal(tok, &s) != nil {
		return "", false
	}
	return s, true
}
