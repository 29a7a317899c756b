package alipay_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/paynotify/paynotify/alipay"
)

// The answers are exactly "success" / "fail", HTTP 200, text/plain, no newline (what Alipay
// compares), over a real socket.
func TestWriteAck(t *testing.T) {
	for _, c := range []struct {
		write func(http.ResponseWriter)
		want  string
	}{{alipay.WriteAckSuccess, "success"}, {alipay.WriteAckFailure, "fail"}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.write(w) }))
		resp, err := http.Post(srv.URL, "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != http.StatusOK || string(body) != c.want || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("answer %d %q %q, want 200 %q text/plain", resp.StatusCode, resp.Header.Get("Content-Type"), body, c.want)
		}
	}
}
