// Package testsign signs provider messages for tests with the openssl command line, so that the
// signatures tests check are made independently of the code under test.
package testsign

import (
	"encoding/base64"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// AlipayNotify returns the form body of an Alipay notification with fields, signed (RSA2, the V1
// rule of docs/alipay.md, "Canonical strings": sign and sign_type left out, empty values dropped,
// keys sorted, k=v joined with &) by the PEM private key in keyFile through
// `openssl dgst -sha256 -sign`.
func AlipayNotify(tb testing.TB, keyFile string, fields map[string]string) []byte {
	tb.Helper()
	return alipayNotify(tb, keyFile, fields, false)
}

// AlipayNotifyWithEmpty is AlipayNotify signed over the canonical string that keeps empty values
// as "k=" (the official PHP SDK's rsaCheckV1 rule since its commit 49ca4518b: getCheckSignContent
// joins every parameter).
func AlipayNotifyWithEmpty(tb testing.TB, keyFile string, fields map[string]string) []byte {
	tb.Helper()
	return alipayNotify(tb, keyFile, fields, true)
}

func alipayNotify(tb testing.TB, keyFile string, fields map[string]string, keepEmpty bool) []byte {
	tb.Helper()
	keys := make([]string, 0, len(fields))
	for k, v := range fields {
		if k != "sign" && k != "sign_type" && (v != "" || keepEmpty) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var canon strings.Builder
	for i, k := range keys {
		if i > 0 {
			canon.WriteByte('&')
		}
		canon.WriteString(k + "=" + fields[k])
	}
	cmd := exec.Command("openssl", "dgst", "-sha256", "-sign", keyFile)
	cmd.Stdin = strings.NewReader(canon.String())
	sig, err := cmd.Output()
	if err != nil {
		tb.Fatalf("testsign: openssl: %v", err)
	}
	all := map[string]string{"sign": base64.StdEncoding.EncodeToString(sig), "sign_type": "RSA2"}
	for k, v := range fields {
		all[k] = v
	}
	names := make([]string, 0, len(all))
	for k := range all {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(k) + "=" + url.QueryEscape(all[k]))
	}
	return []byte(b.String())
}

// RSA2 signs msg with SHA256withRSA by the PEM private key in keyFile through `openssl dgst
// -sha256 -sign` and returns the base64 signature.
func RSA2(tb testing.TB, keyFile string, msg []byte) string {
	tb.Helper()
	cmd := exec.Command("openssl", "dgst", "-sha256", "-sign", keyFile)
	cmd.Stdin = strings.NewReader(string(msg))
	sig, err := cmd.Output()
	if err != nil {
		tb.Fatalf("testsign: openssl: %v", err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// AlipayPaid returns the fields of a TRADE_SUCCESS payment notification of order otn for amount
// yuan ("88.88"), from app appID to seller.
func AlipayPaid(appID, seller, otn, yuan string) map[string]string {
	suffix := otn
	if len(suffix) > 4 {
		suffix = suffix[len(suffix)-4:]
	}
	return map[string]string{
		"notify_time": "2026-11-29 10:00:05", "notify_type": "trade_status_sync", "notify_id": "n-" + otn,
		"app_id": appID, "auth_app_id": appID, "charset": "utf-8", "version": "1.0",
		"trade_no": "2026112922001400000000" + suffix, "out_trade_no": otn, "buyer_id": "2088102177846880",
		"seller_id": seller, "trade_status": "TRADE_SUCCESS", "total_amount": yuan, "receipt_amount": yuan,
		"buyer_pay_amount": yuan, "subject": "测试 order", "gmt_create": "2026-11-29 09:59:50", "gmt_payment": "2026-11-29 10:00:00",
		"fund_bill_list": `[{"amount":"` + yuan + `","fundChannel":"ALIPAYACCOUNT"}]`,
	}
}

// VerifyRSA2 checks a base64 SHA256withRSA signature of msg with the PEM public key in pubFile
// through `openssl dgst -sha256 -verify`, and fails the test when it does not verify.
func VerifyRSA2(tb testing.TB, pubFile string, msg []byte, sigB64 string) {
	tb.Helper()
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil {
		tb.Fatalf("testsign: signature is not base64: %v", err)
	}
	dir := tb.TempDir()
	sigFile, msgFile := filepath.Join(dir, "sig"), filepath.Join(dir, "msg")
	if err := os.WriteFile(sigFile, sig, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(msgFile, msg, 0o600); err != nil {
		tb.Fatal(err)
	}
	out, err := exec.Command("openssl", "dgst", "-sha256", "-verify", pubFile, "-signature", sigFile, msgFile).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verified OK") {
		tb.Fatalf("testsign: openssl does not verify the signature: %s %v", strings.TrimSpace(string(out)), err)
	}
}

// SortedJoin is the request and notification canonical string (docs/alipay.md, "Canonical
// strings"), written independently of the alipay package: every pair with a non-empty value whose
// key is not in skip, sorted by key, as k=v joined by &.
func SortedJoin(p map[string]string, skip ...string) string {
	keys := make([]string, 0, len(p))
outer:
	for k, v := range p {
		for _, s := range skip {
			if k == s {
				continue outer
			}
		}
		if v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + p[k]
	}
	return strings.Join(parts, "&")
}
