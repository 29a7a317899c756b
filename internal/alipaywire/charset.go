package alipaywire

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// The charset names, as Alipay writes them in charset and _input_charset.
const (
	UTF8    = "utf-8"
	GBK     = "gbk"
	GB2312  = "gb2312"
	GB18030 = "gb18030"
)

// Charset returns the canonical name (UTF8, GBK, GB2312 or GB18030) of a charset name as a message
// or a configuration may spell it: case-insensitive, surrounding spaces ignored, "utf8" for UTF-8
// and "cp936" for GBK; "" is UTF-8. ok is false for anything else.
func Charset(name string) (canonical string, ok bool) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", "utf-8", "utf8":
		return UTF8, true
	case "gbk", "cp936":
		return GBK, true
	case "gb2312":
		return GB2312, true
	case "gb18030":
		return GB18030, true
	}
	return "", false
}

// enc returns the encoding of a charset name, nil for UTF-8. GB2312 is read and written as GBK, its
// superset (what Alipay and the browsers do).
func enc(name string) (encoding.Encoding, bool) {
	cs, ok := Charset(name)
	switch {
	case !ok:
		return nil, false
	case cs == GBK || cs == GB2312:
		return simplifiedchinese.GBK, true
	case cs == GB18030:
		return simplifiedchinese.GB18030, true
	}
	return nil, true
}

// Decoder returns the decoder of a charset name (see Charset), nil for UTF-8.
func Decoder(name string) (*encoding.Decoder, bool) {
	e, ok := enc(name)
	if !ok || e == nil {
		return nil, ok
	}
	return e.NewDecoder(), true
}

// Encoder returns the encoder of a charset name (see Charset), nil for UTF-8.
func Encoder(name string) (*encoding.Encoder, bool) {
	e, ok := enc(name)
	if !ok || e == nil {
		return nil, ok
	}
	return e.NewEncoder(), true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// ToUTF8 converts the raw bytes s, in the charset of d (nil for UTF-8), to UTF-8. ok is false when
// s is not valid in that charset. ASCII costs nothing.
func ToUTF8(d *encoding.Decoder, s string) (string, bool) {
	if isASCII(s) {
		return s, true
	}
	if d == nil {
		return s, utf8.ValidString(s)
	}
	out, err := d.String(s)
	if err != nil || strings.ContainsRune(out, utf8.RuneError) {
		return "", false
	}
	return out, true
}

// FromUTF8 converts the UTF-8 string s to the charset of e (nil for UTF-8). ok is false when s is
// not valid UTF-8 or holds a character the charset cannot represent.
func FromUTF8(e *encoding.Encoder, s string) (string, bool) {
	if isASCII(s) {
		return s, true
	}
	if !utf8.ValidString(s) {
		return "", false
	}
	if e == nil {
		return s, true
	}
	out, err := e.String(s)
	if err != nil {
		return "", false
	}
	return out, true
}
