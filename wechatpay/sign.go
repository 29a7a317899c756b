package wechatpay

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// SignatureType is the only APIv3 signature scheme this package speaks: RSASSA-PKCS1-v1_5 with
// SHA-256 over an RSA-2048 key. It is the Authorization scheme token and the value of
// Wechatpay-Signature-Type.
const SignatureType = "WECHATPAY2-SHA256-RSA2048"

// ProbePrefix starts the deliberately wrong signatures WeChat Pay sends to check that merchants
// verify (signature probes).
const ProbePrefix = "WECHATPAY/SIGNTEST/"

// Header names of signed responses and notifications.
const (
	HeaderTimestamp     = "Wechatpay-Timestamp"
	HeaderNonce         = "Wechatpay-Nonce"
	HeaderSignature     = "Wechatpay-Signature"
	HeaderSerial        = "Wechatpay-Serial"
	HeaderSignatureType = "Wechatpay-Signature-Type"
	HeaderRequestID     = "Request-ID"
)

// lines joins the parts into the signed-message form: each part followed by "\n".
func lines(parts ...string) []byte {
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
	return lines(method, uri, timestamp, nonce, string(body))
}

// NotificationMessage returns the message WeChat Pay signs for a response or a notification:
// "timestamp\nnonce\nbody\n", over the raw body bytes (empty for 204).
func NotificationMessage(timestamp, nonce string, body []byte) []byte {
	return lines(timestamp, nonce, string(body))
}

// PayParamsMessage returns the message of the client-side payment parameters: each field
// followed by "\n" (JSAPI: appId, timeStamp, nonceStr, package; APP: appid, timestamp,
// noncestr, prepayid).
func PayParamsMessage(fields ...string) []byte { return lines(fields...) }

// Sign signs message with SHA256withRSA (RSASSA-PKCS1-v1_5, SHA-256) and returns the standard
// padded base64 signature. PKCS#1 v1.5 is deterministic, so no randomness is needed.
func Sign(key *rsa.PrivateKey, message []byte) (string, error) {
	if key == nil {
		return "", errors.New("wechatpay: sign: no private key")
	}
	return signWith(key, message)
}

// signWith is Sign with any crypto.Signer of an RSA key: an *rsa.PrivateKey, or a key held in a
// KMS or HSM (Config.MerchantSigner), asked for a PKCS #1 v1.5 signature of the SHA-256 digest.
func signWith(s crypto.Signer, message []byte) (string, error) {
	h := sha256.Sum256(message)
	var (
		sig []byte
		err error
	)
	if k, ok := s.(*rsa.PrivateKey); ok {
		sig, err = rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:])
	} else {
		sig, err = s.Sign(rand.Reader, h[:], crypto.SHA256)
	}
	if err != nil {
		return "", fmt.Errorf("wechatpay: sign: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// Verify checks a base64 SHA256withRSA signature of message. It returns nil or an error
// wrapping ErrSignature.
func Verify(pub *rsa.PublicKey, message []byte, signature string) error {
	h := sha256.Sum256(message)
	return verifyDigest(pub, h[:], signature)
}

func verifyDigest(pub *rsa.PublicKey, digest []byte, signature string) error {
	if pub == nil {
		return errors.New("wechatpay: verify: no public key")
	}
	var buf, src [512]byte
	if len(signature) > len(src) {
		return fmt.Errorf("%w: signature too long", ErrSignature)
	}
	n, err := base64.StdEncoding.Decode(buf[:], src[:copy(src[:], signature)])
	if err != nil {
		return fmt.Errorf("%w: signature is not base64", ErrSignature)
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest, buf[:n]); err != nil {
		return ErrSignature
	}
	return nil
}

// notificationDigest hashes "timestamp\nnonce\nbody\n" without copying the body.
func notificationDigest(timestamp, nonce string, body []byte) [sha256.Size]byte {
	h := sha256.New()
	io.WriteString(h, timestamp)
	h.Write(nl)
	io.WriteString(h, nonce)
	h.Write(nl)
	h.Write(body)
	h.Write(nl)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

var nl = []byte{'\n'}

// SignHeaders signs "timestamp\nnonce\nbody\n" with key and returns the Wechatpay-* headers of a
// signed response or notification, as WeChat Pay sends them. serial is the platform certificate
// serial or the PUB_KEY_ID_… of key. It is what a simulator of WeChat Pay uses.
func SignHeaders(key *rsa.PrivateKey, serial string, timestamp int64, nonce string, body []byte) (http.Header, error) {
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
func SignRequest(key *rsa.PrivateKey, mchID, serialNo, method, uri, timestamp, nonce string, body []byte) (Authorization, error) {
	if key == nil {
		return Authorization{}, errors.New("wechatpay: sign: no private key")
	}
	return signRequest(key, mchID, serialNo, method, uri, timestamp, nonce, body)
}

// signRequest is SignRequest with any crypto.Signer.
func signRequest(key crypto.Signer, mchID, serialNo, method, uri, timestamp, nonce string, body []byte) (Authorization, error) {
	sig, err := signWith(key, RequestMessage(method, uri, timestamp, nonce, body))
	if err != nil {
		return Authorization{}, err
	}
	return Authorization{MchID: mchID, NonceStr: nonce, Timestamp: timestamp, SerialNo: serialNo, Signature: sig}, nil
}

// ParseAuthorization parses an Authorization header value: the scheme token
// WECHATPAY2-SHA256-RSA2048, then key="value" pairs separated by commas, in any order, with
// optional spaces around them. All five keys are required; a repeated key is an error (wrapping
// ErrMalformed); unknown keys are ignored.
func ParseAuthorization(header string) (Authorization, error) {
	var a Authorization
	scheme, rest, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || scheme != SignatureType {
		return a, fmt.Errorf("%w: authorization scheme is not %s", ErrMalformed, SignatureType)
	}
	seen := map[string]bool{}
	for {
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			break
		}
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return a, fmt.Errorf("%w: authorization: expected key=\"value\"", ErrMalformed)
		}
		key := strings.TrimSpace(rest[:eq])
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		if !strings.HasPrefix(rest, `"`) {
			return a, fmt.Errorf("%w: authorization: value of %q is not quoted", ErrMalformed, key)
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return a, fmt.Errorf("%w: authorization: unterminated value of %q", ErrMalformed, key)
		}
		val := rest[1 : 1+end]
		rest = strings.TrimLeft(rest[end+2:], " \t")
		if rest != "" {
			if rest[0] != ',' {
				return a, fmt.Errorf("%w: authorization: expected ',' after %q", ErrMalformed, key)
			}
			rest = rest[1:]
		}
		if seen[key] {
			return a, fmt.Errorf("%w: authorization: repeated %q", ErrMalformed, key)
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
			return a, fmt.Errorf("%w: authorization: missing %q", ErrMalformed, k)
		}
	}
	return a, nil
}

// VerifyAuthorization checks the signature of an APIv3 request against the merchant's public
// key: method, uri (the raw request target, r.RequestURI) and the raw body. It does not check
// the timestamp window, the mchid or the serial: the caller (a WeChat Pay simulator) does. It
// returns nil or an error wrapping ErrSignature.
func VerifyAuthorization(pub *rsa.PublicKey, a Authorization, method, uri string, body []byte) error {
	return Verify(pub, RequestMessage(method, uri, a.Timestamp, a.NonceStr, body), a.Signature)
}
