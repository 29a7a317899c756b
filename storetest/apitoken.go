package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
)

// This file tests the API tokens of the stores (paynotify.APITokenStore).
//
// What it pins down beyond the interface doc comments:
//   - times are kept to the microsecond and read back in UTC, as elsewhere;
//   - ListAPITokens on an empty store is an empty, non-nil slice;
//   - FindAPIToken returns the token with its Hash, LastUsedAt included;
//   - a token made on one store is found, and once revoked refused, by another store on the same
//     database (another process) at once: stores keep no cache of their own.

// apiTokenHash is a distinct 32-byte hash per seed, standing for HashAPIToken of a token.
func apiTokenHash(seed byte) []byte { return bytes.Repeat([]byte{seed}, 32) }

// mustCreateAPIToken creates a token named name with scope, hash apiTokenHash(seed), created at.
func mustCreateAPIToken(tb testing.TB, b *bundle, name, scope string, seed byte, at time.Time) *paynotify.APIToken {
	tb.Helper()
	tok := &paynotify.APIToken{Name: name, Scope: scope, Hash: apiTokenHash(seed), CreatedAt: at}
	if err := b.store.CreateAPIToken(b.ctx, tok); err != nil {
		tb.Fatalf("CreateAPIToken(%s): %v", name, err)
	}
	return tok
}

func mustListAPITokens(tb testing.TB, b *bundle) []*paynotify.APIToken {
	tb.Helper()
	toks, err := b.store.ListAPITokens(b.ctx)
	if err != nil {
		tb.Fatalf("ListAPITokens: %v", err)
	}
	return toks
}

// timePtrEqual compares two nullable times.
func timePtrEqual(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b) && a.Location() == time.UTC && b.Location() == time.UTC
}

func (s *suite) testAPITokens(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		_, b := s.setup(t)
		if toks := mustListAPITokens(t, b); toks == nil || len(toks) != 0 {
			t.Fatalf("ListAPITokens on an empty store = %#v, want an empty, non-nil slice", toks)
		}
		// Created out of name order, and the later one first in time: the listing is by time.
		mustCreateAPIToken(t, b, "b-reporting", paynotify.ScopeRead, 1, T0.Add(time.Second+789))
		mustCreateAPIToken(t, b, "a-shop", paynotify.ScopeWrite, 2, T0.Add(789))

		toks := mustListAPITokens(t, b)
		if len(toks) != 2 {
			t.Fatalf("ListAPITokens: %d tokens, want 2", len(toks))
		}
		want := []struct {
			name, scope string
			created     time.Time
		}{
			{"a-shop", paynotify.ScopeWrite, T0.UTC().Truncate(time.Microsecond)},
			{"b-reporting", paynotify.ScopeRead, T0.Add(time.Second).UTC().Truncate(time.Microsecond)},
		}
		for i, w := range want {
			got := toks[i]
			if got.Name != w.name || got.Scope != w.scope || !got.CreatedAt.Equal(w.created) || got.CreatedAt.Location() != time.UTC {
				t.Errorf("token %d = %s %s %v, want %s %s %v (UTC)", i, got.Name, got.Scope, got.CreatedAt, w.name, w.scope, w.created)
			}
			if got.Hash != nil {
				t.Errorf("token %s: ListAPITokens returned its Hash %x, want nil", got.Name, got.Hash)
			}
			if got.RevokedAt != nil || got.LastUsedAt != nil {
				t.Errorf("token %s: RevokedAt %v, LastUsedAt %v, want nil", got.Name, got.RevokedAt, got.LastUsedAt)
			}
		}

		got, err := b.store.FindAPIToken(b.ctx, apiTokenHash(1))
		if err != nil {
			t.Fatalf("FindAPIToken: %v", err)
		}
		if got.Name != "b-reporting" || got.Scope != paynotify.ScopeRead || !bytes.Equal(got.Hash, apiTokenHash(1)) ||
			!got.CreatedAt.Equal(want[1].created) {
			t.Errorf("FindAPIToken = %+v, want b-reporting, read, its hash, created %v", got, want[1].created)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		_, b := s.setup(t)
		mustCreateAPIToken(t, b, "shop", paynotify.ScopeWrite, 1, T0)
		for _, h := range [][]byte{apiTokenHash(2), apiTokenHash(1)[:31], nil} {
			if got, err := b.store.FindAPIToken(b.ctx, h); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
				t.Errorf("FindAPIToken(%x) = %+v, %v; want ENOTFOUND", h, got, err)
			}
		}
	})

	t.Run("ErrDuplicate", func(t *testing.T) {
		_, b := s.setup(t)
		mustCreateAPIToken(t, b, "shop", paynotify.ScopeRead, 1, T0)
		err := b.store.CreateAPIToken(b.ctx, &paynotify.APIToken{Name: "shop", Scope: paynotify.ScopeWrite, Hash: apiTokenHash(2), CreatedAt: T0.Add(time.Minute)})
		if paynotify.ErrorCode(err) != paynotify.ECONFLICT {
			t.Fatalf("second CreateAPIToken(shop): err = %v (code %q), want %q", err, paynotify.ErrorCode(err), paynotify.ECONFLICT)
		}
		// The first one is unchanged, and the refused one's hash opens nothing.
		if got, err := b.store.FindAPIToken(b.ctx, apiTokenHash(1)); err != nil || got.Scope != paynotify.ScopeRead {
			t.Errorf("FindAPIToken(first) = %+v, %v; want shop, read", got, err)
		}
		if _, err := b.store.FindAPIToken(b.ctx, apiTokenHash(2)); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
			t.Errorf("FindAPIToken(refused) err = %v, want ENOTFOUND", err)
		}
		if toks := mustListAPITokens(t, b); len(toks) != 1 {
			t.Errorf("ListAPITokens: %d tokens, want 1", len(toks))
		}

		// A revoked token keeps its name.
		if err := b.store.RevokeAPIToken(b.ctx, "shop", T0.Add(time.Hour)); err != nil {
			t.Fatalf("RevokeAPIToken: %v", err)
		}
		err = b.store.CreateAPIToken(b.ctx, &paynotify.APIToken{Name: "shop", Scope: paynotify.ScopeRead, Hash: apiTokenHash(3), CreatedAt: T0.Add(2 * time.Hour)})
		if paynotify.ErrorCode(err) != paynotify.ECONFLICT {
			t.Errorf("CreateAPIToken(shop) after its revocation: err = %v, want %q", err, paynotify.ECONFLICT)
		}
	})

	t.Run("Revoke", func(t *testing.T) {
		st, b := s.setup(t)
		other := st.OpenAnother(t)
		mustCreateAPIToken(t, b, "shop", paynotify.ScopeWrite, 1, T0)
		mustCreateAPIToken(t, b, "reporting", paynotify.ScopeRead, 2, T0)
		if _, err := other.FindAPIToken(b.ctx, apiTokenHash(1)); err != nil {
			t.Fatalf("FindAPIToken on another store before the revocation: %v", err)
		}

		revoked := T0.Add(time.Hour + 789)
		if err := b.store.RevokeAPIToken(b.ctx, "shop", revoked); err != nil {
			t.Fatalf("RevokeAPIToken: %v", err)
		}
		for i, s := range []paynotify.Store{b.store, other} {
			if got, err := s.FindAPIToken(b.ctx, apiTokenHash(1)); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
				t.Errorf("store %d: FindAPIToken(revoked) = %+v, %v; want ENOTFOUND", i, got, err)
			}
			if _, err := s.FindAPIToken(b.ctx, apiTokenHash(2)); err != nil {
				t.Errorf("store %d: FindAPIToken(the other token): %v", i, err)
			}
		}

		// Revoking again keeps the first time.
		if err := b.store.RevokeAPIToken(b.ctx, "shop", revoked.Add(time.Hour)); err != nil {
			t.Fatalf("second RevokeAPIToken: %v", err)
		}
		want := revoked.UTC().Truncate(time.Microsecond)
		toks := mustListAPITokens(t, b)
		for _, tok := range toks {
			switch tok.Name {
			case "shop":
				if !timePtrEqual(tok.RevokedAt, &want) {
					t.Errorf("shop: RevokedAt = %v, want %v (UTC)", tok.RevokedAt, want)
				}
			case "reporting":
				if tok.RevokedAt != nil {
					t.Errorf("reporting: RevokedAt = %v, want nil", tok.RevokedAt)
				}
			}
		}
		if len(toks) != 2 {
			t.Errorf("ListAPITokens: %d tokens, want 2 (revoked ones are listed)", len(toks))
		}

		if err := b.store.RevokeAPIToken(b.ctx, "nobody", T0); paynotify.ErrorCode(err) != paynotify.ENOTFOUND {
			t.Errorf("RevokeAPIToken(nobody): err = %v, want ENOTFOUND", err)
		}
	})

	t.Run("Touch", func(t *testing.T) {
		_, b := s.setup(t)
		mustCreateAPIToken(t, b, "shop", paynotify.ScopeWrite, 1, T0)
		mustCreateAPIToken(t, b, "other", paynotify.ScopeRead, 2, T0)
		used := T0.Add(time.Minute + 789)
		if err := b.store.TouchAPIToken(b.ctx, "shop", used); err != nil {
			t.Fatalf("TouchAPIToken: %v", err)
		}
		// An earlier use does not move it back; an unknown name is not an error.
		if err := b.store.TouchAPIToken(b.ctx, "shop", T0.Add(time.Second)); err != nil {
			t.Fatalf("TouchAPIToken (earlier): %v", err)
		}
		if err := b.store.TouchAPIToken(b.ctx, "nobody", used); err != nil {
			t.Errorf("TouchAPIToken(nobody): %v, want nil", err)
		}
		want := used.UTC().Truncate(time.Microsecond)
		got, err := b.store.FindAPIToken(b.ctx, apiTokenHash(1))
		if err != nil {
			t.Fatalf("FindAPIToken: %v", err)
		}
		if !timePtrEqual(got.LastUsedAt, &want) {
			t.Errorf("FindAPIToken: LastUsedAt = %v, want %v (UTC)", got.LastUsedAt, want)
		}
		for _, tok := range mustListAPITokens(t, b) {
			w := &want
			if tok.Name == "other" {
				w = nil
			}
			if !timePtrEqual(tok.LastUsedAt, w) {
				t.Errorf("%s: LastUsedAt = %v, want %v", tok.Name, tok.LastUsedAt, w)
			}
		}
		later := want.Add(time.Hour)
		if err := b.store.TouchAPIToken(b.ctx, "shop", later); err != nil {
			t.Fatalf("TouchAPIToken (later): %v", err)
		}
		if got, err := b.store.FindAPIToken(b.ctx, apiTokenHash(1)); err != nil || !timePtrEqual(got.LastUsedAt, &later) {
			t.Errorf("after a later use: LastUsedAt = %v (err %v), want %v", got.LastUsedAt, err, later)
		}
	})
}
