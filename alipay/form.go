package alipay

import (
	"slices"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// Field is one decoded form field. Key and Value hold the percent-decoded bytes exactly as sent, in
// the form's declared charset (GBK bytes stay GBK bytes): they are Go strings only as immutable byte
// containers, not necessarily UTF-8.
type Field struct {
	Key, Value string
}

// Form is an application/x-www-form-urlencoded body decoded once into bytes, its fields sorted by
// key (the canonical order) and every key unique. It is read-only.
//
// The parser itself lives in internal/alipaywire, shared with the legacy package alipaylegacy; Form
// adds the OpenAPI rules (canonical strings, charset field) and this package's errors.
type Form struct {
	w alipaywire.Form
	// signedWithEmpty: VerifyForm accepted the signature over the canonical string that keeps
	// empty values (see SignedWithEmpty).
	signedWithEmpty bool
}

// ParseForm decodes a form body once: '+' becomes a space and %XX the byte XX, and nothing else is
// done (no HTML unescaping, no charset conversion, no second decoding). Empty segments ("&&") are
// skipped and a segment without '=' is a key with an empty value, as servlet containers and Go's
// url.ParseQuery do. Unlike url.ParseQuery it keeps ';' as an ordinary byte, and it rejects a
// duplicated key (ReasonDuplicateKey), a malformed %-escape or an empty key (ReasonMalformed); the
// error is a *VerifyError. A usual notification costs one allocation.
func ParseForm(body []byte) (*Form, error) {
	f := new(Form)
	if err := f.Parse(body); err != nil {
		return nil, err
	}
	return f, nil
}

// Parse decodes body into f as ParseForm does, reusing f's storage: a server can keep Forms in a
// sync.Pool so that the notification path allocates nothing for a usual body. Whatever f held
// before is gone, so nothing may still be reading it; values taken from it with Get, Value or Field
// are copies and stay valid.
func (f *Form) Parse(body []byte) error {
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
func (f *Form) Len() int { return f.w.Len() }

// Field returns the i-th field in key order.
func (f *Form) Field(i int) Field { return Field(f.w.Field(i)) }

// Fields returns every field in key order.
func (f *Form) Fields() []Field {
	out := make([]Field, f.w.Len())
	for i := range out {
		out[i] = Field(f.w.Field(i))
	}
	return out
}

// getBytes returns key's decoded bytes without copying them.
func (f *Form) getBytes(key string) ([]byte, bool) { return f.w.Lookup(key) }

// Get returns the decoded bytes of key's value.
func (f *Form) Get(key string) (string, bool) {
	v, ok := f.w.Lookup(key)
	return string(v), ok
}

// Value returns key's decoded bytes, or "" when absent.
func (f *Form) Value(key string) string {
	v, _ := f.Get(key)
	return v
}

// Charset returns the declared charset field (e.g. "utf-8", "GBK"), or "" when absent.
func (f *Form) Charset() string { return f.Value("charset") }

// SignedWithEmpty reports that VerifyForm accepted f's signature only over the canonical string
// that keeps empty-valued fields as "k=" (what the official PHP SDK's rsaCheckV1 verifies since its
// commit 49ca4518b), not over the usual one that drops them.
func (f *Form) SignedWithEmpty() bool { return f.signedWithEmpty }

// hasEmptyValue reports whether a field that the usual canonical string under r would carry but
// for its blank value is present: only then can the with-empties string differ.
func (f *Form) hasEmptyValue(r Rule) bool {
	for i := range f.w.Len() {
		if k, v := f.w.Key(i), f.w.Value(i); isBlank(v) && include(k, []byte("x"), r, "") {
			return true
		}
	}
	return false
}

// include reports whether the field k=v takes part in the canonical string under r.
func include(k, v []byte, r Rule, skip string) bool { return includeField(k, v, r, skip, false) }

// includeField is include, keeping blank values when keepEmpty is set.
func includeField(k, v []byte, r Rule, skip string, keepEmpty bool) bool {
	switch string(k) {
	case "sign":
		return false
	case "sign_type":
		if r != V2 {
			return false
		}
	}
	if skip != "" && string(k) == skip {
		return false
	}
	return !isBlank(k) && (keepEmpty || !isBlank(v))
}

// appendCanonical appends the canonical string of f under r to dst, leaving out skip as well when
// it is not empty.
func (f *Form) appendCanonical(dst []byte, r Rule, skip string) []byte {
	return f.appendCanonicalRule(dst, r, skip, false)
}

// appendCanonicalRule is appendCanonical, keeping empty values as "k=" when keepEmpty is set.
func (f *Form) appendCanonicalRule(dst []byte, r Rule, skip string, keepEmpty bool) []byte {
	w := &f.w
	n := 0
	for i := range w.Len() {
		if k, v := w.Key(i), w.Value(i); includeField(k, v, r, skip, keepEmpty) {
			n += len(k) + len(v) + 2
		}
	}
	if cap(dst)-len(dst) < n {
		dst = slices.Grow(dst, n)
	}
	first := true
	for i := range w.Len() {
		k, v := w.Key(i), w.Value(i)
		if !includeField(k, v, r, skip, keepEmpty) {
			continue
		}
		if !first {
			dst = append(dst, '&')
		}
		first = false
		dst = append(dst, k...)
		dst = append(dst, '=')
		dst = append(dst, v...)
	}
	return dst
}
