-- paynotify schema, version 11 (PostgreSQL): the old schedule index of orders, replaced by 0009's
-- (see 0009 for why one a migration).
DROP INDEX IF EXISTS orders_next_check_at;
