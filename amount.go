package paynotify

import (
	"fmt"
	"strconv"
)

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

// ParseYuan parses a yuan amount as the providers write it: ^(0|[1-9]\d*)(\.\d{1,2})?$, nothing
// else (no sign, no exponent, no spaces). It is exact: no floating point is involved.
func ParseYuan(s string) (Amount, error) {
	bad := fmt.Errorf("paynotify: invalid amount %q", s)
	intPart, frac := s, ""
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			intPart, frac = s[:i], s[i+1:]
			if len(frac) == 0 || len(frac) > 2 {
				return 0, bad
			}
			break
		}
	}
	if intPart == "" || len(intPart) > 15 || (len(intPart) > 1 && intPart[0] == '0') {
		return 0, bad
	}
	for _, part := range []string{intPart, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return 0, bad
			}
		}
	}
	yuan, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil {
		return 0, bad
	}
	var fen int64
	if frac != "" {
		fen, _ = strconv.ParseInt(frac, 10, 64)
		if len(frac) == 1 {
			fen *= 10
		}
	}
	return Amount(yuan*100 + fen), nil
}
