package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/paynotify/paynotify"
)

// ListEvents returns up to filter.Limit (default 100) events with Seq > filter.After, of
// filter.App if set, oldest first. Data is returned byte for byte as committed.
func (db *DB) ListEvents(ctx context.Context, filter paynotify.EventFilter) ([]*paynotify.Event, error) {
	rows, err := db.pool.Query(ctx, `SELECT seq, id, type, app, out_trade_no, version, timestamp, data::text FROM events
		WHERE seq > $1 AND ($2 = '' OR app = $2) AND ($4 = '' OR out_trade_no = $4) ORDER BY seq LIMIT $3`,
		filter.After, filter.App, limit(filter.Limit), filter.OutTradeNo)
	if err != nil {
		return nil, fmt.Errorf("postgres: list events: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.Event, error) {
		var (
			e    paynotify.Event
			typ  string
			data *string
		)
		if err := r.Scan(&e.Seq, &e.ID, &typ, &e.App, &e.OutTradeNo, &e.Version, &e.Timestamp, &data); err != nil {
			return nil, err
		}
		e.Type = paynotify.EventType(typ)
		e.Timestamp = e.Timestamp.UTC()
		if data != nil {
			e.Data = json.RawMessage(*data)
		}
		return &e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list events: %w", err)
	}
	return out, nil
}

// execer is *pgxpool.Pool or pgx.Tx.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// evidenceColumns are the columns of an evidence record, in the order of scanEvidence (headers
// read as text).
const evidenceColumns = `id, app, provider, source, endpoint, reprocessed_from, received_at, verdict, reason, detail,
	out_trade_no, order_version, answer, duration_ms, headers::text, body, repeats, last_received_at`

// insertEvidenceSQL takes evidenceArgs.
const insertEvidenceSQL = `INSERT INTO evidence (id, app, provider, source, endpoint, reprocessed_from, received_at,
	verdict, reason, detail, out_trade_no, order_version, answer, duration_ms, headers, body)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15::text::jsonb, $16)`

// repeatEvidenceSQL takes evidenceArgs too: a repeat (paynotify.Change.Repeat) counted on the
// record with its id, or inserted when that record is gone, in one statement (pipelined with the
// batch's other writes).
const repeatEvidenceSQL = `WITH repeated AS (
		UPDATE evidence SET repeats = repeats + 1, last_received_at = GREATEST(last_received_at, $7::timestamptz)
		WHERE id = $1::text AND verdict = 'duplicate' RETURNING 1)
	INSERT INTO evidence (id, app, provider, source, endpoint, reprocessed_from, received_at,
		verdict, reason, detail, out_trade_no, order_version, answer, duration_ms, headers, body)
	SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::timestamptz, $8::text, $9::text, $10::text,
		$11::text, $12::bigint, $13::text, $14::bigint, $15::text::jsonb, $16::bytea
	WHERE NOT EXISTS (SELECT 1 FROM repeated)`

// repeatEvidenceIfSQL is a repeat while the order is at the version it was decided at
// (paynotify.Change.RepeatVersion), with repeatIfArgs: nothing is inserted when it misses.
const repeatEvidenceIfSQL = `UPDATE evidence SET repeats = repeats + 1, last_received_at = GREATEST(last_received_at, $2)
	WHERE id = $1 AND verdict = 'duplicate'
	AND EXISTS (SELECT 1 FROM orders WHERE app = $3 AND out_trade_no = $4 AND version = $5)`

func repeatIfArgs(c *paynotify.Change) []any {
	e := c.Evidence
	return []any{e.ID, tm(e.ReceivedAt), e.App, e.OutTradeNo, c.RepeatVersion}
}

// evidenceSQL is the statement that writes the evidence of c (with evidenceArgs), when c is not
// a conditioned repeat (repeatEvidenceIfSQL).
func evidenceSQL(c *paynotify.Change) string {
	if c.Repeat {
		return repeatEvidenceSQL
	}
	return insertEvidenceSQL
}

// evidenceArgs are the values of insertEvidenceSQL; an empty Source is stored as
// paynotify.SourceNotification.
func evidenceArgs(e *paynotify.Evidence) ([]any, error) {
	var headers *string
	if e.Headers != nil {
		b, err := json.Marshal(e.Headers)
		if err != nil {
			return nil, fmt.Errorf("insert evidence: %w", err)
		}
		s := string(b)
		headers = &s
	}
	var body []byte
	if e.Body != nil {
		body = e.Body
	}
	source := e.Source
	if source == "" {
		source = paynotify.SourceNotification
	}
	return []any{e.ID, e.App, e.Provider, source, e.Endpoint, e.ReprocessedFrom, tm(e.ReceivedAt), string(e.Verdict),
		paynotify.StorableText(e.Reason), paynotify.StorableText(e.Detail), paynotify.StorableText(e.OutTradeNo), e.OrderVersion,
		paynotify.StorableText(e.Answer), e.DurationMS, headers, body}, nil
}

// insertEvidence stores e, with query (insertEvidenceSQL or repeatEvidenceSQL).
func insertEvidence(ctx context.Context, x execer, query string, e *paynotify.Evidence) error {
	args, err := evidenceArgs(e)
	if err != nil {
		return err
	}
	if _, err := x.Exec(ctx, query, args...); err != nil {
		return fmt.Errorf("insert evidence: %w", err)
	}
	return nil
}

func scanEvidence(row pgx.Row) (*paynotify.Evidence, error) {
	var (
		e       paynotify.Evidence
		verdict string
		headers *string
		body    []byte
		last    *time.Time
	)
	if err := row.Scan(&e.ID, &e.App, &e.Provider, &e.Source, &e.Endpoint, &e.ReprocessedFrom, &e.ReceivedAt, &verdict,
		&e.Reason, &e.Detail, &e.OutTradeNo, &e.OrderVersion, &e.Answer, &e.DurationMS, &headers, &body,
		&e.Repeats, &last); err != nil {
		return nil, err
	}
	e.Verdict = paynotify.Verdict(verdict)
	e.ReceivedAt = e.ReceivedAt.UTC()
	if last != nil {
		e.LastReceivedAt = last.UTC()
	}
	if headers != nil {
		if err := json.Unmarshal([]byte(*headers), &e.Headers); err != nil {
			return nil, fmt.Errorf("headers: %w", err)
		}
	}
	if body != nil {
		e.Body = body
	}
	return &e, nil
}

// InsertEvidence stores one evidence record outside any order change. Body is kept byte for
// byte and Headers as a value (a nil Body or Headers reads back nil); an empty Source is stored
// as paynotify.SourceNotification.
func (db *DB) InsertEvidence(ctx context.Context, e *paynotify.Evidence) error {
	return db.w.Do(ctx, &write{fn: func(ctx context.Context, tx pgx.Tx, _ *batch) error {
		if err := insertEvidence(ctx, tx, insertEvidenceSQL, e); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		return nil
	}})
}

// GetEvidence returns the evidence record with id, or an *paynotify.Error with code ENOTFOUND.
func (db *DB) GetEvidence(ctx context.Context, id string) (*paynotify.Evidence, error) {
	e, err := scanEvidence(db.pool.QueryRow(ctx, `SELECT `+evidenceColumns+` FROM evidence WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("Evidence not found.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: get evidence: %w", err)
	}
	return e, nil
}

// ListEvidence returns the evidence records matching filter (each non-empty field exactly; Since:
// received at or after it), newest (ReceivedAt) first.
func (db *DB) ListEvidence(ctx context.Context, filter paynotify.EvidenceFilter) ([]*paynotify.Evidence, error) {
	var c conds
	for _, f := range []struct{ column, value string }{{"app", filter.App}, {"out_trade_no", filter.OutTradeNo},
		{"verdict", string(filter.Verdict)}, {"reason", filter.Reason}, {"source", filter.Source}} {
		if f.value != "" {
			c.add(f.column+" = %s", f.value)
		}
	}
	if !filter.Since.IsZero() {
		c.add("received_at >= %s", tm(filter.Since))
	}
	lim := c.arg(limit(filter.Limit))
	query := `SELECT ` + evidenceColumns + ` FROM evidence` + c.where() + `
		ORDER BY received_at DESC, seq DESC LIMIT ` + lim
	if filter.BodyBudget > 0 {
		// The page's sizes first (octet_length of a bytea reads its TOAST header, not the value;
		// the headers' size as text, what is loaded, not their compressed size; an empty body is
		// NULL), then the bodies and headers of the records within the budget only (a CASE
		// detoasts what it takes).
		budget := c.arg(filter.BodyBudget)
		query = `WITH page AS (SELECT seq, received_at, coalesce(octet_length(body), 0) + coalesce(octet_length(headers::text), 0) AS sz FROM evidence` + c.where() + `
				ORDER BY received_at DESC, seq DESC LIMIT ` + lim + `),
			acc AS (SELECT seq, sum(sz) OVER (ORDER BY received_at DESC, seq DESC ROWS UNBOUNDED PRECEDING) AS spent FROM page)
			SELECT e.id, e.app, e.provider, e.source, e.endpoint, e.reprocessed_from, e.received_at, e.verdict, e.reason, e.detail,
				e.out_trade_no, e.order_version, e.answer, e.duration_ms,
				CASE WHEN acc.spent <= ` + budget + ` THEN e.headers::text END, CASE WHEN acc.spent <= ` + budget + ` THEN e.body END,
				e.repeats, e.last_received_at, acc.spent > ` + budget + `
			FROM acc JOIN evidence e ON e.seq = acc.seq ORDER BY e.received_at DESC, e.seq DESC`
	}
	rows, err := db.pool.Query(ctx, query, c.args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list evidence: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.Evidence, error) {
		if filter.BodyBudget <= 0 {
			return scanEvidence(r)
		}
		var omitted bool
		e, err := scanEvidence(withOmitted{r, &omitted})
		if err == nil {
			e.BodyOmitted = omitted
		}
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list evidence: %w", err)
	}
	return out, nil
}

// withOmitted scans a row of ListEvidence's budgeted query: scanEvidence's columns, then whether
// the record's body and headers were left out.
type withOmitted struct {
	pgx.Row
	omitted *bool
}

func (w withOmitted) Scan(dest ...any) error { return w.Row.Scan(append(dest, w.omitted)...) }

// GetEvent returns the event with id, Data byte for byte as committed, or ENOTFOUND.
func (db *DB) GetEvent(ctx context.Context, id string) (*paynotify.Event, error) {
	var (
		e    paynotify.Event
		typ  string
		data *string
	)
	err := db.pool.QueryRow(ctx, `SELECT seq, id, type, app, out_trade_no, version, timestamp, data::text FROM events
		WHERE id = $1`, id).Scan(&e.Seq, &e.ID, &typ, &e.App, &e.OutTradeNo, &e.Version, &e.Timestamp, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound("Event not found.")
	} else if err != nil {
		return nil, fmt.Errorf("postgres: get event: %w", err)
	}
	e.Type = paynotify.EventType(typ)
	e.Timestamp = e.Timestamp.UTC()
	if data != nil {
		e.Data = json.RawMessage(*data)
	}
	return &e, nil
}
