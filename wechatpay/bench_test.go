package wechatpay

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strconv"
	"testing"
	"time"

	wire "github.com/paynotify/paynotify/internal/wechatpaywire"
)

// Each paired benchmark times the raw crypto/rsa bound and the package operation back to back in
// the same loop, so both see the same machine load (2 shared cores here), and reports
// the median bound-ns and op-ns, their ratio, and mean-ratio (ratio of the totals). The bound of a verification is what any verifier must
// do: SHA-256 of the signed message and rsa.VerifyPKCS1v15 on the already decoded signature; the
// bound of signing is SHA-256 plus rsa.SignPKCS1v15. Run:
//
//	go test -run='^$' -bench=. -benchtime=2000x -count=3 ./wechatpay/

type pairTimer struct {
	bound, op   time.Duration
	bounds, ops []time.Duration
	i           int
}

// run times bound and op back to back, alternating which goes first so that neither profits
// from running second (warm caches, branch predictors).
func (p *pairTimer) run(bound, op func()) {
	p.i++
	if p.i%2 == 0 {
		t0 := time.Now()
		bound()
		t1 := time.Now()
		op()
		t2 := time.Now()
		p.add(t1.Sub(t0), t2.Sub(t1))
		return
	}
	t0 := time.Now()
	op()
	t1 := time.Now()
	bound()
	t2 := time.Now()
	p.add(t2.Sub(t1), t1.Sub(t0))
}

func (p *pairTimer) add(bound, op time.Duration) {
	p.bound += bound
	p.op += op
	p.bounds = append(p.bounds, bound)
	p.ops = append(p.ops, op)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// report gives medians (the machine is shared: single iterations get preempted) and, as
// mean-ratio, the ratio of the totals.
func (p *pairTimer) report(b *testing.B) {
	mb, mo := median(p.bounds), median(p.ops)
	b.ReportMetric(float64(mb.Nanoseconds()), "bound-ns")
	b.ReportMetric(float64(mo.Nanoseconds()), "op-ns")
	b.ReportMetric(float64(mo)/float64(mb), "ratio")
	b.ReportMetric(float64(p.op)/float64(p.bound), "mean-ratio")
}

func benchV1(b *testing.B) (*Client, *sharedVectors, []byte, *rsa.PublicKey, []byte) {
	v := mustShared(b)
	ts, _ := strconv.ParseInt(v.V1.Headers[wire.HeaderTimestamp], 10, 64)
	c := newVerifyClient(b, ts)
	msg := wire.NotificationMessage(v.V1.Headers[wire.HeaderTimestamp], v.V1.Headers[wire.HeaderNonce], []byte(v.V1.Body))
	sig, _ := base64.StdEncoding.DecodeString(v.V1.Headers[wire.HeaderSignature])
	return c, v, msg, c.platformKey(v.V1.Headers[wire.HeaderSerial]), sig
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
		p.run(func() { rsaVerifyBound(b, pub, msg, sig) }, func() {
			if err := c.VerifyResponse(h, body); err != nil {
				b.Fatal(err)
			}
		})
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
		p.run(func() { rsaVerifyBound(b, pub, msg, sig) }, func() {
			if _, err := c.VerifyNotification(h, body); err != nil {
				b.Fatal(err)
			}
		})
	}
	p.report(b)
}

// BenchmarkSignRequest: building and signing an APIv3 request (Authorization header) beside the
// raw rsa.SignPKCS1v15 bound.
func BenchmarkSignRequest(b *testing.B) {
	key := mustPrivateKey(b, "shared/official_doc_test_key.pem")
	r := mustOwn(b).Requests[0]
	body := []byte(r.Body)
	msg := wire.RequestMessage(r.Method, r.URI, r.Timestamp, r.Nonce, body)
	var p pairTimer
	b.ReportAllocs()
	for b.Loop() {
		p.run(func() {
			hh := sha256.Sum256(msg)
			if _, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, hh[:]); err != nil {
				b.Fatal(err)
			}
		}, func() {
			a, err := wire.SignRequest(key, testMchID, testSerialNo, r.Method, r.URI, r.Timestamp, r.Nonce, body)
			if err != nil {
				b.Fatal(err)
			}
			_ = a.String()
		})
	}
	p.report(b)
}

// BenchmarkBreakdown times the parts of VerifyNotification that are not RSA.
func BenchmarkBreakdown(b *testing.B) {
	c, v, _, _, _ := benchV1(b)
	h := headerOf(v.V1.Headers)
	body := []byte(v.V1.Body)
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		b.Fatal(err)
	}
	pt, _ := openGCM(c.aead, env.Resource.Nonce, env.Resource.AssociatedData, env.Resource.Ciphertext)
	b.Run("RSAVerifyBound", func(b *testing.B) {
		_, _, msg, pub, sig := benchV1(b)
		for b.Loop() {
			rsaVerifyBound(b, pub, msg, sig)
		}
	})
	b.Run("Headers", func(b *testing.B) {
		for b.Loop() {
			if _, verr := readSignedHeaders(h); verr != nil {
				b.Fatal(verr)
			}
		}
	})
	b.Run("SHA256Body", func(b *testing.B) {
		for b.Loop() {
			notificationDigest(v.V1.Headers[wire.HeaderTimestamp], v.V1.Headers[wire.HeaderNonce], body)
		}
	})
	b.Run("Envelope", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var e envelope
			if err := decodeEnvelope(body, &e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("EnvelopeEncodingJSON", func(b *testing.B) {
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
			if err := decodeTransaction(pt, &w); err != nil {
				b.Fatal(err)
			}
			if _, err := w.typed(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DecodeTransactionEncodingJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w wireTransaction
			if err := json.Unmarshal(pt, &w); err != nil {
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
