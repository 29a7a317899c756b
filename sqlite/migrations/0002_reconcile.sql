-- paynotify schema, version 2 (SQLite): the reconciliation's schedule and richer evidence.
-- Every new column has a default, so that existing rows, and rows inserted by tools that name only
-- the version 1 columns, get it: next_check_at NULL means never checked automatically.

-- orders: when the reconciliation next looks at a pending order (same text format as the other
-- times), how many queries it has had, and the token of the claim that holds it ('' when none).
ALTER TABLE orders ADD COLUMN next_check_at TEXT;
ALTER TABLE orders ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN check_token TEXT NOT NULL DEFAULT '';
CREATE INDEX orders_next_check_at ON orders (next_check_at) WHERE next_check_at IS NOT NULL;

-- refunds: the same schedule, and needs_attention (0/1) once a pending refund's checks ran out.
ALTER TABLE refunds ADD COLUMN next_check_at TEXT;
ALTER TABLE refunds ADD COLUMN checks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE refunds ADD COLUMN check_token TEXT NOT NULL DEFAULT '';
ALTER TABLE refunds ADD COLUMN needs_attention INTEGER NOT NULL DEFAULT 0 CHECK (needs_attention IN (0, 1));
CREATE INDEX refunds_next_check_at ON refunds (next_check_at) WHERE next_check_at IS NOT NULL;
-- ListPendingRefunds: the few pending refunds, without reading the settled ones.
CREATE INDEX refunds_pending_created_at ON refunds (created_at) WHERE status = 'pending';

-- evidence: what the record is of (notification, query, reprocess), the endpoint or provider API,
-- and the record a reprocess read its bytes from.
ALTER TABLE evidence ADD COLUMN source TEXT NOT NULL DEFAULT 'notification';
ALTER TABLE evidence ADD COLUMN endpoint TEXT NOT NULL DEFAULT '';
ALTER TABLE evidence ADD COLUMN reprocessed_from TEXT NOT NULL DEFAULT '';
-- ListEvidence by reason, newest first: a rare reason would otherwise be searched for through the
-- whole table in received_at order.
CREATE INDEX evidence_reason_received_at ON evidence (reason, received_at);
