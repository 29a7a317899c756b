package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Retention (docs/storage.md, "Retention"): the daily prune deletes old rows in batches, each
// batch a short transaction of its own (not a write of the group commit: nothing waits for it),
// so that a prune never holds many row locks or a long transaction.

// The deletes select a batch of rows by the time index, oldest first, and delete them by their
// key. The outer conditions repeat the inner ones: under READ COMMITTED a row changed since it
// was selected (a failed delivery made pending again by a recover) is judged again on its new
// version, and kept.
const (
	// pruneEvidence keeps the records an order.anomaly event names (events_anomaly_evidence,
	// migration 0006: the expression must stay the index's to use it).
	pruneEvidence = `DELETE FROM evidence WHERE seq IN (
		SELECT e.seq FROM evidence e WHERE e.received_at < $1
			AND NOT EXISTS (SELECT 1 FROM events ev WHERE ev.type = 'order.anomaly'
				AND (ev.data -> 'anomaly' ->> 'notification_id') = e.id)
			ORDER BY e.received_at, e.seq LIMIT $2) AND received_at < $1`
	// pruneRejected: the rejected notifications (Store.PruneRejectedEvidence), by
	// evidence_verdict_received_at.
	pruneRejected = `DELETE FROM evidence WHERE seq IN (
		SELECT seq FROM evidence WHERE verdict = 'rejected' AND received_at < $1
			AND source = 'notification' AND reason <> 'notify_id_unconfirmed'
			ORDER BY received_at, seq LIMIT $2)
		AND verdict = 'rejected' AND received_at < $1 AND source = 'notification' AND reason <> 'notify_id_unconfirmed'`
	// pruneUnavailable: the notifications whose check could not be made (verify_unavailable, under
	// the rejected requests' cap: anyone can cause one by replaying a message while a check fails),
	// kept as long as the rejected ones; by evidence_reason_received_at.
	pruneUnavailable = `DELETE FROM evidence WHERE seq IN (
		SELECT seq FROM evidence WHERE verdict = 'error' AND received_at < $1
			AND source = 'notification' AND reason = 'verify_unavailable'
			ORDER BY received_at, seq LIMIT $2)
		AND verdict = 'error' AND received_at < $1 AND source = 'notification' AND reason = 'verify_unavailable'`
	pruneAttempts = `DELETE FROM webhook_attempts WHERE seq IN (
		SELECT seq FROM webhook_attempts WHERE at < $1 ORDER BY at, seq LIMIT $2) AND at < $1`
	pruneDeliveries = `DELETE FROM webhook_deliveries WHERE seq IN (
		SELECT seq FROM webhook_deliveries WHERE status <> 'pending' AND updated_at < $1 ORDER BY updated_at LIMIT $2)
		AND status <> 'pending' AND updated_at < $1`
)

// PruneEvidence deletes the evidence records received before before that no order.anomaly event
// names, at most batch per transaction, and returns how many it deleted.
func (db *DB) PruneEvidence(ctx context.Context, before time.Time, batch int) (int64, error) {
	n, err := db.prune(ctx, pruneEvidence, before, batch)
	if err != nil {
		return n, fmt.Errorf("postgres: prune evidence: %w", err)
	}
	return n, nil
}

// PruneRejectedEvidence deletes the rejected evidence records received before before, at most
// batch per transaction, and returns how many it deleted.
func (db *DB) PruneRejectedEvidence(ctx context.Context, before time.Time, batch int) (int64, error) {
	n, err := db.prune(ctx, pruneRejected, before, batch)
	if err != nil {
		return n, fmt.Errorf("postgres: prune rejected evidence: %w", err)
	}
	m, err := db.prune(ctx, pruneUnavailable, before, batch)
	if err != nil {
		return n + m, fmt.Errorf("postgres: prune unverified evidence: %w", err)
	}
	return n + m, nil
}

// PruneWebhooks deletes the attempts made before before, then the deliveries no longer pending
// last updated before it, at most batch rows per transaction.
func (db *DB) PruneWebhooks(ctx context.Context, before time.Time, batch int) (attempts, deliveries int64, err error) {
	if attempts, err = db.prune(ctx, pruneAttempts, before, batch); err != nil {
		return attempts, 0, fmt.Errorf("postgres: prune webhook attempts: %w", err)
	}
	if deliveries, err = db.prune(ctx, pruneDeliveries, before, batch); err != nil {
		return attempts, deliveries, fmt.Errorf("postgres: prune webhook deliveries: %w", err)
	}
	return attempts, deliveries, nil
}

// DropOldSecrets forgets the old secrets whose overlap ended at or before now.
func (db *DB) DropOldSecrets(ctx context.Context, now time.Time) (int64, error) {
	var n int64
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE webhook_endpoints SET old_secret = '', old_secret_until = NULL
			WHERE old_secret <> '' AND old_secret_until <= $1`, tm(now))
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return n, fmt.Errorf("postgres: drop old webhook secrets: %w", err)
	}
	return n, nil
}

// prune runs the delete query ($1 the time, $2 the batch), one transaction per batch (a deadlock
// is tried again, as inTx does), until one deletes less than a batch. It returns the rows
// deleted.
func (db *DB) prune(ctx context.Context, query string, before time.Time, batch int) (int64, error) {
	batch = max(batch, 1)
	var total int64
	for {
		var n int64
		err := db.inTx(ctx, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, query, tm(before), batch)
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < int64(batch) {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}
