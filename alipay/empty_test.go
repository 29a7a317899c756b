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

// TestVerifyNotification_JavaWhitespace: Alipay's Java signer leaves out a value made only of
// what Character.isWhitespace counts (a full-width space U+3000, U+2003…), which our usual
// canonical string (ASCII blanks only) keeps. Such a notification, signed by openssl without the
// field, verifies on a further try; a no-break space (which Java keeps) or a real character
// does not; one signed with the field in it verifies as before.
func TestVerifyNotification_JavaWhitespace(t *testing.T) {
	const key = "testdata/shared/test_private_pkcs8.pem"
	v := verifierFor(t, RSA2)
	fields := testsign.AlipayPaid("2014072300007148", "2088102146225135", "T_JAVA_WS", "88.88")
	delete(fields, "body")
	signedWithout := string(testsign.AlipayNotify(t, key, fields))
	for _, c := range []struct {
		body string
		ok   bool
	}{
		{"%E3%80%80", true},                   // U+3000
		{"%E2%80%83%E3%80%80+%0A", true},      // U+2003, U+3000, space, newline
		{"%E1%9A%80%E2%80%A8%E2%81%9F", true}, // U+1680, U+2028, U+205F
		{"%C2%A0", false},                     // NBSP: Java keeps it
		{"%E2%80%87", false},                  // U+2007 figure space: Java keeps it
		{"%E3%80%80x", false},
	} {
		_, err := v.VerifyNotification(nil, []byte(signedWithout+"&body="+c.body))
		if c.ok && err != nil || !c.ok && !errors.Is(err, ErrSignature) {
			t.Errorf("body=%s: %v, want ok=%v", c.body, err, c.ok)
		}
	}
	fields["body"] = "\u3000"
	if _, err := v.VerifyNotification(nil, testsign.AlipayNotify(t, key, fields)); err != nil {
		t.Errorf("signed with the full-width space in the string: %v", err)
	}
}

func TestJavaBlank(t *testing.T) {
	for _, c := range []struct {
		v       string
		gbk, ok bool
	}{
		{"", false, false}, {" \t", false, true}, {"\u3000", false, true}, {"\u00a0", false, false},
		{"\u202f", false, false}, {"\u2029\u200a", false, true}, {"x", false, false},
		{"\xa1\xa1", true, true}, {" \xa1\xa1 ", true, true}, {"\xa1", true, false}, {"\xa1\xa2", true, false},
		{"\xa1\xa1", false, false}, // not UTF-8 text
	} {
		if got := javaBlank([]byte(c.v), c.gbk); got != c.ok {
			t.Errorf("javaBlank(%q, gbk=%v) = %v, want %v", c.v, c.gbk, got, c.ok)
		}
	}
}
