package alipay

import (
	"errors"
	"strings"
	"testing"

	"github.com/paynotify/paynotify/internal/testsign"
)

// TestVerifyNotification_EmptyValues: a notification carrying an empty value verifies whether it
// was signed (by openssl) over the canonical string that keeps the empty value as "k=" (the
// official PHP SDK's rule since its commit 49ca4518b) or over the usual one that drops it (the
// Java SDK's), and says which; a tampered one fails both.
func TestVerifyNotification_EmptyValues(t *testing.T) {
	const key = "testdata/shared/test_private_pkcs8.pem"
	v := verifierFor(t, RSA2)
	fields := testsign.AlipayPaid("2014072300007148", "2088102146225135", "T_EMPTY", "88.88")
	fields["body"], fields["passback_params"] = "", ""

	withEmpty := testsign.AlipayNotifyWithEmpty(t, key, fields)
	if !strings.Contains(string(withEmpty), "&body=&") {
		t.Fatalf("the body lacks the empty field: %s", withEmpty)
	}
	n, err := v.VerifyNotification(nil, withEmpty)
	if err != nil || !n.SignedWithEmpty {
		t.Fatalf("signed with empties: %v, SignedWithEmpty=%v", err, n != nil && n.SignedWithEmpty)
	}
	f, err := v.verifyNotificationForm(withEmpty, "")
	if err != nil || !f.SignedWithEmpty() {
		t.Fatalf("form: %v", err)
	}

	without := testsign.AlipayNotify(t, key, fields)
	n, err = v.VerifyNotification(nil, without)
	if err != nil || n.SignedWithEmpty {
		t.Fatalf("signed without empties: %v, SignedWithEmpty=%v", err, n != nil && n.SignedWithEmpty)
	}
	// A pooled form reused after a with-empties message forgets it.
	if err := v.verifyNotificationInto(f, without, ""); err != nil || f.SignedWithEmpty() {
		t.Fatalf("reused form: %v %v", err, f.SignedWithEmpty())
	}

	for name, body := range map[string][]byte{"with empties": withEmpty, "without empties": without} {
		tampered := []byte(strings.Replace(string(body), "total_amount=88.88", "total_amount=0.01", 1))
		if _, err := v.VerifyNotification(nil, tampered); !errors.Is(err, ErrSignature) {
			t.Errorf("%s, tampered: %v, want ErrSignature", name, err)
		}
		// An empty value filled in after signing: neither rule.
		tampered = []byte(strings.Replace(string(body), "&body=&", "&body=x&", 1))
		if _, err := v.VerifyNotification(nil, tampered); !errors.Is(err, ErrSignature) {
			t.Errorf("%s, empty value filled in: %v, want ErrSignature", name, err)
		}
	}

	// Without an empty value there is no second form: a with-empties signature of the same
	// fields is the usual one.
	delete(fields, "body")
	delete(fields, "passback_params")
	if n, err := v.VerifyNotification(nil, testsign.AlipayNotifyWithEmpty(t, key, fields)); err != nil || n.SignedWithEmpty {
		t.Fatalf("no empty values: %v", err)
	}
}
