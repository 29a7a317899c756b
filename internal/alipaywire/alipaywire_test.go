package alipaywire

import (
	"errors"
	"testing"
)

func TestFormReceivedOrder(t *testing.T) {
	var f Form
	if err := f.Parse([]byte("z=1&a=%E4%B8%AD+x&&m&b=%2B")); err != nil {
		t.Fatal(err)
	}
	sorted := []Field{{"a", "中 x"}, {"b", "+"}, {"m", ""}, {"z", "1"}}
	received := []Field{{"z", "1"}, {"a", "中 x"}, {"m", ""}, {"b", "+"}}
	for i, fl := range f.Fields() {
		if fl != sorted[i] {
			t.Fatalf("sorted %d: %q", i, fl)
		}
	}
	for i, fl := range f.Received() {
		if fl != received[i] {
			t.Fatalf("received %d: %q", i, fl)
		}
	}
	if v, ok := f.Lookup("b"); !ok || string(v) != "+" {
		t.Fatal("Lookup")
	}
	if string(f.Key(0)) != "a" || string(f.Value(0)) != "中 x" {
		t.Fatal("Key, Value")
	}
}

func TestFormErrors(t *testing.T) {
	for in, dup := range map[string]bool{"a=1&%61=2": true, "sign=1&sign=1": true, "a=%zz": false, "=1": false, "a=%4": false} {
		var f Form
		err := f.Parse([]byte(in))
		var fe *FormError
		if !errors.As(err, &fe) || fe.Duplicate != dup {
			t.Fatalf("%q: %v", in, err)
		}
	}
}

func TestCharset(t *testing.T) {
	for in, want := range map[string]string{"": UTF8, "UTF-8": UTF8, " utf8 ": UTF8, "GBK": GBK, "cp936": GBK, "GB2312": GB2312, "gb18030": GB18030} {
		if got, ok := Charset(in); !ok || got != want {
			t.Errorf("%q: %q %v", in, got, ok)
		}
	}
	if _, ok := Charset("big5"); ok {
		t.Error("big5")
	}
	d, _ := Decoder("GBK")
	if s, ok := ToUTF8(d, "\xd6\xd0\xce\xc4"); !ok || s != "中文" {
		t.Fatal(s)
	}
	if _, ok := ToUTF8(d, "\xff\xff"); ok {
		t.Fatal("invalid GBK accepted")
	}
	if _, ok := ToUTF8(nil, "\xd6\xd0"); ok {
		t.Fatal("invalid UTF-8 accepted")
	}
	e, _ := Encoder("gb2312")
	if s, ok := FromUTF8(e, "中文"); !ok || s != "\xd6\xd0\xce\xc4" {
		t.Fatalf("%q", s)
	}
	if _, ok := FromUTF8(e, "😀"); ok {
		t.Fatal("emoji in GBK")
	}
	if s, ok := FromUTF8(nil, "😀"); !ok || s != "😀" {
		t.Fatal("UTF-8")
	}
}

func TestAmount(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "0.01": 1, "88.88": 8888, "9": 900, "0.1": 10} {
		if got, ok := ParseAmount(in); !ok || got != want {
			t.Errorf("%q: %d", in, got)
		}
	}
	for _, in := range []string{"", "01", "1.", ".1", "1.001", "-1", "1e2", " 1"} {
		if _, ok := ParseAmount(in); ok {
			t.Errorf("%q accepted", in)
		}
	}
	if s := string(AppendAmount(nil, 8888)); s != "88.88" {
		t.Fatal(s)
	}
}
