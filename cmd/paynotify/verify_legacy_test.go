package main

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// legacyTestdata is the alipaylegacy package's copy of the shared legacy vectors (made by an
// independent generator, 36/36 agreeing with Alipay's legacy PHP code; see its README.md).
const legacyTestdata = "../../alipaylegacy/testdata"

const legacyPartner = "2088101122136241"

type legacyCLIVector struct {
	Case   string `json:"case"`
	Expect string `json:"expect"`
	Kind   string `json:"kind"`
	File   string `json:"file"`
	Config struct {
		Partner            string `json:"partner"`
		SignType           string `json:"sign_type"`
		InputCharset       string `json:"input_charset"`
		MD5KeyFile         string `json:"md5_key_file"`
		AlipayPublicKey    string `json:"alipay_public_key"`
		MerchantPrivateKey string `json:"merchant_private_key"`
	} `json:"config"`
	VerifierPrestr string `json:"verifier_prestr"`
	NotifyIDSent   string `json:"notify_id_sent"`
}

func loadLegacyVectors(t *testing.T) []legacyCLIVector {
	t.Helper()
	var m struct {
		Cases []legacyCLIVector `json:"cases"`
	}
	if err := json.Unmarshal(readLegacy(t, "manifest.json"), &m); err != nil {
		t.Fatal(err)
	}
	return m.Cases
}

func readLegacy(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(legacyTestdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// legacyArgs are the command-line flags of a vector's merchant configuration.
func (v legacyCLIVector) args() []string {
	a := []string{"verify", "alipay-legacy", "--partner", v.Config.Partner, "--sign-type", v.Config.SignType, "--charset", v.Config.InputCharset}
	if v.Config.MD5KeyFile != "" {
		a = append(a, "--md5-key-file", filepath.Join(legacyTestdata, v.Config.MD5KeyFile))
	}
	if v.Config.AlipayPublicKey != "" {
		a = append(a, "--alipay-public-key", filepath.Join(legacyTestdata, v.Config.AlipayPublicKey),
			"--merchant-private-key", filepath.Join(legacyTestdata, v.Config.MerchantPrivateKey))
	}
	if v.Kind == "mapi_return" || v.Kind == "wap_callback" {
		a = append(a, "--return")
	}
	return a
}

// legacyInvalid is what the CLI must say about each invalid vector it takes as input: the reason,
// and a part of the detail. The manifest says only "invalid"; the reasons are those of the
// cases.tsv notes (a missing sign is unsigned, everything else a signature that does not verify).
// Every invalid CLI vector must be listed here.
var legacyInvalid = map[string]struct{ reason, detail, check string }{
	"mapi_md5_tampered_amount":                {"signature_invalid", "MD5 sign does not match", "signature MD5"},
	"mapi_md5_wrong_key":                      {"signature_invalid", "MD5 sign does not match", "signature MD5"},
	"mapi_md5_missing_sign":                   {"unsigned", "sign is missing", "sign present"},
	"mapi_md5_extra_param":                    {"signature_invalid", "MD5 sign does not match", "signature MD5"},
	"mapi_md5_gbk_signed_as_utf8":             {"signature_invalid", "MD5 sign does not match", "signature MD5"},
	"mapi_md5_uppercase_sign":                 {"signature_invalid", "", "signature MD5"},
	"mapi_rsa_tampered_amount":                {"signature_invalid", "SHA1withRSA", "signature SHA1withRSA"},
	"mapi_rsa_wrong_key":                      {"signature_invalid", "SHA1withRSA", "signature SHA1withRSA"},
	"mapi_rsa_missing_sign":                   {"unsigned", "sign is missing", "sign present"},
	"mapi_rsa_extra_param":                    {"signature_invalid", "SHA1withRSA", "signature SHA1withRSA"},
	"mapi_rsa_sha256_signature":               {"signature_invalid", "", "signature SHA1withRSA"},
	"mapi_return_md5_notify_id_decoded_twice": {"signature_invalid", "MD5 sign does not match", "signature MD5"},
	"wap_notify_md5_sorted_order":             {"signature_invalid", "it verifies over the sorted string instead", "signature MD5"},
	"wap_notify_md5_tampered_amount":          {"signature_invalid", "fixed-order", "signature MD5"},
	"wap_notify_0001_signed_ciphertext":       {"signature_invalid", "it verifies over the encrypted notify_data", "signature SHA1withRSA"},
	"wap_notify_0001_wrong_key":               {"signature_invalid", "fixed-order", "signature SHA1withRSA"},
}

// legacyShown is how --explain shows canonical bytes: GBK converted to UTF-8 (independently of the
// command's own conversion).
func legacyShown(t *testing.T, charset string, b []byte) string {
	t.Helper()
	if charset != "gbk" {
		return string(b)
	}
	s, err := simplifiedchinese.GBK.NewDecoder().Bytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(s)
}

// TestVerifyLegacy_Vectors runs every vector of alipaylegacy/testdata that is a CLI input through
// `paynotify verify alipay-legacy`, in-process, with the merchant configuration the manifest names.
func TestVerifyLegacy_Vectors(t *testing.T) {
	vs := loadLegacyVectors(t)
	if len(vs) != 36 {
		t.Fatalf("%d vectors, want 36", len(vs))
	}
	md5Key := strings.TrimSpace(string(readLegacy(t, "keys/md5_key.txt")))
	ran, notInput := 0, 0
	seenInvalid := map[string]bool{}
	for _, v := range vs {
		switch v.Kind {
		case "mapi_notify", "wap_notify", "mapi_return", "wap_callback":
			ran++
		case "wap_token", "wap_request", "mapi_request":
			// Not CLI inputs: the command checks what Alipay sends to the merchant's notify_url,
			// return_url and call_back_url. A wap_token vector is the WAP gateway's answer to the
			// merchant's own server call (alipay.wap.trade.create.direct), checked by
			// alipaylegacy.Client.WAPCreateDirect while it makes that call, never captured from a
			// notification; the *_request vectors are requests the merchant signs with its own key
			// (a create_direct_pay_by_user or authAndExecute URL, the create.direct POST body),
			// which nobody verifies on the merchant side. Both kinds run through the library in
			// alipaylegacy/vectors_test.go.
			notInput++
			continue
		default:
			t.Fatalf("%s: unknown kind %q: decide whether the CLI takes it", v.Case, v.Kind)
		}
		name := "OK/" + v.Case
		if v.Expect != "valid" {
			name = "Err/" + v.Case
		}
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(legacyTestdata, v.File)
			data := readLegacy(t, v.File)
			prestr := readLegacy(t, v.VerifierPrestr)
			want, listed := legacyInvalid[v.Case]
			if v.Expect == "valid" && listed {
				t.Fatalf("%s is valid but listed in legacyInvalid", v.Case)
			}
			if v.Expect != "valid" {
				if !listed {
					t.Fatalf("invalid vector %s has no expected reason in legacyInvalid", v.Case)
				}
				seenInvalid[v.Case] = true
			}
			// The file as it is, and stdin with the newline an editor adds.
			for _, src := range []struct{ stdin, arg string }{{"", file}, {string(data) + "\n", "-"}} {
				code, out, errs := runMain(t, src.stdin, append(v.args(), src.arg)...)
				if strings.Contains(out+errs, md5Key) {
					t.Fatal("MD5 key printed")
				}
				if v.Expect == "valid" {
					if code != exitOK || !strings.HasPrefix(out, "valid\n") || strings.Count(out, "\n") != 2 || errs != "" {
						t.Fatalf("code %d out %q err %q", code, out, errs)
					}
					checkLegacySummary(t, v, out)
					continue
				}
				if code != exitInvalid || !strings.HasPrefix(out, "invalid: "+want.reason+": ") || !strings.Contains(out, want.detail) || strings.Count(out, "\n") != 1 {
					t.Fatalf("code %d out %q err %q, want invalid: %s: …%s…", code, out, errs, want.reason, want.detail)
				}
			}

			// --explain shows the vector's canonical string (the .prestr bytes, GBK shown as
			// UTF-8), each check, and ends with the same verdict.
			code, out, errs := runMain(t, "", append(v.args(), "--explain", file)...)
			shown := legacyShown(t, v.Config.InputCharset, prestr)
			if !strings.Contains(out, "\n"+shown+"\n") {
				t.Fatalf("--explain lacks the canonical string %q:\n%s", shown, out)
			}
			if v.Config.InputCharset == "gbk" && !strings.Contains(out, "signed as gbk bytes, shown converted to UTF-8") {
				t.Fatalf("--explain does not say the GBK string was converted:\n%s", out)
			}
			if strings.Contains(out+errs, md5Key) {
				t.Fatal("MD5 key printed")
			}
			if v.Expect == "valid" {
				if code != exitOK || strings.Contains(out, "FAILED") || !strings.Contains(out, "check signature ") || !strings.Contains(out, "check notify_verify: not called (offline") ||
					!strings.Contains(out, "\nvalid\n") {
					t.Fatalf("code %d:\n%s", code, out)
				}
				return
			}
			if code != exitInvalid || !strings.Contains(out, "check "+want.check) || !strings.Contains(out, ": FAILED\n") || !strings.Contains(out, "\ninvalid: "+want.reason+": ") ||
				strings.Contains(out, "notify_verify") {
				t.Fatalf("code %d, want check %q FAILED:\n%s", code, want.check, out)
			}
			// The check that failed is the last one shown, then the verdict.
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) < 3 || !strings.HasPrefix(lines[len(lines)-3], "check "+want.check) || !strings.HasSuffix(lines[len(lines)-3], ": FAILED") {
				t.Fatalf("the failed check is not the last one:\n%s", out)
			}
			// Never a forgery oracle: the sign the message should have carried is not shown.
			if v.Config.SignType == "MD5" {
				// MD5 of the pre-sign string with the key appended, computed here (not by the
				// package under test, whose mistake would make this check pass).
				sum := md5.Sum(append(append([]byte(nil), prestr...), md5Key...))
				if good := hex.EncodeToString(sum[:]); strings.Contains(out, good) {
					t.Fatal("--explain prints the expected MD5 sign")
				}
			}
		})
	}
	if ran != 28 || notInput != 8 || ran+notInput != len(vs) {
		t.Fatalf("ran %d, not CLI input %d, of %d vectors", ran, notInput, len(vs))
	}
	for c := range legacyInvalid {
		if !seenInvalid[c] && !t.Failed() {
			t.Errorf("legacyInvalid lists %s, which is not an invalid CLI vector", c)
		}
	}
}

// checkLegacySummary checks the one-line summary of a valid vector: what it is, the typed fields,
// and that notify_verify was not called.
func checkLegacySummary(t *testing.T, v legacyCLIVector, out string) {
	t.Helper()
	summary := strings.TrimSuffix(strings.TrimPrefix(out, "valid\n"), "\n")
	var want []string
	switch v.Kind {
	case "mapi_notify":
		want = []string{"mapi notification ", " out_trade_no=LEG20261128001 ", " total_fee=88.88 ", " notify_id=" + v.NotifyIDSent + " ", "(offline: notify_verify not called)"}
	case "wap_notify":
		want = []string{"wap notification ", "trade_status=TRADE_FINISHED", " out_trade_no=LEGW1128001 ", " total_fee=1.00 ", " notify_id=", "(offline: notify_verify not called)"}
	case "mapi_return":
		// The once-decoded notify_id, %2F and %2B kept, as notify_verify would be asked about it.
		want = []string{"mapi return_url is_success=T exterface=create_direct_pay_by_user ", " total_fee=88.88 ", " notify_id=" + v.NotifyIDSent + " ", "display only", "notify_verify not called"}
	case "wap_callback":
		want = []string{"wap call_back_url result=success ", " out_trade_no=LEGW1128001 ", " request_token=requestToken ", "display only"}
	}
	for _, w := range want {
		if !strings.Contains(summary, w) {
			t.Fatalf("summary %q lacks %q", summary, w)
		}
	}
}

// legacyKeys are the vectors' TESTING KEY files.
type legacyKeys struct{ md5, alipayPub, merchantPriv, merchantPub, attackerPub string }

func legacyKeyFiles() legacyKeys {
	k := func(n string) string { return filepath.Join(legacyTestdata, "keys", n) }
	return legacyKeys{k("md5_key.txt"), k("alipay_public.pem"), k("merchant_private_pkcs1.pem"), k("merchant_public.pem"), k("attacker_public.pem")}
}

func TestVerifyLegacy(t *testing.T) {
	k := legacyKeyFiles()
	cases := filepath.Join(legacyTestdata, "cases")
	md5 := []string{"verify", "alipay-legacy", "--partner", legacyPartner, "--sign-type", "MD5", "--md5-key-file", k.md5}
	rsa := []string{"verify", "alipay-legacy", "--partner", legacyPartner, "--sign-type", "RSA", "--alipay-public-key", k.alipayPub}
	with := func(base []string, more ...string) []string { return append(append([]string(nil), base...), more...) }

	t.Run("OK/KeyForms", func(t *testing.T) {
		// Every form of the merchant key decrypts a 0001 notification; the Alipay key as one line.
		for _, priv := range []string{"merchant_private_pkcs1.pem", "merchant_private_pkcs8.pem", "merchant_private_pkcs8.oneline"} {
			for _, pub := range []string{"alipay_public.pem", "alipay_public.oneline"} {
				code, out, errs := runMain(t, "", "verify", "alipay-legacy", "--partner", legacyPartner, "--sign-type", "0001",
					"--alipay-public-key", filepath.Join(legacyTestdata, "keys", pub), "--merchant-private-key", filepath.Join(legacyTestdata, "keys", priv),
					filepath.Join(cases, "wap_notify_0001_valid.body"))
				if code != exitOK || !strings.HasPrefix(out, "valid\nwap notification ") {
					t.Fatalf("%s + %s: code %d out %q err %q", pub, priv, code, out, errs)
				}
			}
		}
	})
	t.Run("OK/SignTypeCase", func(t *testing.T) {
		code, out, errs := runMain(t, "", "verify", "alipay-legacy", "--partner", legacyPartner, "--sign-type", "md5", "--md5-key-file", k.md5, filepath.Join(cases, "mapi_md5_valid.body"))
		if code != exitOK {
			t.Fatalf("code %d out %q err %q", code, out, errs)
		}
	})
	t.Run("OK/ReturnWholeURL", func(t *testing.T) {
		q := readLegacy(t, "cases/mapi_return_md5_valid.query")
		for _, in := range []string{"?" + string(q), "https://shop.example.com/alipay/return?" + string(q) + "\r\n"} {
			code, out, errs := runMain(t, in, with(md5, "--return", "-")...)
			if code != exitOK || !strings.HasPrefix(out, "valid\nmapi return_url ") {
				t.Fatalf("%q: code %d out %q err %q", in, code, out, errs)
			}
		}
	})
	t.Run("OK/RSAWithoutMerchantKeyForMAPI", func(t *testing.T) {
		// The merchant key only decrypts 0001 data: a mapi notification verifies without it.
		code, out, errs := runMain(t, "", with(rsa, filepath.Join(cases, "mapi_rsa_valid.body"))...)
		if code != exitOK || !strings.HasPrefix(out, "valid\nmapi notification ") {
			t.Fatalf("code %d out %q err %q", code, out, errs)
		}
	})
	t.Run("Err0001WithoutMerchantKey", func(t *testing.T) {
		// Not a verdict: the notification cannot be checked without the key that decrypts it.
		code, out, errs := runMain(t, "", with(rsa, filepath.Join(cases, "wap_notify_0001_valid.body"))...)
		if code != exitUsage || out != "" || !strings.Contains(errs, "--merchant-private-key") {
			t.Fatalf("code %d out %q err %q", code, out, errs)
		}
	})
	t.Run("Err0001WrongMerchantKey", func(t *testing.T) {
		// notify_data encrypted to another key than --merchant-private-key: the library reports
		// it as a bad signature (no padding oracle), --explain names the decryption.
		code, out, errs := runMain(t, "", "verify", "alipay-legacy", "--partner", legacyPartner, "--sign-type", "0001", "--explain",
			"--alipay-public-key", k.alipayPub, "--merchant-private-key", filepath.Join(legacyTestdata, "keys", "attacker_private_pkcs1.pem"),
			filepath.Join(cases, "wap_notify_0001_valid.body"))
		if code != exitInvalid || !strings.Contains(out, "check decrypt notify_data (0001) with the merchant private key: FAILED\n  notify_data does not decrypt") ||
			!strings.Contains(out, "\ninvalid: signature_invalid: ") {
			t.Fatalf("code %d:\n%s\n%s", code, out, errs)
		}
	})
	t.Run("ErrDowngrade", func(t *testing.T) {
		// An RSA merchant's verifier never accepts the message's own sign_type=MD5, and the
		// other way round; --explain names the check.
		code, out, _ := runMain(t, "", with(md5, "--explain", filepath.Join(cases, "mapi_rsa_valid.body"))...)
		if code != exitInvalid || !strings.Contains(out, "check sign_type: FAILED\n") || !strings.HasSuffix(out, "\ninvalid: unsupported_sign_type: the message declares sign_type=\"RSA\" but MD5 is configured\n") {
			t.Fatalf("code %d:\n%s", code, out)
		}
		code, out, _ = runMain(t, "", with(rsa, "--explain", filepath.Join(cases, "wap_notify_md5_valid.body"))...)
		if code != exitInvalid || !strings.Contains(out, "check sec_id: FAILED\n") || !strings.Contains(out, "\ninvalid: unsupported_sign_type: ") {
			t.Fatalf("code %d:\n%s", code, out)
		}
	})
	t.Run("ErrWrongKeyRejectsNotification", func(t *testing.T) {
		code, out, _ := runMain(t, "", "verify", "alipay-legacy", "--partner", legacyPartner, "--sign-type", "RSA", "--alipay-public-key", k.attackerPub, filepath.Join(cases, "mapi_rsa_valid.body"))
		if code != exitInvalid || !strings.HasPrefix(out, "invalid: signature_invalid: ") {
			t.Fatalf("code %d %q", code, out)
		}
	})
	t.Run("ErrCharsetNotConfigured", func(t *testing.T) {
		// The signature covers the raw GBK bytes whatever the configuration; read as UTF-8 the
		// verified fields are not text: the check after the signature fails.
		code, out, _ := runMain(t, "", with(md5, "--explain", filepath.Join(cases, "mapi_md5_gbk.body"))...)
		if code != exitInvalid || !strings.Contains(out, "check signature MD5 with the MD5 key: ok\ncheck fields: FAILED\n") || !strings.Contains(out, "\ninvalid: bad_charset: ") {
			t.Fatalf("code %d:\n%s", code, out)
		}
	})
	t.Run("ErrDuplicateKey", func(t *testing.T) {
		body := string(readLegacy(t, "cases/mapi_md5_valid.body")) + "&total_fee=0.01"
		code, out, _ := runMain(t, body, with(md5, "--explain", "-")...)
		if code != exitInvalid || !strings.Contains(out, "check form: FAILED\n") || !strings.Contains(out, "\ninvalid: duplicate_key: ") || strings.Contains(out, "check sign") {
			t.Fatalf("code %d:\n%s", code, out)
		}
	})
	t.Run("ErrMissingSignType", func(t *testing.T) {
		body := strings.Replace(string(readLegacy(t, "cases/mapi_md5_valid.body")), "&sign_type=MD5", "", 1)
		if !strings.Contains(string(readLegacy(t, "cases/mapi_md5_valid.body")), "&sign_type=MD5") {
			t.Fatal("test setup: no &sign_type=MD5")
		}
		code, out, _ := runMain(t, body, with(md5, "--explain", "-")...)
		if code != exitInvalid || !strings.Contains(out, "check sign_type: FAILED\n") || !strings.Contains(out, "invalid: missing_field: sign_type") {
			t.Fatalf("code %d:\n%s", code, out)
		}
	})
	t.Run("ErrReturnIsNotANotification", func(t *testing.T) {
		// A WAP call_back_url query given without --return is read as a mapi notification, which
		// must carry sign_type: never valid by accident.
		code, out, _ := runMain(t, "", with(md5, filepath.Join(cases, "wap_callback_md5_valid.query"))...)
		if code != exitInvalid || out != "invalid: missing_field: sign_type is missing or empty\n" {
			t.Fatalf("code %d %q", code, out)
		}
	})
	t.Run("OK/Help", func(t *testing.T) {
		for _, h := range []string{"--help", "-h"} {
			code, out, errs := runMain(t, "", "verify", "alipay-legacy", h)
			if code != exitOK || !strings.HasPrefix(out, "Usage: paynotify verify alipay-legacy --partner PID --sign-type MD5|RSA|0001") || !strings.Contains(out, "--merchant-private-key") || errs != "" {
				t.Fatalf("code %d out %q err %q", code, out, errs)
			}
		}
	})
	t.Run("OK/DispatcherNamesLegacy", func(t *testing.T) {
		code, _, errs := runMain(t, "", "verify")
		if code != exitUsage || !strings.Contains(errs, "alipay-legacy") {
			t.Fatalf("code %d %q", code, errs)
		}
	})
}

func TestVerifyLegacy_Usage(t *testing.T) {
	k := legacyKeyFiles()
	dir := t.TempDir()
	body := filepath.Join(legacyTestdata, "cases", "mapi_md5_valid.body")
	short := filepath.Join(dir, "short.txt")
	os.WriteFile(short, []byte("shortsecret0123\n"), 0o600)
	// A directory: unreadable as a file whoever runs the tests (also root).
	unreadable := filepath.Join(dir, "unreadable.pem")
	if err := os.Mkdir(unreadable, 0o700); err != nil {
		t.Fatal(err)
	}
	md5Key := strings.TrimSpace(string(readLegacy(t, "keys/md5_key.txt")))
	privOneLine := strings.TrimSpace(string(readLegacy(t, "keys/merchant_private_pkcs8.oneline")))
	p := []string{"--partner", legacyPartner}
	tests := []struct {
		name string
		args []string
		errs string
	}{
		{"ErrNoPartner", []string{"--sign-type", "MD5", "--md5-key-file", k.md5, body}, "--partner is required"},
		{"ErrNoSignType", append(p, "--md5-key-file", k.md5, body), "--sign-type is required"},
		{"ErrUnknownSignType", append(p, "--sign-type", "RSA2", "--md5-key-file", k.md5, body), `--sign-type "RSA2": want MD5, RSA or 0001`},
		{"ErrCharset", append(p, "--sign-type", "MD5", "--charset", "big5", "--md5-key-file", k.md5, body), `--charset "big5"`},
		{"ErrBothKeys", append(p, "--sign-type", "MD5", "--md5-key-file", k.md5, "--alipay-public-key", k.alipayPub, body), "exactly one of --md5-key-file and --alipay-public-key"},
		{"ErrNoKey", append(p, "--sign-type", "MD5", body), "exactly one of --md5-key-file and --alipay-public-key"},
		{"ErrMD5WithPublicKey", append(p, "--sign-type", "MD5", "--alipay-public-key", k.alipayPub, body), "--sign-type MD5 takes --md5-key-file"},
		{"ErrRSAWithMD5Key", append(p, "--sign-type", "RSA", "--md5-key-file", k.md5, body), "--sign-type RSA takes --alipay-public-key"},
		{"Err0001WithMD5Key", append(p, "--sign-type", "0001", "--md5-key-file", k.md5, body), "--sign-type 0001 takes --alipay-public-key"},
		{"ErrMerchantKeyWithMD5", append(p, "--sign-type", "MD5", "--md5-key-file", k.md5, "--merchant-private-key", k.merchantPriv, body), "--merchant-private-key goes with --sign-type RSA or 0001"},
		{"ErrUnknownFlag", append(p, "--sign-type", "MD5", "--md5-key-file", k.md5, "--notify-verify", body), "flag provided but not defined"},
		{"ErrTwoBodies", append(p, "--sign-type", "MD5", "--md5-key-file", k.md5, body, body), "too many arguments"},
		{"ErrBadPartner", []string{"--partner", "2088", "--sign-type", "MD5", "--md5-key-file", k.md5, body}, "Partner"},
		{"ErrMissingMD5KeyFile", append(p, "--sign-type", "MD5", "--md5-key-file", filepath.Join(dir, "nope.txt"), body), "nope.txt"},
		{"ErrUnreadableMD5KeyFile", append(p, "--sign-type", "MD5", "--md5-key-file", unreadable, body), "read --md5-key-file"},
		{"ErrShortMD5Key", append(p, "--sign-type", "MD5", "--md5-key-file", short, body), "32 letters and digits"},
		{"ErrMissingPublicKeyFile", append(p, "--sign-type", "RSA", "--alipay-public-key", filepath.Join(dir, "nope.pem"), body), "nope.pem"},
		{"ErrUnreadablePublicKeyFile", append(p, "--sign-type", "RSA", "--alipay-public-key", unreadable, body), "read --alipay-public-key"},
		{"ErrPublicKeyIsPrivate", append(p, "--sign-type", "RSA", "--alipay-public-key", filepath.Join(legacyTestdata, "keys", "merchant_private_pkcs8.oneline"), body), "this is a private key"},
		{"ErrPublicKeyIsMD5Key", append(p, "--sign-type", "RSA", "--alipay-public-key", k.md5, body), "--alipay-public-key"},
		{"ErrOwnPublicKey", append(p, "--sign-type", "RSA", "--alipay-public-key", k.merchantPub, "--merchant-private-key", k.merchantPriv, body), "merchant's own public key"},
		{"ErrMerchantKeyIsPublic", append(p, "--sign-type", "RSA", "--alipay-public-key", k.alipayPub, "--merchant-private-key", k.merchantPub, body), "this is a public key"},
		{"ErrUnreadableMerchantKey", append(p, "--sign-type", "RSA", "--alipay-public-key", k.alipayPub, "--merchant-private-key", unreadable, body), "read --merchant-private-key"},
		{"ErrMissingBody", append(p, "--sign-type", "MD5", "--md5-key-file", k.md5, filepath.Join(dir, "nope.body")), "nope.body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runMain(t, "", append([]string{"verify", "alipay-legacy"}, tt.args...)...)
			if code != exitUsage || !strings.Contains(errs, tt.errs) || !strings.HasPrefix(errs, "paynotify: ") {
				t.Fatalf("code %d out %q err %q, want %q", code, out, errs, tt.errs)
			}
			for _, secret := range []string{md5Key, privOneLine[20:60], "MIICdgIBADANBgkqhkiG9w0BAQEFAASC", "shortsecret0123"} {
				if strings.Contains(out+errs, secret) {
					t.Fatalf("key material printed: %q", errs)
				}
			}
		})
	}
}
