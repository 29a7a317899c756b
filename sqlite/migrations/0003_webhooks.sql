-- paynotify schema, version 3 (SQLite): outgoing webhooks (docs/webhooks.md).
-- The event log is the outbox: deliveries are made from it by each endpoint's cursor.

-- events by time: RecoverWebhooks finds the events committed since a moment.
CREATE INDEX events_timestamp ON events (timestamp);

CREATE TABLE webhook_endpoints (
	id               TEXT    PRIMARY KEY,
	kind             TEXT    NOT NULL CHECK (kind IN ('http', 'nats')),
	url              TEXT    NOT NULL,
	events           TEXT    NOT NULL CHECK (json_valid(events)),  -- JSON array of types, [] = all
	apps             TEXT    NOT NULL CHECK (json_valid(apps)),    -- JSON array of apps, [] = all
	description      TEXT    NOT NULL DEFAULT '',
	status           TEXT    NOT NULL CHECK (status IN ('enabled', 'disabled')),
	disabled_reason  TEXT    NOT NULL DEFAULT '',
	secret           TEXT    NOT NULL,
	old_secret       TEXT    NOT NULL DEFAULT '',
	old_secret_until TEXT,
	cursor           INTEGER NOT NULL,   -- seq of the last event considered
	failing_since    TEXT,
	created_at       TEXT    NOT NULL,
	updated_at       TEXT    NOT NULL
);

-- One row per event and endpoint (a resend or recover resets it). seq is the creation order that
-- keeps the events of one order in order; payload is set only for events outside the log
-- (webhook.test), the others are read from events.
CREATE TABLE webhook_deliveries (
	seq             INTEGER PRIMARY KEY AUTOINCREMENT,
	id              TEXT    NOT NULL UNIQUE,
	endpoint_id     TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	event_id        TEXT    NOT NULL,
	event_type      TEXT    NOT NULL,
	event_seq       INTEGER NOT NULL,
	app             TEXT    NOT NULL,
	out_trade_no    TEXT    NOT NULL,
	payload         TEXT,
	status          TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
	attempts        INTEGER NOT NULL DEFAULT 0,
	next_attempt_at TEXT,
	claim_token     TEXT    NOT NULL DEFAULT '',
	last_error      TEXT    NOT NULL DEFAULT '',
	created_at      TEXT    NOT NULL,
	updated_at      TEXT    NOT NULL,
	delivered_at    TEXT,
	UNIQUE (endpoint_id, event_id)
);
-- Claims: the due pending deliveries of an endpoint, and the earlier pending ones of an order.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, app, out_trade_no, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_updated_at ON webhook_deliveries (updated_at) WHERE status <> 'pending';
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint_id, created_at) WHERE status = 'failed';

CREATE TABLE webhook_attempts (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	id           TEXT    NOT NULL UNIQUE,
	delivery_id  TEXT    NOT NULL,
	endpoint_id  TEXT    NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	event_id     TEXT    NOT NULL,
	event_type   TEXT    NOT NULL,
	at           TEXT    NOT NULL,
	status       INTEGER NOT NULL DEFAULT 0,
	duration_ms  INTEGER NOT NULL DEFAULT 0,
	response     BLOB,
	error        TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, seq);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, seq);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);
