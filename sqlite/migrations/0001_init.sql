-- paynotify schema, version 1 (SQLite).
-- Times are TEXT in UTC, fixed width "2006-01-02T15:04:05.000000Z", so that they sort as strings.
-- Money is INTEGER fen. JSON is kept as the exact text it was given.

CREATE TABLE orders (
	app               TEXT    NOT NULL,
	out_trade_no      TEXT    NOT NULL,
	channel           TEXT    NOT NULL,
	status            TEXT    NOT NULL,
	amount            INTEGER NOT NULL,
	refunded_amount   INTEGER NOT NULL DEFAULT 0,
	currency          TEXT    NOT NULL,
	subject           TEXT    NOT NULL,
	body              TEXT    NOT NULL DEFAULT '',
	payer_openid      TEXT    NOT NULL DEFAULT '',
	provider_trade_no TEXT    NOT NULL DEFAULT '',
	version           INTEGER NOT NULL,
	created_at        TEXT    NOT NULL,
	paid_at           TEXT,
	expires_at        TEXT    NOT NULL,
	pay               BLOB,
	PRIMARY KEY (app, out_trade_no)
);
CREATE INDEX orders_created_at ON orders (created_at);
CREATE INDEX orders_app_created_at ON orders (app, created_at);
CREATE INDEX orders_status_created_at ON orders (status, created_at);

CREATE TABLE refunds (
	app                TEXT    NOT NULL,
	out_trade_no       TEXT    NOT NULL,
	out_request_no     TEXT    NOT NULL,
	amount             INTEGER NOT NULL,
	reason             TEXT    NOT NULL DEFAULT '',
	status             TEXT    NOT NULL,
	provider_refund_no TEXT    NOT NULL DEFAULT '',
	created_at         TEXT    NOT NULL,
	updated_at         TEXT    NOT NULL,
	PRIMARY KEY (app, out_trade_no, out_request_no),
	FOREIGN KEY (app, out_trade_no) REFERENCES orders (app, out_trade_no)
);

-- seq is the event log cursor: AUTOINCREMENT so that a number is never reused.
CREATE TABLE events (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	id           TEXT    NOT NULL UNIQUE,
	type         TEXT    NOT NULL,
	app          TEXT    NOT NULL,
	out_trade_no TEXT    NOT NULL,
	version      INTEGER NOT NULL,
	timestamp    TEXT    NOT NULL,
	data         TEXT CHECK (data IS NULL OR json_valid(data))
);
CREATE INDEX events_app_seq ON events (app, seq);

-- One row per distinct anomaly: its order.anomaly event is raised only when the row is new.
-- No foreign key: an anomaly may be about an order we do not have.
CREATE TABLE anomalies (
	app          TEXT NOT NULL,
	out_trade_no TEXT NOT NULL,
	key          TEXT NOT NULL,
	reason       TEXT NOT NULL,
	event_id     TEXT NOT NULL DEFAULT '',
	created_at   TEXT NOT NULL,
	PRIMARY KEY (app, out_trade_no, key)
);

CREATE TABLE evidence (
	seq           INTEGER PRIMARY KEY AUTOINCREMENT,
	id            TEXT    NOT NULL UNIQUE,
	app           TEXT    NOT NULL,
	provider      TEXT    NOT NULL,
	received_at   TEXT    NOT NULL,
	verdict       TEXT    NOT NULL,
	reason        TEXT    NOT NULL DEFAULT '',
	detail        TEXT    NOT NULL DEFAULT '',
	out_trade_no  TEXT    NOT NULL DEFAULT '',
	order_version INTEGER NOT NULL DEFAULT 0,
	answer        TEXT    NOT NULL DEFAULT '',
	duration_ms   INTEGER NOT NULL DEFAULT 0,
	headers       TEXT CHECK (headers IS NULL OR json_valid(headers)),
	body          BLOB
);
CREATE INDEX evidence_received_at ON evidence (received_at);
CREATE INDEX evidence_app_received_at ON evidence (app, received_at);
CREATE INDEX evidence_out_trade_no_received_at ON evidence (out_trade_no, received_at);
CREATE INDEX evidence_verdict_received_at ON evidence (verdict, received_at);
