-- paynotify schema, version 1 (PostgreSQL).
-- Times are timestamptz (microseconds). Money is bigint fen. Event data is json, which keeps
-- the exact text it was given; pay parameters and evidence bodies are bytea, kept byte for byte.

CREATE TABLE orders (
	seq               bigint      GENERATED ALWAYS AS IDENTITY UNIQUE, -- insertion order, breaks created_at ties
	app               text        NOT NULL,
	out_trade_no      text        NOT NULL,
	channel           text        NOT NULL,
	status            text        NOT NULL,
	amount            bigint      NOT NULL,
	refunded_amount   bigint      NOT NULL DEFAULT 0,
	currency          text        NOT NULL,
	subject           text        NOT NULL,
	body              text        NOT NULL DEFAULT '',
	payer_openid      text        NOT NULL DEFAULT '',
	provider_trade_no text        NOT NULL DEFAULT '',
	version           bigint      NOT NULL,
	created_at        timestamptz NOT NULL,
	paid_at           timestamptz,
	expires_at        timestamptz NOT NULL,
	pay               bytea,
	PRIMARY KEY (app, out_trade_no)
);
CREATE INDEX orders_created_at ON orders (created_at, seq);
CREATE INDEX orders_app_created_at ON orders (app, created_at, seq);
CREATE INDEX orders_status_created_at ON orders (status, created_at, seq);

CREATE TABLE refunds (
	seq                bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
	app                text        NOT NULL,
	out_trade_no       text        NOT NULL,
	out_request_no     text        NOT NULL,
	amount             bigint      NOT NULL,
	reason             text        NOT NULL DEFAULT '',
	status             text        NOT NULL,
	provider_refund_no text        NOT NULL DEFAULT '',
	created_at         timestamptz NOT NULL,
	updated_at         timestamptz NOT NULL,
	PRIMARY KEY (app, out_trade_no, out_request_no),
	FOREIGN KEY (app, out_trade_no) REFERENCES orders (app, out_trade_no)
);

-- seq is the event log cursor. Commits that append events take a transaction advisory lock
-- first, so that seq order is commit order and a reader never sees seq N+1 before N.
CREATE TABLE events (
	seq          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id           text        NOT NULL UNIQUE,
	type         text        NOT NULL,
	app          text        NOT NULL,
	out_trade_no text        NOT NULL,
	version      bigint      NOT NULL,
	timestamp    timestamptz NOT NULL,
	data         json
);
CREATE INDEX events_app_seq ON events (app, seq);

-- One row per distinct anomaly: its order.anomaly event is raised only when the row is new.
-- No foreign key: an anomaly may be about an order we do not have.
CREATE TABLE anomalies (
	app          text        NOT NULL,
	out_trade_no text        NOT NULL,
	key          text        NOT NULL,
	reason       text        NOT NULL,
	event_id     text        NOT NULL DEFAULT '',
	created_at   timestamptz NOT NULL,
	PRIMARY KEY (app, out_trade_no, key)
);

CREATE TABLE evidence (
	seq           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id            text        NOT NULL UNIQUE,
	app           text        NOT NULL,
	provider      text        NOT NULL,
	received_at   timestamptz NOT NULL,
	verdict       text        NOT NULL,
	reason        text        NOT NULL DEFAULT '',
	detail        text        NOT NULL DEFAULT '',
	out_trade_no  text        NOT NULL DEFAULT '',
	order_version bigint      NOT NULL DEFAULT 0,
	answer        text        NOT NULL DEFAULT '',
	duration_ms   bigint      NOT NULL DEFAULT 0,
	headers       jsonb,
	body          bytea
);
CREATE INDEX evidence_received_at ON evidence (received_at, seq);
CREATE INDEX evidence_app_received_at ON evidence (app, received_at, seq);
CREATE INDEX evidence_out_trade_no_received_at ON evidence (out_trade_no, received_at, seq);
CREATE INDEX evidence_verdict_received_at ON evidence (verdict, received_at, seq);
