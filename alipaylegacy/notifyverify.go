package alipaylegacy

import (
	"context"
	"io"
	"net/http"
	"strings"
)

// maxNotifyIDLen bounds a notify_id (34 characters in async notifications, about 70 in returns).
const maxNotifyIDLen = 256

// NotifyVerify asks Alipay whether notifyID is one of its genuine, current notifications (the
// notify_verify or "ATN" check, docs/alipay-legacy.md §9.4): GET
// <NotifyVerifyURL>partner=<PID>&notify_id=<id>, bounded by Config.Timeout. notifyID is sent
// verbatim, never re-encoded: pass Notification.NotifyID as it is (a return's notify_id keeps its
// %2F and %2B, and re-encoding them would ask about another id).
//
// It returns nil only when Alipay answers HTTP 200 with a body that is the four bytes "true",
// followed by nothing but blanks and line endings (" \t\r\n"): not "TRUE", not " true", not
// anything that merely ends in "true" (the official PHP check /true$/i
// is a hole, docs/alipay-legacy.md §13.4). Otherwise it returns a *NotifyVerifyError that matches
//
//   - ErrNotConfirmed for a definite answer other than "true" ("false": unknown or expired,
//     "invalid": bad parameters), or a notify_id that cannot be sent (empty, too long, or holding
//     bytes other than letters, digits, %XX escapes and - _ . ~ / + =). Do not apply the notification.
//   - ErrNotifyVerifyUnavailable, with the cause, for a transport error, a timeout or an HTTP status
//     other than 200. Answer AckFail so that Alipay sends the notification again.
//
// Call it after VerifyNotification succeeded: it is a network call that an unverified message must
// not be able to trigger at will.
func (c *Client) NotifyVerify(ctx context.Context, notifyID string) error {
	if why := checkNotifyID(notifyID); why != "" {
		return &NotifyVerifyError{NotifyID: answerText([]byte(notifyID)), sentinel: ErrNotConfirmed, unsent: why}
	}
	u := c.verifyURL
	if strings.Contains(u, "?") {
		u += "&"
	} else {
		u += "?"
	}
	u += "partner=" + c.partner + "&notify_id=" + notifyID
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return &NotifyVerifyError{NotifyID: notifyID, Err: err, sentinel: ErrNotifyVerifyUnavailable}
	}
	resp, err := c.httpClient.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr // context.DeadlineExceeded for a timeout, whatever the transport wrapped it in
		}
		return &NotifyVerifyError{NotifyID: notifyID, Err: err, sentinel: ErrNotifyVerifyUnavailable}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return &NotifyVerifyError{NotifyID: notifyID, Status: resp.StatusCode, sentinel: ErrNotifyVerifyUnavailable}
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return &NotifyVerifyError{NotifyID: notifyID, Status: resp.StatusCode, Err: err, sentinel: ErrNotifyVerifyUnavailable}
	}
	// Exactly "true", with at most a line ending or trailing blanks after it: both official demos
	// take "true\n" (PHP's /true$/i, Java's first line); trailing blanks neither would, but no
	// other answer means them. Nothing else: not "TRUE" (Java refuses it), " true" or an HTML page.
	if strings.TrimRight(string(body), " \t\r\n") == "true" {
		return nil
	}
	return &NotifyVerifyError{NotifyID: notifyID, Status: resp.StatusCode, Answer: answerText(body), sentinel: ErrNotConfirmed}
}

// checkNotifyID returns why notifyID cannot be appended verbatim to a query, or "". The allowed
// bytes cover every notify_id Alipay sends (hex-like ids, and the base64 of returns with its %2F,
// %2B) and cannot add a parameter or end the query ('&', '#', spaces and controls are refused).
func checkNotifyID(id string) string {
	switch {
	case id == "":
		return "notify_id is empty: nothing to confirm"
	case len(id) > maxNotifyIDLen:
		return "notify_id is longer than 256 bytes"
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case b == '%':
			if i+2 >= len(id) || !isHex(id[i+1]) || !isHex(id[i+2]) {
				return "notify_id holds a '%' that is not a %XX escape"
			}
		case b == '-' || b == '_' || b == '.' || b == '~' || b == '/' || b == '+' || b == '=':
		default:
			return "notify_id holds a byte (" + short(id[i:i+1]) + ") that cannot be sent verbatim"
		}
	}
	return ""
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}
