-- paynotify schema, version 10 (PostgreSQL): 0009's index for refunds (see 0009 for why one a
-- migration).
CREATE INDEX IF NOT EXISTS refunds_app_next_check_at ON refunds (app, next_check_at, seq) WHERE next_check_at IS NOT NULL;
