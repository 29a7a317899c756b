package paynotify_test

import (
	"math"
	"testing"

	"github.com/paynotify/paynotify"
)

// TestRefundWouldExceed: a new refund is refused when it would take the order past its amount,
// however large it is (the sum must not wrap around int64).
func TestRefundWouldExceed(t *testing.T) {
	for _, tc := range []struct {
		orderAmount, refunded, nonFailed, pending, amount int64
		want                                              bool
	}{
		{1000, 300, 300, 0, 700, false},
		{1000, 300, 300, 0, 701, true},
		{1000, 0, 400, 400, 600, false},
		{1000, 0, 400, 400, 601, true},
		{1000, 300, 300, 0, math.MaxInt64, true},
		{1000, 0, 0, 0, math.MaxInt64 - 100, true},
		{math.MaxInt64, 10, 10, 0, math.MaxInt64, true},
		{math.MaxInt64, 10, 10, 0, math.MaxInt64 - 10, false},
	} {
		if got := paynotify.RefundWouldExceed(tc.orderAmount, tc.refunded, tc.nonFailed, tc.pending, tc.amount); got != tc.want {
			t.Errorf("RefundWouldExceed(%d, %d, %d, %d, %d) = %v, want %v", tc.orderAmount, tc.refunded, tc.nonFailed, tc.pending, tc.amount, got, tc.want)
		}
	}
}
