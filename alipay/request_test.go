package alipay

import (
	"bytes"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

// onceReader hands out a body and fails the test if it is read again after its end; n counts the
// bytes handed out.
type onceReader struct {
	t    *testing.T
	r    io.Reader
	done bool
	n    int
}

func (o *onceReader) Read(p []byte) (int, error) {
	if o.done {
		o.t.Error("body read again after its end")
		return 0, io.EOF
	}
	n, err := o.r.Read(p)
	o.n += n
	if err == io.EOF {
		o.done = true
	}
	return n, err
}

// errReader fails every read.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

const alipayContentType = "application/x-www-form-urlencoded; text/html; charset=utf-8"

// TestVerifyNotificationRequest checks the *http.Request entry point against the bytes one on every
// openssl-made vector: the same verdict, detail and claimed out_trade_no, the body read once and
// raw (never r.Form), a size limit, and a read error that is not a verdict.
func TestVerifyNotificationRequest(t *testing.T) {
	for _, v := range loadOpensslVectors(t) {
		prefix := "OK/"
		if v.Expect != "valid" {
			prefix = "Err/"
		}
		t.Run(prefix+v.Name, func(t *testing.T) {
			c := verifierFor(t, v.Configured)
			nb, errb := c.VerifyNotification(ctHeader(alipayContentType), []byte(v.Body))
			body := &onceReader{t: t, r: strings.NewReader(v.Body)}
			r := httptest.NewRequest("POST", "/notify/alipay", body)
			r.Header.Set("Content-Type", alipayContentType)
			nr, errr := c.VerifyNotificationRequest(r)
			if body.n != len(v.Body) || !body.done {
				t.Fatalf("read %d of %d bytes (end reached: %v)", body.n, len(v.Body), body.done)
			}
			if r.PostForm != nil || r.Form != nil {
				t.Fatal("the request's form was parsed")
			}
			if v.Expect == "valid" {
				if errb != nil || errr != nil {
					t.Fatalf("bytes form %v, request form %v", errb, errr)
				}
				if nb.NotifyID != nr.NotifyID || nb.TotalAmount != nr.TotalAmount || len(nb.Raw) != len(nr.Raw) {
					t.Fatalf("notifications differ: %+v vs %+v", nb, nr)
				}
				checkDecoded(t, nr, v.Decoded)
				return
			}
			var vb, vr *VerifyError
			if !errors.As(errb, &vb) || !errors.As(errr, &vr) {
				t.Fatalf("bytes form %v, request form %v", errb, errr)
			}
			if vb.Reason != v.Expect || vr.Reason != v.Expect || vb.Detail != vr.Detail || vb.OutTradeNo != vr.OutTradeNo || !bytes.Equal(vb.Message, vr.Message) {
				t.Fatalf("bytes form %+v, request form %+v, want %s", vb, vr, v.Expect)
			}
		})
	}

	vs := loadOpensslVectors(t)
	valid := vs[0]
	for _, v := range vs {
		if v.Expect == "valid" && v.Configured == RSA2 {
			valid = v
			break
		}
	}
	c := verifierFor(t, RSA2)
	t.Run("ErrContentType", func(t *testing.T) {
		r := httptest.NewRequest("POST", "/notify/alipay", strings.NewReader(valid.Body))
		r.Header.Set("Content-Type", "application/json")
		_, err := c.VerifyNotificationRequest(r)
		var ve *VerifyError
		if !errors.As(err, &ve) || !errors.Is(err, ErrMalformed) || !strings.Contains(ve.Detail, "Content-Type") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrTooLarge", func(t *testing.T) {
		big := &onceReader{t: t, r: io.MultiReader(strings.NewReader(valid.Body), strings.NewReader("&x="+strings.Repeat("a", MaxNotificationBytes)))}
		r := httptest.NewRequest("POST", "/notify/alipay", big)
		_, err := c.VerifyNotificationRequest(r)
		var ve *VerifyError
		if !errors.As(err, &ve) || !errors.Is(err, ErrMalformed) || !strings.Contains(ve.Detail, "body larger than 1048576 bytes") {
			t.Fatalf("got %v", err)
		}
		if big.n > MaxNotificationBytes+1 {
			t.Fatalf("read %d bytes, more than the limit and one", big.n)
		}
	})
	t.Run("ErrRead", func(t *testing.T) {
		_, err := c.VerifyNotificationRequest(httptest.NewRequest("POST", "/notify/alipay", errReader{}))
		var ve *VerifyError
		if err == nil || errors.As(err, &ve) || !strings.Contains(err.Error(), "alipay: read notification body: connection reset") {
			t.Fatalf("got %v", err)
		}
	})
}
