package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/text/encoding/simplifiedchinese"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipay"
	"github.com/paynotify/paynotify/internal/alipaywire"
	"github.com/paynotify/paynotify/provider"
)

func init() { verifiers["alipay"] = verifyAlipayCommand{} }

// verifyAlipayCommand is `paynotify verify alipay`: it checks a captured Alipay notification body.
type verifyAlipayCommand struct{}

const verifyAlipayTry = "paynotify verify alipay --alipay-public-key alipay_public.pem --explain notify.txt"

func (verifyAlipayCommand) Usage() string {
	return `Usage: paynotify verify alipay (--alipay-public-key FILE | --alipay-cert FILE) [--sign-type RSA2|RSA] [--explain] [BODY_FILE|-]

Verifies an Alipay asynchronous notification: the raw POST body (application/x-www-form-urlencoded)
from BODY_FILE, or stdin when BODY_FILE is "-" or absent. One trailing newline is ignored.
Prints "valid" and a summary (exit 0), or "invalid: <reason>" (exit 1); key or usage errors exit 2.

  --alipay-public-key FILE  the Alipay public key (支付宝公钥), PEM or the console's one-line base64
  --alipay-cert FILE        the Alipay public-key certificate (alipayCertPublicKey_RSA2.crt), cert mode
  --sign-type RSA2|RSA      the algorithm your app is configured with (default RSA2); the message's own
                            sign_type is never trusted
  --explain                 print the canonical string and every check
`
}

func (cmd verifyAlipayCommand) Run(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("verify alipay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	pubFile := fs.String("alipay-public-key", "", "")
	certFile := fs.String("alipay-cert", "", "")
	signType := fs.String("sign-type", "RSA2", "")
	explain := fs.Bool("explain", false, "")
	positional, err := parseFlags(m, fs, cmd.Usage(), verifyAlipayTry, args)
	if errors.Is(err, errHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if (*pubFile == "") == (*certFile == "") {
		return usagef(verifyAlipayTry, "verify alipay: give exactly one of --alipay-public-key and --alipay-cert")
	}
	st := alipay.SignType(strings.ToUpper(*signType))
	if st != alipay.RSA2 && st != alipay.RSA {
		return usagef(verifyAlipayTry, "verify alipay: --sign-type must be RSA2 or RSA")
	}
	cfg := alipay.Config{SignType: st}
	keyDesc := "the Alipay public key"
	if *pubFile != "" {
		b, err := os.ReadFile(*pubFile)
		if err != nil {
			return configErrorf("read --alipay-public-key: %w", err)
		}
		if cfg.AlipayPublicKey, err = alipay.ParsePublicKey(b); err != nil {
			return configErrorf("--alipay-public-key %s: %w", *pubFile, err)
		}
	} else {
		b, err := os.ReadFile(*certFile)
		if err != nil {
			return configErrorf("read --alipay-cert: %w", err)
		}
		cfg.AlipayCert = b
	}
	c, err := alipay.NewClient(cfg)
	if err != nil {
		return configErrorf("%w", err)
	}
	if sn := c.AlipayCertSN(); sn != "" {
		keyDesc = "the Alipay certificate " + sn
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
	return verifyAlipayBody(m, c, body, *explain, trimmed, keyDesc)
}

// verifyAlipayBody runs the checks one by one so that --explain can show each.
func verifyAlipayBody(m *Main, c *alipay.Client, body []byte, explain, trimmed bool, keyDesc string) error {
	say := func(format string, args ...any) {
		if explain {
			fmt.Fprintf(m.Stdout, format+"\n", args...)
		}
	}
	note := ""
	if trimmed {
		note = ", trailing newline ignored"
	}
	say("body: %d bytes%s", len(body), note)
	// The form, the canonical string and the sign are shown from internal/alipaywire, the parser
	// the alipay package itself uses; the verdict is the package's own VerifyNotification.
	var f alipaywire.Form
	if perr := f.Parse(body); perr != nil {
		_, err := c.VerifyNotification(nil, body)
		if err == nil {
			err = perr
		}
		return invalidAlipay(m, explain, "check form: FAILED", err)
	}
	say("check form: ok (%d fields, decoded once, no duplicate key)", f.Len())
	charset, _ := f.Lookup("charset")
	cs := string(charset)
	if cs == "" {
		cs = "(none declared: utf-8 assumed)"
	}
	say("charset: %s", cs)
	canon := f.AppendCanonical(nil, false, "", false)
	say("canonical string (V1: sign and sign_type left out, empty values dropped; %d bytes%s):", len(canon), shownAs(string(charset)))
	say("%s", displayBytes(string(charset), canon))
	if sig, _ := f.Lookup("sign"); len(sig) == 0 {
		say("check sign present: FAILED")
	} else {
		say("check sign present: ok (%d base64 characters)", len(sig))
	}
	if st, ok := f.Lookup("sign_type"); ok {
		say("sign_type declared by the message: %s (not used: %s is configured)", st, c.SignType())
	}
	n, err := c.VerifyNotification(nil, body)
	var ve *alipay.VerifyError
	switch {
	case err != nil && errors.As(err, &ve) && ve.Reason == alipay.ReasonMalformed:
		// The form parsed, so a malformed verdict comes after the signature: the fields.
		say("check signature %s with %s: ok", c.SignType(), keyDesc)
		return invalidAlipay(m, explain, "check fields (charset, amounts, times): FAILED", err)
	case err != nil:
		return invalidAlipay(m, explain, fmt.Sprintf("check signature %s with %s: FAILED", c.SignType(), keyDesc), err)
	}
	say("check signature %s with %s: ok", c.SignType(), keyDesc)
	say("check fields (charset, amounts, times): ok")
	if err := serverVerdict(m, explain, (&provider.Alipay{Client: c}).Verifier(paynotify.ProviderAlipay), nil, body, time.Time{}); err != nil {
		return err
	}
	fmt.Fprintln(m.Stdout, "valid")
	fmt.Fprintln(m.Stdout, alipaySummary(n))
	return nil
}

func invalidAlipay(m *Main, explain bool, check string, err error) error {
	var ve *alipay.VerifyError
	if !errors.As(err, &ve) {
		return printInvalid(m, err.Error())
	}
	if explain {
		fmt.Fprintln(m.Stdout, check)
		if ve.Detail != "" {
			fmt.Fprintln(m.Stdout, "  "+ve.Detail)
		}
	}
	reason := ve.Reason
	if ve.Detail != "" {
		reason += ": " + ve.Detail
	}
	return printInvalid(m, reason)
}

func alipaySummary(n *alipay.Notification) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s out_trade_no=%s trade_no=%s total_amount=%s", n.NotifyType, n.TradeStatus,
		n.OutTradeNo, n.TradeNo, alipay.FormatAmount(n.TotalAmount))
	if n.IsRefund() {
		fmt.Fprintf(&b, " refund_fee=%s", alipay.FormatAmount(n.RefundFee))
		if n.OutBizNo != "" {
			fmt.Fprintf(&b, " out_biz_no=%s", n.OutBizNo)
		}
	}
	fmt.Fprintf(&b, " app_id=%s seller_id=%s notify_id=%s", n.AppID, n.SellerID, n.NotifyID)
	return b.String()
}

func shownAs(charset string) string {
	switch strings.ToLower(charset) {
	case "", "utf-8", "utf8":
		return ""
	}
	return ", signed as " + charset + " bytes, shown converted to UTF-8"
}

// displayBytes shows canonical bytes as UTF-8 text, converting GBK for display only.
func displayBytes(charset string, b []byte) string {
	if cs, ok := alipaywire.Charset(charset); ok && cs != alipaywire.UTF8 {
		if s, err := simplifiedchinese.GB18030.NewDecoder().Bytes(b); err == nil {
			return string(s)
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
