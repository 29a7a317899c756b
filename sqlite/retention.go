package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// Retention (docs/storage.md, "Retention"): the daily prune deletes old rows in batches, each
// batch a write of the group commit (writer.go), so that a prune holds the write lock for one
// batch at a time and the notifications' writes take their turn between batches (or ride in the
// same transaction).

// The deletes select a batch of rows by the time index, oldest first, and delete them by their
// key. The outer conditions repeat the inner ones: a row that changed since it was selected is
// judged again (on SQLite nothing changes in between, but the statements say what they mean).
const (
	// pruneEvidence keeps the records an order.anomaly event names, looked up in
	// events_anomaly_evidence (migration 0005): the expression must stay the index's, and the
	// unary + takes the TEXT affinity off e.id, without which SQLite would compare with that
	// affinity and scan the whole index for each record instead of searching it (sqlite's
	// TestPrunePlans checks the plan).
	//
	// ?3 and ?4 are where the previous batch ended (its last deleted row's received_at and seq;
	// '' and 0 at first): the records kept for an anomaly stay at the front of the time index,
	// and a batch that started from the front again would walk past all of them, each batch of
	// each day's prune (a reviewer helper's finding). Every deletable row before the position was
	// deleted by an earlier batch, which took them in this order.
	pruneEvidence = `DELETE FROM evidence WHERE seq IN (
		SELECT e.seq FROM evidence e WHERE e.received_at < ?1 AND (e.received_at, e.seq) > (?3, ?4)
			AND NOT EXISTS (SELECT 1 FROM events ev WHERE ev.type = 'order.anomaly'
				AND json_extract(ev.data, '$.anomaly.notification_id') = +e.id)
			ORDER BY e.received_at, e.seq LIMIT ?2) AND received_at < ?1
		RETURNING received_at, seq`
	// pruneRejected: the rejected notifications (Store.PruneRejectedEvidence), by
	// evidence_verdict_received_at.
	pruneRejected = `DELETE FROM evidence WHERE seq IN (
		SELECT seq FROM evidence WHERE verdict = 'rejected' AND received_at < ?1
			AND source = 'notification' AND reason <> 'notify_id_unconfirmed'
			ORDER BY received_at LIMIT ?2)
		AND verdict = 'rejected' AND received_at < ?1 AND source = 'notification' AND reason <> 'notify_id_unconfirmed'`
	// pruneUnavailable: the notifications whose check could not be made (verify_unavailable, under
	// the rejected requests' cap: anyone can cause one by replaying a message while a check fails),
	// kept as long as the rejected ones; by evidence_reason_received_at.
	pruneUnavailable = `DELETE FROM evidence WHERE seq IN (
		SELECT seq FROM evidence WHERE verdict = 'error' AND received_at < ?1
			AND source = 'notification' AND reason = 'verify_unavailable'
			ORDER BY received_at LIMIT ?2)
		AND verdict = 'error' AND received_at < ?1 AND source = 'notification' AND reason = 'verify_unavailable'`
	pruneAttempts = `DELETE FROM webhook_attempts WHERE seq IN (
		SELECT seq FROM webhook_attempts WHERE at < ?1 ORDER BY at LIMIT ?2) AND at < ?1`
	pruneDeliveries = `DELETE FROM webhook_deliveries WHERE seq IN (
		SELECT seq FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < ?1 ORDER BY updated_at LIMIT ?2)
		AND status <> 'pending' AND updated_at < ?1`
)

// PruneEvidence deletes the evidence records received before before that no order.anomaly event
// names, at most batch per transaction, and returns how many it deleted.
func (db *DB) PruneEvidence(ctx context.Context, before time.Time, batch int) (int64, error) {
	batch = max(batch, 1)
	b := formatTime(before)
	var (
		atTime string // where the last batch ended: its last deleted row, in (received_at, seq) order
		atSeq  int64
		// where this batch ended, once it is committed (a batch may run twice: chunks)
		nextTime string
		nextSeq  int64
	)
	n, err := db.chunks(ctx, batch, func(ctx context.Context, tx *sql.Tx) (int64, error) {
		rows, err := tx.QueryContext(ctx, pruneEvidence, b, batch, atTime, atSeq)
		if err != nil {
			return 0, err
		}
		defer rows.Close()
		var n int64
		lastTime, lastSeq := atTime, atSeq
		for rows.Next() {
			var at string
			var seq int64
			if err := rows.Scan(&at, &seq); err != nil {
				return 0, err
			}
			n++
			if at > lastTime || at == lastTime && seq > lastSeq {
				lastTime, lastSeq = at, seq
			}
		}
		if err := rows.Err(); err != nil {
			return 0, err
		}
		nextTime, nextSeq = lastTime, lastSeq
		return n, nil
	}, func() { atTime, atSeq = nextTime, nextSeq })
	if err != nil {
		return n, fmt.Errorf("sqlite: prune evidence: %w", err)
	}
	return n, nil
}

// PruneRejectedEvidence deletes the rejected evidence records received before before, at most
// batch per transaction, and returns how many it deleted.
func (db *DB) PruneRejectedEvidence(ctx context.Context, before time.Time, batch int) (int64, error) {
	n, err := db.prune(ctx, pruneRejected, before, batch)
	if err != nil {
		return n, fmt.Errorf("sqlite: prune rejected evidence: %w", err)
	}
	m, err := db.prune(ctx, pruneUnavailable, before, batch)
	if err != nil {
		return n + m, fmt.Errorf("sqlite: prune unverified evidence: %w", err)
	}
	return n + m, nil
}

// PruneWebhooks deletes the attempts made before before, then the deliveries no longer pending
// last updated before it, at most batch rows per transaction.
func (db *DB) PruneWebhooks(ctx context.Context, before time.Time, batch int) (attempts, deliveries int64, err error) {
	if attempts, err = db.prune(ctx, pruneAttempts, before, batch); err != nil {
		return attempts, 0, fmt.Errorf("sqlite: prune webhook attempts: %w", err)
	}
	if deliveries, err = db.prune(ctx, pruneDeliveries, before, batch); err != nil {
		return attempts, deliveries, fmt.Errorf("sqlite: prune webhook deliveries: %w", err)
	}
	return attempts, deliveries, nil
}

// DropOldSecrets forgets the old secrets whose overlap ended at or before now.
func (db *DB) DropOldSecrets(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, _ *statements) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhook_endpoints SET old_secret = '', old_secret_until = NULL
			WHERE old_secret <> '' AND old_secret_until <= ?`, formatTime(now))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return n, fmt.Errorf("sqlite: drop old webhook secrets: %w", err)
	}
	return n, nil
}

// prune runs the delete query (?1 the time, ?2 the batch) as writes of the group commit, one
// after the other, until one deletes less than a batch. It returns the rows deleted.
func (db *DB) prune(ctx context.Context, query string, before time.Time, batch int) (int64, error) {
	batch = max(batch, 1)
	b := formatTime(before)
	return db.chunks(ctx, batch, func(ctx context.Context, tx *sql.Tx) (int64, error) {
		res, err := tx.ExecContext(ctx, query, b, batch)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	}, nil)
}
