package wechatpay

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	wire "github.com/paynotify/paynotify/internal/wechatpaywire"
)

// The signed-message forms, the Authorization header and the Wechatpay-* header names are in
// internal/wechatpaywire, shared with the sandbox, which plays WeChat Pay's side.

// signWith signs message with SHA256withRSA with any crypto.Signer of an RSA key: an
// *rsa.PrivateKey, or a key held in a KMS or HSM (Config.MerchantSigner), asked for a PKCS #1
// v1.5 signature of the SHA-256 digest.
func signWith(s crypto.Signer, message []byte) (string, error) {
	sig, err := wire.Sign(s, message)
	if err != nil {
		return "", fmt.Errorf("wechatpay: %w", err)
	}
	return sig, nil
}

// signRequest signs an APIv3 request and returns its Authorization.
func signRequest(key crypto.Signer, mchID, serialNo, method, uri, timestamp, nonce string, body []byte) (wire.Authorization, error) {
	a, err := wire.SignRequest(key, mchID, serialNo, method, uri, timestamp, nonce, body)
	if err != nil {
		return a, fmt.Errorf("wechatpay: %w", err)
	}
	return a, nil
}

// verify checks a base64 SHA256withRSA signature of message. It returns nil or an error
// wrapping ErrSignature.
func verify(pub *rsa.PublicKey, message []byte, signature string) error {
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
