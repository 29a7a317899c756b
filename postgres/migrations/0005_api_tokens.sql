-- paynotify schema, version 5 (PostgreSQL): named API tokens (docs/api.md, "Authentication").
-- A token is kept as the SHA-256 of its value, never the value; a revoked token keeps its row
-- (and its name, which is never reused). seq breaks created_at ties in listings.
CREATE TABLE api_tokens (
	seq          bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
	name         text        PRIMARY KEY,
	scope        text        NOT NULL CHECK (scope IN ('read', 'write')),
	hash         bytea       NOT NULL UNIQUE CHECK (length(hash) = 32),
	created_at   timestamptz NOT NULL,
	revoked_at   timestamptz,
	last_used_at timestamptz
);
