package alipaylegacy

import (
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// The fuzz targets' seeds are the vectors themselves (testdata/cases) plus edge cases; the
// committed tests run only the seeds. Run one for longer with, e.g.:
//
//	go test -run='^$' -fuzz=FuzzVerifyNotification -fuzztime=20s ./alipaylegacy/

func addCaseSeeds(f *testing.F, exts ...string) {
	for _, ext := range exts {
		files, err := filepath.Glob(filepath.Join("testdata", "cases", "*"+ext))
		if err != nil || len(files) == 0 {
			f.Fatalf("no seeds *%s: %v", ext, err)
		}
		for _, file := range files {
			f.Add(mustRead(f, strings.TrimPrefix(file, "testdata/")))
		}
	}
}

// FuzzParseForm checks the form parser: no panic, only *VerifyError failures, unique non-empty
// names, nothing longer than the body, and the same fields as url.ParseQuery wherever that applies
// (no ';', which ParseQuery refuses).
func FuzzParseForm(f *testing.F) {
	addCaseSeeds(f, ".body", ".query", ".resp")
	for _, s := range []string{"", "&&", "a", "a=", "=a", "a=1&a=2", "a=1&%61=2", "a=%zz", "a=%4", "a=1;b=2", "a+b=c+d", "%2B=%2b"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fs, err := ParseForm(body)
		if err != nil {
			var ve *VerifyError
			if !errors.As(err, &ve) || (ve.Reason != ReasonMalformed && ve.Reason != ReasonDuplicateKey) {
				t.Fatalf("error %T %v", err, err)
			}
			return
		}
		seen := map[string]bool{}
		total := 0
		for _, fl := range fs {
			if fl.Key == "" || seen[fl.Key] {
				t.Fatalf("bad or repeated name %q", fl.Key)
			}
			seen[fl.Key] = true
			total += len(fl.Key) + len(fl.Value)
		}
		if total > len(body) {
			t.Fatal("decoded longer than the body")
		}
		if strings.Contains(string(body), ";") {
			return
		}
		q, err := url.ParseQuery(string(body))
		if err != nil {
			t.Fatalf("ParseForm accepted what url.ParseQuery refuses: %v", err)
		}
		if len(q) != len(fs) {
			t.Fatalf("%d fields, url.ParseQuery %d", len(fs), len(q))
		}
		for _, fl := range fs {
			if v := q[fl.Key]; len(v) != 1 || v[0] != fl.Value {
				t.Fatalf("%q = %q, url.ParseQuery %q", fl.Key, fl.Value, v)
			}
		}
		// The canonical string never carries sign or sign_type: it is the same without them. (A
		// value may itself hold "&sign_type=": values are joined undecoded, as the protocol does,
		// so a look for the substring proves nothing.)
		var unsigned []Field
		for _, fl := range fs {
			if fl.Key != "sign" && fl.Key != "sign_type" {
				unsigned = append(unsigned, fl)
			}
		}
		if c, u := string(CanonicalSorted(fs)), string(CanonicalSorted(unsigned)); c != u {
			t.Fatalf("canonical string %q, without sign and sign_type %q", c, u)
		}
	})
}

// FuzzNotifyData checks the flat XML parser of notify_data, res_data and res_error: no panic, and
// on success a document of unique, non-empty element names, at most maxXMLFields of them.
func FuzzNotifyData(f *testing.F) {
	addCaseSeeds(f, ".notify_data.xml")
	for _, s := range []string{
		`<?xml version="1.0" encoding="utf-8"?><direct_trade_create_res><request_token>t</request_token></direct_trade_create_res>`,
		`<?xml version="1.0" encoding="gbk"?><err><code>0005</code><sub_code>0005</sub_code><msg>partner illegal</msg><detail>x</detail></err>`,
		`<!DOCTYPE notify [<!ENTITY x "y">]><notify><a>&x;</a></notify>`,
		`<notify><a><b>1</b></a></notify>`, `<notify>text<a>1</a></notify>`, `<notify><a>1</a></notify><notify/>`,
		`<notify><a><![CDATA[<x>]]></a><!-- c --><b/></notify>`, `<n:notify xmlns:n="u"><a>1</a></n:notify>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, root := range []string{"notify", "direct_trade_create_res", "err"} {
			fs, err := parseFlatXML(data, root)
			if err != nil {
				_ = xmlError("notify_data", err)
				continue
			}
			if len(fs) > maxXMLFields {
				t.Fatalf("%d elements", len(fs))
			}
			seen := map[string]bool{}
			for _, fl := range fs {
				if fl.Key == "" || seen[fl.Key] {
					t.Fatalf("bad or repeated element %q", fl.Key)
				}
				seen[fl.Key] = true
			}
			if strings.Contains(string(data), "<!") && !strings.Contains(string(data), "<![CDATA[") && !strings.Contains(string(data), "<!--") {
				t.Fatalf("accepted a directive: %q", data)
			}
		}
	})
}

// FuzzVerifyNotification feeds arbitrary bodies to both verifiers of MD5 and RSA clients: no
// panic, failures are *VerifyError (or the missing-merchant-key configuration error, which these
// clients cannot hit), and a verified message has its required fields and its canonical string.
func FuzzVerifyNotification(f *testing.F) {
	addCaseSeeds(f, ".body", ".query")
	clients := []*Client{testClient(f, SignMD5, nil), testClient(f, SignRSA, nil), testClient(f, SignMD5, func(c *Config) { c.InputCharset = "gbk" })}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, c := range clients {
			n, err := c.VerifyNotification(body)
			check(t, n, err, false)
			n, err = c.VerifyReturn(string(body))
			check(t, n, err, true)
		}
	})
}

func check(t *testing.T, n *Notification, err error, ret bool) {
	if err != nil {
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Reason == "" || sentinels[ve.Reason] == nil {
			t.Fatalf("error %T %v", err, err)
		}
		return
	}
	if len(n.Canonical) == 0 || n.OutTradeNo == "" || n.Return != ret {
		t.Fatalf("verified %+v", n)
	}
	if !ret && (n.NotifyID == "" || n.TradeNo == "" || n.TradeStatus == "") {
		t.Fatalf("verified without required fields: %+v", n)
	}
}
