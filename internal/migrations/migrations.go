// Package migrations reads the numbered SQL migrations that the sqlite and postgres stores embed:
// it lists them, reads their versions from their names and orders them, and sets them beside the
// versions a database has applied (Pending, Statuses). Each store applies them its own way.
package migrations

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Migration is one numbered SQL file, NNNN_name.sql.
type Migration struct {
	Version int64  // NNNN, > 0
	Name    string // the file name without ".sql": "0001_init"
	SQL     string
}

// Load returns the migrations dir/*.sql of fsys in version order. A name without a positive
// version, or two files with one version, is an error.
func Load(fsys fs.FS, dir string) ([]Migration, error) {
	names, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, p := range names {
		name := strings.TrimSuffix(path.Base(p), ".sql")
		num, _, _ := strings.Cut(name, "_")
		v, err := strconv.ParseInt(num, 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: bad version", p)
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, SQL: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := 1; i < len(ms); i++ {
		if ms[i].Version == ms[i-1].Version {
			return nil, fmt.Errorf("migration %s: duplicate version", ms[i].Name)
		}
	}
	return ms, nil
}

// Pending returns how many of ms are not in applied (the versions a database has recorded).
func Pending(ms []Migration, applied map[int64]bool) int {
	n := 0
	for _, m := range ms {
		if !applied[m.Version] {
			n++
		}
	}
	return n
}

// Applied is a row of a database's schema_migrations table.
type Applied struct {
	Version   int64
	Name      string
	AppliedAt time.Time
}

// Status is one migration and whether a database has applied it.
type Status struct {
	Version int64
	Name    string // "0001_init"
	Applied bool
	// AppliedAt is when it was applied; zero while pending.
	AppliedAt time.Time
	// Unknown marks a version the database has applied but this binary does not embed: a newer
	// paynotify migrated the database.
	Unknown bool
}

// Statuses lists every migration of ms and of applied, in version order: those of ms with
// whether (and when) the database applied them, and the applied versions ms lacks, Unknown.
func Statuses(ms []Migration, applied []Applied) []Status {
	byVersion := make(map[int64]Applied, len(applied))
	for _, a := range applied {
		byVersion[a.Version] = a
	}
	out := make([]Status, 0, len(ms))
	known := make(map[int64]bool, len(ms))
	for _, m := range ms {
		known[m.Version] = true
		s := Status{Version: m.Version, Name: m.Name}
		if a, ok := byVersion[m.Version]; ok {
			s.Applied, s.AppliedAt = true, a.AppliedAt
		}
		out = append(out, s)
	}
	for _, a := range applied {
		if !known[a.Version] {
			out = append(out, Status{Version: a.Version, Name: a.Name, Applied: true, AppliedAt: a.AppliedAt, Unknown: true})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out
}
