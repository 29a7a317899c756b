// Package wechatpaywire holds the WeChat Pay APIv3 wire facts that the merchant package
// wechatpay and the sandbox (which plays WeChat Pay's side) share, so that wechatpay does not
// export provider-side building blocks for the sandbox: header names, the signed-message forms,
// SHA256withRSA signing, the Authorization header, AEAD_AES_256_GCM encryption, and the signed,
// encrypted notification as WeChat Pay sends it (docs/wechatpay.md).
//
// Verification with the merchant's error sentinels stays in wechatpay; the functions here return
// plain errors.
package wechatpaywire

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SignatureType is the only APIv3 signature scheme: RSASSA-PKCS1-v1_5 with SHA-256 over an
// RSA-2048 key. It is the Authorization scheme token and the value of Wechatpay-Signature-Type.
const SignatureType = "WECHATPAY2-SHA256-RSA2048"

// ProbePrefix starts the deliberately wrong signatures WeChat Pay sends to check that merchants
// verify (signature probes).
const ProbePrefix = "WECHATPAY/SIGNTEST/"

// PublicKeyIDPrefix starts the id of a WeChat Pay public key; a Wechatpay-Serial without it
// names a platform certificate.
const PublicKeyIDPrefix = "PUB_KEY_ID_"

// Header names of signed responses and notifications.
const (
	HeaderTimestamp     = "Wechatpay-Timestamp"
	HeaderNonce         = "Wechatpay-Nonce"
	HeaderSignature     = "Wechatpay-Signature"
	HeaderSerial        = "Wechatpay-Serial"
	HeaderSignatureType = "Wechatpay-Signature-Type"
	HeaderRequestID     = "Request-ID"
)

// Algorithm is the resource encryption of APIv3 notifications and downloaded certificates.
const Algorithm = "AEAD_AES_256_GCM"

// APIv3KeySize is the length of an APIv3 key: 32 ASCII bytes, used as-is as an AES-256 key.
const APIv3KeySize = 32

// NonceSize is the length of a resource nonce: 12 ASCII bytes, used as-is as the GCM nonce.
const NonceSize = 12

// Beijing is China Standard Time, UTC+8 without DST, in which WeChat Pay writes its times.
var Beijing = time.FixedZone("CST", 8*60*60)

// Lines joins the parts into the signed-message form: each part followed by "\n".
func Lines(parts ...string) []byte {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = append(b, p...)
		b = append(b, '\n')
	}
	return b
}

// RequestMessage returns the message a merchant signs for an APIv3 request:
// "METHOD\nURI\ntimestamp\nnonce\nbody\n". uri is the request target exactly as sent (path with
// its percent-encoding, plus "?query" when there is one), i.e. req.URL.RequestURI(); body is
// empty for GET.
func RequestMessage(method, uri, timestamp, nonce string, body []byte) []byte {
	return Lines(method, uri, timestamp, nonce, string(body))
}

// NotificationMessage returns the message WeChat Pay signs for a response or a notification:
// "timestamp\nnonce\nbody\n", over the raw body bytes (empty for 204).
func NotificationMessage(timestamp, nonce string, body []byte) []byte {
	return Lines(timestamp, nonce, string(body))
}

// Sign signs message with SHA256withRSA (RSASSA-PKCS1-v1_5, SHA-256) with any crypto.Signer of
// an RSA key (an *rsa.PrivateKey, or a key in a KMS or HSM asked for a PKCS #1 v1.5 signature of
// the SHA-256 digest) and returns the standard padded base64 signature.
func Sign(s crypto.Signer, message []byte) (string, error) {
	if s == nil {
		return "", errors.New("sign: no private key")
	}
	h := sha256.Sum256(message)
	var (
		sig []byte
		err error
	)
	if k, ok := s.(*rsa.PrivateKey); ok {
		if k == nil {
			return "", errors.New("sign: no private key")
		}
		sig, err = rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:])
	} else {
		sig, err = s.Sign(rand.Reader, h[:], crypto.SHA256)
	}
	if err != nil {
		return "", fmt.Errorf("sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// Verify checks a base64 SHA256withRSA signature of message with pub.
func Verify(pub *rsa.PublicKey, message []byte, signature string) error {
	if pub == nil {
		return errors.New("verify: no public key")
	}
	sig, err := base64.StdEncoding.DecodeString(signature)
	if err != nil {
		return errors.New("verify: signature is not base64")
	}
	h := sha256.Sum256(message)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
		return errors.New("verify: signature does not verify")
	}
	return nil
}

// Authorization is the content of an APIv3 request's Authorization header:
//
//	WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",timestamp="…",serial_no="…",signature="…"
type Authorization struct {
	// MchID is the merchant id.
	MchID string
	// NonceStr is the random string of the signed message.
	NonceStr string
	// Timestamp is the Unix time in seconds, as a decimal string, exactly as signed.
	Timestamp string
	// SerialNo is the serial of the merchant API certificate (not a platform serial).
	SerialNo string
	// Signature is the base64 SHA256withRSA signature of RequestMessage.
	Signature string
}

// String formats the header value, pairs in the order of the official Go SDK.
func (a Authorization) String() string {
	return SignatureType + ` mchid="` + a.MchID + `",nonce_str="` + a.NonceStr + `",timestamp="` + a.Timestamp +
		`",serial_no="` + a.SerialNo + `",signature="` + a.Signature + `"`
}

// SignRequest signs an APIv3 request and returns its Authorization. uri must be the request
// target as sent (req.URL.RequestURI()), body the exact bytes sent.
func SignRequest(key crypto.Signer, mchID, serialNo, method, uri, timestamp, nonce string, body []byte) (Authorization, error) {
	sig, err := Sign(key, RequestMessage(method, uri, timestamp, nonce, body))
	if err != nil {
		return Authorization{}, err
	}
	return Authorization{MchID: mchID, NonceStr: nonce, Timestamp: timestamp, SerialNo: serialNo, Signature: sig}, nil
}

// ParseAuthorization parses an Authorization header value: the scheme token
// WECHATPAY2-SHA256-RSA2048, then key="value" pairs separated by commas, in any order, with
// optional spaces around them. All five keys are required; a repeated key is an error; unknown
// keys are ignored.
func ParseAuthorization(header string) (Authorization, error) {
	var a Authorization
	scheme, rest, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || scheme != SignatureType {
		return a, fmt.Errorf("authorization scheme is not %s", SignatureType)
	}
	seen := map[string]bool{}
	for {
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			break
		}
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return a, errors.New(`authorization: expected key="value"`)
		}
		key := strings.TrimSpace(rest[:eq])
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		if !strings.HasPrefix(rest, `"`) {
			return a, fmt.Errorf("authorization: value of %q is not quoted", key)
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return a, fmt.Errorf("authorization: unterminated value of %q", key)
		}
		val := rest[1 : 1+end]
		rest = strings.TrimLeft(rest[end+2:], " \t")
		if rest != "" {
			if rest[0] != ',' {
				return a, fmt.Errorf("authorization: expected ',' after %q", key)
			}
			rest = rest[1:]
		}
		if seen[key] {
			return a, fmt.Errorf("authorization: repeated %q", key)
		}
		seen[key] = true
		switch key {
		case "mchid":
			a.MchID = val
		case "nonce_str":
			a.NonceStr = val
		case "timestamp":
			a.Timestamp = val
		case "serial_no":
			a.SerialNo = val
		case "signature":
			a.Signature = val
		}
	}
	for _, k := range []string{"mchid", "nonce_str", "timestamp", "serial_no", "signature"} {
		if !seen[k] {
			return a, fmt.Errorf("authorization: missing %q", k)
		}
	}
	return a, nil
}

// VerifyAuthorization checks the signature of an APIv3 request against the merchant's public
// key: method, uri (the raw request target, r.RequestURI) and the raw body. It does not check
// the timestamp window, the mchid or the serial: the caller (a WeChat Pay simulator) does.
func VerifyAuthorization(pub *rsa.PublicKey, a Authorization, method, uri string, body []byte) error {
	return Verify(pub, RequestMessage(method, uri, a.Timestamp, a.NonceStr, body), a.Signature)
}

// SignHeaders signs "timestamp\nnonce\nbody\n" with key and returns the Wechatpay-* headers of a
// signed response or notification, as WeChat Pay sends them. serial is the platform certificate
// serial or the PUB_KEY_ID_… of key.
func SignHeaders(key crypto.Signer, serial string, timestamp int64, nonce string, body []byte) (http.Header, error) {
	ts := strconv.FormatInt(timestamp, 10)
	sig, err := Sign(key, NotificationMessage(ts, nonce, body))
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderNonce, nonce)
	h.Set(HeaderSignature, sig)
	h.Set(HeaderSerial, serial)
	h.Set(HeaderSignatureType, SignatureType)
	return h, nil
}

// EncryptGCM encrypts plaintext with AEAD_AES_256_GCM under the 32-byte APIv3 key and the
// 12-byte nonce, and returns base64(ciphertext‖tag). The caller must never reuse a nonce under
// one key.
func EncryptGCM(apiv3Key []byte, nonce, associatedData string, plaintext []byte) (string, error) {
	if len(apiv3Key) != APIv3KeySize {
		return "", fmt.Errorf("encrypt: APIv3 key is %d bytes, want %d", len(apiv3Key), APIv3KeySize)
	}
	if len(nonce) != NonceSize {
		return "", fmt.Errorf("encrypt: nonce is %d bytes, want %d", len(nonce), NonceSize)
	}
	block, err := aes.NewCipher(apiv3Key)
	if err != nil {
		return "", fmt.Errorf("encrypt: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return "", fmt.Errorf("encrypt: %w", err)
	}
	return base64.StdEncoding.EncodeToString(aead.Seal(nil, []byte(nonce), plaintext, []byte(associatedData))), nil
}

// NotificationParams describes a notification for BuildNotification.
type NotificationParams struct {
	// ID and CreateTime fill the envelope; CreateTime is written in Beijing time.
	ID         string
	CreateTime time.Time
	// EventType, Summary and OriginalType, e.g. "TRANSACTION.SUCCESS", "支付成功", "transaction".
	EventType    string
	Summary      string
	OriginalType string
	// AssociatedData defaults to OriginalType.
	AssociatedData string
	// Plaintext is the resource JSON to encrypt.
	Plaintext []byte
	// ResourceNonce (12 bytes) and Nonce (header nonce) are drawn from Rand when empty.
	ResourceNonce string
	Nonce         string
	// Timestamp is the Wechatpay-Timestamp; defaults to CreateTime.
	Timestamp time.Time
	// Rand defaults to crypto/rand.Reader.
	Rand io.Reader
}

// BuildNotification builds a signed, encrypted APIv3 notification as WeChat Pay sends it: the
// compact envelope JSON with the resource encrypted under apiv3Key, and the Wechatpay-* headers
// signed with signer (serial is its certificate serial or PUB_KEY_ID_…).
func BuildNotification(signer crypto.Signer, serial string, apiv3Key []byte, p NotificationParams) (http.Header, []byte, error) {
	r := p.Rand
	if r == nil {
		r = rand.Reader
	}
	var err error
	if p.ResourceNonce == "" {
		n, err := Nonce(r, 32)
		if err != nil {
			return nil, nil, err
		}
		p.ResourceNonce = n[:NonceSize]
	}
	if p.Nonce == "" {
		if p.Nonce, err = Nonce(r, 32); err != nil {
			return nil, nil, err
		}
	}
	if p.AssociatedData == "" {
		p.AssociatedData = p.OriginalType
	}
	if p.Timestamp.IsZero() {
		p.Timestamp = p.CreateTime
	}
	ct, err := EncryptGCM(apiv3Key, p.ResourceNonce, p.AssociatedData, p.Plaintext)
	if err != nil {
		return nil, nil, err
	}
	env := struct {
		ID           string `json:"id"`
		CreateTime   string `json:"create_time"`
		ResourceType string `json:"resource_type"`
		EventType    string `json:"event_type"`
		Summary      string `json:"summary"`
		Resource     struct {
			OriginalType   string `json:"original_type"`
			Algorithm      string `json:"algorithm"`
			Ciphertext     string `json:"ciphertext"`
			AssociatedData string `json:"associated_data"`
			Nonce          string `json:"nonce"`
		} `json:"resource"`
	}{ID: p.ID, CreateTime: p.CreateTime.In(Beijing).Format(time.RFC3339), ResourceType: "encrypt-resource", EventType: p.EventType, Summary: p.Summary}
	env.Resource.OriginalType, env.Resource.Algorithm, env.Resource.Ciphertext = p.OriginalType, Algorithm, ct
	env.Resource.AssociatedData, env.Resource.Nonce = p.AssociatedData, p.ResourceNonce
	body, err := EncodeCompact(env)
	if err != nil {
		return nil, nil, err
	}
	h, err := SignHeaders(signer, serial, p.Timestamp.Unix(), p.Nonce, body)
	if err != nil {
		return nil, nil, err
	}
	h.Set("Content-Type", "application/json")
	return h, body, nil
}

// EncodeCompact marshals v without HTML escaping, as WeChat Pay writes JSON.
func EncodeCompact(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

const nonceAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Nonce returns n random characters of [0-9A-Za-z] read from r, uniformly distributed.
func Nonce(r io.Reader, n int) (string, error) {
	out := make([]byte, 0, n)
	var buf [48]byte
	for len(out) < n {
		if _, err := io.ReadFull(r, buf[:]); err != nil {
			return "", fmt.Errorf("nonce: %w", err)
		}
		for _, b := range buf {
			if b >= 248 { // 248 = 4*62: keep the distribution uniform
				continue
			}
			out = append(out, nonceAlphabet[int(b)%62])
			if len(out) == n {
				break
			}
		}
	}
	return string(out), nil
}
