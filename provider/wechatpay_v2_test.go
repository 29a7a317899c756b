package provider_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/provider"
	"github.com/paynotify/paynotify/wechatpay"
)

// v2Signed is an APIv2 message whose MD5 signature this test computes by hand, from the fields
// sorted by name as WeChat's documentation says (string1 = k=v&…&key=KEY, MD5, upper-case hex),
// with crypto/md5 and not our signing code.
func v2Signed(key string, fields [][2]string) string {
	var sb, xml strings.Builder
	for _, f := range fields { // given in name order
		fmt.Fprintf(&sb, "%s=%s&", f[0], f[1])
		fmt.Fprintf(&xml, "<%s><![CDATA[%s]]></%s>", f[0], f[1], f[0])
	}
	sign := fmt.Sprintf("%X", md5.Sum([]byte(sb.String()+"key="+key)))
	return "<xml>" + xml.String() + "<sign><![CDATA[" + sign + "]]></sign></xml>"
}

// TestWechatV2_OnlyNotificationsPay: WeChat signs its APIv2 answers with the notifications' key
// and form. An orderquery answer about an unpaid order (result_code SUCCESS, trade_state NOTPAY)
// or a refund call's answer, posted to the notification URL, is no payment; a payment
// notification is.
func TestWechatV2_OnlyNotificationsPay(t *testing.T) {
	const key = "192006250b4c09247ec02edce69f6a2d"
	v := &provider.WechatV2{APIKey: []byte(key)}
	common := [][2]string{{"appid", "wx2421b1c4370ec43b"}, {"mch_id", "10000100"}, {"nonce_str", "IITRi8Iabbblz1Jc"}}
	with := func(extra ...[2]string) [][2]string {
		all := append(append([][2]string{}, common...), extra...)
		for i := range all { // name order
			for j := i + 1; j < len(all); j++ {
				if all[j][0] < all[i][0] {
					all[i], all[j] = all[j], all[i]
				}
			}
		}
		return all
	}
	for _, c := range []struct {
		name   string
		fields [][2]string
		paid   bool
	}{
		{"Notification", with([2]string{"return_code", "SUCCESS"}, [2]string{"result_code", "SUCCESS"}, [2]string{"out_trade_no", "1409811653"},
			[2]string{"transaction_id", "1004400740201409030005092168"}, [2]string{"total_fee", "1"}, [2]string{"time_end", "20140903131540"},
			[2]string{"openid", "oUpF8uMEb4qRXf22hE3X68TekukE"}, [2]string{"trade_type", "JSAPI"}), true},
		{"OrderQueryNotPaid", with([2]string{"return_code", "SUCCESS"}, [2]string{"return_msg", "OK"}, [2]string{"result_code", "SUCCESS"},
			[2]string{"out_trade_no", "1409811653"}, [2]string{"trade_state", "NOTPAY"}, [2]string{"trade_state_desc", "订单未支付"},
			[2]string{"total_fee", "1"}), false},
		{"OrderQueryNotPaidWithTransaction", with([2]string{"return_code", "SUCCESS"}, [2]string{"result_code", "SUCCESS"},
			[2]string{"out_trade_no", "1409811653"}, [2]string{"trade_state", "USERPAYING"}, [2]string{"transaction_id", "1004400740201409030005092168"},
			[2]string{"time_end", "20140903131540"}, [2]string{"total_fee", "1"}), false},
		{"RefundAnswer", with([2]string{"return_code", "SUCCESS"}, [2]string{"result_code", "SUCCESS"}, [2]string{"out_trade_no", "1409811653"},
			[2]string{"transaction_id", "1004400740201409030005092168"}, [2]string{"out_refund_no", "R1"}, [2]string{"refund_id", "5000"},
			[2]string{"refund_fee", "1"}, [2]string{"total_fee", "1"}), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := v.Verify(nil, []byte(v2Signed(key, c.fields)), time.Now())
			if c.paid {
				if err != nil || f.Kind != paynotify.FactPaid || f.Amount != 1 || f.ProviderTradeNo == "" {
					t.Fatalf("payment notification: %+v, %v", f, err)
				}
				return
			}
			var rej *paynotify.RejectError
			if !errors.As(err, &rej) || rej.Reason != paynotify.ReasonMalformed || f.Kind == paynotify.FactPaid {
				t.Fatalf("a signed API answer: fact %+v, err %v; want rejected as malformed", f, err)
			}
		})
	}
}

// v2RefundBody is an APIv2 refund notification whose req_info holds plaintext, encrypted with
// the openssl command line (AES-256-ECB under the hex of md5(key), PKCS#7, base64).
func v2RefundBody(t *testing.T, key, plaintext string) []byte {
	t.Helper()
	sum := md5.Sum([]byte(key))
	cmd := exec.Command("openssl", "enc", "-aes-256-ecb", "-K", hex.EncodeToString([]byte(hex.EncodeToString(sum[:]))), "-a", "-A")
	cmd.Stdin = strings.NewReader(plaintext)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl enc: %v", err)
	}
	return []byte("<xml><return_code>SUCCESS</return_code><appid><![CDATA[wx2421b1c4370ec43b]]></appid><mch_id><![CDATA[10000100]]></mch_id>" +
		"<nonce_str><![CDATA[TeqClE3i0mvn3DrK]]></nonce_str><req_info><![CDATA[" + strings.TrimSpace(string(out)) + "]]></req_info></xml>")
}

// refundQuery plays the verified answer of WeChat Pay's refund query (V2RefundQuerier).
type refundQuery struct {
	answer *wechatpay.Refund
	err    error
	asked  []string
}

func (q *refundQuery) QueryRefund(_ context.Context, no string) (*wechatpay.Refund, error) {
	q.asked = append(q.asked, no)
	return q.answer, q.err
}

// TestWechatV2_RefundIsConfirmed (a reviewer helper's finding): req_info is AES-ECB, which
// authenticates nothing (blocks of a genuine one can be dropped or repeated inside a long
// out_refund_no), so a refund notification is only a hint: its fact is the signed refund query's
// answer, a refund the query does not know is rejected, and one it cannot confirm yet is failed
// so that WeChat Pay sends it again. The outer appid and mch_id, unsigned, decide nothing.
func TestWechatV2_RefundIsConfirmed(t *testing.T) {
	const key = "192006250b4c09247ec02edce69f6a2d"
	claim := "<root><out_refund_no><![CDATA[R1]]></out_refund_no><out_trade_no><![CDATA[T1]]></out_trade_no>" +
		"<refund_fee><![CDATA[900]]></refund_fee><refund_id><![CDATA[5001]]></refund_id><refund_status><![CDATA[SUCCESS]]></refund_status>" +
		"<success_time><![CDATA[2026-11-02 09:30:05]]></success_time><total_fee><![CDATA[1000]]></total_fee>" +
		"<transaction_id><![CDATA[4200]]></transaction_id></root>"
	body := v2RefundBody(t, key, claim)
	truth := &wechatpay.Refund{OutTradeNo: "T1", TransactionID: "4200", OutRefundNo: "R1", RefundID: "5001", RefundStatus: "SUCCESS",
		SuccessTime: time.Date(2026, 11, 2, 1, 30, 5, 0, time.UTC)}
	truth.Amount.Total, truth.Amount.Refund = 1000, 300

	t.Run("TheAnswerIsTheFact", func(t *testing.T) {
		q := &refundQuery{answer: truth}
		f, err := (&provider.WechatV2{APIKey: []byte(key), Refunds: q}).Verify(nil, body, time.Now())
		if err != nil || f.Kind != paynotify.FactRefund || f.RefundRequestNo != "R1" || f.RefundAmount != 300 || f.Amount != 1000 ||
			f.ProviderTradeNo != "4200" || f.AppID != "" || f.MchID != "" {
			t.Fatalf("fact %+v, %v; want the query's refund of 300, not the claimed 900, and no unsigned appid/mch_id", f, err)
		}
		if fmt.Sprint(q.asked) != "[R1]" {
			t.Fatalf("asked %v", q.asked)
		}
	})
	t.Run("UnknownRefundRejected", func(t *testing.T) {
		q := &refundQuery{err: &wechatpay.Error{StatusCode: 404, Code: "RESOURCE_NOT_EXISTS", Signed: true}}
		_, err := (&provider.WechatV2{APIKey: []byte(key), Refunds: q}).Verify(nil, body, time.Now())
		var rej *paynotify.RejectError
		if !errors.As(err, &rej) || rej.Reason != provider.ReasonRefundUnconfirmed || rej.OutTradeNo != "T1" || errors.Is(err, paynotify.ErrVerifyUnavailable) {
			t.Fatalf("err %v; want rejected as refund_unconfirmed", err)
		}
	})
	for _, c := range []struct {
		name string
		q    *refundQuery
	}{
		{"UnsignedNotFound", &refundQuery{err: &wechatpay.Error{StatusCode: 404, Code: "RESOURCE_NOT_EXISTS"}}},
		{"NoAnswer", &refundQuery{err: errors.New("dial tcp 127.0.0.1:1: connection refused")}},
		{"StillProcessing", &refundQuery{answer: &wechatpay.Refund{OutTradeNo: "T1", OutRefundNo: "R1", RefundStatus: "PROCESSING"}}},
		{"NoClient", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := &provider.WechatV2{APIKey: []byte(key)}
			if c.q != nil {
				v.Refunds = c.q
			}
			f, err := v.Verify(nil, body, time.Now())
			var rej *paynotify.RejectError
			if !errors.Is(err, paynotify.ErrVerifyUnavailable) || !errors.As(err, &rej) || rej.Reason != paynotify.ReasonVerifyUnavailable || f.Kind != "" {
				t.Fatalf("fact %+v, err %v; want verify_unavailable (answered FAIL, sent again)", f, err)
			}
		})
	}
	t.Run("UnknownStatusNotAsked", func(t *testing.T) {
		q := &refundQuery{answer: truth}
		_, err := (&provider.WechatV2{APIKey: []byte(key), Refunds: q}).Verify(nil,
			v2RefundBody(t, key, strings.Replace(claim, "SUCCESS", "PENDING", 1)), time.Now())
		var rej *paynotify.RejectError
		if !errors.As(err, &rej) || rej.Reason != paynotify.ReasonMalformed || len(q.asked) != 0 {
			t.Fatalf("err %v, asked %v; want malformed without a query", err, q.asked)
		}
	})
}

// TestWechatV2_FailedPaymentIgnored (a reviewer helper's finding): a signed APIv2 notification
// with result_code FAIL is a payment that did not happen: acknowledged, it moves nothing, and it
// is not recorded as a duplicate of something applied.
func TestWechatV2_FailedPaymentIgnored(t *testing.T) {
	const key = "192006250b4c09247ec02edce69f6a2d"
	body := v2Signed(key, [][2]string{{"appid", "wx2421b1c4370ec43b"}, {"err_code", "ORDERPAID"}, {"mch_id", "10000100"},
		{"nonce_str", "IITRi8Iabbblz1Jc"}, {"out_trade_no", "1409811653"}, {"result_code", "FAIL"}, {"return_code", "SUCCESS"}, {"total_fee", "1"}})
	f, err := (&provider.WechatV2{APIKey: []byte(key)}).Verify(nil, []byte(body), time.Now())
	if err != nil || f.Kind != paynotify.FactIgnored {
		t.Fatalf("fact %+v, %v; want ignored", f, err)
	}
}

// blockingQuery is a refund query that waits for release, counting the calls per number.
type blockingQuery struct {
	mu      sync.Mutex
	asked   map[string]int
	release chan struct{}
	started chan string
}

func (q *blockingQuery) QueryRefund(_ context.Context, no string) (*wechatpay.Refund, error) {
	q.mu.Lock()
	q.asked[no]++
	q.mu.Unlock()
	q.started <- no
	<-q.release
	r := &wechatpay.Refund{OutTradeNo: "T1", TransactionID: "4200", OutRefundNo: no, RefundID: "5001", RefundStatus: "SUCCESS"}
	r.Amount.Total, r.Amount.Refund = 1000, 300
	return r, nil
}

// TestWechatV2_RefundQueryBounds (a reviewer of the confirmation): anyone holding one captured
// refund notification can post it again and again, altered too: the queries it makes are
// bounded. Concurrent deliveries of one refund make one query; a final answer is remembered; past
// v2MaxQueries (4) in flight another refund's notification is answered FAIL at once
// (verify_unavailable), not queued.
func TestWechatV2_RefundQueryBounds(t *testing.T) {
	const key = "192006250b4c09247ec02edce69f6a2d"
	body := func(no string) []byte {
		return v2RefundBody(t, key, "<root><out_refund_no><![CDATA["+no+"]]></out_refund_no><out_trade_no><![CDATA[T1]]></out_trade_no>"+
			"<refund_fee><![CDATA[300]]></refund_fee><refund_status><![CDATA[SUCCESS]]></refund_status><total_fee><![CDATA[1000]]></total_fee></root>")
	}
	q := &blockingQuery{asked: map[string]int{}, release: make(chan struct{}), started: make(chan string, 16)}
	v := &provider.WechatV2{APIKey: []byte(key), Refunds: q}
	r1 := body("R1")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	verify := func(b []byte) {
		wg.Go(func() {
			_, err := v.Verify(nil, b, time.Now())
			errs <- err
		})
	}
	// Three deliveries of R1 at once, and R2, R3, R4: four queries in flight.
	for range 3 {
		verify(r1)
	}
	for _, no := range []string{"R2", "R3", "R4"} {
		verify(body(no))
	}
	for range 4 {
		<-q.started
	}
	// A fifth refund while four are in flight: FAIL at once.
	if _, err := v.Verify(nil, body("R5"), time.Now()); !errors.Is(err, paynotify.ErrVerifyUnavailable) {
		t.Fatalf("a fifth query in flight: %v, want verify_unavailable", err)
	}
	close(q.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("a delivery: %v", err)
		}
	}
	// R1 again: its SUCCESS is remembered.
	if f, err := v.Verify(nil, r1, time.Now()); err != nil || f.Kind != paynotify.FactRefund || f.RefundAmount != 300 {
		t.Fatalf("R1 again: %+v, %v", f, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if fmt.Sprint(q.asked) != "map[R1:1 R2:1 R3:1 R4:1]" {
		t.Fatalf("queries %v, want one per refund and none for R5", q.asked)
	}
}

// panicOnce panics at its first query, then answers.
type panicOnce struct{ calls atomic.Int32 }

func (q *panicOnce) QueryRefund(_ context.Context, no string) (*wechatpay.Refund, error) {
	if q.calls.Add(1) == 1 {
		panic("query failed in a way no one expected")
	}
	r := &wechatpay.Refund{OutTradeNo: "T1", TransactionID: "4200", OutRefundNo: no, RefundStatus: "SUCCESS"}
	r.Amount.Total, r.Amount.Refund = 1000, 300
	return r, nil
}

// TestWechatV2_RefundQueryPanic (a reviewer's finding): a query that panics releases its slot and
// its waiters (the server recovers the handler's panic); it held them for good, and four such
// panics stopped every confirmation until a restart.
func TestWechatV2_RefundQueryPanic(t *testing.T) {
	const key = "192006250b4c09247ec02edce69f6a2d"
	body := v2RefundBody(t, key, "<root><out_refund_no><![CDATA[R1]]></out_refund_no><out_trade_no><![CDATA[T1]]></out_trade_no>"+
		"<refund_fee><![CDATA[300]]></refund_fee><refund_status><![CDATA[SUCCESS]]></refund_status><total_fee><![CDATA[1000]]></total_fee></root>")
	v := &provider.WechatV2{APIKey: []byte(key), Refunds: &panicOnce{}}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the query's panic did not reach the caller")
			}
		}()
		v.Verify(nil, body, time.Now())
	}()
	done := make(chan error, 1)
	go func() {
		_, err := v.Verify(nil, body, time.Now())
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after the panic: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("after the panic, the next delivery of the refund waits for ever")
	}
}
