package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/paynotify/paynotify"
)

var _ paynotify.APITokenStore = (*DB)(nil)

// This file keeps the named API tokens (migrations/0004_api_tokens.sql), by the SHA-256 of their
// values. FindAPIToken is on the request path of every API call made with a stored token (behind
// the server's cache): it reads from the read pool through the unique index on hash.

// scanAPIToken reads name, scope, created_at, revoked_at, last_used_at.
func scanAPIToken(s scanner) (*paynotify.APIToken, error) {
	var (
		t                 paynotify.APIToken
		created           string
		revoked, lastUsed sql.NullString
		err               error
	)
	if err := s.Scan(&t.Name, &t.Scope, &created, &revoked, &lastUsed); err != nil {
		return nil, err
	}
	if t.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if t.RevokedAt, err = parseTimeNull(revoked); err != nil {
		return nil, err
	}
	if t.LastUsedAt, err = parseTimeNull(lastUsed); err != nil {
		return nil, err
	}
	return &t, nil
}

const apiTokenColumns = `name, scope, created_at, revoked_at, last_used_at`

// CreateAPIToken inserts t; a token named t.Name (revoked or not) is ECONFLICT. A zero
// CreatedAt is stamped with db.Now.
func (db *DB) CreateAPIToken(ctx context.Context, t *paynotify.APIToken) error {
	if t.CreatedAt.IsZero() {
		t.CreatedAt = db.now()
	}
	res, err := db.db.ExecContext(ctx, `INSERT INTO api_tokens (name, scope, hash, created_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO NOTHING`, t.Name, t.Scope, t.Hash, formatTime(t.CreatedAt))
	if err != nil {
		return fmt.Errorf("sqlite: create API token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: create API token: %w", err)
	} else if n == 0 {
		return paynotify.Errorf(paynotify.ECONFLICT, "An API token named %s exists (revoked tokens keep their names).", t.Name)
	}
	return nil
}

// ListAPITokens returns every token, oldest first, without Hash.
func (db *DB) ListAPITokens(ctx context.Context) ([]*paynotify.APIToken, error) {
	rows, err := db.rd.QueryContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens ORDER BY created_at, rowid`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list API tokens: %w", err)
	}
	defer rows.Close()
	out := []*paynotify.APIToken{}
	for rows.Next() {
		t, err := scanAPIToken(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list API tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list API tokens: %w", err)
	}
	return out, nil
}

// FindAPIToken returns the unrevoked token whose hash is hash, with its Hash; ENOTFOUND otherwise.
func (db *DB) FindAPIToken(ctx context.Context, hash []byte) (*paynotify.APIToken, error) {
	t, err := scanAPIToken(db.rd.QueryRowContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens
		WHERE hash = ? AND revoked_at IS NULL`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("API token not found.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: find API token: %w", err)
	}
	t.Hash = hash
	return t, nil
}

// RevokeAPIToken revokes the token named name at at (a revoked one keeps its first RevokedAt);
// ENOTFOUND when there is none.
func (db *DB) RevokeAPIToken(ctx context.Context, name string, at time.Time) error {
	res, err := db.db.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?`,
		formatTime(at), name)
	if err != nil {
		return fmt.Errorf("sqlite: revoke API token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: revoke API token: %w", err)
	} else if n == 0 {
		return notFound("No API token named %s.", name)
	}
	return nil
}

// TouchAPIToken moves the LastUsedAt of the token named name forward to at.
func (db *DB) TouchAPIToken(ctx context.Context, name string, at time.Time) error {
	v := formatTime(at)
	if _, err := db.db.ExecContext(ctx, `UPDATE api_tokens SET last_used_at = ?
		WHERE name = ? AND (last_used_at IS NULL OR last_used_at < ?)`, v, name, v); err != nil {
		return fmt.Errorf("sqlite: touch API token: %w", err)
	}
	return nil
}
