package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// Prepared statements of the hot paths. SQLite compiles a statement before running it, and for
// the short statements of a notification compiling costs more than running: the write path's
// statements are prepared once on the write connection (database/sql reuses them inside every
// transaction on it, Tx.StmtContext) and GetOrder's on the read pool (prepared once per read
// connection). They are prepared on first use (the tables exist only after Migrate), and the
// write path's before its transaction begins: preparing on the write pool inside a transaction
// would wait for the connection that transaction holds.
type statements struct {
	savepoint, rollbackTo, release   *sql.Stmt
	batchSavepoint, rollbackBatch    *sql.Stmt
	updateOrder                      *sql.Stmt
	orderExists                      *sql.Stmt
	insertOrder, selectOrder         *sql.Stmt
	insertAnomaly                    *sql.Stmt
	insertEvent                      *sql.Stmt
	insertEvidence                   *sql.Stmt
	repeatEvidence, repeatEvidenceIf *sql.Stmt

	getOrder *sql.Stmt // on the read pool
}

const (
	selectOrderSQL = `SELECT ` + orderColumns + ` FROM orders WHERE app = ? AND out_trade_no = ?`
	insertOrderSQL = `INSERT INTO orders (` + orderColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (app, out_trade_no) DO NOTHING`
	// An order's state: what a Commit moves (its terms are fixed at CreateOrder).
	updateOrderSQL = `UPDATE orders SET status = ?1, refunded_amount = ?2, provider_trade_no = ?3, version = ?4,
		paid_at = ?5, next_check_at = CASE WHEN ?1 = 'pending' THEN next_check_at WHEN ?1 = 'closed' THEN ?9 END
		WHERE app = ?6 AND out_trade_no = ?7 AND version = ?8`
	orderExistsSQL   = `SELECT 1 FROM orders WHERE app = ? AND out_trade_no = ?`
	insertAnomalySQL = `INSERT INTO anomalies (app, out_trade_no, key, reason, event_id, created_at)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (app, out_trade_no, key) DO NOTHING`
	insertEventSQL = `INSERT INTO events (id, type, app, out_trade_no, version, timestamp, data)
		VALUES (?, ?, ?, ?, ?, ?, ?)`
	insertEvidenceSQL = `INSERT INTO evidence (` + evidenceWriteColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// A repeat (paynotify.Change.Repeat): the time is text of one width, so max() is the later.
	repeatEvidenceSQL = `UPDATE evidence SET repeats = repeats + 1, last_received_at = max(coalesce(last_received_at, ''), ?)
		WHERE id = ? AND verdict = 'duplicate'`
	// A repeat while the order is at the version it was decided at (paynotify.Change.RepeatVersion).
	repeatEvidenceIfSQL = `UPDATE evidence SET repeats = repeats + 1, last_received_at = max(coalesce(last_received_at, ''), ?1)
		WHERE id = ?2 AND verdict = 'duplicate'
		AND EXISTS (SELECT 1 FROM orders WHERE app = ?3 AND out_trade_no = ?4 AND version = ?5)`
)

// prepare prepares the statements: the write path's on w, GetOrder's on rd.
func prepare(ctx context.Context, w, rd *sql.DB) (*statements, error) {
	s := &statements{}
	for _, p := range []struct {
		db  *sql.DB
		dst **sql.Stmt
		sql string
	}{
		{w, &s.savepoint, `SAVEPOINT op`},
		{w, &s.rollbackTo, `ROLLBACK TO op`},
		{w, &s.release, `RELEASE op`},
		{w, &s.batchSavepoint, `SAVEPOINT batch`},
		{w, &s.rollbackBatch, `ROLLBACK TO batch`},
		{w, &s.updateOrder, updateOrderSQL},
		{w, &s.orderExists, orderExistsSQL},
		{w, &s.insertOrder, insertOrderSQL},
		{w, &s.selectOrder, selectOrderSQL},
		{w, &s.insertAnomaly, insertAnomalySQL},
		{w, &s.insertEvent, insertEventSQL},
		{w, &s.insertEvidence, insertEvidenceSQL},
		{w, &s.repeatEvidence, repeatEvidenceSQL},
		{w, &s.repeatEvidenceIf, repeatEvidenceIfSQL},
		{rd, &s.getOrder, selectOrderSQL},
	} {
		st, err := p.db.PrepareContext(ctx, p.sql)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("prepare %q: %w", p.sql, err)
		}
		*p.dst = st
	}
	return s, nil
}

// statements returns the prepared statements, preparing them the first time. It must not be
// called while holding the write connection.
func (db *DB) statements(ctx context.Context) (*statements, error) {
	if st := db.stmts.Load(); st != nil {
		return st, nil // every call after the first: no lock on the order read's path
	}
	db.stmtMu.Lock()
	defer db.stmtMu.Unlock()
	if db.stmts.Load() == nil {
		s, err := prepare(ctx, db.db, db.rd)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %w", err)
		}
		db.stmts.Store(s)
	}
	return db.stmts.Load(), nil
}

func (s *statements) close() {
	for _, st := range []*sql.Stmt{s.savepoint, s.rollbackTo, s.release, s.batchSavepoint, s.rollbackBatch, s.updateOrder, s.orderExists, s.insertOrder,
		s.selectOrder, s.insertAnomaly, s.insertEvent, s.insertEvidence, s.repeatEvidence, s.repeatEvidenceIf, s.getOrder} {
		if st != nil {
			st.Close()
		}
	}
}
