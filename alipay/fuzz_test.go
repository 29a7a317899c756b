package alipay

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// FuzzParseForm feeds arbitrary bodies to the notification path: the parser, the canonical string,
// verification and decoding must never panic, and a parsed form must be sorted and duplicate-free.
// Seeds: testdata/fuzz/FuzzParseForm (the vectors' bodies and edge cases).
func FuzzParseForm(f *testing.F) {
	f.Add([]byte("a=1&b=%E4%B8%AD&c=+"))
	_, pub := testKeys(f)
	c, err := NewClient(Config{AlipayPublicKey: pub})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		parsed, err := parseForm(body)
		if err != nil {
			if _, ok := err.(*VerifyError); !ok {
				t.Fatalf("error %T", err)
			}
			return
		}
		fields := parsed.Fields()
		// A reused form (Form.Parse after another body) gives the same fields as a fresh one.
		var reused form
		if err := reused.Parse([]byte("zz=%E4%B8%AD&a=1&k=v")); err != nil {
			t.Fatal(err)
		}
		if err := reused.Parse(body); err != nil || !slices.Equal(reused.Fields(), fields) {
			t.Fatalf("reused Form: %v, %q vs %q", err, reused.Fields(), fields)
		}
		if !slices.IsSortedFunc(fields, func(a, b field) int { return strings.Compare(a.Key, b.Key) }) {
			t.Fatal("not sorted")
		}
		total := 0
		for i, fl := range fields {
			if fl.Key == "" || (i > 0 && fields[i-1].Key == fl.Key) {
				t.Fatalf("bad key at %d", i)
			}
			if v, ok := parsed.Get(fl.Key); !ok || v != fl.Value {
				t.Fatal("Get")
			}
			total += len(fl.Key) + len(fl.Value)
		}
		if total > len(body) {
			t.Fatal("decoded longer than the body")
		}
		for _, r := range []rule{ruleV1, ruleV2} {
			canon := canonicalNotification(parsed, r)
			if bytes.HasPrefix(canon, []byte("sign=")) || bytes.Contains(canon, []byte("&sign=")) {
				t.Fatal("sign in canonical string")
			}
		}
		_ = c.verifyForm(parsed, ruleV1)
		_, _ = decodeNotification(parsed)
		_, _ = c.VerifyNotification(ctHeader("application/x-www-form-urlencoded; text/html; charset=utf-8"), body)
	})
}

// FuzzExtractResponse checks response-node extraction: no panic, and on success the node is valid
// JSON, lies inside the body, and equals what encoding/json sees for that key.
// Seeds: testdata/fuzz/FuzzExtractResponse (the response vectors and Java SDK extraction cases).
func FuzzExtractResponse(f *testing.F) {
	f.Add([]byte(`{"alipay_trade_query_response":{"code":"10000"},"sign":"x"}`))
	_, pub := testKeys(f)
	c, err := NewClient(Config{AlipayPublicKey: pub})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := extractResponse(body, "alipay.trade.query")
		_, _, _ = c.VerifyResponse(body, "alipay.trade.query")
		if err != nil {
			if _, ok := err.(*VerifyError); !ok {
				t.Fatalf("error %T", err)
			}
			return
		}
		if !json.Valid(r.Node) {
			t.Fatalf("node is not JSON: %q", r.Node)
		}
		if !bytes.Contains(body, r.Node) {
			t.Fatal("node not in body")
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("extracted from a body encoding/json rejects: %v", err)
		}
		if !bytes.Equal(m[r.Name], r.Node) {
			t.Fatalf("node %q, encoding/json %q", r.Node, m[r.Name])
		}
	})
}
