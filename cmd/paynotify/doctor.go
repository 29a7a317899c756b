package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/alipaylegacy"
	"github.com/paynotify/paynotify/internal/wechatpaywire"
	"github.com/paynotify/paynotify/postgres"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/sqlite"
	"github.com/paynotify/paynotify/wechatpay"
)

func init() { commands["doctor"] = doctorCommand{} }

// doctorCommand is `paynotify doctor`: it checks a config before it goes live (docs/doctor.md).
type doctorCommand struct{}

const doctorTry = "paynotify doctor --config paynotify.yaml"

func (doctorCommand) Usage() string {
	return `Usage: paynotify doctor --config FILE [--app NAME]

Checks a config the way serve will use it, changing nothing: per app, that the keys parse, that
the private key and its public key or certificate match, that no provider key is the app's own
(the wrong-key guard), when certificates expire (WARN within 30 days), that the gateway answers
(over TLS; plain http, as a sandbox has, is a WARN), and that a signed no-op call (a query for an
order that does not exist) comes back with a signature that verifies; then that public_url answers
/healthz, and that the database answers with its migrations current. It never migrates, and never
creates the SQLite file.

Before the first serve, an unreachable public_url, a SQLite file not yet created and pending
migrations are WARN, not FAIL. One line per check, then a summary:
  PASS  alipay-demo  keys: app_private_key_file parses (RSA 2048)
  FAIL  alipay-demo  signed call: the answer's signature does not verify with alipay_public_key_file — set the Alipay public key (支付宝公钥) of app_id 2021…
Exit 0 when no check failed, 1 otherwise, 2 on usage or config errors.

  --config FILE   the server's config file
  --app NAME      check only this app (the public_url and database checks still run)
`
}

func (cmd doctorCommand) Run(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	configPath := fs.String("config", "", "")
	app := fs.String("app", "", "")
	if err := parseCommandFlags(m, fs, cmd.Usage(), doctorTry, args); err != nil {
		return err
	}
	if *configPath == "" {
		return usagef(doctorTry, "doctor: --config is required")
	}
	cfg, err := LoadConfig(*configPath)
	if err != nil {
		return &configError{err: err}
	}
	apps := cfg.Apps
	if *app != "" {
		apps = nil
		for _, a := range cfg.Apps {
			if a.Name == *app {
				apps = append(apps, a)
			}
		}
		if len(apps) == 0 {
			return usagef(doctorTry, "doctor: --app %q is not an app of %s", *app, *configPath)
		}
	}
	d := &doctor{cfg: cfg, configPath: *configPath, now: time.Now, http: &http.Client{
		Timeout:       doctorTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	results := d.run(ctx, apps)
	width := len(serverScope)
	for _, r := range results {
		width = max(width, len(r.scope))
	}
	var n [3]int
	for _, r := range results {
		n[r.status]++
		fmt.Fprintln(m.Stdout, r.line(width))
	}
	fmt.Fprintf(m.Stdout, "%d checks: %d passed, %d warnings, %d failed\n", len(results), n[checkPass], n[checkWarn], n[checkFail])
	if n[checkFail] > 0 {
		return &verdictError{reason: fmt.Sprintf("%d checks failed", n[checkFail])}
	}
	return nil
}

// doctorTimeout bounds each network probe and call of doctor.
const doctorTimeout = 10 * time.Second

// certWarnWithin is how close to its expiry a certificate makes a WARN.
const certWarnWithin = 30 * 24 * time.Hour

// serverScope is the scope column of the checks that are not an app's.
const serverScope = "(server)"

// checkStatus is the outcome of one check, in increasing severity.
type checkStatus int

const (
	checkPass checkStatus = iota
	checkWarn
	checkFail
)

func (s checkStatus) String() string { return [...]string{"PASS", "WARN", "FAIL"}[s] }

// checkResult is one line of doctor's report. Nothing in it may hold key material: findings
// name files, fields, sizes, serials and dates, never a key's bytes.
type checkResult struct {
	status  checkStatus
	scope   string // the app's name, or serverScope
	check   string // "keys", "key pair", "wrong-key guard", "certificate", "gateway", "signed call", …
	finding string
	fix     string // WARN and FAIL: what to do, in one line
}

// line formats r: "STATUS  scope  check: finding — fix", the scope padded to width.
func (r checkResult) line(width int) string {
	s := fmt.Sprintf("%s  %-*s  %s: %s", r.status, width, r.scope, r.check, r.finding)
	if r.fix != "" && r.status != checkPass {
		s += " — " + r.fix
	}
	return strings.ReplaceAll(s, "\n", " ")
}

// report gathers the results of one scope.
type report struct {
	scope   string
	results []checkResult
}

func (r *report) add(st checkStatus, check, finding, fix string) {
	r.results = append(r.results, checkResult{status: st, scope: r.scope, check: check, finding: finding, fix: fix})
}

func (r *report) pass(check, format string, args ...any) {
	r.add(checkPass, check, fmt.Sprintf(format, args...), "")
}

func (r *report) warn(check, finding, fix string) { r.add(checkWarn, check, finding, fix) }
func (r *report) fail(check, finding, fix string) { r.add(checkFail, check, finding, fix) }

// failed reports whether a check of r named check failed.
func (r *report) failed(check string) bool {
	for _, c := range r.results {
		if c.check == check && c.status == checkFail {
			return true
		}
	}
	return false
}

// doctor runs the checks of one config.
type doctor struct {
	cfg *Config
	// configPath is the config file's path, as given, for the commands doctor suggests.
	configPath string
	http       *http.Client // probes of gateways and public_url
	now        func() time.Time
}

// run checks apps and the server, concurrently, and returns the results in config order, the
// server's last.
func (d *doctor) run(ctx context.Context, apps []AppConfig) []checkResult {
	reports := make([]*report, len(apps)+1)
	var wg sync.WaitGroup
	for i := range apps {
		wg.Go(func() { reports[i] = d.app(ctx, &apps[i]) })
	}
	wg.Go(func() { reports[len(apps)] = d.server(ctx) })
	wg.Wait()
	var out []checkResult
	for _, r := range reports {
		out = append(out, r.results...)
	}
	return out
}

// app checks one app.
func (d *doctor) app(ctx context.Context, ac *AppConfig) *report {
	r := &report{scope: ac.Name}
	switch ac.Provider {
	case paynotify.ProviderAlipay:
		d.alipay(ctx, r, ac)
	case paynotify.ProviderWechatpay:
		d.wechatpay(ctx, r, ac)
	case paynotify.ProviderAlipayLegacy:
		d.legacy(ctx, r, ac)
	}
	if err := publishedCheck(ac); err != nil {
		r.fail("published key", err.Error(), "replace the test key with the app's own keys from the provider's console; test keys work with the sandbox only")
	}
	return r
}

// server checks public_url and the database.
func (d *doctor) server(ctx context.Context) *report {
	r := &report{scope: serverScope}
	if err := refusePublishedToken(d.cfg); err != nil {
		r.fail("api_token", err.Error(), "set api_token to a token of your own (openssl rand -hex 16); serve refuses this one")
	}
	d.publicURL(ctx, r)
	d.database(ctx, r)
	return r
}

// readKey reads a key or certificate file for a check, reporting a file that cannot be read as a
// FAIL of "keys". Secret files (private keys, APIv2/APIv3/MD5 keys) that every user can read, or
// their group can write, are a WARN.
func (d *doctor) readKey(r *report, field, path string, secret bool) ([]byte, bool) {
	b, err := readKeyFile(field, path)
	if err != nil {
		r.fail("keys", err.Error(), "set "+field+" to a readable file (paths are relative to the config file)")
		return nil, false
	}
	// Readable by the file's group is what deploy.md installs (0640 root:paynotify, for the
	// service's user); writable by it, or anything for every user, is not.
	if fi, err := os.Stat(path); secret && err == nil && fi.Mode().Perm()&0o027 != 0 {
		r.warn("keys", fmt.Sprintf("%s is readable by other users (mode %04o)", field, fi.Mode().Perm()),
			"chmod 640 "+path+" (its owner and the service's group only, or 600 when the service owns it): it holds a secret")
	}
	return b, true
}

// rsaBits names an RSA key's size for the report.
func rsaBits(k *rsa.PublicKey) string { return fmt.Sprintf("RSA %d", k.N.BitLen()) }

// keyPairCheck reports whether priv is a consistent RSA private key; what its public half must
// match at the provider is proven by the signed call.
func keyPairCheck(r *report, field string, priv *rsa.PrivateKey, provenBy string) {
	if err := priv.Validate(); err != nil {
		r.fail("key pair", field+" is not a consistent RSA key: "+err.Error(), "configure the private key exactly as the provider's key tool made it")
		return
	}
	r.pass("key pair", "%s is a consistent RSA key; %s", field, provenBy)
}

// parseCerts returns the certificates of a PEM file that Go can parse (Alipay's root file also
// holds SM2 roots, which it cannot: those are skipped).
func parseCerts(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
	if len(out) == 0 { // DER, or the one-line base64 of a DER certificate
		if c, err := wechatpay.ParseCertificate(b); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// certExpiry reports the validity of the certificates of one file: FAIL when one is expired or
// not yet valid, WARN when one expires within certWarnWithin, PASS otherwise.
func (d *doctor) certExpiry(r *report, field string, certs []*x509.Certificate, renew string) {
	if len(certs) == 0 {
		return
	}
	now := d.now()
	// The certificate that ends first decides.
	first := certs[0]
	for _, c := range certs[1:] {
		if c.NotAfter.Before(first.NotAfter) {
			first = c
		}
	}
	for _, c := range certs {
		if now.Before(c.NotBefore) {
			r.fail("certificate", fmt.Sprintf("%s (serial %X) is not valid before %s", field, c.SerialNumber, c.NotBefore.UTC().Format(time.DateOnly)),
				"check the clock of this machine, or "+renew)
			return
		}
	}
	end := first.NotAfter.UTC().Format(time.DateOnly)
	left := first.NotAfter.Sub(now)
	switch {
	case left <= 0:
		r.fail("certificate", fmt.Sprintf("%s (serial %X) expired on %s", field, first.SerialNumber, end), renew)
	case left < certWarnWithin:
		r.warn("certificate", fmt.Sprintf("%s (serial %X) expires on %s, in %d days", field, first.SerialNumber, end, int(left.Hours()/24)),
			renew+" before "+end)
	default:
		r.pass("certificate", "%s valid until %s (%d days)", field, end, int(left.Hours()/24))
	}
}

// alipayCertExpiry reports the validity of the certificates alipay_cert_file trusts, each named by
// its alipay_cert_sn (the certificate line named a hex X.509 serial the keys line does not show):
// the one that ends last decides, as verification goes on with it while Alipay signs with it; one
// that ended beside it is a WARN to remove it, not a FAIL (a rotation leaves the old one in the
// file; a reviewer helper's finding).
func (d *doctor) alipayCertExpiry(r *report, cks []alipay.CertKey, renew string) {
	now := d.now()
	day := func(t time.Time) string { return t.UTC().Format(time.DateOnly) }
	// The one that ends last among those valid now; a next one not valid yet does not decide
	// (added ahead of its start, beside the current one: a reviewer's finding).
	var last *alipay.CertKey
	for i := range cks {
		if ck := &cks[i]; !now.Before(ck.NotBefore) && (last == nil || ck.NotAfter.After(last.NotAfter)) {
			last = ck
		}
	}
	if last == nil { // none has started: the one that starts first
		first := cks[0]
		for _, ck := range cks[1:] {
			if ck.NotBefore.Before(first.NotBefore) {
				first = ck
			}
		}
		r.fail("certificate", fmt.Sprintf("alipay_cert_file (alipay_cert_sn %s) is not valid before %s", first.SN, day(first.NotBefore)),
			"check the clock of this machine, or "+renew)
		return
	}
	left := last.NotAfter.Sub(now)
	switch {
	case left <= 0:
		r.fail("certificate", fmt.Sprintf("alipay_cert_file (alipay_cert_sn %s) expired on %s", last.SN, day(last.NotAfter)), renew)
		return
	case left < certWarnWithin:
		r.warn("certificate", fmt.Sprintf("alipay_cert_file (alipay_cert_sn %s) expires on %s, in %d days", last.SN, day(last.NotAfter), int(left.Hours()/24)),
			renew+" before "+day(last.NotAfter)+", and add Alipay's next certificate to the file beside it")
	default:
		r.pass("certificate", "alipay_cert_file valid until %s (%d days; alipay_cert_sn %s)", day(last.NotAfter), int(left.Hours()/24), last.SN)
	}
	for _, ck := range cks {
		switch {
		case ck.SN == last.SN:
		case !now.Before(ck.NotAfter):
			r.warn("certificate", fmt.Sprintf("alipay_cert_file also holds alipay_cert_sn %s, which ended on %s", ck.SN, day(ck.NotAfter)),
				"remove it from the file once Alipay signs with alipay_cert_sn "+last.SN+" only")
		case now.Before(ck.NotBefore):
			r.pass("certificate", "alipay_cert_file also holds alipay_cert_sn %s, valid from %s (the next one)", ck.SN, day(ck.NotBefore))
		}
	}
}

// probe asks rawURL with a GET and reports whether anything answers: any HTTP status does. It
// reports the check as check; plainOK says that plain http is what this endpoint really is
// (Alipay's old WAP gateway), otherwise plain http is a WARN.
func (d *doctor) probe(ctx context.Context, r *report, check, field, rawURL string, plainOK bool) bool {
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		r.fail(check, fmt.Sprintf("%s %q is not a URL: %v", field, rawURL, err), "set "+field+" to the provider's URL")
		return false
	}
	resp, err := d.http.Do(req)
	if err != nil {
		var ce *tls.CertificateVerificationError
		if errors.As(err, &ce) {
			r.fail(check, fmt.Sprintf("%s %s: the TLS certificate does not verify: %v", field, rawURL, ce.Err),
				"the gateway must present a certificate valid for its host name: check "+field+" and any TLS-intercepting proxy")
			return false
		}
		r.fail(check, fmt.Sprintf("%s %s does not answer: %v", field, rawURL, unwrapURLError(err)),
			"check "+field+", DNS, the firewall and any outgoing proxy of this machine")
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.TLS != nil:
		r.pass(check, "%s %s answers over TLS (%s, HTTP %d)", field, rawURL, tls.VersionName(resp.TLS.Version), resp.StatusCode)
	case plainOK:
		r.pass(check, "%s %s answers (HTTP %d; plain http, as this gateway of Alipay's is)", field, rawURL, resp.StatusCode)
	default:
		r.warn(check, fmt.Sprintf("%s %s answers over plain http (HTTP %d): fine for a sandbox", field, rawURL, resp.StatusCode),
			"in production use the provider's https URL (the default of "+field+")")
	}
	return true
}

// unwrapURLError drops the method and URL that net/http puts before a transport error (the
// caller names the URL itself).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// isHex reports whether s is a non-empty string of hexadecimal digits.
func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// randomTradeNo is an out_trade_no no order has: the subject of the signed no-op query.
func randomTradeNo() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "doctor" + hex.EncodeToString(b)
}

// alipay checks an Alipay (OpenAPI) app.
func (d *doctor) alipay(ctx context.Context, r *report, ac *AppConfig) {
	var priv *rsa.PrivateKey
	if b, ok := d.readKey(r, "app_private_key_file", ac.AppPrivateKeyFile, true); ok {
		k, err := alipay.ParsePrivateKey(b)
		switch {
		case err != nil:
			r.fail("keys", "app_private_key_file: "+err.Error(), "set app_private_key_file to the app private key, PKCS#8 or PKCS#1 (paynotify keygen makes one)")
		case k.N.BitLen() < 2048:
			priv = k
			r.warn("keys", "app_private_key_file parses ("+rsaBits(&k.PublicKey)+")", "Alipay wants RSA 2048 app keys: make one with paynotify keygen and upload its public key")
		default:
			priv = k
			r.pass("keys", "app_private_key_file parses (%s)", rsaBits(&k.PublicKey))
		}
	}
	certMode := ac.AlipayPublicKeyFile == ""
	alipayField := "alipay_public_key_file"
	var alipayPub, appCertPub *rsa.PublicKey
	var alipayKeys []*rsa.PublicKey // every key alipay_cert_file trusts (a rotation: more than one)
	if !certMode {
		if b, ok := d.readKey(r, alipayField, ac.AlipayPublicKeyFile, false); ok {
			if k, err := alipay.ParsePublicKey(b); err != nil {
				r.fail("keys", alipayField+": "+err.Error(), "set alipay_public_key_file to the Alipay public key (支付宝公钥) of the Alipay console")
			} else {
				alipayPub = k
				r.pass("keys", "%s parses (%s)", alipayField, rsaBits(k))
				if bytes.Contains(b, []byte("BEGIN CERTIFICATE")) {
					// Its key is used, but a certificate is what an app in certificate mode
					// downloads, and such an app's calls need the three certificate files (a
					// reviewer helper's finding: every line passed).
					r.warn("keys", alipayField+" holds a certificate, not the Alipay public key (支付宝公钥)",
						"if the app signs in certificate mode (公钥证书) in the Alipay console, configure app_cert_file, alipay_cert_file and alipay_root_cert_file instead")
				}
			}
		}
	} else {
		alipayField = "alipay_cert_file"
		renew := "download the app's current certificates from the Alipay console (接口加签方式: 公钥证书)"
		if b, ok := d.readKey(r, "app_cert_file", ac.AppCertFile, false); ok {
			if sn, k, err := alipay.CertPublicKey(b); err != nil {
				r.fail("keys", "app_cert_file: "+err.Error(), "set app_cert_file to appCertPublicKey_"+ac.AppID+".crt")
			} else {
				appCertPub = k
				r.pass("keys", "app_cert_file parses (app_cert_sn %s, %s)", sn, rsaBits(k))
				d.certExpiry(r, "app_cert_file", parseCerts(b), renew)
			}
		}
		if b, ok := d.readKey(r, "alipay_cert_file", ac.AlipayCertFile, false); ok {
			if cks, err := alipay.AlipayCertKeys(b); err != nil {
				r.fail("keys", "alipay_cert_file: "+err.Error(), "set alipay_cert_file to alipayCertPublicKey_RSA2.crt")
			} else {
				alipayPub = cks[0].Key
				var trusted []string
				for _, ck := range cks {
					alipayKeys = append(alipayKeys, ck.Key)
					trusted = append(trusted, "alipay_cert_sn "+ck.SN+", "+rsaBits(ck.Key))
				}
				// Every certificate the server trusts is named: during a rotation the file holds
				// the current and the next one.
				r.pass("keys", "alipay_cert_file parses (%s)", strings.Join(trusted, "; "))
				d.alipayCertExpiry(r, cks, renew)
			}
		}
		if b, ok := d.readKey(r, "alipay_root_cert_file", ac.AlipayRootCertFile, false); ok {
			if sn, err := alipay.RootCertSN(b); err != nil {
				r.fail("keys", "alipay_root_cert_file: "+err.Error(), "set alipay_root_cert_file to alipayRootCert.crt")
			} else {
				r.pass("keys", "alipay_root_cert_file parses (alipay_root_cert_sn %s)", sn)
				d.certExpiry(r, "alipay_root_cert_file", parseCerts(b), renew)
			}
		}
	}
	if priv != nil {
		if certMode {
			if appCertPub != nil {
				if appCertPub.Equal(&priv.PublicKey) {
					r.pass("key pair", "app_cert_file certifies the public key of app_private_key_file")
				} else {
					r.fail("key pair", "app_cert_file does not certify the public key of app_private_key_file",
						"configure the private key the app certificate was issued for, or the certificate issued for this key")
				}
			}
		} else {
			keyPairCheck(r, "app_private_key_file", priv, "that Alipay holds its public key for app_id "+ac.AppID+" is proven by the signed call")
		}
		if alipayPub != nil {
			own := false
			for _, k := range append([]*rsa.PublicKey{alipayPub}, alipayKeys...) {
				own = own || k.Equal(&priv.PublicKey)
			}
			if own {
				r.fail("wrong-key guard", alipayField+" holds the app's own public key (it matches app_private_key_file)",
					"set "+alipayField+" to Alipay's key (支付宝公钥) shown in the Alipay console after you uploaded yours, not the app public key")
			} else {
				r.pass("wrong-key guard", "%s is not the app's own public key", alipayField)
			}
		}
	}
	gatewayOK := d.probe(ctx, r, "gateway", "gateway", ac.Gateway, false)
	switch {
	case priv == nil || alipayPub == nil || r.failed("key pair") || r.failed("wrong-key guard"):
		r.warn("signed call", "not made while a check above fails", "fix the FAIL lines above, then run doctor again")
		return
	case !gatewayOK:
		r.warn("signed call", "not made: the gateway does not answer", "fix the gateway line above, then run doctor again")
		return
	}
	app, err := buildAlipayApp(ac, publishedGuard{})
	if err != nil {
		r.fail("signed call", "not made: "+err.Error(), "fix the key files of this app")
		return
	}
	d.alipayCall(ctx, r, ac, app.Gateway.(*provider.Alipay).Client, certMode)
}

// alipayCall makes the signed no-op call, alipay.trade.query of a trade that does not exist, and
// reports what its answer proves.
func (d *doctor) alipayCall(ctx context.Context, r *report, ac *AppConfig, client *alipay.Client, certMode bool) {
	const check = "signed call"
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	keyField := "alipay_public_key_file"
	if certMode {
		keyField = "alipay_cert_file"
	}
	_, err := client.TradeQuery(ctx, alipay.TradeQuery{OutTradeNo: randomTradeNo()})
	var ae *alipay.Error
	var ve *alipay.VerifyError
	switch {
	case err == nil:
		r.pass(check, "alipay.trade.query answered, signed and verified with %s: app_id, app key and Alipay key fit", keyField)
	case errors.As(err, &ae) && ae.Signed && ae.SubCode == "ACQ.TRADE_NOT_EXIST":
		r.pass(check, "alipay.trade.query of a made-up trade answered ACQ.TRADE_NOT_EXIST, signed and verified with %s: app_id, app key and Alipay key fit", keyField)
	case errors.As(err, &ae) && ae.Signed:
		r.warn(check, fmt.Sprintf("alipay.trade.query answered %s %s, signed and verified with %s (the keys fit), not ACQ.TRADE_NOT_EXIST", ae.Code, ae.SubCode, keyField),
			"check that app_id "+ac.AppID+" may call alipay.trade.query (the app's products in the Alipay console)")
	case errors.As(err, &ae):
		// Unsigned: the gateway refused the request before looking at it. sub_msg is not shown:
		// Alipay's can quote the whole signed request.
		finding := fmt.Sprintf("Alipay refused the request, unsigned: %s %s", ae.Code, ae.SubCode)
		fix := "check app_id, app_private_key_file and gateway"
		switch ae.SubCode {
		case "isv.invalid-signature":
			finding = "Alipay refused our signature (isv.invalid-signature): app_private_key_file does not match the app public key registered for app_id " + ac.AppID
			fix = "upload this key's public half (openssl pkey -pubout) in the Alipay console, or configure the private key whose public key is uploaded there"
			if certMode {
				fix = "configure the private key the app certificate of app_id " + ac.AppID + " was issued for"
			}
		case "isv.invalid-app-id":
			finding = "Alipay does not know app_id " + ac.AppID + " (isv.invalid-app-id)"
			fix = "set app_id to the APPID of the Alipay console, and gateway to the same environment (production or sandbox)"
		case "isv.invalid-timestamp":
			finding = "Alipay refused the request's timestamp (isv.invalid-timestamp)"
			fix = "set this machine's clock right (NTP): Alipay accepts a few minutes of drift"
		case "isv.invalid-signature-type":
			fix = "set sign_type to the one the app uses in the Alipay console (RSA2)"
		case "isv.app-cert-not-exist":
			finding = "Alipay does not know the app certificate the request names (isv.app-cert-not-exist: app_cert_sn or alipay_root_cert_sn)"
			fix = "set app_cert_file to the current app certificate of app_id " + ac.AppID + " (the Alipay console, after a renewal) and alipay_root_cert_file to alipayRootCert.crt"
		case "isv.missing-app-cert-sn":
			// A certificate-mode app asked without the certificates' SNs (a reviewer helper's
			// finding: the generic remedy said to check the private key).
			finding = "app_id " + ac.AppID + " signs in certificate mode (公钥证书), and the request named no certificate (isv.missing-app-cert-sn)"
			fix = "configure app_cert_file, alipay_cert_file and alipay_root_cert_file (the three .crt files of the Alipay console) instead of alipay_public_key_file"
		case "isv.missing-signature-config":
			finding = "Alipay has no signing method for app_id " + ac.AppID + " that fits the request (isv.missing-signature-config)"
			fix = "set up 接口加签方式 in the Alipay console, and make the config's mode (public key or certificates) and sign_type match it"
		}
		r.fail(check, finding, fix)
	case errors.As(err, &ve):
		switch ve.Reason {
		case alipay.ReasonUnknownSerial:
			r.fail(check, "the answer is signed by another Alipay certificate than alipay_cert_file: "+ve.Detail,
				"download the current Alipay public-key certificate (alipayCertPublicKey_RSA2.crt) of app_id "+ac.AppID)
		case alipay.ReasonSignatureInvalid:
			fix := "set the Alipay public key (支付宝公钥) of app_id " + ac.AppID + " from the Alipay console, for the same environment as gateway"
			if certMode {
				fix = "set alipay_cert_file to Alipay's public-key certificate (alipayCertPublicKey_RSA2.crt) of app_id " + ac.AppID + ", for the same environment as gateway"
			}
			r.fail(check, "the answer's signature does not verify with "+keyField, fix)
		default:
			r.fail(check, "the answer is not an Alipay gateway answer: "+ve.Detail, "check that gateway is Alipay's gateway.do")
		}
	case ctx.Err() != nil:
		r.fail(check, fmt.Sprintf("alipay.trade.query got no answer within %s", doctorTimeout), "check gateway and the network between this machine and Alipay")
	default:
		r.fail(check, "alipay.trade.query: "+strings.TrimPrefix(err.Error(), "alipay: "), "check that gateway is Alipay's gateway.do")
	}
}

// wechatpay checks a WeChat Pay app.
func (d *doctor) wechatpay(ctx context.Context, r *report, ac *AppConfig) {
	var priv *rsa.PrivateKey
	if b, ok := d.readKey(r, "merchant_private_key_file", ac.MerchantPrivateKeyFile, true); ok {
		if k, err := wechatpay.ParsePrivateKey(b); err != nil {
			r.fail("keys", "merchant_private_key_file: "+err.Error(), "set merchant_private_key_file to apiclient_key.pem of the merchant API certificate")
		} else {
			priv = k
			r.pass("keys", "merchant_private_key_file parses (%s)", rsaBits(&k.PublicKey))
		}
	}
	keysOK := priv != nil
	if b, ok := d.readKey(r, "apiv3_key_file", ac.APIv3KeyFile, true); ok {
		if n := len(strings.TrimRight(string(b), " \t\r\n")); n != 32 {
			keysOK = false
			r.fail("keys", fmt.Sprintf("apiv3_key_file holds %d bytes, an APIv3 key has 32", n), "set apiv3_key_file to a file holding the APIv3 key of the merchant platform (API安全)")
		} else {
			r.pass("keys", "apiv3_key_file holds 32 bytes")
		}
	} else {
		keysOK = false
	}
	if ac.APIv2KeyFile != "" {
		if b, ok := d.readKey(r, "apiv2_key_file", ac.APIv2KeyFile, true); ok {
			if n := len(strings.TrimRight(string(b), " \t\r\n")); n != 32 {
				keysOK = false
				r.fail("keys", fmt.Sprintf("apiv2_key_file holds %d characters, an APIv2 key has 32", n), "set apiv2_key_file to a file holding the APIv2 key, or remove it")
			} else {
				r.pass("keys", "apiv2_key_file holds 32 characters")
			}
		} else {
			keysOK = false
		}
	}
	type platformKey struct {
		field string
		pub   *rsa.PublicKey
	}
	var platform []platformKey
	if ac.PlatformPublicKeyFile != "" {
		if b, ok := d.readKey(r, "platform_public_key_file", ac.PlatformPublicKeyFile, false); ok {
			if k, err := wechatpay.ParsePublicKey(b); err != nil {
				keysOK = false
				r.fail("keys", "platform_public_key_file: "+err.Error(), "set platform_public_key_file to the WeChat Pay public key (pub_key.pem) of the merchant platform")
			} else {
				platform = append(platform, platformKey{"platform_public_key_file", k})
				r.pass("keys", "platform_public_key_file parses (%s, id %s)", rsaBits(k), ac.PlatformPublicKeyID)
			}
		} else {
			keysOK = false
		}
	}
	for i, p := range ac.PlatformCertFiles {
		field := fmt.Sprintf("platform_cert_files[%d]", i)
		b, ok := d.readKey(r, field, p, false)
		if !ok {
			keysOK = false
			continue
		}
		cert, err := wechatpay.ParseCertificate(b)
		if err != nil {
			keysOK = false
			r.fail("keys", field+": "+err.Error(), "set "+field+" to a WeChat Pay platform certificate (PEM)")
			continue
		}
		pub := cert.PublicKey.(*rsa.PublicKey) // ParseCertificate accepts RSA only
		platform = append(platform, platformKey{field, pub})
		r.pass("keys", "%s parses (serial %s, %s)", field, wechatpay.CertificateSerial(cert), rsaBits(pub))
		d.certExpiry(r, field, []*x509.Certificate{cert},
			"serve downloads fresh platform certificates at start, but replace "+field+" with a current one (or move to the WeChat Pay public key)")
	}
	if priv != nil {
		// The merchant API certificate is not in the config, only its serial: that the two belong
		// together is WeChat Pay's to say, in the signed call.
		if !isHex(ac.MerchantSerialNo) {
			r.fail("key pair", "merchant_serial_no "+ac.MerchantSerialNo+" is not a hexadecimal certificate serial",
				"set merchant_serial_no to the serial of apiclient_cert.pem (openssl x509 -noout -serial -in apiclient_cert.pem)")
		} else {
			keyPairCheck(r, "merchant_private_key_file", priv,
				"that merchant_serial_no "+ac.MerchantSerialNo+" is the serial of its certificate is proven by the signed call")
		}
		for _, p := range platform {
			if p.pub.Equal(&priv.PublicKey) {
				r.fail("wrong-key guard", p.field+" holds the merchant's own public key (it matches merchant_private_key_file)",
					"set "+p.field+" to WeChat Pay's key (微信支付公钥 or platform certificate), not the merchant API certificate's")
			} else {
				r.pass("wrong-key guard", "%s is not the merchant's own public key", p.field)
			}
		}
	}
	gatewayOK := d.probe(ctx, r, "gateway", "api_base", ac.APIBase, false)
	switch {
	case !keysOK || len(platform) == 0 || r.failed("key pair") || r.failed("wrong-key guard"):
		r.warn("signed call", "not made while a check above fails", "fix the FAIL lines above, then run doctor again")
		return
	case !gatewayOK:
		r.warn("signed call", "not made: api_base does not answer", "fix the gateway line above, then run doctor again")
		return
	}
	app, err := buildWechatApp(ac, publishedGuard{})
	if err != nil {
		r.fail("signed call", "not made: "+err.Error(), "fix the key files of this app")
		return
	}
	client := app.Gateway.(*provider.Wechat).Client
	d.wechatCall(ctx, r, ac, client)
	if !r.failed("signed call") {
		d.apiv3Key(ctx, r, ac, client)
	}
}

// apiv3Key checks the APIv3 key by what only it does: decrypting. WeChat Pay's certificate
// download (GET /v3/certificates) answers each certificate encrypted with it, as it encrypts every
// notification's resource; the signed call above never uses the key, and a wrong one passed
// doctor while every notification failed as decrypt_failed (a reviewer helper's finding).
func (d *doctor) apiv3Key(ctx context.Context, r *report, ac *AppConfig, client *wechatpay.Client) {
	const check = "apiv3 key"
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	certs, err := client.DownloadCertificates(ctx)
	switch {
	case err == nil:
		r.pass(check, "apiv3_key_file decrypts what WeChat Pay encrypts with it (the %d platform certificate(s) it sent)", len(certs))
	case errors.Is(err, wechatpay.ErrDecrypt):
		r.fail(check, "apiv3_key_file does not decrypt what WeChat Pay encrypts with the APIv3 key of mchid "+ac.MchID+": every notification would fail as decrypt_failed",
			"set apiv3_key_file to the APIv3 key of mchid "+ac.MchID+" (商户平台 → 账户中心 → API安全), then paynotify reprocess --config FILE --app "+ac.Name+" --reason decrypt_failed --since 24h")
	default:
		r.warn(check, "not checked: the certificate download, which it decrypts, failed: "+strings.TrimPrefix(unwrapURLError(err).Error(), "wechatpay: "),
			"a notification's decrypt_failed then points at apiv3_key_file")
	}
}

// wechatCall makes the signed no-op call, a query of an order that does not exist, and reports
// what its answer proves.
func (d *doctor) wechatCall(ctx context.Context, r *report, ac *AppConfig, client *wechatpay.Client) {
	const check = "signed call"
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	keyField := "platform_public_key_file"
	if ac.PlatformPublicKeyFile == "" {
		keyField = "platform_cert_files"
	}
	var raw wechatpay.RawResponse
	_, err := client.QueryByOutTradeNo(wechatpay.WithRawResponse(ctx, &raw), randomTradeNo())
	var we *wechatpay.Error
	var ve *wechatpay.VerifyError
	if errors.As(err, &we) && !we.Signed && raw.Header.Get(wechatpaywire.HeaderSignature) != "" {
		// Signed, but not by a key we have: say why.
		if verr := client.VerifyResponse(raw.Header, raw.Body); verr != nil {
			errors.As(verr, &ve)
		}
	}
	switch {
	case err == nil:
		r.pass(check, "the order query answered, signed and verified with %s: mchid, merchant key and WeChat Pay key fit", keyField)
	case we != nil && we.Signed && we.Code == "ORDER_NOT_EXIST":
		r.pass(check, "the query of a made-up order answered %d ORDER_NOT_EXIST, signed and verified with %s: mchid, merchant key and WeChat Pay key fit", we.StatusCode, keyField)
	case we != nil && we.Signed:
		r.warn(check, fmt.Sprintf("the order query answered %d %s, signed and verified with %s (the keys fit), not ORDER_NOT_EXIST", we.StatusCode, we.Code, keyField),
			"check that mchid "+ac.MchID+" has the product it sells (JSAPI, Native, …) and that appid "+ac.WechatAppID+" is bound to it")
	case ve != nil || errors.As(err, &ve):
		switch ve.Reason {
		case wechatpay.ReasonUnknownSerial:
			r.fail(check, "the answer is signed with a key the config does not have (Wechatpay-Serial "+raw.Header.Get(wechatpaywire.HeaderSerial)+")",
				"set platform_public_key_file and platform_public_key_id to the WeChat Pay public key of mchid "+ac.MchID+", or add its platform certificate")
		case wechatpay.ReasonSignatureInvalid:
			r.fail(check, "the answer's signature does not verify with "+keyField,
				"set the WeChat Pay public key (pub_key.pem) of mchid "+ac.MchID+" from the merchant platform, with its id")
		case wechatpay.ReasonTimestampSkew:
			r.fail(check, "the answer's timestamp is over 5 minutes from this machine's clock", "set this machine's clock right (NTP)")
		default:
			r.fail(check, "the answer does not verify: "+ve.Detail, "check api_base and the platform keys")
		}
	case we != nil && we.StatusCode == http.StatusUnauthorized:
		r.fail(check, fmt.Sprintf("WeChat Pay refused our signature (401 %s): merchant_private_key_file and merchant_serial_no are not the API certificate of mchid %s", we.Code, ac.MchID),
			"set merchant_private_key_file to apiclient_key.pem and merchant_serial_no to the serial of apiclient_cert.pem (openssl x509 -noout -serial)")
	case we != nil:
		r.fail(check, fmt.Sprintf("WeChat Pay refused the request, unsigned: %d %s", we.StatusCode, we.Code),
			"check mchid "+ac.MchID+", the merchant key and api_base")
	case ctx.Err() != nil:
		r.fail(check, fmt.Sprintf("the order query got no answer within %s", doctorTimeout), "check api_base and the network between this machine and WeChat Pay")
	default:
		r.fail(check, "the order query: "+strings.TrimPrefix(unwrapURLError(err).Error(), "wechatpay: "), "check api_base")
	}
}

// legacy checks a legacy Alipay app (mapi and the old WAP pair).
func (d *doctor) legacy(ctx context.Context, r *report, ac *AppConfig) {
	keysOK := true
	if ac.MD5KeyFile != "" {
		if b, ok := d.readKey(r, "md5_key_file", ac.MD5KeyFile, true); ok {
			key := strings.TrimSpace(string(b))
			if _, err := alipaylegacy.New(alipaylegacy.Config{Partner: ac.Partner, SignType: alipaylegacy.SignMD5, MD5Key: key}); err != nil {
				keysOK = false
				r.fail("keys", fmt.Sprintf("md5_key_file does not hold an MD5 key (%d characters; 32 letters and digits wanted)", len(key)),
					"set md5_key_file to a file holding the 32-character key (安全校验码) of the partner")
			} else {
				r.pass("keys", "md5_key_file holds 32 letters and digits")
			}
		} else {
			keysOK = false
		}
	} else {
		var priv *rsa.PrivateKey
		var pub *rsa.PublicKey
		if b, ok := d.readKey(r, "merchant_private_key_file", ac.MerchantPrivateKeyFile, true); ok {
			if k, err := alipaylegacy.ParsePrivateKey(b); err != nil {
				r.fail("keys", "merchant_private_key_file: "+err.Error(), "set merchant_private_key_file to the partner's RSA private key (rsa_private_key.pem)")
			} else {
				priv = k
				r.pass("keys", "merchant_private_key_file parses (%s)", rsaBits(&k.PublicKey))
			}
		}
		if b, ok := d.readKey(r, "alipay_public_key_file", ac.AlipayPublicKeyFile, false); ok {
			if k, err := alipaylegacy.ParsePublicKey(b); err != nil {
				r.fail("keys", "alipay_public_key_file: "+err.Error(), "set alipay_public_key_file to Alipay's RSA public key (alipay_public_key.pem)")
			} else {
				pub = k
				r.pass("keys", "alipay_public_key_file parses (%s)", rsaBits(k))
			}
		}
		keysOK = priv != nil && pub != nil
		if priv != nil {
			keyPairCheck(r, "merchant_private_key_file", priv, "that Alipay holds its public key shows when the first pay request is signed")
			if pub != nil && pub.Equal(&priv.PublicKey) {
				keysOK = false
				r.fail("wrong-key guard", "alipay_public_key_file holds the merchant's own public key (it matches merchant_private_key_file)",
					"set alipay_public_key_file to Alipay's public key, not the one you uploaded")
			} else if pub != nil {
				r.pass("wrong-key guard", "alipay_public_key_file is not the merchant's own public key")
			}
		}
	}
	d.probe(ctx, r, "gateway", "gateway", ac.Gateway, false)
	d.probe(ctx, r, "gateway", "wap_gateway", ac.WAPGateway, ac.WAPGateway == alipaylegacy.DefaultWAPGateway)
	// What a signed call proves elsewhere: the legacy services have no query paynotify makes, so
	// the keys meet Alipay first in a pay request or a notification.
	r.warn("signed call", "not made: the legacy services offer no signed call paynotify can make without creating a trade, so the keys are not checked against Alipay",
		"pay one order in the smallest amount, or check a captured notification with paynotify verify alipay-legacy")
	if ac.NotifyVerify != nil && !*ac.NotifyVerify {
		r.warn("notify_verify", "off: notifications count on their signature alone", "set notify_verify: true (the default), above all with sign_type MD5")
		return
	}
	if !keysOK {
		r.warn("notify_verify", "not asked: the keys above must load first", "fix the FAIL lines above, then run doctor again")
		return
	}
	app, err := buildLegacyApp(ac, publishedGuard{})
	if err != nil {
		r.fail("notify_verify", "not asked: "+err.Error(), "fix the key files of this app")
		return
	}
	d.notifyVerify(ctx, r, ac, app.Gateway.(*provider.AlipayLegacy).Client)
}

// notifyVerify asks notify_verify about a made-up notify_id: the answer must be "false".
func (d *doctor) notifyVerify(ctx context.Context, r *report, ac *AppConfig, client *alipaylegacy.Client) {
	const check = "notify_verify"
	b := make([]byte, 17)
	rand.Read(b)
	err := client.NotifyVerify(ctx, hex.EncodeToString(b))
	var ne *alipaylegacy.NotifyVerifyError
	switch {
	case err == nil:
		r.fail(check, "notify_verify_url confirmed a made-up notify_id: it is not Alipay's notify_verify, and would confirm forged notifications",
			"set notify_verify_url to Alipay's (the default) or remove it")
	case errors.As(err, &ne) && errors.Is(err, alipaylegacy.ErrNotConfirmed) && ne.Answer == "false":
		r.pass(check, "notify_verify_url answers false for a made-up notify_id of partner %s, as it should", ac.Partner)
	case errors.As(err, &ne) && errors.Is(err, alipaylegacy.ErrNotConfirmed) && ne.Answer == "invalid":
		r.fail(check, "notify_verify_url answers invalid for partner "+ac.Partner+": it refuses the partner, so every notification would be refused",
			"check partner (the PID of alipay.config.php) and notify_verify_url")
	case errors.As(err, &ne) && errors.Is(err, alipaylegacy.ErrNotConfirmed):
		r.fail(check, fmt.Sprintf("notify_verify_url answers %q, neither true nor false", ne.Answer), "set notify_verify_url to Alipay's notify_verify (the default)")
	case errors.As(err, &ne) && ne.Status != 0:
		r.fail(check, fmt.Sprintf("notify_verify_url answers HTTP %d", ne.Status), "set notify_verify_url to Alipay's notify_verify (the default)")
	default:
		r.fail(check, "notify_verify_url does not answer: "+err.Error(), "check notify_verify_url and the network: without its answer no notification counts")
	}
}

// publicURL checks that public_url answers /healthz (a WARN, not a FAIL, when it does not: serve
// may not run yet) and that it is https.
func (d *doctor) publicURL(ctx context.Context, r *report) {
	const check = "public_url"
	u := d.cfg.PublicURL + "/healthz"
	ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		r.fail(check, fmt.Sprintf("%s is not a URL: %v", u, err), "set public_url to the https base URL providers reach this server at")
		return
	}
	resp, err := d.http.Do(req)
	switch {
	case err != nil:
		r.warn(check, fmt.Sprintf("%s does not answer (%v): fine before the first serve", u, unwrapURLError(err)),
			"start paynotify serve, and route public_url to it through the reverse proxy: providers post notifications there")
	default:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok" {
			r.pass(check, "%s answers ok", u)
		} else {
			r.warn(check, fmt.Sprintf("%s answers HTTP %d, not paynotify's ok", u, resp.StatusCode),
				"route public_url to paynotify serve through the reverse proxy")
		}
	}
	if strings.HasPrefix(d.cfg.PublicURL, "http://") {
		r.warn(check, d.cfg.PublicURL+" is plain http: Alipay and WeChat Pay post notifications to https URLs only",
			"put paynotify behind a TLS reverse proxy and set public_url to its https URL")
	}
}

// database checks that the database answers and that no migration is pending, without
// migrating and without creating a SQLite file.
func (d *doctor) database(ctx context.Context, r *report) {
	const check = "database"
	dsn := d.cfg.Database
	migrateHint := "serve applies them at start, or run paynotify migrate --config " + d.configPath
	var st store
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		db, err := sqlite.OpenReadOnly(path)
		if errors.Is(err, fs.ErrNotExist) {
			r.warn(check, "SQLite file "+path+" does not exist yet: fine before the first serve",
				"serve creates it and applies the migrations at start (or run paynotify migrate --config "+d.configPath+")")
			return
		}
		if err != nil {
			r.fail(check, "SQLite: "+err.Error(), "set database to sqlite:PATH of a readable SQLite file")
			return
		}
		st = db
	default:
		ctx, cancel := context.WithTimeout(ctx, doctorTimeout)
		defer cancel()
		db, err := postgres.Open(ctx, dsn)
		if err != nil {
			r.fail(check, "PostgreSQL "+redactDSN(dsn)+" does not answer: "+scrubPassword(err.Error(), dsn),
				"check the host, port, user, password and database of the URL, and that PostgreSQL runs")
			return
		}
		st = db
	}
	defer st.Close()
	where := redactDSN(dsn)
	if err := st.Ping(ctx); err != nil {
		r.fail(check, where+" does not answer: "+scrubPassword(err.Error(), dsn), "check database")
		return
	}
	n, err := st.PendingMigrations(ctx)
	if err != nil {
		r.fail(check, where+": "+scrubPassword(err.Error(), dsn), "check database: is it paynotify's?")
		return
	}
	river, err := pendingJobMigrations(ctx, st)
	if err != nil {
		r.fail(check, where+": "+scrubPassword(err.Error(), dsn), "check database: is it paynotify's?")
		return
	}
	if n > 0 || len(river) > 0 {
		riverState := "up to date"
		if len(river) > 0 {
			riverState = strings.Join(river, "; ")
		}
		r.warn(check, fmt.Sprintf("%s answers; migrations pending (paynotify: %d; River: %s): fine before the first serve", where, n, riverState), migrateHint)
		return
	}
	r.pass(check, "%s answers, migrations current", where)
}

// scrubPassword removes the password of a database URL from an error text, should a driver
// quote it.
func scrubPassword(s, dsn string) string {
	for _, pw := range dsnSecrets(dsn) {
		s = strings.ReplaceAll(s, pw, "…")
	}
	return s
}
