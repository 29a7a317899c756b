-- paynotify schema, version 6 (PostgreSQL): retention (docs/storage.md, "Retention").
-- The daily prune keeps the evidence records that an order.anomaly event names: this index finds,
-- for each old record, whether such an event exists, without reading the event log. Only
-- order.anomaly events are in it, so it stays as small as the anomalies.
CREATE INDEX events_anomaly_evidence ON events ((data -> 'anomaly' ->> 'notification_id')) WHERE type = 'order.anomaly';
