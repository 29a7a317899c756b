package alipay

import (
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
