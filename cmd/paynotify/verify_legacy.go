package main

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"

	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/alipaylegacy"
	"github.com/paynotify/paynotify/internal/alipaywire"
)

func init() { verifiers["alipay-legacy"] = verifyLegacyCommand{} }

// verifyLegacyCommand is `paynotify verify alipay-legacy`: it checks a captured legacy Alipay
// message (mapi or WAP async notification, or with --return a return_url / call_back_url query)
// offline, through alipaylegacy.Client: the verdict is the library's, never this file's.
type verifyLegacyCommand struct{}

const verifyLegacyTry = "paynotify verify alipay-legacy --partner 2088XXXXXXXXXXXX --sign-type MD5 --md5-key-file md5_key.txt --explain notify.txt"

func (verifyLegacyCommand) Usage() string {
	return `Usage: paynotify verify alipay-legacy --partner PID --sign-type MD5|RSA|0001 [--charset utf-8|gbk]
           (--md5-key-file FILE | --alipay-public-key FILE) [--merchant-private-key FILE]
           [--return] [--explain] [FILE|-]

Verifies a legacy Alipay message offline. The input (FILE, or stdin when FILE is "-" or absent; one
trailing newline is ignored) is the raw application/x-www-form-urlencoded POST body of an async
notification, mapi (create_direct_pay_by_user, trade_create_by_buyer, create_partner_trade_by_buyer)
or WAP (alipay.wap.trade.create.direct, recognised by its notify_data, sec_id or service field), or
with --return the query string of a return_url or call_back_url visit (a whole URL is accepted too).
Offline: notify_verify is NOT called. A valid notification counts only once notify_verify answers
exactly "true" for its notify_id (the server does that); a return is display only and never counts.
Prints "valid" and a summary (exit 0), or "invalid: <reason>" (exit 1); key or usage errors exit 2.

  --partner PID                the merchant's partner id (PID): 2088 followed by 12 digits
  --sign-type MD5|RSA|0001     the algorithm the merchant is configured with (0001 is RSA on the WAP
                               pair); the sign_type or sec_id the message declares is never trusted
  --charset utf-8|gbk          the merchant's _input_charset (default utf-8): notifications do not say
  --md5-key-file FILE          the 32-character MD5 key (安全校验码), with --sign-type MD5
  --alipay-public-key FILE     Alipay's RSA public key, PEM or one line, with --sign-type RSA or 0001
  --merchant-private-key FILE  the merchant's RSA private key (PKCS#1 or PKCS#8, PEM or one line):
                               decrypts the notify_data of a 0001 WAP notification
  --return                     the input is a return_url / call_back_url query string
  --explain                    print the canonical string and every check
`
}

func (cmd verifyLegacyCommand) Run(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("verify alipay-legacy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	partner := fs.String("partner", "", "")
	signType := fs.String("sign-type", "", "")
	charset := fs.String("charset", "utf-8", "")
	md5File := fs.String("md5-key-file", "", "")
	pubFile := fs.String("alipay-public-key", "", "")
	privFile := fs.String("merchant-private-key", "", "")
	ret := fs.Bool("return", false, "")
	explain := fs.Bool("explain", false, "")
	positional, err := parseFlags(m, fs, cmd.Usage(), verifyLegacyTry, args)
	if errors.Is(err, errHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if *partner == "" {
		return usagef(verifyLegacyTry, "verify alipay-legacy: --partner is required")
	}
	var st alipaylegacy.SignType
	switch strings.ToUpper(*signType) {
	case "":
		return usagef(verifyLegacyTry, "verify alipay-legacy: --sign-type is required (MD5, RSA or 0001)")
	case "MD5":
		st = alipaylegacy.SignMD5
	case "RSA", "0001":
		st = alipaylegacy.SignRSA
	default:
		return usagef(verifyLegacyTry, "verify alipay-legacy: --sign-type %q: want MD5, RSA or 0001", *signType)
	}
	cs, ok := alipaywire.Charset(*charset)
	if !ok || cs != alipaywire.UTF8 && cs != alipaywire.GBK {
		return usagef(verifyLegacyTry, "verify alipay-legacy: --charset %q: want utf-8 or gbk", *charset)
	}
	if (*md5File == "") == (*pubFile == "") {
		return usagef(verifyLegacyTry, "verify alipay-legacy: give exactly one of --md5-key-file and --alipay-public-key")
	}
	switch {
	case st == alipaylegacy.SignMD5 && *md5File == "":
		return usagef(verifyLegacyTry, "verify alipay-legacy: --sign-type MD5 takes --md5-key-file, not --alipay-public-key")
	case st == alipaylegacy.SignRSA && *pubFile == "":
		return usagef(verifyLegacyTry, "verify alipay-legacy: --sign-type %s takes --alipay-public-key, not --md5-key-file", strings.ToUpper(*signType))
	case st == alipaylegacy.SignMD5 && *privFile != "":
		return usagef(verifyLegacyTry, "verify alipay-legacy: --merchant-private-key goes with --sign-type RSA or 0001")
	}

	cfg := alipaylegacy.Config{Partner: *partner, SignType: st, InputCharset: cs}
	keyDesc := "the MD5 key"
	if *md5File != "" {
		b, err := os.ReadFile(*md5File)
		if err != nil {
			return configErrorf("read --md5-key-file: %w", err)
		}
		cfg.MD5Key = string(bytes.TrimSpace(b)) // never printed
	} else {
		keyDesc = "the Alipay public key"
		b, err := os.ReadFile(*pubFile)
		if err != nil {
			return configErrorf("read --alipay-public-key: %w", err)
		}
		if cfg.AlipayPublicKey, err = alipaylegacy.ParsePublicKey(b); err != nil {
			return configErrorf("--alipay-public-key %s: %w", *pubFile, err)
		}
	}
	if *privFile != "" {
		b, err := os.ReadFile(*privFile)
		if err != nil {
			return configErrorf("read --merchant-private-key: %w", err)
		}
		if cfg.MerchantPrivateKey, err = alipaylegacy.ParsePrivateKey(b); err != nil {
			return configErrorf("--merchant-private-key %s: %w", *privFile, err)
		}
	}
	c, err := alipaylegacy.New(cfg)
	if err != nil {
		return configErrorf("%w", err)
	}
	body, err := readBody(m, positional)
	if err != nil {
		return err
	}
	trimmed := false
	if n := len(body); n > 0 && body[n-1] == '\n' {
		body = bytes.TrimSuffix(bytes.TrimSuffix(body, []byte("\n")), []byte("\r"))
		trimmed = true
	}
	in := legacyInput{client: c, merchantKey: cfg.MerchantPrivateKey, keyDesc: keyDesc, ret: *ret, trimmed: trimmed}
	if *ret {
		body = returnQuery(body)
	}
	in.body = body
	return in.run(m, *explain)
}

// returnQuery is the query string of a return visit: the part after the first '?' of a whole
// URL, or the input without its leading '?'.
func returnQuery(b []byte) []byte {
	if bytes.HasPrefix(b, []byte("http://")) || bytes.HasPrefix(b, []byte("https://")) {
		if _, q, ok := bytes.Cut(b, []byte("?")); ok {
			return q
		}
	}
	return bytes.TrimPrefix(b, []byte("?"))
}

// legacyInput is one message to check and how.
type legacyInput struct {
	client      *alipaylegacy.Client
	merchantKey *rsa.PrivateKey // for --explain's canonical string of a 0001 message the library rejected
	keyDesc     string
	body        []byte
	ret         bool
	trimmed     bool
}

// legacyKind is how the library reads a message, told by its fields as alipaylegacy documents it.
type legacyKind int

const (
	legacyMAPINotify  legacyKind = iota // mapi async notification
	legacyWAPNotify                     // WAP async notification: notify_data, sec_id or the WAP service
	legacyMAPIReturn                    // return_url visit: it carries sign_type
	legacyWAPCallback                   // call_back_url visit: no sign_type; request_token or result
)

func (in *legacyInput) run(m *Main, explain bool) error {
	var n *alipaylegacy.Notification
	var err error
	if in.ret {
		n, err = in.client.VerifyReturn(string(in.body))
	} else {
		n, err = in.client.VerifyNotification(in.body)
	}
	var ve *alipaylegacy.VerifyError
	if err != nil && !errors.As(err, &ve) {
		// Not a verdict: the message could not be checked with what was given (a 0001
		// notify_data without the merchant key).
		if in.client.SignType() == alipaylegacy.SignRSA && in.merchantKey == nil {
			return configErrorf("%v: give --merchant-private-key", err)
		}
		return configErrorf("%w", err)
	}
	if explain {
		in.explain(m, n, ve)
	}
	if ve != nil {
		reason := ve.Reason
		if ve.Detail != "" {
			reason += ": " + ve.Detail
		}
		return printInvalid(m, reason)
	}
	fmt.Fprintln(m.Stdout, "valid")
	fmt.Fprintln(m.Stdout, legacySummary(n))
	return nil
}

// legacySummary is the one-line account of a verified message, with what is still to be done.
func legacySummary(n *alipaylegacy.Notification) string {
	var b strings.Builder
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, legacyValue(v))
		}
	}
	switch {
	case n.Kind == alipaylegacy.KindWAP && n.Return:
		b.WriteString("wap call_back_url")
		kv("result", n.Result)
	case n.Return:
		b.WriteString("mapi return_url")
		kv("is_success", n.IsSuccess)
		kv("exterface", n.Exterface)
	default:
		b.WriteString(string(n.Kind) + " notification")
	}
	kv("trade_status", n.TradeStatus)
	kv("out_trade_no", n.OutTradeNo)
	kv("trade_no", n.TradeNo)
	if _, ok := n.Get("total_fee"); ok {
		kv("total_fee", alipay.FormatAmount(n.TotalFee))
	}
	if n.SellerID != "" {
		kv("seller_id", n.SellerID)
	} else {
		kv("seller_email", n.SellerEmail)
	}
	kv("request_token", n.RequestToken)
	kv("notify_id", n.NotifyID)
	switch {
	case n.Return && n.NotifyID != "":
		b.WriteString(" (a return is display only; offline: notify_verify not called)")
	case n.Return:
		b.WriteString(" (a return is display only)")
	default:
		b.WriteString(" (offline: notify_verify not called)")
	}
	return b.String()
}

// legacyValue prints a verified value as it is when it is plain, else quoted, so that no value can
// break the line.
func legacyValue(v string) string {
	for _, r := range v {
		if !unicode.IsPrint(r) || r == ' ' {
			return strconv.Quote(v)
		}
	}
	return v
}

// legacyStep is one check of --explain, in the library's order.
type legacyStep struct {
	name string // as printed after "check "
	ok   string // what an ok says, in parentheses; may be empty
}

// explain prints the message kind, the canonical string and each check up to the one that failed.
// The outcome is the library's (n or ve); the steps before it passed, because the library checks in
// this order (alipaylegacy.Client.VerifyNotification and VerifyReturn).
func (in *legacyInput) explain(m *Main, n *alipaylegacy.Notification, ve *alipaylegacy.VerifyError) {
	w := m.Stdout
	c := in.client
	note := ""
	if in.trimmed {
		note = ", trailing newline ignored"
	}
	fmt.Fprintf(w, "body: %d bytes%s\n", len(in.body), note)
	fields, ferr := alipaylegacy.ParseForm(in.body)
	if ferr != nil {
		fmt.Fprintln(w, "check form: FAILED")
		if ve != nil && ve.Detail != "" {
			fmt.Fprintln(w, "  "+ve.Detail)
		}
		return
	}
	fmt.Fprintf(w, "check form: ok (%d fields, decoded once, no duplicate key)\n", len(fields))
	get := func(k string) (string, bool) {
		for _, f := range fields {
			if f.Key == k {
				return f.Value, true
			}
		}
		return "", false
	}
	kind := in.kind(get)
	signed := "SHA1withRSA (RSA)"
	if c.SignType() == alipaylegacy.SignMD5 {
		signed = "MD5"
	}
	st := string(c.SignType())
	if c.SignType() == alipaylegacy.SignRSA {
		st += " (sec_id 0001 on the WAP pair)"
	}
	fmt.Fprintf(w, "configured: partner %s, sign_type %s, charset %s (the message does not say its charset)\n", c.Partner(), st, c.Charset())

	// The canonical string: the library's when it got that far, else built here with the same
	// exported building blocks, for display only.
	var canon []byte
	switch {
	case n != nil:
		canon = n.Canonical
	case ve != nil && ve.Canonical != nil:
		canon = ve.Canonical
	}
	var plain string   // a WAP notification's plaintext notify_data, once known
	var noPlain string // why it is not known
	encrypted := false
	if kind == legacyWAPNotify {
		data, _ := get("notify_data")
		plain = data
		if c.SignType() == alipaylegacy.SignRSA && !strings.HasPrefix(data, "<") {
			encrypted = true
			if in.merchantKey == nil {
				noPlain = "notify_data is encrypted (0001) and there is no --merchant-private-key"
			} else if p, err := alipaylegacy.DecryptData(in.merchantKey, data); err != nil {
				noPlain = "notify_data does not decrypt with the merchant private key"
			} else {
				plain = string(p)
			}
		}
	}
	if canon == nil {
		switch kind {
		case legacyWAPNotify:
			service, _ := get("service")
			v, _ := get("v")
			secID, _ := get("sec_id")
			if noPlain == "" {
				canon = alipaylegacy.CanonicalWAPNotify(service, v, secID, plain)
			}
		default:
			canon = alipaylegacy.CanonicalSorted(fields)
		}
	}
	switch kind {
	case legacyWAPNotify:
		fmt.Fprintln(w, "message: WAP async notification (alipay.wap.trade.create.direct; it has notify_data, sec_id or the WAP service)")
	case legacyMAPINotify:
		fmt.Fprintln(w, "message: mapi async notification (no notify_data, sec_id or WAP service field)")
	case legacyMAPIReturn:
		fmt.Fprintln(w, "message: mapi return_url visit (it carries sign_type)")
	case legacyWAPCallback:
		fmt.Fprintln(w, "message: WAP call_back_url visit (no sign_type; request_token or result)")
	}
	rule := "sorted rule: sign and sign_type left out, empty values dropped, sorted by name, values raw"
	if kind == legacyWAPNotify {
		rule = "WAP fixed order service&v&sec_id&notify_data, never sorted, notify_data in plaintext"
	}
	keyNote := ""
	if c.SignType() == alipaylegacy.SignMD5 {
		keyNote = "; MD5 appends the key, not shown"
	}
	if canon == nil {
		fmt.Fprintf(w, "canonical string (%s): not computed: %s\n", rule, noPlain)
	} else {
		fmt.Fprintf(w, "canonical string (%s; %d bytes%s%s):\n", rule, len(canon), shownAs(c.Charset()), keyNote)
		fmt.Fprintf(w, "%s\n", displayBytes(c.Charset(), canon))
	}

	sig, _ := get("sign")
	steps := []legacyStep{{"sign present", fmt.Sprintf("%d characters", len(sig))}}
	switch kind {
	case legacyMAPINotify, legacyMAPIReturn:
		declared, _ := get("sign_type")
		steps = append(steps, legacyStep{"sign_type", fmt.Sprintf("the message declares %s, %s is configured", strconv.Quote(declared), c.SignType())})
	case legacyWAPNotify:
		secID, _ := get("sec_id")
		steps = append(steps, legacyStep{"WAP fields", "service " + alipaylegacy.ServiceWAPCreateDirect + ", v, sec_id and notify_data present"},
			legacyStep{"sec_id", fmt.Sprintf("the message declares %s, %s is configured", strconv.Quote(secID), c.SignType().SecID())})
		if encrypted {
			steps = append(steps, legacyStep{"decrypt notify_data (0001) with the merchant private key", fmt.Sprintf("%d bytes of XML", len(plain))})
		}
	}
	steps = append(steps, legacyStep{fmt.Sprintf("signature %s with %s", signed, in.keyDesc), ""})
	switch kind {
	case legacyWAPNotify:
		steps = append(steps, legacyStep{"fields", "charset, XML, amounts, times; notify_id, out_trade_no, trade_no, trade_status, total_fee present"})
	case legacyMAPINotify:
		steps = append(steps, legacyStep{"fields", "charset, amounts, times; notify_id, out_trade_no, trade_no, trade_status, total_fee present"},
			legacyStep{"partner", "no partner field, or it is " + c.Partner()})
	case legacyMAPIReturn:
		steps = append(steps, legacyStep{"fields", "charset, amounts, times; out_trade_no present"},
			legacyStep{"partner", "no partner field, or it is " + c.Partner()})
	case legacyWAPCallback:
		steps = append(steps, legacyStep{"fields", "charset; out_trade_no and result present"})
	}
	failed := len(steps)
	if ve != nil {
		failed = in.failedStep(ve, kind, steps, get)
		if encrypted && noPlain != "" && in.merchantKey != nil && ve.Reason == alipaylegacy.ReasonSignatureInvalid {
			// The library reports a block that does not decrypt as a bad signature, so that the
			// server's answers and metrics do not tell a sender whether its padding held; this
			// offline tool, run by the operator, says which step it was.
			for i, s := range steps {
				if strings.HasPrefix(s.name, "decrypt") {
					failed = i
				}
			}
		}
	}
	for i, s := range steps {
		if i == failed {
			fmt.Fprintf(w, "check %s: FAILED\n", s.name)
			if ve.Detail != "" {
				fmt.Fprintln(w, "  "+ve.Detail)
			}
			return
		}
		if s.ok == "" {
			fmt.Fprintf(w, "check %s: ok\n", s.name)
		} else {
			fmt.Fprintf(w, "check %s: ok (%s)\n", s.name, s.ok)
		}
	}
	switch {
	case n.Return && n.NotifyID != "":
		fmt.Fprintf(w, "check notify_verify: not called (offline; a return is display only and never counts; its notify_id %s would be asked about as is, valid about a minute)\n", legacyValue(n.NotifyID))
	case n.Return:
		fmt.Fprintln(w, "check notify_verify: not called (offline; a return is display only and never counts)")
	default:
		fmt.Fprintf(w, "check notify_verify: not called (offline; the notification counts only once notify_verify answers exactly \"true\" for notify_id %s)\n", legacyValue(n.NotifyID))
	}
}

// kind tells the message kind by its fields, as the library does.
func (in *legacyInput) kind(get func(string) (string, bool)) legacyKind {
	has := func(k string) bool { _, ok := get(k); return ok }
	if in.ret {
		if !has("sign_type") && (has("request_token") || has("result")) {
			return legacyWAPCallback
		}
		return legacyMAPIReturn
	}
	if service, _ := get("service"); has("notify_data") || has("sec_id") || service == alipaylegacy.ServiceWAPCreateDirect {
		return legacyWAPNotify
	}
	return legacyMAPINotify
}

// failedStep returns the index of the step that ve failed, by its reason and the library's order.
func (in *legacyInput) failedStep(ve *alipaylegacy.VerifyError, kind legacyKind, steps []legacyStep, get func(string) (string, bool)) int {
	index := func(prefix string) int {
		for i, s := range steps {
			if strings.HasPrefix(s.name, prefix) {
				return i
			}
		}
		return len(steps) - 1
	}
	empty := func(k string) bool { v, _ := get(k); return v == "" }
	switch ve.Reason {
	case alipaylegacy.ReasonUnsigned:
		return index("sign present")
	case alipaylegacy.ReasonUnsupportedSignType:
		if kind == legacyWAPNotify {
			return index("sec_id")
		}
		return index("sign_type")
	case alipaylegacy.ReasonDecryptFailed:
		return index("decrypt")
	case alipaylegacy.ReasonSignatureInvalid:
		return index("signature")
	case alipaylegacy.ReasonWrongPartner:
		return index("partner")
	case alipaylegacy.ReasonMissingField, alipaylegacy.ReasonMalformed:
		// Checked before the signature: sign_type (mapi); service, v, sec_id, notify_data (WAP).
		switch kind {
		case legacyMAPINotify, legacyMAPIReturn:
			if empty("sign_type") {
				return index("sign_type")
			}
		case legacyWAPNotify:
			if service, _ := get("service"); service != alipaylegacy.ServiceWAPCreateDirect || empty("v") || empty("sec_id") || empty("notify_data") {
				return index("WAP fields")
			}
		}
	}
	return index("fields")
}
