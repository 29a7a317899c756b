package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/wechatpaywire"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/wechatpay"
)

func init() { verifiers["wechatpay"] = verifyWechatpayCommand{} }

// verifyWechatpayCommand is `paynotify verify wechatpay`: it checks a captured APIv3
// notification (headers file + raw body) or, with --v2, an APIv2 XML notification.
type verifyWechatpayCommand struct{}

const verifyWechatpayTry = "paynotify verify wechatpay --platform-public-key pub_key.pem --platform-public-key-id PUB_KEY_ID_… --apiv3-key-file apiv3.key --headers headers.txt body.json"

func (verifyWechatpayCommand) Usage() string {
	return `Usage:
  paynotify verify wechatpay (--platform-public-key FILE --platform-public-key-id ID | --platform-cert FILE)
                             --apiv3-key-file FILE --headers FILE [--now RFC3339|UNIX] [--explain] [BODY_FILE|-]
  paynotify verify wechatpay --v2 --api-key-file FILE [--explain] [BODY_FILE|-]

Checks a captured WeChat Pay notification: the raw body (a file, or stdin) and, for APIv3, the
request headers as captured ("Name: value" lines, CRLF or LF, any order and case). --platform-cert
may be repeated and combined with the public key (both are used during a migration). --now replaces
the clock of the 5-minute timestamp window. Exit 0 "valid" and a summary, 1 "invalid: reason",
2 usage or key errors.
`
}

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

func (c verifyWechatpayCommand) Run(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("verify wechatpay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		pubFile, pubID, keyFile, headersFile, now, v2KeyFile string
		certFiles                                            stringsFlag
		explain, v2, help                                    bool
	)
	fs.StringVar(&pubFile, "platform-public-key", "", "WeChat Pay public key (PEM)")
	fs.StringVar(&pubID, "platform-public-key-id", "", "its id, PUB_KEY_ID_…")
	fs.Var(&certFiles, "platform-cert", "platform certificate (PEM), repeatable")
	fs.StringVar(&keyFile, "apiv3-key-file", "", "file holding the 32-byte APIv3 key")
	fs.StringVar(&headersFile, "headers", "", "captured request headers")
	fs.StringVar(&now, "now", "", "clock for the timestamp window (RFC 3339 or Unix seconds)")
	fs.BoolVar(&explain, "explain", false, "print the signed message and every check")
	fs.BoolVar(&v2, "v2", false, "verify an APIv2 XML notification")
	fs.StringVar(&v2KeyFile, "api-key-file", "", "file holding the APIv2 key (with --v2)")
	fs.BoolVar(&help, "help", false, "")
	fs.BoolVar(&help, "h", false, "")
	// Accept flags after the positional body file too.
	positional, err := parseFlags(m, fs, c.Usage(), verifyWechatpayTry, args)
	if err != nil {
		return err
	}
	if help {
		fmt.Fprint(m.Stdout, c.Usage())
		return nil
	}
	if v2 {
		if v2KeyFile == "" {
			return usagef("paynotify verify wechatpay --v2 --api-key-file apiv2.key notify.xml", "verify wechatpay --v2: --api-key-file is required")
		}
		if pubFile != "" || pubID != "" || len(certFiles) > 0 || keyFile != "" || headersFile != "" || now != "" {
			return usagef("paynotify verify wechatpay --v2 --api-key-file apiv2.key notify.xml", "verify wechatpay --v2: APIv3 flags do not apply")
		}
		return verifyWechatpayV2(m, v2KeyFile, explain, positional)
	}
	if v2KeyFile != "" {
		return usagef(verifyWechatpayTry, "verify wechatpay: --api-key-file needs --v2")
	}
	if (pubFile == "") != (pubID == "") {
		return usagef(verifyWechatpayTry, "verify wechatpay: --platform-public-key and --platform-public-key-id go together")
	}
	if pubFile == "" && len(certFiles) == 0 {
		return usagef(verifyWechatpayTry, "verify wechatpay: a platform key is required (--platform-public-key with --platform-public-key-id, or --platform-cert)")
	}
	if keyFile == "" {
		return usagef(verifyWechatpayTry, "verify wechatpay: --apiv3-key-file is required")
	}
	if headersFile == "" {
		return usagef(verifyWechatpayTry, "verify wechatpay: --headers is required")
	}
	clock := time.Now
	if now != "" {
		t, err := parseNow(now)
		if err != nil {
			return usagef(verifyWechatpayTry, "verify wechatpay: --now %q: want RFC 3339 or Unix seconds", now)
		}
		clock = func() time.Time { return t }
	}

	cfg := wechatpay.Config{Now: clock}
	if pubFile != "" {
		b, err := os.ReadFile(pubFile)
		if err != nil {
			return configErrorf("read platform public key: %w", err)
		}
		if cfg.PlatformPublicKey, err = wechatpay.ParsePublicKey(b); err != nil {
			return configErrorf("%s: %w", pubFile, err)
		}
		cfg.PlatformPublicKeyID = pubID
	}
	for _, f := range certFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return configErrorf("read platform certificate: %w", err)
		}
		if _, err := wechatpay.ParseCertificate(b); err != nil {
			return configErrorf("%s: %w", f, err)
		}
		cfg.PlatformCerts = append(append(cfg.PlatformCerts, b...), '\n')
	}
	key, err := readWechatpayKeyFile(keyFile, "APIv3 key")
	if err != nil {
		return err
	}
	if len(key) != wechatpay.APIv3KeySize {
		return configErrorf("%s: the APIv3 key must be 32 bytes, got %d", keyFile, len(key))
	}
	cfg.APIv3Key = key
	client, err := wechatpay.NewClient(cfg)
	if err != nil {
		return configErrorf("%w", err)
	}
	hb, err := os.ReadFile(headersFile)
	if err != nil {
		return configErrorf("read headers: %w", err)
	}
	h, err := parseHeaderLines(hb)
	if err != nil {
		return configErrorf("%s: %w", headersFile, err)
	}
	body, err := readBody(m, positional)
	if err != nil {
		return err
	}

	n, err := client.VerifyNotification(h, body)
	var ve *wechatpay.VerifyError
	if err != nil && !errors.As(err, &ve) {
		return err
	}
	if explain {
		explainWechatpay(m, h, body, cfg, client.PlatformCertificates(), clock(), ve)
	}
	if ve != nil {
		if ve.Reason == wechatpay.ReasonTimestampSkew && now == "" {
			// A capture checked later than 5 minutes after it was sent: the signature and the
			// decryption were never tried (a reviewer helper's finding: no hint of --now).
			fmt.Fprintln(m.Stderr, "hint: a notification is checked within 5 minutes of its Wechatpay-Timestamp; for a captured one, pass --now with the time it arrived (or its Wechatpay-Timestamp) to check the rest")
		}
		return printInvalid(m, ve.Reason+": "+ve.Detail)
	}
	if err := serverVerdict(m, explain, (&provider.Wechat{Client: client}).Verifier(paynotify.ProviderWechatpay), h, body, clock()); err != nil {
		return err
	}
	fmt.Fprintln(m.Stdout, "valid")
	fmt.Fprintln(m.Stdout, summarizeWechatpay(n))
	return nil
}

// parseNow reads --now: RFC 3339, or Unix seconds.
func parseNow(s string) (time.Time, error) {
	if sec, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(sec, 0), nil
	}
	return time.Parse(time.RFC3339, s)
}

// readWechatpayKeyFile reads a key file as serve reads apiv3_key_file and apiv2_key_file
// (readSecretFile): trailing whitespace, such as the newline an editor adds, is not part of the
// key. Its content is never printed.
func readWechatpayKeyFile(name, what string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, configErrorf("read %s: %w", what, err)
	}
	b = bytes.TrimRight(b, " \t\r\n")
	if len(b) == 0 {
		return nil, configErrorf("%s: the %s file is empty", name, what)
	}
	return b, nil
}

// parseHeaderLines reads captured "Name: value" lines (CRLF or LF, any order, any case). Blank
// lines and an HTTP request or status line are skipped.
func parseHeaderLines(b []byte) (http.Header, error) {
	h := http.Header{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if i == 0 && (strings.Contains(line, " HTTP/") || strings.HasPrefix(line, "HTTP/")) {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("line %d is not \"Name: value\"", i+1)
		}
		h.Add(name, strings.TrimSpace(value))
	}
	return h, nil
}

func summarizeWechatpay(n *wechatpay.Notification) string {
	switch {
	case n.Transaction != nil:
		t := n.Transaction
		return fmt.Sprintf("%s out_trade_no=%s transaction_id=%s trade_state=%s amount=%d %s", n.EventType, t.OutTradeNo, t.TransactionID, t.TradeState, t.Amount.Total, currencyOr(t.Amount.Currency))
	case n.Refund != nil:
		r := n.Refund
		return fmt.Sprintf("%s out_trade_no=%s out_refund_no=%s refund_status=%s refund=%d total=%d", n.EventType, r.OutTradeNo, r.OutRefundNo, r.RefundStatus, r.Amount.Refund, r.Amount.Total)
	default:
		return fmt.Sprintf("%s id=%s (%d bytes of plaintext)", n.EventType, n.ID, len(n.Plaintext))
	}
}

func currencyOr(c string) string {
	if c == "" {
		return "CNY"
	}
	return c
}

// explainWechatpay prints the signed message and each check with its outcome.
func explainWechatpay(m *Main, h http.Header, body []byte, cfg wechatpay.Config, certs []*x509.Certificate, now time.Time, ve *wechatpay.VerifyError) {
	w := m.Stdout
	ts, nonce := h.Get(wechatpaywire.HeaderTimestamp), h.Get(wechatpaywire.HeaderNonce)
	fmt.Fprintf(w, "%s: %s\n%s: %s\n%s: %s\n", wechatpaywire.HeaderTimestamp, ts, wechatpaywire.HeaderNonce, nonce, wechatpaywire.HeaderSerial, h.Get(wechatpaywire.HeaderSerial))
	fmt.Fprintf(w, "body: %d bytes\n", len(body))
	fmt.Fprintf(w, "signed message (timestamp\\nnonce\\nbody\\n, quoted):\n%q\n", wechatpaywire.NotificationMessage(ts, nonce, body))
	var keys []string
	if cfg.PlatformPublicKey != nil {
		keys = append(keys, cfg.PlatformPublicKeyID)
	}
	for _, c := range certs {
		keys = append(keys, "cert "+wechatpay.CertificateSerial(c)+" (valid "+c.NotBefore.UTC().Format(time.DateOnly)+" to "+c.NotAfter.UTC().Format(time.DateOnly)+")")
	}
	fmt.Fprintf(w, "platform keys: %s\nnow: %s (%d)\n", strings.Join(keys, ", "), now.In(wechatpay.Beijing()).Format(time.RFC3339), now.Unix())
	failed := ""
	if ve != nil {
		failed = ve.Check
	}
	done := false
	for _, check := range wechatpay.NotificationChecks {
		switch {
		case done:
			fmt.Fprintf(w, "check %-9s skipped\n", check)
		case check == failed:
			fmt.Fprintf(w, "check %-9s FAIL %s: %s\n", check, ve.Reason, ve.Detail)
			done = true
		default:
			fmt.Fprintf(w, "check %-9s ok\n", check)
		}
	}
}

// verifyWechatpayV2 checks an APIv2 payment notification (signed) or refund notification (req_info).
func verifyWechatpayV2(m *Main, keyFile string, explain bool, positional []string) error {
	key, err := readWechatpayKeyFile(keyFile, "APIv2 key")
	if err != nil {
		return err
	}
	if len(key) != 32 {
		return configErrorf("%s: the APIv2 key must be 32 characters, got %d", keyFile, len(key))
	}
	body, err := readBody(m, positional)
	if err != nil {
		return err
	}
	fields, perr := wechatpay.ParseV2XML(body)
	if perr == nil && fields["req_info"] != "" && fields["sign"] == "" {
		n, err := wechatpay.ParseV2RefundNotification(body, key)
		var ve *wechatpay.VerifyError
		if err != nil && !errors.As(err, &ve) {
			return err
		}
		if explain {
			fmt.Fprintln(m.Stdout, "APIv2 refund notification: no sign; req_info is AES-256-ECB under md5(APIv2 key)")
			if ve != nil {
				fmt.Fprintf(m.Stdout, "check %-9s FAIL %s: %s\n", ve.Check, ve.Reason, ve.Detail)
			} else {
				fmt.Fprintf(m.Stdout, "check decrypt   ok\ncheck decode    ok\n")
			}
		}
		if ve != nil {
			return printInvalid(m, ve.Reason+": "+ve.Detail)
		}
		if _, err := provider.V2RefundClaim(body, key); err != nil {
			var rej *paynotify.RejectError
			if !errors.As(err, &rej) {
				return err
			}
			if explain {
				fmt.Fprintln(m.Stdout, "check as serve (what it refuses after the decryption): FAILED")
			}
			return printInvalid(m, rej.Reason+": "+rej.Detail)
		}
		if explain {
			fmt.Fprintln(m.Stdout, "check as serve (what it refuses after the decryption): ok")
		}
		// Decrypted is all that can be said offline: ECB authenticates nothing, and serve applies
		// the refund only as WeChat Pay's signed refund query states it.
		r := n.Info
		fmt.Fprintln(m.Stdout, "decrypted (not authenticated)")
		fmt.Fprintf(m.Stdout, "v2 refund out_trade_no=%s out_refund_no=%s refund_status=%s refund=%d total=%d\n", r.OutTradeNo, r.OutRefundNo, r.RefundStatus, r.RefundFee, r.TotalFee)
		fmt.Fprintln(m.Stdout, "note: req_info is encrypted, not signed, and can be altered without the key: serve applies a refund notification only as WeChat Pay's refund query (APIv3, signed) confirms it")
		return nil
	}
	n, err := wechatpay.VerifyV2Notification(body, key)
	var ve *wechatpay.VerifyError
	if err != nil && !errors.As(err, &ve) {
		return err
	}
	if explain {
		if perr == nil {
			fmt.Fprintf(m.Stdout, "signed string (without &key=…):\n%s\n", wechatpay.V2SignString(fields))
			st := fields["sign_type"]
			if st == "" {
				st = "(absent: MD5)"
			}
			fmt.Fprintf(m.Stdout, "sign_type: %s, sign: %d characters\n", st, len(fields["sign"]))
		}
		if ve != nil {
			fmt.Fprintf(m.Stdout, "check %-9s FAIL %s: %s\n", ve.Check, ve.Reason, ve.Detail)
		} else {
			fmt.Fprintf(m.Stdout, "check xml       ok\ncheck signature ok\ncheck decode    ok\n")
		}
	}
	if ve != nil {
		return printInvalid(m, ve.Reason+": "+ve.Detail)
	}
	if err := serverVerdict(m, explain, &provider.WechatV2{APIKey: key}, nil, body, time.Time{}); err != nil {
		return err
	}
	fmt.Fprintln(m.Stdout, "valid")
	fmt.Fprintf(m.Stdout, "v2 payment out_trade_no=%s transaction_id=%s result_code=%s total_fee=%d %s\n", n.OutTradeNo, n.TransactionID, n.ResultCode, n.TotalFee, currencyOr(n.FeeType))
	return nil
}
