// Package migrations reads the numbered SQL migrations that the sqlite and postgres stores embed:
// it lists them, reads their versions from their names and orders them. Each store applies them
// its own way.
package migrations

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
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
