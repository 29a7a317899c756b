package sandbox

import (
	"bytes"
	"crypto"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"sort"
	"strings"
)

// The provider side of the legacy signatures (docs/alipay-legacy.md §5–§7), written for the
// simulator alone.

// legacyBlock is the `0001` cipher block: the size of a 1024-bit key (docs/alipay-legacy.md §7).
const legacyBlock = 128

// legacySortedString is the sorted rule of docs/alipay-legacy.md §5.1: drop sign and sign_type
// (exact names) and every empty value, sort the rest by name byte-wise, join name=value with '&',
// the values raw (no escaping of any kind), in whatever charset their bytes are.
func legacySortedString(fields []field) []byte {
	fs := make([]field, 0, len(fields))
	for _, f := range fields {
		if f.Key == "sign" || f.Key == "sign_type" || f.Value == "" {
			continue
		}
		fs = append(fs, f)
	}
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Key < fs[j].Key })
	var b bytes.Buffer
	for i, f := range fs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(f.Key)
		b.WriteByte('=')
		b.WriteString(f.Value)
	}
	return b.Bytes()
}

// legacyFixedString is the fixed-order rule of the WAP async notification (docs/alipay-legacy.md
// §5.2): exactly these four fields in this order, never sorted; notifyData is the plaintext XML.
func legacyFixedString(service, v, secID, notifyData string) []byte {
	return []byte("service=" + service + "&v=" + v + "&sec_id=" + secID + "&notify_data=" + notifyData)
}

// legacyMD5Sign is lower-case hex MD5(msg || key): the key appended directly (docs/alipay-legacy.md
// §6.1).
func legacyMD5Sign(msg []byte, key string) string {
	h := md5.New()
	h.Write(msg)
	h.Write([]byte(key))
	return hex.EncodeToString(h.Sum(nil))
}

// legacyMD5Verify compares the 32 lower-case hex characters exactly, in constant time.
func legacyMD5Verify(msg []byte, key, sign string) bool {
	want := legacyMD5Sign(msg, key)
	return len(sign) == len(want) && subtle.ConstantTimeCompare([]byte(sign), []byte(want)) == 1
}

// legacyRSASign is RSASSA-PKCS1-v1_5 with SHA-1, standard base64 (docs/alipay-legacy.md §6.2).
func legacyRSASign(k *rsa.PrivateKey, msg []byte) (string, error) {
	d := sha1.Sum(msg)
	sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA1, d[:])
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// legacyRSAVerify accepts only a signature that verifies (bad base64 or length is invalid).
func legacyRSAVerify(pub *rsa.PublicKey, msg []byte, sign string) bool {
	sig, err := base64.StdEncoding.DecodeString(sign)
	if err != nil || len(sig) != pub.Size() {
		return false
	}
	d := sha1.Sum(msg)
	return rsa.VerifyPKCS1v15(pub, crypto.SHA1, d[:], sig) == nil
}

// legacyEncrypt0001 encrypts plain as Alipay does under sec_id=0001 (docs/alipay-legacy.md §7):
// chunks of at most 117 bytes, each RSA-encrypted with PKCS#1 v1.5 padding to one 128-byte block,
// the blocks concatenated and base64-encoded. Only a 1024-bit key works, as in every official SDK.
func legacyEncrypt0001(pub *rsa.PublicKey, plain []byte) (string, error) {
	if pub.Size() != legacyBlock {
		return "", errors.New("0001 needs a 1024-bit merchant key (128-byte blocks)")
	}
	const chunk = legacyBlock - 11
	var out []byte
	for i := 0; i < len(plain); i += chunk {
		end := min(i+chunk, len(plain))
		c, err := rsa.EncryptPKCS1v15(rand.Reader, pub, plain[i:end])
		if err != nil {
			return "", err
		}
		out = append(out, c...)
	}
	return base64.StdEncoding.EncodeToString(out), nil
}

// legacySignWith signs msg as Alipay does for a merchant of sign type st (MD5, RSA or 0001).
func (s *Sandbox) legacySignWith(p *legacyPartner, st string, msg []byte) (string, error) {
	switch st {
	case "MD5":
		if p.MD5Key == "" {
			return "", errors.New("the partner has no MD5 key")
		}
		return legacyMD5Sign(msg, p.MD5Key), nil
	case "RSA", "0001":
		return legacyRSASign(s.keys.legacy.alipay, msg)
	}
	return "", errors.New("unknown sign type " + st)
}

// legacyVerifyMerchant checks a merchant's request signature of type st (MD5, RSA or 0001) over
// msg with the partner's registered key. It returns the mapi error code on failure.
func legacyVerifyMerchant(p *legacyPartner, st string, msg []byte, sign string) string {
	switch st {
	case "MD5":
		if p.MD5Key == "" {
			return "ILLEGAL_SECURITY_PROFILE"
		}
		if !legacyMD5Verify(msg, p.MD5Key, sign) {
			return "ILLEGAL_SIGN"
		}
	case "RSA", "0001":
		if p.pub == nil {
			return "ILLEGAL_SECURITY_PROFILE"
		}
		if !legacyRSAVerify(p.pub, msg, sign) {
			return "ILLEGAL_SIGN"
		}
	default:
		return "ILLEGAL_SIGN_TYPE"
	}
	return ""
}

// xmlEscape escapes XML text (docs/alipay-legacy.md §13.7: the demos do not; Alipay's documents are
// well formed).
func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
