package provider_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/internal/wechatpaywire"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/wechatpay"
)

// TestWechatQueryEvidenceIsTheQueryAnswer: the Answer that reconciliation keeps as the
// evidence of a query (Header, Body) must be the signed query answer the fact came from. When
// the answer is signed by a platform certificate not downloaded yet, the client downloads the
// certificates inside the same call (wechatpay.Client.do -> refreshOnMiss), and the download's
// rawresp.Record overwrote the caller's RawResponse: the evidence became the /v3/certificates
// answer (a reviewer helper's finding).
func TestWechatQueryEvidenceIsTheQueryAnswer(t *testing.T) {
	read := func(p string) []byte {
		b, err := os.ReadFile("../wechatpay/testdata/" + p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var own struct {
		Certificates struct {
			Now     int64             `json:"now"`
			Headers map[string]string `json:"headers"`
			Body    string            `json:"body"`
			Serial  string            `json:"serial"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal(read("own_vectors.json"), &own); err != nil {
		t.Fatal(err)
	}
	cv := own.Certificates
	now := time.Unix(cv.Now, 0)
	merchant, err := wechatpay.ParsePrivateKey(read("shared/official_doc_test_key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := wechatpay.ParsePrivateKey([]byte(strings.ReplaceAll(string(read("other_key.pem")), "TESTING KEY", "PRIVATE KEY")))
	if err != nil {
		t.Fatal(err)
	}
	answer := []byte(`{"appid":"wxd678efh567hg6787","mchid":"1900007291","out_trade_no":"O1","transaction_id":"4200000001",` +
		`"trade_type":"NATIVE","trade_state":"SUCCESS","success_time":"2026-11-29T10:00:00+08:00","amount":{"total":100,"payer_total":100,"currency":"CNY"}}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v3/certificates" {
			for k, v := range cv.Headers {
				w.Header().Set(k, v)
			}
			io.WriteString(w, cv.Body)
			return
		}
		// The query answer, signed by the platform certificate only the download has.
		h, err := wechatpaywire.SignHeaders(other, cv.Serial, now.Unix(), "nonce1", answer)
		if err != nil {
			t.Error(err)
			return
		}
		for k, vs := range h {
			w.Header()[k] = vs
		}
		w.Write(answer)
	}))
	defer srv.Close()
	c, err := wechatpay.NewClient(wechatpay.Config{MchID: "1900007291", AppID: "wxd678efh567hg6787", MerchantPrivateKey: merchant,
		MerchantSerialNo: "408B07E79B8269FEC3D5D3E6AB8ED163A6A380DB", APIv3Key: []byte("a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"),
		PlatformCerts: read("shared/go_sdk_notify_test_cert.pem"), BaseURL: srv.URL, HTTPClient: srv.Client(),
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	g := &provider.Wechat{Client: c}
	ans, err := g.Query(context.Background(), &paynotify.Order{App: "wx", OutTradeNo: "O1", Amount: 100, Currency: "CNY"})
	if err != nil {
		t.Fatal(err)
	}
	if ans.Fact == nil || ans.Fact.Kind != paynotify.FactPaid {
		t.Fatalf("fact %+v, want paid", ans.Fact)
	}
	if !bytes.Equal(ans.Body, answer) {
		t.Fatalf("the evidence kept for the query is not the answer the fact came from:\n kept body %.120s…\n kept Wechatpay-Serial %q\n want body %.80s…",
			ans.Body, ans.Header.Get("Wechatpay-Serial"), answer)
	}
}
