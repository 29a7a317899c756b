-- paynotify schema, version 8 (SQLite): byte-identical duplicates counted on one evidence record
-- (docs/storage.md, "Repeated duplicates").

ALTER TABLE evidence ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
ALTER TABLE evidence ADD COLUMN last_received_at TEXT;
