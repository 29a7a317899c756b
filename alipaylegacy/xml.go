package alipaylegacy

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// maxXMLFields bounds the elements of a notify_data, res_data or res_error document (Alipay sends
// about 20).
const maxXMLFields = 200

// errXMLDuplicate marks an element that appears twice.
var errXMLDuplicate = errors.New("duplicate element")

// parseFlatXML parses the flat documents of the WAP pair: one root element named root whose
// children hold only text, e.g. <notify><trade_no>…</trade_no>…</notify>. It returns the children
// in document order, their text unescaped. It refuses a DTD or any other directive (no entity
// can be declared; encoding/xml expands none but the five predefined ones), nesting below the
// children, text directly in the root, a second root, an element that appears twice
// (errXMLDuplicate) and attributes' namespaces (attributes are ignored). data must be UTF-8; an
// XML declaration may name any charset the package knows (the bytes were converted before).
func parseFlatXML(data []byte, root string) ([]Field, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.CharsetReader = func(label string, in io.Reader) (io.Reader, error) {
		if _, ok := alipaywire.Charset(label); !ok {
			return nil, errors.New("unknown charset " + strconv.Quote(label))
		}
		return in, nil // already UTF-8
	}
	var (
		out      []Field
		depth    int
		seenRoot bool
		text     strings.Builder
		name     string
	)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space != "" {
				return nil, errors.New("namespaced element " + strconv.Quote(t.Name.Local))
			}
			switch depth {
			case 0:
				if seenRoot {
					return nil, errors.New("a second root element")
				}
				if t.Name.Local != root {
					return nil, errors.New("root element is " + strconv.Quote(t.Name.Local) + ", not " + strconv.Quote(root))
				}
				seenRoot = true
			case 1:
				if len(out) == maxXMLFields {
					return nil, errors.New("more than " + strconv.Itoa(maxXMLFields) + " elements")
				}
				name = t.Name.Local
				text.Reset()
			default:
				return nil, errors.New("element " + strconv.Quote(t.Name.Local) + " nested inside " + strconv.Quote(name))
			}
			depth++
		case xml.EndElement:
			depth--
			if depth == 1 {
				for _, f := range out {
					if f.Key == name {
						return nil, errXMLDuplicate
					}
				}
				out = append(out, Field{Key: name, Value: text.String()})
			}
		case xml.CharData:
			switch depth {
			case 2:
				text.Write(t)
			default:
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, errors.New("text outside the child elements")
				}
			}
		case xml.ProcInst:
			if seenRoot || t.Target != "xml" {
				return nil, errors.New("processing instruction " + strconv.Quote(t.Target))
			}
		case xml.Directive:
			return nil, errors.New("a DTD or directive (<!…>) is not allowed")
		case xml.Comment:
		}
	}
	if !seenRoot {
		return nil, errors.New("no root element")
	}
	return out, nil
}

// xmlError turns a parseFlatXML error into a *VerifyError about the document named what.
func xmlError(what string, err error) *VerifyError {
	if err == errXMLDuplicate {
		return verr(ReasonDuplicateKey, what+": an element appears twice")
	}
	return verr(ReasonMalformed, what+" is not the expected XML: "+err.Error())
}

// xmlGet returns the text of the element named key.
func xmlGet(fs []Field, key string) (string, bool) {
	for _, f := range fs {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}

// escapeXMLText escapes the three characters that matter in XML text (&, <, >), leaving the rest as
// it is, so that req_data is readable and the signed bytes are what a careful PHP merchant sends.
func escapeXMLText(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")
	return r.Replace(s)
}

// validXMLText reports whether s holds only characters XML 1.0 allows.
func validXMLText(s string) bool {
	for _, r := range s {
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return false
		}
	}
	return true
}
