package alipaylegacy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// WAPTrade is an alipay.wap.trade.create.direct request (docs/alipay-legacy.md §11.1), the first
// step of the old WAP pair: a server-to-server call that returns a request_token for WAPAuthURL.
// Strings are UTF-8.
type WAPTrade struct {
	// CallBackURL is the browser return URL after payment (call_back_url), required.
	CallBackURL string
	// CashierCode pre-selects a payment channel (cashier_code, 2.0 demo), optional.
	CashierCode string
	// MerchantURL is where a buyer who gives up is sent (merchant_url), optional.
	MerchantURL string
	// NotifyURL is the async notification URL (notify_url): absolute http(s), no query string.
	// Optional, but without it there are no notifications.
	NotifyURL string
	// OutTradeNo is the merchant's order number, 1 to 64 characters. Required.
	OutTradeNo string
	// OutUser is the merchant's id of the buyer (out_user), optional.
	OutUser string
	// PayExpire is the payment timeout in minutes (pay_expire), 0 for none.
	PayExpire int
	// ReqID is the request's unique id (req_id). Defaults to a fresh one: the Beijing time as
	// yyyyMMddHHmmss followed by six random digits.
	ReqID string
	// SellerAccountName is the receiving account (seller_account_name, an email or phone).
	// Defaults to Config.SellerEmail; one of the two is required.
	SellerAccountName string
	// Subject is the order title, required.
	Subject string
	// TotalFee is the amount in fen (total_fee), 1 to 10000000000.
	TotalFee int64
}

// maxWAPAnswer bounds the token answer read from the WAP gateway (a real one is under 1 KiB).
const maxWAPAnswer = 64 << 10

// WAPCreateDirect calls alipay.wap.trade.create.direct (docs/alipay-legacy.md §11.1): it POSTs the
// signed request (sorted rule, sec_id MD5 or 0001, no sign_type) to the WAP gateway, bounded by
// Config.Timeout, and verifies the answer (§11.2): its sec_id must be the configured one; under
// `0001` res_data is decrypted with the merchant key; the sign is checked over the sorted string
// with the plaintext res_data; partner and req_id must be this request's. It returns the
// request_token for WAPAuthURL.
//
// Errors: a res_error answer is a *WAPError (unsigned: it says only that there is no token); an
// answer that does not verify is a *VerifyError; a transport error, a timeout or an HTTP status
// other than 200 is another error, wrapping its cause.
func (c *Client) WAPCreateDirect(ctx context.Context, p *WAPTrade) (requestToken string, err error) {
	body, reqID, err := c.wapCreateBody(p)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.wapGateway+"?_input_charset="+c.charset, strings.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("alipaylegacy: %s: %w", ServiceWAPCreateDirect, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.httpClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("alipaylegacy: %s: %w", ServiceWAPCreateDirect, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxWAPAnswer+1))
	if err != nil {
		return "", fmt.Errorf("alipaylegacy: %s: read answer: %w", ServiceWAPCreateDirect, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("alipaylegacy: %s: HTTP status %d", ServiceWAPCreateDirect, resp.StatusCode)
	}
	if len(answer) > maxWAPAnswer {
		return "", fmt.Errorf("alipaylegacy: %s: answer larger than %d bytes", ServiceWAPCreateDirect, maxWAPAnswer)
	}
	return c.parseTokenAnswer(answer, reqID)
}

// wapCreateBody returns the signed form body of an alipay.wap.trade.create.direct request and its
// req_id.
func (c *Client) wapCreateBody(p *WAPTrade) (body, reqID string, err error) {
	seller := p.SellerAccountName
	if seller == "" {
		seller = c.sellerEmail
	}
	if err := checkOrder(p.OutTradeNo, p.Subject, p.NotifyURL, ""); err != nil {
		return "", "", err
	}
	switch {
	case p.TotalFee < 1 || p.TotalFee > maxFen:
		return "", "", errors.New("alipaylegacy: total_fee must be 0.01 to 100000000.00 yuan")
	case p.CallBackURL == "":
		return "", "", errors.New("alipaylegacy: call_back_url is required")
	case seller == "":
		return "", "", errors.New("alipaylegacy: seller_account_name is required (WAPTrade.SellerAccountName or Config.SellerEmail)")
	case p.PayExpire < 0:
		return "", "", errors.New("alipaylegacy: negative pay_expire")
	}
	if err := checkURL(p.CallBackURL, true); err != nil {
		return "", "", errors.New("alipaylegacy: call_back_url: " + err.Error())
	}
	elems := []Field{
		{"notify_url", p.NotifyURL}, {"call_back_url", p.CallBackURL}, {"seller_account_name", seller},
		{"out_trade_no", p.OutTradeNo}, {"subject", p.Subject}, {"total_fee", formatFen(p.TotalFee)},
		{"merchant_url", p.MerchantURL}, {"out_user", p.OutUser}, {"cashier_code", p.CashierCode},
	}
	if p.PayExpire > 0 {
		elems = append(elems, Field{"pay_expire", strconv.Itoa(p.PayExpire)})
	}
	reqData, err := buildXML("direct_trade_create_req", elems)
	if err != nil {
		return "", "", err
	}
	reqID = p.ReqID
	if reqID == "" {
		reqID = c.newReqID()
	}
	r, err := c.wapRequest(ServiceWAPCreateDirect, reqID, reqData)
	if err != nil {
		return "", "", err
	}
	return encode(r.wire), reqID, nil
}

// WAPAuthURL returns the signed alipay.wap.auth.authAndExecute URL (docs/alipay-legacy.md §11.3),
// the second step of the old WAP pair, to send the buyer's browser to (GET), for a request_token of
// WAPCreateDirect. It carries a fresh req_id, _input_charset and sec_id, and no sign_type.
func (c *Client) WAPAuthURL(requestToken string) (string, error) {
	if requestToken == "" {
		return "", errors.New("alipaylegacy: empty request_token")
	}
	reqData, err := buildXML("auth_and_execute_req", []Field{{"request_token", requestToken}})
	if err != nil {
		return "", err
	}
	r, err := c.wapRequest(ServiceWAPAuthAndExecute, c.newReqID(), reqData)
	if err != nil {
		return "", err
	}
	return c.wapGateway + "?" + encode(r.wire), nil
}

// wapRequest signs the common parameters of a WAP service (sec_id, never sign_type:
// docs/alipay-legacy.md §14.8).
func (c *Client) wapRequest(service, reqID, reqData string) (*request, error) {
	return c.signFields([]Field{
		{"service", service}, {"partner", c.partner}, {"sec_id", c.signType.SecID()}, {"format", "xml"},
		{"v", "2.0"}, {"req_id", reqID}, {"req_data", reqData}, {"_input_charset", c.charset},
	})
}

// buildXML returns <root><k>v</k>…</root> with the text escaped (the demos concatenate without
// escaping, docs/alipay-legacy.md §13.7); empty elements are left out.
func buildXML(root string, elems []Field) (string, error) {
	var b strings.Builder
	b.WriteString("<" + root + ">")
	for _, e := range elems {
		if e.Value == "" {
			continue
		}
		if !validXMLText(e.Value) {
			return "", errors.New("alipaylegacy: " + e.Key + " holds a character XML does not allow")
		}
		b.WriteString("<" + e.Key + ">" + escapeXMLText(e.Value) + "</" + e.Key + ">")
	}
	b.WriteString("</" + root + ">")
	return b.String(), nil
}

// parseTokenAnswer verifies the WAP gateway's answer to alipay.wap.trade.create.direct
// (docs/alipay-legacy.md §11.2) and returns its request_token. The body is split on '&' and each
// name and value decoded once, not decoded as a whole first as the demos do (docs/alipay-legacy.md
// §11.2): the same on every well-formed answer, and safe on the others.
func (c *Client) parseTokenAnswer(body []byte, reqID string) (string, error) {
	w, e := parseForm(body)
	if e != nil {
		return "", e
	}
	if resErr, ok := w.Lookup("res_error"); ok {
		text, ok := c.toUTF8(string(resErr))
		if !ok {
			return "", verr(ReasonBadCharset, "res_error is not valid "+c.charset)
		}
		fs, err := parseFlatXML([]byte(text), "err")
		if err != nil {
			return "", xmlError("res_error", err)
		}
		we := &WAPError{}
		we.Code, _ = xmlGet(fs, "code")
		we.SubCode, _ = xmlGet(fs, "sub_code")
		we.Msg, _ = xmlGet(fs, "msg")
		we.Detail, _ = xmlGet(fs, "detail")
		return "", we
	}
	sig, e := checkSign(w)
	if e != nil {
		return "", e
	}
	for _, k := range []string{"partner", "req_id", "res_data", "sec_id", "service", "v"} {
		if v, ok := w.Lookup(k); !ok || len(v) == 0 {
			return "", missing(k)
		}
	}
	secID, _ := w.Lookup("sec_id")
	if string(secID) != c.signType.SecID() && !(c.signType == SignMD5 && strings.EqualFold(string(secID), "MD5")) {
		return "", verr(ReasonUnsupportedSignType, "the answer declares sec_id="+short(string(secID))+" but "+c.signType.SecID()+" is configured")
	}
	resData, _ := w.Lookup("res_data")
	plain, decrypted := string(resData), true
	if c.signType == SignRSA && !strings.HasPrefix(plain, "<") {
		if c.merchantKey == nil {
			return "", errNoMerchantKey
		}
		p, ok, err := decryptBlinded(c.merchantKey, plain)
		if err != nil {
			return "", verr(ReasonDecryptFailed, "res_data: "+strings.TrimPrefix(err.Error(), "alipaylegacy: "))
		}
		plain, decrypted = string(p), ok
	}
	canon := canonicalForm(w, "res_data", plain)
	// A failed padding runs the signature check too (decryptBlinded). It is reported as such:
	// the answer comes from Alipay's gateway over TLS, not from anyone, and a wrong merchant key
	// is a configuration fault the operator must see named.
	if why := c.verify(canon, sig); why != "" || !decrypted {
		if !decrypted {
			return "", verr(ReasonDecryptFailed, "res_data does not decrypt with the merchant key")
		}
		e := verr(ReasonSignatureInvalid, why+" (token answer: sorted string with res_data in plaintext)")
		e.Canonical = canon
		return "", e
	}
	if p, _ := w.Lookup("partner"); string(p) != c.partner {
		return "", verr(ReasonWrongPartner, "the answer's partner "+short(string(p))+" is not the configured "+c.partner)
	}
	if got, _ := w.Lookup("req_id"); reqID != "" && string(got) != reqID {
		return "", verr(ReasonReqIDMismatch, "the answer's req_id "+short(string(got))+" is not the request's "+short(reqID))
	}
	text, ok := c.toUTF8(plain)
	if !ok {
		return "", verr(ReasonBadCharset, "res_data is not valid "+c.charset)
	}
	fs, err := parseFlatXML([]byte(text), "direct_trade_create_res")
	if err != nil {
		return "", xmlError("res_data", err)
	}
	token, _ := xmlGet(fs, "request_token")
	if token == "" {
		return "", missing("request_token")
	}
	return token, nil
}
