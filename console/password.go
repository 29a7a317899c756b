package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// The argon2id parameters of new hashes: 64 MiB, 3 passes, 2 lanes (a login takes some tens of
// milliseconds; the login rate limit bounds how often).
const (
	argonMemory  = 64 * 1024 // KiB
	argonTime    = 3
	argonThreads = 2
	argonSaltLen = 16
	argonKeyLen  = 32
)

// ErrPasswordHash is returned for an admin_password_hash that is neither an argon2id PHC string
// nor a bcrypt hash. Its text never includes the hash.
var ErrPasswordHash = errors.New("console: admin_password_hash is not an argon2id ($argon2id$v=19$m=…,t=…,p=…$salt$hash) or bcrypt ($2a$/$2b$/$2y$) hash")

// HashPassword returns the argon2id hash of password as a PHC string,
// $argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash> (unpadded standard base64).
func HashPassword(password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("console: hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// argonHash is a parsed argon2id PHC string.
type argonHash struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// CheckPasswordHash reports whether hash is a usable argon2id or bcrypt hash (ErrPasswordHash
// otherwise), for the config's validation.
func CheckPasswordHash(hash string) error {
	if isBcrypt(hash) {
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return ErrPasswordHash
		}
		return nil
	}
	_, err := parseArgon(hash)
	return err
}

func isBcrypt(hash string) bool {
	return strings.HasPrefix(hash, "$2a$") || strings.HasPrefix(hash, "$2b$") || strings.HasPrefix(hash, "$2y$")
}

// parseArgon reads $argon2id$v=19$m=M,t=T,p=P$salt$key. The parameters are bounded (memory at
// most 4 GiB is argon2's own limit; we take at most 1 GiB, 100 passes, 64 lanes), so that a
// hash cannot make a login exhaust the machine.
func parseArgon(hash string) (*argonHash, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return nil, ErrPasswordHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return nil, ErrPasswordHash
	}
	var h argonHash
	var threads uint32
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &h.memory, &h.time, &threads); err != nil || n != 3 ||
		fmt.Sprintf("m=%d,t=%d,p=%d", h.memory, h.time, threads) != parts[3] {
		return nil, ErrPasswordHash
	}
	if h.memory < 8 || h.memory > 1<<20 || h.time < 1 || h.time > 100 || threads < 1 || threads > 64 {
		return nil, ErrPasswordHash
	}
	h.threads = uint8(threads)
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return nil, ErrPasswordHash
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 128 {
		return nil, ErrPasswordHash
	}
	return &h, nil
}

// VerifyPassword reports whether password matches hash (argon2id PHC or bcrypt), comparing in
// constant time. A malformed hash matches nothing.
func VerifyPassword(hash, password string) bool {
	if isBcrypt(hash) {
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	}
	h, err := parseArgon(hash)
	if err != nil {
		return false
	}
	key := argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1
}
