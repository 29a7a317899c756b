package sandbox

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/paynotify/paynotify/internal/alipaywire"
	"golang.org/x/text/encoding/simplifiedchinese"
)

// isGBK reports whether an Alipay charset names the GBK family (GBK, GB2312 or GB18030, as
// alipaywire.Charset reads the name).
func isGBK(cs string) bool {
	c, ok := alipaywire.Charset(cs)
	return ok && c != alipaywire.UTF8
}

// toCharset encodes a UTF-8 string in cs (UTF-8 or GBK); characters GBK lacks become '?'.
func toCharset(s, cs string) string {
	if !isGBK(cs) {
		return s
	}
	b, err := simplifiedchinese.GBK.NewEncoder().String(s)
	if err != nil {
		var out strings.Builder
		enc := simplifiedchinese.GBK.NewEncoder()
		for _, r := range s {
			e, err := enc.String(string(r))
			if err != nil {
				e = "?"
			}
			out.WriteString(e)
		}
		return out.String()
	}
	return b
}

// fromCharset decodes bytes in cs to UTF-8.
func fromCharset(s, cs string) string {
	if !isGBK(cs) {
		return s
	}
	b, err := simplifiedchinese.GB18030.NewDecoder().String(s)
	if err != nil {
		return s
	}
	return b
}

// kv is one member of an ordered JSON object; V is a string, an ordered object ([]kv), or
// json.RawMessage.
type kv struct {
	K string
	V any
}

// jsonObject writes members in order, compact, without HTML escaping (as Alipay and WeChat do).
// escapeSlash writes "/" as "\/" in string values, as Alipay does in some responses.
func jsonObject(members []kv, escapeSlash bool) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(jsonString(m.K, false))
		b.WriteByte(':')
		switch v := m.V.(type) {
		case string:
			b.Write(jsonString(v, escapeSlash))
		case []kv:
			b.Write(jsonObject(v, escapeSlash))
		case json.RawMessage:
			b.Write(v)
		case int64:
			b.Write(mustJSON(v))
		case int:
			b.Write(mustJSON(v))
		default:
			b.Write(mustJSON(v))
		}
	}
	b.WriteByte('}')
	return b.Bytes()
}

func jsonString(s string, escapeSlash bool) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	out := bytes.TrimRight(b.Bytes(), "\n")
	if escapeSlash {
		out = bytes.ReplaceAll(out, []byte("/"), []byte(`\/`))
	}
	return out
}

func mustJSON(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return []byte("null")
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}
