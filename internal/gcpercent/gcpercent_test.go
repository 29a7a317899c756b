package gcpercent

import (
	"runtime/debug"
	"testing"
)

func TestDecideApply(t *testing.T) {
	env := func(vars map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	}
	for _, tc := range []struct {
		name string
		vars map[string]string
		want int
		ok   bool
	}{
		{"unset", nil, 400, true},
		{"only GOMEMLIMIT", map[string]string{"GOMEMLIMIT": "512MiB"}, 400, true},
		{"GOGC set", map[string]string{"GOGC": "100"}, 0, false},
		{"GOGC off", map[string]string{"GOGC": "off"}, 0, false},
		{"GOGC empty", map[string]string{"GOGC": ""}, 0, false},
	} {
		p, ok := Decide(env(tc.vars))
		if p != tc.want || ok != tc.ok {
			t.Errorf("%s: Decide = %d, %v; want %d, %v", tc.name, p, ok, tc.want, tc.ok)
		}
	}

	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	Apply(env(nil))
	if got := debug.SetGCPercent(100); got != 400 {
		t.Errorf("after Apply with GOGC unset the GC percent is %d, want 400", got)
	}
	Apply(env(map[string]string{"GOGC": "50"}))
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("after Apply with GOGC set the GC percent is %d, want it untouched (100)", got)
	}
}
