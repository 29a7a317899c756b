package alipay

import (
	"errors"
	"time"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// Beijing returns the fixed UTC+8 zone of every Alipay timestamp. China has no daylight saving
// time, so a fixed zone is exact, and it does not depend on the host's time zone database.
func Beijing() *time.Location { return alipaywire.Beijing }

// ParseAmount parses an Alipay yuan amount ("88.88", "0.10", "9") into int64 fen. The syntax is
// strictly ^(0|[1-9]\d*)(\.\d{1,2})?$: no sign, no exponent, no spaces, at most two decimals.
// Zero is accepted (notifications carry "0.00"); callers that need a positive amount check it.
func ParseAmount(s string) (int64, error) {
	v, ok := alipaywire.ParseAmount(s)
	if !ok {
		return 0, errors.New("alipay: invalid amount " + alipaywire.Quote(s))
	}
	return v, nil
}

// FormatAmount formats fen as the yuan string Alipay expects, always with two decimals: 1 → "0.01",
// 8888 → "88.88", 900 → "9.00". Negative values are formatted with a leading '-' (Alipay rejects them).
func FormatAmount(fen int64) string {
	var buf [24]byte
	return string(alipaywire.AppendAmount(buf[:0], fen))
}

// ParseTime parses an Alipay timestamp in Beijing time: "yyyy-MM-dd HH:mm:ss", optionally followed by
// 1 to 3 fractional digits (gmt_refund carries milliseconds: "2021-07-14 09:51:36.631").
func ParseTime(s string) (time.Time, error) {
	t, ok := alipaywire.ParseTime(s)
	if !ok {
		return time.Time{}, errors.New("alipay: invalid time " + alipaywire.Quote(s))
	}
	return t, nil
}

// FormatTime formats t as an Alipay timestamp in Beijing time ("2024-01-02 03:04:05"), whatever t's
// own location.
func FormatTime(t time.Time) string {
	return t.In(alipaywire.Beijing).Format(alipaywire.TimeLayout)
}
