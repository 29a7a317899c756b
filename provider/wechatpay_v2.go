package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/wechatpay"
)

// WechatV2 verifies APIv2 XML notifications at /notify/wechatpay-v2/{app}: payments signed with
// the APIv2 key (MD5 or HMAC-SHA256), and refunds whose req_info is encrypted under md5(APIv2 key).
// APIv2 messages carry no signed timestamp.
//
// A refund notification is not signed: req_info is AES-256-ECB, which authenticates nothing.
// Each 16-byte block decrypts on its own, so whoever holds one genuine notification of the
// merchant can drop or repeat blocks inside a long out_refund_no and get another valid req_info
// with every other field intact (a reviewer helper showed it on a ciphertext WeChat Pay issued).
// It is therefore only a hint: the refund it names is asked about with the signed APIv3 refund
// query, and that answer is the fact.
//
// The query is bounded, as anyone holding one captured notification can post it again and again
// (and altered, with other refund numbers): at most v2MaxQueries in flight (past them the
// notification is answered FAIL, verify_unavailable, and sent again later), one at a time per
// refund number (the others wait for its answer), a final answer (SUCCESS, CLOSED) remembered for
// v2AnswerTTL, and each within Timeout, under WeChat Pay's 5 s wait for the notification's answer
// (a reviewer of this change: a query of 6 s answered nothing, every retry alike).
type WechatV2 struct {
	APIKey []byte
	// Refunds confirms a refund notification (the app's *wechatpay.Client). Without it a refund
	// notification is answered FAIL (verify_unavailable).
	Refunds V2RefundQuerier
	// Timeout bounds that query; 0 means 3 s.
	Timeout time.Duration

	mu       sync.Mutex
	inflight map[string]*v2Query      // by out_refund_no
	answers  map[string]v2FinalAnswer // final answers, by out_refund_no
	queries  int                      // in flight
}

const (
	v2MaxQueries   = 4
	v2AnswerTTL    = 10 * time.Minute
	v2AnswersKept  = 1024
	v2QueryTimeout = 3 * time.Second
)

// v2Query is one refund query in flight; done closes when rf and err are set.
type v2Query struct {
	done chan struct{}
	rf   *wechatpay.Refund
	err  error
}

type v2FinalAnswer struct {
	rf *wechatpay.Refund
	at time.Time
}

// queryRefund asks WeChat Pay about refund no, within the bounds above.
func (v *WechatV2) queryRefund(no string) (*wechatpay.Refund, error) {
	now := time.Now()
	v.mu.Lock()
	if a, ok := v.answers[no]; ok && now.Sub(a.at) < v2AnswerTTL {
		v.mu.Unlock()
		return a.rf, nil
	}
	if q := v.inflight[no]; q != nil {
		v.mu.Unlock()
		<-q.done
		return q.rf, q.err
	}
	if v.queries >= v2MaxQueries {
		v.mu.Unlock()
		return nil, errV2Busy
	}
	if v.inflight == nil {
		v.inflight = map[string]*v2Query{}
	}
	q := &v2Query{done: make(chan struct{})}
	v.inflight[no] = q
	v.queries++
	v.mu.Unlock()

	// Released whatever happens (a panic in the query included: the slot and the waiters would
	// otherwise be held for good).
	defer func() {
		v.mu.Lock()
		delete(v.inflight, no)
		v.queries--
		if q.err == nil && q.rf.OutRefundNo == no && (q.rf.RefundStatus == "SUCCESS" || q.rf.RefundStatus == "CLOSED") {
			if v.answers == nil || len(v.answers) >= v2AnswersKept {
				v.answers = map[string]v2FinalAnswer{}
			}
			v.answers[no] = v2FinalAnswer{q.rf, now}
		}
		v.mu.Unlock()
		close(q.done)
	}()
	q.err = errV2NoAnswer // until the query returns
	timeout := v.Timeout
	if timeout <= 0 {
		timeout = v2QueryTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	q.rf, q.err = v.Refunds.QueryRefund(ctx, no)
	if q.err == nil && q.rf == nil {
		q.err = errV2NoAnswer
	}
	return q.rf, q.err
}

var errV2NoAnswer = errors.New("the refund query gave no answer")

var errV2Busy = errors.New("too many refund queries in flight: asked again at WeChat Pay's next delivery")

// V2RefundQuerier asks WeChat Pay about one refund by its out_refund_no, with a verified answer:
// (*wechatpay.Client).QueryRefund.
type V2RefundQuerier interface {
	QueryRefund(ctx context.Context, outRefundNo string) (*wechatpay.Refund, error)
}

// ReasonRefundUnconfirmed: an APIv2 refund notification whose req_info decrypted with the APIv2
// key, but whose refund WeChat Pay's signed refund query does not know (RESOURCE_NOT_EXISTS):
// an altered or forged req_info. Rejected, answered FAIL.
const ReasonRefundUnconfirmed = "refund_unconfirmed"

// v2IsRefund tells a refund notification (req_info, encrypted, and no sign) from a payment's: by
// its parsed fields, not by the bytes "<req_info>", which a payment's attach may hold. A body
// without those bytes is no refund and is not parsed here (the payment's verification parses it).
func v2IsRefund(body []byte) bool {
	if !bytes.Contains(body, []byte("<req_info>")) {
		return false
	}
	f, err := wechatpay.ParseV2XML(body)
	return err == nil && f["req_info"] != "" && f["sign"] == ""
}

// V2RefundClaim decrypts an APIv2 refund notification and checks its shape, as serve does before
// it asks WeChat Pay about the refund (paynotify verify wechatpay --v2, offline, stops here). Its
// fields are what the message claims: nothing in it is authenticated. Errors are
// *paynotify.RejectError.
func V2RefundClaim(body, apiKey []byte) (*wechatpay.V2RefundInfo, error) {
	n, err := wechatpay.ParseV2RefundNotification(body, apiKey)
	if err != nil {
		return nil, wechatReject(err)
	}
	in := n.Info
	if in.OutTradeNo == "" || in.OutRefundNo == "" {
		return nil, &paynotify.RejectError{Reason: paynotify.ReasonMalformed, Detail: "APIv2 refund without out_trade_no or out_refund_no", OutTradeNo: in.OutTradeNo}
	}
	switch in.RefundStatus {
	case "SUCCESS", "REFUNDCLOSE", "CHANGE":
	default:
		// Not acknowledged as if applied: WeChat Pay retries while someone looks.
		return nil, &paynotify.RejectError{Reason: paynotify.ReasonMalformed, OutTradeNo: in.OutTradeNo,
			Detail: fmt.Sprintf("APIv2 refund with refund_status %q, not one paynotify knows", paynotify.ClipText(in.RefundStatus, 64))}
	}
	return in, nil
}

// Verify turns a verified APIv2 notification into a fact.
func (v *WechatV2) Verify(_ http.Header, body []byte, _ time.Time) (paynotify.Fact, error) {
	if v2IsRefund(body) {
		return v.verifyRefund(body)
	}
	n, err := wechatpay.VerifyV2Notification(body, v.APIKey)
	if err != nil {
		return paynotify.Fact{}, wechatReject(err)
	}
	if n.AppID == "" || n.MchID == "" || n.OutTradeNo == "" {
		return paynotify.Fact{}, &paynotify.RejectError{Reason: paynotify.ReasonMalformed, Detail: "verified, but no appid, mch_id or out_trade_no", OutTradeNo: n.OutTradeNo}
	}
	f := paynotify.Fact{OutTradeNo: n.OutTradeNo, ProviderTradeNo: n.TransactionID, AppID: n.AppID, MchID: n.MchID,
		Amount: paynotify.Amount(n.TotalFee), HasAmount: true, Currency: n.FeeType, At: n.TimeEnd}
	if n.ReturnCode == "SUCCESS" && n.ResultCode == "SUCCESS" {
		// WeChat signs its APIv2 answers (orderquery, refund, unifiedorder…) with the same key and
		// in the same form: result_code SUCCESS there says the call worked, not that anyone paid.
		// Only the shape of a payment notification is a payment: a transaction id, a payment time,
		// a total, and no trade_state other than SUCCESS (an orderquery answer's NOTPAY).
		if st, ok := n.Fields["trade_state"]; ok && st != "SUCCESS" || n.TransactionID == "" || n.TimeEnd.IsZero() || n.TotalFee <= 0 {
			return paynotify.Fact{}, &paynotify.RejectError{Reason: paynotify.ReasonMalformed, OutTradeNo: n.OutTradeNo,
				Detail: "verified, but not a payment notification (no transaction_id, time_end or total_fee, or a trade_state other than SUCCESS: a signed API answer?)"}
		}
		f.Kind = paynotify.FactPaid
	} else {
		// A signed result_code FAIL: a payment that did not go through, which moves nothing.
		f.Kind = paynotify.FactIgnored
	}
	return f, nil
}

// verifyRefund asks WeChat Pay about the refund an APIv2 refund notification names and returns
// the fact of that signed answer (WechatRefundFact, as reconciliation applies it): the refund's
// state, amounts and order are WeChat Pay's, whatever req_info said. A signed RESOURCE_NOT_EXISTS
// rejects the notification (ReasonRefundUnconfirmed); a refund still PROCESSING at WeChat Pay, or
// a query without a verified answer, fails it so that WeChat Pay sends it again.
func (v *WechatV2) verifyRefund(body []byte) (paynotify.Fact, error) {
	in, err := V2RefundClaim(body, v.APIKey)
	if err != nil {
		return paynotify.Fact{}, err
	}
	unavailable := func(detail string) error {
		// The record's detail names the refund: the body is encrypted.
		return fmt.Errorf("%w: APIv2 refund %s: %w", paynotify.ErrVerifyUnavailable, in.OutRefundNo,
			&paynotify.RejectError{Reason: paynotify.ReasonVerifyUnavailable, OutTradeNo: in.OutTradeNo,
				Detail: fmt.Sprintf("APIv2 refund %q: %s", paynotify.ClipText(in.OutRefundNo, 64), detail)})
	}
	if v.Refunds == nil {
		return paynotify.Fact{}, unavailable("req_info is encrypted, not signed, and no API client is configured to confirm the refund with WeChat Pay's refund query")
	}
	rf, err := v.queryRefund(in.OutRefundNo)
	var we *wechatpay.Error
	switch {
	case errors.As(err, &we) && we.Signed && we.Code == "RESOURCE_NOT_EXISTS":
		return paynotify.Fact{}, &paynotify.RejectError{Reason: ReasonRefundUnconfirmed, OutTradeNo: in.OutTradeNo,
			Detail: fmt.Sprintf("req_info decrypted (refund %q of %q, %s), but WeChat Pay's signed refund query has no such refund: req_info is encrypted, not signed, and this one was altered or forged",
				paynotify.ClipText(in.OutRefundNo, 64), paynotify.ClipText(in.OutTradeNo, 64), paynotify.ClipText(in.RefundStatus, 16))}
	case err != nil:
		return paynotify.Fact{}, unavailable("the refund query that confirms it did not answer: " + err.Error())
	}
	if rf.OutRefundNo != in.OutRefundNo {
		return paynotify.Fact{}, unavailable(fmt.Sprintf("WeChat Pay's refund query for %q answered about refund %q",
			paynotify.ClipText(in.OutRefundNo, 64), paynotify.ClipText(rf.OutRefundNo, 64)))
	}
	f := WechatRefundFact(rf)
	if f.Kind == "" {
		return paynotify.Fact{}, unavailable(fmt.Sprintf("the notification says %s, WeChat Pay's refund query says %s: not settled yet",
			paynotify.ClipText(in.RefundStatus, 16), paynotify.ClipText(rf.RefundStatus, 16)))
	}
	return f, nil
}
