package pgtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a PostgreSQL server of one test's own: initdb in a temporary directory, listening on
// a free loopback port, stopped and removed when the test ends. A test that stops, restarts or
// kills PostgreSQL uses one, so that the shared server the other tests use is never touched.
//
// The binaries are those of the newest /usr/lib/postgresql/N/bin, or of pg_config --bindir. As
// root (CI), initdb and the server run as the postgres user (PostgreSQL refuses to run as root).
type Cluster struct {
	tb   testing.TB
	bin  string
	dir  string // owned by the server's user; data in dir/data, the socket in dir
	port int
	as   []string // runuser prefix, empty when not root
}

// NewCluster creates and starts a cluster; trust authentication on 127.0.0.1 only.
func NewCluster(tb testing.TB) *Cluster {
	tb.Helper()
	c := &Cluster{tb: tb, bin: pgBinDir(tb)}
	dir, err := os.MkdirTemp("", "pgcluster")
	if err != nil {
		tb.Fatal(err)
	}
	c.dir = dir
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatalf("pgtest: running as root needs a postgres user for the cluster: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			tb.Fatal(err)
		}
		c.as = []string{"runuser", "-u", "postgres", "--"}
	}
	c.port = freePort(tb)
	c.run("initdb", "-D", c.data(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C")
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\nmax_connections = 100\nshared_buffers = 32MB\nfsync = on\nsynchronous_commit = on\n", c.port, c.dir)
	f, err := os.OpenFile(filepath.Join(c.data(), "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := f.WriteString(conf); err != nil {
		tb.Fatal(err)
	}
	f.Close()
	c.Start()
	tb.Cleanup(func() {
		// Whatever state the test left it in: an error here only means it was down.
		argv := c.cmd("pg_ctl", "-D", c.data(), "-m", "immediate", "-w", "stop")
		exec.Command(argv[0], argv[1:]...).Run()
	})
	return c
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

// URL is the cluster's postgres database, over TCP on 127.0.0.1.
func (c *Cluster) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start() {
	c.tb.Helper()
	c.run("pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "server.log"), "-w", "-t", "60", "start")
}

// Stop stops the server with pg_ctl's mode ("fast": sessions are ended, what is committed is
// kept; "immediate": as a crash) and waits until it is down.
func (c *Cluster) Stop(mode string) {
	c.tb.Helper()
	c.run("pg_ctl", "-D", c.data(), "-m", mode, "-w", "-t", "60", "stop")
}

// TerminateSessions ends every other session of the cluster (pg_terminate_backend) and returns
// how many it ended.
func (c *Cluster) TerminateSessions(ctx context.Context) int {
	c.tb.Helper()
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		c.tb.Fatalf("pgtest: connect to the cluster: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND backend_type = 'client backend') t`).Scan(&n)
	if err != nil {
		c.tb.Fatalf("pgtest: terminate sessions: %v", err)
	}
	return n
}

// Log returns the server's log so far.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "server.log"))
	return string(b)
}

func (c *Cluster) cmd(name string, args ...string) []string {
	return append(append(append([]string{}, c.as...), filepath.Join(c.bin, name)), args...)
}

func (c *Cluster) run(name string, args ...string) {
	c.tb.Helper()
	argv := c.cmd(name, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		c.tb.Fatalf("pgtest: %s: %v\n%s\n%s", strings.Join(argv, " "), err, out.String(), c.Log())
	}
	c.tb.Logf("pgtest: %s %s (%v)", name, args[len(args)-1], time.Since(start).Round(time.Millisecond))
}

// pgBinDir finds the server binaries.
func pgBinDir(tb testing.TB) string {
	tb.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	tb.Fatal("pgtest: no PostgreSQL server binaries (initdb) in /usr/lib/postgresql/*/bin or pg_config --bindir")
	return ""
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
