-- paynotify schema, version 9 (SQLite): the reconciliation's schedule indexed by app first, so
-- that a claim of some apps' due checks seeks each app's earliest instead of walking past the due
-- rows of apps it does not claim (an app dropped from the config, one backing off)
-- (docs/storage.md, "Reconciliation claims"). The same number of index writes per order as before,
-- once 0010 has dropped the old indexes. (SQLite has one writer: these statements cannot
-- deadlock with other writes as PostgreSQL's did in one transaction; its readers read on.)
-- IF NOT EXISTS: a database that applied an earlier 0009, which also dropped the old ones.
CREATE INDEX IF NOT EXISTS orders_app_next_check_at ON orders (app, next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS refunds_app_next_check_at ON refunds (app, next_check_at) WHERE next_check_at IS NOT NULL;
