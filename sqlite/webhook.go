package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paynotify/paynotify"
)

var _ paynotify.WebhookStore = (*DB)(nil)

// This file keeps the outgoing webhooks (migrations/0003_webhooks.sql): endpoints, the deliveries
// made from the event log by each endpoint's cursor, and the attempts.
//
// Choices the interface leaves open, shared with the PostgreSQL store (the storetest suite pins
// most of them):
//   - an empty Events or Apps filter is stored as "[]" and reads back as an empty, non-nil slice;
//   - an endpoint or delivery created with a zero CreatedAt is stamped with db.Now, and a delivery
//     added by AddWebhookDelivery is due at its CreatedAt; UpdateWebhookEndpoint stamps with db.Now;
//   - FinishWebhookDeliveries stamps the delivery (UpdatedAt, DeliveredAt) and FailingSince with
//     the attempt's At (db.Now when the claim is only released); FailingSince follows every
//     attempt, whether or not its token still holds the delivery; an attempt of an endpoint that
//     was deleted meanwhile is dropped;
//   - a claim changes only NextAttemptAt and Token (not UpdatedAt); it does not look at the
//     endpoint's status; deliveries with no order (App and OutTradeNo "", as endpoint.disabled)
//     are ordered among themselves like the events of one order;
//   - listings do not fill Payload (only ClaimWebhookDeliveries does);
//   - UpdateWebhookEndpoint with the endpoint's own Status changes nothing of the status (nor the
//     DisabledReason); enabling in the same update that appends an Event moves the Cursor past it;
//   - RedeliverEvent answers ENOTFOUND for an unknown endpoint too, and does not look at the
//     endpoints' filters; RecoverWebhooks resets Attempts to 0 like RedeliverEvent.

// endpointColumns are the columns of an endpoint, in the order of scanEndpoint.
const endpointColumns = `id, kind, url, events, apps, description, status, disabled_reason, secret, old_secret,
	old_secret_until, cursor, failing_since, created_at, updated_at`

func scanEndpoint(s scanner) (*paynotify.WebhookEndpoint, error) {
	var (
		e                 paynotify.WebhookEndpoint
		events, apps      string
		oldUntil, failing sql.NullString
		created, updated  string
		err               error
	)
	if err := s.Scan(&e.ID, &e.Kind, &e.URL, &events, &apps, &e.Description, &e.Status, &e.DisabledReason,
		&e.Secret, &e.OldSecret, &oldUntil, &e.Cursor, &failing, &created, &updated); err != nil {
		return nil, err
	}
	if e.Events, err = parseFilter[paynotify.EventType](events); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	if e.Apps, err = parseFilter[string](apps); err != nil {
		return nil, fmt.Errorf("apps: %w", err)
	}
	if e.OldSecretUntil, err = parseTimeNull(oldUntil); err != nil {
		return nil, err
	}
	if e.FailingSince, err = parseTimeNull(failing); err != nil {
		return nil, err
	}
	if e.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if e.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &e, nil
}

// filterJSON is an Events or Apps filter as stored: a JSON array, "[]" for every type or app.
func filterJSON[T ~string](xs []T) string {
	if len(xs) == 0 {
		return "[]"
	}
	b, err := json.Marshal(xs)
	if err != nil {
		panic(err) // strings: cannot fail
	}
	return string(b)
}

// parseFilter reads a stored filter; an empty one is an empty, non-nil slice.
func parseFilter[T ~string](s string) ([]T, error) {
	out := []T{}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, err
	}
	if out == nil {
		out = []T{}
	}
	return out, nil
}

// getEndpoint reads endpoint id on tx; ENOTFOUND when it does not exist.
func getEndpoint(ctx context.Context, tx *sql.Tx, id string) (*paynotify.WebhookEndpoint, error) {
	e, err := scanEndpoint(tx.QueryRowContext(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Webhook endpoint not found.")
	}
	return e, err
}

// CreateWebhookEndpoint inserts e with its Cursor at the last event of the log (0 when the log is
// empty), and sets e.Cursor. An empty ID is filled with a new "whe" id, a zero CreatedAt with
// db.Now and a zero UpdatedAt with CreatedAt.
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
	// One statement: the cursor is read in the write that inserts the endpoint.
	var cursor int64
	err := db.db.QueryRowContext(ctx, `INSERT INTO webhook_endpoints (`+endpointColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) FROM events), ?, ?, ?)
		RETURNING cursor`,
		e.ID, e.Kind, e.URL, filterJSON(e.Events), filterJSON(e.Apps), e.Description, e.Status, e.DisabledReason,
		e.Secret, e.OldSecret, formatTimePtr(e.OldSecretUntil), formatTimePtr(e.FailingSince),
		formatTime(e.CreatedAt), formatTime(e.UpdatedAt)).Scan(&cursor)
	if err != nil {
		return fmt.Errorf("sqlite: create webhook endpoint: %w", err)
	}
	e.Cursor = cursor
	return nil
}

// GetWebhookEndpoint returns endpoint id, or ENOTFOUND.
func (db *DB) GetWebhookEndpoint(ctx context.Context, id string) (*paynotify.WebhookEndpoint, error) {
	e, err := scanEndpoint(db.rd.QueryRowContext(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Webhook endpoint not found.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get webhook endpoint: %w", err)
	}
	return e, nil
}

// ListWebhookEndpoints returns the endpoints of kind ("" for every kind), oldest first.
func (db *DB) ListWebhookEndpoints(ctx context.Context, kind string) ([]*paynotify.WebhookEndpoint, error) {
	var c conds
	if kind != "" {
		c.add("kind = ?", kind)
	}
	rows, err := db.rd.QueryContext(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints`+c.where()+`
		ORDER BY created_at, rowid`, c.args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list webhook endpoints: %w", err)
	}
	defer rows.Close()
	out := []*paynotify.WebhookEndpoint{}
	for rows.Next() {
		e, err := scanEndpoint(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list webhook endpoints: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list webhook endpoints: %w", err)
	}
	return out, nil
}

// UpdateWebhookEndpoint applies u to endpoint id in one write transaction, stamped with db.Now,
// and returns the endpoint as stored. In order: IfStatus and IfFailingBefore are checked
// (ECONFLICT), u.Event is
// appended to the log, then the fields are set. A Status that changes the endpoint's status does
// what the interface says (enabling fails the deliveries queued while it was disabled and moves
// the Cursor to the last event, the appended one included); a Status equal to the current one does nothing. A new Secret keeps the current one as
// OldSecret until u.OldSecretUntil, or drops it when u.OldSecretUntil is nil.
func (db *DB) UpdateWebhookEndpoint(ctx context.Context, id string, u *paynotify.WebhookEndpointUpdate) (*paynotify.WebhookEndpoint, error) {
	if u.Status != nil && *u.Status != paynotify.EndpointEnabled && *u.Status != paynotify.EndpointDisabled {
		return nil, paynotify.Errorf(paynotify.EINVALID, "Unknown endpoint status %q.", *u.Status)
	}
	if u.Status != nil && *u.Status == paynotify.EndpointDisabled {
		// A disable fans the endpoint out to the log's end first (below, in its transaction):
		// the bulk of a backlog goes here, in chunks of the group commit, so that the
		// transaction, which holds every write, has at most the last events to add (a
		// reviewer helper's finding: 200,000 events behind held the writes for seconds).
		if err := db.fanOutBacklog(ctx, id); err != nil {
			return nil, fmt.Errorf("sqlite: update webhook endpoint: %w", err)
		}
	}
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: update webhook endpoint: %w", err)
	}
	defer rollback(tx)
	e, err := getEndpoint(ctx, tx, id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: update webhook endpoint: %w", err)
	}
	if u.IfStatus != "" && e.Status != u.IfStatus {
		return nil, paynotify.Errorf(paynotify.ECONFLICT, "Webhook endpoint is %s, not %s.", e.Status, u.IfStatus)
	}
	if u.IfFailingBefore != nil && (e.FailingSince == nil || e.FailingSince.After(*u.IfFailingBefore)) {
		return nil, paynotify.Errorf(paynotify.ECONFLICT, "Webhook endpoint has not been failing since %s.", u.IfFailingBefore.UTC().Format(time.RFC3339))
	}
	now := db.now()
	// The log's end before this update's own event: a disable fans the endpoint out to it first.
	var logEnd int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM events`).Scan(&logEnd); err != nil {
		return nil, fmt.Errorf("sqlite: update webhook endpoint: last event: %w", err)
	}
	if u.Event != nil {
		if err := appendEvent(ctx, tx, u.Event); err != nil {
			return nil, fmt.Errorf("sqlite: update webhook endpoint: %w", err)
		}
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
	if u.Status != nil && *u.Status != e.Status {
		switch e.Status = *u.Status; e.Status {
		case paynotify.EndpointEnabled:
			e.FailingSince, e.DisabledReason = nil, ""
			if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM events`).Scan(&e.Cursor); err != nil {
				return nil, fmt.Errorf("sqlite: update webhook endpoint: last event: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,
				claim_token = '', last_error = ?, updated_at = ? WHERE endpoint_id = ? AND status = 'pending'`,
				paynotify.DisabledQueued, formatTime(now), id); err != nil {
				return nil, fmt.Errorf("sqlite: update webhook endpoint: fail deliveries queued while disabled: %w", err)
			}
		case paynotify.EndpointDisabled:
			e.DisabledReason = u.DisabledReason
			// The events committed while it was enabled that the dispatcher has not fanned out
			// yet get their deliveries first, failed below with the others: otherwise they would
			// have none (the enable moves the cursor to the log's end), not even a failed one for
			// recover to find (a reviewer helper's finding).
			if logEnd > e.Cursor {
				if _, err := tx.ExecContext(ctx, fanOutDeliveries, id, formatTime(now), e.Cursor, logEnd,
					filterJSON(e.Events), filterJSON(e.Apps)); err != nil {
					return nil, fmt.Errorf("sqlite: update webhook endpoint: fan out before disabling: %w", err)
				}
				e.Cursor = logEnd
			}
			if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL,
				claim_token = '', last_error = ?, updated_at = ? WHERE endpoint_id = ? AND status = 'pending'`,
				"endpoint disabled: "+u.DisabledReason, formatTime(now), id); err != nil {
				return nil, fmt.Errorf("sqlite: update webhook endpoint: fail deliveries: %w", err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE webhook_endpoints SET url = ?, events = ?, apps = ?, description = ?,
		status = ?, disabled_reason = ?, secret = ?, old_secret = ?, old_secret_until = ?, cursor = ?,
		failing_since = ?, updated_at = ? WHERE id = ?`,
		e.URL, filterJSON(e.Events), filterJSON(e.Apps), e.Description, e.Status, e.DisabledReason, e.Secret,
		e.OldSecret, formatTimePtr(e.OldSecretUntil), e.Cursor, formatTimePtr(e.FailingSince), formatTime(now), id); err != nil {
		return nil, fmt.Errorf("sqlite: update webhook endpoint: %w", err)
	}
	stored, err := getEndpoint(ctx, tx, id)
	if err != nil {
		return nil, fmt.Errorf("sqlite: update webhook endpoint: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("sqlite: update webhook endpoint: %w", err)
	}
	return stored, nil
}

// appendEvent appends e to the event log, as Commit does.
func appendEvent(ctx context.Context, x execer, e *paynotify.Event) error {
	if _, err := x.ExecContext(ctx, `INSERT INTO events (id, type, app, out_trade_no, version, timestamp, data)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		e.ID, string(e.Type), e.App, e.OutTradeNo, e.Version, formatTime(e.Timestamp), nullText(e.Data)); err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	return nil
}

// webhookChunk bounds the rows one write of DeleteWebhookEndpoint and RecoverWebhooks touches:
// each chunk is a write of the group commit (writer.go), so that the notifications' writes take
// their turn between chunks instead of waiting for an endpoint's whole history (a reviewer
// helper's finding: deleting an endpoint with 500,000 attempts, or recovering 500,000 events, held
// every write for 8 and 18 seconds). chunkHook, when set (tests), runs after each chunk of any
// chunks loop (the prunes' batches included).
var (
	webhookChunk = 1000
	chunkHook    func()
)

// chunks runs fn (which returns how many rows it touched) as writes of the group commit, one
// after the other, until one touches fewer than size (or ctx ends), and returns the total: a
// long job that takes the write lock one chunk at a time, the notifications' writes taking their
// turns between chunks (or riding in the same transactions). fn may run more than once for one
// chunk (its batch run again, commitBatch): what it carries from chunk to chunk it hands to
// committed, if not nil, which is called once the chunk is committed.
func (db *DB) chunks(ctx context.Context, size int, fn func(ctx context.Context, tx *sql.Tx) (int64, error), committed func()) (int64, error) {
	var total int64
	for {
		var n int64
		err := db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, _ *statements) error {
			var err error
			n, err = fn(ctx, tx)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if committed != nil {
			committed()
		}
		if chunkHook != nil {
			chunkHook()
		}
		if n < int64(size) {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// DeleteWebhookEndpoint deletes endpoint id with its attempts and deliveries, those in chunks
// first (webhookChunk), then the endpoint (ON DELETE CASCADE takes what was added meanwhile).
// ENOTFOUND when it does not exist. Cut short (a crash, a cancelled context), the endpoint is
// still there, with part of its history: deleting it again finishes.
func (db *DB) DeleteWebhookEndpoint(ctx context.Context, id string) error {
	if _, err := db.GetWebhookEndpoint(ctx, id); err != nil {
		return err
	}
	for _, q := range []string{
		`DELETE FROM webhook_attempts WHERE seq IN (SELECT seq FROM webhook_attempts WHERE endpoint_id = ?1 LIMIT ?2)`,
		`DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM webhook_deliveries WHERE endpoint_id = ?1 LIMIT ?2)`,
	} {
		if _, err := db.chunks(ctx, webhookChunk, func(ctx context.Context, tx *sql.Tx) (int64, error) {
			res, err := tx.ExecContext(ctx, q, id, webhookChunk)
			if err != nil {
				return 0, err
			}
			return res.RowsAffected()
		}, nil); err != nil {
			return fmt.Errorf("sqlite: delete webhook endpoint: %w", err)
		}
	}
	var n int64
	err := db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, _ *statements) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM webhook_endpoints WHERE id = ?`, id)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: delete webhook endpoint: %w", err)
	}
	if n == 0 {
		return notFound("Webhook endpoint not found.")
	}
	return nil
}

// logEvent is what a delivery needs of an event of the log.
type logEvent struct {
	seq             int64
	id, typ, app, n string // n: out_trade_no
}

// insertDelivery inserts a pending delivery (?1 its id) to endpoint ?2 of an event of the log,
// due at ?8, unless the endpoint has one of that event already.
const insertDelivery = `INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, event_seq, app,
	out_trade_no, status, next_attempt_at, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8, ?8)
	ON CONFLICT (endpoint_id, event_id) DO NOTHING`

// addDelivery inserts, with stmt (insertDelivery prepared on the transaction), a pending delivery
// of ev to endpoint, due at now, unless the endpoint has one of that event already; it reports
// whether it inserted one.
func addDelivery(ctx context.Context, stmt *sql.Stmt, endpoint string, ev logEvent, now string) (bool, error) {
	res, err := stmt.ExecContext(ctx, paynotify.NewID("whd"), endpoint, ev.id, ev.typ, ev.seq, ev.app, ev.n, now)
	if err != nil {
		return false, fmt.Errorf("insert delivery: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("insert delivery: %w", err)
	}
	return n == 1, nil
}

// FanOutWebhooks adds, for each enabled endpoint, the deliveries of the (up to limit, default 100)
// events after its Cursor that it Wants, and moves its Cursor to the last event read, in one write
// transaction per endpoint whose Cursor is compared and set. An event that the endpoint has a
// delivery of already (RedeliverEvent ran ahead of the cursor) is skipped.
//
// The endpoints to fan out are those enabled whose Cursor is behind the last event of the log,
// found by a read outside any transaction: when there are none (the dispatcher's usual case once it
// has caught up), FanOutWebhooks answers 0 without taking the write lock, nor syncing the file.
func (db *DB) FanOutWebhooks(ctx context.Context, now time.Time, lim int) (int, error) {
	rows, err := db.rd.QueryContext(ctx, `SELECT id FROM webhook_endpoints
		WHERE status = 'enabled' AND cursor < (SELECT COALESCE(MAX(seq), 0) FROM events)
		ORDER BY created_at, rowid`)
	if err != nil {
		return 0, fmt.Errorf("sqlite: fan out webhooks: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("sqlite: fan out webhooks: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("sqlite: fan out webhooks: %w", err)
	}
	total := 0
	for _, id := range ids {
		n, err := db.fanOut(ctx, id, formatTime(now), limit(lim))
		if err != nil {
			return total, fmt.Errorf("sqlite: fan out webhooks: endpoint %s: %w", id, err)
		}
		total += n
	}
	return total, nil
}

// fanOutBacklog fans endpoint id out, webhookChunk events a write of the group commit, while it
// is enabled and more than webhookChunk events behind the log's end (what the dispatcher does
// anyway; fewer are left to the disable's transaction).
func (db *DB) fanOutBacklog(ctx context.Context, id string) error {
	for {
		var behind bool
		err := db.rd.QueryRowContext(ctx, `SELECT status = 'enabled' AND cursor + ? < (SELECT COALESCE(MAX(seq), 0) FROM events)
			FROM webhook_endpoints WHERE id = ?`, webhookChunk, id).Scan(&behind)
		if errors.Is(err, sql.ErrNoRows) || err == nil && !behind {
			return nil // gone (the update answers ENOTFOUND), disabled, or caught up
		} else if err != nil {
			return fmt.Errorf("fan out before disabling: %w", err)
		}
		if _, err := db.fanOut(ctx, id, formatTime(db.now()), webhookChunk); err != nil {
			return fmt.Errorf("fan out before disabling: %w", err)
		}
		if chunkHook != nil {
			chunkHook()
		}
	}
}

// fanOutDeliveries adds the deliveries of a fan-out in one statement: of each event with ?3 < seq
// <= ?4, in seq order (the deliveries' creation order), that the filters ?5 (types) and ?6 (apps),
// JSON arrays as stored, let through (Wants: an empty filter lets everything through, an event
// without an app passes any Apps filter), a pending delivery to endpoint ?1 due at ?2, with a new
// random "whd" id as paynotify.NewID makes them; an existing delivery of the event is kept.
// (The WHERE clause also keeps SQLite's parser from reading ON CONFLICT as a join constraint.)
const fanOutDeliveries = `INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, event_seq, app,
	out_trade_no, status, next_attempt_at, created_at, updated_at)
	SELECT 'whd_' || lower(hex(randomblob(16))), ?1, e.id, e.type, e.seq, e.app, e.out_trade_no, 'pending', ?2, ?2, ?2
	FROM events e
	WHERE e.seq > ?3 AND e.seq <= ?4
		AND (json_array_length(?5) = 0 OR e.type IN (SELECT value FROM json_each(?5)))
		AND (e.app = '' OR json_array_length(?6) = 0 OR e.app IN (SELECT value FROM json_each(?6)))
	ORDER BY e.seq
	ON CONFLICT (endpoint_id, event_id) DO NOTHING`

// errCursorMoved undoes a fan-out whose cursor another process moved first.
var errCursorMoved = errors.New("cursor moved")

// fanOut is FanOutWebhooks for one endpoint, as one write of the group commit (failing alone):
// the dispatcher's bookkeeping rides the notifications' batches instead of taking turns with them.
func (db *DB) fanOut(ctx context.Context, id, now string, lim int) (int, error) {
	var added int64
	err := db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, _ *statements) error {
		added = 0
		var (
			status, events, apps string
			cursor               int64
		)
		err := tx.QueryRowContext(ctx, `SELECT status, cursor, events, apps FROM webhook_endpoints WHERE id = ?`, id).
			Scan(&status, &cursor, &events, &apps)
		if errors.Is(err, sql.ErrNoRows) {
			return nil // deleted since it was listed
		} else if err != nil {
			return err
		}
		if status != paynotify.EndpointEnabled {
			return nil // disabled since it was listed
		}
		// The last of the (up to lim) events read: the Cursor moves to it, wanted or not.
		var last sql.NullInt64
		if err := tx.QueryRowContext(ctx, `SELECT MAX(seq) FROM (SELECT seq FROM events WHERE seq > ? ORDER BY seq LIMIT ?)`,
			cursor, lim).Scan(&last); err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		if !last.Valid {
			return nil // moved by another process since it was listed
		}
		res, err := tx.ExecContext(ctx, fanOutDeliveries, id, now, cursor, last.Int64, events, apps)
		if err != nil {
			return fmt.Errorf("insert deliveries: %w", err)
		}
		if added, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("insert deliveries: %w", err)
		}
		res, err = tx.ExecContext(ctx, `UPDATE webhook_endpoints SET cursor = ? WHERE id = ? AND cursor = ?`,
			last.Int64, id, cursor)
		if err != nil {
			return fmt.Errorf("move cursor: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("move cursor: %w", err)
		} else if n == 0 {
			return errCursorMoved // another process moved it first: its deliveries stand, ours roll back
		}
		return nil
	})
	if errors.Is(err, errCursorMoved) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	return int(added), nil
}

// AddWebhookDelivery inserts d as a pending delivery of an event outside the log (EventSeq 0),
// with its Payload (kept byte for byte), due at d.CreatedAt (db.Now when zero). An empty ID is
// filled with a new "whd" id; d's ID, EventSeq, Status, Attempts, NextAttemptAt, Token, CreatedAt
// and UpdatedAt are set as stored.
func (db *DB) AddWebhookDelivery(ctx context.Context, d *paynotify.WebhookDelivery) error {
	if d.ID == "" {
		d.ID = paynotify.NewID("whd")
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = db.now()
	}
	now := truncTime(d.CreatedAt)
	if _, err := db.db.ExecContext(ctx, `INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, event_seq,
		app, out_trade_no, payload, status, next_attempt_at, created_at, updated_at)
		VALUES (?, ?, ?, ?, 0, ?, ?, ?, 'pending', ?, ?, ?)`,
		d.ID, d.EndpointID, d.EventID, string(d.EventType), d.App, d.OutTradeNo, nullText(d.Payload),
		formatTime(now), formatTime(now), formatTime(now)); err != nil {
		return fmt.Errorf("sqlite: add webhook delivery: %w", err)
	}
	d.EventSeq, d.Status, d.Attempts, d.Token, d.LastError, d.DeliveredAt = 0, paynotify.DeliveryPending, 0, "", "", nil
	d.NextAttemptAt, d.CreatedAt, d.UpdatedAt = &now, now, now
	return nil
}

// deliveryColumns are the columns of a delivery (table alias d), in the order of scanDelivery.
const deliveryColumns = `d.id, d.endpoint_id, d.event_id, d.event_type, d.event_seq, d.app, d.out_trade_no, d.status,
	d.attempts, d.next_attempt_at, d.claim_token, d.last_error, d.created_at, d.updated_at, d.delivered_at`

// scanDelivery scans deliveryColumns, then extra.
func scanDelivery(s scanner, extra ...any) (*paynotify.WebhookDelivery, error) {
	var (
		d                paynotify.WebhookDelivery
		next, delivered  sql.NullString
		created, updated string
		err              error
	)
	dest := append([]any{&d.ID, &d.EndpointID, &d.EventID, &d.EventType, &d.EventSeq, &d.App, &d.OutTradeNo, &d.Status,
		&d.Attempts, &next, &d.Token, &d.LastError, &created, &updated, &delivered}, extra...)
	if err := s.Scan(dest...); err != nil {
		return nil, err
	}
	if d.NextAttemptAt, err = parseTimeNull(next); err != nil {
		return nil, err
	}
	if d.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if d.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	if d.DeliveredAt, err = parseTimeNull(delivered); err != nil {
		return nil, err
	}
	return &d, nil
}

// ClaimWebhookDeliveries claims, in one write transaction, up to limit due pending deliveries of
// endpoint, earliest due first (then creation order), that no pending delivery of the same
// endpoint, App and OutTradeNo created before precedes. Each moves to now+lease under one new
// random token and is returned with its Payload: for an event of the log, the event's JSON as
// ListEvents reads it (paynotify.EventJSON); for another, the stored payload. A limit of 0 or less
// claims nothing; lease must be positive.
func (db *DB) ClaimWebhookDeliveries(ctx context.Context, endpoint string, now time.Time, lease time.Duration, lim int) ([]*paynotify.WebhookDelivery, error) {
	if lease <= 0 {
		return nil, fmt.Errorf("sqlite: claim webhook deliveries: lease %s is not positive", lease)
	}
	out := []*paynotify.WebhookDelivery{}
	if lim <= 0 {
		return out, nil
	}
	until, token := truncTime(now.Add(lease)), rand.Text()
	err := db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, _ *statements) error {
		var err error
		out, err = claimDeliveries(ctx, tx, endpoint, now, until, token, lim)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim webhook deliveries: %w", err)
	}
	return out, nil
}

// claimDeliveries is ClaimWebhookDeliveries on tx.
func claimDeliveries(ctx context.Context, tx *sql.Tx, endpoint string, now, until time.Time, token string, lim int) ([]*paynotify.WebhookDelivery, error) {
	out := []*paynotify.WebhookDelivery{}
	// Select first, then update the rows selected, as ClaimChecks does.
	rows, err := tx.QueryContext(ctx, `SELECT `+deliveryColumns+`, d.seq, d.payload,
			e.seq IS NOT NULL, e.id, e.type, e.version, e.timestamp, e.data
		FROM webhook_deliveries d LEFT JOIN events e ON d.event_seq > 0 AND e.seq = d.event_seq
		WHERE d.endpoint_id = ?1 AND d.status = 'pending' AND d.next_attempt_at <= ?2
			AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.endpoint_id = ?1 AND p.status = 'pending'
				AND p.app = d.app AND p.out_trade_no = d.out_trade_no AND p.seq < d.seq)
		ORDER BY d.next_attempt_at, d.seq LIMIT ?3`, endpoint, formatTime(now), lim)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var seqs []string
	for rows.Next() {
		var (
			seq          int64
			payload      []byte
			found        bool
			ev           paynotify.Event
			evID, evType sql.NullString
			evVersion    sql.NullInt64
			ts, data     sql.NullString
		)
		d, err := scanDelivery(rows, &seq, &payload, &found, &evID, &evType, &evVersion, &ts, &data)
		if err != nil {
			return nil, err
		}
		switch {
		case d.EventSeq == 0:
			if payload != nil {
				d.Payload = payload
			}
		case !found:
			return nil, fmt.Errorf("delivery %s: event seq %d not in the log", d.ID, d.EventSeq)
		default:
			// As ListEvents builds it, so that the bytes are what GET /v1/events serves.
			ev.ID, ev.Type, ev.Version = evID.String, paynotify.EventType(evType.String), evVersion.Int64
			if ev.Timestamp, err = parseTime(ts.String); err != nil {
				return nil, err
			}
			if data.Valid {
				ev.Data = json.RawMessage(data.String)
			}
			d.Payload = paynotify.EventJSON(&ev)
		}
		d.NextAttemptAt, d.Token = &until, token
		seqs = append(seqs, strconv.FormatInt(seq, 10))
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	if len(seqs) == 0 {
		return out, nil
	}
	res, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET next_attempt_at = ?, claim_token = ?
		WHERE seq IN (SELECT value FROM json_each(?))`, formatTime(until), token, "["+strings.Join(seqs, ",")+"]")
	if err != nil {
		return nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, err
	} else if n != int64(len(seqs)) {
		return nil, fmt.Errorf("claimed %d rows of %d selected", n, len(seqs))
	}
	return out, nil
}

// FinishWebhookDeliveries ends claims in one write transaction; of each result's Delivery only ID
// and Token are needed. For each result, in order: the attempt is inserted (an empty ID filled
// with a new "wha" id, an empty DeliveryID, EndpointID, EventID, EventType taken from the delivery
// as claimed, or from its row when the result's Delivery does not carry them, a zero At set to
// db.Now; dropped if the endpoint no longer exists); the delivery, if its token still holds it,
// gets the Status, Next (NULL unless pending), Attempts+1 when there was an attempt, LastError the
// attempt's Error, DeliveredAt when delivered, UpdatedAt the attempt's At, and its claim released.
// Then each endpoint's FailingSince gets, in one statement per endpoint, the net effect of its
// results in order: a failed attempt sets it to the attempt's At when it is not set, a delivered
// attempt clears it. A pending Status needs a Next.
//
// The rows of the deliveries that must be read are read in one statement, and the statements
// repeated for each result are prepared once for the transaction.
func (db *DB) FinishWebhookDeliveries(ctx context.Context, results []paynotify.WebhookResult) error {
	if len(results) == 0 {
		return nil
	}
	for _, r := range results {
		switch {
		case r.Delivery == nil || r.Delivery.ID == "" || r.Delivery.Token == "":
			return fmt.Errorf("sqlite: finish webhook deliveries: no delivery or no token")
		case r.Status != paynotify.DeliveryPending && r.Status != paynotify.DeliveryDelivered && r.Status != paynotify.DeliveryFailed:
			return fmt.Errorf("sqlite: finish webhook deliveries: unknown status %q", r.Status)
		case r.Status == paynotify.DeliveryPending && r.Next == nil:
			return fmt.Errorf("sqlite: finish webhook deliveries: delivery %s pending without a next attempt", r.Delivery.ID)
		}
	}
	err := db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, _ *statements) error {
		return db.finish(ctx, tx, results)
	})
	if err != nil {
		return fmt.Errorf("sqlite: finish webhook deliveries: %w", err)
	}
	return nil
}

// deliveryRef is what an attempt needs of its delivery.
type deliveryRef struct{ endpoint, event, typ string }

// readDeliveryRefs returns the deliveryRef of the results' deliveries: the result's own when its
// Delivery carries EndpointID, EventID and EventType (as claimed), else read from the delivery's
// row, all in one statement (a delivery that no longer exists is missing from the map).
func readDeliveryRefs(ctx context.Context, tx *sql.Tx, results []paynotify.WebhookResult) (map[string]deliveryRef, error) {
	refs := make(map[string]deliveryRef, len(results))
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
	b, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, endpoint_id, event_id, event_type FROM webhook_deliveries
		WHERE id IN (SELECT value FROM json_each(?))`, string(b))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id  string
			ref deliveryRef
		)
		if err := rows.Scan(&id, &ref.endpoint, &ref.event, &ref.typ); err != nil {
			return nil, err
		}
		refs[id] = ref
	}
	return refs, rows.Err()
}

// finish is FinishWebhookDeliveries on tx.
func (db *DB) finish(ctx context.Context, tx *sql.Tx, results []paynotify.WebhookResult) error {
	refs, err := readDeliveryRefs(ctx, tx, results)
	if err != nil {
		return fmt.Errorf("read deliveries: %w", err)
	}
	insertAttempt, err := tx.PrepareContext(ctx, `INSERT INTO webhook_attempts (id, delivery_id, endpoint_id, event_id,
		event_type, at, status, duration_ms, response, error)
		SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = ?3)`)
	if err != nil {
		return fmt.Errorf("insert attempt: %w", err)
	}
	defer insertAttempt.Close()
	updateDelivery, err := tx.PrepareContext(ctx, `UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?,
		claim_token = '', attempts = attempts + ?, last_error = COALESCE(?, last_error), delivered_at = ?, updated_at = ?
		WHERE id = ? AND claim_token = ?`)
	if err != nil {
		return fmt.Errorf("update delivery: %w", err)
	}
	defer updateDelivery.Close()

	type failing struct {
		cleared bool   // a delivered attempt cleared it
		since   string // the first failure after the last delivered attempt ("" when none)
	}
	endpoints := map[string]*failing{}
	now := db.now()
	for _, r := range results {
		d, a := r.Delivery, r.Attempt
		// Only the delivery's ID and Token are needed: the rest is d's as claimed, or read from
		// its row (taken from d, as far as it goes, when the row is gone).
		ref, ok := refs[d.ID]
		if !ok {
			ref = deliveryRef{d.EndpointID, d.EventID, string(d.EventType)}
		}
		at := now
		inc, lastErr := 0, sql.NullString{}
		if a != nil {
			if a.ID == "" {
				a.ID = paynotify.NewID("wha")
			}
			if a.At.IsZero() {
				a.At = at
			}
			at = a.At
			inc, lastErr = 1, sql.NullString{String: a.Error, Valid: true}
			row := []string{a.DeliveryID, a.EndpointID, a.EventID, string(a.EventType)}
			for i, v := range []string{d.ID, ref.endpoint, ref.event, ref.typ} {
				if row[i] == "" {
					row[i] = v
				}
			}
			if _, err := insertAttempt.ExecContext(ctx, a.ID, row[0], row[1], row[2], row[3], formatTime(a.At), a.Status,
				a.DurationMS, nullBytes(a.Response), a.Error); err != nil {
				return fmt.Errorf("delivery %s: insert attempt: %w", d.ID, err)
			}
		}
		var next, delivered any
		if r.Status == paynotify.DeliveryPending {
			next = formatTime(*r.Next)
		}
		if r.Status == paynotify.DeliveryDelivered {
			delivered = formatTime(at)
		}
		if _, err := updateDelivery.ExecContext(ctx, r.Status, next, inc, lastErr, delivered, formatTime(at),
			d.ID, d.Token); err != nil {
			return fmt.Errorf("delivery %s: update delivery: %w", d.ID, err)
		}
		if ref.endpoint == "" {
			continue // the delivery is gone, and the result does not say where it went
		}
		f := endpoints[ref.endpoint]
		if f == nil {
			f = &failing{}
			endpoints[ref.endpoint] = f
		}
		switch {
		case r.Failed:
			if f.since == "" {
				f.since = formatTime(at)
			}
		case a != nil && r.Status == paynotify.DeliveryDelivered:
			f.cleared, f.since = true, ""
		}
	}
	ids := make([]string, 0, len(endpoints))
	for id := range endpoints {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		var (
			q    string
			args []any
		)
		switch f := endpoints[id]; {
		case f.since != "" && f.cleared:
			q, args = `UPDATE webhook_endpoints SET failing_since = ? WHERE id = ?`, []any{f.since, id}
		case f.since != "":
			q, args = `UPDATE webhook_endpoints SET failing_since = ? WHERE id = ? AND failing_since IS NULL`, []any{f.since, id}
		case f.cleared:
			q, args = `UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ? AND failing_since IS NOT NULL`, []any{id}
		default:
			continue
		}
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("endpoint %s: update failing since: %w", id, err)
		}
	}
	return nil
}

// attemptColumns are the columns of an attempt, in the order of scanAttempt.
const attemptColumns = `id, delivery_id, endpoint_id, event_id, event_type, at, status, duration_ms, response, error`

func scanAttempt(s scanner) (*paynotify.WebhookAttempt, error) {
	var (
		a        paynotify.WebhookAttempt
		at       string
		response []byte
		err      error
	)
	if err := s.Scan(&a.ID, &a.DeliveryID, &a.EndpointID, &a.EventID, &a.EventType, &at, &a.Status, &a.DurationMS,
		&response, &a.Error); err != nil {
		return nil, err
	}
	if a.At, err = parseTime(at); err != nil {
		return nil, err
	}
	if response != nil {
		a.Response = response
	}
	return &a, nil
}

// ListWebhookAttempts returns the attempts of filter.EndpointID and filter.EventID (each when
// set), up to filter.Limit (default 100), newest (last recorded) first.
func (db *DB) ListWebhookAttempts(ctx context.Context, filter paynotify.WebhookAttemptFilter) ([]*paynotify.WebhookAttempt, error) {
	var c conds
	if filter.EndpointID != "" {
		c.add("endpoint_id = ?", filter.EndpointID)
	}
	if filter.EventID != "" {
		c.add("event_id = ?", filter.EventID)
	}
	rows, err := db.rd.QueryContext(ctx, `SELECT `+attemptColumns+` FROM webhook_attempts`+c.where()+`
		ORDER BY seq DESC LIMIT ?`, append(c.args, limit(filter.Limit))...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list webhook attempts: %w", err)
	}
	defer rows.Close()
	out := []*paynotify.WebhookAttempt{}
	for rows.Next() {
		a, err := scanAttempt(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list webhook attempts: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list webhook attempts: %w", err)
	}
	return out, nil
}

// ListWebhookDeliveries returns the deliveries of eventID to every endpoint, oldest (CreatedAt,
// then creation order) first, without their Payload.
func (db *DB) ListWebhookDeliveries(ctx context.Context, eventID string) ([]*paynotify.WebhookDelivery, error) {
	rows, err := db.rd.QueryContext(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries d WHERE d.event_id = ?
		ORDER BY d.created_at, d.seq`, eventID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list webhook deliveries: %w", err)
	}
	defer rows.Close()
	out := []*paynotify.WebhookDelivery{}
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list webhook deliveries: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list webhook deliveries: %w", err)
	}
	return out, nil
}

// resetDeliveries is the SET clause that makes a delivery pending again, due at ?1 (also its
// UpdatedAt): Attempts 0, claim released, no error, not delivered.
const resetDeliveries = `UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?1,
	claim_token = '', last_error = '', delivered_at = NULL, updated_at = ?1`

// RedeliverEvent makes the event eventID of the log pending, due at now, for each of endpoints (in
// one write transaction, whatever their filters): an existing delivery that is not pending is
// reset, a missing one added; a pending one is left alone and not counted. ENOTFOUND when the
// event is not in the log or an endpoint does not exist (nothing is changed then).
func (db *DB) RedeliverEvent(ctx context.Context, eventID string, endpoints []string, now time.Time) (int, error) {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("sqlite: redeliver event: %w", err)
	}
	defer rollback(tx)
	ev := logEvent{id: eventID}
	err = tx.QueryRowContext(ctx, `SELECT seq, type, app, out_trade_no FROM events WHERE id = ?`, eventID).
		Scan(&ev.seq, &ev.typ, &ev.app, &ev.n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, notFound("Event not found.")
	} else if err != nil {
		return 0, fmt.Errorf("sqlite: redeliver event: %w", err)
	}
	ts := formatTime(now)
	insert, err := tx.PrepareContext(ctx, insertDelivery)
	if err != nil {
		return 0, fmt.Errorf("sqlite: redeliver event: %w", err)
	}
	defer insert.Close()
	made := 0
	for _, id := range endpoints {
		if _, err := getEndpoint(ctx, tx, id); err != nil {
			return 0, fmt.Errorf("sqlite: redeliver event: %w", err)
		}
		res, err := tx.ExecContext(ctx, resetDeliveries+` WHERE endpoint_id = ?2 AND event_id = ?3 AND status <> 'pending'`,
			ts, id, eventID)
		if err != nil {
			return 0, fmt.Errorf("sqlite: redeliver event: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("sqlite: redeliver event: %w", err)
		}
		if n == 0 {
			added, err := addDelivery(ctx, insert, id, ev, ts)
			if err != nil {
				return 0, fmt.Errorf("sqlite: redeliver event: %w", err)
			}
			if added {
				n = 1
			}
		}
		made += int(n)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("sqlite: redeliver event: %w", err)
	}
	return made, nil
}

// RecoverWebhooks resets (as RedeliverEvent does) the endpoint's failed deliveries created at or
// after since, due at now, and adds a delivery, due at now, of each event with a timestamp at or
// after since and a Seq up to the endpoint's Cursor (as it was when the call began) that it Wants
// and has no delivery of. It returns how many deliveries it made pending; ENOTFOUND when the
// endpoint does not exist. It runs in chunks of webhookChunk rows or events, each a write of the
// group commit; cut short, it has made some of them pending, and running it again makes the rest.
func (db *DB) RecoverWebhooks(ctx context.Context, endpoint string, since, now time.Time) (int, error) {
	e, err := db.GetWebhookEndpoint(ctx, endpoint)
	if err != nil {
		return 0, err
	}
	ts, from := formatTime(now), formatTime(since)
	reset, err := db.chunks(ctx, webhookChunk, func(ctx context.Context, tx *sql.Tx) (int64, error) {
		res, err := tx.ExecContext(ctx, resetDeliveries+` WHERE seq IN (SELECT seq FROM webhook_deliveries
			WHERE endpoint_id = ?2 AND status = 'failed' AND created_at >= ?3 LIMIT ?4)`, ts, endpoint, from, webhookChunk)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	}, nil)
	if err != nil {
		return int(reset), db.recoverFailed(ctx, endpoint, err)
	}
	made := int(reset)
	// The events since: from the first with such a timestamp (events_timestamp), then by seq, a
	// window of webhookChunk seqs per write (the rowid's order, not the whole range sorted).
	var first sql.NullInt64
	if err := db.rd.QueryRowContext(ctx, `SELECT min(seq) FROM events WHERE timestamp >= ?`, from).Scan(&first); err != nil {
		return made, fmt.Errorf("sqlite: recover webhooks: %w", err)
	}
	for lo := first.Int64; first.Valid && lo <= e.Cursor; lo += int64(webhookChunk) {
		hi := min(lo+int64(webhookChunk)-1, e.Cursor)
		var added int
		err := db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, _ *statements) error {
			added = 0
			// Not the endpoint's own endpoint.disabled: it goes to the other endpoints only.
			rows, err := tx.QueryContext(ctx, `SELECT seq, id, type, app, out_trade_no FROM events e
				WHERE seq BETWEEN ?1 AND ?2 AND timestamp >= ?3
					AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = ?4 AND d.event_id = e.id)
					AND NOT (type = 'endpoint.disabled' AND json_extract(data, '$.endpoint_id') IS ?4)
				ORDER BY seq`, lo, hi, from, endpoint)
			if err != nil {
				return err
			}
			var missed []logEvent
			for rows.Next() {
				var ev logEvent
				if err := rows.Scan(&ev.seq, &ev.id, &ev.typ, &ev.app, &ev.n); err != nil {
					rows.Close()
					return err
				}
				if e.Wants(paynotify.EventType(ev.typ), ev.app) {
					missed = append(missed, ev)
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			if len(missed) == 0 {
				return nil
			}
			insert, err := tx.PrepareContext(ctx, insertDelivery)
			if err != nil {
				return err
			}
			defer insert.Close()
			for _, ev := range missed {
				ok, err := addDelivery(ctx, insert, endpoint, ev, ts)
				if err != nil {
					return err
				}
				if ok {
					added++
				}
			}
			return nil
		})
		if err != nil {
			return made, db.recoverFailed(ctx, endpoint, err)
		}
		made += added
		if chunkHook != nil {
			chunkHook()
		}
		if err := ctx.Err(); err != nil {
			return made, fmt.Errorf("sqlite: recover webhooks: %w", err)
		}
	}
	return made, nil
}

// recoverFailed is RecoverWebhooks' error for err, a chunk's: ENOTFOUND when the endpoint was
// deleted meanwhile (a delivery's foreign key then fails), as when it was missing from the start.
func (db *DB) recoverFailed(ctx context.Context, endpoint string, err error) error {
	if _, gone := db.GetWebhookEndpoint(context.WithoutCancel(ctx), endpoint); paynotify.ErrorCode(gone) == paynotify.ENOTFOUND {
		return gone
	}
	return fmt.Errorf("sqlite: recover webhooks: %w", err)
}
