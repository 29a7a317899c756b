package paynotify_test

import (
	"math"
	"testing"

	"github.com/paynotify/paynotify"
)

// TestRefundBound: a new refund is refused when it would take the order past its amount, however
// large it is (the sum must not wrap around int64): EINVALID when it does not fit beside what is
// certainly committed, ECONFLICT (ask again) when only pending refunds that the provider's
// refunded total may already count stand in its way.
func TestRefundBound(t *testing.T) {
	const ok, invalid, conflict = "", paynotify.EINVALID, paynotify.ECONFLICT
	for _, tc := range []struct {
		orderAmount, refunded, nonFailed, pending, amount int64
		want                                              string
	}{
		{1000, 300, 300, 0, 700, ok},
		{1000, 300, 300, 0, 701, invalid},
		{1000, 0, 400, 400, 600, ok},
		// Our R1 of 400 pending: 601 fits if it fails (ask again), 1001 never.
		{1000, 0, 400, 400, 601, conflict},
		{1000, 0, 400, 400, 1001, invalid},
		// Our R1 of 400 succeeded (the provider's total has it): 601 does not fit.
		{1000, 400, 400, 0, 601, invalid},
		// A portal refund of 500 (refunded, no record) beside a pending one of ours of 300.
		{1000, 500, 300, 300, 200, ok},
		{1000, 500, 300, 300, 201, conflict},
		{1000, 500, 300, 300, 501, invalid},
		// Alipay: R2's answer came first with refund_fee 600, the running total counting R1's 300,
		// whose own answer has not come back (still pending). 400 more fits once R1 is settled.
		{1000, 600, 600, 300, 400, conflict},
		{1000, 600, 600, 300, 401, invalid},
		// Alipay: ours of 750 succeeded while the order's total is held back at 500 (an amount
		// not yet confirmed), 250 pending: 250 more would make 1250 (a reviewer's finding).
		{1000, 500, 1000, 250, 250, conflict},
		{1000, 500, 1000, 250, 251, invalid},
		{1000, 300, 300, 0, math.MaxInt64, invalid},
		{1000, 0, 0, 0, math.MaxInt64 - 100, invalid},
		{math.MaxInt64, 10, 10, 0, math.MaxInt64, invalid},
		{math.MaxInt64, 10, 10, 0, math.MaxInt64 - 10, ok},
	} {
		err := paynotify.RefundBound(tc.orderAmount, tc.refunded, tc.nonFailed, tc.pending, tc.amount)
		if got := paynotify.ErrorCode(err); (err == nil) != (tc.want == ok) || err != nil && got != tc.want {
			t.Errorf("RefundBound(%d, %d, %d, %d, %d) = %v, want %q", tc.orderAmount, tc.refunded, tc.nonFailed, tc.pending, tc.amount, err, tc.want)
		}
	}
}
