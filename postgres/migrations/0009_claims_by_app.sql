-- paynotify schema, version 9 (PostgreSQL): the reconciliation's schedule indexed by app first,
-- so that a claim of some apps' due checks seeks each app's earliest instead of walking past the
-- due rows of apps it does not claim (an app dropped from the config, one backing off)
-- (docs/storage.md, "Reconciliation claims"). The same number of index writes per order as before.

-- The new indexes first, then the old ones dropped: on PostgreSQL DROP INDEX locks its table
-- against reads too until the migration commits, so it comes last, after the long part.
CREATE INDEX orders_app_next_check_at ON orders (app, next_check_at, seq) WHERE next_check_at IS NOT NULL;
CREATE INDEX refunds_app_next_check_at ON refunds (app, next_check_at, seq) WHERE next_check_at IS NOT NULL;
DROP INDEX orders_next_check_at;
DROP INDEX refunds_next_check_at;
