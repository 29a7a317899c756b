package alipay

import (
	"slices"
	"strconv"
	"strings"
)

// Field is one decoded form field. Key and Value hold the percent-decoded bytes exactly as sent, in
// the form's declared charset (GBK bytes stay GBK bytes): they are Go strings only as immutable byte
// containers, not necessarily UTF-8.
type Field struct {
	Key, Value string
}

// Form is an application/x-www-form-urlencoded body decoded once into bytes, with its fields sorted
// by key (the canonical order) and every key unique.
type Form struct {
	// Fields are sorted by key, byte order.
	Fields []Field
}

// maxFormFields bounds the number of fields of a form (Alipay sends about 25).
const maxFormFields = 1000

// ParseForm decodes a form body once: '+' becomes a space and %XX the byte XX, and nothing else is
// done (no HTML unescaping, no charset conversion, no second decoding). Empty segments ("&&") are
// skipped and a segment without '=' is a key with an empty value, as servlet containers and Go's
// url.ParseQuery do. Unlike url.ParseQuery it keeps ';' as an ordinary byte and it rejects a
// duplicated key (ReasonDuplicateKey), a malformed %-escape or an empty key (ReasonMalformed); the
// error is a *VerifyError. All fields share one allocation.
func ParseForm(body []byte) (*Form, error) {
	type span struct{ ks, ke, ve int }
	var stack [48]span
	spans := stack[:0]
	var b strings.Builder
	b.Grow(len(body))
	for i := 0; i < len(body); {
		j := i
		for j < len(body) && body[j] != '&' {
			j++
		}
		seg := body[i:j]
		i = j + 1
		if len(seg) == 0 {
			continue
		}
		if len(spans) == maxFormFields {
			return nil, malformed("more than " + strconv.Itoa(maxFormFields) + " fields")
		}
		eq := len(seg)
		for k, c := range seg {
			if c == '=' {
				eq = k
				break
			}
		}
		var sp span
		sp.ks = b.Len()
		if !unescapeInto(&b, seg[:eq]) {
			return nil, malformed("bad %-escape in a key")
		}
		sp.ke = b.Len()
		if sp.ke == sp.ks {
			return nil, malformed("empty key")
		}
		if eq < len(seg) {
			if !unescapeInto(&b, seg[eq+1:]) {
				return nil, malformed("bad %-escape in the value of " + strconv.Quote(printable(b.String()[sp.ks:sp.ke])))
			}
		}
		sp.ve = b.Len()
		spans = append(spans, sp)
	}
	s := b.String()
	f := &Form{Fields: make([]Field, len(spans))}
	for i, sp := range spans {
		f.Fields[i] = Field{Key: s[sp.ks:sp.ke], Value: s[sp.ke:sp.ve]}
	}
	slices.SortFunc(f.Fields, func(a, b Field) int { return strings.Compare(a.Key, b.Key) })
	for i := 1; i < len(f.Fields); i++ {
		if f.Fields[i].Key == f.Fields[i-1].Key {
			return nil, &VerifyError{Reason: ReasonDuplicateKey, Detail: "duplicate key " + strconv.Quote(printable(f.Fields[i].Key)), err: ErrDuplicateKey}
		}
	}
	return f, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescapeInto appends the form-decoding of s to b.
func unescapeInto(b *strings.Builder, s []byte) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			b.WriteByte(' ')
		case '%':
			if i+2 >= len(s) {
				return false
			}
			h, ok1 := unhex(s[i+1])
			l, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return false
			}
			b.WriteByte(h<<4 | l)
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return true
}

// Get returns the decoded bytes of key's value.
func (f *Form) Get(key string) (string, bool) {
	i, ok := slices.BinarySearchFunc(f.Fields, key, func(fl Field, k string) int { return strings.Compare(fl.Key, k) })
	if !ok {
		return "", false
	}
	return f.Fields[i].Value, true
}

// Value returns key's decoded bytes, or "" when absent.
func (f *Form) Value(key string) string {
	v, _ := f.Get(key)
	return v
}

// Charset returns the declared charset field (e.g. "utf-8", "GBK"), or "" when absent.
func (f *Form) Charset() string { return f.Value("charset") }

// include reports whether fl takes part in the canonical string under r.
func (f *Form) include(fl Field, r Rule, skip string) bool {
	switch fl.Key {
	case "sign":
		return false
	case "sign_type":
		if r != V2 {
			return false
		}
	}
	if skip != "" && fl.Key == skip {
		return false
	}
	return !isBlank(fl.Key) && !isBlank(fl.Value)
}

// appendCanonical appends the canonical string of f under r to dst, leaving out skip as well when
// it is not empty.
func (f *Form) appendCanonical(dst []byte, r Rule, skip string) []byte {
	n := 0
	for _, fl := range f.Fields {
		if f.include(fl, r, skip) {
			n += len(fl.Key) + len(fl.Value) + 2
		}
	}
	if dst == nil {
		dst = make([]byte, 0, n)
	}
	first := true
	for _, fl := range f.Fields {
		if !f.include(fl, r, skip) {
			continue
		}
		if !first {
			dst = append(dst, '&')
		}
		first = false
		dst = append(dst, fl.Key...)
		dst = append(dst, '=')
		dst = append(dst, fl.Value...)
	}
	return dst
}

// printable makes raw bytes safe to show in an error: invalid UTF-8 and control characters are
// quoted away by strconv.Quote later; this only bounds the length.
func printable(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func sortFields(fs []Field) {
	slices.SortFunc(fs, func(a, b Field) int { return strings.Compare(a.Key, b.Key) })
}
