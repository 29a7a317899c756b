package alipay

import (
	"strings"
	"unicode/utf8"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// Field is one decoded form field. Key and Value hold the percent-decoded bytes exactly as sent, in
// the form's declared charset (GBK bytes stay GBK bytes): they are Go strings only as immutable byte
// containers, not necessarily UTF-8.
type field struct {
	Key, Value string
}

// Form is an application/x-www-form-urlencoded body decoded once into bytes, its fields sorted by
// key (the canonical order) and every key unique. It is read-only.
//
// The parser itself lives in internal/alipaywire, shared with the legacy package alipaylegacy; Form
// adds the OpenAPI rules (canonical strings, charset field) and this package's errors.
type form struct {
	w alipaywire.Form
	// signedWithEmpty: verifyForm accepted the signature over the canonical string that keeps
	// empty values (see SignedWithEmpty).
	signedWithEmpty bool
}

// parseForm decodes a form body once: '+' becomes a space and %XX the byte XX, and nothing else is
// done (no HTML unescaping, no charset conversion, no second decoding). Empty segments ("&&") are
// skipped and a segment without '=' is a key with an empty value, as servlet containers and Go's
// url.ParseQuery do. Unlike url.ParseQuery it keeps ';' as an ordinary byte, and it rejects a
// duplicated key (ReasonDuplicateKey), a malformed %-escape or an empty key (ReasonMalformed); the
// error is a *VerifyError. A usual notification costs one allocation.
func parseForm(body []byte) (*form, error) {
	f := new(form)
	if err := f.Parse(body); err != nil {
		return nil, err
	}
	return f, nil
}

// Parse decodes body into f as parseForm does, reusing f's storage: a server can keep Forms in a
// sync.Pool so that the notification path allocates nothing for a usual body. Whatever f held
// before is gone, so nothing may still be reading it; values taken from it with Get, Value or Field
// are copies and stay valid.
func (f *form) Parse(body []byte) error {
	f.signedWithEmpty = false
	if err := f.w.Parse(body); err != nil {
		fe := err.(*alipaywire.FormError)
		if fe.Duplicate {
			return &VerifyError{Reason: ReasonDuplicateKey, Detail: fe.Detail, err: ErrDuplicateKey}
		}
		return malformed(fe.Detail)
	}
	return nil
}

// Len returns the number of fields.
func (f *form) Len() int { return f.w.Len() }

// Field returns the i-th field in key order.
func (f *form) Field(i int) field { return field(f.w.Field(i)) }

// Fields returns every field in key order.
func (f *form) Fields() []field {
	out := make([]field, f.w.Len())
	for i := range out {
		out[i] = field(f.w.Field(i))
	}
	return out
}

// getBytes returns key's decoded bytes without copying them.
func (f *form) getBytes(key string) ([]byte, bool) { return f.w.Lookup(key) }

// Get returns the decoded bytes of key's value.
func (f *form) Get(key string) (string, bool) {
	v, ok := f.w.Lookup(key)
	return string(v), ok
}

// Value returns key's decoded bytes, or "" when absent.
func (f *form) Value(key string) string {
	v, _ := f.Get(key)
	return v
}

// Charset returns the declared charset field (e.g. "utf-8", "GBK"), or "" when absent.
func (f *form) Charset() string { return f.Value("charset") }

// SignedWithEmpty reports that verifyForm accepted f's signature only over the canonical string
// that keeps empty-valued fields as "k=" (what the official PHP SDK's rsaCheckV1 verifies since its
// commit 49ca4518b), not over the usual one that drops them.
func (f *form) SignedWithEmpty() bool { return f.signedWithEmpty }

// hasEmptyValue reports whether a field that the usual canonical string under r would carry but
// for its blank value is present: only then can the with-empties string differ.
func (f *form) hasEmptyValue(r rule) bool {
	for i := range f.w.Len() {
		if k, v := f.w.Key(i), f.w.Value(i); isBlank(v) && include(k, []byte("x"), r, "") {
			return true
		}
	}
	return false
}

// hasJavaBlankValue reports whether a field that the usual canonical string under r carries is
// made only of whitespace as Java's Character.isWhitespace sees it, not all of it ASCII (a
// full-width space, U+3000): Alipay's Java signer drops such a value, our usual string keeps it.
func (f *form) hasJavaBlankValue(r rule) bool {
	gbk := isGBK(f.Charset())
	for i := range f.w.Len() {
		if k, v := f.w.Key(i), f.w.Value(i); include(k, v, r, "") && javaBlank(v, gbk) {
			return true
		}
	}
	return false
}

// appendCanonicalJava is appendCanonical under r with the values Java counts as whitespace left
// out too (hasJavaBlankValue).
func (f *form) appendCanonicalJava(dst []byte, r rule) []byte {
	gbk := isGBK(f.Charset())
	return f.w.AppendCanonicalFunc(dst, func(k, v []byte) bool { return include(k, v, r, "") && !javaBlank(v, gbk) })
}

// isGBK reports whether a declared charset is GBK or one of its relatives.
func isGBK(cs string) bool {
	return strings.EqualFold(cs, "gbk") || strings.EqualFold(cs, "gb2312") || strings.EqualFold(cs, "gb18030")
}

// javaBlank reports whether v (UTF-8, or GBK when gbk) is not empty and made only of characters
// java.lang.Character.isWhitespace accepts: the ASCII ones, U+1680, U+2000 to U+2006, U+2008 to
// U+200A, U+2028, U+2029, U+205F and U+3000 (not the no-break spaces U+00A0, U+2007, U+202F). In
// GBK only U+3000 (A1 A1) of the others exists.
func javaBlank(v []byte, gbk bool) bool {
	if len(v) == 0 {
		return false
	}
	for i := 0; i < len(v); {
		if isBlank(v[i : i+1]) {
			i++
			continue
		}
		if gbk {
			if i+1 < len(v) && v[i] == 0xA1 && v[i+1] == 0xA1 {
				i += 2
				continue
			}
			return false
		}
		r, n := utf8.DecodeRune(v[i:])
		switch {
		case r == 0x1680, r >= 0x2000 && r <= 0x2006, r >= 0x2008 && r <= 0x200A, r == 0x2028, r == 0x2029, r == 0x205F, r == 0x3000:
			i += n
		default:
			return false
		}
	}
	return true
}

// include reports whether the field k=v takes part in the canonical string under r.
func include(k, v []byte, r rule, skip string) bool { return includeField(k, v, r, skip, false) }

// includeField is include, keeping blank values when keepEmpty is set.
func includeField(k, v []byte, r rule, skip string, keepEmpty bool) bool {
	return alipaywire.InCanonical(k, v, r == ruleV2, skip, keepEmpty)
}

// appendCanonical appends the canonical string of f under r to dst, leaving out skip as well when
// it is not empty.
func (f *form) appendCanonical(dst []byte, r rule, skip string) []byte {
	return f.appendCanonicalRule(dst, r, skip, false)
}

// appendCanonicalRule is appendCanonical, keeping empty values as "k=" when keepEmpty is set.
func (f *form) appendCanonicalRule(dst []byte, r rule, skip string, keepEmpty bool) []byte {
	return f.w.AppendCanonical(dst, r == ruleV2, skip, keepEmpty)
}
