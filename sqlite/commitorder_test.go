package sqlite_test

import (
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/sqlite"
	"github.com/paynotify/paynotify/storetest"
)

var _ paynotify.OrderCommitter = (*sqlite.DB)(nil)

// TestCommitOrder: the SQLite store reads the order inside its one writer's transaction, so two
// decisions of one order in one batch are made in turn.
func TestCommitOrder(t *testing.T) {
	storetest.OrderCommitter(t, func(t *testing.T) storetest.CommitterDB { return MustOpen(t, tempPath(t)) }, true)
}
