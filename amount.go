package paynotify

import "fmt"

// Amount is a sum of money in fen (1/100 yuan, the smallest unit of CNY). Money is never a float.
type Amount int64

// String formats the amount in yuan with two decimals ("12.34").
func (a Amount) String() string {
	neg := ""
	v := int64(a)
	if v < 0 {
		neg, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%02d", neg, v/100, v%100)
}
