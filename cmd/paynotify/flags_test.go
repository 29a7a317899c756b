package main

import (
	"bytes"
	"flag"
	"slices"
	"testing"
)

// TestParseFlags: flags may come between and after positional arguments; after "--" every
// argument is positional (a reviewer helper's finding: flags after it were parsed again, so
// `verify … -- body.txt --explain` explained instead of refusing a second operand).
func TestParseFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		pos  []string
		x    string
		v    bool
	}{
		{[]string{"a", "--x", "2", "b", "-v"}, []string{"a", "b"}, "2", true},
		{[]string{"--x", "1", "--", "a", "--v"}, []string{"a", "--v"}, "1", false},
		{[]string{"a", "--", "-v", "--"}, []string{"a", "-v", "--"}, "", false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		x := fs.String("x", "", "")
		v := fs.Bool("v", false, "")
		m := &Main{Stdout: new(bytes.Buffer), Stderr: new(bytes.Buffer)}
		pos, err := parseFlags(m, fs, "usage", "try", c.args)
		if err != nil || !slices.Equal(pos, c.pos) || *x != c.x || *v != c.v {
			t.Errorf("%q: positional %q, x %q, v %t, err %v; want %q, %q, %t", c.args, pos, *x, *v, err, c.pos, c.x, c.v)
		}
	}
}

// TestDemoDirShown: the demo's banner names the data directory as given (it said ./demo for
// --data-dir /tmp/demo, a reviewer helper's finding).
func TestDemoDirShown(t *testing.T) {
	for dir, want := range map[string]string{"paynotify-data": "./paynotify-data", "./x/y/": "./x/y", "/tmp/demo": "/tmp/demo", "../d": "../d", ".": "."} {
		if got := demoDirShown(dir); got != want {
			t.Errorf("demoDirShown(%q) = %q, want %q", dir, got, want)
		}
	}
}

// TestMetricsPublic: serve warns at start when /metrics is answered on a listener that is not
// loopback only (a reviewer helper's finding: the default listen, ":8080", serves it to anyone).
func TestMetricsPublic(t *testing.T) {
	for _, c := range []struct {
		listen, admin string
		public        bool
	}{
		{":8080", "", true},
		{"0.0.0.0:8080", "", true},
		{"10.0.0.5:8080", "", true},
		{"127.0.0.1:8080", "", false},
		{"[::1]:8080", "", false},
		{"localhost:8080", "", false},
		{":8080", "127.0.0.1:9090", false},
	} {
		if got := metricsPublic(&Config{Listen: c.listen, AdminListen: c.admin}); got != c.public {
			t.Errorf("listen %q, admin_listen %q: public %v, want %v", c.listen, c.admin, got, c.public)
		}
	}
}
