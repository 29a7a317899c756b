package paynotify

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// API token scopes (docs/api.md, "Authentication").
const (
	// ScopeRead allows the GET routes of the merchant API only.
	ScopeRead = "read"
	// ScopeWrite allows every route of the merchant API, as the config's api_token does.
	ScopeWrite = "write"
)

// apiTokenPrefix begins every token made by NewAPIToken, so that a leaked one is recognisable (a
// secret scanner can look for it) and a request with anything else is refused without a lookup.
const apiTokenPrefix = "pn_"

// apiTokenBytes is the randomness of a token: 256 bits, so that a token cannot be guessed and its
// SHA-256 is an adequate hash to store (no salt or slow hash is needed for a random secret).
const apiTokenBytes = 32

// apiTokenLen is the length of a token: the prefix and 43 unpadded base64url characters.
var apiTokenLen = len(apiTokenPrefix) + base64.RawURLEncoding.EncodedLen(apiTokenBytes)

// APIToken is a named API token of the merchant API, kept by the store as the hash of its value:
// the value is shown once, when it is made (IssueAPIToken), and never stored.
type APIToken struct {
	// Name identifies the token in listings and logs: 1 to 64 letters, digits, '.', '_' or '-'.
	// Names are never reused, not even after a revocation, so that a name in a log is one token.
	Name string
	// Scope is ScopeRead or ScopeWrite.
	Scope string
	// Hash is HashAPIToken of the value. ListAPITokens leaves it nil.
	Hash      []byte
	CreatedAt time.Time
	// RevokedAt is when the token was revoked; nil while it is valid.
	RevokedAt *time.Time
	// LastUsedAt is when a server last accepted the token, to within a minute (a server records
	// a use at most once a minute per token); nil if never.
	LastUsedAt *time.Time
}

// APITokenStore keeps the named API tokens.
type APITokenStore interface {
	// CreateAPIToken inserts t (Name, Scope, Hash, CreatedAt). A token named t.Name, revoked or
	// not, is ECONFLICT.
	CreateAPIToken(ctx context.Context, t *APIToken) error
	// ListAPITokens returns every token, revoked ones included, oldest first, without Hash.
	ListAPITokens(ctx context.Context) ([]*APIToken, error)
	// FindAPIToken returns the token whose Hash is hash, if it is not revoked; ENOTFOUND
	// otherwise (unknown or revoked alike).
	FindAPIToken(ctx context.Context, hash []byte) (*APIToken, error)
	// RevokeAPIToken sets the RevokedAt of the token named name to at, unless it is revoked
	// already (it keeps its first RevokedAt); ENOTFOUND when there is no such token.
	RevokeAPIToken(ctx context.Context, name string, at time.Time) error
	// TouchAPIToken sets the LastUsedAt of the token named name to at, unless it is later
	// already. An unknown name changes nothing and is not an error.
	TouchAPIToken(ctx context.Context, name string, at time.Time) error
}

// NewAPIToken returns a new token value: "pn_" and 43 base64url characters holding 32 bytes read
// from random (crypto/rand.Reader in production).
func NewAPIToken(random io.Reader) (string, error) {
	b := make([]byte, apiTokenBytes)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", fmt.Errorf("new API token: %w", err)
	}
	return apiTokenPrefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// HashAPIToken returns the SHA-256 of a token value: what the store keeps and looks tokens up by.
func HashAPIToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// IsAPITokenShape reports whether s has the shape of a value made by NewAPIToken. A request
// whose token does not is refused without asking the store.
func IsAPITokenShape(s string) bool {
	if len(s) != apiTokenLen || !strings.HasPrefix(s, apiTokenPrefix) {
		return false
	}
	for _, c := range s[len(apiTokenPrefix):] {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

var apiTokenName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ConfigTokenName is the name the config's api_token goes by (in 403 answers and the log); no
// stored token may have it.
const ConfigTokenName = "api_token"

// IssueAPIToken makes a token named name with scope, stores its hash (created at now) and
// returns its value, which nothing keeps: the caller shows it once. A bad name or scope is
// EINVALID; a name in use (revoked tokens keep theirs) is ECONFLICT.
func IssueAPIToken(ctx context.Context, st APITokenStore, random io.Reader, name, scope string, now time.Time) (string, error) {
	if !apiTokenName.MatchString(name) {
		return "", Errorf(EINVALID, "API token name %q: use 1 to 64 letters, digits, '.', '_' or '-'.", name)
	}
	if name == ConfigTokenName {
		// The config's api_token is named so in the answers and the log: a stored one of that
		// name could not be told from it (a reviewer helper's finding).
		return "", Errorf(EINVALID, "API token name %q is the config's api_token: choose another.", name)
	}
	if scope != ScopeRead && scope != ScopeWrite {
		return "", Errorf(EINVALID, "API token scope %q: use %s or %s.", scope, ScopeRead, ScopeWrite)
	}
	token, err := NewAPIToken(random)
	if err != nil {
		return "", err
	}
	if err := st.CreateAPIToken(ctx, &APIToken{Name: name, Scope: scope, Hash: HashAPIToken(token), CreatedAt: now}); err != nil {
		return "", err
	}
	return token, nil
}
