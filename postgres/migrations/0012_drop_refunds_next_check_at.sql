-- paynotify schema, version 12 (PostgreSQL): the old schedule index of refunds, replaced by 0010's
-- (see 0009 for why one a migration).
DROP INDEX IF EXISTS refunds_next_check_at;
