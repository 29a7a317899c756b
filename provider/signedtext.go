package provider

import (
	"net/http"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/alipaylegacy"
	"github.com/paynotify/paynotify/internal/alipaywire"
	"github.com/paynotify/paynotify/internal/wechatpaywire"
	"github.com/paynotify/paynotify/wechatpay"
)

// The verifiers show what their signatures cover (paynotify.SignedTexter), through the canonical
// strings the protocol packages verify with (internal/alipaywire, internal/wechatpaywire,
// alipaylegacy, wechatpay's APIv2).
var (
	_ paynotify.SignedTexter = alipayVerifier{}
	_ paynotify.SignedTexter = wechatVerifier{}
	_ paynotify.SignedTexter = (*WechatV2)(nil)
	_ paynotify.SignedTexter = legacyVerifier{}
)

// SignedText is the V1 canonical string of an Alipay notification (docs/alipay.md, "Canonical
// strings"). The verifier also tries V2 when V1 fails; the evidence's detail says when V2 held.
func (v alipayVerifier) SignedText(_ http.Header, body []byte) ([]byte, string, error) {
	var f alipaywire.Form
	if err := f.Parse(body); err != nil {
		return nil, "", err
	}
	return f.AppendCanonical(nil, false, "", false), string(v.c.SignType()) + " over the form's fields but sign and sign_type, empty values left out, sorted by name, joined as name=value with & (rule V1), checked with the Alipay public key.", nil
}

// SignedText is the APIv3 message of a WeChat Pay notification: timestamp, nonce and body.
func (v wechatVerifier) SignedText(h http.Header, body []byte) ([]byte, string, error) {
	return wechatpaywire.NotificationMessage(h.Get(wechatpaywire.HeaderTimestamp), h.Get(wechatpaywire.HeaderNonce), body),
		"SHA256-RSA over Wechatpay-Timestamp, Wechatpay-Nonce and the body, each followed by a newline, checked with the platform key " +
			h.Get(wechatpaywire.HeaderSerial) + "; the resource is then decrypted and authenticated with the APIv3 key (AEAD_AES_256_GCM).", nil
}

// SignedText is the APIv2 canonical string of a payment notification, without the key it ends
// with. A refund notification is not signed: its req_info is only encrypted.
func (v *WechatV2) SignedText(_ http.Header, body []byte) ([]byte, string, error) {
	if v2IsRefund(body) {
		return nil, "An APIv2 refund notification carries no signature: req_info is decrypted with the MD5 of the APIv2 key (AES-256-ECB), and every identity and amount in it is checked.", nil
	}
	m, err := wechatpay.ParseV2XML(body)
	if err != nil {
		return nil, "", err
	}
	signType := m["sign_type"]
	if signType == "" {
		signType = "MD5"
	}
	return []byte(wechatpay.V2SignString(m) + "&key=…"), signType + " over the non-empty fields but sign, sorted by name, joined as name=value with &, then &key= and the APIv2 key (not shown).", nil
}

// SignedText is the legacy canonical string: the fixed order of the WAP notification, the sorted
// rule otherwise (docs/alipay-legacy.md §5).
func (v legacyVerifier) SignedText(_ http.Header, body []byte) ([]byte, string, error) {
	fields, err := alipaylegacy.ParseForm(body)
	if err != nil {
		return nil, "", err
	}
	get := func(k string) string {
		for _, f := range fields {
			if f.Key == k {
				return f.Value
			}
		}
		return ""
	}
	then := "; then notify_verify asks Alipay to confirm the notify_id."
	if !v.g.NotifyVerify {
		then = "."
	}
	if get("notify_data") != "" && get("service") != "" {
		how := "The WAP notification's fixed order (service, v, sec_id, notify_data; never sorted), " + get("sec_id")
		if get("sec_id") == "0001" {
			how += ", over notify_data once decrypted with the merchant's private key (shown here encrypted)"
		}
		return alipaylegacy.CanonicalWAPNotify(get("service"), get("v"), get("sec_id"), get("notify_data")), how + then, nil
	}
	how := get("sign_type") + " over the fields but sign and sign_type, empty values left out, sorted by name, joined as name=value with &"
	if get("sign_type") == "MD5" {
		how += ", the MD5 key appended (not shown)"
	}
	return alipaylegacy.CanonicalSorted(fields), how + then, nil
}
