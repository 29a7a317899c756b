package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/paynotify/paynotify"
)

var _ paynotify.APITokenStore = (*DB)(nil)

// This file keeps the named API tokens (migrations/0005_api_tokens.sql), by the SHA-256 of their
// values. FindAPIToken is on the request path of every API call made with a stored token (behind
// the server's cache): one read through the unique index on hash.

const apiTokenColumns = `name, scope, created_at, revoked_at, last_used_at`

func scanAPIToken(row pgx.Row) (*paynotify.APIToken, error) {
	var (
		t                 paynotify.APIToken
		revoked, lastUsed *time.Time
	)
	if err := row.Scan(&t.Name, &t.Scope, &t.CreatedAt, &revoked, &lastUsed); err != nil {
		return nil, err
	}
	t.CreatedAt, t.RevokedAt, t.LastUsedAt = t.CreatedAt.UTC(), utcPtr(revoked), utcPtr(lastUsed)
	return &t, nil
}

// CreateAPIToken inserts t; a token named t.Name (revoked or not) is ECONFLICT. A zero
// CreatedAt is stamped with db.Now.
func (db *DB) CreateAPIToken(ctx context.Context, t *paynotify.APIToken) error {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = db.now()
	}
	tag, err := db.pool.Exec(ctx, `INSERT INTO api_tokens (name, scope, hash, created_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (name) DO NOTHING`, t.Name, t.Scope, t.Hash, tm(t.CreatedAt))
	if err != nil {
		return fmt.Errorf("postgres: create API token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return paynotify.Errorf(paynotify.ECONFLICT, "An API token named %s exists (revoked tokens keep their names).", t.Name)
	}
	return nil
}

// ListAPITokens returns every token, oldest first, without Hash.
func (db *DB) ListAPITokens(ctx context.Context) ([]*paynotify.APIToken, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens ORDER BY created_at, seq`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list API tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.APIToken, error) { return scanAPIToken(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list API tokens: %w", err)
	}
	if out == nil {
		out = []*paynotify.APIToken{}
	}
	return out, nil
}

// FindAPIToken returns the unrevoked token whose hash is hash, with its Hash; ENOTFOUND otherwise.
func (db *DB) FindAPIToken(ctx context.Context, hash []byte) (*paynotify.APIToken, error) {
	t, err := scanAPIToken(db.pool.QueryRow(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens
		WHERE hash = $1 AND revoked_at IS NULL`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("API token not found.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: find API token: %w", err)
	}
	t.Hash = hash
	return t, nil
}

// RevokeAPIToken revokes the token named name at at (a revoked one keeps its first RevokedAt);
// ENOTFOUND when there is none.
func (db *DB) RevokeAPIToken(ctx context.Context, name string, at time.Time) error {
	tag, err := db.pool.Exec(ctx, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE name = $2`, tm(at), name)
	if err != nil {
		return fmt.Errorf("postgres: revoke API token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("No API token named %s.", name)
	}
	return nil
}

// TouchAPIToken moves the LastUsedAt of the token named name forward to at.
func (db *DB) TouchAPIToken(ctx context.Context, name string, at time.Time) error {
	if _, err := db.pool.Exec(ctx, `UPDATE api_tokens SET last_used_at = $1
		WHERE name = $2 AND (last_used_at IS NULL OR last_used_at < $1)`, tm(at), name); err != nil {
		return fmt.Errorf("postgres: touch API token: %w", err)
	}
	return nil
}
