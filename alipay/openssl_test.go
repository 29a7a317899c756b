package alipay

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// opensslVector is one entry of testdata/openssl/vectors.json, made by testdata/gen_vectors.sh with
// the openssl command line.
type opensslVector struct {
	Name       string         `json:"name"`
	How        string         `json:"how"`
	Configured SignType       `json:"sign_type_configured"`
	Body       string         `json:"body"`
	Expect     string         `json:"expect"`
	Decoded    map[string]any `json:"decoded"`
}

func loadOpensslVectors(tb testing.TB) []opensslVector {
	tb.Helper()
	var vs []opensslVector
	if err := json.Unmarshal(mustRead(tb, "testdata/openssl/vectors.json"), &vs); err != nil {
		tb.Fatal(err)
	}
	// All of them, of every kind: an emptied or renamed file must fail, not run no subtest.
	seen := map[string]bool{}
	for _, v := range vs {
		seen[v.Expect] = true
	}
	if len(vs) != 19 || len(seen) != 4 || !seen["valid"] || !seen["signature_invalid"] || !seen["malformed"] || !seen["duplicate_key"] {
		tb.Fatalf("%d openssl vectors of kinds %v, want the 19 of gen_vectors.sh (valid, signature_invalid, malformed, duplicate_key)", len(vs), seen)
	}
	return vs
}

func TestOpensslVectors(t *testing.T) {
	for _, v := range loadOpensslVectors(t) {
		prefix := "OK/"
		if v.Expect != "valid" {
			prefix = "Err/"
		}
		t.Run(prefix+v.Name, func(t *testing.T) {
			c := verifierFor(t, v.Configured)
			n, err := c.VerifyNotification(ctHeader("application/x-www-form-urlencoded; text/html; charset=utf-8"), []byte(v.Body))
			if v.Expect == "valid" {
				if err != nil {
					t.Fatalf("%s: %v", v.How, err)
				}
				checkDecoded(t, n, v.Decoded)
				return
			}
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("%s: got %v, want %s", v.How, err, v.Expect)
			}
			if ve.Reason != v.Expect {
				t.Fatalf("%s: reason %s (%s), want %s", v.How, ve.Reason, ve.Detail, v.Expect)
			}
			want := map[string]error{ReasonSignatureInvalid: ErrSignature, ReasonDuplicateKey: ErrDuplicateKey, ReasonMalformed: ErrMalformed}[v.Expect]
			if !errors.Is(err, want) || err.Error() != want.Error() {
				t.Fatalf("outward error %q, want %q", err, want)
			}
			if v.Expect == ReasonSignatureInvalid && ve.OutTradeNo != "20240520000001" {
				t.Fatalf("OutTradeNo %q", ve.OutTradeNo)
			}
		})
	}
}

func checkDecoded(t *testing.T, n *Notification, want map[string]any) {
	t.Helper()
	amounts := map[string]int64{"total_amount": n.TotalAmount, "refund_fee": n.RefundFee}
	for k, w := range want {
		switch w := w.(type) {
		case float64:
			if amounts[k] != int64(w) {
				t.Errorf("%s = %d, want %v", k, amounts[k], w)
			}
		case string:
			if n.Raw[k] != w {
				t.Errorf("%s = %q, want %q", k, n.Raw[k], w)
			}
		}
	}
}

func TestVerifyExplains(t *testing.T) {
	vs := map[string]opensslVector{}
	for _, v := range loadOpensslVectors(t) {
		vs[v.Name] = v
	}
	tests := []struct{ vec, want string }{
		{"rsa_sha1_under_rsa2", "valid RSA (SHA1withRSA) signature, but RSA2 is configured"},
		{"truncated_sign", "truncated"},
		{"garbage_sign", "not valid base64"},
		{"missing_sign", "missing"},
	}
	c := verifierFor(t, RSA2)
	for _, tt := range tests {
		t.Run("Err/"+tt.vec, func(t *testing.T) {
			_, err := c.VerifyNotification(nil, []byte(vs[tt.vec].Body))
			var ve *VerifyError
			if !errors.As(err, &ve) || !strings.Contains(ve.Detail, tt.want) || len(ve.Message) == 0 {
				t.Fatalf("got %v %+v", err, ve)
			}
		})
	}
}
