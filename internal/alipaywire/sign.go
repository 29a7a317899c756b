package alipaywire

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
)

// IsBlank reports whether v is empty or made only of ASCII whitespace (Java's StringUtils.isEmpty
// test for the ASCII range), the values dropped from canonical strings.
func IsBlank[T string | []byte](v T) bool {
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case ' ', '\t', '\n', '\v', '\f', '\r', 0x1c, 0x1d, 0x1e, 0x1f:
		default:
			return false
		}
	}
	return true
}

// CanonicalRequest returns the string a merchant request is signed over (docs/alipay.md, "Canonical
// strings"): every parameter except sign, with empty (or whitespace-only) values dropped, sorted by
// key, joined as key=value with '&', values raw (not URL-encoded). sign_type is kept. The result is
// UTF-8 when the values are; sign its bytes.
func CanonicalRequest(params map[string]string) string {
	keys := make([]string, 0, len(params))
	n := 0
	for k, v := range params {
		if k == "sign" || IsBlank(k) || IsBlank(v) {
			continue
		}
		keys = append(keys, k)
		n += len(k) + len(v) + 2
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(n)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(params[k])
	}
	return b.String()
}

// InCanonical reports whether the field k=v takes part in a notification's canonical string:
// never sign; sign_type only when keepSignType (the V2 rule of the application gateway); never
// skip when it is not empty; never a blank key; a blank value only when keepEmpty (the official
// PHP SDK's rule since its commit 49ca4518b).
func InCanonical(k, v []byte, keepSignType bool, skip string, keepEmpty bool) bool {
	switch string(k) {
	case "sign":
		return false
	case "sign_type":
		if !keepSignType {
			return false
		}
	}
	if skip != "" && string(k) == skip {
		return false
	}
	return !IsBlank(k) && (keepEmpty || !IsBlank(v))
}

// AppendCanonical appends the canonical string of a notification (or return_url query) to dst
// (docs/alipay.md, "Canonical strings"): f's decoded bytes, in its own charset, the fields
// InCanonical keeps, in key order, joined as key=value with '&'. It never transcodes or unescapes
// anything.
func (f *Form) AppendCanonical(dst []byte, keepSignType bool, skip string, keepEmpty bool) []byte {
	return f.AppendCanonicalFunc(dst, func(k, v []byte) bool { return InCanonical(k, v, keepSignType, skip, keepEmpty) })
}

// AppendCanonicalFunc is AppendCanonical over the fields keep keeps.
func (f *Form) AppendCanonicalFunc(dst []byte, keep func(k, v []byte) bool) []byte {
	n := 0
	for i := range f.Len() {
		if k, v := f.Key(i), f.Value(i); keep(k, v) {
			n += len(k) + len(v) + 2
		}
	}
	if cap(dst)-len(dst) < n {
		dst = slices.Grow(dst, n)
	}
	first := true
	for i := range f.Len() {
		k, v := f.Key(i), f.Value(i)
		if !keep(k, v) {
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

// ResponseNodeName returns the response node key of an API method: "alipay.trade.query" gives
// "alipay_trade_query_response".
func ResponseNodeName(method string) string {
	return strings.ReplaceAll(method, ".", "_") + "_response"
}

// signHash returns the hash of sign type "RSA2" (SHA-256) or "RSA" (SHA-1).
func signHash(signType string) (crypto.Hash, error) {
	switch signType {
	case "RSA2":
		return crypto.SHA256, nil
	case "RSA":
		return crypto.SHA1, nil
	}
	return 0, errors.New(`unsupported sign type (want "RSA2" or "RSA")`)
}

func digest(h crypto.Hash, msg []byte) []byte {
	if h == crypto.SHA1 {
		d := sha1.Sum(msg)
		return d[:]
	}
	d := sha256.Sum256(msg)
	return d[:]
}

// Sign signs msg with key under sign type "RSA2" or "RSA" and returns the standard padded base64
// signature of the sign parameter. It is what the sandbox, playing Alipay, signs with.
func Sign(key crypto.Signer, signType string, msg []byte) (string, error) {
	h, err := signHash(signType)
	if err != nil {
		return "", err
	}
	sig, err := key.Sign(rand.Reader, digest(h, msg), h)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// Verify checks the base64 signature sig over msg with pub under sign type "RSA2" or "RSA".
func Verify(pub *rsa.PublicKey, signType string, msg []byte, sig string) error {
	h, err := signHash(signType)
	if err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return errors.New("sign is not valid base64")
	}
	if err := rsa.VerifyPKCS1v15(pub, h, digest(h, msg), raw); err != nil {
		return errors.New("signature does not verify")
	}
	return nil
}
