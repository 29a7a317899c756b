package alipaylegacy

import (
	"encoding/base64"
	"testing"
)

// BenchmarkVerifyWAP0001 verifies 0001 WAP notifications that fail: one whose first block does
// not decrypt with the merchant key (another key's block), one that decrypts but whose
// signature was made by another key. The two should cost the same (decryptBlinded): the
// difference between them is what a sender timing the answers would learn about the padding.
func BenchmarkVerifyWAP0001(b *testing.B) {
	c := testClient(b, SignRSA, nil)
	plain := wapXML(wapNotifyID)
	merchantBlocks, _ := base64.StdEncoding.DecodeString(opensslEncrypt0001(b, "keys/merchant_public.pem", []byte(plain)))
	otherBlock, _ := base64.StdEncoding.DecodeString(opensslEncrypt0001(b, "keys/attacker_public.pem", []byte(plain[:blockSize-11])))
	badPadding := append(append([]byte{}, otherBlock...), merchantBlocks[blockSize:]...)
	msg := []byte("service=alipay.wap.trade.create.direct&v=1.0&sec_id=0001&notify_data=" + plain)
	signedBy := func(key string, data []byte) []byte {
		return body([]kv{{"service", "alipay.wap.trade.create.direct"}, {"sign", opensslSHA1(b, key, msg)}, {"sec_id", "0001"}, {"v", "1.0"},
			{"notify_data", base64.StdEncoding.EncodeToString(data)}})
	}
	for _, bc := range []struct {
		name   string
		body   []byte
		reason string
	}{
		{"BadPadding", signedBy("keys/alipay_private_pkcs1.pem", badPadding), ReasonSignatureInvalid},
		{"BadSignature", signedBy("keys/attacker_private_pkcs1.pem", merchantBlocks), ReasonSignatureInvalid},
	} {
		b.Run(bc.name, func(b *testing.B) {
			wantReasonOf(b, verifyN(c, bc.body), bc.reason)
			b.ReportAllocs()
			for b.Loop() {
				_ = verifyN(c, bc.body)
			}
		})
	}
}
