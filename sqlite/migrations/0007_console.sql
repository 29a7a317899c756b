-- paynotify schema, version 7 (SQLite): the operator console's reads (docs/console.md).

-- Search by out_trade_no without the app, and by the provider's trade number.
CREATE INDEX orders_out_trade_no ON orders (out_trade_no);
CREATE INDEX orders_provider_trade_no ON orders (provider_trade_no) WHERE provider_trade_no <> '';
-- One order's events, for its timeline.
CREATE INDEX events_app_out_trade_no ON events (app, out_trade_no, seq);
