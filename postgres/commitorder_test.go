package postgres_test

import (
	"testing"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/storetest"
)

var _ paynotify.OrderCommitter = (*postgres.DB)(nil)

// TestCommitOrder: the PostgreSQL store reads its batch's orders before it writes, so of two
// decisions of one order in one batch the second loses its compare-and-set.
func TestCommitOrder(t *testing.T) {
	storetest.OrderCommitter(t, func(t *testing.T) storetest.CommitterDB { return MustOpen(t, pgtest.NewSchema(t)) }, false)
}
