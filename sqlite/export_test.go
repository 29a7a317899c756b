package sqlite

import "database/sql"

// SQL exposes the handle to the tests of this directory (the single connection, so PRAGMAs read
// there are the store's own).
func (db *DB) SQL() *sql.DB { return db.db }
