-- paynotify schema, version 4 (SQLite): named API tokens (docs/api.md, "Authentication").
-- A token is kept as the SHA-256 of its value, never the value; a revoked token keeps its row
-- (and its name, which is never reused).
CREATE TABLE api_tokens (
	name         TEXT PRIMARY KEY,
	scope        TEXT NOT NULL CHECK (scope IN ('read', 'write')),
	hash         BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
	created_at   TEXT NOT NULL,
	revoked_at   TEXT,
	last_used_at TEXT
);
