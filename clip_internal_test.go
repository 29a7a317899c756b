package paynotify

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestClip: ClipText cuts at a rune boundary within n bytes, "…" included, and never panics, even
// on a limit shorter than a rune or on bytes that are not UTF-8.
func TestClip(t *testing.T) {
	for _, tc := range []struct {
		s string
		n int
	}{
		{"short", 1024}, {strings.Repeat("x", 2000), 1024}, {strings.Repeat("中", 700), 1024},
		{strings.Repeat("\x80", 50), 5}, {strings.Repeat("\x80", 50), 3}, {"中中中", 4}, {strings.Repeat("\xff", 2000), 128},
	} {
		got := ClipText(tc.s, tc.n)
		if len(got) > tc.n && len(tc.s) > tc.n {
			t.Errorf("ClipText(%q…, %d) = %d bytes", tc.s[:min(len(tc.s), 8)], tc.n, len(got))
		}
		if len(tc.s) <= tc.n && got != tc.s {
			t.Errorf("ClipText(%q, %d) = %q, want it whole", tc.s, tc.n, got)
		}
		if utf8.ValidString(tc.s) && !utf8.ValidString(got) {
			t.Errorf("ClipText(%q…, %d) cut a rune: %q", tc.s[:min(len(tc.s), 8)], tc.n, got)
		}
	}
}

// TestRedactURL: what an endpoint.disabled event and the log say of an endpoint's URL keeps no
// path, query, fragment or user info, any of which may hold the receiver's token.
func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.example.com/services/T000/B000/XXXXsecretpath?token=q#f": "https://hooks.example.com/…",
		"https://user:pass@shop.example.com:8443/hook":                          "https://shop.example.com:8443/…",
		"https://shop.example.com":                                              "https://shop.example.com",
		"https://shop.example.com/?token=abc":                                   "https://shop.example.com",
		"http://[::1]:9000/a%2Fb":                                               "http://[::1]:9000/…",
		"https://shop.example.com#frag":                                         "https://shop.example.com",
		"not a url":                                                             "",
		"https://shop.example.com/%zz":                                          "",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
