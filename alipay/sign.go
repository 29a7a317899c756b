package alipay

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"errors"

	"github.com/paynotify/paynotify/internal/alipaywire"
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

// signWith signs msg (the canonical string's bytes) with any crypto.Signer of an RSA key: an *rsa.PrivateKey, or a key held in a
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

// verify checks the base64 signature sig over msg with pub, using the algorithm t; the caller's
// configuration decides t, never the message. It returns nil or an error wrapping [ErrSignature].
func verify(pub *rsa.PublicKey, t SignType, msg []byte, sig string) error {
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

// isBlank reports whether v is empty or made only of ASCII whitespace, the values dropped from
// canonical strings.
func isBlank[T string | []byte](v T) bool { return alipaywire.IsBlank(v) }

// rule says which fields a notification's canonical string leaves out.
type rule int

const (
	// ruleV1 (rsaCheckV1) drops sign and sign_type: trade notifications to a notify_url, and return_url
	// redirects.
	ruleV1 rule = 1
	// ruleV2 (rsaCheckV2) drops only sign: notifications to the application gateway (应用网关), such as
	// alipay.open.servicemarket.order.notify.
	ruleV2 rule = 2
)

// String returns "V1" or "V2".
func (r rule) String() string {
	if r == ruleV2 {
		return "V2"
	}
	return "V1"
}

// canonicalNotification returns the bytes a notification (or return_url query) is signed over
// (docs/alipay.md, "Canonical strings"): the form's decoded bytes, in the form's own charset,
// without sign (and without sign_type under V1), empty values dropped, sorted by key, joined as
// key=value with '&'. It never transcodes or unescapes anything.
func canonicalNotification(f *form, r rule) []byte {
	return f.appendCanonical(nil, r, "")
}
