package wechatpay

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"

	wire "github.com/paynotify/paynotify/internal/wechatpaywire"
)

func TestSign_SharedVectors(t *testing.T) {
	v := mustShared(t)
	merchant := mustPrivateKey(t, "shared/official_doc_test_key.pem")
	tests := []struct {
		name, message, want string
	}{
		{"OK/V4JSAPIPaySign", v.V4.Message, v.V4.PaySign},
		{"OK/V5AppSign", v.V5.Message, v.V5.Sign},
		{"OK/V6GetQuery", v.V6.Message, v.V6.Signature},
		{"OK/V7Close", v.V7.Message, v.V7.Signature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := signWith(merchant, []byte(tt.message))
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v", got, err)
			}
			if err := verify(&merchant.PublicKey, []byte(tt.message), tt.want); err != nil {
				t.Fatal(err)
			}
			if err := verify(&merchant.PublicKey, []byte(tt.message+"x"), tt.want); !errors.Is(err, ErrSignature) {
				t.Fatalf("tampered: %v", err)
			}
		})
	}
	t.Run("OK/MessageBuilders", func(t *testing.T) {
		if got := string(wire.RequestMessage("GET", "/v3/pay/transactions/out-trade-no/1217752501201407033233368018?mchid=1900007291", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", nil)); got != v.V6.Message {
			t.Fatalf("%q", got)
		}
		if got := string(wire.RequestMessage("POST", "/v3/pay/transactions/out-trade-no/1217752501201407033233368018/close", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", []byte(`{"mchid":"1900007291"}`))); got != v.V7.Message {
			t.Fatalf("%q", got)
		}
		if got := string(wire.Lines("wxd678efh567hg6787", "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242", "prepay_id=wx201410272009395522657a690389285100")); got != v.V4.Message {
			t.Fatalf("%q", got)
		}
		if got := string(wire.NotificationMessage("1", "n", nil)); got != "1\nn\n\n" {
			t.Fatalf("%q", got)
		}
	})
}

func TestSign_OwnVectors(t *testing.T) {
	v := mustOwn(t)
	merchant := mustPrivateKey(t, "shared/official_doc_test_key.pem")
	for _, r := range v.Requests {
		t.Run("OK/"+r.Method+r.URI, func(t *testing.T) {
			a, err := wire.SignRequest(merchant, testMchID, testSerialNo, r.Method, r.URI, r.Timestamp, r.Nonce, []byte(r.Body))
			if err != nil || a.Signature != r.Signature {
				t.Fatalf("got %q, %v", a.Signature, err)
			}
			back, err := wire.ParseAuthorization(a.String())
			if err != nil || back != a {
				t.Fatalf("%+v %v", back, err)
			}
			if err := wire.VerifyAuthorization(&merchant.PublicKey, back, r.Method, r.URI, []byte(r.Body)); err != nil {
				t.Fatal(err)
			}
			if err := wire.VerifyAuthorization(&merchant.PublicKey, back, r.Method, r.URI+"x", []byte(r.Body)); err == nil {
				t.Fatal("tampered URI verified")
			}
		})
	}
}

func TestParseAuthorization(t *testing.T) {
	want := wire.Authorization{MchID: "1900007291", NonceStr: "593BEC0C930BF1AFEB40B4A08C8FB242", Signature: "c2ln+/==", Timestamp: "1554208460", SerialNo: testSerialNo}
	tests := []struct {
		name, in string
		err      bool
	}{
		{"OK/GoSDKOrder", want.String(), false},
		{"OK/PHPOrder", `WECHATPAY2-SHA256-RSA2048 mchid="1900007291",serial_no="408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB",timestamp="1554208460",nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242",signature="c2ln+/=="`, false},
		{"OK/Spaces", `WECHATPAY2-SHA256-RSA2048  mchid="1900007291", nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242" , signature="c2ln+/==",timestamp="1554208460",serial_no="408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB",extra="x"`, false},
		{"ErrScheme", strings.Replace(want.String(), "WECHATPAY2-SHA256-RSA2048", "Bearer", 1), true},
		{"ErrNoPairs", "WECHATPAY2-SHA256-RSA2048", true},
		{"ErrMissing", `WECHATPAY2-SHA256-RSA2048 mchid="1"`, true},
		{"ErrRepeated", want.String() + `,mchid="2"`, true},
		{"ErrUnquoted", `WECHATPAY2-SHA256-RSA2048 mchid=1900007291`, true},
		{"ErrUnterminated", `WECHATPAY2-SHA256-RSA2048 mchid="1900007291`, true},
		{"ErrNoComma", `WECHATPAY2-SHA256-RSA2048 mchid="1" nonce_str="2"`, true},
		{"ErrEmpty", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.ParseAuthorization(tt.in)
			if tt.err {
				if err == nil {
					t.Fatalf("got %+v, %v", got, err)
				}
				return
			}
			if err != nil || got != want {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}

func TestGCM(t *testing.T) {
	v := mustShared(t)
	t.Run("OK/V3EmptyAAD", func(t *testing.T) {
		pt, err := decryptGCM([]byte(v.V3.Key), v.V3.Nonce, v.V3.AssociatedData, v.V3.Ciphertext)
		if err != nil || string(pt) != v.V3.Plaintext {
			t.Fatalf("%q %v", pt, err)
		}
		ct, err := wire.EncryptGCM([]byte(v.V3.Key), v.V3.Nonce, v.V3.AssociatedData, []byte(v.V3.Plaintext))
		if err != nil || ct != v.V3.Ciphertext {
			t.Fatalf("%q %v", ct, err)
		}
	})
	t.Run("OK/JavaSDKVectorD", func(t *testing.T) {
		// wechatpay-java core/src/test/java/com/wechat/pay/java/core/cipher/AeadAesCipherTest.java,
		// with the key of its TestConfig.java.
		pt, err := decryptGCM([]byte("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"), "uluk4a9R25RW", "associatedData", "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI=")
		if err != nil || string(pt) != "message" {
			t.Fatalf("%q %v", pt, err)
		}
	})
	tests := []struct {
		name, key, nonce, ad, ct string
		want                     error
	}{
		{"ErrKey16", "testAPIv3Key0000", "wCq51qZv4Yfg", "Dl56FrqWQJF1t9LtC3vEUsniZKvbqdR8", "FsdXzxryWfKwvLJKf8LG/ToRPTRh8RN9wROC", ErrAPIv3KeySize},
		{"ErrKeyEmpty", "", v.V3.Nonce, "", v.V3.Ciphertext, ErrAPIv3KeySize},
		{"ErrNonce11", v.V3.Key, "abcdefghijk", "", v.V3.Ciphertext, ErrDecrypt},
		{"ErrNonce13", v.V3.Key, "abcdefghijklm", "", v.V3.Ciphertext, ErrDecrypt},
		{"ErrAAD", v.V3.Key, v.V3.Nonce, "x", v.V3.Ciphertext, ErrDecrypt},
		{"ErrShort", v.V3.Key, v.V3.Nonce, "", "AAAA", ErrDecrypt},
		{"ErrBase64", v.V3.Key, v.V3.Nonce, "", "%%%", ErrDecrypt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decryptGCM([]byte(tt.key), tt.nonce, tt.ad, tt.ct)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v", err)
			}
			if tt.key != "" && strings.Contains(err.Error(), tt.key) {
				t.Fatal("key in error")
			}
		})
	}
}

func TestKeys(t *testing.T) {
	t.Run("OK/Certificates", func(t *testing.T) {
		for file, serial := range map[string]string{
			"shared/go_sdk_notify_test_cert.pem":   "D7CE59D1F522D701",
			"shared/go_sdk_verifier_test_cert.pem": "F5765756002FDD77",
			"platform_cert.pem":                    "5A5A0123456789ABCDEF5A5A0123456789ABCDEF",
		} {
			if got := CertificateSerial(mustCert(t, file)); got != serial {
				t.Fatalf("%s: %s", file, got)
			}
		}
	})
	t.Run("OK/PublicKeyMatchesPrivate", func(t *testing.T) {
		priv := mustPrivateKey(t, "shared/go_sdk_test_private_key.pem")
		pub := mustPublicKey(t, "shared/go_sdk_test_public_key.pem")
		if !priv.PublicKey.Equal(pub) || !mustCert(t, "shared/go_sdk_notify_test_cert.pem").PublicKey.(*rsa.PublicKey).Equal(pub) {
			t.Fatal("key mismatch")
		}
		if !mustPrivateKey(t, "shared/official_doc_test_key.pem").PublicKey.Equal(mustPublicKey(t, "shared/official_doc_test_pub.pem")) {
			t.Fatal("merchant key mismatch")
		}
	})
	t.Run("OK/TestingKeyLabelAndBase64", func(t *testing.T) {
		mustPrivateKey(t, "other_key.pem")
		pem := string(mustRead(t, "shared/go_sdk_test_public_key.pem"))
		var b64 string
		for _, l := range strings.Split(pem, "\n") {
			if !strings.HasPrefix(l, "-----") {
				b64 += l
			}
		}
		if _, err := ParsePublicKey([]byte(b64)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrWrongKinds", func(t *testing.T) {
		cert := mustRead(t, "shared/go_sdk_notify_test_cert.pem")
		pub := mustRead(t, "shared/go_sdk_test_public_key.pem")
		priv := mustRead(t, "shared/official_doc_test_key.pem")
		if _, err := ParsePublicKey(cert); err == nil {
			t.Fatal("cert as public key")
		}
		if _, err := ParsePrivateKey(pub); err == nil {
			t.Fatal("public as private")
		}
		if _, err := ParseCertificate(pub); err == nil {
			t.Fatal("public as cert")
		}
		_, err := ParsePrivateKey(bytes.Replace(priv, []byte("MII"), []byte("MIJ"), 1))
		if err == nil || strings.Contains(err.Error(), "MII") {
			t.Fatalf("%v", err)
		}
		for _, b := range [][]byte{nil, []byte("-----BEGIN"), []byte("not base64!")} {
			if _, err := ParsePrivateKey(b); err == nil {
				t.Fatal("garbage accepted")
			}
			if _, err := ParsePublicKey(b); err == nil {
				t.Fatal("garbage accepted")
			}
			if _, err := ParseCertificate(b); err == nil {
				t.Fatal("garbage accepted")
			}
		}
	})
}
