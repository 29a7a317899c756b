package wechatpay

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"

	wire "github.com/paynotify/paynotify/internal/wechatpaywire"
)

// APIv3KeySize is the length of an APIv3 key: 32 ASCII bytes, used as-is as an AES-256 key.
const APIv3KeySize = wire.APIv3KeySize

// algorithm is the resource encryption of APIv3 notifications and downloaded certificates.
const algorithm = wire.Algorithm

// nonceSize is the length of a resource nonce: 12 ASCII bytes, used as-is as the GCM nonce.
const nonceSize = wire.NonceSize

const tagSize = 16

// ErrAPIv3KeySize is returned (wrapped) when an APIv3 key is not exactly 32 bytes. Go's AES
// would silently turn a 16- or 24-byte key into AES-128/192; WeChat Pay keys are always 32.
var ErrAPIv3KeySize = errors.New("wechatpay: APIv3 key must be 32 bytes")

// Resource is the encrypted "resource" object of a notification (and "encrypt_certificate" of a
// downloaded certificate).
type Resource struct {
	// OriginalType is the object type before encryption: "transaction", "refund", …
	OriginalType string `json:"original_type,omitempty"`
	// algorithm is always "AEAD_AES_256_GCM".
	Algorithm string `json:"algorithm"`
	// Ciphertext is the standard padded base64 of the ciphertext followed by the 16-byte tag.
	Ciphertext string `json:"ciphertext"`
	// AssociatedData is the GCM additional data ("transaction", "refund", "certificate"; may be empty).
	AssociatedData string `json:"associated_data"`
	// Nonce is the 12-character GCM nonce, used as bytes (not base64).
	Nonce string `json:"nonce"`
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != APIv3KeySize {
		return nil, ErrAPIv3KeySize
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("wechatpay: %w", err)
	}
	return cipher.NewGCM(block)
}

// decryptGCM decrypts an AEAD_AES_256_GCM ciphertext (base64 of ciphertext‖tag) with the 32-byte
// APIv3 key, the 12-byte nonce and the associated data. Lengths are checked before GCM is
// touched, so no input panics. Errors wrap ErrAPIv3KeySize or ErrDecrypt and never contain the key.
func decryptGCM(apiv3Key []byte, nonce, associatedData, ciphertext string) ([]byte, error) {
	aead, err := newGCM(apiv3Key)
	if err != nil {
		return nil, err
	}
	return openGCM(aead, nonce, associatedData, ciphertext)
}

func openGCM(aead cipher.AEAD, nonce, associatedData, ciphertext string) ([]byte, error) {
	if len(nonce) != nonceSize {
		return nil, fmt.Errorf("%w: nonce is %d bytes, want %d", ErrDecrypt, len(nonce), nonceSize)
	}
	ct, err := base64.StdEncoding.DecodeString(ciphertext)
	if err != nil {
		return nil, fmt.Errorf("%w: ciphertext is not base64", ErrDecrypt)
	}
	if len(ct) < tagSize {
		return nil, fmt.Errorf("%w: ciphertext shorter than the tag", ErrDecrypt)
	}
	pt, err := aead.Open(ct[:0], []byte(nonce), ct, []byte(associatedData))
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrDecrypt)
	}
	return pt, nil
}

// DecryptResource decrypts r with the APIv3 key after checking its algorithm.
func DecryptResource(apiv3Key []byte, r Resource) ([]byte, error) {
	if r.Algorithm != algorithm {
		return nil, fmt.Errorf("%w: algorithm %q is not %s", ErrDecrypt, r.Algorithm, algorithm)
	}
	return decryptGCM(apiv3Key, r.Nonce, r.AssociatedData, r.Ciphertext)
}
