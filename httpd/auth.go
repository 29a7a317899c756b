package httpd

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/reqtext"
)

// This file authenticates the merchant API: the config's api_token (scope write), or a named token
// of the store (paynotify.APITokenStore), looked up by the SHA-256 of the value.
//
// Revocation takes effect without a restart: a stored token found once is trusted for
// TokenCacheTTL (5 s by default), then looked up again, so a revoked token is refused by every
// server within that delay. Only found tokens are cached, so the cache holds at most the store's
// valid tokens. A value that is not shaped like a stored token (paynotify.IsAPITokenShape) is
// refused without a lookup; a well-shaped wrong one costs one read through the unique index on
// the hash, no more than an unauthenticated provider callback costs (which reads the order it
// names). Rate-limit unauthenticated clients at the reverse proxy if that matters; a negative
// cache would not help, since every guess is a new value. The lookup by hash is not constant-time,
// and need not be: its timing can tell only about the SHA-256 of the guess, not about a token.

// DefaultTokenCacheTTL is how long a server trusts a stored API token it has found, by default.
const DefaultTokenCacheTTL = 5 * time.Second

// touchEvery is how often, at most, a server records the use of a stored token
// (APIToken.LastUsedAt): a write per token per minute, not per request.
const touchEvery = time.Minute

// tokenCache holds the stored tokens a server has found, by hash, and when it last recorded the
// use of each, by name.
type tokenCache struct {
	mu      sync.Mutex
	found   map[[32]byte]cachedToken
	touched map[string]time.Time
}

type cachedToken struct {
	tok *paynotify.APIToken
	at  time.Time // when the store said it is valid
}

func (s *Server) tokenTTL() time.Duration {
	if s.TokenCacheTTL == 0 {
		return DefaultTokenCacheTTL
	}
	return s.TokenCacheTTL
}

// authorized checks the merchant API's bearer token: the config's api_token (compared in constant
// time) or a stored token; a read token may call GET (and HEAD) routes only.
func (s *Server) authorized(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An answer of the API (an order's pay parameters, a webhook secret, evidence) is not
		// for any cache to keep.
		w.Header().Set("Cache-Control", "no-store")
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		var (
			tok *paynotify.APIToken
			err error
		)
		if ok {
			tok, err = s.authenticate(r.Context(), got)
		}
		if !ok || paynotify.ErrorCode(err) == paynotify.EUNAUTHORIZED {
			w.Header().Set("WWW-Authenticate", `Bearer realm="paynotify"`)
			s.writeError(w, r, paynotify.Errorf(paynotify.EUNAUTHORIZED, "Missing or wrong API token."))
			return
		} else if err != nil {
			s.writeError(w, r, err)
			return
		}
		if tok.Scope != paynotify.ScopeWrite && r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.writeError(w, r, paynotify.Errorf(paynotify.EFORBIDDEN,
				"API token %s has scope %s: it may call GET routes only; %s needs a token with scope write.", tok.Name, tok.Scope, r.Method))
			return
		}
		// Ids, keys and filters no stored row can hold: bad input, before any store is asked.
		if where := reqtext.Unstorable(r); where != "" {
			s.writeError(w, r, paynotify.Errorf(paynotify.EINVALID, "The request's %s holds NUL or bytes that are not UTF-8.", where))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), scopeKey, tok.Scope)))
	})
}

// configToken is what the config's api_token authenticates as.
var configToken = &paynotify.APIToken{Name: paynotify.ConfigTokenName, Scope: paynotify.ScopeWrite}

// authenticate returns the token that value is: the config's api_token, or a valid stored token.
// An unknown or revoked value is EUNAUTHORIZED; a store failure is returned as it is.
func (s *Server) authenticate(ctx context.Context, value string) (*paynotify.APIToken, error) {
	// Compared as SHA-256 digests: ConstantTimeCompare returns at once on a length that differs,
	// which would tell a caller the config token's length.
	if s.APIToken != "" {
		got, want := sha256.Sum256([]byte(value)), sha256.Sum256([]byte(s.APIToken))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			return configToken, nil
		}
	}
	unauthorized := paynotify.Errorf(paynotify.EUNAUTHORIZED, "Missing or wrong API token.")
	if !paynotify.IsAPITokenShape(value) {
		return nil, unauthorized
	}
	hash := paynotify.HashAPIToken(value)
	key := [32]byte(hash)
	now := s.now()
	ttl := s.tokenTTL()

	c := &s.tokens
	c.mu.Lock()
	e, ok := c.found[key]
	c.mu.Unlock()
	if !ok || ttl < 0 || now.Sub(e.at) >= ttl || now.Before(e.at) {
		tok, err := s.Service.Store.FindAPIToken(ctx, hash)
		c.mu.Lock()
		if err != nil {
			delete(c.found, key)
		} else if ttl >= 0 {
			if c.found == nil {
				c.found = make(map[[32]byte]cachedToken)
			}
			c.found[key] = cachedToken{tok: tok, at: now}
		}
		c.mu.Unlock()
		if paynotify.ErrorCode(err) == paynotify.ENOTFOUND {
			return nil, unauthorized
		} else if err != nil {
			return nil, err
		}
		e = cachedToken{tok: tok, at: now}
	}
	s.touch(ctx, e.tok.Name, now)
	return e.tok, nil
}

// touch records the use of the stored token name at now, if this server has not for touchEvery.
// A failure is logged (by name) and does not fail the request.
func (s *Server) touch(ctx context.Context, name string, now time.Time) {
	c := &s.tokens
	c.mu.Lock()
	last, ok := c.touched[name]
	due := !ok || now.Sub(last) >= touchEvery || now.Before(last)
	if due {
		if c.touched == nil {
			c.touched = make(map[string]time.Time)
		}
		c.touched[name] = now
	}
	c.mu.Unlock()
	if !due {
		return
	}
	if err := s.Service.Store.TouchAPIToken(ctx, name, now); err != nil {
		s.logger().Warn("record API token use", "token", name, "err", err)
	}
}
