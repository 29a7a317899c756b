package wechatpay

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// Each paired benchmark times the raw crypto/rsa bound and the package operation back to back in
// the same loop, so both see the same machine load (2 shared cores here), and reports
// bound-ns/op, op-ns/op and their ratio. The bound of a verification is what any verifier must
// do: SHA-256 of the signed message and rsa.VerifyPKCS1v15 on the already decoded signature; the
// bound of signing is SHA-256 plus rsa.SignPKCS1v15. Run:
//
//	go test -run='^$' -bench=. -benchtime=2000x -count=3 ./wechatpay/

type pairTimer struct {
	bound, op time.Duration
}

func (p *pairTimer) report(b *testing.B) {
	n := float64(b.N)
	b.ReportMetric(float64(p.bound.Nanoseconds())/n, "bound-ns/op")
	b.ReportMetric(float64(p.op.Nanoseconds())/n, "op-ns/op")
	b.ReportMetric(float64(p.op)/float64(p.bound), "ratio")
}

func benchV1(b *testing.B) (*Client, *sharedVectors, []byte, *rsa.PublicKey, []byte) {
	v := mustShared(b)
	ts, _ := strconv.ParseInt(v.V1.Headers[HeaderTimestamp], 10, 64)
	c := newVerifyClient(b, ts)
	msg := NotificationMessage(v.V1.Headers[HeaderTimestamp], v.V1.Headers[HeaderNonce], []byte(v.V1.Body))
	sig, _ := base64.StdEncoding.DecodeString(v.V1.Headers[HeaderSignature])
	return c, v, msg, c.PlatformKey(v.V1.Headers[HeaderSerial]), sig
}

func rsaVerifyBound(b *testing.B, pub *rsa.PublicKey, msg, sig []byte) {
	h := sha256.Sum256(msg)
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkVerifySignature: notification signature verification (headers, probe, timestamp
// window, serial lookup, base64, SHA-256 over the raw body, RSA) beside the bound.
func BenchmarkVerifySignature(b *testing.B) {
	c, v, msg, pub, sig := benchV1(b)
	h := headerOf(v.V1.Headers)
	body := []byte(v.V1.Body)
	var p pairTimer
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		rsaVerifyBound(b, pub, msg, sig)
		t1 := time.Now()
		if err := c.VerifyResponse(h, body); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		p.bound += t1.Sub(t0)
		p.op += t2.Sub(t1)
	}
	p.report(b)
}

// BenchmarkParseNotification: verification + envelope JSON + AES-256-GCM + typed decoding.
func BenchmarkParseNotification(b *testing.B) {
	c, v, msg, pub, sig := benchV1(b)
	h := headerOf(v.V1.Headers)
	body := []byte(v.V1.Body)
	var p pairTimer
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		rsaVerifyBound(b, pub, msg, sig)
		t1 := time.Now()
		if _, err := c.ParseNotification(h, body); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		p.bound += t1.Sub(t0)
		p.op += t2.Sub(t1)
	}
	p.report(b)
}

// BenchmarkSignRequest: building and signing an APIv3 request (Authorization header) beside the
// raw rsa.SignPKCS1v15 bound.
func BenchmarkSignRequest(b *testing.B) {
	key := mustPrivateKey(b, "shared/official_doc_test_key.pem")
	r := mustOwn(b).Requests[0]
	body := []byte(r.Body)
	msg := RequestMessage(r.Method, r.URI, r.Timestamp, r.Nonce, body)
	var p pairTimer
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		hh := sha256.Sum256(msg)
		if _, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, hh[:]); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		a, err := SignRequest(key, testMchID, testSerialNo, r.Method, r.URI, r.Timestamp, r.Nonce, body)
		if err != nil {
			b.Fatal(err)
		}
		_ = a.String()
		t2 := time.Now()
		p.bound += t1.Sub(t0)
		p.op += t2.Sub(t1)
	}
	p.report(b)
}

// BenchmarkBreakdown times the parts of ParseNotification that are not RSA.
func BenchmarkBreakdown(b *testing.B) {
	c, v, _, _, _ := benchV1(b)
	h := headerOf(v.V1.Headers)
	body := []byte(v.V1.Body)
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		b.Fatal(err)
	}
	pt, _ := openGCM(c.aead, env.Resource.Nonce, env.Resource.AssociatedData, env.Resource.Ciphertext)
	b.Run("Headers", func(b *testing.B) {
		for b.Loop() {
			if _, verr := readSignedHeaders(h); verr != nil {
				b.Fatal(verr)
			}
		}
	})
	b.Run("SHA256Body", func(b *testing.B) {
		for b.Loop() {
			notificationDigest(v.V1.Headers[HeaderTimestamp], v.V1.Headers[HeaderNonce], body)
		}
	})
	b.Run("EnvelopeJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e envelope
			if err := json.Unmarshal(body, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AES256GCM", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := openGCM(c.aead, env.Resource.Nonce, env.Resource.AssociatedData, env.Resource.Ciphertext); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeTransaction", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w wireTransaction
			if err := json.Unmarshal(pt, &w); err != nil {
				b.Fatal(err)
			}
			if _, err := w.typed(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeAfterVerify", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.decodeNotification(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
