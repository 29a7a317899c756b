package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/paynotify/paynotify"
)

// ListEvents returns up to filter.Limit (default 100) events with Seq > filter.After, of
// filter.App if set, oldest first. Data is returned byte for byte as committed.
func (db *DB) ListEvents(ctx context.Context, filter paynotify.EventFilter) ([]*paynotify.Event, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT seq, id, type, app, out_trade_no, version, timestamp, data FROM events
		WHERE seq > ?1 AND (?2 = '' OR app = ?2) ORDER BY seq LIMIT ?3`, filter.After, filter.App, limit(filter.Limit))
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

func insertEvidence(ctx context.Context, x execer, e *paynotify.Evidence) error {
	var headers any
	if e.Headers != nil {
		b, err := json.Marshal(e.Headers)
		if err != nil {
			return fmt.Errorf("insert evidence: %w", err)
		}
		headers = string(b)
	}
	if _, err := x.ExecContext(ctx, `INSERT INTO evidence (id, app, provider, received_at, verdict, reason, detail,
		out_trade_no, order_version, answer, duration_ms, headers, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.App, e.Provider, formatTime(e.ReceivedAt), string(e.Verdict), e.Reason, e.Detail, e.OutTradeNo,
		e.OrderVersion, e.Answer, e.DurationMS, headers, nullBytes(e.Body)); err != nil {
		return fmt.Errorf("insert evidence: %w", err)
	}
	return nil
}

// InsertEvidence stores one evidence record outside any order change. Body and Headers are kept
// exactly (a nil Body or Headers reads back nil).
func (db *DB) InsertEvidence(ctx context.Context, e *paynotify.Evidence) error {
	if err := insertEvidence(ctx, db.db, e); err != nil {
		return fmt.Errorf("sqlite: %w", err)
	}
	return nil
}

// ListEvidence returns the evidence records matching filter, newest (ReceivedAt) first.
func (db *DB) ListEvidence(ctx context.Context, filter paynotify.EvidenceFilter) ([]*paynotify.Evidence, error) {
	since := ""
	if !filter.Since.IsZero() {
		since = formatTime(filter.Since)
	}
	rows, err := db.db.QueryContext(ctx, `SELECT id, app, provider, received_at, verdict, reason, detail, out_trade_no,
		order_version, answer, duration_ms, headers, body FROM evidence
		WHERE (?1 = '' OR app = ?1) AND (?2 = '' OR out_trade_no = ?2) AND (?3 = '' OR verdict = ?3)
			AND (?4 = '' OR received_at >= ?4)
		ORDER BY received_at DESC, seq DESC LIMIT ?5`,
		filter.App, filter.OutTradeNo, string(filter.Verdict), since, limit(filter.Limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list evidence: %w", err)
	}
	defer rows.Close()
	out := []*paynotify.Evidence{}
	for rows.Next() {
		var (
			e        paynotify.Evidence
			received string
			headers  sql.NullString
			body     []byte
		)
		if err := rows.Scan(&e.ID, &e.App, &e.Provider, &received, &e.Verdict, &e.Reason, &e.Detail, &e.OutTradeNo,
			&e.OrderVersion, &e.Answer, &e.DurationMS, &headers, &body); err != nil {
			return nil, fmt.Errorf("sqlite: list evidence: %w", err)
		}
		var t time.Time
		if t, err = parseTime(received); err != nil {
			return nil, fmt.Errorf("sqlite: list evidence: %w", err)
		}
		e.ReceivedAt = t
		if headers.Valid {
			if err := json.Unmarshal([]byte(headers.String), &e.Headers); err != nil {
				return nil, fmt.Errorf("sqlite: list evidence: headers: %w", err)
			}
		}
		if body != nil {
			e.Body = body
		}
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list evidence: %w", err)
	}
	return out, nil
}
