package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/paynotify/paynotify"
)

// The config parser's fuzz target. Its seeds are the configs of the docs and the tests; the
// committed tests run only the seeds. Run it for longer with (docs/reliability.md):
//
//	go test -run='^$' -fuzz='^FuzzParseConfig$' -fuzztime=10m ./cmd/paynotify

// yamlBlock finds the ```yaml blocks of a Markdown page.
var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// FuzzParseConfig: ParseConfig never panics and returns either a config or an error, never both
// or neither; a config it returns holds what validation promises (a listen address and a
// database, app names of [a-z0-9-]{1,32}, unique, each of a known provider); and the same bytes
// parse to the same result twice.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(validConfig))
	for _, page := range []string{"config.md", "migrate-legacy-alipay.md", "operations.md", "reconciliation.md", "sandbox.md", "webhooks.md"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "docs", page))
		if err != nil {
			f.Fatal(err)
		}
		for _, m := range yamlBlock.FindAllSubmatch(b, -1) {
			f.Add(m[1])
		}
	}
	tour, err := os.ReadFile(filepath.Join("..", "..", "e2e", "testdata", "server_tour.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tour)
	for _, s := range []string{"", "{}", "apps: []", "listen: ${X}", "listen: ${}", "apps: [{name: a, provider: alipay}]",
		"apps: [{name: a}, {name: a}]", "&a [*a]", "a: &a [*a, *a]", "jobs: {schedule: [1s, -1s]}", "webhooks: {retention: 1h}",
		"nats: {url: 'nats://127.0.0.1:4222'}", "retention: {evidence: 0}", "\t", "---\n---\n", "api_token: !!binary AAAA"} {
		f.Add([]byte(s))
	}
	envVars := env(map[string]string{"TOKEN": "0123456789abcdef0123", "PAYNOTIFY_API_TOKEN": "0123456789abcdef0123", "X": "x", "EMPTY": ""})
	appName := regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b, envVars)
		if (c == nil) == (err == nil) {
			t.Fatalf("ParseConfig returned config %v and error %v: want exactly one", c != nil, err)
		}
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if c.Listen == "" || c.Database == "" {
			t.Fatalf("accepted config without listen or database: %+v", c)
		}
		seen := map[string]bool{}
		for _, a := range c.Apps {
			if !appName.MatchString(a.Name) || seen[a.Name] {
				t.Fatalf("accepted app name %q (seen before: %v)", a.Name, seen[a.Name])
			}
			seen[a.Name] = true
			switch a.Provider {
			case paynotify.ProviderAlipay, paynotify.ProviderWechatpay, paynotify.ProviderAlipayLegacy:
			default:
				t.Fatalf("accepted provider %q", a.Provider)
			}
		}
		again, err := ParseConfig(b, envVars)
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Fatalf("the same bytes parsed differently the second time: %v", err)
		}
	})
}
