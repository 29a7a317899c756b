package alipaywire

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strconv"
)

// Field is one decoded form field. Key and Value hold the percent-decoded bytes exactly as sent, in
// the form's charset (GBK bytes stay GBK bytes): they are Go strings only as immutable byte
// containers, not necessarily UTF-8.
type Field struct {
	Key, Value string
}

// FormError is a form that does not parse: a duplicated key (Duplicate), or a malformed %-escape,
// an empty key, or a body over the limits. Detail never holds more than a short, quoted excerpt of
// the body.
type FormError struct {
	Duplicate bool
	Detail    string
}

// Error returns "form: " + Detail.
func (e *FormError) Error() string { return "form: " + e.Detail }

// Form is an application/x-www-form-urlencoded body decoded once into bytes, its fields sorted by
// key (the canonical order of both Alipay protocol families) and every key unique. The order in
// which the fields arrived is kept as well (Received). It is read-only once parsed.
type Form struct {
	buf    []byte // every key and value, decoded, back to back, in received order
	spans  []span // sorted by key
	small  [32]span
	inline [inlineBody]byte // buf for a usual body, so that parsing costs one allocation
}

// inlineBody is the largest body decoded into Form.inline; Alipay's trade notifications are about
// 1 KiB.
const inlineBody = 1536

// span locates one field in buf; pre is the key's first 8 bytes, big-endian, so that most
// comparisons are one integer comparison. Because buf is filled in received order, ks also gives
// the field's position in the body.
type span struct {
	pre        uint64
	ks, ke, ve int32
}

// MaxFields bounds the number of fields of a form (Alipay sends about 25); MaxBody bounds its size
// (spans are int32 offsets).
const (
	MaxFields = 1000
	MaxBody   = 1 << 30
)

func malformed(detail string) *FormError { return &FormError{Detail: detail} }

// Parse decodes a form body once into f, reusing f's storage: '+' becomes a space and %XX the byte
// XX, and nothing else is done (no HTML unescaping, no charset conversion, no second decoding).
// Empty segments ("&&") are skipped and a segment without '=' is a key with an empty value, as
// servlet containers and Go's url.ParseQuery do; a segment is split at its first '='. Unlike
// url.ParseQuery it keeps ';' as an ordinary byte, and it rejects a duplicated key (compared after
// decoding, so "a" and "%61" are the same key), a malformed %-escape or an empty key. The error is
// a *FormError. Whatever f held before is gone; values taken from it with Field, Fields or Received
// are copies and stay valid.
func (f *Form) Parse(body []byte) error {
	if len(body) > MaxBody {
		return malformed("body larger than " + strconv.Itoa(MaxBody) + " bytes")
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
		if len(f.spans) == MaxFields {
			return malformed("more than " + strconv.Itoa(MaxFields) + " fields")
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
				return malformed("bad %-escape in the value of " + strconv.Quote(Printable(string(f.buf[sp.ks:sp.ke]))))
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
			return &FormError{Duplicate: true, Detail: "duplicate key " + strconv.Quote(Printable(k))}
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

// Key returns the decoded bytes of the i-th key in key order. The slice aliases f: do not modify
// it, and do not keep it past the next Parse.
func (f *Form) Key(i int) []byte { return f.key(&f.spans[i]) }

// Value returns the decoded bytes of the i-th value in key order, aliasing f as Key does.
func (f *Form) Value(i int) []byte { return f.value(&f.spans[i]) }

// Lookup returns key's decoded value bytes without copying them (aliasing f as Key does).
func (f *Form) Lookup(key string) ([]byte, bool) {
	i, ok := slices.BinarySearchFunc(f.spans, key, func(sp span, k string) int {
		return bytes.Compare(f.buf[sp.ks:sp.ke], []byte(k))
	})
	if !ok {
		return nil, false
	}
	return f.value(&f.spans[i]), true
}

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

// Received returns every field in the order it arrived in the body.
func (f *Form) Received() []Field {
	sp := slices.Clone(f.spans)
	slices.SortFunc(sp, func(x, y span) int { return int(x.ks) - int(y.ks) })
	out := make([]Field, len(sp))
	for i := range sp {
		out[i] = Field{Key: string(f.key(&sp[i])), Value: string(f.value(&sp[i]))}
	}
	return out
}

// Printable bounds the length of raw bytes shown in an error (64 bytes, then "…"); quote the
// result (strconv.Quote) to make it safe.
func Printable(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
