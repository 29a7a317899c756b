// Package sandbox is a stateful local simulator of Alipay (gateway.do OpenAPI) and WeChat Pay
// (APIv3), faithful where bytes matter: requests are verified with the registered merchant keys,
// responses, notifications and return redirects are signed with the sandbox's own throw-away
// provider keys, notifications are retried on the providers' real schedules (compressed by
// Config.TimeScale), every delivery attempt is recorded, and faults can be injected per trade or
// globally. The protocol facts it follows are in docs/alipay.md and docs/wechatpay.md;
// docs/sandbox.md describes how to point a merchant integration at it.
//
// Everything is served under /sandbox/ by Sandbox.Handler:
//
//	/sandbox/alipay/gateway.do            the Alipay gateway (API methods, page and wap pay cashier)
//	/sandbox/alipay/cashier/{token}       the Alipay cashier (page/wap pay, precreate QR code)
//	/sandbox/alipay/app-sdk               stand-in for the Alipay app SDK (orderString → resultStatus)
//	/sandbox/wechatpay/v3/…               the WeChat Pay APIv3 endpoints
//	/sandbox/wechatpay/pay                the WeChat payer's page (code_url, prepay_id, h5)
//	/sandbox/alipay-legacy/…              legacy Alipay: mapi gateway.do, old WAP rest.htm (legacy.go)
//	/sandbox/api/…                        the JSON control API
//	/sandbox/                             an index of recent trades
package sandbox

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paynotify/paynotify/alipay"
)

// Config configures a Sandbox. The zero value of each optional field selects its default.
type Config struct {
	// StateDir holds the keys and the sandbox's SQLite state (created 0700, files 0600). Required.
	StateDir string
	// BaseURL is the absolute URL where Handler is reachable, e.g. "http://127.0.0.1:8080", without
	// a trailing slash: cashier links, QR codes and return redirects are built from it. Required.
	BaseURL string
	// TimeScale divides notification retry delays only (1000 turns 4 minutes into 240 ms). Signed
	// timestamps always use the real clock. Defaults to 1.
	TimeScale float64
	// HTTPClient sends notifications to merchants. Defaults to a client with a 5-second timeout
	// (WeChat Pay's limit) that does not follow redirects.
	HTTPClient *http.Client
	// Logger receives the sandbox's logs. Defaults to slog.Default().
	Logger *slog.Logger
	// Now is the clock of trades and signed timestamps. Defaults to time.Now.
	Now func() time.Time
}

// Sandbox simulates Alipay and WeChat Pay. It is safe for concurrent use.
type Sandbox struct {
	cfg     Config
	keys    *keyring
	st      *store
	log     *slog.Logger
	handler http.Handler // the routes, the control API behind CrossOriginProtection (Handler)

	// mu serialises every state change (trades, refunds, notifications).
	mu sync.Mutex

	// changed is closed and replaced whenever an attempt is recorded or a notification changes,
	// so waiters (WaitAttempts, the control API's long-poll) wake without sleeping.
	chMu    sync.Mutex
	changed chan struct{}
	// stopping is closed by StopLongPolls (under chMu).
	stopping chan struct{}

	n *notifier

	// queries is the in-memory query log, under its own lock.
	queries *queryLog

	// signHook, when set (tests only), runs just before a query answer is signed.
	signHook atomic.Pointer[func()]

	// legacy is the in-memory state of the legacy Alipay simulator (legacy.go).
	legacy *legacyState
}

// New opens (or creates) the state under cfg.StateDir, loading the sandbox's keys or generating
// them on first use, and registers the default Alipay app and WeChat Pay merchant.
func New(cfg Config) (*Sandbox, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("sandbox: StateDir is required")
	}
	if cfg.BaseURL == "" {
		return nil, errors.New("sandbox: BaseURL is required")
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if cfg.TimeScale <= 0 {
		cfg.TimeScale = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{
			Timeout:       5 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: state dir: %w", err)
	}
	keys, err := loadOrCreateKeys(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	st, err := openStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	s := &Sandbox{cfg: cfg, keys: keys, st: st, log: cfg.Logger.With("component", "sandbox"), changed: make(chan struct{}),
		queries: newQueryLog(queryLogSize)}
	s.n = newNotifier(s)
	if err := s.RegisterAlipayApp(keys.appID, &keys.appKey.PublicKey, keys.sellerID); err != nil {
		st.close()
		return nil, err
	}
	if err := s.RegisterWechatMerchant(keys.mchID, keys.mchAppID, keys.mchSerial, &keys.merchantKey.PublicKey); err != nil {
		st.close()
		return nil, err
	}
	if err := s.initLegacy(); err != nil {
		st.close()
		return nil, err
	}
	s.routes()
	return s, nil
}

// Handler serves every path under /sandbox/ (full paths, e.g. /sandbox/alipay/gateway.do), and
// the WeChat Pay APIv3 at its real paths /v3/…: mount it at "/sandbox/" and "/v3/".
//
// On the control API (/sandbox/api/), a browser's cross-origin request that changes something (a
// POST, PUT or DELETE from another site's page) is refused with 403 (net/http's
// CrossOriginProtection): any page a developer opens could otherwise drive the sandbox running
// on their machine, create and pay orders and have signed notifications sent where it says.
// Calls from programs (no Origin or Sec-Fetch-Site header), same-origin pages and safe methods
// pass; the provider-facing paths take cross-origin posts, as a gateway does.
func (s *Sandbox) Handler() http.Handler { return s.handler }

// Start runs the notifier until ctx ends. Notifications pending from an earlier run resume.
// Trades can be created before Start; their notifications go out once it runs.
func (s *Sandbox) Start(ctx context.Context) { s.n.run(ctx) }

// Close closes the state. Call it after the context given to Start has ended.
func (s *Sandbox) Close() error {
	s.n.wait()
	return s.st.close()
}

// Keys returns what a merchant configuration needs: the provider public keys, the APIv3 key, and
// the default app and merchant with their generated key pairs.
func (s *Sandbox) Keys() Keys {
	k := s.keys
	out := Keys{
		AlipayPublicKey:           publicPEM(&k.alipay.PublicKey),
		AlipayPublicKeyBase64:     publicBase64(&k.alipay.PublicKey),
		AlipayAppID:               k.appID,
		AlipaySellerID:            k.sellerID,
		AlipayAppPrivateKey:       string(privatePEM(k.appKey)),
		AlipayAppPublicKey:        publicPEM(&k.appKey.PublicKey),
		WechatPlatformPublicKey:   publicPEM(&k.platform.PublicKey),
		WechatPlatformPublicKeyID: k.pubKeyID,
		WechatPlatformCertificate: string(k.platformCertPEM),
		WechatPlatformCertSerial:  k.certSerial,
		WechatAPIv3Key:            string(k.apiv3Key),
		WechatMchID:               k.mchID,
		WechatAppID:               k.mchAppID,
		WechatMerchantSerialNo:    k.mchSerial,
		WechatMerchantPrivateKey:  string(privatePEM(k.merchantKey)),
		WechatMerchantPublicKey:   publicPEM(&k.merchantKey.PublicKey),
		AlipayRootCert:            string(k.certs.rootPEM),
		AlipayAppCert:             string(k.certs.appPEM),
		AlipayRootCertSN:          k.certs.rootSN,
	}
	alipayCert, alipaySN := k.certs.current()
	out.AlipayCert, out.AlipayCertSN = string(alipayCert), alipaySN
	out.AlipayAppCertSN = k.certs.appPEMSN
	s.fillLegacyKeys(&out)
	return out
}

// alipayApp is a registered Alipay application.
type alipayApp struct {
	AppID     string `json:"app_id"`
	PublicKey string `json:"public_key"` // PEM
	SellerID  string `json:"seller_id"`
	pub       *rsa.PublicKey
}

// wechatMerchant is a registered WeChat Pay merchant and the appids bound to it.
type wechatMerchant struct {
	MchID     string   `json:"mchid"`
	AppIDs    []string `json:"appids"`
	SerialNo  string   `json:"serial_no"`
	PublicKey string   `json:"public_key"` // PEM
	// PlatformKeyMode is how the merchant verifies WeChat Pay: PlatformKeyPublicKey (or "") or
	// PlatformKeyCertificate.
	PlatformKeyMode string `json:"platform_key_mode,omitempty"`
	pub             *rsa.PublicKey
}

// Platform key modes of a WeChat Pay merchant: which key WeChat Pay signs notifications and API
// answers with, named in Wechatpay-Serial. The sandbox's platform certificate is over the same
// key as its WeChat Pay public key; the modes differ in the serial sent (PUB_KEY_ID_… or the
// certificate's serial), which is what a merchant's SDK looks its key up by.
const (
	PlatformKeyPublicKey   = "public_key"  // 微信支付公钥: Wechatpay-Serial PUB_KEY_ID_… (the default)
	PlatformKeyCertificate = "certificate" // 平台证书: Wechatpay-Serial the certificate's serial
)

// SetWechatPlatformKeyMode sets the platform key mode of a registered merchant.
func (s *Sandbox) SetWechatPlatformKeyMode(mchID, mode string) error {
	if mode != PlatformKeyPublicKey && mode != PlatformKeyCertificate {
		return fmt.Errorf("sandbox: platform_key_mode %q: want %q or %q", mode, PlatformKeyPublicKey, PlatformKeyCertificate)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var m wechatMerchant
	if err := s.st.getKV("wechat_merchants", "mch_id", mchID, &m); err != nil {
		return fmt.Errorf("sandbox: merchant %s: %w", mchID, err)
	}
	m.PlatformKeyMode = mode
	return s.st.putKV("wechat_merchants", "mch_id", mchID, m)
}

// wxSerial is the Wechatpay-Serial the sandbox signs with for merchant mchID: its platform
// certificate's serial in certificate mode, else the public key id.
func (s *Sandbox) wxSerial(mchID string) string {
	if mchID != "" {
		if m, err := s.wechatMerchant(mchID); err == nil && m.PlatformKeyMode == PlatformKeyCertificate {
			return s.keys.certSerial
		}
	}
	return s.keys.pubKeyID
}

// RegisterAlipayApp registers (or replaces) an Alipay application: requests signed for appID are
// verified with appPublicKey; sellerID (2088…) is the seller of its trades (generated when empty).
func (s *Sandbox) RegisterAlipayApp(appID string, appPublicKey *rsa.PublicKey, sellerID string) error {
	if appID == "" || appPublicKey == nil {
		return errors.New("sandbox: app id and app public key are required")
	}
	if sellerID == "" {
		var old alipayApp
		if err := s.st.getKV("alipay_apps", "app_id", appID, &old); err == nil && old.SellerID != "" {
			sellerID = old.SellerID
		} else {
			sellerID = "2088" + randDigits(12)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.putKV("alipay_apps", "app_id", appID, alipayApp{AppID: appID, PublicKey: publicPEM(appPublicKey), SellerID: sellerID})
}

// RegisterWechatMerchant registers (or updates) a WeChat Pay merchant: requests with mchid mchID
// must name serialNo and verify with merchantPublicKey; appID is bound to the merchant (several
// appids can be bound by registering each). Its platform key mode is kept (PlatformKeyPublicKey
// for a new merchant): see SetWechatPlatformKeyMode.
func (s *Sandbox) RegisterWechatMerchant(mchID, appID, serialNo string, merchantPublicKey *rsa.PublicKey) error {
	if mchID == "" || appID == "" || serialNo == "" || merchantPublicKey == nil {
		return errors.New("sandbox: mchid, appid, serial and merchant public key are required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var m wechatMerchant
	if err := s.st.getKV("wechat_merchants", "mch_id", mchID, &m); err != nil && !errors.Is(err, errNotFound) {
		return err
	}
	m.MchID, m.SerialNo, m.PublicKey = mchID, serialNo, publicPEM(merchantPublicKey)
	found := false
	for _, a := range m.AppIDs {
		found = found || a == appID
	}
	if !found {
		m.AppIDs = append(m.AppIDs, appID)
	}
	return s.st.putKV("wechat_merchants", "mch_id", mchID, m)
}

func (s *Sandbox) alipayApp(appID string) (*alipayApp, error) {
	var a alipayApp
	if err := s.st.getKV("alipay_apps", "app_id", appID, &a); err != nil {
		return nil, err
	}
	pub, err := alipay.ParsePublicKey([]byte(a.PublicKey))
	if err != nil {
		return nil, err
	}
	a.pub = pub
	return &a, nil
}

func (s *Sandbox) wechatMerchant(mchID string) (*wechatMerchant, error) {
	var m wechatMerchant
	if err := s.st.getKV("wechat_merchants", "mch_id", mchID, &m); err != nil {
		return nil, err
	}
	pub, err := alipay.ParsePublicKey([]byte(m.PublicKey))
	if err != nil {
		return nil, err
	}
	m.pub = pub
	return &m, nil
}

// SetFaults sets the faults of one out_trade_no, or the global faults when outTradeNo is "".
// The zero Faults clears them. An unknown value (Faults.Query) is refused.
func (s *Sandbox) SetFaults(outTradeNo string, f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	scope := scopeOf(outTradeNo)
	s.mu.Lock()
	defer s.mu.Unlock()
	if f == (Faults{}) {
		return s.st.deleteKV("faults", "scope", scope)
	}
	return s.st.putKV("faults", "scope", scope, f)
}

// GetFaults returns the faults set for outTradeNo ("" for the global ones), not merged.
func (s *Sandbox) GetFaults(outTradeNo string) (Faults, error) {
	var f Faults
	err := s.st.getKV("faults", "scope", scopeOf(outTradeNo), &f)
	if errors.Is(err, errNotFound) {
		err = nil
	}
	return f, err
}

func scopeOf(outTradeNo string) string {
	if outTradeNo == "" {
		return "*"
	}
	return "trade:" + outTradeNo
}

// faultsFor returns the global faults with outTradeNo's laid over them.
func (s *Sandbox) faultsFor(outTradeNo string) Faults {
	g, _ := s.GetFaults("")
	t, _ := s.GetFaults(outTradeNo)
	return g.merge(t)
}

// notifyChanged wakes every waiter.
func (s *Sandbox) notifyChanged() {
	s.chMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.chMu.Unlock()
}

// StopLongPolls makes every long-poll of the API (GET /sandbox/api/attempts?wait=) answer now,
// and later ones not wait: call it when a graceful shutdown begins, so that shutdown does not
// wait out their up to 10 minutes.
func (s *Sandbox) StopLongPolls() {
	ch := s.stopped()
	s.chMu.Lock()
	defer s.chMu.Unlock()
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// stopped returns the channel StopLongPolls closes.
func (s *Sandbox) stopped() chan struct{} {
	s.chMu.Lock()
	defer s.chMu.Unlock()
	if s.stopping == nil {
		s.stopping = make(chan struct{})
	}
	return s.stopping
}

func (s *Sandbox) changedCh() <-chan struct{} {
	s.chMu.Lock()
	defer s.chMu.Unlock()
	return s.changed
}

// AttemptFilter selects attempts: empty fields match everything.
type AttemptFilter struct {
	Provider   string
	OutTradeNo string
	Kind       string
}

// Attempts returns the recorded delivery attempts matching f, oldest first.
func (s *Sandbox) Attempts(f AttemptFilter) ([]*Attempt, error) {
	where, args := "WHERE 1=1", []any{}
	if f.OutTradeNo != "" {
		where += " AND json_extract(data, '$.out_trade_no') = ?"
		args = append(args, f.OutTradeNo)
	}
	if f.Provider != "" {
		where += " AND json_extract(data, '$.provider') = ?"
		args = append(args, f.Provider)
	}
	if f.Kind != "" {
		where += " AND json_extract(data, '$.kind') = ?"
		args = append(args, f.Kind)
	}
	return s.st.attemptsWhere(where, args...)
}

// WaitAttempts waits until at least n attempts match f and returns them, or returns what there is
// with ctx's error when ctx ends first. Tests use it instead of sleeping.
func (s *Sandbox) WaitAttempts(ctx context.Context, f AttemptFilter, n int) ([]*Attempt, error) {
	return s.waitFor(ctx, func() ([]*Attempt, bool, error) {
		as, err := s.Attempts(f)
		return as, len(as) >= n, err
	})
}

// WaitAcked waits until n attempts matching f have been acknowledged.
func (s *Sandbox) WaitAcked(ctx context.Context, f AttemptFilter, n int) ([]*Attempt, error) {
	return s.waitFor(ctx, func() ([]*Attempt, bool, error) {
		as, err := s.Attempts(f)
		acked := 0
		for _, a := range as {
			if a.Acked {
				acked++
			}
		}
		return as, acked >= n, err
	})
}

func (s *Sandbox) waitFor(ctx context.Context, check func() ([]*Attempt, bool, error)) ([]*Attempt, error) {
	for {
		ch := s.changedCh()
		as, ok, err := check()
		if err != nil || ok {
			return as, err
		}
		select {
		case <-ctx.Done():
			return as, ctx.Err()
		case <-ch:
		}
	}
}

// Notifications returns the notifications of outTradeNo ("" for all), oldest first.
func (s *Sandbox) Notifications(outTradeNo string) ([]*Notification, error) {
	if outTradeNo == "" {
		return s.st.notificationsWhere("")
	}
	return s.st.notificationsWhere("WHERE json_extract(data, '$.out_trade_no') = ?", outTradeNo)
}

// Trades returns the trades, newest first; with outTradeNo, only those with that number.
func (s *Sandbox) Trades(provider, outTradeNo string) ([]*Trade, error) {
	where, args := "WHERE 1=1", []any{}
	if provider != "" {
		where += " AND provider = ?"
		args = append(args, provider)
	}
	if outTradeNo != "" {
		where += " AND out_trade_no = ?"
		args = append(args, outTradeNo)
	}
	return s.st.tradesWhere(where+" ORDER BY id DESC LIMIT 500", args...)
}

// Refunds returns the refunds of outTradeNo ("" for all).
func (s *Sandbox) Refunds(outTradeNo string) ([]*Refund, error) {
	if outTradeNo == "" {
		return s.st.refundsWhere("")
	}
	return s.st.refundsWhere("WHERE json_extract(data, '$.out_trade_no') = ?", outTradeNo)
}

// Reset deletes the trades, refunds, notifications, attempts, faults and query records (all, or
// those of outTradeNo); keys and registered apps stay.
func (s *Sandbox) Reset(outTradeNo string) error {
	s.queries.forget(outTradeNo)
	s.mu.Lock()
	defer s.mu.Unlock()
	if outTradeNo == "" {
		s.n.forgetAll()
		err := s.st.reset(nil)
		s.notifyChanged()
		return err
	}
	ts, err := s.st.tradesWhere("WHERE out_trade_no = ?", outTradeNo)
	if err != nil {
		return err
	}
	var ids []int64
	for _, t := range ts {
		ids = append(ids, t.ID)
		s.n.forgetTrade(t.ID)
	}
	if err := s.st.reset(ids); err != nil {
		return err
	}
	s.st.deleteKV("faults", "scope", scopeOf(outTradeNo))
	s.notifyChanged()
	return nil
}

func (s *Sandbox) now() time.Time { return s.cfg.Now() }
