package sandbox

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// field is one form field, its key and value the percent-decoded bytes (in the form's charset).
type field struct{ Key, Value string }

// parseForm decodes an application/x-www-form-urlencoded body once ('+' is a space, %XX the byte
// XX), rejecting a duplicated key, as the Alipay gateway reads requests. The sandbox keeps its own
// small parser so that it depends only on the alipay package's signing functions.
func parseForm(s string) ([]field, error) {
	var out []field
	seen := map[string]bool{}
	for _, part := range strings.Split(s, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		dk, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("bad escape in %q", k)
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("bad escape in the value of %q", dk)
		}
		if dk == "" {
			return nil, errors.New("empty key")
		}
		if seen[dk] {
			return nil, fmt.Errorf("parameter %s appears twice", dk)
		}
		seen[dk] = true
		out = append(out, field{dk, dv})
	}
	return out, nil
}

// canonicalV1 is the string Alipay signs notifications and return redirects over (docs/alipay.md,
// "Canonical strings"): every non-empty field but sign and sign_type, sorted by key, key=value
// joined by '&'.
func canonicalV1(fields []field) []byte {
	fs := append([]field(nil), fields...)
	sort.Slice(fs, func(i, j int) bool { return fs[i].Key < fs[j].Key })
	var b strings.Builder
	for _, f := range fs {
		if f.Key == "sign" || f.Key == "sign_type" || f.Value == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(f.Key + "=" + f.Value)
	}
	return []byte(b.String())
}

// encodeForm form-encodes fields in order.
func encodeForm(fields []field) string {
	var b strings.Builder
	for i, f := range fields {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(f.Key) + "=" + url.QueryEscape(f.Value))
	}
	return b.String()
}
