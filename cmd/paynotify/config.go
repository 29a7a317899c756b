package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipaylegacy"
	"github.com/paynotify/paynotify/console"
	"github.com/paynotify/paynotify/internal/alipaywire"
	"go.yaml.in/yaml/v3"
)

// Config is the server's YAML config file (docs/config.md). Fields are alphabetised in groups;
// each says its default.
type Config struct {
	// AdminListen, if set, is the address of a listener of its own for GET /metrics (and
	// /healthz), which then leaves the main listener: for deployments that expose the main one
	// to the internet. Empty (the default) serves /metrics on the main listener.
	AdminListen string `yaml:"admin_listen"`
	// APIToken is the merchant API's bearer token, at least 16 characters. Required.
	APIToken string `yaml:"api_token"`
	// Apps are the merchant apps of both providers. At least one.
	Apps []AppConfig `yaml:"apps"`
	// Console, when admin_password_hash is set, serves the operator console under /console/
	// (docs/console.md). Off otherwise.
	Console ConsoleConfig `yaml:"console"`
	// Database is "sqlite:PATH" or a postgres:// URL. Defaults to sqlite:paynotify-data/paynotify.db.
	Database string `yaml:"database"`
	// Jobs tunes the background jobs (docs/reconciliation.md).
	Jobs JobsConfig `yaml:"jobs"`
	// Listen is the address to serve on. Defaults to ":8080".
	Listen string `yaml:"listen"`
	// Log sets the level and format of serve's log (standard error).
	Log LogConfig `yaml:"log"`
	// NATS, when its url is set, also publishes every event to NATS JetStream
	// (docs/webhooks.md).
	NATS NATSConfig `yaml:"nats"`
	// PublicURL is the base of the notify_url and return_url sent to providers, as they reach
	// this server (https://pay.example.com). Required; no query string, no trailing slash.
	PublicURL string `yaml:"public_url"`
	// Retention is how long evidence and webhook attempts are kept before the daily prune
	// deletes them (docs/config.md, "Retention").
	Retention RetentionConfig `yaml:"retention"`
	// Webhooks sets which endpoints webhook deliveries may go to (docs/webhooks.md).
	Webhooks WebhooksConfig `yaml:"webhooks"`
}

// unknownField is yaml's wording of an unknown key: "line N: field K not found in type main.T".
var unknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type main\.(\w+)$`)

// yamlErrors words yaml's decoding errors in the config's terms: an unknown key by its block (a
// YAML path, not a Go type), with the closest known key when one is near.
func yamlErrors(errs []string) []string {
	blocks := configBlocks()
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		m := unknownField.FindStringSubmatch(e)
		var b configBlock
		ok := m != nil
		if ok {
			b, ok = blocks[m[3]]
		}
		if !ok {
			out = append(out, strings.ReplaceAll(e, "main.", ""))
			continue
		}
		msg := "line " + m[1] + ": "
		if b.path != "" {
			msg += strings.TrimSuffix(b.path, ".") + ": "
		}
		msg += "unknown key " + strconv.Quote(m[2])
		if near := closestKey(m[2], b.keys); near != "" {
			msg += " (did you mean " + near + "?)"
		}
		out = append(out, msg)
	}
	return out
}

// configBlock is where a Go type of the config sits in the YAML, and its keys.
type configBlock struct {
	path string // "" at the top level, else e.g. "apps[…]." or "webhooks."
	keys []string
}

// configBlocks maps the config's struct types to their blocks.
func configBlocks() map[string]configBlock {
	out := map[string]configBlock{}
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		b := configBlock{path: path}
		for i := range t.NumField() {
			f := t.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if key == "" || key == "-" {
				continue
			}
			b.keys = append(b.keys, key)
			ft := f.Type
			switch {
			case ft.Kind() == reflect.Struct && ft.PkgPath() == t.PkgPath():
				walk(ft, path+key+".")
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft.Elem().PkgPath() == t.PkgPath():
				walk(ft.Elem(), path+key+"[…].")
			}
		}
		out[t.Name()] = b
	}
	walk(reflect.TypeOf(Config{}), "")
	return out
}

// closestKey returns the key of keys nearest to k (at most two edits, or the same letters in
// another case), or "".
func closestKey(k string, keys []string) string {
	best, bestD := "", 3
	for _, c := range keys {
		if strings.EqualFold(c, k) {
			return c
		}
		if d := editDistance(k, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// ConsoleConfig is the console block.
type ConsoleConfig struct {
	// AdminPasswordHash is the argon2id (PHC string) or bcrypt hash of the console's password,
	// from paynotify hash-password. "" leaves the console off.
	AdminPasswordHash string `yaml:"admin_password_hash"`
}

// LogConfig is the log block.
type LogConfig struct {
	// Level is debug, info (the default), warn or error.
	Level string `yaml:"level"`
	// Format is text (the default, logfmt-like key=value) or json (one object per line).
	Format string `yaml:"format"`
}

// handler returns the slog handler the log block asks for, writing to w.
func (l LogConfig) handler(w io.Writer) slog.Handler {
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Level)) // validated by ParseConfig
	opts := &slog.HandlerOptions{Level: level}
	if l.Format == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// WebhooksConfig is the webhooks block.
type WebhooksConfig struct {
	// AllowHTTP allows http:// endpoints; otherwise only https. Defaults to false.
	AllowHTTP bool `yaml:"allow_http"`
	// AllowPrivateNetworks lets deliveries go to loopback, private, link-local and other
	// non-public addresses, checked when connecting. Defaults to false.
	AllowPrivateNetworks bool `yaml:"allow_private_networks"`
	// Concurrency is the number of deliveries in flight per endpoint and process. Defaults to 8.
	Concurrency int `yaml:"concurrency"`
	// Retention is the old name of retention.webhook_attempts (a Go duration, at least 24h),
	// still read: setting both is an error.
	Retention time.Duration `yaml:"retention"`
}

// RetentionConfig is the retention block. Each period is Nd (days), a Go duration (720h) or
// off (kept for ever); at least 1d. Events, anomalies and orders are always kept.
type RetentionConfig struct {
	// Evidence: evidence records (notifications, query answers) received longer ago are deleted,
	// except the one each anomaly was raised on. Defaults to 180d.
	Evidence string `yaml:"evidence"`
	// WebhookAttempts: webhook attempts made longer ago, and deliveries no longer pending last
	// changed longer ago, are deleted. Defaults to 30d (or webhooks.retention, its old name).
	WebhookAttempts string `yaml:"webhook_attempts"`
	// RejectedEvidence: rejected notifications (requests that did not verify: anyone can post
	// them to a notify URL, up to the daily budget of 64 MiB an app) received longer ago are
	// deleted, when shorter than evidence. Defaults to 30d (off when evidence is off).
	RejectedEvidence string `yaml:"rejected_evidence"`
}

// Default retention periods.
const (
	DefaultEvidenceRetention         = "180d"
	DefaultWebhookAttemptsRetention  = "30d"
	DefaultRejectedEvidenceRetention = "30d"
)

// day is the unit of a period's d suffix, and its minimum.
const day = 24 * time.Hour

// maxPeriod bounds a period (100 years, far below time.Duration's limit): longer is a typo.
const maxPeriod = 36500 * day

var periodDays = regexp.MustCompile(`^([-+]?[0-9]+)d$`)

// parsePeriod reads a retention period: Nd, a Go duration, or off (0: kept for ever). field
// names the key in errors.
func parsePeriod(field, s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "off" {
		return 0, nil
	}
	var d time.Duration
	if m := periodDays.FindStringSubmatch(s); m != nil {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if n < 0 {
			return 0, fmt.Errorf("%s: %q is negative", field, s)
		}
		if err != nil || n > int64(maxPeriod/day) {
			return 0, fmt.Errorf("%s: %q is longer than 36500d (use off to keep everything)", field, s)
		}
		d = time.Duration(n) * day
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("%s: %q is not a period: use days (180d), a Go duration (720h) or off", field, s)
		}
	}
	switch {
	case d < 0:
		return 0, fmt.Errorf("%s: %q is negative", field, s)
	case d == 0:
		return 0, fmt.Errorf("%s: %q would delete everything: write off to keep everything, or a period of at least 1d", field, s)
	case d < day:
		return 0, fmt.Errorf("%s: %q is shorter than 1d (the prune runs daily)", field, s)
	case d > maxPeriod:
		return 0, fmt.Errorf("%s: %q is longer than 36500d (use off to keep everything)", field, s)
	}
	return d, nil
}

// periods returns the block's periods (0: off), an empty one taking its default.
func (r RetentionConfig) periods() (evidence, webhookAttempts time.Duration, err error) {
	if evidence, err = parsePeriod("retention.evidence", cmp.Or(r.Evidence, DefaultEvidenceRetention)); err != nil {
		return 0, 0, err
	}
	if webhookAttempts, err = parsePeriod("retention.webhook_attempts", cmp.Or(r.WebhookAttempts, DefaultWebhookAttemptsRetention)); err != nil {
		return 0, 0, err
	}
	return evidence, webhookAttempts, nil
}

// rejectedPeriod returns retention.rejected_evidence (0: off, as the other evidence). Unset, it
// is off when evidence is off: a config that kept everything before this key existed
// (evidence: off) keeps the rejected records too (a reviewer helper's finding).
func (r RetentionConfig) rejectedPeriod() (time.Duration, error) {
	if r.RejectedEvidence == "" {
		if ev, err := parsePeriod("retention.evidence", cmp.Or(r.Evidence, DefaultEvidenceRetention)); err == nil && ev == 0 {
			return 0, nil
		}
	}
	return parsePeriod("retention.rejected_evidence", cmp.Or(r.RejectedEvidence, DefaultRejectedEvidenceRetention))
}

// NATSConfig is the nats block.
type NATSConfig struct {
	// URL of the NATS server (nats://127.0.0.1:4222). Empty: no NATS publishing.
	URL string `yaml:"url"`
	// Stream is the JetStream stream, created if missing (its settings never changed). Defaults
	// to PAYNOTIFY.
	Stream string `yaml:"stream"`
	// SubjectPrefix: events go to {subject_prefix}.{app}.{type}. Defaults to paynotify.
	SubjectPrefix string `yaml:"subject_prefix"`
	// DuplicateWindow is the stream's de-duplication window for a stream paynotify creates.
	// Defaults to 24h.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
}

// JobsConfig tunes the background jobs.
type JobsConfig struct {
	// MaxChecksPerSecond caps the reconciliation checks each serve process starts per second, so
	// that a backlog drains without taking the machine from the notification path. Defaults to 10.
	MaxChecksPerSecond float64 `yaml:"max_checks_per_second"`
	// SweepInterval is how often the reconciliation sweep looks for due checks. Defaults to 5s;
	// at least 1s.
	SweepInterval time.Duration `yaml:"sweep_interval"`
}

// DefaultMaxChecksPerSecond is the default of jobs.max_checks_per_second.
const DefaultMaxChecksPerSecond = 10

func (j JobsConfig) withDefaults() JobsConfig {
	if j.SweepInterval == 0 {
		j.SweepInterval = 5 * time.Second
	}
	if j.MaxChecksPerSecond == 0 {
		j.MaxChecksPerSecond = DefaultMaxChecksPerSecond
	}
	return j
}

// ReconcileConfig is an app's reconciliation schedule (docs/reconciliation.md). Zero fields take
// paynotify.DefaultReconcile's values.
type ReconcileConfig struct {
	// Concurrency caps the app's queries in flight at once, per process. Defaults to 4.
	Concurrency int `yaml:"concurrency"`
	// MaxChecks caps the queries of one order, the close at expiry not counted. Defaults to 24.
	MaxChecks int `yaml:"max_checks"`
	// Schedule is the offsets after creation of the first queries (Go durations, at least 1s,
	// increasing). Defaults to [1m, 3m, 10m, 30m].
	Schedule []time.Duration `yaml:"schedule"`
	// ThenEvery is the interval of the queries after the schedule, until expiry. Defaults to 1h.
	ThenEvery time.Duration `yaml:"then_every"`
}

// policy returns the domain's policy of c, defaults applied.
func (c ReconcileConfig) policy() paynotify.ReconcilePolicy {
	return paynotify.ReconcilePolicy{Schedule: c.Schedule, ThenEvery: c.ThenEvery, MaxChecks: c.MaxChecks, Concurrency: c.Concurrency}.WithDefaults()
}

func (c ReconcileConfig) validate() error {
	for _, d := range c.Schedule {
		if d < time.Second {
			return fmt.Errorf("reconcile.schedule: %s is shorter than 1s", d)
		}
	}
	if c.ThenEvery != 0 && c.ThenEvery < time.Second {
		return fmt.Errorf("reconcile.then_every: %s is shorter than 1s", c.ThenEvery)
	}
	if err := c.policy().Validate(); err != nil {
		return fmt.Errorf("reconcile.%w", err)
	}
	return nil
}

// AppConfig is one merchant app. Which fields apply depends on Provider; key file paths are
// relative to the config file's directory.
type AppConfig struct {
	// Name is the app's name in paths and the API: [a-z0-9-]{1,32}. Required.
	Name string `yaml:"name"`
	// Provider is "alipay", "wechatpay" or "alipay-legacy". Required.
	Provider string `yaml:"provider"`
	// Reconcile is when the app's pending orders and refunds are checked at the provider.
	Reconcile ReconcileConfig `yaml:"reconcile"`

	// Alipay.
	AlipayCertFile      string   `yaml:"alipay_cert_file"`       // cert mode: alipayCertPublicKey_RSA2.crt
	AlipayPublicKeyFile string   `yaml:"alipay_public_key_file"` // public-key mode
	AlipayRootCertFile  string   `yaml:"alipay_root_cert_file"`  // cert mode: alipayRootCert.crt
	AppCertFile         string   `yaml:"app_cert_file"`          // cert mode: appCertPublicKey_….crt
	AppID               string   `yaml:"app_id"`
	AppPrivateKeyFile   string   `yaml:"app_private_key_file"`
	Gateway             string   `yaml:"gateway"` // defaults to https://openapi.alipay.com/gateway.do
	ReturnURL           string   `yaml:"return_url"`
	SellerID            string   `yaml:"seller_id"`
	SellerIDs           []string `yaml:"seller_ids"`
	SignType            string   `yaml:"sign_type"` // RSA2 (default) or RSA

	// Legacy Alipay (provider alipay-legacy; docs/alipay-legacy.md). It shares seller_id,
	// sign_type (MD5 or RSA), gateway (the mapi gateway), alipay_public_key_file and
	// merchant_private_key_file with the others.
	InputCharset    string `yaml:"input_charset"` // utf-8 (default) or gbk, as alipaywire.Charset reads the name
	MD5KeyFile      string `yaml:"md5_key_file"`
	NotifyVerify    *bool  `yaml:"notify_verify"`     // default true
	NotifyVerifyURL string `yaml:"notify_verify_url"` // default https://mapi.alipay.com/gateway.do?service=notify_verify
	Partner         string `yaml:"partner"`
	SellerEmail     string `yaml:"seller_email"`
	WAPGateway      string `yaml:"wap_gateway"` // default http://wappaygw.alipay.com/service/rest.htm

	// WeChat Pay.
	APIBase                string   `yaml:"api_base"` // defaults to https://api.mch.weixin.qq.com
	APIv2KeyFile           string   `yaml:"apiv2_key_file"`
	APIv3KeyFile           string   `yaml:"apiv3_key_file"`
	WechatAppID            string   `yaml:"appid"`
	MchID                  string   `yaml:"mchid"`
	MerchantPrivateKeyFile string   `yaml:"merchant_private_key_file"`
	MerchantSerialNo       string   `yaml:"merchant_serial_no"`
	PlatformCertFiles      []string `yaml:"platform_cert_files"`
	PlatformPublicKeyFile  string   `yaml:"platform_public_key_file"`
	PlatformPublicKeyID    string   `yaml:"platform_public_key_id"`
}

// DefaultDatabase is the embedded store's location.
const DefaultDatabase = "sqlite:paynotify-data/paynotify.db"

var appName = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// LoadConfig reads, expands and validates a config file. Relative key paths become relative to
// the file's directory.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(b, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for i := range c.Apps {
		c.Apps[i].resolvePaths(dir)
	}
	return c, nil
}

// ParseConfig parses YAML config bytes: unknown keys are errors, ${NAME} is replaced by the
// environment variable NAME (unset is an error), defaults are applied and the result validated.
func ParseConfig(b []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config is empty")
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, errors.New("config: " + strings.Join(yamlErrors(te.Errors), "; "))
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	// One document: what follows a "---" would otherwise be dropped without a word. A trailing
	// "---" with nothing, or only comments, after it holds no setting.
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil || !emptyDocument(&doc) {
			return nil, errors.New("config: more than one YAML document (a line \"---\"): put every setting in one")
		}
	}
	if err := expandEnv(reflect.ValueOf(&c).Elem(), "", lookupEnv); err != nil {
		return nil, err
	}
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	c.Jobs = c.Jobs.withDefaults()
	if c.Webhooks.Concurrency == 0 {
		c.Webhooks.Concurrency = 8
	}
	if c.Webhooks.Retention != 0 {
		if c.Retention.WebhookAttempts != "" {
			return nil, errors.New("webhooks.retention: replaced by retention.webhook_attempts: set only that one")
		}
		if c.Webhooks.Retention < day {
			return nil, fmt.Errorf("webhooks.retention: %s is shorter than 24h", c.Webhooks.Retention)
		}
		c.Retention.WebhookAttempts = c.Webhooks.Retention.String()
	}
	if c.Retention.Evidence == "" {
		c.Retention.Evidence = DefaultEvidenceRetention
	}
	if c.Retention.WebhookAttempts == "" {
		c.Retention.WebhookAttempts = DefaultWebhookAttemptsRetention
	}
	if c.NATS.URL != "" {
		if c.NATS.Stream == "" {
			c.NATS.Stream = "PAYNOTIFY"
		}
		if c.NATS.SubjectPrefix == "" {
			c.NATS.SubjectPrefix = "paynotify"
		}
		if c.NATS.DuplicateWindow == 0 {
			c.NATS.DuplicateWindow = 24 * time.Hour
		}
	}
	for i := range c.Apps {
		a := &c.Apps[i]
		if a.Provider == "alipay" {
			if a.Gateway == "" {
				a.Gateway = "https://openapi.alipay.com/gateway.do"
			}
			if a.SignType == "" {
				a.SignType = "RSA2"
			}
		}
		if a.Provider == paynotify.ProviderAlipayLegacy {
			if a.Gateway == "" {
				a.Gateway = alipaylegacy.DefaultGateway
			}
			if a.WAPGateway == "" {
				a.WAPGateway = alipaylegacy.DefaultWAPGateway
			}
			if a.NotifyVerifyURL == "" {
				a.NotifyVerifyURL = alipaylegacy.NotifyVerifyHTTPS
			}
			if a.InputCharset == "" {
				a.InputCharset = "utf-8"
			}
			if a.NotifyVerify == nil {
				on := true
				a.NotifyVerify = &on
			}
		}
		if a.Provider == "wechatpay" && a.APIBase == "" {
			a.APIBase = "https://api.mch.weixin.qq.com"
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

var (
	// legacyPID is a legacy Alipay partner or seller id.
	legacyPID   = regexp.MustCompile(`^2088[0-9]{12}$`)
	natsToken   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	natsSubject = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// emptyDocument reports whether a YAML document holds nothing: no content, or a null.
func emptyDocument(doc *yaml.Node) bool {
	if doc.Kind != yaml.DocumentNode {
		return false
	}
	for _, n := range doc.Content {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!null" {
			return false
		}
	}
	return true
}

// expandEnv replaces ${NAME} in every string of v, naming the field of an unset variable.
func expandEnv(v reflect.Value, path string, lookupEnv func(string) (string, bool)) error {
	switch v.Kind() {
	case reflect.String:
		var missing, empty string
		out := envRef.ReplaceAllStringFunc(v.String(), func(ref string) string {
			name := ref[2 : len(ref)-1]
			val, ok := lookupEnv(name)
			if !ok && missing == "" {
				missing = name
			}
			if ok && val == "" && empty == "" {
				empty = name
			}
			return val
		})
		if missing != "" {
			return fmt.Errorf("%s: environment variable %s is not set", path, missing)
		}
		if out == "" && empty != "" {
			// A value written as ${NAME} means to be set: empty, it would silently become the
			// default (SQLite instead of the PostgreSQL of the other instances, no NATS).
			return fmt.Errorf("%s: environment variable %s is empty (set it; an optional key is left unset by removing it from the config)", path, empty)
		}
		v.SetString(out)
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if err := expandEnv(v.Field(i), joinPath(path, name), lookupEnv); err != nil {
				return err
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			if err := expandEnv(v.Index(i), fmt.Sprintf("%s[%d]", path, i), lookupEnv); err != nil {
				return err
			}
		}
	}
	return nil
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// Validate checks required values and formats, naming the field at fault.
func (c *Config) Validate() error {
	if c.PublicURL == "" {
		return errors.New("public_url: required (the base URL providers reach this server at)")
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(c.PublicURL, "/") {
		return fmt.Errorf("public_url: %q must be an absolute http(s) URL without query, fragment or trailing slash", redactDSN(c.PublicURL))
	}
	if u.User != nil {
		// It is the base of every notify_url sent to the providers, and doctor prints it.
		return fmt.Errorf("public_url: %q must not hold a user name or password", redactDSN(c.PublicURL))
	}
	// The scheme in lower case (url.Parse's): serve tells https by its prefix, for the console's
	// Secure cookie, which "HTTPS://…" left off (a reviewer helper's finding).
	c.PublicURL = u.Scheme + c.PublicURL[len(u.Scheme):]
	if c.APIToken == "" {
		return errors.New("api_token: required")
	}
	if len(c.APIToken) < 16 {
		return errors.New("api_token: too short (at least 16 characters)")
	}
	if h := c.Console.AdminPasswordHash; h != "" {
		if err := console.CheckPasswordHash(h); err != nil {
			// The hash itself is not repeated: it is a secret of sorts.
			return errors.New("console.admin_password_hash: not an argon2id or bcrypt hash (make one with paynotify hash-password)")
		}
	}
	if !strings.HasPrefix(c.Database, "sqlite:") && !strings.HasPrefix(c.Database, "postgres://") && !strings.HasPrefix(c.Database, "postgresql://") {
		return errors.New("database: must be sqlite:PATH or a postgres:// URL")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level: %q is not debug, info, warn or error", c.Log.Level)
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			return fmt.Errorf("admin_listen: %q is not an address like 127.0.0.1:9090 (%v)", c.AdminListen, err)
		}
		if sameListener(c.AdminListen, c.Listen) {
			return fmt.Errorf("admin_listen: %q overlaps listen %q: give the admin listener a port of its own", c.AdminListen, c.Listen)
		}
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return fmt.Errorf("log.format: %q is not text or json", c.Log.Format)
	}
	if c.Jobs.SweepInterval < time.Second {
		return fmt.Errorf("jobs.sweep_interval: %s is shorter than 1s", c.Jobs.SweepInterval)
	}
	if c.Webhooks.Concurrency < 1 || c.Webhooks.Concurrency > 256 {
		return fmt.Errorf("webhooks.concurrency: %d is not between 1 and 256", c.Webhooks.Concurrency)
	}
	if _, err := c.Retention.rejectedPeriod(); err != nil {
		return err
	}
	if _, _, err := c.Retention.periods(); err != nil {
		return err
	}
	if c.NATS.URL == "" && (c.NATS.Stream != "" || c.NATS.SubjectPrefix != "" || c.NATS.DuplicateWindow != 0) {
		return fmt.Errorf("nats.url: required when the nats block is set")
	}
	if c.NATS.URL != "" {
		servers := strings.Split(c.NATS.URL, ",") // nats.go takes a list of servers
		for i, s := range servers {
			if u, err := url.Parse(strings.TrimSpace(s)); err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
				// Not shown: a NATS URL often holds user:password@ or token@, and what is not a
				// URL (a server without its scheme, a comma inside a password) cannot be told
				// apart from its secret (a reviewer helper's finding).
				return fmt.Errorf("nats.url: server %d of %d is not a nats:// or tls:// URL (scheme://host:port, each server with its scheme; a comma separates servers)",
					i+1, len(servers))
			}
		}
		if !natsToken.MatchString(c.NATS.Stream) {
			return fmt.Errorf("nats.stream: %q: letters, digits, - and _ only", c.NATS.Stream)
		}
		if !natsSubject.MatchString(c.NATS.SubjectPrefix) {
			return fmt.Errorf("nats.subject_prefix: %q is not a subject without wildcards", c.NATS.SubjectPrefix)
		}
		if c.NATS.DuplicateWindow < time.Second {
			return fmt.Errorf("nats.duplicate_window: %s is shorter than 1s", c.NATS.DuplicateWindow)
		}
	}
	if r := c.Jobs.MaxChecksPerSecond; !(r >= 0) || math.IsInf(r, 1) {
		// YAML reads .nan and .inf as numbers: NaN passed every comparison (no limit at all).
		return fmt.Errorf("jobs.max_checks_per_second: must be a positive number")
	}
	if len(c.Apps) == 0 {
		return errors.New("apps: at least one app is required")
	}
	seen, ids := map[string]bool{}, map[string]string{}
	for i := range c.Apps {
		a := &c.Apps[i]
		field := fmt.Sprintf("apps[%d]", i)
		if a.Name != "" {
			field = fmt.Sprintf("apps[%d] (%s)", i, a.Name)
		}
		if err := a.validate(); err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
		if err := a.Reconcile.validate(); err != nil {
			return fmt.Errorf("%s.%w", field, err)
		}
		if seen[a.Name] {
			return fmt.Errorf("%s.name: duplicate app name %q", field, a.Name)
		}
		seen[a.Name] = true
		// One app per provider identity: the provider numbers orders per app_id (Alipay) and per
		// mchid (WeChat Pay, whose answers name the appid), so a query about one app's order
		// would find and apply the other's payment to both (a reviewer helper's finding).
		var key, what string
		switch a.Provider {
		case "alipay":
			key, what = "alipay/"+a.AppID, fmt.Sprintf("app_id: %q is", a.AppID)
		case "wechatpay":
			key, what = "wechatpay/"+a.MchID+"/"+a.WechatAppID, fmt.Sprintf("appid: mchid %q with appid %q is", a.MchID, a.WechatAppID)
		}
		if other, ok := ids[key]; ok && key != "" {
			return fmt.Errorf("%s.%s also %s's: one app per provider app (a payment that a query finds would be applied to the orders of that number in both)", field, what, other)
		}
		ids[key] = field
	}
	return nil
}

func (a *AppConfig) validate() error {
	if a.Name == "" {
		return errors.New("name: required")
	}
	if !appName.MatchString(a.Name) {
		return fmt.Errorf("name: %q must match [a-z0-9-]{1,32}", a.Name)
	}
	required := func(pairs ...string) error {
		for i := 0; i < len(pairs); i += 2 {
			if pairs[i+1] == "" {
				return fmt.Errorf("%s: required for a %s app", pairs[i], a.Provider)
			}
		}
		return nil
	}
	forbidden := func(pairs ...string) error {
		for i := 0; i < len(pairs); i += 2 {
			if pairs[i+1] != "" {
				return fmt.Errorf("%s: not a %s setting", pairs[i], a.Provider)
			}
		}
		return nil
	}
	switch a.Provider {
	case "alipay":
		if err := required("app_id", a.AppID, "app_private_key_file", a.AppPrivateKeyFile); err != nil {
			return err
		}
		if err := forbidden("mchid", a.MchID, "appid", a.WechatAppID, "merchant_private_key_file", a.MerchantPrivateKeyFile,
			"apiv3_key_file", a.APIv3KeyFile, "platform_public_key_file", a.PlatformPublicKeyFile, "api_base", a.APIBase); err != nil {
			return err
		}
		certMode := a.AppCertFile != "" || a.AlipayCertFile != "" || a.AlipayRootCertFile != ""
		switch {
		case certMode && a.AlipayPublicKeyFile != "":
			return errors.New("alipay_public_key_file: set either it or the three cert files, not both")
		case certMode:
			if err := required("app_cert_file", a.AppCertFile, "alipay_cert_file", a.AlipayCertFile, "alipay_root_cert_file", a.AlipayRootCertFile); err != nil {
				return err
			}
		case a.AlipayPublicKeyFile == "":
			return errors.New("alipay_public_key_file: required (or app_cert_file + alipay_cert_file + alipay_root_cert_file)")
		}
		if a.SignType != "RSA2" && a.SignType != "RSA" {
			return fmt.Errorf("sign_type: %q must be RSA2 or RSA", a.SignType)
		}
		if a.SellerID != "" && len(a.SellerIDs) > 0 {
			return errors.New("seller_ids: set seller_id or seller_ids, not both")
		}
		if err := checkURL("gateway", a.Gateway); err != nil {
			return err
		}
		if a.ReturnURL != "" {
			if err := checkURL("return_url", a.ReturnURL); err != nil {
				return err
			}
		}
	case "wechatpay":
		if err := required("mchid", a.MchID, "appid", a.WechatAppID, "merchant_private_key_file", a.MerchantPrivateKeyFile,
			"merchant_serial_no", a.MerchantSerialNo, "apiv3_key_file", a.APIv3KeyFile); err != nil {
			return err
		}
		if err := forbidden("app_id", a.AppID, "app_private_key_file", a.AppPrivateKeyFile, "alipay_public_key_file", a.AlipayPublicKeyFile,
			"seller_id", a.SellerID, "gateway", a.Gateway, "sign_type", a.SignType, "return_url", a.ReturnURL); err != nil {
			return err
		}
		if a.PlatformPublicKeyFile == "" && len(a.PlatformCertFiles) == 0 {
			return errors.New("platform_public_key_file: required (and platform_public_key_id), or platform_cert_files")
		}
		if (a.PlatformPublicKeyFile == "") != (a.PlatformPublicKeyID == "") {
			return errors.New("platform_public_key_id: platform_public_key_file and platform_public_key_id go together")
		}
		if err := checkURL("api_base", a.APIBase); err != nil {
			return err
		}
	case paynotify.ProviderAlipayLegacy:
		if err := required("partner", a.Partner); err != nil {
			return err
		}
		if err := forbidden("app_id", a.AppID, "app_private_key_file", a.AppPrivateKeyFile, "mchid", a.MchID, "appid", a.WechatAppID,
			"apiv3_key_file", a.APIv3KeyFile, "apiv2_key_file", a.APIv2KeyFile, "platform_public_key_file", a.PlatformPublicKeyFile,
			"platform_public_key_id", a.PlatformPublicKeyID, "merchant_serial_no", a.MerchantSerialNo, "api_base", a.APIBase,
			"app_cert_file", a.AppCertFile, "alipay_cert_file", a.AlipayCertFile, "alipay_root_cert_file", a.AlipayRootCertFile); err != nil {
			return err
		}
		if len(a.PlatformCertFiles) > 0 {
			return errors.New("platform_cert_files: not a alipay-legacy setting")
		}
		if !legacyPID.MatchString(a.Partner) {
			return fmt.Errorf("partner: %q must be 2088 followed by 12 digits", a.Partner)
		}
		if a.SellerID != "" && !legacyPID.MatchString(a.SellerID) {
			return fmt.Errorf("seller_id: %q must be 2088 followed by 12 digits", a.SellerID)
		}
		if len(a.SellerIDs) > 0 {
			return errors.New("seller_ids: not a alipay-legacy setting (seller_id or seller_email)")
		}
		if a.SellerID != "" && a.SellerEmail != "" {
			return errors.New("seller_email: set seller_id or seller_email, not both")
		}
		switch strings.ToUpper(a.SignType) {
		case "MD5":
			if err := required("md5_key_file", a.MD5KeyFile); err != nil {
				return err
			}
			if err := forbidden("alipay_public_key_file", a.AlipayPublicKeyFile, "merchant_private_key_file", a.MerchantPrivateKeyFile); err != nil {
				return fmt.Errorf("%w (sign_type MD5 uses md5_key_file)", err)
			}
		case "RSA":
			if err := required("alipay_public_key_file", a.AlipayPublicKeyFile, "merchant_private_key_file", a.MerchantPrivateKeyFile); err != nil {
				return err
			}
			if err := forbidden("md5_key_file", a.MD5KeyFile); err != nil {
				return fmt.Errorf("%w (sign_type RSA uses the key files)", err)
			}
		default:
			return fmt.Errorf("sign_type: %q must be MD5 or RSA for an alipay-legacy app", a.SignType)
		}
		// The names as alipaywire reads them; the configuration offers UTF-8 and GBK only.
		if cs, ok := alipaywire.Charset(a.InputCharset); !ok || cs != alipaywire.UTF8 && cs != alipaywire.GBK {
			return fmt.Errorf("input_charset: %q must be utf-8 or gbk", a.InputCharset)
		}
		for _, f := range []struct{ field, url string }{{"gateway", a.Gateway}, {"wap_gateway", a.WAPGateway}, {"notify_verify_url", a.NotifyVerifyURL}} {
			if err := checkURL(f.field, f.url); err != nil {
				return err
			}
		}
		if a.ReturnURL != "" {
			if err := checkURL("return_url", a.ReturnURL); err != nil {
				return err
			}
		}
	case "":
		return errors.New("provider: required (alipay, wechatpay or alipay-legacy)")
	default:
		return fmt.Errorf("provider: %q must be alipay, wechatpay or alipay-legacy", a.Provider)
	}
	if a.Provider != paynotify.ProviderAlipayLegacy {
		if err := forbidden("partner", a.Partner, "seller_email", a.SellerEmail, "md5_key_file", a.MD5KeyFile, "input_charset", a.InputCharset,
			"wap_gateway", a.WAPGateway, "notify_verify_url", a.NotifyVerifyURL); err != nil {
			return err
		}
		if a.NotifyVerify != nil {
			return fmt.Errorf("notify_verify: not a %s setting", a.Provider)
		}
	}
	return nil
}

func checkURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s: %q must be an absolute http(s) URL", field, redactDSN(s))
	}
	if u.User != nil {
		// Providers' URLs take no credentials, and doctor prints the URLs it probes.
		return fmt.Errorf("%s: %q must not hold a user name or password", field, redactDSN(s))
	}
	return nil
}

// Sellers returns the app's allowed Alipay seller ids.
func (a *AppConfig) Sellers() []string {
	if a.SellerID != "" {
		return []string{a.SellerID}
	}
	return a.SellerIDs
}

func (a *AppConfig) resolvePaths(dir string) {
	for _, p := range []*string{&a.AlipayCertFile, &a.AlipayPublicKeyFile, &a.AlipayRootCertFile, &a.AppCertFile, &a.AppPrivateKeyFile,
		&a.APIv2KeyFile, &a.APIv3KeyFile, &a.MerchantPrivateKeyFile, &a.PlatformPublicKeyFile, &a.MD5KeyFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for i, p := range a.PlatformCertFiles {
		if !filepath.IsAbs(p) {
			a.PlatformCertFiles[i] = filepath.Join(dir, p)
		}
	}
}

// sameListener reports whether two listen addresses would take the same port: the same port on
// the same host, or on any host when either is every address ("", 0.0.0.0, [::]). Port 0 (one
// the system picks) never overlaps. Such a pair fails with "address already in use" at start,
// which is exit 1 and restarted: it is refused as the config error it is.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil {
		return a == b
	}
	if pa != pb || pa == "0" {
		return false
	}
	any := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return any(ha) || any(hb) || strings.EqualFold(ha, hb)
}
