-- paynotify schema, version 8 (PostgreSQL): byte-identical duplicates counted on one evidence
-- record (docs/storage.md, "Repeated duplicates").

ALTER TABLE evidence ADD COLUMN repeats bigint NOT NULL DEFAULT 0;
ALTER TABLE evidence ADD COLUMN last_received_at timestamptz;
