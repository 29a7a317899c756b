package sandbox

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// store is the sandbox's own SQLite state. Each row keeps its record as JSON beside the few
// columns it is looked up by: the sandbox's records change shape with the simulation, and nothing
// outside the sandbox reads the file. All writes happen under Sandbox.mu, so read-modify-write
// sequences are atomic without SQL transactions.
type store struct {
	db *sql.DB
}

const schema = `
CREATE TABLE IF NOT EXISTS alipay_apps (app_id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS wechat_merchants (mch_id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trades (
	id INTEGER PRIMARY KEY,
	provider TEXT NOT NULL,
	app_id TEXT NOT NULL,
	out_trade_no TEXT NOT NULL,
	trade_no TEXT NOT NULL,
	token TEXT NOT NULL,
	data TEXT NOT NULL,
	UNIQUE (provider, app_id, out_trade_no)
);
CREATE INDEX IF NOT EXISTS trades_out ON trades (out_trade_no);
CREATE INDEX IF NOT EXISTS trades_token ON trades (token);
CREATE TABLE IF NOT EXISTS refunds (
	id INTEGER PRIMARY KEY,
	trade_id INTEGER NOT NULL,
	out_request_no TEXT NOT NULL,
	data TEXT NOT NULL,
	UNIQUE (trade_id, out_request_no)
);
CREATE TABLE IF NOT EXISTS notifications (
	id INTEGER PRIMARY KEY,
	trade_id INTEGER NOT NULL,
	status TEXT NOT NULL,
	data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_trade ON notifications (trade_id);
CREATE TABLE IF NOT EXISTS attempts (
	id INTEGER PRIMARY KEY,
	notification_id INTEGER NOT NULL,
	trade_id INTEGER NOT NULL,
	data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_trade ON attempts (trade_id);
CREATE TABLE IF NOT EXISTS faults (scope TEXT PRIMARY KEY, data TEXT NOT NULL);
`

func openStore(dir string) (*store, error) {
	path := filepath.Join(dir, "sandbox.db")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sandbox: open state: %w", err)
	}
	f.Close()
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return nil, fmt.Errorf("sandbox: open state: %w", err)
	}
	// One connection: every write is serialised by Sandbox.mu anyway, and reads then always see
	// the last write.
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("sandbox: create schema: %w", err)
	}
	return &store{db: db}, nil
}

func (st *store) close() error { return st.db.Close() }

var errNotFound = errors.New("sandbox: not found")

func (st *store) putKV(table, keyCol, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = st.db.Exec(`INSERT INTO `+table+` (`+keyCol+`, data) VALUES (?, ?) ON CONFLICT (`+keyCol+`) DO UPDATE SET data = excluded.data`, key, string(b))
	if err != nil {
		return fmt.Errorf("sandbox: save %s: %w", table, err)
	}
	return nil
}

func (st *store) getKV(table, keyCol, key string, v any) error {
	var data string
	err := st.db.QueryRow(`SELECT data FROM `+table+` WHERE `+keyCol+` = ?`, key).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return errNotFound
	}
	if err != nil {
		return fmt.Errorf("sandbox: load %s: %w", table, err)
	}
	return json.Unmarshal([]byte(data), v)
}

func (st *store) deleteKV(table, keyCol, key string) error {
	_, err := st.db.Exec(`DELETE FROM `+table+` WHERE `+keyCol+` = ?`, key)
	return err
}

// saveTrade inserts t (ID 0) or updates it.
func (st *store) saveTrade(t *Trade) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if t.ID == 0 {
		key := t.AppID
		if t.Provider == ProviderWechatpay {
			key = t.MchID // WeChat trades are unique per merchant
		}
		res, err := st.db.Exec(`INSERT INTO trades (provider, app_id, out_trade_no, trade_no, token, data) VALUES (?, ?, ?, ?, ?, ?)`,
			t.Provider, key, t.OutTradeNo, t.TradeNo, t.Token, string(b))
		if err != nil {
			return fmt.Errorf("sandbox: insert trade: %w", err)
		}
		t.ID, _ = res.LastInsertId()
		return st.saveTrade(t) // store the id inside the record too
	}
	_, err = st.db.Exec(`UPDATE trades SET trade_no = ?, token = ?, data = ? WHERE id = ?`, t.TradeNo, t.Token, string(b), t.ID)
	if err != nil {
		return fmt.Errorf("sandbox: update trade: %w", err)
	}
	return nil
}

func (st *store) tradesWhere(where string, args ...any) ([]*Trade, error) {
	rows, err := st.db.Query(`SELECT data FROM trades `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("sandbox: query trades: %w", err)
	}
	defer rows.Close()
	var out []*Trade
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		t := new(Trade)
		if err := json.Unmarshal([]byte(data), t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func (st *store) tradeWhere(where string, args ...any) (*Trade, error) {
	ts, err := st.tradesWhere(where+" ORDER BY id DESC LIMIT 1", args...)
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, errNotFound
	}
	return ts[0], nil
}

func (st *store) saveRefund(r *Refund) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if r.ID == 0 {
		res, err := st.db.Exec(`INSERT INTO refunds (trade_id, out_request_no, data) VALUES (?, ?, ?)`, r.TradeID, r.OutRequestNo, string(b))
		if err != nil {
			return fmt.Errorf("sandbox: insert refund: %w", err)
		}
		r.ID, _ = res.LastInsertId()
		return st.saveRefund(r)
	}
	_, err = st.db.Exec(`UPDATE refunds SET data = ? WHERE id = ?`, string(b), r.ID)
	return err
}

func (st *store) refundsWhere(where string, args ...any) ([]*Refund, error) {
	rows, err := st.db.Query(`SELECT data FROM refunds `+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("sandbox: query refunds: %w", err)
	}
	defer rows.Close()
	var out []*Refund
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		r := new(Refund)
		if err := json.Unmarshal([]byte(data), r); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (st *store) saveNotification(n *Notification) error {
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	if n.ID == 0 {
		res, err := st.db.Exec(`INSERT INTO notifications (trade_id, status, data) VALUES (?, ?, ?)`, n.TradeID, n.Status, string(b))
		if err != nil {
			return fmt.Errorf("sandbox: insert notification: %w", err)
		}
		n.ID, _ = res.LastInsertId()
		return st.saveNotification(n)
	}
	_, err = st.db.Exec(`UPDATE notifications SET status = ?, data = ? WHERE id = ?`, n.Status, string(b), n.ID)
	return err
}

func (st *store) notificationsWhere(where string, args ...any) ([]*Notification, error) {
	rows, err := st.db.Query(`SELECT data FROM notifications `+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("sandbox: query notifications: %w", err)
	}
	defer rows.Close()
	var out []*Notification
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		n := new(Notification)
		if err := json.Unmarshal([]byte(data), n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

func (st *store) insertAttempt(a *Attempt) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	res, err := st.db.Exec(`INSERT INTO attempts (notification_id, trade_id, data) VALUES (?, ?, ?)`, a.NotificationID, a.TradeID, string(b))
	if err != nil {
		return fmt.Errorf("sandbox: insert attempt: %w", err)
	}
	a.ID, _ = res.LastInsertId()
	return nil
}

func (st *store) attemptsWhere(where string, args ...any) ([]*Attempt, error) {
	rows, err := st.db.Query(`SELECT id, data FROM attempts `+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("sandbox: query attempts: %w", err)
	}
	defer rows.Close()
	var out []*Attempt
	for rows.Next() {
		var id int64
		var data string
		if err := rows.Scan(&id, &data); err != nil {
			return nil, err
		}
		a := new(Attempt)
		if err := json.Unmarshal([]byte(data), a); err != nil {
			return nil, err
		}
		a.ID = id
		out = append(out, a)
	}
	return out, rows.Err()
}

// reset deletes trades, refunds, notifications, attempts and faults (everything but keys and
// registrations); with tradeIDs, only those trades' records.
func (st *store) reset(tradeIDs []int64) error {
	if tradeIDs == nil {
		for _, t := range []string{"trades", "refunds", "notifications", "attempts", "faults"} {
			if _, err := st.db.Exec(`DELETE FROM ` + t); err != nil {
				return fmt.Errorf("sandbox: reset: %w", err)
			}
		}
		return nil
	}
	for _, id := range tradeIDs {
		for _, q := range []string{
			`DELETE FROM trades WHERE id = ?`, `DELETE FROM refunds WHERE trade_id = ?`,
			`DELETE FROM notifications WHERE trade_id = ?`, `DELETE FROM attempts WHERE trade_id = ?`,
		} {
			if _, err := st.db.Exec(q, id); err != nil {
				return fmt.Errorf("sandbox: reset: %w", err)
			}
		}
	}
	return nil
}
