package alipay

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"testing"
	"time"

	"github.com/paynotify/paynotify/internal/alipaywire"
)

// The benchmarks time the operation and its floor (the raw crypto/rsa call over a message of the
// same length, with a pre-parsed key) back to back in the same loop, and report the ratio, because
// absolute ns/op drift by ±20 % between runs on shared machines. Metrics:
//
//	ratio            median op time / median bound time (the figure the targets are about)
//	mean-ratio       the same with means (sensitive to preemption on a loaded machine)
//	op-median-ns     the operation alone
//	bound-median-ns  the bound alone
//	extra-allocs     allocations of the operation beyond the bound's own
//	bound-allocs     allocations of the bound itself
//
// Run: go test -run='^$' -bench='VerifyNotification|AppPayOrderString' -count=5 ./alipay/

func benchNotificationBody(tb testing.TB) []byte {
	tb.Helper()
	for _, v := range loadOpensslVectors(tb) {
		if v.Name == "utf8_25_fields" {
			return []byte(v.Body)
		}
	}
	tb.Fatal("no utf8_25_fields vector")
	return nil
}

func BenchmarkVerifyNotification(b *testing.B) {
	body := benchNotificationBody(b)
	c := verifierFor(b, RSA2)
	f, err := parseForm(body)
	if err != nil {
		b.Fatal(err)
	}
	msg := canonicalNotification(f, ruleV1) // same length as what the operation hashes
	sig, _ := base64.StdEncoding.DecodeString(f.Value("sign"))
	pub := c.alipayKey
	bound := func() {
		d := sha256.Sum256(msg)
		if rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) != nil {
			b.Fatal("bound failed")
		}
	}
	// The operation verifies into a reused form, as VerifyNotification does with its pool: the
	// parse, the canonical string and the verification all happen from the raw bytes every time.
	var form form
	op := func() {
		if err := c.verifyNotificationInto(&form, body, "application/x-www-form-urlencoded; text/html; charset=utf-8"); err != nil {
			b.Fatal(err)
		}
	}
	runPaired(b, bound, op)
}

func BenchmarkAppPayOrderString(b *testing.B) {
	c := testClient(b, nil)
	p := TradeAppPay{OutTradeNo: "20240102000002", TotalAmount: 1, Subject: "App 测试", TimeoutExpress: "30m"}
	params, err := c.signedPay("alipay.trade.app.pay", bizPay{OutTradeNo: p.OutTradeNo, TotalAmount: "0.01", Subject: p.Subject,
		ProductCode: ProductAppPay, TimeoutExpress: p.TimeoutExpress}, "", "")
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte(alipaywire.CanonicalRequest(params))
	priv := c.priv.(*rsa.PrivateKey)
	bound := func() {
		d := sha256.Sum256(msg)
		if _, err := rsa.SignPKCS1v15(rand.Reader, priv, crypto.SHA256, d[:]); err != nil {
			b.Fatal(err)
		}
	}
	op := func() {
		if _, err := c.AppPay(p); err != nil {
			b.Fatal(err)
		}
	}
	runPaired(b, bound, op)
}

// BenchmarkDecodeNotification measures the typed decoding that follows verification (UTF-8
// conversion, amounts, times, the raw map), separately from the verdict.
func BenchmarkDecodeNotification(b *testing.B) {
	body := benchNotificationBody(b)
	f, err := parseForm(body)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeNotification(f); err != nil {
			b.Fatal(err)
		}
	}
}

// runPaired times bound and op back to back in each iteration and reports the ratio of their
// median times (robust to the preemption spikes of a shared machine) and of their means.
func runPaired(b *testing.B, bound, op func()) {
	boundAllocs := testing.AllocsPerRun(50, bound)
	opAllocs := testing.AllocsPerRun(50, op)
	db := make([]time.Duration, b.N)
	do := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		bound()
		t1 := time.Now()
		op()
		t2 := time.Now()
		db[i] = t1.Sub(t0)
		do[i] = t2.Sub(t1)
	}
	b.StopTimer()
	var sb, so time.Duration
	for i := range db {
		sb += db[i]
		so += do[i]
	}
	mb, mo := median(db), median(do)
	b.ReportMetric(float64(mo)/float64(mb), "ratio")
	b.ReportMetric(float64(so)/float64(sb), "mean-ratio")
	b.ReportMetric(float64(mo.Nanoseconds()), "op-median-ns")
	b.ReportMetric(float64(mb.Nanoseconds()), "bound-median-ns")
	b.ReportMetric(opAllocs-boundAllocs, "extra-allocs")
	b.ReportMetric(boundAllocs, "bound-allocs")
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}
