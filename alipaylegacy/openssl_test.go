package alipaylegacy

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/url"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

// More cases than the vectors cover, each message signed (and, for `0001`, encrypted) with the
// openssl command line over a canonical string built here, never by the code under test.

const testPartner = "2088101122136241"

type kv = [2]string

// opensslMD5 returns lower-case hex MD5(msg || key) through `openssl dgst -md5`.
func opensslMD5(tb testing.TB, msg []byte, key string) string {
	tb.Helper()
	cmd := exec.Command("openssl", "dgst", "-md5", "-r")
	cmd.Stdin = bytes.NewReader(append(append([]byte(nil), msg...), key...))
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("openssl: %v", err)
	}
	return strings.Fields(string(out))[0]
}

// opensslSHA1 returns the base64 SHA1withRSA signature of msg by the PEM key in testdata/keyFile.
func opensslSHA1(tb testing.TB, keyFile string, msg []byte) string {
	tb.Helper()
	cmd := exec.Command("openssl", "dgst", "-sha1", "-sign", "testdata/"+keyFile)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("openssl: %v", err)
	}
	return base64.StdEncoding.EncodeToString(out)
}

// opensslEncrypt0001 encrypts plain to the PEM public key in testdata/pubFile as Alipay does under
// `0001`: 117-byte chunks, RSA PKCS#1 v1.5 each, concatenated, base64.
func opensslEncrypt0001(tb testing.TB, pubFile string, plain []byte) string {
	tb.Helper()
	var ct []byte
	for len(plain) > 0 {
		n := min(117, len(plain))
		cmd := exec.Command("openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", "testdata/"+pubFile, "-pkeyopt", "rsa_padding_mode:pkcs1")
		cmd.Stdin = bytes.NewReader(plain[:n])
		out, err := cmd.Output()
		if err != nil {
			tb.Fatalf("openssl: %v", err)
		}
		ct = append(ct, out...)
		plain = plain[n:]
	}
	return base64.StdEncoding.EncodeToString(ct)
}

// sortedString is the sorted rule of docs/alipay-legacy.md §5.1, written again for the tests.
func sortedString(fields []kv) []byte {
	var fs []kv
	for _, f := range fields {
		if f[0] != "sign" && f[0] != "sign_type" && f[1] != "" {
			fs = append(fs, f)
		}
	}
	sort.SliceStable(fs, func(i, j int) bool { return fs[i][0] < fs[j][0] })
	var parts []string
	for _, f := range fs {
		parts = append(parts, f[0]+"="+f[1])
	}
	return []byte(strings.Join(parts, "&"))
}

// body form-encodes fields in order.
func body(fields []kv) []byte {
	var parts []string
	for _, f := range fields {
		parts = append(parts, url.QueryEscape(f[0])+"="+url.QueryEscape(f[1]))
	}
	return []byte(strings.Join(parts, "&"))
}

func md5Key(tb testing.TB) string {
	return strings.TrimSpace(string(mustRead(tb, "keys/md5_key.txt"))) // TESTING KEY
}

// md5Notify signs fields (sorted rule, MD5) and returns the body with sign appended.
func md5Notify(tb testing.TB, fields []kv) []byte {
	tb.Helper()
	return body(append(fields, kv{"sign", opensslMD5(tb, sortedString(fields), md5Key(tb))}))
}

// rsaNotify signs fields (sorted rule, SHA1withRSA by the Alipay TESTING KEY).
func rsaNotify(tb testing.TB, fields []kv) []byte {
	tb.Helper()
	return body(append(fields, kv{"sign", opensslSHA1(tb, "keys/alipay_private_pkcs1.pem", sortedString(fields))}))
}

func testClient(tb testing.TB, st SignType, mod func(*Config)) *Client {
	tb.Helper()
	cfg := Config{Partner: testPartner, SignType: st}
	if st == SignMD5 {
		cfg.MD5Key = md5Key(tb)
	} else {
		var err error
		if cfg.AlipayPublicKey, err = ParsePublicKey(mustRead(tb, "keys/alipay_public.pem")); err != nil {
			tb.Fatal(err)
		}
		if cfg.MerchantPrivateKey, err = ParsePrivateKey(mustRead(tb, "keys/merchant_private_pkcs8.pem")); err != nil {
			tb.Fatal(err)
		}
	}
	if mod != nil {
		mod(&cfg)
	}
	return mustNew(tb, cfg)
}

// paidFields returns the fields of a create_direct_pay_by_user TRADE_SUCCESS notification.
func paidFields(signType string) []kv {
	return []kv{
		{"notify_time", "2026-11-28 10:05:21"}, {"notify_type", "trade_status_sync"},
		{"notify_id", "4e127d6cc7ac3e426b8ed50363625d2f6k"}, {"sign_type", signType},
		{"out_trade_no", "T1"}, {"subject", "测试 & more"}, {"payment_type", "1"},
		{"trade_no", "2026112821001004880012345678"}, {"trade_status", "TRADE_SUCCESS"},
		{"gmt_create", "2026-11-28 10:05:12"}, {"gmt_payment", "2026-11-28 10:05:20"},
		{"seller_email", "seller@example.com"}, {"seller_id", testPartner},
		{"buyer_email", "b@example.com"}, {"buyer_id", "2088602328397594"},
		{"price", "10.50"}, {"quantity", "2"}, {"total_fee", "21.00"}, {"discount", "0.00"},
		{"is_total_fee_adjust", "N"}, {"use_coupon", "N"},
	}
}

// with returns fields with key set to value (appended when absent; removed when value is "\x00").
func with(fields []kv, key, value string) []kv {
	out := make([]kv, 0, len(fields)+1)
	found := false
	for _, f := range fields {
		if f[0] == key {
			found = true
			if value == "\x00" {
				continue
			}
			f[1] = value
		}
		out = append(out, f)
	}
	if !found && value != "\x00" {
		out = append(out, kv{key, value})
	}
	return out
}

func wantReasonOf(tb testing.TB, err error, reason string) *VerifyError {
	tb.Helper()
	var ve *VerifyError
	if !errors.As(err, &ve) {
		tb.Fatalf("want a *VerifyError %s, got %v", reason, err)
	}
	if ve.Reason != reason {
		tb.Fatalf("reason %s (%s), want %s", ve.Reason, ve.Detail, reason)
	}
	if !errors.Is(err, sentinels[reason]) {
		tb.Fatalf("%v does not wrap its sentinel", err)
	}
	return ve
}

func TestVerifyNotificationMAPI(t *testing.T) {
	t.Parallel()
	c := testClient(t, SignMD5, nil)
	t.Run("OK", func(t *testing.T) {
		n, err := c.VerifyNotification(md5Notify(t, paidFields("MD5")))
		if err != nil {
			t.Fatal(err)
		}
		bj := time.FixedZone("", 8*3600)
		if n.TotalFee != 2100 || n.Price != 1050 || n.Quantity != 2 || n.Subject != "测试 & more" ||
			!n.GmtPayment.Equal(time.Date(2026, 11, 28, 10, 5, 20, 0, bj)) || !n.NotifyTime.Equal(time.Date(2026, 11, 28, 10, 5, 21, 0, bj)) ||
			n.SignType != SignMD5 || n.Charset != "utf-8" || !n.IsPaid() || n.Discount != "0.00" {
			t.Fatalf("%+v", n)
		}
		// Fields keep the received order.
		if len(n.Fields) != 22 || n.Fields[0].Key != "notify_time" || n.Fields[21].Key != "sign" {
			t.Fatalf("fields %v", n.Fields)
		}
		if string(n.Canonical) != string(sortedString(paidFields("MD5"))) {
			t.Fatalf("canonical %q", n.Canonical)
		}
	})
	t.Run("OK/EmptyFieldsAreNotHandedOut", func(t *testing.T) {
		// An empty value is outside the sorted string: added to a genuine notification, it does
		// not show in Fields or through Get, and an empty partner does not count as another.
		n, err := c.VerifyNotification(append(md5Notify(t, paidFields("MD5")), "&refund_status=&partner=&total_fee_x="...))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"refund_status", "partner", "total_fee_x"} {
			if v, ok := n.Get(k); ok {
				t.Errorf("Get(%q) = %q, true: an unsigned empty field", k, v)
			}
		}
		if len(n.Fields) != 22 {
			t.Errorf("%d fields, want the 22 sent with a value", len(n.Fields))
		}
	})
	t.Run("OK/BlankValueIsSigned", func(t *testing.T) {
		// A single space is not empty (docs/alipay-legacy.md §5.1 rule 2): it is part of the signed
		// string.
		fs := with(paidFields("MD5"), "body", " ")
		if _, err := c.VerifyNotification(md5Notify(t, fs)); err != nil {
			t.Fatal(err)
		}
		// Signed without it, it fails.
		b := body(append(fs, kv{"sign", opensslMD5(t, sortedString(with(fs, "body", "\x00")), md5Key(t))}))
		wantReasonOf(t, verifyN(c, b), ReasonSignatureInvalid)
	})
	t.Run("OK/UnknownFieldsAreSigned", func(t *testing.T) {
		fs := with(paidFields("MD5"), "out_channel_type", "BALANCE")
		n, err := c.VerifyNotification(md5Notify(t, fs))
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := n.Get("out_channel_type"); v != "BALANCE" {
			t.Fatal(v)
		}
	})
	t.Run("OK/GBK", func(t *testing.T) {
		g := testClient(t, SignMD5, func(cfg *Config) { cfg.InputCharset = "GBK" })
		fs := with(paidFields("MD5"), "subject", "\xd6\xd0\xce\xc4") // "中文" in GBK
		n, err := g.VerifyNotification(md5Notify(t, fs))
		if err != nil {
			t.Fatal(err)
		}
		if n.Subject != "中文" || n.Charset != "gbk" {
			t.Fatalf("%q %q", n.Subject, n.Charset)
		}
		if !bytes.Contains(n.Canonical, []byte("subject=\xd6\xd0\xce\xc4")) {
			t.Fatal("canonical string is not the GBK bytes")
		}
	})
	errs := []struct {
		name   string
		body   func(t *testing.T) []byte
		reason string
	}{
		{"ErrMissingNotifyID", func(t *testing.T) []byte { return md5Notify(t, with(paidFields("MD5"), "notify_id", "\x00")) }, ReasonMissingField},
		{"ErrEmptyNotifyID", func(t *testing.T) []byte { return md5Notify(t, with(paidFields("MD5"), "notify_id", "")) }, ReasonMissingField},
		{"ErrMissingTotalFee", func(t *testing.T) []byte { return md5Notify(t, with(paidFields("MD5"), "total_fee", "\x00")) }, ReasonMissingField},
		{"ErrMissingSignType", func(t *testing.T) []byte { return md5Notify(t, with(paidFields("MD5"), "sign_type", "\x00")) }, ReasonMissingField},
		{"ErrSignTypeRSA", func(t *testing.T) []byte { return md5Notify(t, paidFields("RSA")) }, ReasonUnsupportedSignType},
		{"ErrBadAmount", func(t *testing.T) []byte { return md5Notify(t, with(paidFields("MD5"), "total_fee", "21.001")) }, ReasonBadAmount},
		{"ErrNegativeAmount", func(t *testing.T) []byte { return md5Notify(t, with(paidFields("MD5"), "total_fee", "-21.00")) }, ReasonBadAmount},
		{"ErrBadPrice", func(t *testing.T) []byte { return md5Notify(t, with(paidFields("MD5"), "price", "1e3")) }, ReasonBadAmount},
		{"ErrBadTime", func(t *testing.T) []byte {
			return md5Notify(t, with(paidFields("MD5"), "notify_time", "2026/11/28 10:05:21"))
		}, ReasonMalformed},
		{"ErrBadQuantity", func(t *testing.T) []byte { return md5Notify(t, with(paidFields("MD5"), "quantity", "two")) }, ReasonMalformed},
		{"ErrNotUTF8", func(t *testing.T) []byte { return md5Notify(t, with(paidFields("MD5"), "subject", "\xd6\xd0")) }, ReasonBadCharset},
		{"ErrWrongPartner", func(t *testing.T) []byte { return md5Notify(t, with(paidFields("MD5"), "partner", "2088000000000000")) }, ReasonWrongPartner},
		{"ErrUnsigned", func(t *testing.T) []byte { return body(paidFields("MD5")) }, ReasonUnsigned},
		{"ErrEmptySign", func(t *testing.T) []byte { return body(append(paidFields("MD5"), kv{"sign", ""})) }, ReasonUnsigned},
		{"ErrDuplicate", func(t *testing.T) []byte {
			return append(md5Notify(t, paidFields("MD5")), "&total_fee=0.01"...)
		}, ReasonDuplicateKey},
		{"ErrDuplicateEncoded", func(t *testing.T) []byte {
			return append(md5Notify(t, paidFields("MD5")), "&%73ign=00000000000000000000000000000000"...)
		}, ReasonDuplicateKey},
		{"ErrBadEscape", func(t *testing.T) []byte { return append(md5Notify(t, paidFields("MD5")), "&x=%zz"...) }, ReasonMalformed},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			wantReasonOf(t, verifyN(c, tt.body(t)), tt.reason)
		})
	}
	t.Run("ErrMagicHash", func(t *testing.T) {
		// PHP's == would take "0" or "0e1" for any computed "0e…" hash (docs/alipay-legacy.md
		// §13.2).
		for _, s := range []string{"0", "0e1", "0e462097431906509019562988736854", "00000000000000000000000000000000"} {
			wantReasonOf(t, verifyN(c, body(append(paidFields("MD5"), kv{"sign", s}))), ReasonSignatureInvalid)
		}
	})
	t.Run("ErrBadGBK", func(t *testing.T) {
		g := testClient(t, SignMD5, func(cfg *Config) { cfg.InputCharset = "gbk" })
		wantReasonOf(t, verifyN(g, md5Notify(t, with(paidFields("MD5"), "subject", "\xff\xff"))), ReasonBadCharset)
	})
	t.Run("ErrClaimedOutTradeNo", func(t *testing.T) {
		ve := wantReasonOf(t, verifyN(c, body(append(paidFields("MD5"), kv{"sign", strings.Repeat("0", 32)}))), ReasonSignatureInvalid)
		if ve.OutTradeNo != "T1" || string(ve.Canonical) != string(sortedString(paidFields("MD5"))) {
			t.Fatalf("%q %q", ve.OutTradeNo, ve.Canonical)
		}
	})
}

func verifyN(c *Client, b []byte) error {
	_, err := c.VerifyNotification(b)
	return err
}

func TestVerifyNotificationRSA(t *testing.T) {
	t.Parallel()
	c := testClient(t, SignRSA, nil)
	t.Run("OK", func(t *testing.T) {
		n, err := c.VerifyNotification(rsaNotify(t, paidFields("RSA")))
		if err != nil || n.SignType != SignRSA {
			t.Fatal(n, err)
		}
	})
	t.Run("ErrDowngradeToMD5", func(t *testing.T) {
		// An MD5-signed message cannot pass on an RSA merchant, whatever it declares.
		wantReasonOf(t, verifyN(c, md5Notify(t, paidFields("MD5"))), ReasonUnsupportedSignType)
		wantReasonOf(t, verifyN(c, md5Notify(t, paidFields("RSA"))), ReasonSignatureInvalid)
	})
	t.Run("ErrBadBase64", func(t *testing.T) {
		for _, s := range []string{"!!!!", "abc", strings.Repeat("A", 171)} {
			wantReasonOf(t, verifyN(c, body(append(paidFields("RSA"), kv{"sign", s}))), ReasonSignatureInvalid)
		}
	})
	t.Run("ErrPlusAsSpace", func(t *testing.T) {
		// A sign whose '+' was sent unescaped arrives with a space and fails.
		b := rsaNotify(t, paidFields("RSA"))
		b = bytes.ReplaceAll(b, []byte("%2B"), []byte("+"))
		if !bytes.Contains(rsaNotify(t, paidFields("RSA")), []byte("%2B")) {
			// The signature is deterministic (PKCS #1 v1.5): the fixture must hold a '+'.
			t.Fatal("this signature has no '+': change the fixture's fields until it has one")
		}
		wantReasonOf(t, verifyN(c, b), ReasonSignatureInvalid)
	})
}

// wapXML is a WAP notify_data document (docs/alipay-legacy.md §11.5).
func wapXML(extra string) string {
	return "<notify><payment_type>1</payment_type><subject>A&amp;B 收银台</subject><trade_no>2026112821001004880087654321</trade_no>" +
		"<buyer_email>b@example.com</buyer_email><gmt_create>2026-11-28 11:00:01</gmt_create><notify_type>trade_status_sync</notify_type>" +
		"<quantity>1</quantity><out_trade_no>W1</out_trade_no><notify_time>2026-11-28 11:00:09</notify_time><seller_id>" + testPartner + "</seller_id>" +
		"<trade_status>TRADE_FINISHED</trade_status><is_total_fee_adjust>N</is_total_fee_adjust><total_fee>1.00</total_fee>" +
		"<gmt_payment>2026-11-28 11:00:08</gmt_payment><seller_email>seller@example.com</seller_email><price>1.00</price>" +
		"<buyer_id>2088602328397594</buyer_id>" + extra + "<use_coupon>N</use_coupon></notify>"
}

const wapNotifyID = "<notify_id>509ad84678759176212c247c46bec05303</notify_id>"

// wapBody returns a WAP notification: fixed-order string over plain, signed by sign (MD5 key or
// the Alipay TESTING KEY), notify_data sent as sent.
func wapBody(tb testing.TB, secID, plain, sent string) []byte {
	tb.Helper()
	msg := []byte("service=alipay.wap.trade.create.direct&v=1.0&sec_id=" + secID + "&notify_data=" + plain)
	var sig string
	if secID == "0001" {
		sig = opensslSHA1(tb, "keys/alipay_private_pkcs1.pem", msg)
	} else {
		sig = opensslMD5(tb, msg, md5Key(tb))
	}
	return body([]kv{{"service", "alipay.wap.trade.create.direct"}, {"sign", sig}, {"sec_id", secID}, {"v", "1.0"}, {"notify_data", sent}})
}

func TestVerifyNotificationWAP(t *testing.T) {
	t.Parallel()
	md5c := testClient(t, SignMD5, nil)
	rsac := testClient(t, SignRSA, nil)
	plain := wapXML(wapNotifyID)
	t.Run("OK/MD5", func(t *testing.T) {
		n, err := md5c.VerifyNotification(wapBody(t, "MD5", plain, plain))
		if err != nil {
			t.Fatal(err)
		}
		if n.Kind != KindWAP || n.Subject != "A&B 收银台" || n.TotalFee != 100 || n.NotifyID != "509ad84678759176212c247c46bec05303" ||
			n.OutTradeNo != "W1" || len(n.NotifyData) != 19 || n.NotifyData[0].Key != "payment_type" {
			t.Fatalf("%+v", n)
		}
		// The signed string keeps the XML escape.
		if !bytes.Contains(n.Canonical, []byte("<subject>A&amp;B")) {
			t.Fatalf("%q", n.Canonical)
		}
	})
	t.Run("OK/0001", func(t *testing.T) {
		n, err := rsac.VerifyNotification(wapBody(t, "0001", plain, opensslEncrypt0001(t, "keys/merchant_public.pem", []byte(plain))))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := xmlGet(n.Fields, "notify_data"); got != plain || n.SignType != SignRSA {
			t.Fatalf("%q", got)
		}
	})
	t.Run("OK/0001Plaintext", func(t *testing.T) {
		// Unsettled (docs/alipay-legacy.md §7): a plaintext notify_data under 0001 is verified as
		// it is.
		if _, err := rsac.VerifyNotification(wapBody(t, "0001", plain, plain)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("OK/GBK", func(t *testing.T) {
		g := testClient(t, SignMD5, func(cfg *Config) { cfg.InputCharset = "gbk" })
		p := strings.Replace(wapXML(wapNotifyID), "A&amp;B 收银台", "\xd6\xd0\xce\xc4", 1)
		n, err := g.VerifyNotification(wapBody(t, "MD5", p, p))
		if err != nil || n.Subject != "中文" {
			t.Fatal(n, err)
		}
	})
	t.Run("ErrDecrypt", func(t *testing.T) {
		// What the data's shape shows (the sender knows it anyway).
		for _, sent := range []string{"AAAA", "not base64!", base64.StdEncoding.EncodeToString(make([]byte, 129))} {
			wantReasonOf(t, verifyN(rsac, wapBody(t, "0001", plain, sent)), ReasonDecryptFailed)
		}
		// A padding that fails is reported as a bad signature: the same reason, the same sentinel,
		// as a message signed by another key, so that no label or counter tells them apart; only
		// the detail says it does not decrypt.
		first, _ := base64.StdEncoding.DecodeString(opensslEncrypt0001(t, "keys/attacker_public.pem", []byte(plain[:100])))
		rest, _ := base64.StdEncoding.DecodeString(opensslEncrypt0001(t, "keys/merchant_public.pem", []byte(plain[100:])))
		for name, sent := range map[string]string{
			"zeros":       base64.StdEncoding.EncodeToString(make([]byte, 128)),
			"another key": opensslEncrypt0001(t, "keys/attacker_public.pem", []byte(plain)),
			"a block of another key among the merchant's": base64.StdEncoding.EncodeToString(append(first, rest...)),
		} {
			ve := wantReasonOf(t, verifyN(rsac, wapBody(t, "0001", plain, sent)), ReasonSignatureInvalid)
			if !strings.Contains(ve.Detail, "does not decrypt") {
				t.Errorf("%s: detail %q does not say it does not decrypt", name, ve.Detail)
			}
		}
		// Signed by another key over data that decrypts: the same reason.
		msg := []byte("service=alipay.wap.trade.create.direct&v=1.0&sec_id=0001&notify_data=" + plain)
		forged := body([]kv{{"service", "alipay.wap.trade.create.direct"}, {"sign", opensslSHA1(t, "keys/attacker_private_pkcs1.pem", msg)},
			{"sec_id", "0001"}, {"v", "1.0"}, {"notify_data", opensslEncrypt0001(t, "keys/merchant_public.pem", []byte(plain))}})
		if ve := wantReasonOf(t, verifyN(rsac, forged), ReasonSignatureInvalid); strings.Contains(ve.Detail, "does not decrypt") {
			t.Errorf("a bad signature's detail says it does not decrypt: %q", ve.Detail)
		}
	})
	t.Run("ErrNoMerchantKey", func(t *testing.T) {
		c := testClient(t, SignRSA, func(cfg *Config) { cfg.MerchantPrivateKey = nil })
		err := verifyN(c, wapBody(t, "0001", plain, opensslEncrypt0001(t, "keys/merchant_public.pem", []byte(plain))))
		var ve *VerifyError
		if err == nil || errors.As(err, &ve) {
			t.Fatalf("want a configuration error, got %v", err)
		}
	})
	t.Run("ErrSecID", func(t *testing.T) {
		wantReasonOf(t, verifyN(md5c, wapBody(t, "0001", plain, plain)), ReasonUnsupportedSignType)
		wantReasonOf(t, verifyN(rsac, wapBody(t, "MD5", plain, plain)), ReasonUnsupportedSignType)
	})
	t.Run("ErrMissingNotifyID", func(t *testing.T) {
		p := wapXML("")
		wantReasonOf(t, verifyN(md5c, wapBody(t, "MD5", p, p)), ReasonMissingField)
	})
	t.Run("ErrDTD", func(t *testing.T) {
		p := `<!DOCTYPE notify [<!ENTITY x "TRADE_SUCCESS">]>` + wapXML(wapNotifyID)
		wantReasonOf(t, verifyN(md5c, wapBody(t, "MD5", p, p)), ReasonMalformed)
	})
	t.Run("ErrUnknownEntity", func(t *testing.T) {
		p := strings.Replace(wapXML(wapNotifyID), "TRADE_FINISHED", "&x;", 1)
		wantReasonOf(t, verifyN(md5c, wapBody(t, "MD5", p, p)), ReasonMalformed)
	})
	t.Run("ErrNotXML", func(t *testing.T) {
		wantReasonOf(t, verifyN(md5c, wapBody(t, "MD5", "trade_status=TRADE_SUCCESS", "trade_status=TRADE_SUCCESS")), ReasonMalformed)
	})
	t.Run("ErrDuplicateElement", func(t *testing.T) {
		p := wapXML(wapNotifyID + "<total_fee>0.01</total_fee>")
		wantReasonOf(t, verifyN(md5c, wapBody(t, "MD5", p, p)), ReasonDuplicateKey)
	})
	t.Run("ErrMissingV", func(t *testing.T) {
		b := bytes.Replace(wapBody(t, "MD5", plain, plain), []byte("&v=1.0"), nil, 1)
		wantReasonOf(t, verifyN(md5c, b), ReasonMissingField)
	})
	t.Run("ErrOtherService", func(t *testing.T) {
		b := bytes.Replace(wapBody(t, "MD5", plain, plain), []byte("service=alipay.wap.trade.create.direct"), []byte("service=x"), 1)
		wantReasonOf(t, verifyN(md5c, b), ReasonMalformed)
	})
	t.Run("ErrOrderIgnoresOtherFields", func(t *testing.T) {
		// A field outside the four is not signed by the fixed-order rule: it cannot change the
		// verdict, and the notification does not hand it out, in Fields or by Get, even under the
		// name of an element notify_data does not hold (refund_status here).
		b := append(wapBody(t, "MD5", plain, plain), "&extra=1&refund_status=REFUND_SUCCESS&total_fee=0.01"...)
		n, err := md5c.VerifyNotification(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"extra", "refund_status"} {
			if v, ok := n.Get(k); ok {
				t.Errorf("Get(%q) = %q from an unsigned form field", k, v)
			}
		}
		if got, _ := n.Get("total_fee"); got != "1.00" || n.TotalFee != 100 {
			t.Errorf("total_fee %q (%d), want notify_data's 1.00", got, n.TotalFee)
		}
		var keys []string
		for _, f := range n.Fields {
			keys = append(keys, f.Key)
		}
		if strings.Join(keys, ",") != "service,sign,sec_id,v,notify_data" {
			t.Errorf("Fields %v, want the signed four and sign, as received", keys)
		}
	})
}

func TestDecryptData(t *testing.T) {
	t.Parallel()
	priv, err := ParsePrivateKey(mustRead(t, "keys/merchant_private_pkcs1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 116, 117, 118, 234, 1000, maxBlocks * 117} { // maxBlocks: the most it decrypts
		plain := bytes.Repeat([]byte("中x"), n)[:n]
		got, err := DecryptData(priv, opensslEncrypt0001(t, "keys/merchant_public.pem", plain))
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%d: %v", n, err)
		}
	}
	ct, _ := base64.StdEncoding.DecodeString(opensslEncrypt0001(t, "keys/merchant_public.pem", []byte("hello")))
	for name, data := range map[string]string{
		"TooLong":   opensslEncrypt0001(t, "keys/merchant_public.pem", bytes.Repeat([]byte("x"), maxBlocks*117+1)),
		"Empty":     "",
		"Short":     base64.StdEncoding.EncodeToString(ct[:127]),
		"Long":      base64.StdEncoding.EncodeToString(append(ct, 0)),
		"NotBase64": "%%%",
	} {
		if _, err := DecryptData(priv, data); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestDecryptBlinded: the decryption a sender's message goes through decrypts every block even
// after one fails, and hands back random bytes in place of a failed block, so that the signature
// check runs as it would for a bad signature (a padding oracle otherwise).
func TestDecryptBlinded(t *testing.T) {
	t.Parallel()
	priv, err := ParsePrivateKey(mustRead(t, "keys/merchant_private_pkcs1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	plain := bytes.Repeat([]byte("中x"), 300)[:300] // three blocks
	got, ok, err := decryptBlinded(priv, opensslEncrypt0001(t, "keys/merchant_public.pem", plain))
	if err != nil || !ok || !bytes.Equal(got, plain) {
		t.Fatalf("ok=%v err=%v", ok, err)
	}
	bad, _ := base64.StdEncoding.DecodeString(opensslEncrypt0001(t, "keys/attacker_public.pem", []byte("x")))
	good, _ := base64.StdEncoding.DecodeString(opensslEncrypt0001(t, "keys/merchant_public.pem", []byte("second block")))
	data := base64.StdEncoding.EncodeToString(append(append([]byte{}, bad...), good...))
	first, ok, err := decryptBlinded(priv, data)
	if err != nil || ok {
		t.Fatalf("a block of another key: ok=%v err=%v", ok, err)
	}
	// The failed block stands as fillerSize bytes, and the block after it was decrypted too.
	if len(first) != fillerSize+len("second block") || string(first[fillerSize:]) != "second block" {
		t.Fatalf("%d bytes, ending %q", len(first), first[min(len(first), fillerSize):])
	}
	again, _, _ := decryptBlinded(priv, data)
	if bytes.Equal(first[:fillerSize], again[:fillerSize]) {
		t.Fatal("the filler of a failed block is the same twice: not random")
	}
	// What the data's shape shows is an error, as DecryptData's.
	for _, data := range []string{"", "%%%", base64.StdEncoding.EncodeToString(bad[:127])} {
		if _, _, err := decryptBlinded(priv, data); err == nil {
			t.Errorf("%q: no error", data)
		}
	}
}

func TestVerifyReturn(t *testing.T) {
	t.Parallel()
	c := testClient(t, SignMD5, nil)
	ret := []kv{{"is_success", "T"}, {"exterface", "create_direct_pay_by_user"}, {"out_trade_no", "T1"},
		{"notify_id", "RqPnCoPT3K9%2Fvwbh3I"}, {"trade_status", "TRADE_SUCCESS"}, {"total_fee", "0.01"}, {"sign_type", "MD5"}}
	t.Run("OK", func(t *testing.T) {
		n, err := c.VerifyReturn(string(md5Notify(t, ret)))
		if err != nil || !n.Return || n.NotifyID != "RqPnCoPT3K9%2Fvwbh3I" || n.TotalFee != 1 {
			t.Fatal(n, err)
		}
	})
	t.Run("ErrNoSignType", func(t *testing.T) {
		wantReasonOf(t, verifyR(c, md5Notify(t, with(ret, "sign_type", "\x00"))), ReasonMissingField)
	})
	t.Run("ErrPostedAsNotification", func(t *testing.T) {
		// The same signed return POSTed to the notify URL (anyone with the buyer's URL can) is
		// no notification: it paid an order (a reviewer helper's finding).
		_, err := c.VerifyNotification(md5Notify(t, append(ret, kv{"notify_type", "trade_status_sync"}, kv{"trade_no", "2026"})))
		wantReasonOf(t, err, ReasonMalformed)
		// The same with exterface and is_success folded into buyer_id, the field before them in
		// sorted order: the signed string is unchanged, and no field has either name (a
		// reviewer's finding).
		signed := md5Notify(t, append(ret, kv{"buyer_id", "2088102122524333"}, kv{"notify_type", "trade_status_sync"}, kv{"trade_no", "2026"}))
		q, err := url.ParseQuery(string(signed))
		if err != nil {
			t.Fatal(err)
		}
		q.Set("buyer_id", "2088102122524333&exterface=create_direct_pay_by_user&is_success=T")
		q.Del("exterface")
		q.Del("is_success")
		_, err = c.VerifyNotification([]byte(q.Encode()))
		wantReasonOf(t, err, ReasonMalformed)
	})
	t.Run("ErrTampered", func(t *testing.T) {
		b := bytes.Replace(md5Notify(t, ret), []byte("total_fee=0.01"), []byte("total_fee=0.02"), 1)
		wantReasonOf(t, verifyR(c, b), ReasonSignatureInvalid)
	})
	cb := []kv{{"out_trade_no", "W1"}, {"request_token", "requestToken"}, {"result", "success"}, {"trade_no", "2026"}}
	t.Run("OK/CallBack", func(t *testing.T) {
		n, err := c.VerifyReturn("?" + string(md5Notify(t, cb)))
		if err != nil || n.Kind != KindWAP || n.Result != "success" {
			t.Fatal(n, err)
		}
	})
	t.Run("ErrCallBackUnsigned", func(t *testing.T) {
		wantReasonOf(t, verifyR(c, body(cb)), ReasonUnsigned)
	})
}

func verifyR(c *Client, q []byte) error {
	_, err := c.VerifyReturn(string(q))
	return err
}

func TestKeys(t *testing.T) {
	t.Parallel()
	want, err := ParsePrivateKey(mustRead(t, "keys/merchant_private_pkcs1.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"keys/merchant_private_pkcs8.pem", "keys/merchant_private_pkcs8.oneline"} {
		k, err := ParsePrivateKey(mustRead(t, f))
		if err != nil || !k.Equal(want) {
			t.Fatalf("%s: %v", f, err)
		}
	}
	pub, err := ParsePublicKey(mustRead(t, "keys/merchant_public.oneline"))
	if err != nil || !pub.Equal(&want.PublicKey) {
		t.Fatal(err)
	}
	if _, err := ParsePublicKey(mustRead(t, "keys/merchant_private_pkcs1.pem")); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatal(err)
	}
	if _, err := ParsePrivateKey(mustRead(t, "keys/merchant_public.pem")); err == nil || !strings.Contains(err.Error(), "public key") {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "-----BEGIN PUBLIC KEY-----\nxx", "not base64 %%"} {
		if _, err := ParsePublicKey([]byte(bad)); err == nil {
			t.Fatalf("%q", bad)
		}
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	alipayPub, _ := ParsePublicKey(mustRead(t, "keys/alipay_public.pem"))
	merchant, _ := ParsePrivateKey(mustRead(t, "keys/merchant_private_pkcs1.pem"))
	ok := []Config{
		{Partner: testPartner, SignType: "md5", MD5Key: " " + md5Key(t) + "\n"},
		{Partner: testPartner, SignType: "0001", AlipayPublicKey: alipayPub},
		{Partner: testPartner, SignType: SignRSA, AlipayPublicKey: alipayPub, MerchantPrivateKey: merchant, InputCharset: "GBK",
			NotifyVerifyURL: NotifyVerifyHTTP, Gateway: "http://127.0.0.1:8080/gateway.do"},
	}
	for i, cfg := range ok {
		if _, err := New(cfg); err != nil {
			t.Errorf("%d: %v", i, err)
		}
	}
	bad := map[string]Config{
		"NoPartner":      {SignType: SignMD5, MD5Key: md5Key(t)},
		"ShortPartner":   {Partner: "2088", SignType: SignMD5, MD5Key: md5Key(t)},
		"NoSignType":     {Partner: testPartner, MD5Key: md5Key(t)},
		"RSA2":           {Partner: testPartner, SignType: "RSA2", AlipayPublicKey: alipayPub},
		"ShortMD5Key":    {Partner: testPartner, SignType: SignMD5, MD5Key: "abc"},
		"NoAlipayKey":    {Partner: testPartner, SignType: SignRSA, MerchantPrivateKey: merchant},
		"OwnKey":         {Partner: testPartner, SignType: SignRSA, AlipayPublicKey: &merchant.PublicKey, MerchantPrivateKey: merchant},
		"Charset":        {Partner: testPartner, SignType: SignMD5, MD5Key: md5Key(t), InputCharset: "big5"},
		"GatewayQuery":   {Partner: testPartner, SignType: SignMD5, MD5Key: md5Key(t), Gateway: "https://x/gateway.do?a=1"},
		"VerifyURL":      {Partner: testPartner, SignType: SignMD5, MD5Key: md5Key(t), NotifyVerifyURL: "ftp://x"},
		"NegTimeout":     {Partner: testPartner, SignType: SignMD5, MD5Key: md5Key(t), Timeout: -1},
		"SellerNotAPID":  {Partner: testPartner, SignType: SignMD5, MD5Key: md5Key(t), SellerID: "seller@example.com"},
		"MD5KeyInternal": {Partner: testPartner, SignType: SignMD5, MD5Key: strings.Repeat("a", 16) + " " + strings.Repeat("a", 15)},
	}
	for name, cfg := range bad {
		if _, err := New(cfg); err == nil || !strings.HasPrefix(err.Error(), "alipaylegacy: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestVerifyNotificationMAPI_Regrouped: the sorted rule signs the fields joined with "&", not
// where each ends (docs/alipay-legacy.md §5.1). A genuine notification (signed here by openssl)
// whose subject is a buyer's "礼物&out_trade_no=T2", regrouped so that notify_type takes in its
// real out_trade_no and the subject's tail becomes out_trade_no=T2, has the same signed string;
// VerifyNotification refuses it, and the genuine one, as malformed, naming the field. A subject
// holding "&" without a decision field's name passes (paidFields' "测试 & more").
func TestVerifyNotificationMAPI_Regrouped(t *testing.T) {
	c := testClient(t, SignMD5, nil)
	genuine := with(paidFields("MD5"), "subject", "礼物&out_trade_no=T2")
	sign := opensslMD5(t, sortedString(genuine), md5Key(t))
	var regrouped []kv
	for _, f := range genuine {
		switch f[0] {
		case "payment_type", "price", "quantity", "seller_email", "seller_id", "subject":
			continue
		case "notify_type":
			f[1] = "trade_status_sync&out_trade_no=T1&payment_type=1&price=10.50&quantity=2&seller_email=seller@example.com" +
				"&seller_id=" + testPartner + "&subject=礼物"
		case "out_trade_no":
			f[1] = "T2"
		}
		regrouped = append(regrouped, f)
	}
	if string(sortedString(regrouped)) != string(sortedString(genuine)) {
		t.Fatalf("control: not the same signed string:\n%s\n%s", sortedString(regrouped), sortedString(genuine))
	}
	for _, tc := range []struct {
		name, holder string
		body         []byte
	}{{"Regrouped", "notify_type", body(append(regrouped, kv{"sign", sign}))}, {"Genuine", "subject", body(append(genuine, kv{"sign", sign}))}} {
		n, err := c.VerifyNotification(tc.body)
		if n != nil {
			t.Errorf("%s: a notification %+v", tc.name, n)
			continue
		}
		if ve := wantReasonOf(t, err, ReasonMalformed); !strings.Contains(ve.Detail, tc.holder+` holds "&out_trade_no="`) {
			t.Errorf("%s: detail %q", tc.name, ve.Detail)
		}
	}
	if n, err := c.VerifyNotification(md5Notify(t, paidFields("MD5"))); err != nil || n.OutTradeNo != "T1" {
		t.Fatalf("an ordinary subject: %+v, %v", n, err)
	}
}

// TestSignedRequestRegroup (from a reviewer helper's audit): a request whose subject holds
// "&total_fee=" would carry a sign that also fits the request regrouped to another total_fee
// (checked with openssl below): DirectPayURL refuses it. A subject holding "&" and "=" without
// a parameter's name, and extra_common_param as a query string, pass.
func TestSignedRequestRegroup(t *testing.T) {
	c := testClient(t, SignMD5, nil)
	// The control: what the sign of such a request would cover, computed by openssl.
	asked := []kv{{"_input_charset", "utf-8"}, {"out_trade_no", "T1"}, {"partner", testPartner}, {"payment_type", "1"},
		{"seller_id", testPartner}, {"service", "create_direct_pay_by_user"}, {"subject", "gift&total_fee=0.01&x="}, {"total_fee", "100.00"}}
	regrouped := []kv{{"_input_charset", "utf-8"}, {"out_trade_no", "T1"}, {"partner", testPartner}, {"payment_type", "1"},
		{"seller_id", testPartner}, {"service", "create_direct_pay_by_user"}, {"subject", "gift"}, {"total_fee", "0.01"}, {"x", "&total_fee=100.00"}}
	if opensslMD5(t, sortedString(asked), md5Key(t)) != opensslMD5(t, sortedString(regrouped), md5Key(t)) {
		t.Fatal("control: the two requests do not share their sign")
	}
	if u, err := c.DirectPayURL(&DirectPay{OutTradeNo: "T1", Subject: "gift&total_fee=0.01&x=", TotalFee: 10000}); err == nil ||
		!strings.Contains(err.Error(), `subject holds "&total_fee="`) {
		t.Fatalf("a subject holding &total_fee=: %q, %v", u, err)
	}
	if _, err := c.DirectPayURL(&DirectPay{OutTradeNo: "T1", Subject: "Tom & Jerry = friends", TotalFee: 10000,
		ExtraCommonParam: "uid=42&src=web"}); err != nil {
		t.Fatalf("an ordinary subject and a query string in extra_common_param: %v", err)
	}
}

// TestMD5VerifyKey (from a reviewer helper's audit): MD5Verify with an empty key accepted the MD5
// of the canonical string alone, which anyone can compute.
func TestMD5VerifyKey(t *testing.T) {
	canon := []byte("out_trade_no=T1&total_fee=100.00&trade_status=TRADE_SUCCESS")
	for _, key := range []string{"", "short"} {
		if err := MD5Verify(canon, key, opensslMD5(t, canon, key)); err == nil {
			t.Errorf("MD5Verify with the key %q accepted a sign anyone can make", key)
		}
	}
	if err := MD5Verify(canon, md5Key(t), opensslMD5(t, canon, md5Key(t))); err != nil {
		t.Fatal(err)
	}
}

// TestFormLineBreak (from a reviewer helper's audit): a browser submits a form's LF as CR LF, which
// the sign does not cover, so DirectPayForm refuses a value holding a line break; DirectPayURL
// carries it as signed.
func TestFormLineBreak(t *testing.T) {
	c := testClient(t, SignMD5, nil)
	p := &DirectPay{OutTradeNo: "T1", Subject: "s", Body: "line1\nline2", TotalFee: 100}
	if f, err := c.DirectPayForm(p); err == nil {
		t.Fatalf("a form with a line break: %s", f)
	}
	if _, err := c.DirectPayURL(p); err != nil {
		t.Fatal(err)
	}
}
