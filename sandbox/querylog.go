package sandbox

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/paynotify/paynotify/internal/wechatpaywire"
)

// The query-type APIs, as QueryRecord.API names them. The Alipay ones are the gateway's method
// names; the WeChat Pay ones name the APIv3 endpoints.
const (
	APIAlipayTradeQuery  = "alipay.trade.query"                // alipay.trade.query, by out_trade_no or trade_no
	APIAlipayRefundQuery = "alipay.trade.fastpay.refund.query" // alipay.trade.fastpay.refund.query
	APIAlipayClose       = "alipay.trade.close"                // alipay.trade.close
	APIWechatQuery       = "wechatpay.query"                   // GET /v3/pay/transactions/out-trade-no/{out_trade_no}
	APIWechatQueryByID   = "wechatpay.query_by_id"             // GET /v3/pay/transactions/id/{transaction_id}
	APIWechatRefundQuery = "wechatpay.refund_query"            // GET /v3/refund/domestic/refunds/{out_refund_no}
	APIWechatClose       = "wechatpay.close"                   // POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close
)

// The values of Faults.Query.
const (
	// QueryFaultBadSignature signs the answer so that it does not verify: Alipay's "sign", WeChat
	// Pay's Wechatpay-Signature header.
	QueryFaultBadSignature = "bad_signature"
	// QueryFaultWrongOutTradeNo answers, properly signed, with another out_trade_no
	// (wrongOutTradeNo).
	QueryFaultWrongOutTradeNo = "wrong_out_trade_no"
	// QueryFaultWrongAppID answers, properly signed, with another appid (WeChat Pay only: Alipay's
	// alipay.trade.query answer carries no app id, so there it changes nothing and is not recorded
	// as applied).
	QueryFaultWrongAppID = "wrong_app_id"
	// QueryFaultWrongAmount answers, properly signed, with every amount one fen higher.
	QueryFaultWrongAmount = "wrong_amount"
)

var queryFaults = map[string]bool{QueryFaultBadSignature: true, QueryFaultWrongOutTradeNo: true, QueryFaultWrongAppID: true, QueryFaultWrongAmount: true}

// Stand-ins that the wrong_app_id faults (of notifications and of query answers) put in place of
// the real app id, and the out_trade_no that wrong_out_trade_no answers with.
const (
	otherAlipayAppID = "2021000000009999"
	otherWechatAppID = "wx0000000000009999"
	otherOutTradeNo  = "sandbox_wrong_out_trade_no"
)

// wrongOutTradeNo is the out_trade_no a wrong_out_trade_no answer names instead of no: always
// different from no, and valid for both providers.
func wrongOutTradeNo(no string) string {
	if no == otherOutTradeNo {
		return otherOutTradeNo + "_2"
	}
	return otherOutTradeNo
}

// QueryRecord is one query-type API call the sandbox answered (the APIs are the API… constants),
// refused ones included: a reconciliation test counts and checks the queries a merchant server
// made. Records live in memory only.
type QueryRecord struct {
	// ID increases with every record for the life of the Sandbox (a reset does not restart it).
	ID       int64  `json:"id"`
	Provider string `json:"provider"`
	API      string `json:"api"`
	// AppID is the calling Alipay app_id; MchID the calling WeChat Pay mchid. For a request that
	// failed authentication they are what it claimed.
	AppID string `json:"app_id,omitempty"`
	MchID string `json:"mchid,omitempty"`
	// OutTradeNo is the out_trade_no asked for, or, for a query by trade_no / transaction_id,
	// the out_trade_no of the trade found. It is never the false one of a wrong_out_trade_no
	// answer.
	OutTradeNo string `json:"out_trade_no,omitempty"`
	// TradeNo is the provider trade number asked for, or the one of the trade found.
	TradeNo string `json:"trade_no,omitempty"`
	// OutRequestNo is the refund number of a refund query (Alipay out_request_no, WeChat
	// out_refund_no).
	OutRequestNo string `json:"out_request_no,omitempty"`
	// Result is the answer in short. For a success: the trade status answered (trade_status,
	// trade_state), the refund status of a refund query, or the trade's status after a close;
	// an Alipay refund query for a refund that does not exist succeeds without a status and is
	// recorded as "10000". For a failure: Alipay's sub_code (ACQ.TRADE_NOT_EXIST,
	// isv.invalid-signature, …) or WeChat Pay's code (ORDER_NOT_EXIST, SIGN_ERROR, …).
	Result string `json:"result"`
	// Failed says the answer was an error: Result is its code.
	Failed bool `json:"failed,omitempty"`
	// NotifyID is the notify_id a legacy notify_verify call asked about, as received (after one
	// URL decoding).
	NotifyID string `json:"notify_id,omitempty"`
	// Fault is the query fault applied to the answer (Faults.Query), if any.
	Fault string `json:"fault,omitempty"`
	// At is when the answer was made (Config.Now).
	At time.Time `json:"at"`
}

// QueryFilter selects query records: empty fields match everything.
type QueryFilter struct {
	Provider   string
	API        string
	OutTradeNo string
}

func (f QueryFilter) match(r *QueryRecord) bool {
	return (f.Provider == "" || r.Provider == f.Provider) && (f.API == "" || r.API == f.API) &&
		(f.OutTradeNo == "" || r.OutTradeNo == f.OutTradeNo)
}

// queryLogSize bounds the query log: the newest records are kept.
const queryLogSize = 200_000

// queryLog is the in-memory ring of the newest query records. It has a lock of its own, held
// only to append or copy: every query answer records one entry, and a durable write or a wait
// for Sandbox.mu per query would cap a reconciliation run's query rate.
type queryLog struct {
	mu     sync.Mutex
	max    int
	lastID int64
	recs   []QueryRecord // grows to max, then is a ring whose oldest entry is recs[head]
	head   int
}

func newQueryLog(max int) *queryLog { return &queryLog{max: max} }

// maxQueryField bounds what a record keeps of each text field: the fields are what a caller
// sent (a notify_id, an app_id claimed), and a field of the request's line kept the whole line
// alive; 200,000 records of long ids held hundreds of MB (a reviewer helper's measurement).
const maxQueryField = 128

// add stamps r with the next id and keeps a copy (each text field at most maxQueryField bytes,
// copied out of the request), dropping the oldest record when full.
func (l *queryLog) add(r *QueryRecord) {
	c := *r
	for _, f := range []*string{&c.Provider, &c.API, &c.AppID, &c.MchID, &c.OutTradeNo, &c.TradeNo, &c.OutRequestNo,
		&c.Result, &c.NotifyID, &c.Fault} {
		if len(*f) > maxQueryField {
			*f = (*f)[:maxQueryField]
		}
		*f = strings.Clone(*f)
	}
	l.mu.Lock()
	l.lastID++
	r.ID = l.lastID
	c.ID = r.ID
	if len(l.recs) < l.max {
		l.recs = append(l.recs, c)
	} else {
		l.recs[l.head] = c
		l.head = (l.head + 1) % l.max
	}
	l.mu.Unlock()
}

// list returns the records matching f, oldest first.
func (l *queryLog) list(f QueryFilter) []QueryRecord {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []QueryRecord{}
	for i := range l.recs {
		r := &l.recs[(l.head+i)%len(l.recs)]
		if f.match(r) {
			out = append(out, *r)
		}
	}
	return out
}

// forget drops the records of outTradeNo, or all of them when outTradeNo is "". Ids go on
// increasing.
func (l *queryLog) forget(outTradeNo string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if outTradeNo == "" {
		l.recs, l.head = nil, 0
		return
	}
	kept := make([]QueryRecord, 0, len(l.recs))
	for i := range l.recs {
		if r := l.recs[(l.head+i)%len(l.recs)]; r.OutTradeNo != outTradeNo {
			kept = append(kept, r)
		}
	}
	l.recs, l.head = kept, 0
}

// Queries returns the recorded query-type API calls matching f, oldest first. The log is kept in
// memory (the newest 200,000 calls) and does not survive a restart; Reset clears it.
func (s *Sandbox) Queries(f QueryFilter) []QueryRecord { return s.queries.list(f) }

// logQuery records rec (nil: not a query) before its answer is written, so a client that has the
// answer finds the record. Never called with s.mu held.
func (s *Sandbox) logQuery(rec *QueryRecord) {
	if rec == nil {
		return
	}
	rec.At = s.now()
	s.queries.add(rec)
}

// logAlipayQuery records rec answered with aerr (nil: a success, Result already set).
func (s *Sandbox) logAlipayQuery(rec *QueryRecord, aerr *alipayErr) {
	if rec != nil && aerr != nil {
		rec.Result, rec.Failed = aerr.subCode, true
		if rec.Result == "" {
			rec.Result = aerr.code
		}
	}
	s.logQuery(rec)
}

// logWxQuery records rec answered with e (nil: a success, Result already set).
func (s *Sandbox) logWxQuery(rec *QueryRecord, e *wxError) {
	if rec != nil && e != nil {
		rec.Result, rec.Failed = e.code, true
	}
	s.logQuery(rec)
}

// alipayQueryAPIs are the gateway methods the query log records.
var alipayQueryAPIs = map[string]bool{APIAlipayTradeQuery: true, APIAlipayRefundQuery: true, APIAlipayClose: true}

// newAlipayQueryRecord starts the record of a query-type gateway call from its raw parameters,
// as asked (nothing is verified yet), or returns nil for other methods.
func newAlipayQueryRecord(raw map[string]string) *QueryRecord {
	if !alipayQueryAPIs[raw["method"]] {
		return nil
	}
	rec := &QueryRecord{Provider: ProviderAlipay, API: raw["method"], AppID: raw["app_id"]}
	var b struct {
		OutTradeNo   string `json:"out_trade_no"`
		TradeNo      string `json:"trade_no"`
		OutRequestNo string `json:"out_request_no"`
	}
	if json.Unmarshal([]byte(raw["biz_content"]), &b) == nil {
		rec.OutTradeNo, rec.TradeNo, rec.OutRequestNo = b.OutTradeNo, b.TradeNo, b.OutRequestNo
	}
	return rec
}

// newWxQueryRecord starts the record of a WeChat Pay query-type call, with the mchid its
// Authorization claims (verified later, or not).
func newWxQueryRecord(r *http.Request, api string) *QueryRecord {
	rec := &QueryRecord{Provider: ProviderWechatpay, API: api}
	if a, err := wechatpaywire.ParseAuthorization(r.Header.Get("Authorization")); err == nil {
		rec.MchID = a.MchID
	}
	return rec
}

// applyQueryFault returns t as a query by out_trade_no answers it under the query fault set for
// it: a copy with another out_trade_no, app id or amount, or t itself with badSig (sign the
// answer so that it does not verify). applied is the fault applied, "" for none.
func (s *Sandbox) applyQueryFault(t *Trade) (answer *Trade, badSig bool, applied string) {
	q := s.faultsFor(t.OutTradeNo).Query
	c := *t
	switch q {
	case QueryFaultBadSignature:
		return t, true, q
	case QueryFaultWrongOutTradeNo:
		c.OutTradeNo = wrongOutTradeNo(t.OutTradeNo)
	case QueryFaultWrongAppID:
		if t.Provider == ProviderAlipay {
			return t, false, "" // alipay.trade.query answers carry no app id
		}
		c.AppID = otherWechatAppID
	case QueryFaultWrongAmount:
		c.Amount++
	default:
		return t, false, ""
	}
	return &c, false, q
}

// doublePayment finds the second payment of the double_pay fault by its trade number, as a trade
// of its own. key is the trades' lookup key: the Alipay app_id or the WeChat mchid.
func (s *Sandbox) doublePayment(provider, key, tradeNo string) (*Trade, error) {
	if tradeNo == "" {
		return nil, errNotFound
	}
	t, err := s.st.tradeWhere("WHERE provider = ? AND app_id = ? AND json_extract(data, '$.double_pay.trade_no') = ?", provider, key, tradeNo)
	if err != nil {
		return nil, err
	}
	return t.secondPayment(), nil
}
