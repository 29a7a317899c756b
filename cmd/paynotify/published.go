package main

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/paynotify/paynotify"
)

// Keys and secrets whose private halves are published — in this repository's testdata (copied
// from the providers' SDKs and documentation, or made for the tests) — must never guard real
// money: anyone could sign a notification that verifies with such an Alipay or WeChat Pay public
// key, or sign requests (refunds included) as the merchant with such a private key. A config
// that gives one to an app whose gateway is not on this machine is refused at start
// (docs/config.md, "Published keys"); with a loopback gateway (the sandbox, the tests) they
// stay usable. TestPublishedKeys_Complete checks that every key and secret of the repository's
// testdata is listed.

// publishedKeys maps the SHA-256 of a public key's PKIX (SubjectPublicKeyInfo) DER to where its
// private key is published.
var publishedKeys = map[string]string{
	"500b067f4e3369abf09ff8f1df48c982b2264cdec05039985415523285b013f1": "the TESTING KEY of Alipay's Java SDK (alipay/testdata/shared, httpd/testdata)",
	"4221ddce4784ef4b921f56348160f5a2799dffa44c406cbdf99353759bea99bf": "paynotify's test key alipay/testdata/openssl/other_private.pem",
	"a437838c660042d919b4d5cf85ac698979101aa1f1e00f25c966ff9e52bb2639": "paynotify's legacy Alipay test key (alipaylegacy/testdata/keys/alipay_private)",
	"431e41958efc718b18f033863e174096fdc68c9b7ea47412bed57bccb7f13fdc": "paynotify's legacy merchant test key (alipaylegacy/testdata/keys/merchant_private)",
	"0988e0063f14a12aecac38c776a9750493e63be68e486b934d7a626de1a5b119": "paynotify's legacy test key alipaylegacy/testdata/keys/attacker_private",
	"8a5b82f18120806bb2c6b46e1a2f8687ceaa20a45bc2b649e37e6d9878336dc5": "the test key of WeChat Pay's Go SDK (wechatpay/testdata/shared)",
	"0076df9361cc1f5744359234d7df9fd43442cf369fb98826562f1d10a347ec5c": "the test merchant key of WeChat Pay's signature documentation (wechatpay/testdata/shared)",
	"c9fc4ef3ca7ef93c0a15c59209a9cdaa7417993c825c913b7b5f29884c6e8822": "paynotify's test key wechatpay/testdata/other_key.pem",
}

// publishedSecrets maps the SHA-256 of a symmetric secret (an APIv3 or APIv2 key, a legacy MD5
// key, as the config reads it: without surrounding white space) to where it is published.
var publishedSecrets = map[string]string{
	"e4fb974a142232e36cee857a0f008a56b15809966cb56651051cdd2493fbd9ac": "the APIv3 key of WeChat Pay's published examples (wechatpay/testdata)",
	"4ad1bc7cf3cf09f9293fc2d83eb1b5bf6bd2b4c56191ad89b336a0b2d772fbf7": "the APIv2 key of WeChat Pay's published examples (wechatpay/testdata)",
	"c739bf54761da245ad50884fd28b38a06483e2c4b72a62ed4cf708761dda740a": "paynotify's legacy MD5 test key (alipaylegacy/testdata/keys/md5_key.txt)",
	"41c30f7a4053e50cdf77b8d8d32e235131e61ac8ae4a8835deb9abbd5682147f": "paynotify's legacy MD5 test key (alipaylegacy/testdata/keys/md5_key_wrong.txt)",
	"3eb1bd439947eb762998e566ccc2e099c791118b2f40579cc4f7da2b5061b7f9": "an example key of paynotify's tests and godoc examples (0123456789abcdef…)",
	"06e12f9580dfb5ccbbace76c11f62dcbe3e6ed149f9c838d60ad7f5d35c35b38": "a key of paynotify's tests (cmd/paynotify/concurrent_wechat_test.go)",
	"84e0c0eafaa95a34c293f278ac52e45ce537bab5e752a00e6959a13ae103b65a": "32 zeros, a key of paynotify's tests",
	"73337f479fe170d73e53e247f3052e4243cc9c2a0ffa621853d9385c619efb77": "a key of paynotify's sandbox tests (0123456789abcdefghij…)",
	"653bb1245e828fcda4fa53fcd5a3def5bd7654e651f54b4132b73d74e64435c4": "a key of paynotify's sandbox tests (abcdefghij…)",
}

// publishedTokens maps the SHA-256 of an API token printed in paynotify's documentation.
var publishedTokens = map[string]string{
	"0ba3960804ebb5e69273792e73944aefd2a6f1be35efd6214d1ada5386783a91": "the token an earlier docs/tour.md printed",
}

func digestHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// publishedGuard refuses published keys and secrets when on, that is for an app whose gateway
// is not on this machine. Its errors name the config field and where the key is published,
// never key material.
type publishedGuard struct{ on bool }

// key refuses a published public key (or the public half of a private key).
func (g publishedGuard) key(field string, pub any) error {
	if !g.on {
		return nil
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil // not a key type the providers use: nothing published to compare with
	}
	if where, ok := publishedKeys[digestHex(der)]; ok {
		return &publishedError{field: field, what: "key pair", where: where}
	}
	return nil
}

// certs refuses a PEM file whose certificates carry a published public key.
func (g publishedGuard) certs(field string, b []byte) error {
	if !g.on {
		return nil
	}
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return nil
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			continue // the provider package has accepted or refused the file on its own terms
		}
		if err := g.key(field, c.PublicKey); err != nil {
			return err
		}
	}
}

// secret refuses a published symmetric secret.
func (g publishedGuard) secret(field string, b []byte) error {
	if !g.on {
		return nil
	}
	if where, ok := publishedSecrets[digestHex([]byte(strings.TrimSpace(string(b))))]; ok {
		return &publishedError{field: field, what: "secret", where: where}
	}
	return nil
}

// publishedError is a published key or secret given to an app with a real gateway: what is
// "key pair" (an RSA key) or "secret" (an APIv3, APIv2 or MD5 key).
type publishedError struct{ field, what, where string }

func (e *publishedError) Error() string {
	own := "the provider's own (set in its merchant console)"
	if e.what == "key pair" {
		own = "your own (paynotify keygen makes an RSA key pair; the provider's keys come from its console)"
	}
	return fmt.Sprintf("%s: this key is published (%s): anyone can sign with it; use %s, or this one only with a loopback gateway such as the sandbox", e.field, e.where, own)
}

// publishedCheck reports the first published key or secret of an app whose gateway is real,
// for paynotify doctor; other errors of the app's keys are doctor's other checks'.
func publishedCheck(ac *AppConfig) error {
	g := publishedGuard{on: ac.realGateway()}
	if !g.on {
		return nil
	}
	_, err := buildApp(ac, g)
	var pe *publishedError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// gatewayURLs is where an app sends its requests: a published key is refused unless every one
// of them is on this machine.
func (a *AppConfig) gatewayURLs() []string {
	switch a.Provider {
	case paynotify.ProviderWechatpay:
		return []string{a.APIBase}
	case paynotify.ProviderAlipayLegacy:
		return []string{a.Gateway, a.WAPGateway, a.NotifyVerifyURL}
	}
	return []string{a.Gateway}
}

// realGateway tells whether any of the app's gateways is not a loopback address or localhost.
func (a *AppConfig) realGateway() bool {
	for _, s := range a.gatewayURLs() {
		if s != "" && !loopbackURL(s) {
			return true
		}
	}
	return false
}

// loopbackURL tells whether an absolute URL's host is localhost or a loopback IP address.
func loopbackURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	h := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// refusePublishedToken refuses the config's api_token when it is printed in the documentation
// and some app talks to a real gateway.
func refusePublishedToken(cfg *Config) error {
	where, ok := publishedTokens[digestHex([]byte(cfg.APIToken))]
	if !ok {
		return nil
	}
	for i := range cfg.Apps {
		if cfg.Apps[i].realGateway() {
			return fmt.Errorf("api_token: this token is published (%s) and apps[%d] (%s) talks to a real gateway: set a token of your own (head -c 24 /dev/urandom | base64)", where, i, cfg.Apps[i].Name)
		}
	}
	return nil
}
