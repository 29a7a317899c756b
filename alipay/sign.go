package alipay

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

// SignType is an Alipay signature algorithm, the value of the sign_type parameter.
type SignType string

// The signature algorithms.
const (
	// RSA2 is RSASSA-PKCS1-v1_5 with SHA-256 ("SHA256WithRSA"), the recommended algorithm.
	RSA2 SignType = "RSA2"
	// RSA is RSASSA-PKCS1-v1_5 with SHA-1 ("SHA1WithRSA"), legacy.
	RSA SignType = "RSA"
)

func (t SignType) valid() bool { return t == RSA2 || t == RSA }

// hashed returns the digest of msg for t, on the stack (no allocation).
func (t SignType) hashed(msg []byte) (crypto.Hash, [32]byte, int) {
	var d [32]byte
	if t == RSA {
		s := sha1.Sum(msg)
		copy(d[:], s[:])
		return crypto.SHA1, d, sha1.Size
	}
	d = sha256.Sum256(msg)
	return crypto.SHA256, d, sha256.Size
}

// ErrSignType is returned for a sign type other than RSA2 or RSA.
var ErrSignType = errors.New(`alipay: unsupported sign type (want "RSA2" or "RSA")`)

// Sign signs msg (the canonical string's bytes) with priv and returns the standard, padded base64
// signature Alipay expects in the sign parameter.
func Sign(priv *rsa.PrivateKey, t SignType, msg []byte) (string, error) {
	return signWith(priv, t, msg)
}

// signWith is Sign with any crypto.Signer of an RSA key: an *rsa.PrivateKey, or a key held in a
// KMS or HSM (Config.Signer), asked for a PKCS #1 v1.5 signature of the digest.
func signWith(s crypto.Signer, t SignType, msg []byte) (string, error) {
	if !t.valid() {
		return "", ErrSignType
	}
	h, d, n := t.hashed(msg)
	var (
		sig []byte
		err error
	)
	if k, ok := s.(*rsa.PrivateKey); ok {
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, h, d[:n])
	} else {
		sig, err = s.Sign(rand.Reader, d[:n], h)
	}
	if err != nil {
		return "", errors.New("alipay: sign: " + err.Error())
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// Verify checks the base64 signature sig over msg with pub, using the algorithm t; the caller's
// configuration decides t, never the message. It returns nil or an error wrapping [ErrSignature].
func Verify(pub *rsa.PublicKey, t SignType, msg []byte, sig string) error {
	if !t.valid() {
		return ErrSignType
	}
	var buf [1024]byte
	raw, err := decodeSig(buf[:0], sig)
	if err != nil {
		return err
	}
	h, d, n := t.hashed(msg)
	if rsa.VerifyPKCS1v15(pub, h, d[:n], raw) != nil {
		return ErrSignature
	}
	return nil
}

// decodeSig decodes a standard base64 signature into dst's storage when it fits.
func decodeSig[T string | []byte](dst []byte, sig T) ([]byte, error) {
	if len(sig) == 0 {
		return nil, &VerifyError{Reason: ReasonSignatureInvalid, Detail: "sign is missing or empty", err: ErrSignature}
	}
	n := base64.StdEncoding.DecodedLen(len(sig))
	if cap(dst) < n {
		dst = make([]byte, n)
	}
	dst = dst[:n]
	m, err := base64.StdEncoding.Decode(dst, []byte(sig))
	if err != nil {
		return nil, &VerifyError{Reason: ReasonSignatureInvalid, Detail: "sign is not valid base64", err: ErrSignature}
	}
	return dst[:m], nil
}

// isBlank reports whether v is empty or made only of ASCII whitespace (Java's StringUtils.isEmpty
// test for the ASCII range), the values dropped from canonical strings.
func isBlank[T string | []byte](v T) bool {
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
		if k == "sign" || isBlank(k) || isBlank(v) {
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

// Rule says which fields a notification's canonical string leaves out.
type Rule int

const (
	// V1 (rsaCheckV1) drops sign and sign_type: trade notifications to a notify_url, and return_url
	// redirects.
	V1 Rule = 1
	// V2 (rsaCheckV2) drops only sign: notifications to the application gateway (应用网关), such as
	// alipay.open.servicemarket.order.notify.
	V2 Rule = 2
)

// String returns "V1" or "V2".
func (r Rule) String() string {
	if r == V2 {
		return "V2"
	}
	return "V1"
}

// CanonicalNotification returns the bytes a notification (or return_url query) is signed over
// (docs/alipay.md, "Canonical strings"): the form's decoded bytes, in the form's own charset,
// without sign (and without sign_type under V1), empty values dropped, sorted by key, joined as
// key=value with '&'. It never transcodes or unescapes anything.
func CanonicalNotification(f *Form, r Rule) []byte {
	return f.appendCanonical(nil, r, "")
}
