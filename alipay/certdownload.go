package alipay

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paynotify/paynotify/internal/rawresp"
)

// MethodCertDownload downloads an Alipay public-key certificate by its SN (certificate mode).
// Its answer is not signed (docs/alipay.md, "Certificate mode").
const MethodCertDownload = "alipay.open.app.alipaycert.download"

// Bounds of the certificate download. A download is asked for only by an API answer naming an
// unknown alipay_cert_sn (an answer of the gateway this client called), never by a notification
// (anyone can post one, naming any SN).
const (
	// certRetryAfter: an SN whose download failed is not asked for again before this.
	certRetryAfter = time.Minute
	// maxDownloadedCerts bounds the certificates kept from downloads (a rotation adds one).
	maxDownloadedCerts = 8
)

// downloadedKeys is the set of certificates downloaded so far, replaced whole on each addition
// (the verification paths read it without a lock).
type downloadedKeys struct {
	bySN map[string]*rsa.PublicKey
	keys []*rsa.PublicKey // in the order downloaded: tried after the configured ones
}

// certDownloads is a Client's download state.
type certDownloads struct {
	roots    *x509.CertPool // the parsable certificates of AlipayRootCert; nil: no download
	subject  string         // the common name a downloaded certificate must have (the configured one's)
	appPub   *rsa.PublicKey
	onAdd    func(CertKey)
	mu       sync.Mutex
	inflight map[string]chan struct{} // by SN
	failed   map[string]failedDownload
}

type failedDownload struct {
	err error
	at  time.Time
}

// downloadedKey returns the key of a downloaded certificate with that SN, or nil.
func (c *Client) downloadedKey(sn string) *rsa.PublicKey {
	if d := c.downloaded.Load(); d != nil {
		return d.bySN[sn]
	}
	return nil
}

// downloadedList returns the downloaded certificates' keys, nil when none.
func (c *Client) downloadedList() []*rsa.PublicKey {
	if d := c.downloaded.Load(); d != nil {
		return d.keys
	}
	return nil
}

// certKey returns the key of a trusted certificate (configured or downloaded) with that SN, or nil.
func (c *Client) certKey(sn string) *rsa.PublicKey {
	if k := c.alipayKeys[sn]; k != nil {
		return k
	}
	return c.downloadedKey(sn)
}

// ErrCertDownload is what the failures of a certificate download (FetchAlipayCert) are: each
// is a *CertDownloadError, which errors.Is matches to it.
var ErrCertDownload = errors.New("alipay: Alipay certificate download failed")

// CertDownloadError is a failed certificate download: the SN asked for and why.
type CertDownloadError struct {
	SN    string
	Cause string
	err   error // the cause's error, when there is one (a transport error, the context's)
}

func (e *CertDownloadError) Error() string {
	sn := ""
	if e.SN != "" {
		sn = " (SN " + quoteShort(e.SN) + ")"
	}
	return ErrCertDownload.Error() + sn + ": " + e.Cause
}

// Is makes errors.Is(err, ErrCertDownload) true.
func (e *CertDownloadError) Is(target error) bool { return target == ErrCertDownload }

// Unwrap returns the cause's error, if any.
func (e *CertDownloadError) Unwrap() error { return e.err }

// FetchAlipayCert downloads the Alipay certificate with that SN (alipay.open.app.alipaycert.download),
// checks it, and trusts it from then on for answers and notifications that name it, and for
// those that name none after the configured certificates (Alipay's next certificate, after a
// rotation the configured files do not have yet). Call does it by itself when an answer names an
// SN it does not know; a program calls it only to fetch a certificate ahead.
//
// The answer is not signed: the certificate is trusted only when it chains, at the client's
// clock, to a certificate of Config.AlipayRootCert (its intermediates taken from the download),
// its SN is the one asked for, its common name is the configured Alipay certificate's (every
// app's own certificate chains to the same roots, and names the app), and its key is RSA, not
// shorter than 2048 bits, and not the app's. One download at a time per SN; after a failure the SN
// is not asked for again for a minute (the error is returned again); at most 8 certificates are
// kept. Needs certificate mode with AlipayRootCert and a private key (or Signer), and
// Config.NoCertDownload unset. Errors wrap ErrCertDownload.
func (c *Client) FetchAlipayCert(ctx context.Context, sn string) error {
	d := c.dl
	if d == nil || d.roots == nil {
		return &CertDownloadError{SN: sn, Cause: "the client does not download certificates (certificate mode with AlipayRootCert and a private key, and NoCertDownload unset)"}
	}
	if c.certKey(sn) != nil {
		return nil
	}
	for {
		d.mu.Lock()
		if c.certKey(sn) != nil { // downloaded meanwhile (a reviewer's finding: downloaded twice)
			d.mu.Unlock()
			return nil
		}
		if f, ok := d.failed[sn]; ok && c.now().Sub(f.at) < certRetryAfter && c.now().Sub(f.at) >= 0 {
			d.mu.Unlock()
			return f.err
		}
		if ch := d.inflight[sn]; ch != nil {
			d.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return &CertDownloadError{SN: sn, Cause: ctx.Err().Error(), err: ctx.Err()}
			}
			if c.certKey(sn) != nil {
				return nil
			}
			continue // it failed: its error is in failed
		}
		if d.inflight == nil {
			d.inflight = map[string]chan struct{}{}
		}
		ch := make(chan struct{})
		d.inflight[sn] = ch
		d.mu.Unlock()

		ck, err := c.downloadCert(ctx, sn)
		if err == nil {
			err = c.addDownloaded(ck)
		}
		d.mu.Lock()
		delete(d.inflight, sn)
		switch {
		case err == nil:
			delete(d.failed, sn)
		case ctx.Err() == nil: // a caller's cancellation says nothing about the SN
			if d.failed == nil || len(d.failed) >= 64 {
				d.failed = map[string]failedDownload{}
			}
			d.failed[sn] = failedDownload{err, c.now()}
		}
		d.mu.Unlock()
		close(ch)
		if err == nil && d.onAdd != nil {
			d.onAdd(ck)
		}
		return err
	}
}

// addDownloaded trusts ck, within maxDownloadedCerts.
func (c *Client) addDownloaded(ck CertKey) error {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	old := c.downloaded.Load()
	if old != nil && old.bySN[ck.SN] != nil {
		return nil // kept already
	}
	next := &downloadedKeys{bySN: map[string]*rsa.PublicKey{}}
	if old != nil {
		if len(old.keys) >= maxDownloadedCerts {
			return &CertDownloadError{SN: ck.SN, Cause: fmt.Sprintf("%d certificates were downloaded already; update the configured Alipay certificate file and restart", maxDownloadedCerts)}
		}
		next.bySN = maps.Clone(old.bySN)
		next.keys = slices.Clone(old.keys)
	}
	next.bySN[ck.SN] = ck.Key
	next.keys = append(next.keys, ck.Key)
	c.downloaded.Store(next)
	return nil
}

// downloadCert asks for the certificate and checks it (FetchAlipayCert).
func (c *Client) downloadCert(ctx context.Context, sn string) (CertKey, error) {
	fail := func(format string, a ...any) (CertKey, error) {
		return CertKey{}, &CertDownloadError{SN: sn, Cause: fmt.Sprintf(format, a...)}
	}
	// Not recorded as the answer of the call that needed the certificate (WithRawResponse).
	body, err := c.send(rawresp.With(ctx, nil), MethodCertDownload, map[string]string{"alipay_cert_sn": sn}, nil)
	if err != nil {
		return CertKey{}, &CertDownloadError{SN: sn, Cause: strings.TrimPrefix(err.Error(), "alipay: "), err: err}
	}
	r, err := extractResponse(body, MethodCertDownload)
	if err != nil {
		return fail("%v", err)
	}
	var node struct {
		Code    string `json:"code"`
		Msg     string `json:"msg"`
		SubCode string `json:"sub_code"`
		SubMsg  string `json:"sub_msg"`
		Content string `json:"alipay_cert_content"`
	}
	if err := json.Unmarshal(r.Node, &node); err != nil {
		return fail("answer: %v", err)
	}
	if node.Code != "10000" {
		return fail("Alipay answered %s", (&Error{Code: node.Code, Msg: node.Msg, SubCode: node.SubCode, SubMsg: node.SubMsg}).Error())
	}
	pemBytes, err := base64.StdEncoding.DecodeString(node.Content)
	if err != nil {
		return fail("alipay_cert_content is not base64: %v", err)
	}
	ck, err := c.dl.check(pemBytes, sn, c.now())
	if err != nil {
		return fail("%v", err)
	}
	return ck, nil
}

// check finds the certificate with that SN among pemBytes and checks it (FetchAlipayCert).
func (d *certDownloads) check(pemBytes []byte, sn string, now time.Time) (CertKey, error) {
	blocks := certBlocks(pemBytes)
	if len(blocks) == 0 {
		return CertKey{}, errors.New("alipay_cert_content holds no certificate")
	}
	var leaf *x509.Certificate
	inter := x509.NewCertPool()
	for i, b := range blocks {
		got, _, err := certSNOf(b)
		if err != nil {
			return CertKey{}, fmt.Errorf("certificate %d: %v", i+1, err)
		}
		cert, err := x509.ParseCertificate(b)
		if err != nil {
			return CertKey{}, fmt.Errorf("certificate %d: %v", i+1, err)
		}
		if got == sn && leaf == nil {
			leaf = cert
		} else {
			inter.AddCert(cert)
		}
	}
	if leaf == nil {
		return CertKey{}, errors.New("no certificate in the answer has that SN")
	}
	if leaf.IsCA {
		return CertKey{}, errors.New("the certificate with that SN is a CA's")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: d.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return CertKey{}, fmt.Errorf("it does not verify against the configured Alipay root certificates: %v", err)
	}
	if leaf.Subject.CommonName != d.subject {
		return CertKey{}, fmt.Errorf("its common name %s is not the configured Alipay certificate's %s", quoteShort(leaf.Subject.CommonName), quoteShort(d.subject))
	}
	pub, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok {
		return CertKey{}, errors.New("its key is not RSA")
	}
	if pub.N.BitLen() < 2048 {
		return CertKey{}, errors.New("its key is shorter than 2048 bits")
	}
	if d.appPub != nil && pub.Equal(d.appPub) {
		return CertKey{}, errors.New("its key is the app's own")
	}
	return CertKey{SN: sn, Key: pub, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}, nil
}

// rootPool returns the certificates of an alipayRootCert.crt file that Go can parse (the SM2
// root cannot be), as a pool, or nil when none can.
func rootPool(pemBytes []byte) *x509.CertPool {
	pool := x509.NewCertPool()
	n := 0
	for _, b := range certBlocks(pemBytes) {
		if cert, err := x509.ParseCertificate(b); err == nil {
			pool.AddCert(cert)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	return pool
}

// unknownSN returns the alipay_cert_sn an answer names when the error is that it is not a
// trusted certificate's, else "".
func unknownSN(err error, body []byte, method string) string {
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Reason != ReasonUnknownSerial {
		return ""
	}
	r, rerr := extractResponse(body, method)
	if rerr != nil || r.CertSN == "" {
		return ""
	}
	return r.CertSN
}
