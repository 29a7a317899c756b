package migrations

import (
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestLoad(t *testing.T) {
	fsys := fstest.MapFS{
		"m/0002_b.sql":   {Data: []byte("B")},
		"m/0001_a.sql":   {Data: []byte("A")},
		"m/0010_c.sql":   {Data: []byte("C")},
		"m/README":       {Data: []byte("x")},
		"other/0003.sql": {Data: []byte("no")},
	}
	ms, err := Load(fsys, "m")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Name+"="+m.SQL)
	}
	if strings.Join(got, " ") != "0001_a=A 0002_b=B 0010_c=C" || ms[2].Version != 10 {
		t.Fatalf("Load = %+v", ms)
	}
	if n := Pending(ms, map[int64]bool{1: true, 10: true, 7: true}); n != 1 {
		t.Errorf("Pending = %d, want 1", n)
	}
	for name, bad := range map[string]fstest.MapFS{
		"BadVersion":  {"m/x_a.sql": {}},
		"ZeroVersion": {"m/0000_a.sql": {}},
		"Duplicate":   {"m/0001_a.sql": {}, "m/1_b.sql": {}},
	} {
		if _, err := Load(bad, "m"); err == nil {
			t.Errorf("%s: Load succeeded", name)
		}
	}
}

func TestStatuses(t *testing.T) {
	ms := []Migration{{Version: 1, Name: "0001_a"}, {Version: 2, Name: "0002_b"}, {Version: 3, Name: "0003_c"}}
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	got := Statuses(ms, []Applied{{Version: 9, Name: "0009_future", AppliedAt: at.Add(time.Hour)}, {Version: 1, Name: "0001_a", AppliedAt: at}})
	want := []Status{
		{Version: 1, Name: "0001_a", Applied: true, AppliedAt: at},
		{Version: 2, Name: "0002_b"},
		{Version: 3, Name: "0003_c"},
		{Version: 9, Name: "0009_future", Applied: true, AppliedAt: at.Add(time.Hour), Unknown: true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Statuses =\n%+v\nwant\n%+v", got, want)
	}
}
