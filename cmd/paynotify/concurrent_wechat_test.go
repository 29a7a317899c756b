package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/pgtest"
)

// The WeChat Pay merchant of the concurrency test.
const (
	cwMchID    = "1900000109"
	cwAppID    = "wxd678efh567hg6787"
	cwKeyID    = "PUB_KEY_ID_0119000001092026120600000000000001"
	cwAPIv3Key = "cwAPIv3key0123456789abcdefABCDEF" // 32 bytes
)

// TestBinary_ConcurrentIdenticalWechat is TestBinary_ConcurrentIdentical for WeChat Pay APIv3:
// 200 copies of one TRANSACTION.SUCCESS notification at once pay the order once (every copy
// answered 204, one order.paid, version 2), and 200 copies of one whose amount disagrees with
// another order, at once, record one anomaly (one row, one order.anomaly), every copy answered
// with the same failure, the order untouched. The notifications are built here as WeChat Pay
// builds them, with crypto/aes and crypto/rsa, not with the package under test.
func TestBinary_ConcurrentIdenticalWechat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const copies = 200
	bin := buildBinary(t)
	for _, kind := range []string{"SQLite", "PostgreSQL"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			dir := t.TempDir()
			dsn := "sqlite:" + filepath.Join(dir, "data", "paynotify.db")
			if kind == "PostgreSQL" {
				dsn = pgtest.NewDatabase(t)
			}
			addr := freeAddr(t)
			config := writeServerConfig(t, dir, addr, dsn)
			platform := cwWechatApp(t, dir, config)

			s := lkOpen(t, dsn, true)
			now := time.Now().UTC().Truncate(time.Second)
			for _, otn := range []string{"W0001", "W0002"} {
				if _, _, err := s.CreateOrder(ctx, &paynotify.Order{App: "wx", OutTradeNo: otn, Channel: paynotify.ChannelWechatNative,
					Status: paynotify.StatusPending, Amount: 8888, Currency: "CNY", Subject: "same", Version: 1, CreatedAt: now, ExpiresAt: now.Add(2 * time.Hour)}); err != nil {
					t.Fatal(err)
				}
			}
			s.Close()
			cmd := startBinary(t, bin, config, addr)
			target := "http://" + addr + "/notify/wechatpay/wx"

			paidH, paidB := cwNotification(t, platform, "W0001", 8888)
			wrongH, wrongB := cwNotification(t, platform, "W0002", 1)
			tr := &http.Transport{MaxIdleConns: 2 * copies, MaxIdleConnsPerHost: 2 * copies, IdleConnTimeout: time.Minute}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr, Timeout: 60 * time.Second}
			paidAns := make([]string, copies)
			wrongAns := make([]string, copies)
			release := make(chan struct{})
			var wg sync.WaitGroup
			for i := 0; i < copies; i++ {
				for _, c := range []struct {
					h   http.Header
					b   []byte
					out []string
				}{{paidH, paidB, paidAns}, {wrongH, wrongB, wrongAns}} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-release
						req, _ := http.NewRequest(http.MethodPost, target, bytes.NewReader(c.b))
						req.Header = c.h.Clone()
						resp, err := hc.Do(req)
						if err != nil {
							c.out[i] = "error: " + err.Error()
							return
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						c.out[i] = fmt.Sprintf("%d %s", resp.StatusCode, body)
					}()
				}
			}
			close(release)
			wg.Wait()
			t.Logf("answers: paid %q, amount mismatch %q", paidAns[0], wrongAns[0])
			lkSame(t, "the paid notification", paidAns, "204 ")
			if !strings.HasPrefix(wrongAns[0], "5") && !strings.HasPrefix(wrongAns[0], "4") {
				t.Errorf("the amount-mismatch notification answered %q, want a failure", wrongAns[0])
			}
			lkSame(t, "the amount-mismatch notification", wrongAns, wrongAns[0])

			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
			s = lkOpen(t, dsn, false)
			defer s.Close()
			var got []string
			evs, err := s.ListEvents(ctx, paynotify.EventFilter{App: "wx", Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				got = append(got, fmt.Sprintf("%s %s v%d", e.Type, e.OutTradeNo, e.Version))
			}
			sort.Strings(got)
			if want := []string{"order.anomaly W0002 v1", "order.paid W0001 v2"}; strings.Join(got, ", ") != strings.Join(want, ", ") {
				t.Errorf("events %q, want %q", got, want)
			}
			for otn, want := range map[string]string{"W0001": "paid 2", "W0002": "pending 1"} {
				o, err := s.GetOrder(ctx, "wx", otn)
				if err != nil {
					t.Fatal(err)
				}
				if g := fmt.Sprintf("%s %d", o.Status, o.Version); g != want {
					t.Errorf("%s is %s, want %s", otn, g, want)
				}
			}
			if rows := lkAnomalyRowsOf(t, s, "wx", "W0002"); len(rows) != 1 {
				t.Errorf("anomaly rows of W0002: %q, want one", rows)
			}
		})
	}
}

// cwWechatApp adds WeChat Pay app "wx" to config, with keys made by openssl in dir, and returns
// the key that plays WeChat Pay's platform.
func cwWechatApp(t *testing.T, dir, config string) *rsa.PrivateKey {
	t.Helper()
	for _, args := range [][]string{
		{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", filepath.Join(dir, "wx_merchant.pem")},
		{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", filepath.Join(dir, "wx_platform.pem")},
		{"pkey", "-in", filepath.Join(dir, "wx_platform.pem"), "-pubout", "-out", filepath.Join(dir, "wx_platform_pub.pem")},
	} {
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "wx_apiv3.key"), []byte(cwAPIv3Key), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	app := fmt.Sprintf(`  - name: wx
    provider: wechatpay
    appid: %q
    mchid: %q
    merchant_private_key_file: wx_merchant.pem
    merchant_serial_no: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
    apiv3_key_file: wx_apiv3.key
    platform_public_key_file: wx_platform_pub.pem
    platform_public_key_id: %q
    api_base: "http://127.0.0.1:1"
`, cwAppID, cwMchID, cwKeyID)
	s := strings.Replace(string(b), "apps:\n", "apps:\n"+app, 1)
	if err := os.WriteFile(config, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	kb, err := os.ReadFile(filepath.Join(dir, "wx_platform.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(kb)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*rsa.PrivateKey)
}

// cwNotification builds a TRANSACTION.SUCCESS notification of order otn for total fen: the
// transaction sealed with AES-256-GCM under the APIv3 key, the body signed with SHA256withRSA over
// "timestamp\nnonce\nbody\n" by the platform key.
func cwNotification(t *testing.T, platform *rsa.PrivateKey, otn string, total int64) (http.Header, []byte) {
	t.Helper()
	tx := fmt.Sprintf(`{"mchid":%q,"appid":%q,"out_trade_no":%q,"transaction_id":"42000020262026120600%s","trade_type":"NATIVE",`+
		`"trade_state":"SUCCESS","trade_state_desc":"支付成功","bank_type":"OTHERS","attach":"","success_time":"2026-12-06T10:00:00+08:00",`+
		`"payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},"amount":{"total":%d,"payer_total":%d,"currency":"CNY","payer_currency":"CNY"}}`,
		cwMchID, cwAppID, otn, otn, total, total)
	nonce := randHex(t, 6) // 12 characters
	block, err := aes.NewCipher([]byte(cwAPIv3Key))
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	sealed := gcm.Seal(nil, []byte(nonce), []byte(tx), []byte("transaction"))
	body := []byte(fmt.Sprintf(`{"id":"EV-%s","create_time":"2026-12-06T10:00:01+08:00","resource_type":"encrypt-resource","event_type":"TRANSACTION.SUCCESS",`+
		`"summary":"支付成功","resource":{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":%q,"associated_data":"transaction","nonce":%q}}`,
		otn, base64.StdEncoding.EncodeToString(sealed), nonce))
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	hnonce := randHex(t, 16)
	h := sha256.Sum256([]byte(ts + "\n" + hnonce + "\n" + string(body) + "\n"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, platform, crypto.SHA256, h[:])
	if err != nil {
		t.Fatal(err)
	}
	hdr := http.Header{}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Wechatpay-Timestamp", ts)
	hdr.Set("Wechatpay-Nonce", hnonce)
	hdr.Set("Wechatpay-Signature", base64.StdEncoding.EncodeToString(sig))
	hdr.Set("Wechatpay-Serial", cwKeyID)
	hdr.Set("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048")
	return hdr, body
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
