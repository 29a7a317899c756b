package wechatpay

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// sharedVectors mirrors testdata/shared/vectors.json.
type sharedVectors struct {
	V1 notifVector `json:"V1_transaction_success"`
	V2 notifVector `json:"V2_refund_success"`
	V3 struct {
		Key            string `json:"key"`
		Nonce          string `json:"nonce"`
		AssociatedData string `json:"associated_data"`
		Plaintext      string `json:"plaintext"`
		Ciphertext     string `json:"ciphertext_b64"`
	} `json:"V3_gcm_empty_aad"`
	V4 struct{ Message, PaySign string }   `json:"V4_jsapi_paysign"`
	V5 struct{ Message, Sign string }      `json:"V5_app_sign"`
	V6 struct{ Message, Signature string } `json:"V6_get_query_sign"`
	V7 struct{ Message, Signature string } `json:"V7_close_sign"`
	V8 struct {
		Key         string `json:"key"`
		StringAMD5  string `json:"stringA_md5"`
		SignMD5     string `json:"sign_md5"`
		StringAHMAC string `json:"stringA_hmac"`
		SignHMAC    string `json:"sign_hmac_sha256"`
	} `json:"V8_v2_notify"`
	V9 struct {
		Key       string `json:"key"`
		AESKey    string `json:"aes_key_ascii"`
		Plaintext string `json:"plaintext"`
		ReqInfo   string `json:"req_info"`
	} `json:"V9_v2_refund_req_info"`
}

type notifVector struct {
	APIv3Key  string            `json:"apiv3_key"`
	Headers   map[string]string `json:"headers"`
	Body      string            `json:"body"`
	Plaintext string            `json:"plaintext"`
}

// ownVectors mirrors testdata/own_vectors.json (made by testdata/gen/gen_vectors.py).
type ownVectors struct {
	APIv3Key      string     `json:"apiv3_key"`
	OtherAPIv3Key string     `json:"other_apiv3_key"`
	CertSerial    string     `json:"cert_serial"`
	PubKeyID      string     `json:"pub_key_id"`
	PayPlaintext  string     `json:"pay_plaintext"`
	Notifications []ownNotif `json:"notifications"`
	Requests      []struct {
		Method, URI, Timestamp, Nonce, Body, Signature string
	} `json:"requests"`
	JSAPI        JSAPIPayParams `json:"jsapi"`
	App          AppPayParams   `json:"app"`
	Certificates struct {
		ownNotif
		Serial string `json:"serial"`
	} `json:"certificates"`
	V2Key string `json:"v2_key"`
	V2    []struct {
		Name, Body, Expect, Note string
	} `json:"v2"`
	V2Refund struct {
		Body, ReqInfo, Plaintext string
	} `json:"v2_refund"`
	V2RefundOtherKey string `json:"v2_refund_other_key"`
}

type ownNotif struct {
	Name    string            `json:"name"`
	Note    string            `json:"note"`
	Now     int64             `json:"now"`
	Expect  string            `json:"expect"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

func loadJSON(tb testing.TB, name string, v any) {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
}

func mustShared(tb testing.TB) *sharedVectors {
	tb.Helper()
	var v sharedVectors
	loadJSON(tb, "shared/vectors.json", &v)
	return &v
}

func mustOwn(tb testing.TB) *ownVectors {
	tb.Helper()
	var v ownVectors
	loadJSON(tb, "own_vectors.json", &v)
	// All of them: an emptied list or a renamed key (json ignores unknown keys) must fail, not
	// run no subtest.
	if len(v.Notifications) != 24 || len(v.Requests) != 3 || len(v.V2) != 6 {
		tb.Fatalf("own_vectors.json: %d notifications, %d requests, %d v2; want 24, 3, 6 (gen/gen_vectors.py)",
			len(v.Notifications), len(v.Requests), len(v.V2))
	}
	return &v
}

func mustRead(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustPrivateKey(tb testing.TB, name string) *rsa.PrivateKey {
	tb.Helper()
	k, err := ParsePrivateKey(mustRead(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func mustPublicKey(tb testing.TB, name string) *rsa.PublicKey {
	tb.Helper()
	k, err := ParsePublicKey(mustRead(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func mustCert(tb testing.TB, name string) *x509.Certificate {
	tb.Helper()
	c, err := ParseCertificate(mustRead(tb, name))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

const (
	testAPIv3Key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
	testPubKeyID = "PUB_KEY_ID_0119000001002024060100000000000001"
	testMchID    = "1900007291"
	testSerialNo = "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB"
	testAppID    = "wxd678efh567hg6787"
)

// newVerifyClient returns a client that knows the wechatpay-go test platform key both as the
// certificate D7CE59D1F522D701 and as the public key testPubKeyID, with the clock at now.
func newVerifyClient(tb testing.TB, now int64) *Client {
	tb.Helper()
	c, err := NewClient(Config{
		APIv3Key:            []byte(testAPIv3Key),
		PlatformPublicKey:   mustPublicKey(tb, "shared/go_sdk_test_public_key.pem"),
		PlatformPublicKeyID: testPubKeyID,
		PlatformCerts:       mustRead(tb, "shared/go_sdk_notify_test_cert.pem"),
		Now:                 func() time.Time { return time.Unix(now, 0) },
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func headerOf(m map[string]string) http.Header {
	h := http.Header{}
	for k, v := range m {
		h.Add(k, v)
	}
	return h
}

func reasonOfErr(err error) string {
	if err == nil {
		return "valid"
	}
	if ve, ok := err.(*VerifyError); ok {
		return ve.Reason
	}
	return "other: " + err.Error()
}
