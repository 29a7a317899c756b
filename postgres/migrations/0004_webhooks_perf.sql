-- paynotify schema, version 4 (PostgreSQL): autovacuum of webhook_deliveries.
-- Every delivery is inserted by a fan-out, then updated by its claim and by its result: a backlog
-- of fresh rows is the table's usual state. With the default scale factors (analyse after 10 %,
-- vacuum after 20 % of the table changed) a large table goes long unanalysed and bloated; these
-- analyse it after 2 % and vacuum it after 5 %. (The claim's order check is written so that its
-- plan does not depend on the statistics; the others still do.) SQLite has no counterpart.
ALTER TABLE webhook_deliveries SET (autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_scale_factor = 0.05);
