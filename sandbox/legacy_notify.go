package sandbox

import (
	"strings"

	"github.com/paynotify/paynotify/alipay"
)

// Stand-ins of the wrong_app_id fault in legacy notifications: another seller.
const (
	otherLegacySellerID    = "2088000000009999"
	otherLegacySellerEmail = "other-seller@sandbox.example"
)

const legacyWapService = "alipay.wap.trade.create.direct"

// legacyNotification builds and signs the notification of t's current status (kind: create,
// payment, send, finish, close), or returns nil when t has no notify_url: the mapi field set of
// docs/alipay-legacy.md §9.1 signed over the sorted string, or the WAP form of §11.5 (v=1.0,
// notify_data XML, encrypted under 0001) signed over the fixed-order string. notify_id and sign are
// made once: every attempt sends the same bytes.
func (s *Sandbox) legacyNotification(t *Trade, kind string) (*Notification, error) {
	if t.NotifyURL == "" {
		return nil, nil
	}
	p, err := s.legacyPartner(t.AppID)
	if err != nil {
		return nil, err
	}
	f := s.faultsFor(t.OutTradeNo)
	cs := t.Charset
	if c, ok := legacyCharset(f.Charset, cs); ok {
		cs = c
	}
	signCS := cs
	if f.LegacySignature == LegacySigGBKAsUTF8 {
		cs, signCS = "gbk", "utf-8"
	}
	now := s.now()
	notifyID := newLegacyNotifyID()
	amount := t.Amount
	if f.WrongAmount {
		amount++
	}
	sellerID, sellerEmail := t.SellerID, p.SellerEmail
	if f.WrongAppID {
		sellerID, sellerEmail = otherLegacySellerID, otherLegacySellerEmail
	}
	price, quantity := alipay.FormatAmount(amount), "1"
	if t.Request["price"] != "" && t.Request["quantity"] != "" {
		price, quantity = t.Request["price"], t.Request["quantity"]
	}
	var gmtPayment, gmtClose string
	if !t.PaidAt.IsZero() {
		gmtPayment = alipay.FormatTime(t.PaidAt)
	}
	if (t.Status == alipay.TradeFinished || t.Status == alipay.TradeClosed) && !t.ClosedAt.IsZero() {
		gmtClose = alipay.FormatTime(t.ClosedAt)
	}

	note := &Notification{TradeID: t.ID, Provider: ProviderAlipayLegacy, OutTradeNo: t.OutTradeNo, Kind: kind, NotifyID: notifyID,
		EventType: t.Status, URL: t.NotifyURL, ContentType: "application/x-www-form-urlencoded", Faults: f, TradeNo: t.TradeNo}

	var body []field
	if t.Product == LegacyProductWap {
		x := []field{{"payment_type", "1"}, {"subject", t.Subject}, {"trade_no", t.TradeNo}, {"buyer_email", t.BuyerLogonID},
			{"gmt_create", alipay.FormatTime(t.OpenedAt)}, {"notify_type", "trade_status_sync"}, {"quantity", "1"},
			{"out_trade_no", t.OutTradeNo}, {"notify_time", alipay.FormatTime(now)}, {"seller_id", sellerID},
			{"trade_status", t.Status}, {"is_total_fee_adjust", "N"}, {"total_fee", alipay.FormatAmount(amount)},
			{"gmt_payment", gmtPayment}, {"seller_email", sellerEmail}, {"gmt_close", gmtClose},
			{"price", alipay.FormatAmount(amount)}, {"buyer_id", t.BuyerID}, {"notify_id", notifyID}, {"use_coupon", "N"}}
		var b strings.Builder
		b.WriteString("<notify>")
		for _, e := range x {
			if e.Value != "" {
				b.WriteString("<" + e.Key + ">" + xmlEscape(e.Value) + "</" + e.Key + ">")
			}
		}
		b.WriteString("</notify>")
		plainUTF8 := b.String()
		plain := toCharset(plainUTF8, cs)
		secID, v := t.SignType, "1.0"
		wire := plain
		if secID == "0001" {
			if p.pub == nil {
				return nil, errMissingLegacyKey
			}
			if wire, err = legacyEncrypt0001(p.pub, []byte(plain)); err != nil {
				return nil, err
			}
		}
		var msg []byte
		switch {
		case f.LegacySignature == LegacySigSortedOrder:
			msg = legacySortedString([]field{{"service", legacyWapService}, {"v", v}, {"sec_id", secID}, {"notify_data", plain}})
		case f.LegacySignature == LegacySigCiphertext:
			msg = legacyFixedString(legacyWapService, v, secID, wire) // for MD5 the "ciphertext" is the plaintext
		default:
			msg = legacyFixedString(legacyWapService, v, secID, toCharset(plainUTF8, signCS))
		}
		if f.BadSignature {
			msg = append(msg, "&tampered=1"...)
		}
		sig, err := s.legacySignWith(p, secID, msg)
		if err != nil {
			return nil, err
		}
		body = []field{{"service", legacyWapService}, {"sign", sig}, {"sec_id", secID}, {"v", v}, {"notify_data", wire}}
		if f.DuplicateFields {
			body = append(body, field{"notify_data", wire})
		}
	} else {
		// The order of a captured notification (docs/alipay-legacy.md §9.1), then the escrow
		// extras.
		x := []field{{"discount", "0.00"}, {"payment_type", legacyOr(t.Request["payment_type"], "1")}, {"subject", t.Subject},
			{"trade_no", t.TradeNo}, {"buyer_email", t.BuyerLogonID}, {"gmt_create", alipay.FormatTime(t.OpenedAt)},
			{"notify_type", "trade_status_sync"}, {"quantity", quantity}, {"out_trade_no", t.OutTradeNo}, {"seller_id", sellerID},
			{"notify_time", alipay.FormatTime(now)}, {"body", t.Body}, {"trade_status", t.Status}, {"is_total_fee_adjust", "N"},
			{"total_fee", alipay.FormatAmount(amount)}, {"gmt_payment", gmtPayment}, {"seller_email", sellerEmail}, {"price", price},
			{"buyer_id", t.BuyerID}, {"notify_id", notifyID}, {"use_coupon", "N"}, {"extra_common_param", t.Passback},
			{"gmt_close", gmtClose}}
		if legacyEscrow(t) {
			for _, k := range []string{"logistics_fee", "logistics_type", "logistics_payment", "receive_name", "receive_address", "receive_zip", "receive_phone", "receive_mobile"} {
				x = append(x, field{k, t.Request[k]})
			}
		}
		var signed []field
		for _, e := range x {
			if e.Value == "" {
				continue
			}
			body = append(body, field{e.Key, toCharset(e.Value, cs)})
			signed = append(signed, field{e.Key, toCharset(e.Value, signCS)})
		}
		msg := legacySortedString(signed)
		if f.BadSignature {
			msg = append(msg, "&tampered=1"...)
		}
		sig, err := s.legacySignWith(p, t.SignType, msg)
		if err != nil {
			return nil, err
		}
		if f.DuplicateFields {
			body = append(body, field{"total_fee", toCharset(alipay.FormatAmount(amount), cs)})
		}
		body = append(body, field{"sign_type", t.SignType}, field{"sign", sig})
	}
	enc := encodeForm(body)
	note.Body, note.BodyText = []byte(enc), enc
	return note, nil
}

// legacyAcked is the legacy acknowledgement (docs/alipay-legacy.md §9.5): a 2xx whose body is
// exactly "success"; the lenient_ack fault also accepts it in any case, surrounded by whitespace.
func legacyAcked(status int, body []byte, f Faults) bool {
	if status/100 != 2 {
		return false
	}
	if f.LenientAck {
		return strings.EqualFold(strings.TrimSpace(string(body)), "success")
	}
	return string(body) == "success"
}

// legacyFaultLabels are the legacy faults applied to a notification, as Attempt.Fault names them.
func legacyFaultLabels(f Faults) []string {
	var out []string
	if f.BadSignature {
		out = append(out, "bad_signature")
	}
	if f.LegacySignature != "" {
		out = append(out, "legacy_signature:"+f.LegacySignature)
	}
	if f.DuplicateFields {
		out = append(out, "duplicate_fields")
	}
	return out
}

// labelLegacyAttempt adds the legacy faults of note to a's Fault. Called by the notifier.
func labelLegacyAttempt(a *Attempt, note *Notification) {
	for _, l := range legacyFaultLabels(note.Faults) {
		a.Fault = joinFault(a.Fault, l)
	}
}
