package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/paynotify/paynotify"
)

var _ paynotify.WebhookStore = (*DB)(nil)

// pgCode reports whether err is a PostgreSQL error with code.
func pgCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// Error codes the webhook store answers for (unique and foreign key violations).
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// wrap returns err as it is when it is a *paynotify.Error, else wrapped as "postgres: op: err".
func wrap(op string, err error) error {
	var pe *paynotify.Error
	if err == nil || errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// endpointColumns are the columns of a webhook endpoint, in the order of scanEndpoint (the JSON
// arrays read as text).
const endpointColumns = `id, kind, url, events::text, apps::text, description, status, disabled_reason, secret,
	old_secret, old_secret_until, cursor, failing_since, created_at, updated_at`

func scanEndpoint(row pgx.Row) (*paynotify.WebhookEndpoint, error) {
	var (
		e              paynotify.WebhookEndpoint
		events, apps   string
		until, failing *time.Time
	)
	if err := row.Scan(&e.ID, &e.Kind, &e.URL, &events, &apps, &e.Description, &e.Status, &e.DisabledReason, &e.Secret,
		&e.OldSecret, &until, &e.Cursor, &failing, &e.CreatedAt, &e.UpdatedAt); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(events), &e.Events); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	if err := json.Unmarshal([]byte(apps), &e.Apps); err != nil {
		return nil, fmt.Errorf("apps: %w", err)
	}
	e.OldSecretUntil, e.FailingSince = utcPtr(until), utcPtr(failing)
	e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
	return &e, nil
}

// jsonArray is what an endpoint's filter is stored as: a JSON array, [] for none (nil).
func jsonArray[T any](v []T) string {
	if len(v) == 0 {
		return "[]"
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // strings: cannot fail
	}
	return string(b)
}

// lastSeq is the Seq of the last event in the log (0 when empty): with the event log's lock, every
// event committed after this statement has a greater one.
const lastSeq = `(SELECT COALESCE(max(seq), 0) FROM events)`

// CreateWebhookEndpoint inserts e with its Cursor at the last event of the log, and sets
// e.Cursor. An empty ID is filled with a new "whe" id, a zero CreatedAt with now and a zero
// UpdatedAt with CreatedAt; an endpoint with e.ID that exists is ECONFLICT. Nil Events or Apps
// are stored as empty (and read back as empty, non-nil slices).
func (db *DB) CreateWebhookEndpoint(ctx context.Context, e *paynotify.WebhookEndpoint) error {
	if e.ID == "" {
		e.ID = paynotify.NewID("whe")
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = db.now()
	}
	if e.UpdatedAt.IsZero() {
		e.UpdatedAt = e.CreatedAt
	}
	var cursor int64
	err := db.pool.QueryRow(ctx, `INSERT INTO webhook_endpoints (id, kind, url, events, apps, description, status,
			disabled_reason, secret, old_secret, old_secret_until, cursor, failing_since, created_at, updated_at)
		VALUES ($1, $2, $3, $4::text::jsonb, $5::text::jsonb, $6, $7, $8, $9, $10, $11, `+lastSeq+`, $12, $13, $14)
		RETURNING cursor`,
		e.ID, e.Kind, e.URL, jsonArray(e.Events), jsonArray(e.Apps), e.Description, e.Status, e.DisabledReason, e.Secret,
		e.OldSecret, tmPtr(e.OldSecretUntil), tmPtr(e.FailingSince), tm(e.CreatedAt), tm(e.UpdatedAt)).Scan(&cursor)
	if pgCode(err, uniqueViolation) {
		return paynotify.Errorf(paynotify.ECONFLICT, "Webhook endpoint %s exists.", e.ID)
	} else if err != nil {
		return fmt.Errorf("postgres: create webhook endpoint: %w", err)
	}
	e.Cursor = cursor
	return nil
}

// GetWebhookEndpoint returns one endpoint, or ENOTFOUND.
func (db *DB) GetWebhookEndpoint(ctx context.Context, id string) (*paynotify.WebhookEndpoint, error) {
	e, err := scanEndpoint(db.pool.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("Webhook endpoint not found.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: get webhook endpoint: %w", err)
	}
	return e, nil
}

// ListWebhookEndpoints returns every endpoint of kind ("" for all), oldest (CreatedAt) first.
func (db *DB) ListWebhookEndpoints(ctx context.Context, kind string) ([]*paynotify.WebhookEndpoint, error) {
	var c conds
	if kind != "" {
		c.add("kind = %s", kind)
	}
	rows, err := db.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints`+c.where()+`
		ORDER BY created_at, seq`, c.args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list webhook endpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.WebhookEndpoint, error) { return scanEndpoint(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list webhook endpoints: %w", err)
	}
	return out, nil
}

// UpdateWebhookEndpoint applies u to endpoint id in one transaction and returns the endpoint as
// stored, with UpdatedAt now. The endpoint row is locked first (FOR NO KEY UPDATE: IfStatus and
// IfFailingBefore are compared under the lock, ECONFLICT when they do not hold). A Status that changes the endpoint's status
// does what the interface says (disabling fails its pending deliveries, claimed or not; enabling
// fails those queued while it was disabled and moves the Cursor to the last event of the log,
// u.Event included); a Status equal to the current
// one does nothing, and an unknown one is EINVALID. A new Secret keeps the current one as
// OldSecret until u.OldSecretUntil, or drops it when u.OldSecretUntil is nil. u.Event is appended
// as Commit appends events, after the deliveries are failed: under the event log's lock, taken
// once every row lock the transaction needs but its own endpoint row's is held.
func (db *DB) UpdateWebhookEndpoint(ctx context.Context, id string, u *paynotify.WebhookEndpointUpdate) (*paynotify.WebhookEndpoint, error) {
	if u.Status != nil && *u.Status != paynotify.EndpointEnabled && *u.Status != paynotify.EndpointDisabled {
		return nil, paynotify.Errorf(paynotify.EINVALID, "Unknown endpoint status %q.", *u.Status)
	}
	now := tm(db.now())
	var out *paynotify.WebhookEndpoint
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		e, err := scanEndpoint(tx.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = $1
			FOR NO KEY UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("Webhook endpoint not found.")
		} else if err != nil {
			return err
		}
		if u.IfStatus != "" && e.Status != u.IfStatus {
			return paynotify.Errorf(paynotify.ECONFLICT, "Webhook endpoint is %s, not %s.", e.Status, u.IfStatus)
		}
		if u.IfFailingBefore != nil && (e.FailingSince == nil || e.FailingSince.After(*u.IfFailingBefore)) {
			return paynotify.Errorf(paynotify.ECONFLICT, "Webhook endpoint has not been failing since %s.", u.IfFailingBefore.UTC().Format(time.RFC3339))
		}
		if u.URL != nil {
			e.URL = *u.URL
		}
		if u.Events != nil {
			e.Events = *u.Events
		}
		if u.Apps != nil {
			e.Apps = *u.Apps
		}
		if u.Description != nil {
			e.Description = *u.Description
		}
		if u.Secret != nil && *u.Secret != e.Secret {
			e.OldSecret, e.OldSecretUntil = e.Secret, u.OldSecretUntil
			if u.OldSecretUntil == nil {
				e.OldSecret = ""
			}
			e.Secret = *u.Secret
		}
		enabled := false
		if u.Status != nil && *u.Status != e.Status {
			switch e.Status = *u.Status; e.Status {
			case paynotify.EndpointEnabled:
				enabled = true
				e.FailingSince, e.DisabledReason = nil, ""
				if _, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,
					claim_token = '', last_error = $2, updated_at = $3 WHERE endpoint_id = $1 AND status = 'pending'`,
					id, paynotify.DisabledQueued, now); err != nil {
					return fmt.Errorf("fail deliveries queued while disabled: %w", err)
				}
			case paynotify.EndpointDisabled:
				e.DisabledReason = u.DisabledReason
				failPending := func() (int64, error) {
					tag, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,
						claim_token = '', last_error = $2, updated_at = $3 WHERE endpoint_id = $1 AND status = 'pending'`,
						id, "endpoint disabled: "+u.DisabledReason, now)
					return tag.RowsAffected(), err
				}
				if _, err := failPending(); err != nil {
					return fmt.Errorf("fail pending deliveries: %w", err)
				}
				// The events committed while it was enabled that the dispatcher has not fanned out
				// yet get their deliveries too, failed as the others: otherwise they would have
				// none, the enable moving the cursor to the log's end (a reviewer helper's
				// finding). The backlog first, without the event log's lock (which every commit
				// of an event waits for: a reviewer's finding); then, under it, the tail, so that
				// an event whose commit is under way is committed first and seen (another). The
				// lock is taken after the row locks above, as every holder of it takes it, and
				// waited for without a lock timeout, as the batches wait (it is held only from
				// events to a COMMIT). This transaction holds the endpoint's row, still enabled,
				// so fanOut takes it; this update's own event, for the other endpoints, comes after.
				fanned := 0
				for _, lock := range []bool{false, true} {
					if lock {
						if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = 0`); err != nil {
							return fmt.Errorf("lock the event log: %w", err)
						}
						if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, eventsLockKey); err != nil {
							return fmt.Errorf("lock the event log: %w", err)
						}
					}
					n, err := fanOut(ctx, tx, id, now, math.MaxInt32)
					if err != nil {
						return fmt.Errorf("fan out before disabling: %w", err)
					}
					fanned += n
				}
				if fanned > 0 {
					if _, err := failPending(); err != nil {
						return fmt.Errorf("fail pending deliveries: %w", err)
					}
				}
			}
		}
		if u.Event != nil {
			// Past this point the only row written is the endpoint's, whose lock is held.
			if err := insertEvents(ctx, tx, []*paynotify.Event{u.Event}); err != nil {
				return err
			}
		}
		out, err = scanEndpoint(tx.QueryRow(ctx, `UPDATE webhook_endpoints SET url = $2, events = $3::text::jsonb,
				apps = $4::text::jsonb, description = $5, status = $6, disabled_reason = $7, secret = $8, old_secret = $9,
				old_secret_until = $10, failing_since = $11, updated_at = $12,
				cursor = CASE WHEN $13 THEN `+lastSeq+` ELSE cursor END
			WHERE id = $1 RETURNING `+endpointColumns,
			id, e.URL, jsonArray(e.Events), jsonArray(e.Apps), e.Description, e.Status, e.DisabledReason, e.Secret,
			e.OldSecret, tmPtr(e.OldSecretUntil), tmPtr(e.FailingSince), now, enabled))
		if err != nil {
			return fmt.Errorf("update endpoint: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("update webhook endpoint", err)
	}
	return out, nil
}

// DeleteWebhookEndpoint deletes the endpoint; its deliveries and attempts go with it (ON DELETE
// CASCADE). ENOTFOUND when it does not exist.
func (db *DB) DeleteWebhookEndpoint(ctx context.Context, id string) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("postgres: delete webhook endpoint: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("Webhook endpoint not found.")
	}
	return nil
}

// FanOutWebhooks fans out each enabled endpoint (oldest first) whose Cursor is behind the last
// event of the log, each in a transaction of its own: the endpoint row is locked FOR NO KEY
// UPDATE SKIP LOCKED (another process fanning it out, or updating it, makes this one skip it this
// time), and one statement reads up to limit events after its Cursor, adds a pending delivery due
// at now for each one it Wants (an existing delivery of the event, made by RedeliverEvent, is
// kept) and moves the Cursor (compared and set) to the last event read. A limit of 0 or less
// reads 100.
//
// The endpoints behind the log are found by one read outside any transaction: when there are none
// (the dispatcher's usual case once it has caught up), FanOutWebhooks answers 0 at once.
//
// Events are read as ListEvents reads them, every committed event after the Cursor: commits
// that append events hold the event log's lock from their insert to their commit, so that no
// event with a smaller seq than a visible one can still commit.
func (db *DB) FanOutWebhooks(ctx context.Context, now time.Time, lim int) (int, error) {
	rows, err := db.pool.Query(ctx, `SELECT id FROM webhook_endpoints
		WHERE status = 'enabled' AND cursor < `+lastSeq+` ORDER BY created_at, seq`)
	if err != nil {
		return 0, fmt.Errorf("postgres: fan out webhooks: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("postgres: fan out webhooks: %w", err)
	}
	total := 0
	for _, id := range ids {
		var n int
		err := db.inTx(ctx, func(tx pgx.Tx) error {
			var err error
			n, err = fanOut(ctx, tx, id, tm(now), limit(lim))
			return err
		})
		if err != nil {
			return total, fmt.Errorf("postgres: fan out webhooks: endpoint %s: %w", id, err)
		}
		total += n
	}
	return total, nil
}

// newDeliveryID is a new random "whd" id made in SQL, as paynotify.NewID makes them ("whd_" and 32
// hex digits): the 122 random bits of a version 4 UUID (gen_random_uuid is built in since
// PostgreSQL 13; no pgcrypto).
const newDeliveryID = `'whd_' || replace(gen_random_uuid()::text, '-', '')`

// fanOut fans out one endpoint; see FanOutWebhooks.
func fanOut(ctx context.Context, tx pgx.Tx, id string, now time.Time, limit int) (int, error) {
	var cursor int64
	var events, apps string
	err := tx.QueryRow(ctx, `SELECT cursor, events::text, apps::text FROM webhook_endpoints
		WHERE id = $1 AND status = 'enabled' FOR NO KEY UPDATE SKIP LOCKED`, id).Scan(&cursor, &events, &apps)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil // taken by another process, disabled or deleted since
	} else if err != nil {
		return 0, err
	}
	// One statement: the events read (ev), the deliveries of those the endpoint Wants (an empty
	// filter lets everything through; an event without an app passes any Apps filter), in seq
	// order, which is the deliveries' creation order, and the Cursor moved to the last event read.
	var (
		last         *int64
		added, moved int
	)
	err = tx.QueryRow(ctx, `WITH ev AS (
			SELECT seq, id, type, app, out_trade_no FROM events WHERE seq > $2 ORDER BY seq LIMIT $3
		), added AS (
			INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, event_seq, app, out_trade_no,
				status, next_attempt_at, created_at, updated_at)
			SELECT `+newDeliveryID+`, $1, ev.id, ev.type, ev.seq, ev.app, ev.out_trade_no, 'pending', $4, $4, $4
			FROM ev
			WHERE (jsonb_array_length($5::jsonb) = 0 OR $5::jsonb ? ev.type)
				AND (ev.app = '' OR jsonb_array_length($6::jsonb) = 0 OR $6::jsonb ? ev.app)
			ORDER BY ev.seq
			ON CONFLICT (endpoint_id, event_id) DO NOTHING
			RETURNING 1
		), moved AS (
			UPDATE webhook_endpoints SET cursor = (SELECT max(seq) FROM ev)
			WHERE id = $1 AND cursor = $2 AND EXISTS (SELECT 1 FROM ev)
			RETURNING 1
		)
		SELECT (SELECT max(seq) FROM ev), (SELECT count(*) FROM added), (SELECT count(*) FROM moved)`,
		id, cursor, limit, now, events, apps).Scan(&last, &added, &moved)
	if err != nil {
		return 0, err
	}
	if last == nil {
		return 0, nil
	}
	if moved != 1 {
		return 0, fmt.Errorf("cursor of endpoint %s moved", id) // cannot happen under the row lock
	}
	return added, nil
}

// queueAddDeliveries queues the insert of a pending delivery, due at now, to endpoint of each
// event of seqs (in seq order, which is the deliveries' creation order); a delivery that exists
// is left alone.
func queueAddDeliveries(b *pgx.Batch, endpoint string, seqs []int64, now time.Time) *pgx.QueuedQuery {
	ids := make([]string, len(seqs))
	for i := range ids {
		ids[i] = paynotify.NewID("whd")
	}
	return b.Queue(`INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, event_seq, app, out_trade_no,
			status, next_attempt_at, created_at, updated_at)
		SELECT u.id, $1, e.id, e.type, e.seq, e.app, e.out_trade_no, 'pending', $4, $4, $4
		FROM unnest($2::text[], $3::bigint[]) AS u (id, seq) JOIN events e ON e.seq = u.seq
		ORDER BY e.seq
		ON CONFLICT (endpoint_id, event_id) DO NOTHING`, endpoint, ids, seqs, now)
}

// deliveryColumns are the columns of a delivery, in the order of scanDelivery (without the
// payload).
const deliveryColumns = `id, endpoint_id, event_id, event_type, event_seq, app, out_trade_no, status, attempts,
	next_attempt_at, claim_token, last_error, created_at, updated_at, delivered_at`

// scanDelivery scans deliveryColumns, then the columns of extra.
func scanDelivery(row pgx.Row, extra ...any) (*paynotify.WebhookDelivery, error) {
	var (
		d         paynotify.WebhookDelivery
		typ       string
		next, dlv *time.Time
	)
	dest := append([]any{&d.ID, &d.EndpointID, &d.EventID, &typ, &d.EventSeq, &d.App, &d.OutTradeNo, &d.Status,
		&d.Attempts, &next, &d.Token, &d.LastError, &d.CreatedAt, &d.UpdatedAt, &dlv}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	d.EventType = paynotify.EventType(typ)
	d.NextAttemptAt, d.DeliveredAt = utcPtr(next), utcPtr(dlv)
	d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	return &d, nil
}

// AddWebhookDelivery inserts d as a pending delivery of an event outside the log (EventSeq 0),
// due at its CreatedAt (now when zero), with its Payload kept byte for byte. An empty ID is filled
// with a new "whd" id; d's EventSeq, Status, Attempts, NextAttemptAt, Token and times are set as
// stored. A delivery of the same event to the same endpoint is ECONFLICT, an unknown endpoint
// ENOTFOUND.
func (db *DB) AddWebhookDelivery(ctx context.Context, d *paynotify.WebhookDelivery) error {
	if d.ID == "" {
		d.ID = paynotify.NewID("whd")
	}
	at := d.CreatedAt
	if at.IsZero() {
		at = db.now()
	}
	at = tm(at)
	var payload []byte
	if d.Payload != nil {
		payload = d.Payload
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, event_seq, app,
			out_trade_no, payload, status, next_attempt_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, 0, $5, $6, $7, 'pending', $8, $8, $8)`,
		d.ID, d.EndpointID, d.EventID, string(d.EventType), d.App, d.OutTradeNo, payload, at)
	switch {
	case pgCode(err, uniqueViolation):
		return paynotify.Errorf(paynotify.ECONFLICT, "Event %s has a delivery to endpoint %s already.", d.EventID, d.EndpointID)
	case pgCode(err, foreignKeyViolation):
		return notFound("Webhook endpoint not found.")
	case err != nil:
		return fmt.Errorf("postgres: add webhook delivery: %w", err)
	}
	d.EventSeq, d.Status, d.Attempts, d.NextAttemptAt, d.Token, d.LastError = 0, paynotify.DeliveryPending, 0, &at, "", ""
	d.CreatedAt, d.UpdatedAt, d.DeliveredAt = at, at, nil
	return nil
}

// ClaimWebhookDeliveries claims, in one statement, up to limit pending deliveries of endpoint
// due at now, earliest due first, skipping those that an earlier pending delivery (smaller seq,
// claimed or not, due or not) of the same endpoint, App and OutTradeNo precedes: a due delivery
// is claimed only if its seq is the least of the pending deliveries of its endpoint, App and
// OutTradeNo (itself included). Written so, the check is one probe of webhook_deliveries_order
// per candidate whatever the statistics say; as NOT EXISTS (an earlier pending one), before
// webhook_deliveries was analysed, it was planned as a scan of every pending row per candidate
// (quadratic in the backlog: 0.5 s a claim with 20,000 pending). Due rows are
// locked FOR NO KEY UPDATE SKIP LOCKED, as ClaimChecks does: concurrent claims take different
// deliveries. Each moves to now+lease under one new random token; its Payload is the event's
// JSON built from the events row as ListEvents reads it (the stored payload for an event outside
// the log). A limit of 0 or less claims nothing; lease must be positive.
func (db *DB) ClaimWebhookDeliveries(ctx context.Context, endpoint string, now time.Time, lease time.Duration, limit int) ([]*paynotify.WebhookDelivery, error) {
	if lease <= 0 {
		return nil, fmt.Errorf("postgres: claim webhook deliveries: lease %s is not positive", lease)
	}
	if limit <= 0 {
		return []*paynotify.WebhookDelivery{}, nil
	}
	token := rand.Text()
	rows, err := db.pool.Query(ctx, `WITH due AS (
			SELECT d.seq, d.next_attempt_at FROM webhook_deliveries d
			WHERE d.endpoint_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2
				AND d.seq = (SELECT min(p.seq) FROM webhook_deliveries p
					WHERE p.endpoint_id = d.endpoint_id AND p.app = d.app AND p.out_trade_no = d.out_trade_no
						AND p.status = 'pending')
			ORDER BY d.next_attempt_at, d.seq LIMIT $3
			FOR NO KEY UPDATE SKIP LOCKED
		), claimed AS (
			UPDATE webhook_deliveries t SET next_attempt_at = $4, claim_token = $5 FROM due WHERE t.seq = due.seq
			RETURNING t.*, due.next_attempt_at AS due_at
		)
		SELECT `+prefixed("c.", deliveryColumns)+`, c.payload,
			e.seq, e.id, e.type, e.app, e.out_trade_no, e.version, e.timestamp, e.data::text
		FROM claimed c LEFT JOIN events e ON c.event_seq > 0 AND e.seq = c.event_seq
		ORDER BY c.due_at, c.seq`,
		endpoint, tm(now), limit, tm(now.Add(lease)), token)
	if err != nil {
		return nil, fmt.Errorf("postgres: claim webhook deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.WebhookDelivery, error) {
		var (
			payload               []byte
			seq, version          *int64
			id, typ, app, tradeNo *string
			ts                    *time.Time
			data                  *string
		)
		d, err := scanDelivery(r, &payload, &seq, &id, &typ, &app, &tradeNo, &version, &ts, &data)
		if err != nil {
			return nil, err
		}
		switch {
		case d.EventSeq == 0:
			d.Payload = payload
		case seq == nil:
			return nil, fmt.Errorf("delivery %s: event seq %d not in the log", d.ID, d.EventSeq)
		default:
			// As ListEvents builds it, so that the bytes are what GET /v1/events serves.
			e := &paynotify.Event{Seq: *seq, ID: *id, Type: paynotify.EventType(*typ), App: *app, OutTradeNo: *tradeNo,
				Version: *version, Timestamp: ts.UTC()}
			if data != nil {
				e.Data = json.RawMessage(*data)
			}
			d.Payload = paynotify.EventJSON(e)
		}
		return d, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: claim webhook deliveries: %w", err)
	}
	return out, nil
}

// prefixed returns the comma-separated columns with each name prefixed.
func prefixed(prefix, columns string) string {
	cols := strings.Split(columns, ",")
	for i, c := range cols {
		cols[i] = prefix + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// FinishWebhookDeliveries ends the claims of results in one transaction, sent as one pgx batch
// (after one query for the deliveries whose EndpointID, EventID or EventType the result does not
// carry: of a result's Delivery only ID and Token are needed). In the batch: the endpoints of the
// results are locked FOR KEY SHARE, so that none is deleted under it (the attempts of one deleted
// meanwhile are dropped); each endpoint's FailingSince gets the net effect of its results in
// order (a failed attempt sets it when it is not set, a delivered attempt clears it, whether or
// not the token still holds); each attempt is inserted (an empty ID filled with a new "wha" id,
// empty delivery, endpoint and event fields taken from the delivery); and each delivery whose
// token still holds gets the result's Status, next_attempt_at Next (NULL unless pending),
// attempts+1 when an attempt was made, last_error the attempt's Error, delivered_at (NULL unless
// delivered) and updated_at the attempt's At (now for a release), and its claim released. Rows
// are locked endpoints first, then deliveries, each in id order, as UpdateWebhookEndpoint locks
// them, so that concurrent batches do not deadlock. A pending Status needs a Next.
func (db *DB) FinishWebhookDeliveries(ctx context.Context, results []paynotify.WebhookResult) error {
	if len(results) == 0 {
		return nil
	}
	for i, r := range results {
		switch {
		case r.Delivery == nil || r.Delivery.ID == "" || r.Delivery.Token == "":
			return fmt.Errorf("postgres: finish webhook deliveries: result %d: no delivery or no token", i)
		case r.Status != paynotify.DeliveryPending && r.Status != paynotify.DeliveryDelivered && r.Status != paynotify.DeliveryFailed:
			return fmt.Errorf("postgres: finish webhook deliveries: delivery %s: unknown status %q", r.Delivery.ID, r.Status)
		case r.Status == paynotify.DeliveryPending && r.Next == nil:
			return fmt.Errorf("postgres: finish webhook deliveries: delivery %s pending without a next attempt", r.Delivery.ID)
		}
		if r.Attempt != nil && r.Attempt.ID == "" {
			r.Attempt.ID = paynotify.NewID("wha")
		}
	}
	now := tm(db.now())
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := lookupDeliveries(ctx, tx, results)
		if err != nil {
			return err
		}
		b := finishBatch(results, rows, now)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("postgres: finish webhook deliveries: %w", err)
	}
	return nil
}

// deliveryRef is what an attempt needs of its delivery.
type deliveryRef struct{ endpoint, event, typ string }

// lookupDeliveries reads the deliveryRef of the results' deliveries that do not carry one, by id
// (a delivery that no longer exists is missing from the map).
func lookupDeliveries(ctx context.Context, tx pgx.Tx, results []paynotify.WebhookResult) (map[string]deliveryRef, error) {
	refs := map[string]deliveryRef{}
	var ids []string
	for _, r := range results {
		d := r.Delivery
		if d.EndpointID != "" && d.EventID != "" && d.EventType != "" {
			refs[d.ID] = deliveryRef{d.EndpointID, d.EventID, string(d.EventType)}
		} else {
			ids = append(ids, d.ID)
		}
	}
	if len(ids) == 0 {
		return refs, nil
	}
	var (
		id  string
		ref deliveryRef
	)
	rows, err := tx.Query(ctx, `SELECT id, endpoint_id, event_id, event_type FROM webhook_deliveries WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}
	if _, err := pgx.ForEachRow(rows, []any{&id, &ref.endpoint, &ref.event, &ref.typ}, func() error {
		refs[id] = ref
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}
	return refs, nil
}

// finishBatch is the batch of FinishWebhookDeliveries.
func finishBatch(results []paynotify.WebhookResult, refs map[string]deliveryRef, now time.Time) *pgx.Batch {
	type failing struct {
		cleared bool       // a delivered attempt cleared it
		since   *time.Time // the first failure after the last delivered attempt
	}
	endpoints := map[string]*failing{}
	at := make([]time.Time, len(results)) // the attempt's At, or now
	for i, r := range results {
		at[i] = now
		if r.Attempt != nil && !r.Attempt.At.IsZero() {
			at[i] = tm(r.Attempt.At)
		}
		endpoint := refs[r.Delivery.ID].endpoint
		if endpoint == "" {
			endpoint = r.Delivery.EndpointID
		}
		if endpoint == "" {
			continue // the delivery is gone, and the result does not say where it went
		}
		f := endpoints[endpoint]
		if f == nil {
			f = &failing{}
			endpoints[endpoint] = f
		}
		switch {
		case r.Failed:
			if f.since == nil {
				f.since = &at[i]
			}
		case r.Attempt != nil && r.Status == paynotify.DeliveryDelivered:
			f.cleared, f.since = true, nil
		}
	}
	ids := make([]string, 0, len(endpoints))
	for id := range endpoints {
		ids = append(ids, id)
	}
	slices.Sort(ids)

	b := &pgx.Batch{}
	b.Queue(`SELECT 1 FROM webhook_endpoints WHERE id = ANY($1) ORDER BY id FOR KEY SHARE`, ids)
	for _, id := range ids {
		switch f := endpoints[id]; {
		case f.since != nil && f.cleared:
			b.Queue(`UPDATE webhook_endpoints SET failing_since = $2 WHERE id = $1`, id, *f.since)
		case f.since != nil:
			b.Queue(`UPDATE webhook_endpoints SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL`, id, *f.since)
		case f.cleared:
			b.Queue(`UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL`, id)
		}
	}
	for i, r := range results {
		a := r.Attempt
		if a == nil {
			continue
		}
		d, ref := r.Delivery, refs[r.Delivery.ID]
		fields := []string{a.DeliveryID, a.EndpointID, a.EventID, string(a.EventType)}
		for j, v := range []string{d.ID, cmp.Or(ref.endpoint, d.EndpointID), cmp.Or(ref.event, d.EventID), cmp.Or(ref.typ, string(d.EventType))} {
			fields[j] = cmp.Or(fields[j], v)
		}
		var response []byte
		if a.Response != nil {
			response = a.Response
		}
		b.Queue(`INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, event_id, event_type, at, status, duration_ms,
				response, error)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $3)`,
			a.ID, fields[0], fields[1], fields[2], fields[3], at[i], a.Status, a.DurationMS, response, a.Error)
	}
	order := make([]int, len(results))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return strings.Compare(results[x].Delivery.ID, results[y].Delivery.ID) })
	for _, i := range order {
		r := results[i]
		var next *time.Time
		if r.Status == paynotify.DeliveryPending {
			next = tmPtr(r.Next)
		}
		var delivered *time.Time
		if r.Status == paynotify.DeliveryDelivered {
			delivered = &at[i]
		}
		inc, lastError := 0, (*string)(nil)
		if r.Attempt != nil {
			inc, lastError = 1, &r.Attempt.Error
		}
		b.Queue(`UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, claim_token = '',
				attempts = attempts + $5, last_error = COALESCE($6, last_error), delivered_at = $7, updated_at = $8
			WHERE id = $1 AND claim_token = $2`,
			r.Delivery.ID, r.Delivery.Token, r.Status, next, inc, lastError, delivered, at[i])
	}
	return b
}

// attemptColumns are the columns of an attempt, in the order of scanAttempt.
const attemptColumns = `id, delivery_id, endpoint_id, event_id, event_type, at, status, duration_ms, response, error`

func scanAttempt(row pgx.Row) (*paynotify.WebhookAttempt, error) {
	var (
		a        paynotify.WebhookAttempt
		typ      string
		response []byte
	)
	if err := row.Scan(&a.ID, &a.DeliveryID, &a.EndpointID, &a.EventID, &typ, &a.At, &a.Status, &a.DurationMS,
		&response, &a.Error); err != nil {
		return nil, err
	}
	a.EventType = paynotify.EventType(typ)
	a.At = a.At.UTC()
	if response != nil {
		a.Response = response
	}
	return &a, nil
}

// ListWebhookAttempts returns the attempts matching filter (each non-empty field exactly), newest
// (At) first, up to filter.Limit (default 100).
func (db *DB) ListWebhookAttempts(ctx context.Context, filter paynotify.WebhookAttemptFilter) ([]*paynotify.WebhookAttempt, error) {
	var c conds
	if filter.EndpointID != "" {
		c.add("endpoint_id = %s", filter.EndpointID)
	}
	if filter.EventID != "" {
		c.add("event_id = %s", filter.EventID)
	}
	lim := c.arg(limit(filter.Limit))
	rows, err := db.pool.Query(ctx, `SELECT `+attemptColumns+` FROM webhook_attempts`+c.where()+`
		ORDER BY at DESC, seq DESC LIMIT `+lim, c.args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list webhook attempts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.WebhookAttempt, error) { return scanAttempt(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list webhook attempts: %w", err)
	}
	return out, nil
}

// ListWebhookDeliveries returns the deliveries of an event to every endpoint, oldest (CreatedAt)
// first, without their Payload. Deliveries created at the same time are in the order of their
// endpoints (ListWebhookEndpoints'), not in the order they were inserted: processes fanning out
// at once insert them in any order.
func (db *DB) ListWebhookDeliveries(ctx context.Context, eventID string) ([]*paynotify.WebhookDelivery, error) {
	rows, err := db.pool.Query(ctx, `SELECT `+prefixed("d.", deliveryColumns)+`
		FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.event_id = $1
		ORDER BY d.created_at, e.created_at, e.seq, d.seq`, eventID)
	if err != nil {
		return nil, fmt.Errorf("postgres: list webhook deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.WebhookDelivery, error) { return scanDelivery(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list webhook deliveries: %w", err)
	}
	return out, nil
}

// resetDelivery is what makes a delivery that exists pending again, due at now: a fresh start
// (no attempts, no claim, no last error, not delivered), keeping its seq (creation order).
const resetDelivery = `status = 'pending', attempts = 0, next_attempt_at = %[1]s, claim_token = '', last_error = '',
	delivered_at = NULL, updated_at = %[1]s`

// RedeliverEvent makes the event with eventID pending, due at now, for each of endpoints (listed
// twice counts once), in one transaction: an existing delivery that is not pending is reset
// (Attempts 0, claim released, LastError and DeliveredAt cleared; its creation order kept), a
// missing one is added. It returns how many deliveries it made pending; ENOTFOUND when the event
// is not in the log or an endpoint does not exist.
func (db *DB) RedeliverEvent(ctx context.Context, eventID string, endpoints []string, now time.Time) (int, error) {
	var eps []string
	for _, id := range endpoints {
		if !slices.Contains(eps, id) {
			eps = append(eps, id)
		}
	}
	ids := make([]string, len(eps))
	for i := range ids {
		ids[i] = paynotify.NewID("whd")
	}
	var n int
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM events WHERE id = $1`, eventID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("Event not found.")
		} else if err != nil {
			return err
		}
		if len(eps) == 0 {
			n = 0
			return nil
		}
		tag, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, event_seq, app,
				out_trade_no, status, next_attempt_at, created_at, updated_at)
			SELECT u.id, u.endpoint_id, e.id, e.type, e.seq, e.app, e.out_trade_no, 'pending', $4, $4, $4
			FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u (id, endpoint_id, n) CROSS JOIN events e
			WHERE e.id = $3
			ORDER BY u.n
			ON CONFLICT (endpoint_id, event_id) DO UPDATE SET `+fmt.Sprintf(resetDelivery, "excluded.updated_at")+`
			WHERE webhook_deliveries.status <> 'pending'`,
			ids, eps, eventID, tm(now))
		if pgCode(err, foreignKeyViolation) {
			return notFound("Webhook endpoint not found.")
		} else if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		return nil
	})
	if err != nil {
		return 0, wrap("redeliver event", err)
	}
	return n, nil
}

// RecoverWebhooks, in one transaction, resets the endpoint's failed deliveries created at or
// after since (as RedeliverEvent resets them, due at now), and adds a pending delivery, due at
// now, of each event with a timestamp at or after since and a seq up to the endpoint's Cursor
// that it Wants and has no delivery of (in seq order). It returns how many deliveries it made
// pending; ENOTFOUND when the endpoint does not exist.
//
// An added delivery comes after, in creation order, the deliveries that exist: a later event of
// the same order that is still pending goes first.
func (db *DB) RecoverWebhooks(ctx context.Context, endpoint string, since, now time.Time) (int, error) {
	var n int
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		// FOR KEY SHARE: the endpoint is not deleted under the transaction, and a fan-out (FOR NO
		// KEY UPDATE) goes on; the cursor read may be one it has moved since, whose deliveries
		// this transaction then sees.
		e, err := scanEndpoint(tx.QueryRow(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = $1
			FOR KEY SHARE`, endpoint))
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("Webhook endpoint not found.")
		} else if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE webhook_deliveries SET `+fmt.Sprintf(resetDelivery, "$3")+`
			WHERE endpoint_id = $1 AND status = 'failed' AND created_at >= $2`, endpoint, tm(since), tm(now))
		if err != nil {
			return fmt.Errorf("reset failed deliveries: %w", err)
		}
		n = int(tag.RowsAffected())
		// Not the endpoint's own endpoint.disabled: it goes to the other endpoints only.
		rows, err := tx.Query(ctx, `SELECT seq, type, app FROM events ev
			WHERE timestamp >= $2 AND seq <= $3
				AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = $1 AND d.event_id = ev.id)
				AND NOT (type = 'endpoint.disabled' AND (data ->> 'endpoint_id') IS NOT DISTINCT FROM $1)
			ORDER BY seq`, endpoint, tm(since), e.Cursor)
		if err != nil {
			return err
		}
		var seqs []int64
		var (
			seq      int64
			typ, app string
		)
		if _, err := pgx.ForEachRow(rows, []any{&seq, &typ, &app}, func() error {
			if e.Wants(paynotify.EventType(typ), app) {
				seqs = append(seqs, seq)
			}
			return nil
		}); err != nil {
			return err
		}
		if len(seqs) == 0 {
			return nil
		}
		var b pgx.Batch
		queueAddDeliveries(&b, endpoint, seqs, tm(now)).Exec(func(tag pgconn.CommandTag) error {
			n += int(tag.RowsAffected())
			return nil
		})
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil {
		return 0, wrap("recover webhooks", err)
	}
	return n, nil
}
