package postgres

import (
	"context"
	"encoding/json"
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
		WHERE seq > $1 AND ($2 = '' OR app = $2) ORDER BY seq LIMIT $3`, filter.After, filter.App, limit(filter.Limit))
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

func insertEvidence(ctx context.Context, x execer, e *paynotify.Evidence) error {
	var headers *string
	if e.Headers != nil {
		b, err := json.Marshal(e.Headers)
		if err != nil {
			return fmt.Errorf("insert evidence: %w", err)
		}
		s := string(b)
		headers = &s
	}
	var body []byte
	if e.Body != nil {
		body = e.Body
	}
	if _, err := x.Exec(ctx, `INSERT INTO evidence (id, app, provider, received_at, verdict, reason, detail,
		out_trade_no, order_version, answer, duration_ms, headers, body)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::jsonb, $13)`,
		e.ID, e.App, e.Provider, tm(e.ReceivedAt), string(e.Verdict), e.Reason, e.Detail, e.OutTradeNo,
		e.OrderVersion, e.Answer, e.DurationMS, headers, body); err != nil {
		return fmt.Errorf("insert evidence: %w", err)
	}
	return nil
}

// InsertEvidence stores one evidence record outside any order change. Body is kept byte for
// byte and Headers as a value (a nil Body or Headers reads back nil).
func (db *DB) InsertEvidence(ctx context.Context, e *paynotify.Evidence) error {
	if err := insertEvidence(ctx, db.pool, e); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// ListEvidence returns the evidence records matching filter, newest (ReceivedAt) first.
func (db *DB) ListEvidence(ctx context.Context, filter paynotify.EvidenceFilter) ([]*paynotify.Evidence, error) {
	var since *time.Time
	if !filter.Since.IsZero() {
		s := tm(filter.Since)
		since = &s
	}
	rows, err := db.pool.Query(ctx, `SELECT id, app, provider, received_at, verdict, reason, detail, out_trade_no,
		order_version, answer, duration_ms, headers::text, body FROM evidence
		WHERE ($1 = '' OR app = $1) AND ($2 = '' OR out_trade_no = $2) AND ($3 = '' OR verdict = $3)
			AND ($4::timestamptz IS NULL OR received_at >= $4)
		ORDER BY received_at DESC, seq DESC LIMIT $5`,
		filter.App, filter.OutTradeNo, string(filter.Verdict), since, limit(filter.Limit))
	if err != nil {
		return nil, fmt.Errorf("postgres: list evidence: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*paynotify.Evidence, error) {
		var (
			e       paynotify.Evidence
			verdict string
			headers *string
			body    []byte
		)
		if err := r.Scan(&e.ID, &e.App, &e.Provider, &e.ReceivedAt, &verdict, &e.Reason, &e.Detail, &e.OutTradeNo,
			&e.OrderVersion, &e.Answer, &e.DurationMS, &headers, &body); err != nil {
			return nil, err
		}
		e.Verdict = paynotify.Verdict(verdict)
		e.ReceivedAt = e.ReceivedAt.UTC()
		if headers != nil {
			if err := json.Unmarshal([]byte(*headers), &e.Headers); err != nil {
				return nil, fmt.Errorf("headers: %w", err)
			}
		}
		if body != nil {
			e.Body = body
		}
		return &e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list evidence: %w", err)
	}
	return out, nil
}
