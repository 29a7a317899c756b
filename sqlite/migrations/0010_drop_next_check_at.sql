-- paynotify schema, version 10 (SQLite): the reconciliation's old schedule indexes, replaced by
-- 0009's (app, next_check_at). IF EXISTS: a database that applied an earlier 0009, which dropped
-- them itself.
DROP INDEX IF EXISTS orders_next_check_at;
DROP INDEX IF EXISTS refunds_next_check_at;
