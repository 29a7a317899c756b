package provider

import (
	"bytes"
	"fmt"
	"net/http"
	"time"

	"github.com/paynotify/paynotify"
	"github.com/paynotify/paynotify/wechatpay"
)

// WechatV2 verifies APIv2 XML notifications at /notify/wechatpay-v2/{app}: payments signed with
// the APIv2 key (MD5 or HMAC-SHA256), and refunds whose req_info is encrypted under md5(APIv2 key).
// APIv2 messages carry no signed timestamp.
type WechatV2 struct {
	APIKey []byte
	// AppID and MchID are reported in the fact, for the Processor's checks.
	AppID, MchID string
}

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

// Verify turns a verified APIv2 notification into a fact.
func (v *WechatV2) Verify(_ http.Header, body []byte, _ time.Time) (paynotify.Fact, error) {
	if v2IsRefund(body) {
		n, err := wechatpay.ParseV2RefundNotification(body, v.APIKey)
		if err != nil {
			return paynotify.Fact{}, wechatReject(err)
		}
		in := n.Info
		// The outer XML is unsigned and req_info is only encrypted (AES-ECB, no MAC): insist on
		// every identity and amount, so that the Processor checks them against the app, the order
		// and any refund recorded under this out_refund_no.
		if n.AppID == "" || n.MchID == "" || in.OutTradeNo == "" || in.OutRefundNo == "" || in.TotalFee <= 0 || in.RefundFee <= 0 {
			return paynotify.Fact{}, &paynotify.RejectError{Reason: paynotify.ReasonMalformed, Detail: "APIv2 refund without appid, mch_id, out_trade_no, out_refund_no, total_fee or refund_fee", OutTradeNo: in.OutTradeNo}
		}
		f := paynotify.Fact{OutTradeNo: in.OutTradeNo, ProviderTradeNo: in.TransactionID, AppID: n.AppID, MchID: n.MchID,
			Amount: paynotify.Amount(in.TotalFee), HasAmount: true, RefundPerRequest: true, RefundRequestNo: in.OutRefundNo,
			RefundAmount: paynotify.Amount(in.RefundFee), ProviderRefundNo: in.RefundID, At: in.SuccessTime}
		switch in.RefundStatus {
		case "SUCCESS":
			f.Kind = paynotify.FactRefund
		case "REFUNDCLOSE":
			f.Kind = paynotify.FactRefundFailed
		case "CHANGE":
			// APIv2's name for ABNORMAL: to be settled in the merchant platform.
			f.Kind = paynotify.FactRefundAbnormal
		default:
			// Not acknowledged as if applied: WeChat Pay retries while someone looks.
			return paynotify.Fact{}, &paynotify.RejectError{Reason: paynotify.ReasonMalformed, OutTradeNo: in.OutTradeNo,
				Detail: fmt.Sprintf("APIv2 refund with refund_status %q, not one paynotify knows", paynotify.ClipText(in.RefundStatus, 64))}
		}
		return f, nil
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
	}
	return f, nil
}
