package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/paynotify/paynotify"
)

// ListEvents returns up to filter.Limit (default 100) events with Seq > filter.After, of
// filter.App if set, oldest first. Data is returned byte for byte as committed.
func (db *DB) ListEvents(ctx context.Context, filter paynotify.EventFilter) ([]*paynotify.Event, error) {
	rows, err := db.rd.QueryContext(ctx, `SELECT seq, id, type, app, out_trade_no, version, timestamp, data FROM events
		WHERE seq > ?1 AND (?2 = '' OR app = ?2) AND (?4 = '' OR out_trade_no = ?4) ORDER BY seq LIMIT ?3`,
		filter.After, filter.App, limit(filter.Limit), filter.OutTradeNo)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list events: %w", err)
	}
	defer rows.Close()
	out := []*paynotify.Event{}
	for rows.Next() {
		var (
			e    paynotify.Event
			ts   string
			data sql.NullString
		)
		if err := rows.Scan(&e.Seq, &e.ID, &e.Type, &e.App, &e.OutTradeNo, &e.Version, &ts, &data); err != nil {
			return nil, fmt.Errorf("sqlite: list events: %w", err)
		}
		if e.Timestamp, err = parseTime(ts); err != nil {
			return nil, fmt.Errorf("sqlite: list events: %w", err)
		}
		if data.Valid {
			e.Data = json.RawMessage(data.String)
		}
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list events: %w", err)
	}
	return out, nil
}

// execer is *sql.DB or *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// evidenceWriteColumns are the columns insertEvidence writes, in its order; evidenceColumns,
// those scanEvidence reads, add the repeats (Change.Repeat).
const (
	evidenceWriteColumns = `id, app, provider, source, endpoint, reprocessed_from, received_at, verdict, reason, detail,
	out_trade_no, order_version, answer, duration_ms, headers, body`
	evidenceColumns = evidenceWriteColumns + `, repeats, last_received_at`
)

// evidenceHeaders is e's headers as the headers column keeps them: JSON, or NULL for nil
// Headers. Callers make it before handing their write to the writer, so that the batches, which
// run one at a time, do not spend their time on it.
func evidenceHeaders(e *paynotify.Evidence) (any, error) {
	if e == nil || e.Headers == nil {
		return nil, nil
	}
	b, err := json.Marshal(e.Headers)
	if err != nil {
		return nil, fmt.Errorf("insert evidence: %w", err)
	}
	return string(b), nil
}

// insertEvidence stores e, with headers from evidenceHeaders(e); an empty Source is stored as
// paynotify.SourceNotification.
func insertEvidence(ctx context.Context, tx *sql.Tx, st *statements, e *paynotify.Evidence, headers any) error {
	source := e.Source
	if source == "" {
		source = paynotify.SourceNotification
	}
	if _, err := tx.StmtContext(ctx, st.insertEvidence).ExecContext(ctx,
		e.ID, e.App, e.Provider, source, e.Endpoint, e.ReprocessedFrom, formatTime(e.ReceivedAt), string(e.Verdict),
		paynotify.StorableText(e.Reason), paynotify.StorableText(e.Detail), paynotify.StorableText(e.OutTradeNo), e.OrderVersion,
		paynotify.StorableText(e.Answer), e.DurationMS, headers, nullBytes(e.Body)); err != nil {
		return fmt.Errorf("insert evidence: %w", err)
	}
	return nil
}

func scanEvidence(s scanner) (*paynotify.Evidence, error) {
	var (
		e        paynotify.Evidence
		received string
		headers  sql.NullString
		body     []byte
		last     sql.NullString
	)
	if err := s.Scan(&e.ID, &e.App, &e.Provider, &e.Source, &e.Endpoint, &e.ReprocessedFrom, &received, &e.Verdict,
		&e.Reason, &e.Detail, &e.OutTradeNo, &e.OrderVersion, &e.Answer, &e.DurationMS, &headers, &body,
		&e.Repeats, &last); err != nil {
		return nil, err
	}
	var err error
	if e.ReceivedAt, err = parseTime(received); err != nil {
		return nil, err
	}
	if last.Valid {
		if e.LastReceivedAt, err = parseTime(last.String); err != nil {
			return nil, err
		}
	}
	if headers.Valid {
		if err := json.Unmarshal([]byte(headers.String), &e.Headers); err != nil {
			return nil, fmt.Errorf("headers: %w", err)
		}
	}
	if body != nil {
		e.Body = body
	}
	return &e, nil
}

// InsertEvidence stores one evidence record outside any order change. Body and Headers are kept
// exactly (a nil Body or Headers reads back nil); an empty Source is stored as
// paynotify.SourceNotification.
func (db *DB) InsertEvidence(ctx context.Context, e *paynotify.Evidence) error {
	headers, err := evidenceHeaders(e)
	if err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return db.w.Do(ctx, func(ctx context.Context, tx *sql.Tx, st *statements) error {
		if err := insertEvidence(ctx, tx, st, e, headers); err != nil {
			return fmt.Errorf("sqlite: %w", err)
		}
		return nil
	})
}

// GetEvidence returns the evidence record with id, or an *paynotify.Error with code ENOTFOUND.
func (db *DB) GetEvidence(ctx context.Context, id string) (*paynotify.Evidence, error) {
	e, err := scanEvidence(db.rd.QueryRowContext(ctx, `SELECT `+evidenceColumns+` FROM evidence WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Evidence not found.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get evidence: %w", err)
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
			c.add(f.column+" = ?", f.value)
		}
	}
	if !filter.Since.IsZero() {
		c.add("received_at >= ?", formatTime(filter.Since))
	}
	query, args := `SELECT `+evidenceColumns+` FROM evidence`+c.where()+`
		ORDER BY received_at DESC, seq DESC LIMIT ?`, append(c.args, limit(filter.Limit))
	if filter.BodyBudget > 0 {
		// The page's sizes first (length() of a BLOB and octet_length() of a UTF-8 TEXT read
		// the record's header, not the value; an empty body is NULL), then the bodies and
		// headers of the records within the budget only: SQLite reads a column when a CASE
		// takes it.
		query = `WITH page AS (SELECT seq, received_at, coalesce(length(body), 0) + coalesce(octet_length(headers), 0) AS sz FROM evidence` + c.where() + `
				ORDER BY received_at DESC, seq DESC LIMIT ?),
			acc AS (SELECT seq, sum(sz) OVER (ORDER BY received_at DESC, seq DESC ROWS UNBOUNDED PRECEDING) AS spent FROM page)
			SELECT e.id, e.app, e.provider, e.source, e.endpoint, e.reprocessed_from, e.received_at, e.verdict, e.reason, e.detail,
				e.out_trade_no, e.order_version, e.answer, e.duration_ms,
				CASE WHEN acc.spent <= ? THEN e.headers END, CASE WHEN acc.spent <= ? THEN e.body END, e.repeats, e.last_received_at,
				acc.spent > ?
			FROM acc JOIN evidence e ON e.seq = acc.seq ORDER BY e.received_at DESC, e.seq DESC`
		args = append(args, filter.BodyBudget, filter.BodyBudget, filter.BodyBudget)
	}
	rows, err := db.rd.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list evidence: %w", err)
	}
	defer rows.Close()
	out := []*paynotify.Evidence{}
	for rows.Next() {
		var s scanner = rows
		var omitted bool
		if filter.BodyBudget > 0 {
			s = withOmitted{rows, &omitted}
		}
		e, err := scanEvidence(s)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list evidence: %w", err)
		}
		e.BodyOmitted = omitted
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list evidence: %w", err)
	}
	return out, nil
}

// withOmitted scans a row of ListEvidence's budgeted query: scanEvidence's columns, then whether
// the record's body and headers were left out.
type withOmitted struct {
	s       scanner
	omitted *bool
}

func (w withOmitted) Scan(dest ...any) error { return w.s.Scan(append(dest, w.omitted)...) }

// GetEvent returns the event with id, Data byte for byte as committed, or ENOTFOUND.
func (db *DB) GetEvent(ctx context.Context, id string) (*paynotify.Event, error) {
	var (
		e    paynotify.Event
		ts   string
		data sql.NullString
	)
	err := db.rd.QueryRowContext(ctx, `SELECT seq, id, type, app, out_trade_no, version, timestamp, data FROM events
		WHERE id = ?`, id).Scan(&e.Seq, &e.ID, &e.Type, &e.App, &e.OutTradeNo, &e.Version, &ts, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("Event not found.")
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get event: %w", err)
	}
	if e.Timestamp, err = parseTime(ts); err != nil {
		return nil, fmt.Errorf("sqlite: get event: %w", err)
	}
	if data.Valid {
		e.Data = json.RawMessage(data.String)
	}
	return &e, nil
}
