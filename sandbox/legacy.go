package sandbox

// The legacy Alipay merchant protocols (docs/alipay-legacy.md): the mapi gateway
// (create_direct_pay_by_user, trade_create_by_buyer, create_partner_trade_by_buyer, notify_verify)
// and the old WAP pair (alipay.wap.trade.create.direct → request_token →
// alipay.wap.auth.authAndExecute). Everything legacy lives in the legacy_*.go files; the modern
// code only calls in through a few hooks (routes, Act, tradeFromURL, CreateOrder, the notifier).
//
// Routes:
//
//	/sandbox/alipay-legacy/gateway.do              mapi gateway: pay services (cashier page) and
//	                                               service=notify_verify (text/plain true|false|invalid)
//	/sandbox/alipay-legacy/trade/notify_query.do   notify_verify, transport=http form
//	/sandbox/alipay-legacy/cooperate/gateway.do    notify_verify, 2.0 demo form (same as gateway.do)
//	/sandbox/alipay-legacy/wap/rest.htm            old WAP gateway (token request, authAndExecute)
//	/sandbox/alipay-legacy/cashier/{token}         the legacy cashier (GET page, POST …/{action})
//	/sandbox/api/alipay-legacy/partners            POST: register a partner
//	/sandbox/api/alipay-legacy/pay                 POST {"url": …}: pay like a browser, answer the return URL
//
// The simulator is an independent implementation of docs/alipay-legacy.md: its canonical strings,
// MD5 and RSA-SHA1 signatures and `0001` encryption are written here, not taken from a
// merchant-side library, so that it can serve as a test oracle for one.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/paynotify/paynotify/alipay"
)

// ProviderAlipayLegacy is the provider of the legacy Alipay trades (mapi and old WAP), their
// notifications and attempts.
const ProviderAlipayLegacy = "alipay-legacy"

// Products of legacy trades (Trade.Product).
const (
	LegacyProductDirect = "direct" // create_direct_pay_by_user (即时到账), alipay.wap.create.direct.pay.by.user
	LegacyProductDual   = "dual"   // trade_create_by_buyer (标准双接口)
	LegacyProductEscrow = "escrow" // create_partner_trade_by_buyer (纯担保交易)
	LegacyProductWap    = "wap"    // alipay.wap.trade.create.direct + alipay.wap.auth.authAndExecute
)

// Escrow trade statuses (docs/alipay-legacy.md §9.2), besides WAIT_BUYER_PAY, TRADE_SUCCESS,
// TRADE_FINISHED and TRADE_CLOSED.
const (
	LegacyWaitSellerSendGoods   = "WAIT_SELLER_SEND_GOODS"
	LegacyWaitBuyerConfirmGoods = "WAIT_BUYER_CONFIRM_GOODS"
)

// Values of Faults.LegacySignature.
const (
	LegacySigSortedOrder = "sorted_order" // WAP notification signed over the sorted string
	LegacySigCiphertext  = "ciphertext"   // 0001 WAP notification signed over the encrypted notify_data
	LegacySigGBKAsUTF8   = "gbk_as_utf8"  // GBK body signed over the UTF-8 bytes of the same text
)

// Values of Faults.NotifyVerify.
const (
	NotifyVerifyFalse   = "false"   // notify_verify answers false
	NotifyVerifyInvalid = "invalid" // notify_verify answers invalid
	NotifyVerifyTimeout = "timeout" // notify_verify never answers (see Faults.NotifyVerify)
)

var (
	legacySigFaults    = map[string]bool{LegacySigSortedOrder: true, LegacySigCiphertext: true, LegacySigGBKAsUTF8: true}
	legacyVerifyFaults = map[string]bool{NotifyVerifyFalse: true, NotifyVerifyInvalid: true, NotifyVerifyTimeout: true}
)

// validateLegacyFaults rejects unknown values of the legacy fault fields.
func validateLegacyFaults(f Faults) error {
	if f.LegacySignature != "" && !legacySigFaults[f.LegacySignature] {
		return fmt.Errorf("%w: unknown legacy_signature fault %q (want sorted_order, ciphertext or gbk_as_utf8)", errBadAction, f.LegacySignature)
	}
	if f.NotifyVerify != "" && !legacyVerifyFaults[f.NotifyVerify] {
		return fmt.Errorf("%w: unknown notify_verify fault %q (want false, invalid or timeout)", errBadAction, f.NotifyVerify)
	}
	if f.NotifyVerifyTimes < 0 {
		return fmt.Errorf("%w: notify_verify_times must not be negative", errBadAction)
	}
	return nil
}

// mergeLegacyFaults lays o's non-zero legacy fields over f's.
func mergeLegacyFaults(f, o Faults) Faults {
	if o.LegacySignature != "" {
		f.LegacySignature = o.LegacySignature
	}
	if o.NotifyVerify != "" {
		f.NotifyVerify = o.NotifyVerify
	}
	if o.NotifyVerifyTimes != 0 {
		f.NotifyVerifyTimes = o.NotifyVerifyTimes
	}
	f.DuplicateFields = f.DuplicateFields || o.DuplicateFields
	return f
}

func init() {
	// docs/alipay-legacy.md §9.6: 8 deliveries within 25 hours at 2m, 10m, 10m, 1h, 2h, 6h, 15h
	// (the list the sandbox plays): the same offsets as the modern "alipay-2m" schedule. Legacy
	// notifications use it unless Faults.Schedule names another of Alipay's ("alipay").
	schedules[ProviderAlipayLegacy] = schedules["alipay-2m"]
}

// legacyKeyring holds the legacy keys of one sandbox: the "Alipay" mapi/WAP RSA-1024 key (signs
// notifications, returns and token answers), the default partner's RSA-1024 key pair (signs its
// requests; its public key encrypts `0001` data) and MD5 key.
type legacyKeyring struct {
	alipay      *rsa.PrivateKey
	merchant    *rsa.PrivateKey
	md5Key      string
	partner     string
	sellerEmail string
}

// loadOrCreateLegacyKeys reads the legacy keys from dir, generating whatever is missing.
func loadOrCreateLegacyKeys(dir string) (*legacyKeyring, error) {
	k := &legacyKeyring{}
	var err error
	if k.alipay, err = loadOrCreateRSA1024(filepath.Join(dir, "legacy_alipay_private_key.pem")); err != nil {
		return nil, err
	}
	if k.merchant, err = loadOrCreateRSA1024(filepath.Join(dir, "legacy_merchant_private_key.pem")); err != nil {
		return nil, err
	}
	if k.md5Key, err = loadOrCreateString(filepath.Join(dir, "legacy_md5_key"), func() string { return randFrom("0123456789abcdefghijklmnopqrstuvwxyz", 32) }); err != nil {
		return nil, err
	}
	if !legacyMD5KeyRE.MatchString(k.md5Key) {
		return nil, errors.New("sandbox: legacy_md5_key must hold 32 characters [0-9a-z]")
	}
	if k.partner, err = loadOrCreateString(filepath.Join(dir, "legacy_partner"), func() string { return "2088" + randDigits(12) }); err != nil {
		return nil, err
	}
	if !legacyPartnerRE.MatchString(k.partner) {
		return nil, errors.New("sandbox: legacy_partner must be 2088 and 12 digits")
	}
	if k.sellerEmail, err = loadOrCreateString(filepath.Join(dir, "legacy_seller_email"), func() string { return "seller" + randDigits(6) + "@sandbox.example" }); err != nil {
		return nil, err
	}
	return k, nil
}

// loadOrCreateRSA1024 loads a PEM private key, or generates a 1024-bit one: the legacy SDKs
// hard-code the 128-byte blocks of a 1024-bit key for `0001` (docs/alipay-legacy.md §2, §7).
func loadOrCreateRSA1024(path string) (*rsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := alipay.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("sandbox: %s: %w", filepath.Base(path), err)
		}
		if k.Size() != legacyBlock {
			return nil, fmt.Errorf("sandbox: %s: a legacy key must be 1024 bits", filepath.Base(path))
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sandbox: read key: %w", err)
	}
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		return nil, fmt.Errorf("sandbox: generate key: %w", err)
	}
	if err := writeFileAtomic(path, privatePEM(k)); err != nil {
		return nil, err
	}
	return k, nil
}

func privatePKCS1PEM(k *rsa.PrivateKey) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}))
}

// fillLegacyKeys sets the legacy fields of Keys.
func (s *Sandbox) fillLegacyKeys(out *Keys) {
	k := s.keys.legacy
	out.LegacyPartner = k.partner
	out.LegacySellerEmail = k.sellerEmail
	out.LegacyMD5Key = k.md5Key
	out.LegacyAlipayPublicKey = publicPEM(&k.alipay.PublicKey)
	out.LegacyAlipayPublicKeyBase64 = publicBase64(&k.alipay.PublicKey)
	out.LegacyAlipayPrivateKey = string(privatePEM(k.alipay))
	out.LegacyMerchantPrivateKey = privatePKCS1PEM(k.merchant)
	out.LegacyMerchantPublicKey = publicPEM(&k.merchant.PublicKey)
}

var (
	legacyPartnerRE = regexp.MustCompile(`^2088[0-9]{12}$`)
	legacyMD5KeyRE  = regexp.MustCompile(`^[0-9a-z]{32}$`)
)

// legacyPartner is a registered legacy merchant (PID). It signs with its MD5 key, its RSA key, or
// either: the sign_type (sec_id) of each request chooses.
type legacyPartner struct {
	Partner     string `json:"partner"`
	MD5Key      string `json:"md5_key,omitempty"`
	PublicKey   string `json:"public_key,omitempty"` // PEM of the merchant's RSA public key
	SellerEmail string `json:"seller_email,omitempty"`
	pub         *rsa.PublicKey
}

// legacyState is the in-memory part of the legacy simulator.
type legacyState struct {
	mu sync.Mutex
	// verifyCalls counts notify_verify calls per notify_id, for Faults.NotifyVerifyTimes.
	verifyCalls map[string]int
}

// initLegacy creates the legacy tables and registers the default partner. Called by New.
func (s *Sandbox) initLegacy() error {
	s.legacy = &legacyState{verifyCalls: map[string]int{}}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS legacy_partners (partner TEXT PRIMARY KEY, data TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS legacy_return_ids (notify_id TEXT PRIMARY KEY, data TEXT NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS notifications_notify_id ON notifications (json_extract(data, '$.notify_id'))`,
	} {
		if _, err := s.st.db.Exec(q); err != nil {
			return fmt.Errorf("sandbox: legacy schema: %w", err)
		}
	}
	k := s.keys.legacy
	return s.RegisterLegacyPartner(k.partner, k.md5Key, &k.merchant.PublicKey, k.sellerEmail)
}

// RegisterLegacyPartner registers (or replaces) a legacy Alipay partner (PID, "2088" + 12
// digits): requests signed MD5 are checked with md5Key (32 characters [0-9a-z]), requests signed
// RSA / sec_id 0001 with merchantPublicKey (which also encrypts its `0001` data, so for the WAP
// pair it must be 1024 bits). Either may be empty, not both. sellerEmail is its Alipay account
// (seller_email / seller_account_name); the partner is its seller_id.
func (s *Sandbox) RegisterLegacyPartner(partner, md5Key string, merchantPublicKey *rsa.PublicKey, sellerEmail string) error {
	if !legacyPartnerRE.MatchString(partner) {
		return errors.New("sandbox: partner must be 2088 and 12 digits")
	}
	if md5Key == "" && merchantPublicKey == nil {
		return errors.New("sandbox: a legacy partner needs an MD5 key, an RSA public key or both")
	}
	if md5Key != "" && !legacyMD5KeyRE.MatchString(md5Key) {
		return errors.New("sandbox: the MD5 key must be 32 characters [0-9a-z]")
	}
	p := legacyPartner{Partner: partner, MD5Key: md5Key, SellerEmail: sellerEmail}
	if merchantPublicKey != nil {
		p.PublicKey = publicPEM(merchantPublicKey)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.putKV("legacy_partners", "partner", partner, p)
}

func (s *Sandbox) legacyPartner(partner string) (*legacyPartner, error) {
	var p legacyPartner
	if err := s.st.getKV("legacy_partners", "partner", partner, &p); err != nil {
		return nil, err
	}
	if p.PublicKey != "" {
		pub, err := alipay.ParsePublicKey([]byte(p.PublicKey))
		if err != nil {
			return nil, err
		}
		p.pub = pub
	}
	return &p, nil
}

// legacyRoutes mounts the legacy endpoints. Called by routes.
func (s *Sandbox) legacyRoutes(m *http.ServeMux) {
	m.HandleFunc("/sandbox/alipay-legacy/gateway.do", s.handleLegacyGateway)
	m.HandleFunc("/sandbox/alipay-legacy/cooperate/gateway.do", s.handleLegacyGateway)
	m.HandleFunc("/sandbox/alipay-legacy/trade/notify_query.do", s.handleLegacyNotifyQuery)
	m.HandleFunc("/sandbox/alipay-legacy/wap/rest.htm", s.handleLegacyWap)
	m.HandleFunc("GET /sandbox/alipay-legacy/cashier/{token}", s.handleLegacyCashier)
	m.HandleFunc("POST /sandbox/alipay-legacy/cashier/{token}/{action}", s.handleLegacyCashierAction)
	m.HandleFunc("POST /sandbox/api/alipay-legacy/partners", s.apiRegisterLegacyPartner)
	m.HandleFunc("POST /sandbox/api/alipay-legacy/pay", s.apiLegacyPay)
}

func (s *Sandbox) apiRegisterLegacyPartner(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Partner     string `json:"partner"`
		MD5Key      string `json:"md5_key"`
		PublicKey   string `json:"public_key"`
		SellerEmail string `json:"seller_email"`
	}
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		apiError(w, 400, "bad JSON: %v", err)
		return
	}
	var pub *rsa.PublicKey
	if b.PublicKey != "" {
		var err error
		if pub, err = alipay.ParsePublicKey([]byte(b.PublicKey)); err != nil {
			apiError(w, 400, "public_key: %v", err)
			return
		}
	}
	if err := s.RegisterLegacyPartner(b.Partner, b.MD5Key, pub, b.SellerEmail); err != nil {
		apiError(w, 400, "%v", err)
		return
	}
	writeJSON(w, 200, map[string]any{"registered": b.Partner})
}

func (s *Sandbox) apiLegacyPay(w http.ResponseWriter, r *http.Request) {
	var req ActionRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		apiError(w, 400, "bad JSON: %v", err)
		return
	}
	t, ret, err := s.LegacyPay(req.URL)
	if err != nil {
		status := 409
		if errors.Is(err, errNotFound) {
			status = 404
		} else if errors.Is(err, errBadAction) {
			status = 400
		}
		apiError(w, status, "%v", err)
		return
	}
	writeJSON(w, 200, map[string]any{"trade": t, "return_url": ret})
}

// LegacyPay pays a legacy order through a running sandbox's control API (see Sandbox.LegacyPay)
// and returns the trade and the signed return_url / call_back_url ("" when the order has none).
func (c *Client) LegacyPay(ctx context.Context, payURL string) (*Trade, string, error) {
	var out struct {
		Trade     *Trade `json:"trade"`
		ReturnURL string `json:"return_url"`
	}
	err := c.do(ctx, http.MethodPost, "alipay-legacy/pay", ActionRequest{URL: payURL}, &out)
	return out.Trade, out.ReturnURL, err
}

// RegisterLegacyPartner registers a legacy partner with a running sandbox (see
// Sandbox.RegisterLegacyPartner); merchantPublicKeyPEM may be empty for an MD5-only partner.
func (c *Client) RegisterLegacyPartner(ctx context.Context, partner, md5Key, merchantPublicKeyPEM, sellerEmail string) error {
	body := map[string]string{"partner": partner, "md5_key": md5Key, "public_key": merchantPublicKeyPEM, "seller_email": sellerEmail}
	return c.do(ctx, http.MethodPost, "alipay-legacy/partners", body, nil)
}
