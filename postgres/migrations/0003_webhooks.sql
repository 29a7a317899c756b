-- paynotify schema, version 3 (PostgreSQL): outgoing webhooks (docs/webhooks.md).
-- The event log is the outbox: deliveries are made from it by each endpoint's cursor, which never
-- passes an event committed later with a smaller seq (the event log's advisory lock, version 1).

-- events by time: RecoverWebhooks finds the events committed since a moment.
CREATE INDEX events_timestamp ON events (timestamp);

-- events and apps are JSON arrays of strings, [] meaning all. seq breaks created_at ties.
CREATE TABLE webhook_endpoints (
	seq              bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
	id               text        PRIMARY KEY,
	kind             text        NOT NULL CHECK (kind IN ('http', 'nats')),
	url              text        NOT NULL,
	events           jsonb       NOT NULL CHECK (jsonb_typeof(events) = 'array'),
	apps             jsonb       NOT NULL CHECK (jsonb_typeof(apps) = 'array'),
	description      text        NOT NULL DEFAULT '',
	status           text        NOT NULL CHECK (status IN ('enabled', 'disabled')),
	disabled_reason  text        NOT NULL DEFAULT '',
	secret           text        NOT NULL,
	old_secret       text        NOT NULL DEFAULT '',
	old_secret_until timestamptz,
	cursor           bigint      NOT NULL, -- seq of the last event considered
	failing_since    timestamptz,
	created_at       timestamptz NOT NULL,
	updated_at       timestamptz NOT NULL
);

-- One row per event and endpoint (a resend or recover resets it). seq is the creation order that
-- keeps the events of one order in order; payload is set only for events outside the log
-- (webhook.test), the others are read from events.
CREATE TABLE webhook_deliveries (
	seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id              text        NOT NULL UNIQUE,
	endpoint_id     text        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	event_id        text        NOT NULL,
	event_type      text        NOT NULL,
	event_seq       bigint      NOT NULL,
	app             text        NOT NULL,
	out_trade_no    text        NOT NULL,
	payload         bytea,
	status          text        NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
	attempts        integer     NOT NULL DEFAULT 0,
	next_attempt_at timestamptz,
	claim_token     text        NOT NULL DEFAULT '',
	last_error      text        NOT NULL DEFAULT '',
	created_at      timestamptz NOT NULL,
	updated_at      timestamptz NOT NULL,
	delivered_at    timestamptz,
	UNIQUE (endpoint_id, event_id)
);
-- Claims: the due pending deliveries of an endpoint, and the earlier pending ones of an order.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, app, out_trade_no, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id, seq);
CREATE INDEX webhook_deliveries_updated_at ON webhook_deliveries (updated_at) WHERE status <> 'pending';
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint_id, created_at) WHERE status = 'failed';

CREATE TABLE webhook_attempts (
	seq          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id           text        NOT NULL UNIQUE,
	delivery_id  text        NOT NULL,
	endpoint_id  text        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
	event_id     text        NOT NULL,
	event_type   text        NOT NULL,
	at           timestamptz NOT NULL,
	status       integer     NOT NULL DEFAULT 0,
	duration_ms  bigint      NOT NULL DEFAULT 0,
	response     bytea,
	error        text        NOT NULL DEFAULT ''
);
-- ListWebhookAttempts, newest (at) first, by endpoint, by event, or both.
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, at, seq);
CREATE INDEX webhook_attempts_event ON webhook_attempts (event_id, at, seq);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at, seq);
