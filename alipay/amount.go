package alipay

import (
	"errors"
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
// strictly ^(0|[1-9]\d*)(\.\d{1,2})?$: no sign, no exponent, no spaces, at most two decimals.
// Zero is accepted (notifications carry "0.00"); callers that need a positive amount check it.
func ParseAmount(s string) (int64, error) {
	if len(s) == 0 || len(s) > 20 {
		return 0, errAmount(s)
	}
	intPart, frac := s, ""
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			intPart, frac = s[:i], s[i+1:]
			if len(frac) == 0 || len(frac) > 2 {
				return 0, errAmount(s)
			}
			break
		}
	}
	if len(intPart) == 0 || (len(intPart) > 1 && intPart[0] == '0') {
		return 0, errAmount(s)
	}
	var v int64
	for i := 0; i < len(intPart); i++ {
		c := intPart[i]
		if c < '0' || c > '9' {
			return 0, errAmount(s)
		}
		v = v*10 + int64(c-'0')
		if v > maxAmount {
			return 0, errAmount(s)
		}
	}
	v *= 100
	for i, mul := 0, int64(10); i < len(frac); i, mul = i+1, mul/10 {
		c := frac[i]
		if c < '0' || c > '9' {
			return 0, errAmount(s)
		}
		v += int64(c-'0') * mul
	}
	return v, nil
}

func errAmount(s string) error {
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	return errors.New("alipay: invalid amount " + strconv.Quote(s))
}

// FormatAmount formats fen as the yuan string Alipay expects, always with two decimals: 1 → "0.01",
// 8888 → "88.88", 900 → "9.00". Negative values are formatted with a leading '-' (Alipay rejects them).
func FormatAmount(fen int64) string {
	var buf [24]byte
	return string(appendAmount(buf[:0], fen))
}

func appendAmount(b []byte, fen int64) []byte {
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
func ParseTime(s string) (time.Time, error) {
	n := len(TimeLayout)
	if len(s) < n || (len(s) > n && (s[n] != '.' || len(s) < n+2 || len(s) > n+4)) {
		return time.Time{}, errTime(s)
	}
	for i := n + 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, errTime(s)
		}
	}
	t, err := time.ParseInLocation(TimeLayout, s, Beijing)
	if err != nil {
		return time.Time{}, errTime(s)
	}
	return t, nil
}

func errTime(s string) error {
	if len(s) > 32 {
		s = s[:32] + "…"
	}
	return errors.New("alipay: invalid time " + strconv.Quote(s))
}

// FormatTime formats t as an Alipay timestamp in Beijing time ("2024-01-02 03:04:05"), whatever t's
// own location.
func FormatTime(t time.Time) string {
	return t.In(Beijing).Format(TimeLayout)
}
