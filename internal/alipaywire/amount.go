package alipaywire

import (
	"strconv"
	"time"
)

// Beijing is the fixed UTC+8 zone of every Alipay timestamp. China has no daylight saving time, so a
// fixed zone is exact, and it does not depend on the host's time zone database.
var Beijing = time.FixedZone("CST", 8*3600)

// TimeLayout is the layout of Alipay timestamps ("yyyy-MM-dd HH:mm:ss", Beijing time).
const TimeLayout = "2006-01-02 15:04:05"

// maxAmount bounds parsed amounts so that fen arithmetic can never overflow int64.
const maxAmount = 1 << 53

// ParseAmount parses an Alipay yuan amount ("88.88", "0.10", "9") into int64 fen. The syntax is
// strictly ^(0|[1-9]\d*)(\.\d{1,2})?$: no sign, no exponent, no spaces, at most two decimals, no
// floating point anywhere. Zero is accepted.
func ParseAmount(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 20 {
		return 0, false
	}
	intPart, frac := s, ""
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			intPart, frac = s[:i], s[i+1:]
			if len(frac) == 0 || len(frac) > 2 {
				return 0, false
			}
			break
		}
	}
	if len(intPart) == 0 || (len(intPart) > 1 && intPart[0] == '0') {
		return 0, false
	}
	var v int64
	for i := 0; i < len(intPart); i++ {
		c := intPart[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
		if v > maxAmount {
			return 0, false
		}
	}
	v *= 100
	for i, mul := 0, int64(10); i < len(frac); i, mul = i+1, mul/10 {
		c := frac[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v += int64(c-'0') * mul
	}
	return v, true
}

// AppendAmount appends fen as a yuan string with two decimals (1 → "0.01", 900 → "9.00"); a
// negative value gets a leading '-'.
func AppendAmount(b []byte, fen int64) []byte {
	u := uint64(fen)
	if fen < 0 {
		b = append(b, '-')
		u = uint64(-fen)
	}
	b = strconv.AppendUint(b, u/100, 10)
	c := u % 100
	return append(b, '.', byte('0'+c/10), byte('0'+c%10))
}

// ParseTime parses an Alipay timestamp in Beijing time: "yyyy-MM-dd HH:mm:ss", optionally followed by
// 1 to 3 fractional digits (gmt_refund carries milliseconds: "2021-07-14 09:51:36.631").
func ParseTime(s string) (time.Time, bool) {
	n := len(TimeLayout)
	if len(s) < n || (len(s) > n && (s[n] != '.' || len(s) < n+2 || len(s) > n+4)) {
		return time.Time{}, false
	}
	for i := n + 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, false
		}
	}
	t, err := time.ParseInLocation(TimeLayout, s, Beijing)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

// Quote returns s quoted for an error message, cut to 32 bytes ("…" after the cut).
func Quote(s string) string {
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	return strconv.Quote(s)
}
