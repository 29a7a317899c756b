package alipay

import (
	"errors"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/paynotify/paynotify/internal/testsign"
)

// reencode form-encodes fields in sorted order, sign and sign_type included.
func reencode(fields url.Values) []byte {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(k) + "=" + url.QueryEscape(fields.Get(k)))
	}
	return []byte(b.String())
}

// TestVerifyNotification_Regrouped: the signature covers the fields joined with "&", not where
// each ends, so a genuine notification (signed here by openssl) whose buyer subject is
// "Gift&out_trade_no=T2", with its real out_trade_no folded into notify_type, verifies as an
// order T2's (the control below). VerifyNotification refuses it, and the genuine one, as
// malformed, naming the field; a program using this package alone no longer reads T2 from it. A
// subject holding "&" and "=" without a decision field's name passes.
func TestVerifyNotification_Regrouped(t *testing.T) {
	c := verifierFor(t, RSA2)
	key := "testdata/shared/test_private_pkcs8.pem"
	fields := testsign.AlipayPaid("2021000000000001", "2088000000000001", "T1", "1.00")
	fields["subject"] = "Gift&out_trade_no=T2"
	genuine := testsign.AlipayNotify(t, key, fields)
	q, err := url.ParseQuery(string(genuine))
	if err != nil {
		t.Fatal(err)
	}
	q.Set("notify_type", "trade_status_sync&out_trade_no=T1&receipt_amount="+q.Get("receipt_amount")+
		"&seller_id="+q.Get("seller_id")+"&subject=Gift")
	q.Set("out_trade_no", "T2")
	q.Del("receipt_amount")
	q.Del("seller_id")
	q.Del("subject")
	forged := reencode(q)

	// Control: the forged message verifies (the signature check alone, without the refusal).
	f := new(form)
	if err := c.verifyNotificationInto(f, forged, "application/x-www-form-urlencoded"); err != nil {
		t.Fatalf("control: the regrouped notification does not verify: %v", err)
	}
	if got := f.Value("out_trade_no"); got != "T2" {
		t.Fatalf("control: out_trade_no %q", got)
	}

	for _, tc := range []struct {
		name, holder string
		body         []byte
	}{{"Regrouped", "notify_type", forged}, {"Genuine", "subject", genuine}} {
		n, err := c.VerifyNotification(nil, tc.body)
		var ve *VerifyError
		if n != nil || !errors.As(err, &ve) || !errors.Is(err, ErrMalformed) || ve.Reason != ReasonMalformed ||
			!strings.Contains(ve.Detail, tc.holder+` holds "&out_trade_no="`) {
			t.Errorf("%s: %+v, %v; want ErrMalformed naming %s", tc.name, n, err, tc.holder)
		}
	}

	fields["subject"] = "Tom & Jerry = friends"
	fields["passback_params"] = "a=1&b=2"
	if n, err := c.VerifyNotification(nil, testsign.AlipayNotify(t, key, fields)); err != nil || n.OutTradeNo != "T1" {
		t.Fatalf("an ordinary subject: %+v, %v", n, err)
	}
}
