package wechatpay

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	wire "github.com/paynotify/paynotify/internal/wechatpaywire"
)

// certificatesResponse is the answer of GET /v3/certificates (and what a simulator serves).
type certificatesResponse struct {
	Data []encryptedCertificate `json:"data"`
}

// encryptedCertificate is one platform certificate of certificatesResponse: its PEM encrypted
// with the APIv3 key (associated data "certificate").
type encryptedCertificate struct {
	SerialNo           string   `json:"serial_no"`
	EffectiveTime      string   `json:"effective_time"`
	ExpireTime         string   `json:"expire_time"`
	EncryptCertificate Resource `json:"encrypt_certificate"`
}

// DownloadCertificates fetches the platform certificates: GET /v3/certificates, each decrypted
// with the APIv3 key and checked (the PEM parses, its serial equals serial_no, it is valid now).
// The answer's signature must verify with a key already known or, on first use, with one of the
// downloaded certificates (the APIv3-key encryption is what authenticates them then). It does not
// install them: RefreshCertificates does.
func (c *Client) DownloadCertificates(ctx context.Context) ([]*x509.Certificate, error) {
	status, h, body, err := c.send(ctx, http.MethodGet, "/v3/certificates", nil)
	if err != nil {
		return nil, err
	}
	var resp certificatesResponse
	if err := decodeAnswer(http.MethodGet, "/v3/certificates", status, body, &resp); err != nil {
		return nil, err
	}
	now := c.now()
	var certs []*x509.Certificate
	for _, ec := range resp.Data {
		pt, err := openGCM(c.aead, ec.EncryptCertificate.Nonce, ec.EncryptCertificate.AssociatedData, ec.EncryptCertificate.Ciphertext)
		if err != nil || ec.EncryptCertificate.Algorithm != algorithm {
			return nil, verifyErr(ErrDecrypt, CheckDecrypt, "certificate %s does not decrypt with the APIv3 key", ec.SerialNo)
		}
		cert, err := ParseCertificate(pt)
		if err != nil {
			return nil, verifyErr(ErrMalformed, CheckDecode, "certificate %s: %v", ec.SerialNo, err)
		}
		if CertificateSerial(cert) != ec.SerialNo {
			return nil, verifyErr(ErrMalformed, CheckDecode, "certificate serial %s differs from serial_no %s", CertificateSerial(cert), ec.SerialNo)
		}
		if now.Before(cert.NotBefore) || !now.Before(cert.NotAfter) {
			continue // not yet or no longer valid
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, verifyErr(ErrMalformed, CheckDecode, "no currently valid certificate in the answer")
	}
	// Verify the answer with the known keys, else with the downloaded certificates.
	ks := c.keys.Load()
	if ks.lookup(h.Get(wire.HeaderSerial)) == nil {
		boot := &keySet{pubID: ks.pubID, pub: ks.pub, certs: map[string]*x509.Certificate{}}
		for _, cert := range certs {
			boot.certs[CertificateSerial(cert)] = cert
		}
		ks = boot
	}
	if verr := c.verifyWith(ks, h, body); verr != nil {
		return nil, verr
	}
	return certs, nil
}

// RefreshCertificates downloads the platform certificates and installs them, keeping the known
// certificates that have not expired (both sign during a rotation) and those of
// Config.PlatformCerts even once expired (a kept notification is verified again as at its
// arrival, when the certificate that signed it was valid). Concurrent calls download one
// after the other, each once (the refreshes a notification or an answer starts are at most one
// a minute). The network call holds no lock that verification takes: verifiers keep reading the
// previous snapshot until the new one is swapped in atomically.
func (c *Client) RefreshCertificates(ctx context.Context) error {
	select {
	case c.refresh <- struct{}{}:
		defer func() { <-c.refresh }()
	case <-ctx.Done():
		return ctx.Err()
	}
	certs, err := c.DownloadCertificates(ctx)
	if err != nil {
		return err
	}
	now := c.now()
	for {
		old := c.keys.Load()
		ks := &keySet{pubID: old.pubID, pub: old.pub, certs: map[string]*x509.Certificate{}}
		for s, cert := range old.certs {
			if now.Before(cert.NotAfter) || c.configured[s] {
				ks.certs[s] = cert
			}
		}
		for _, cert := range certs {
			if _, ok := cert.PublicKey.(*rsa.PublicKey); ok {
				ks.certs[CertificateSerial(cert)] = cert
			}
		}
		if c.keys.CompareAndSwap(old, ks) {
			return nil
		}
	}
}

// DefaultRefreshInterval is how often RunCertificateRefresher downloads certificates.
const DefaultRefreshInterval = 12 * time.Hour

// RunCertificateRefresher refreshes the platform certificates now and then every interval
// (DefaultRefreshInterval when ≤ 0), sooner when a known certificate expires within two
// intervals, retrying failures after a minute (doubling up to interval). onError, if not nil,
// receives each failure. It returns when ctx is done. Not needed in public-key-only mode.
func (c *Client) RunCertificateRefresher(ctx context.Context, interval time.Duration, onError func(error)) {
	if interval <= 0 {
		interval = DefaultRefreshInterval
	}
	backoff := time.Minute
	for {
		wait := interval
		if err := c.RefreshCertificates(ctx); err != nil {
			if errors.Is(err, ctx.Err()) && ctx.Err() != nil {
				return
			}
			if onError != nil {
				onError(fmt.Errorf("wechatpay: refresh certificates: %w", err))
			}
			wait = min(backoff, interval)
			backoff *= 2
		} else {
			backoff = time.Minute
			wait = c.refreshWait(interval)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// refreshWait is how long the refresher waits after a refresh that worked: interval, or half of
// what is left of a certificate that expires within two intervals (a minute at least). Not for
// one that has expired: configured ones are kept after their expiry (RefreshCertificates), and
// one of them made the refresher download every minute for ever (a reviewer helper's finding).
func (c *Client) refreshWait(interval time.Duration) time.Duration {
	wait := interval
	for _, cert := range c.keys.Load().certs {
		if left := cert.NotAfter.Sub(c.now()); left > 0 && left < 2*interval {
			wait = max(min(wait, left/2), time.Minute)
		}
	}
	return wait
}

// MissRefreshInterval is the least time between two certificate downloads triggered by unknown
// serials (VerifyNotificationRequest), so that forged serials cannot make the server hammer the API.
const MissRefreshInterval = time.Minute

// verifyNotificationContext is VerifyNotification, except that in certificate mode an unknown
// certificate serial (not a PUB_KEY_ID_…) triggers one RefreshCertificates and one retry, as
// WeChat Pay prescribes for a rotation that the periodic refresh has not seen yet. Such
// downloads happen at most once per MissRefreshInterval and need the merchant key; the
// verification itself still holds no lock.
func (c *Client) verifyNotificationContext(ctx context.Context, h http.Header, body []byte) (*Notification, error) {
	n, err := c.VerifyNotification(h, body)
	var ve *VerifyError
	if err == nil || !errors.As(err, &ve) || ve.Reason != ReasonUnknownSerial || c.signer == nil ||
		strings.HasPrefix(h.Get(wire.HeaderSerial), wire.PublicKeyIDPrefix) {
		return n, err
	}
	if !c.missRefreshDue() {
		return n, err
	}
	if rerr := c.RefreshCertificates(ctx); rerr != nil {
		return n, err
	}
	return c.VerifyNotification(h, body)
}

// missRefreshDue tells whether a refresh for an unknown serial may run now (at most one per
// MissRefreshInterval, across the Clients of WithClock), and if so claims it.
func (c *Client) missRefreshDue() bool {
	now := c.now().UnixNano()
	last := c.lastMissRefresh.Load()
	return now-last >= int64(MissRefreshInterval) && c.lastMissRefresh.CompareAndSwap(last, now)
}

// RefreshAfterMiss starts RefreshCertificates in the background, bounded by timeout, when err is
// a VerifyError for an unknown certificate serial (not a PUB_KEY_ID_…) and a merchant key is
// configured, at most once per MissRefreshInterval: for a server that answers the notification
// at once and verifies WeChat Pay's retry (15 seconds later) with the certificates downloaded
// meanwhile, instead of waiting for the periodic refresh. It reports whether it started one;
// done, when not nil, is called with the refresh's result.
func (c *Client) RefreshAfterMiss(err error, h http.Header, timeout time.Duration, done func(error)) bool {
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Reason != ReasonUnknownSerial || c.signer == nil ||
		strings.HasPrefix(h.Get(wire.HeaderSerial), wire.PublicKeyIDPrefix) || !c.missRefreshDue() {
		return false
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		rerr := c.RefreshCertificates(ctx)
		if done != nil {
			done(rerr)
		}
	}()
	return true
}
