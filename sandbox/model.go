package sandbox

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/paynotify/paynotify/alipay"
)

// Providers.
const (
	ProviderAlipay    = "alipay"
	ProviderWechatpay = "wechatpay"
)

// StatusNotCreated is the sandbox's own status of an Alipay trade whose buyer has not opened the
// cashier (or scanned the code) yet: Alipay itself answers ACQ.TRADE_NOT_EXIST for it.
const StatusNotCreated = "NOT_CREATED"

// Trade is one simulated trade, of either provider. Status is the provider's own trade status
// (Alipay WAIT_BUYER_PAY, TRADE_SUCCESS, TRADE_FINISHED, TRADE_CLOSED, or StatusNotCreated;
// WeChat Pay NOTPAY, SUCCESS, REFUND, CLOSED, PAYERROR). Amounts are fen.
type Trade struct {
	ID             int64     `json:"id"`
	Provider       string    `json:"provider"`
	AppID          string    `json:"app_id"`
	MchID          string    `json:"mchid,omitempty"`
	SellerID       string    `json:"seller_id,omitempty"`
	OutTradeNo     string    `json:"out_trade_no"`
	TradeNo        string    `json:"trade_no,omitempty"` // Alipay trade_no or WeChat transaction_id, set once created/paid
	Product        string    `json:"product"`            // alipay: app, page, wap, precreate; wechatpay: native, app, jsapi, h5
	Status         string    `json:"status"`
	Amount         int64     `json:"amount"`
	RefundedAmount int64     `json:"refunded_amount"`
	Subject        string    `json:"subject,omitempty"`
	Body           string    `json:"body,omitempty"`
	NotifyURL      string    `json:"notify_url,omitempty"`
	ReturnURL      string    `json:"return_url,omitempty"`
	Charset        string    `json:"charset,omitempty"`
	SignType       string    `json:"sign_type,omitempty"`
	Passback       string    `json:"passback,omitempty"` // passback_params (Alipay) or attach (WeChat)
	PayerOpenID    string    `json:"payer_openid,omitempty"`
	PrepayID       string    `json:"prepay_id,omitempty"`
	CodeURL        string    `json:"code_url,omitempty"`
	Token          string    `json:"token"` // the cashier link's token
	CashierURL     string    `json:"cashier_url,omitempty"`
	TimeExpire     time.Time `json:"time_expire,omitzero"`
	TimeoutExpress string    `json:"timeout_express,omitempty"`
	BuyerID        string    `json:"buyer_id,omitempty"`
	BuyerLogonID   string    `json:"buyer_logon_id,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	OpenedAt       time.Time `json:"opened_at,omitzero"`
	PaidAt         time.Time `json:"paid_at,omitzero"`
	ClosedAt       time.Time `json:"closed_at,omitzero"`
	// DoublePay is the second, separate payment of this out_trade_no that the double_pay fault
	// recorded when the buyer paid, or nil. Everything else in the trade (Status, TradeNo, PaidAt,
	// refunds) is the first payment's, which queries by out_trade_no keep answering.
	DoublePay *Payment `json:"double_pay,omitempty"`
	// Request is the verified business request the trade came from, for idempotency checks.
	Request map[string]string `json:"request,omitempty"`
}

// Payment is the second payment of a trade made by the double_pay fault: the same out_trade_no
// and amount as the trade, paid again under its own provider trade number. It is notified like
// any payment and can be queried by its trade number; it cannot be refunded or closed.
type Payment struct {
	TradeNo string    `json:"trade_no"` // Alipay trade_no or WeChat transaction_id, not the trade's own
	Amount  int64     `json:"amount"`
	PaidAt  time.Time `json:"paid_at"`
}

// secondPayment returns the trade as its double_pay payment stands on its own: that payment's
// trade number, amount and time, paid, nothing refunded. t.DoublePay must be set.
func (t *Trade) secondPayment() *Trade {
	c := *t
	p := t.DoublePay
	c.TradeNo, c.Amount, c.PaidAt, c.OpenedAt = p.TradeNo, p.Amount, p.PaidAt, p.PaidAt
	c.RefundedAmount, c.ClosedAt, c.DoublePay = 0, time.Time{}, nil
	c.Status = wxSuccess
	if t.Provider == ProviderAlipay {
		c.Status = alipay.TradeSuccess
	}
	return &c
}

// Refund is one refund of a trade. OutRequestNo is Alipay's out_request_no or WeChat's
// out_refund_no. Status: Alipay REFUND_SUCCESS; WeChat PROCESSING, SUCCESS, CLOSED, ABNORMAL.
type Refund struct {
	ID           int64     `json:"id"`
	TradeID      int64     `json:"trade_id"`
	Provider     string    `json:"provider"`
	OutTradeNo   string    `json:"out_trade_no"`
	OutRequestNo string    `json:"out_request_no"`
	RefundID     string    `json:"refund_id,omitempty"`
	Amount       int64     `json:"amount"`
	RefundFee    int64     `json:"refund_fee"` // Alipay: the cumulative refunded amount after this refund
	Status       string    `json:"status"`
	Reason       string    `json:"reason,omitempty"`
	NotifyURL    string    `json:"notify_url,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	SucceededAt  time.Time `json:"succeeded_at,omitzero"`
}

// Notification statuses.
const (
	NotePending    = "pending"    // waiting for its next attempt
	NoteAcked      = "acked"      // the merchant acknowledged it
	NoteExhausted  = "exhausted"  // the schedule ran out unacknowledged
	NoteSuppressed = "suppressed" // never sent (the never_notify fault)
	NoteHeld       = "held"       // held back until another notification was sent (reorder, double_pay)
)

// Notification is one asynchronous notification and its delivery state. Body is built (and for
// Alipay signed) once: every attempt sends the same bytes, with the same notify_id / id. WeChat
// headers are signed afresh for each attempt.
type Notification struct {
	ID             int64            `json:"id"`
	TradeID        int64            `json:"trade_id"`
	Provider       string           `json:"provider"`
	OutTradeNo     string           `json:"out_trade_no"`
	Kind           string           `json:"kind"`       // payment, refund, close, finish
	NotifyID       string           `json:"notify_id"`  // Alipay notify_id, WeChat envelope id
	EventType      string           `json:"event_type"` // Alipay trade_status, WeChat event_type
	OutRequestNo   string           `json:"out_request_no,omitempty"`
	URL            string           `json:"url"`
	ContentType    string           `json:"content_type"`
	Body           []byte           `json:"body"`
	BodyText       string           `json:"body_text"`
	Status         string           `json:"status"`
	Schedule       string           `json:"schedule"`
	Faults         Faults           `json:"faults"`
	Attempts       int              `json:"attempts"` // scheduled attempts made (duplicates not counted)
	CreatedAt      time.Time        `json:"created_at"`
	FirstAttemptAt time.Time        `json:"first_attempt_at,omitzero"`
	NextAt         time.Time        `json:"next_at,omitzero"`
	Offsets        []Duration       `json:"offsets"` // the schedule, unscaled
	Extra          map[string]int64 `json:"extra,omitempty"`
	// TradeNo is the provider trade number the notification is about: the trade's, or for the
	// second payment of the double_pay fault, that payment's.
	TradeNo string `json:"trade_no,omitempty"`
	// DoublePay marks the notification of the second payment made by the double_pay fault.
	DoublePay bool `json:"double_pay,omitempty"`
	// AfterID, when set, holds the notification (status held) until notification AfterID has
	// made its first attempt: the second payment of double_pay follows the first.
	AfterID int64 `json:"after_id,omitempty"`
	// WechatpaySerial is the Wechatpay-Serial a WeChat notification is signed under, by the
	// merchant's platform key mode when it was built ("": the public key id).
	WechatpaySerial string `json:"wechatpay_serial,omitempty"`
}

// Attempt is one HTTP delivery of a notification to the merchant, or one the sandbox decided not
// to send (Fault "dropped"). Offset is the real time since the notification's first attempt;
// ScheduledOffset is the unscaled schedule offset it stands for.
type Attempt struct {
	ID              int64             `json:"id"`
	NotificationID  int64             `json:"notification_id"`
	TradeID         int64             `json:"trade_id"`
	Provider        string            `json:"provider"`
	OutTradeNo      string            `json:"out_trade_no"`
	NotifyID        string            `json:"notify_id"`
	Kind            string            `json:"kind"`
	N               int               `json:"n"`    // 1-based position in the schedule
	Copy            int               `json:"copy"` // 0, or the number of a duplicate copy
	At              time.Time         `json:"at"`
	Offset          Duration          `json:"offset"`
	ScheduledOffset Duration          `json:"scheduled_offset"`
	URL             string            `json:"url"`
	RequestHeaders  map[string]string `json:"request_headers,omitempty"`
	RequestBody     []byte            `json:"request_body,omitempty"`
	Status          int               `json:"status"`
	Response        string            `json:"response,omitempty"`
	Latency         Duration          `json:"latency"`
	Error           string            `json:"error,omitempty"`
	Acked           bool              `json:"acked"`
	Fault           string            `json:"fault,omitempty"`
}

// Faults are the misbehaviours the sandbox can inject, globally or for one out_trade_no (a
// trade's non-zero fields win over the global ones). They are copied into each notification
// when it is created.
type Faults struct {
	// Duplicate sends every acknowledged notification this many more times, one after another.
	Duplicate int `json:"duplicate,omitempty" yaml:"duplicate,omitempty"`
	// ConcurrentDuplicate sends the first attempt this many more times at the same moment.
	ConcurrentDuplicate int `json:"concurrent_duplicate,omitempty" yaml:"concurrent_duplicate,omitempty"`
	// Delay holds the first attempt back this long (real time, not scaled).
	Delay Duration `json:"delay,omitempty" yaml:"delay,omitempty"`
	// DropFirst drops the first N scheduled attempts (recorded, never sent): the merchant sees
	// the notification first at attempt N+1 of the schedule.
	DropFirst int `json:"drop_first,omitempty" yaml:"drop_first,omitempty"`
	// Reorder holds the payment notification back until the next notification of the trade
	// (a refund, a close) has been sent once: a refund arrives before the payment.
	Reorder bool `json:"reorder,omitempty" yaml:"reorder,omitempty"`
	// NeverNotify pays without ever notifying the payment ("paid but never notified").
	NeverNotify bool `json:"never_notify,omitempty" yaml:"never_notify,omitempty"`
	// WrongAmount adds one fen to the amounts of the notification, properly signed.
	WrongAmount bool `json:"wrong_amount,omitempty" yaml:"wrong_amount,omitempty"`
	// WrongAppID replaces the app id (Alipay app_id and auth_app_id, WeChat appid), properly signed.
	WrongAppID bool `json:"wrong_app_id,omitempty" yaml:"wrong_app_id,omitempty"`
	// BadSignature sends every attempt with a signature that does not verify.
	BadSignature bool `json:"bad_signature,omitempty" yaml:"bad_signature,omitempty"`
	// Charset makes Alipay notifications use this charset ("GBK"), whatever the request's.
	Charset string `json:"charset,omitempty" yaml:"charset,omitempty"`
	// SigntestProbe makes the first N WeChat attempts WECHATPAY/SIGNTEST/ probes.
	SigntestProbe int `json:"signtest_probe,omitempty" yaml:"signtest_probe,omitempty"`
	// Timeout is how long the sandbox waits for the merchant's answer (default 5s, or the
	// Config.HTTPClient's timeout); a slower answer is a failed attempt.
	Timeout Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	// LenientAck also accepts SUCCESS in any case as an Alipay acknowledgement (Antom style).
	LenientAck bool `json:"lenient_ack,omitempty" yaml:"lenient_ack,omitempty"`
	// Schedule picks the retry schedule: "alipay" (0,4m,14m,…), "alipay-2m" (0,2m,12m,…),
	// "wechatpay"; empty, or one of another provider's, is the provider's default.
	Schedule string `json:"schedule,omitempty" yaml:"schedule,omitempty"`
	// ManualRefund keeps WeChat refunds PROCESSING until completed through the control API.
	ManualRefund bool `json:"manual_refund,omitempty" yaml:"manual_refund,omitempty"`
	// DoublePay makes the buyer's payment count twice: besides the trade's own payment, the
	// sandbox records a second, separate payment of the same out_trade_no and amount under another
	// provider trade number (Trade.DoublePay) and notifies it too, properly signed, once the first
	// payment's notification has made its first attempt. Queries by out_trade_no keep answering
	// the first payment.
	DoublePay bool `json:"double_pay,omitempty" yaml:"double_pay,omitempty"`
	// Query falsifies the answers to queries by out_trade_no (Alipay alipay.trade.query, WeChat
	// GET …/out-trade-no/{no}) of trades that exist: QueryFaultBadSignature,
	// QueryFaultWrongOutTradeNo, QueryFaultWrongAppID (WeChat only: Alipay's answer carries no app
	// id, so it changes nothing there) or QueryFaultWrongAmount. Empty: answers are true.
	Query string `json:"query,omitempty" yaml:"query,omitempty"`

	// The legacy Alipay faults (provider alipay-legacy; legacy.go). BadSignature, NeverNotify,
	// WrongAmount, WrongAppID (there: another seller_id and seller_email), Charset, DoublePay and
	// the delivery faults apply to legacy notifications too.
	//
	// LegacySignature signs legacy notifications wrongly, each way a verifier must refuse:
	// "sorted_order" (a WAP notification signed over the sorted string, not the fixed order),
	// "ciphertext" (a 0001 WAP notification signed over the encrypted notify_data; no effect on
	// MD5 or mapi) or "gbk_as_utf8" (a GBK body signed over the UTF-8 bytes of the same text).
	LegacySignature string `json:"legacy_signature,omitempty" yaml:"legacy_signature,omitempty"`
	// NotifyVerify falsifies notify_verify for the trade's notify_ids: "false", "invalid", or
	// "timeout" (no answer: the call is held until the caller gives up, at most 30 s, then the
	// connection is closed).
	NotifyVerify string `json:"notify_verify,omitempty" yaml:"notify_verify,omitempty"`
	// NotifyVerifyTimes limits NotifyVerify to the first N calls for each notify_id (0: all), so a
	// retried notification can then be confirmed.
	NotifyVerifyTimes int `json:"notify_verify_times,omitempty" yaml:"notify_verify_times,omitempty"`
	// DuplicateFields sends legacy notifications with a field twice, the same value both times:
	// total_fee (mapi) or notify_data (WAP). The signature is right for either copy.
	DuplicateFields bool `json:"duplicate_fields,omitempty" yaml:"duplicate_fields,omitempty"`
}

// validate rejects fault values the sandbox does not know.
func (f Faults) validate() error {
	// Counts and times in bounds: each notification of the trade is sent, retried and kept
	// with them (a negative copy count crashed the notifier, again at each start, as the faults
	// are kept with the notification; a huge one flooded the merchant).
	for _, c := range []struct {
		name string
		n    int
	}{{"duplicate", f.Duplicate}, {"concurrent_duplicate", f.ConcurrentDuplicate}, {"drop_first", f.DropFirst},
		{"signtest_probe", f.SigntestProbe}} {
		if c.n < 0 || c.n > maxFaultCount {
			return fmt.Errorf("%w: %s: %d is not within 0..%d", errBadAction, c.name, c.n, maxFaultCount)
		}
	}
	for _, c := range []struct {
		name string
		d    Duration
	}{{"delay", f.Delay}, {"timeout", f.Timeout}} {
		if c.d < 0 || time.Duration(c.d) > maxFaultWait {
			return fmt.Errorf("%w: %s: %s is not within 0..%s", errBadAction, c.name, time.Duration(c.d), maxFaultWait)
		}
	}
	if f.Schedule != "" {
		if _, ok := schedules[f.Schedule]; !ok {
			return fmt.Errorf("%w: unknown schedule %q (want alipay, alipay-2m, alipay-legacy or wechatpay)", errBadAction, f.Schedule)
		}
	}
	if f.Query != "" && !queryFaults[f.Query] {
		return fmt.Errorf("%w: unknown query fault %q (want bad_signature, wrong_out_trade_no, wrong_app_id or wrong_amount)", errBadAction, f.Query)
	}
	return validateLegacyFaults(f)
}

// The bounds of the faults' counts and times (Faults.validate).
const (
	maxFaultCount = 100
	maxFaultWait  = 10 * time.Minute
)

// merge returns f with o's non-zero fields laid over it.
func (f Faults) merge(o Faults) Faults {
	if o.Duplicate != 0 {
		f.Duplicate = o.Duplicate
	}
	if o.ConcurrentDuplicate != 0 {
		f.ConcurrentDuplicate = o.ConcurrentDuplicate
	}
	if o.Delay != 0 {
		f.Delay = o.Delay
	}
	if o.DropFirst != 0 {
		f.DropFirst = o.DropFirst
	}
	f.Reorder = f.Reorder || o.Reorder
	f.NeverNotify = f.NeverNotify || o.NeverNotify
	f.WrongAmount = f.WrongAmount || o.WrongAmount
	f.WrongAppID = f.WrongAppID || o.WrongAppID
	f.BadSignature = f.BadSignature || o.BadSignature
	f.LenientAck = f.LenientAck || o.LenientAck
	f.ManualRefund = f.ManualRefund || o.ManualRefund
	f.DoublePay = f.DoublePay || o.DoublePay
	if o.Query != "" {
		f.Query = o.Query
	}
	if o.Charset != "" {
		f.Charset = o.Charset
	}
	if o.SigntestProbe != 0 {
		f.SigntestProbe = o.SigntestProbe
	}
	if o.Timeout != 0 {
		f.Timeout = o.Timeout
	}
	if o.Schedule != "" {
		f.Schedule = o.Schedule
	}
	return mergeLegacyFaults(f, o)
}

// Duration is a time.Duration written as a Go duration string ("1.5s") in JSON and YAML; JSON
// numbers are read as nanoseconds.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("duration: want a string like \"1.5s\"")
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// UnmarshalText reads a duration string (YAML).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// Retry schedules: offsets of each attempt from the first.
var schedules = map[string][]time.Duration{
	// Alipay's Chinese docs: 4m, 10m, 10m, 1h, 2h, 6h, 15h (the default; docs/alipay.md,
	// "Notification retries").
	"alipay": {0, 4 * time.Minute, 14 * time.Minute, 24 * time.Minute, 84 * time.Minute, 204 * time.Minute, 564 * time.Minute, 1464 * time.Minute},
	// Antom's docs and an older Chinese copy: 2m, then the same intervals.
	"alipay-2m": {0, 2 * time.Minute, 12 * time.Minute, 22 * time.Minute, 82 * time.Minute, 202 * time.Minute, 562 * time.Minute, 1462 * time.Minute},
	// WeChat Pay: 16 deliveries over 24h4m (docs/wechatpay.md, "Notification retries").
	"wechatpay": secs(0, 15, 30, 60, 240, 840, 2040, 3840, 5640, 7440, 11040, 21840, 32640, 43440, 65040, 86640),
}

func secs(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, s := range v {
		out[i] = time.Duration(s) * time.Second
	}
	return out
}

// scheduleFits reports whether the named schedule is one of provider's: a global schedule fault
// ("alipay-2m") picks among Alipay's two and leaves WeChat Pay's notifications on their own.
func scheduleFits(name, provider string) bool {
	if provider == ProviderWechatpay {
		return name == "wechatpay"
	}
	return name == "alipay" || name == "alipay-2m"
}

// Schedule returns the offsets (from the first attempt, unscaled) of the named retry schedule:
// "alipay", "alipay-2m" or "wechatpay".
func Schedule(name string) ([]time.Duration, bool) {
	s, ok := schedules[name]
	return append([]time.Duration(nil), s...), ok
}
