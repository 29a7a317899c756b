package alipaywire

import (
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The shared Alipay wire parsers' fuzz targets. The committed tests run only the seeds; run one
// for longer with (docs/reliability.md):
//
//	go test -run='^$' -fuzz='^FuzzFormParse$' -fuzztime=10m ./internal/alipaywire

// FuzzFormParse: Parse never panics and fails only with a *FormError; a parsed form has unique,
// non-empty keys in sorted order, Received holds the same fields, Lookup finds each, and the
// fields are url.ParseQuery's wherever that applies (no ';', which ParseQuery refuses).
func FuzzFormParse(f *testing.F) {
	for _, glob := range []string{"../../alipaylegacy/testdata/cases/*.body", "../../alipaylegacy/testdata/cases/*.query"} {
		files, err := filepath.Glob(glob)
		if err != nil || len(files) == 0 {
			f.Fatalf("no seeds %s: %v", glob, err)
		}
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	for _, s := range []string{"", "&&", "a", "a=", "=a", "a=1&a=2", "a=1&%61=2", "a=%zz", "a=%4", "a=1;b=2", "a+b=c+d", "%2B=%2b",
		"z=1&a=%E4%B8%AD+x&&m&b=%2B", "sign=x&sign_type=RSA2&total_amount=0.01", "abcdefgh1=1&abcdefgh2=2&abcdefgh=3"} {
		f.Add([]byte(s))
	}
	var form Form
	f.Fuzz(func(t *testing.T, body []byte) {
		if err := form.Parse(body); err != nil {
			var fe *FormError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		fs, rec := form.Fields(), form.Received()
		if len(fs) != len(rec) || len(fs) != form.Len() {
			t.Fatalf("%d sorted fields, %d received, Len %d", len(fs), len(rec), form.Len())
		}
		byKey := map[string]string{}
		for i, fl := range fs {
			if fl.Key == "" || (i > 0 && fs[i-1].Key >= fl.Key) {
				t.Fatalf("keys not unique, non-empty and sorted: %q", fs)
			}
			if v, ok := form.Lookup(fl.Key); !ok || string(v) != fl.Value {
				t.Fatalf("Lookup(%q) = %q, %v; want %q", fl.Key, v, ok, fl.Value)
			}
			byKey[fl.Key] = fl.Value
		}
		for _, fl := range rec {
			if v, ok := byKey[fl.Key]; !ok || v != fl.Value {
				t.Fatalf("received %q is not among the sorted fields", fl)
			}
		}
		if strings.Contains(string(body), ";") {
			return
		}
		q, err := url.ParseQuery(string(body))
		if err != nil {
			t.Fatalf("Parse accepted what url.ParseQuery refuses: %v", err)
		}
		if len(q) != len(fs) {
			t.Fatalf("%d fields, url.ParseQuery %d", len(fs), len(q))
		}
		for k, v := range q {
			if len(v) != 1 || byKey[k] != v[0] {
				t.Fatalf("%q: url.ParseQuery %q, Parse %q", k, v, byKey[k])
			}
		}
	})
}

// amountSyntax is the documented syntax of an Alipay amount.
var amountSyntax = regexp.MustCompile(`^(0|[1-9][0-9]*)(\.[0-9]{1,2})?$`)

// FuzzParseAmount: ParseAmount accepts exactly the documented syntax within its bounds (at most
// 20 bytes, at most 2^53 yuan), and its fen are the exact decimal value times 100 (computed with
// big.Rat, not by the code under test); AppendAmount writes them back as the same value.
func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"0", "0.01", "88.88", "9", "9.9", "0.1", "00", "01", "1.", ".1", "1.234", "-1", "+1", "1e2", " 1", "1,5",
		"9007199254740992", "9007199254740993", "9007199254740992.99", "99999999999999999999", "１"} {
		f.Add(s)
	}
	limit := new(big.Rat).SetInt64(1 << 53)
	f.Fuzz(func(t *testing.T, s string) {
		fen, ok := ParseAmount(s)
		want := amountSyntax.MatchString(s) && len(s) <= 20
		var r *big.Rat
		if want {
			r, _ = new(big.Rat).SetString(s)
			intPart, _, _ := strings.Cut(s, ".")
			yuan, _ := new(big.Rat).SetString(intPart)
			want = yuan.Cmp(limit) <= 0
		}
		if ok != want {
			t.Fatalf("ParseAmount(%q) ok = %v, want %v", s, ok, want)
		}
		if !ok {
			return
		}
		exact := new(big.Rat).Mul(r, big.NewRat(100, 1))
		if !exact.IsInt() || exact.Num().Int64() != fen || !exact.Num().IsInt64() {
			t.Fatalf("ParseAmount(%q) = %d fen, want %s", s, fen, exact.RatString())
		}
		back, _ := new(big.Rat).SetString(string(AppendAmount(nil, fen)))
		if back.Cmp(r) != 0 {
			t.Fatalf("AppendAmount(%d) = %s, not %q", fen, AppendAmount(nil, fen), s)
		}
	})
}
