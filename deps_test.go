package paynotify_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps enforces the import rules of docs/architecture.md, and keeps test code and cgo drivers
// out of the server binary.
func TestDeps(t *testing.T) {
	const mod = "github.com/paynotify/paynotify"
	// package → the project packages and third-party modules it may import (stdlib is always fine).
	allowed := map[string][]string{
		"":          {},
		"alipay":    {"golang.org/x/text", mod + "/internal/rawresp", mod + "/internal/alipaywire", mod + "/internal/regroup"},
		"wechatpay": {mod + "/internal/rawresp", mod + "/internal/wechatpaywire", mod + "/internal/regroup"},
		"sqlite":    {mod, mod + "/internal/migrations", mod + "/internal/groupcommit", "modernc.org/sqlite"},
		"postgres":  {mod, mod + "/internal/migrations", mod + "/internal/groupcommit", "github.com/jackc/pgx/v5"},
		"provider":  {mod, mod + "/alipay", mod + "/alipaylegacy", mod + "/wechatpay", mod + "/internal/alipaywire", mod + "/internal/wechatpaywire"},
		"jobs":      {mod, "github.com/riverqueue/river", "github.com/jackc/pgx/v5"},
		"httpd":     {mod, mod + "/docs", mod + "/internal/reqtext"},
		"docs":      {},
		"console":   {mod, "golang.org/x/crypto", mod + "/internal/reqtext"},
		"webhook":   {mod, "github.com/nats-io/nats.go"},
		"metrics":   {mod, "github.com/prometheus/client_golang"},
		"sandbox":   {mod, mod + "/alipay", mod + "/wechatpay", mod + "/internal/alipaywire", mod + "/internal/wechatpaywire", "modernc.org/sqlite", "go.yaml.in/yaml/v3", "golang.org/x/text"},

		"alipaylegacy":           {"golang.org/x/text", mod + "/internal/alipaywire", mod + "/internal/regroup"},
		"internal/alipaywire":    {"golang.org/x/text"},
		"internal/wechatpaywire": {},
		"internal/regroup":       {},
		"internal/groupcommit":   {},
		"internal/gcpercent":     {},
		"internal/reqtext":       {mod},
	}
	for pkg, allow := range allowed {
		path := mod
		if pkg != "" {
			path += "/" + pkg
		}
		out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, path).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", path, err)
		}
		for _, imp := range strings.Fields(string(out)) {
			if !strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
				continue // standard library
			}
			ok := false
			for _, a := range allow {
				if imp == a || strings.HasPrefix(imp, a+"/") && a != mod {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s, which docs/architecture.md does not allow", path, imp)
			}
		}
	}
	out, err := exec.Command("go", "list", "-deps", mod+"/cmd/paynotify").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "testing", strings.HasPrefix(dep, "testing/"), strings.HasPrefix(dep, mod+"/internal/pgtest"),
			strings.HasPrefix(dep, mod+"/internal/testsign"), strings.HasPrefix(dep, mod+"/internal/teststore"), strings.HasPrefix(dep, mod+"/storetest"):
			t.Errorf("the server binary links test code: %s", dep)
		case strings.HasPrefix(dep, "github.com/wechatpay-apiv3/"):
			t.Errorf("the server binary links wechatpay-go, a test-only dependency (sandbox/wechatpaygo_test.go): %s", dep)
		case strings.Contains(dep, "mattn/go-sqlite3"):
			t.Errorf("the server binary links a cgo SQLite driver: %s", dep)
		}
	}
}
