package alipaylegacy

import (
	"crypto"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// Field is one form field or XML element. In a parsed form, Key and Value hold the bytes of one
// application/x-www-form-urlencoded decoding, in the message's charset; in a Notification they are
// UTF-8.
type Field struct {
	Key, Value string
}

// ParseForm decodes a form body (a POST body or a query string without '?') exactly once: '+' is a
// space, %XX the byte XX, and nothing else is done (no second decoding, no charset conversion, no
// HTML unescaping). It returns the fields in the order they arrived. A name that appears twice
// (also when spelled with %-escapes: "sign" and "%73ign") is ReasonDuplicateKey; a bad %-escape or
// an empty name is ReasonMalformed; the error is a *VerifyError.
func ParseForm(body []byte) ([]Field, error) {
	w, err := parseForm(body)
	if err != nil {
		return nil, err
	}
	rec := w.Received()
	out := make([]Field, len(rec))
	for i, f := range rec {
		out[i] = Field(f)
	}
	return out, nil
}

func parseForm(body []byte) (*alipaywire.Form, *VerifyError) {
	w := new(alipaywire.Form)
	if err := w.Parse(body); err != nil {
		return nil, formError(err)
	}
	return w, nil
}

// CanonicalSorted returns the string of the sorted rule (docs/alipay-legacy.md §5.1), which signs
// everything but the WAP async notification: drop the fields named exactly sign and sign_type and
// every field whose value is empty ("0" and " " are kept), sort by name byte-wise, join name=value
// with '&', values raw (no escaping of any kind). fields must not repeat a name (ParseForm
// guarantees it).
func CanonicalSorted(fields []Field) []byte {
	fs := make([]Field, 0, len(fields))
	n := 0
	for _, f := range fields {
		if f.Key == "sign" || f.Key == "sign_type" || f.Value == "" {
			continue
		}
		fs = append(fs, f)
		n += len(f.Key) + len(f.Value) + 2
	}
	slices.SortStableFunc(fs, func(a, b Field) int { return strings.Compare(a.Key, b.Key) })
	out := make([]byte, 0, n)
	for i, f := range fs {
		if i > 0 {
			out = append(out, '&')
		}
		out = append(out, f.Key...)
		out = append(out, '=')
		out = append(out, f.Value...)
	}
	return out
}

// canonicalForm is CanonicalSorted over a parsed form, whose fields are already sorted and unique.
// When replace is not empty, the value of the field named replace is with instead (the decrypted
// res_data of a `0001` token answer).
func canonicalForm(w *alipaywire.Form, replace, with string) []byte {
	var out []byte
	for i := range w.Len() {
		k, v := w.Key(i), w.Value(i)
		if replace != "" && string(k) == replace {
			v = []byte(with)
		}
		if len(v) == 0 || string(k) == "sign" || string(k) == "sign_type" {
			continue
		}
		if len(out) > 0 {
			out = append(out, '&')
		}
		out = append(out, k...)
		out = append(out, '=')
		out = append(out, v...)
	}
	return out
}

// CanonicalWAPNotify returns the string of the fixed-order rule (docs/alipay-legacy.md §5.2) that
// signs the WAP async notification: "service=…&v=…&sec_id=…&notify_data=…", in exactly this order,
// never sorted, with the values as received and notifyData the plaintext XML (decrypted first under
// `0001`).
func CanonicalWAPNotify(service, v, secID, notifyData string) []byte {
	b := make([]byte, 0, len(service)+len(v)+len(secID)+len(notifyData)+34)
	b = append(b, "service="...)
	b = append(b, service...)
	b = append(b, "&v="...)
	b = append(b, v...)
	b = append(b, "&sec_id="...)
	b = append(b, secID...)
	b = append(b, "&notify_data="...)
	return append(b, notifyData...)
}

// MD5Sign returns lower-case hex MD5(canonical || key): the key appended directly, no '&', no
// "key=" (docs/alipay-legacy.md §6.1).
func MD5Sign(canonical []byte, key string) string {
	h := md5.New()
	h.Write(canonical)
	io.WriteString(h, key)
	return hex.EncodeToString(h.Sum(nil))
}

// MD5Verify checks an MD5 sign over canonical with key: exactly 32 lower-case hex characters,
// compared in constant time. An upper-case hex sign fails, as in the official code, and so does any
// "magic hash" trick (docs/alipay-legacy.md §13.2). A key that is not 32 letters and digits (an
// empty one above all: the MD5 of the canonical string alone, which anyone can compute) fails
// every sign, as New refuses it. It returns nil or a *VerifyError wrapping ErrSignature.
func MD5Verify(canonical []byte, key, sign string) error {
	if !isMD5Key(key) {
		return verr(ReasonSignatureInvalid, "the MD5 key is not 32 letters and digits: no sign is checked with it")
	}
	if why := verifyMD5(canonical, key, sign); why != "" {
		return verr(ReasonSignatureInvalid, why)
	}
	return nil
}

func verifyMD5(canonical []byte, key, sign string) string {
	want := MD5Sign(canonical, key)
	if len(sign) != len(want) {
		return "MD5 sign has " + strconv.Itoa(len(sign)) + " characters, not 32"
	}
	if subtle.ConstantTimeCompare([]byte(want), []byte(sign)) == 1 {
		return ""
	}
	if sign != strings.ToLower(sign) {
		if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToLower(sign))) == 1 {
			return "MD5 sign is upper-case hex: signs are compared as the exact lower-case string, as the official code does"
		}
	}
	return "MD5 sign does not match the canonical string with the configured key"
}

// RSASign signs canonical with SHA1withRSA (RSASSA-PKCS1-v1_5, SHA-1) and returns the standard,
// padded base64 sign (docs/alipay-legacy.md §6.2).
func RSASign(priv *rsa.PrivateKey, canonical []byte) (string, error) {
	d := sha1.Sum(canonical)
	sig, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA1, d[:])
	if err != nil {
		return "", errors.New("alipaylegacy: sign: " + err.Error())
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// RSAVerify checks a base64 SHA1withRSA sign over canonical with pub. Only a successful
// rsa.VerifyPKCS1v15 is valid: bad base64, a wrong length or a SHA-256 ("RSA2") signature fail
// (docs/alipay-legacy.md §13.3). It returns nil or a *VerifyError wrapping ErrSignature.
func RSAVerify(pub *rsa.PublicKey, canonical []byte, sign string) error {
	if why := verifyRSA(pub, canonical, sign); why != "" {
		return verr(ReasonSignatureInvalid, why)
	}
	return nil
}

func verifyRSA(pub *rsa.PublicKey, canonical []byte, sign string) string {
	raw, err := base64.StdEncoding.Strict().DecodeString(sign)
	if err != nil {
		return "RSA sign is not valid standard base64 (a '+' sent unescaped arrives as a space)"
	}
	d := sha1.Sum(canonical)
	if rsa.VerifyPKCS1v15(pub, crypto.SHA1, d[:], raw) == nil {
		return ""
	}
	why := "SHA1withRSA sign does not verify over the canonical string with the configured Alipay public key"
	if len(raw) != pub.Size() {
		why += "; the sign is " + strconv.Itoa(len(raw)) + " bytes but the key needs " + strconv.Itoa(pub.Size()) + ": truncated, or made with another key"
	}
	d2 := sha256.Sum256(canonical)
	if rsa.VerifyPKCS1v15(pub, crypto.SHA256, d2[:], raw) == nil {
		why += "; it is a valid SHA-256 (RSA2) signature, which sign_type RSA does not allow"
	}
	return why
}

// blockSize is the `0001` cipher block: the size of a 1024-bit key, hard-coded in every official
// SDK (docs/alipay-legacy.md §7).
const blockSize = 128

// maxBlocks caps the `0001` data decrypted: 32 blocks hold 3,744 bytes of plaintext. The largest
// WAP notification the documented field lengths allow is about 22 blocks (every field at its
// longest, a 256-character subject of `"`, which XML escapes to 6 bytes each); a 128-character
// Chinese subject in UTF-8 makes 12, and a token answer far fewer. The data comes before any
// signature is checked, so anyone can send it, and each block costs a private-key operation
// (about 0.25 ms): uncapped, one request of a megabyte cost seconds of CPU, 64 blocks 15 ms.
const maxBlocks = 32

// DecryptData decrypts `0001` data (notify_data, res_data) as every official SDK does
// (docs/alipay-legacy.md §7): base64-decode, split into 128-byte blocks, RSA-decrypt each with
// PKCS#1 v1.5 padding, concatenate. It needs a 1024-bit key; any failure (bad base64, a short
// block, bad padding) is an error, never partial plaintext. Whether it fails on the padding is a
// secret of the key (see decryptBlinded): never let whoever sent the data learn it, by the answer
// or by its timing. VerifyNotification and the token request do not use it.
func DecryptData(priv *rsa.PrivateKey, data string) ([]byte, error) {
	ct, err := cipherBlocks(priv, data)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(ct))
	for i := 0; i < len(ct); i += blockSize {
		p, err := rsa.DecryptPKCS1v15(nil, priv, ct[i:i+blockSize])
		if err != nil {
			return nil, errors.New("alipaylegacy: 0001 block " + strconv.Itoa(i/blockSize+1) + " does not decrypt with the merchant key")
		}
		out = append(out, p...)
	}
	return out, nil
}

// cipherBlocks checks what the shape of `0001` data shows (the key's size, base64, whole blocks,
// at most maxBlocks) and returns the ciphertext.
func cipherBlocks(priv *rsa.PrivateKey, data string) ([]byte, error) {
	if priv.Size() != blockSize {
		return nil, errors.New("alipaylegacy: 0001 needs a 1024-bit merchant key, this one has " + strconv.Itoa(priv.N.BitLen()) + " bits")
	}
	ct, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, errors.New("alipaylegacy: 0001 data is not valid base64")
	}
	if len(ct) == 0 || len(ct)%blockSize != 0 {
		return nil, errors.New("alipaylegacy: 0001 data is " + strconv.Itoa(len(ct)) + " bytes, not a whole number of 128-byte blocks")
	}
	if len(ct) > maxBlocks*blockSize {
		return nil, errors.New("alipaylegacy: 0001 data is " + strconv.Itoa(len(ct)/blockSize) + " blocks, more than " + strconv.Itoa(maxBlocks))
	}
	return ct, nil
}

// fillerSize is the most plaintext a 1024-bit PKCS#1 v1.5 block holds.
const fillerSize = blockSize - 11

// decryptBlinded decrypts `0001` data whose signature the caller checks next, over the plaintext
// (a notification's notify_data, a token answer's res_data), without telling anyone whether a
// block's padding held. That is a secret of the merchant key: a server that answers sooner, or
// otherwise differently, when the padding of a block it was sent fails is an oracle with which
// the sender decrypts with the merchant key and signs with it, refunds included (Bleichenbacher's
// attack, which crypto/rsa's DecryptPKCS1v15 warns of). So every block is decrypted even after
// one has failed, a failed block stands as fillerSize random bytes (drawn for every block), and
// the caller checks the signature either way: a failed padding costs the work of a bad
// signature. ok says whether every block decrypted; err is only what cipherBlocks finds in the
// data's shape, which the sender knows anyway. What is left to tell them apart is the length of
// the plaintext hashed for the signature (a failed block hashes fillerSize bytes, a conforming
// one its own length): at most two SHA blocks.
func decryptBlinded(priv *rsa.PrivateKey, data string) (plain []byte, ok bool, err error) {
	ct, err := cipherBlocks(priv, data)
	if err != nil {
		return nil, false, err
	}
	out := make([]byte, 0, len(ct))
	bad := 0
	var filler [fillerSize]byte
	for i := 0; i < len(ct); i += blockSize {
		if _, err := rand.Read(filler[:]); err != nil {
			return nil, false, errors.New("alipaylegacy: no randomness: " + err.Error())
		}
		p, err := rsa.DecryptPKCS1v15(nil, priv, ct[i:i+blockSize])
		failed := 0
		if err != nil {
			failed = 1
			p = filler[:]
		}
		bad |= failed
		out = append(out, p...)
	}
	return out, bad == 0, nil
}

// sign signs a request's canonical string with the configured algorithm: the MD5 key, or the
// merchant private key.
func (c *Client) sign(canonical []byte) (string, error) {
	if c.signType == SignMD5 {
		return MD5Sign(canonical, c.md5Key), nil
	}
	if c.merchantKey == nil {
		return "", errNoMerchantKey
	}
	return RSASign(c.merchantKey, canonical)
}

var errNoMerchantKey = errors.New("alipaylegacy: SignType RSA needs MerchantPrivateKey to sign requests and to decrypt 0001 data")

// verify checks a sign made by Alipay over canonical with the configured algorithm and key, and
// returns "" or why it fails.
func (c *Client) verify(canonical []byte, sign string) string {
	if c.signType == SignMD5 {
		return verifyMD5(canonical, c.md5Key, sign)
	}
	return verifyRSA(c.alipayKey, canonical, sign)
}
