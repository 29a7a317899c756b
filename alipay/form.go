package alipay

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strconv"
)

// Field is one decoded form field. Key and Value hold the percent-decoded bytes exactly as sent, in
// the form's declared charset (GBK bytes stay GBK bytes): they are Go strings only as immutable byte
// containers, not necessarily UTF-8.
type Field struct {
	Key, Value string
}

// Form is an application/x-www-form-urlencoded body decoded once into bytes, its fields sorted by
// key (the canonical order) and every key unique. It is read-only.
type Form struct {
	buf    []byte // every key and value, decoded, back to back
	spans  []span // sorted by key
	small  [32]span
	inline [inlineBody]byte // buf for a usual body, so that parsing costs one allocation
}

// inlineBody is the largest body decoded into Form.inline; Alipay's trade notifications are about
// 1 KiB.
const inlineBody = 1536

// span locates one field in buf; pre is the key's first 8 bytes, big-endian, so that most
// comparisons are one integer comparison.
type span struct {
	pre        uint64
	ks, ke, ve int32
}

// maxFormFields bounds the number of fields of a form (Alipay sends about 25); maxFormBody bounds
// its size (spans are int32 offsets).
const (
	maxFormFields = 1000
	maxFormBody   = 1 << 30
)

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
	if len(body) > maxFormBody {
		return malformed("body larger than " + strconv.Itoa(maxFormBody) + " bytes")
	}
	if len(body) <= inlineBody { // decoding never grows a form
		f.buf = f.inline[:len(body)]
	} else {
		f.buf = make([]byte, len(body))
	}
	f.spans = f.small[:0]
	n := 0
	for i := 0; i < len(body); {
		j := bytes.IndexByte(body[i:], '&')
		if j < 0 {
			j = len(body)
		} else {
			j += i
		}
		seg := body[i:j]
		i = j + 1
		if len(seg) == 0 {
			continue
		}
		if len(f.spans) == maxFormFields {
			return malformed("more than " + strconv.Itoa(maxFormFields) + " fields")
		}
		eq := bytes.IndexByte(seg, '=')
		if eq < 0 {
			eq = len(seg)
		}
		var sp span
		var ok bool
		sp.ks = int32(n)
		if n, ok = unescapeInto(f.buf, n, seg[:eq]); !ok {
			return malformed("bad %-escape in a key")
		}
		sp.ke = int32(n)
		if sp.ke == sp.ks {
			return malformed("empty key")
		}
		sp.pre = keyPrefix(f.buf[sp.ks:sp.ke])
		if eq < len(seg) {
			if n, ok = unescapeInto(f.buf, n, seg[eq+1:]); !ok {
				return malformed("bad %-escape in the value of " + strconv.Quote(printable(string(f.buf[sp.ks:sp.ke]))))
			}
		}
		sp.ve = int32(n)
		f.spans = append(f.spans, sp)
	}
	f.buf = f.buf[:n]
	f.sortSpans()
	for i := 1; i < len(f.spans); i++ {
		if !f.less(&f.spans[i-1], &f.spans[i]) {
			k := string(f.key(&f.spans[i]))
			return &VerifyError{Reason: ReasonDuplicateKey, Detail: "duplicate key " + strconv.Quote(printable(k)), err: ErrDuplicateKey}
		}
	}
	return nil
}

func keyPrefix(k []byte) uint64 {
	if len(k) >= 8 {
		return binary.BigEndian.Uint64(k)
	}
	var b [8]byte // zero-padded: a shorter key sorts first
	copy(b[:], k)
	return binary.BigEndian.Uint64(b[:])
}

func (f *Form) key(sp *span) []byte   { return f.buf[sp.ks:sp.ke] }
func (f *Form) value(sp *span) []byte { return f.buf[sp.ke:sp.ve] }

func (f *Form) less(x, y *span) bool {
	if x.pre != y.pre {
		return x.pre < y.pre
	}
	return bytes.Compare(f.key(x), f.key(y)) < 0
}

// sortSpans sorts by key: insertion sort for the usual few dozen fields, pdqsort beyond.
func (f *Form) sortSpans() {
	sp := f.spans
	if len(sp) > 64 {
		slices.SortFunc(sp, func(x, y span) int {
			if x.pre != y.pre {
				if x.pre < y.pre {
					return -1
				}
				return 1
			}
			return bytes.Compare(f.key(&x), f.key(&y))
		})
		return
	}
	// Insertion sort, moving each span once.
	for i := 1; i < len(sp); i++ {
		x := sp[i]
		j := i
		for ; j > 0 && f.less(&x, &sp[j-1]); j-- {
			sp[j] = sp[j-1]
		}
		sp[j] = x
	}
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

// special marks the bytes form decoding changes.
var special = [256]bool{'%': true, '+': true}

// unescapeInto writes the form-decoding of s into buf at n and returns the new n; the decoding is
// never longer than s. Runs of plain bytes are copied at once.
func unescapeInto(buf []byte, n int, s []byte) (int, bool) {
	for len(s) > 0 {
		i := 0
		for i < len(s) && !special[s[i]] {
			i++
		}
		n += copy(buf[n:], s[:i])
		if i == len(s) {
			return n, true
		}
		if s[i] == '+' {
			buf[n] = ' '
			n++
			s = s[i+1:]
			continue
		}
		if i+2 >= len(s) {
			return n, false
		}
		h, ok1 := unhex(s[i+1])
		l, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return n, false
		}
		buf[n] = h<<4 | l
		n++
		s = s[i+3:]
	}
	return n, true
}

// Len returns the number of fields.
func (f *Form) Len() int { return len(f.spans) }

// Field returns the i-th field in key order.
func (f *Form) Field(i int) Field {
	sp := &f.spans[i]
	return Field{Key: string(f.key(sp)), Value: string(f.value(sp))}
}

// Fields returns every field in key order.
func (f *Form) Fields() []Field {
	out := make([]Field, len(f.spans))
	for i := range f.spans {
		out[i] = f.Field(i)
	}
	return out
}

// getBytes returns key's decoded bytes without copying them.
func (f *Form) getBytes(key string) ([]byte, bool) {
	i, ok := slices.BinarySearchFunc(f.spans, key, func(sp span, k string) int {
		return bytes.Compare(f.buf[sp.ks:sp.ke], []byte(k))
	})
	if !ok {
		return nil, false
	}
	return f.value(&f.spans[i]), true
}

// Get returns the decoded bytes of key's value.
func (f *Form) Get(key string) (string, bool) {
	v, ok := f.getBytes(key)
	return string(v), ok
}

// Value returns key's decoded bytes, or "" when absent.
func (f *Form) Value(key string) string {
	v, _ := f.Get(key)
	return v
}

// Charset returns the declared charset field (e.g. "utf-8", "GBK"), or "" when absent.
func (f *Form) Charset() string { return f.Value("charset") }

// include reports whether the field takes part in the canonical string under r.
func (f *Form) include(sp *span, r Rule, skip string) bool {
	k := f.key(sp)
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
	return !isBlank(k) && !isBlank(f.value(sp))
}

// appendCanonical appends the canonical string of f under r to dst, leaving out skip as well when
// it is not empty.
func (f *Form) appendCanonical(dst []byte, r Rule, skip string) []byte {
	n := 0
	for i := range f.spans {
		if sp := &f.spans[i]; f.include(sp, r, skip) {
			n += int(sp.ve-sp.ks) + 2
		}
	}
	if cap(dst)-len(dst) < n {
		dst = slices.Grow(dst, n)
	}
	first := true
	for i := range f.spans {
		sp := &f.spans[i]
		if !f.include(sp, r, skip) {
			continue
		}
		if !first {
			dst = append(dst, '&')
		}
		first = false
		dst = append(dst, f.key(sp)...)
		dst = append(dst, '=')
		dst = append(dst, f.value(sp)...)
	}
	return dst
}

// printable bounds the length of raw bytes shown in an error (strconv.Quote makes them safe).
func printable(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
