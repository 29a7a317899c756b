package paynotify_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/paynotify/paynotify"
)

// counting32 is the 32 bytes 0x00…0x1f. The expected token and hash below were computed outside
// Go: python3 base64.urlsafe_b64encode (padding stripped) and coreutils sha256sum.
var counting32 = func() []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}()

const (
	countingToken     = "pn_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
	countingTokenHash = "5a21a5552926156516c6d17f50fe4e7601714938404725c32c073c14c5baf8a1"
)

func TestNewAPIToken(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		got, err := paynotify.NewAPIToken(bytes.NewReader(counting32))
		if err != nil || got != countingToken {
			t.Fatalf("NewAPIToken = %q, %v; want %q", got, err, countingToken)
		}
		if h := hex.EncodeToString(paynotify.HashAPIToken(got)); h != countingTokenHash {
			t.Errorf("HashAPIToken = %s, want %s", h, countingTokenHash)
		}
		a, _ := paynotify.NewAPIToken(rand.Reader)
		b, _ := paynotify.NewAPIToken(rand.Reader)
		if a == b || !paynotify.IsAPITokenShape(a) {
			t.Errorf("two random tokens: %q, %q", a, b)
		}
	})
	t.Run("ErrRandom", func(t *testing.T) {
		if got, err := paynotify.NewAPIToken(bytes.NewReader(counting32[:31])); err == nil {
			t.Errorf("NewAPIToken from 31 bytes = %q, want an error", got)
		}
		if _, err := paynotify.NewAPIToken(iotest.ErrReader(errors.New("no entropy"))); err == nil {
			t.Error("NewAPIToken from a failing reader: no error")
		}
	})
}

func TestIsAPITokenShape(t *testing.T) {
	for _, c := range []struct {
		s    string
		want bool
	}{
		{countingToken, true},
		{"pn_" + strings.Repeat("-", 43), true},
		{"pn_" + strings.Repeat("_", 43), true},
		{"pn_" + strings.Repeat("z", 43), true},
		{"pn_" + strings.Repeat("9", 43), true},
		{"", false},
		{"pn_", false},
		{countingToken[:len(countingToken)-1], false},
		{countingToken + "A", false},
		{"PN_" + countingToken[3:], false},
		{"px_" + countingToken[3:], false},
		{"pn_" + strings.Repeat("+", 43), false}, // standard base64, not URL
		{"pn_" + strings.Repeat("/", 43), false},
		{"pn_" + strings.Repeat("=", 43), false},
		{"pn_" + strings.Repeat("a", 42) + " ", false},
		{"pn_" + strings.Repeat("é", 21) + "a", false}, // 42 bytes of UTF-8 + 1
		{"test-token-0123456789", false},
	} {
		if got := paynotify.IsAPITokenShape(c.s); got != c.want {
			t.Errorf("IsAPITokenShape(%q) = %v, want %v", c.s, got, c.want)
		}
	}
}

// memTokens is an APITokenStore in memory, for IssueAPIToken's validation.
type memTokens struct {
	created []*paynotify.APIToken
	err     error
}

func (m *memTokens) CreateAPIToken(_ context.Context, t *paynotify.APIToken) error {
	if m.err != nil {
		return m.err
	}
	m.created = append(m.created, t)
	return nil
}
func (m *memTokens) ListAPITokens(context.Context) ([]*paynotify.APIToken, error) { return nil, nil }
func (m *memTokens) FindAPIToken(context.Context, []byte) (*paynotify.APIToken, error) {
	return nil, paynotify.Errorf(paynotify.ENOTFOUND, "no")
}
func (m *memTokens) RevokeAPIToken(context.Context, string, time.Time) error { return nil }
func (m *memTokens) TouchAPIToken(context.Context, string, time.Time) error  { return nil }

func TestIssueAPIToken(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	t.Run("OK", func(t *testing.T) {
		st := &memTokens{}
		tok, err := paynotify.IssueAPIToken(t.Context(), st, bytes.NewReader(counting32), "shop.backend_2-a", paynotify.ScopeRead, now)
		if err != nil || tok != countingToken {
			t.Fatalf("IssueAPIToken = %q, %v; want %q", tok, err, countingToken)
		}
		if len(st.created) != 1 {
			t.Fatalf("stored %d tokens, want 1", len(st.created))
		}
		got := st.created[0]
		if got.Name != "shop.backend_2-a" || got.Scope != paynotify.ScopeRead || !got.CreatedAt.Equal(now) ||
			hex.EncodeToString(got.Hash) != countingTokenHash {
			t.Errorf("stored %+v, want the name, the scope, now and the token's SHA-256", got)
		}
		if bytes.Contains(got.Hash, []byte(tok)) || got.RevokedAt != nil || got.LastUsedAt != nil {
			t.Errorf("stored %+v", got)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for _, c := range []struct{ name, scope string }{
			{"", paynotify.ScopeRead},
			{"a b", paynotify.ScopeRead},
			{"名前", paynotify.ScopeRead},
			{"a/b", paynotify.ScopeRead},
			{strings.Repeat("a", 65), paynotify.ScopeRead},
			{"ok", ""},
			{"ok", "admin"},
			{"ok", "READ"},
			{"api_token", paynotify.ScopeRead}, // the config's token's name
		} {
			st := &memTokens{}
			_, err := paynotify.IssueAPIToken(t.Context(), st, rand.Reader, c.name, c.scope, now)
			if paynotify.ErrorCode(err) != paynotify.EINVALID || len(st.created) != 0 {
				t.Errorf("IssueAPIToken(%q, %q): err %v, stored %d; want EINVALID, nothing stored", c.name, c.scope, err, len(st.created))
			}
		}
		if _, err := paynotify.IssueAPIToken(t.Context(), &memTokens{}, rand.Reader, strings.Repeat("a", 64), paynotify.ScopeWrite, now); err != nil {
			t.Errorf("a 64-character name: %v", err)
		}
	})
	t.Run("ErrConflict", func(t *testing.T) {
		st := &memTokens{err: paynotify.Errorf(paynotify.ECONFLICT, "exists")}
		tok, err := paynotify.IssueAPIToken(t.Context(), st, rand.Reader, "shop", paynotify.ScopeWrite, now)
		if paynotify.ErrorCode(err) != paynotify.ECONFLICT || tok != "" {
			t.Errorf("IssueAPIToken = %q, %v; want no token and ECONFLICT", tok, err)
		}
	})
}
