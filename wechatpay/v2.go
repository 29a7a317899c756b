package wechatpay

import (
	"bytes"
	"crypto/aes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/paynotify/paynotify/internal/regroup"
)

// APIv2 sign types.
const (
	V2SignMD5        = "MD5"
	V2SignHMACSHA256 = "HMAC-SHA256"
)

// maxV2Body caps an APIv2 XML message; real ones are about 1 KiB.
const maxV2Body = 64 << 10

// ParseV2XML parses a flat APIv2 XML message (<xml><k>v</k>…</xml> or <root>…</root>), values
// with or without CDATA, into a map. Nested elements, repeated names, attributes-only noise
// aside, and trailing content are rejected (wrapping ErrMalformed).
func ParseV2XML(body []byte) (map[string]string, error) {
	_, m, err := parseFlatXML(body)
	return m, err
}

func parseFlatXML(body []byte) (root string, fields map[string]string, err error) {
	if len(body) > maxV2Body {
		return "", nil, fmt.Errorf("%w: XML larger than %d bytes", ErrMalformed, maxV2Body)
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	fields = map[string]string{}
	depth := 0
	var cur string
	var val strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", nil, fmt.Errorf("%w: XML: %v", ErrMalformed, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch depth {
			case 1:
				if root != "" {
					return "", nil, fmt.Errorf("%w: XML: more than one root element", ErrMalformed)
				}
				root = t.Name.Local
			case 2:
				cur = t.Name.Local
				val.Reset()
			default:
				return "", nil, fmt.Errorf("%w: XML: nested element in <%s>", ErrMalformed, cur)
			}
		case xml.EndElement:
			if depth == 2 {
				if _, dup := fields[cur]; dup {
					return "", nil, fmt.Errorf("%w: XML: repeated <%s>", ErrMalformed, cur)
				}
				fields[cur] = val.String()
			}
			depth--
		case xml.CharData:
			switch depth {
			case 2:
				val.Write(t)
			default:
				if len(bytes.TrimSpace(t)) > 0 {
					return "", nil, fmt.Errorf("%w: XML: text outside a field", ErrMalformed)
				}
			}
		case xml.ProcInst, xml.Comment:
		case xml.Directive:
			return "", nil, fmt.Errorf("%w: XML: directive", ErrMalformed)
		}
	}
	if root == "" {
		return "", nil, fmt.Errorf("%w: XML: no root element", ErrMalformed)
	}
	return root, fields, nil
}

// V2SignString returns the APIv2 canonical string of params: every non-empty parameter except
// sign, sorted by name (bytewise), joined as k=v with '&'. The signed string appends
// "&key=" + the APIv2 key; it is never returned, since it holds the key.
func V2SignString(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k, v := range params {
		if k != "sign" && v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(params[k])
	}
	return b.String()
}

// v2Sign signs params with the APIv2 key: signType "MD5" (or "") gives 32 uppercase hex
// characters, "HMAC-SHA256" 64 (HMAC keyed with the APIv2 key over the same string).
func v2Sign(params map[string]string, apiKey []byte, signType string) (string, error) {
	var h hash.Hash
	switch signType {
	case "", V2SignMD5:
		h = md5.New()
	case V2SignHMACSHA256:
		h = hmac.New(sha256.New, apiKey)
	default:
		return "", fmt.Errorf("wechatpay: v2: unknown sign_type %q", signType)
	}
	io.WriteString(h, V2SignString(params))
	io.WriteString(h, "&key=")
	h.Write(apiKey)
	return strings.ToUpper(hex.EncodeToString(h.Sum(nil))), nil
}

// V2Notification is a verified APIv2 payment notification. Amounts are integer fen; times are
// Beijing time.
type V2Notification struct {
	ReturnCode    string // SUCCESS or FAIL (communication)
	ReturnMsg     string
	ResultCode    string // SUCCESS or FAIL (business)
	ErrCode       string
	ErrCodeDes    string
	AppID         string
	MchID         string
	DeviceInfo    string
	NonceStr      string
	SignType      string // as sent; the algorithm is chosen by the sign's length
	OpenID        string
	IsSubscribe   string
	TradeType     string
	BankType      string
	TotalFee      int64
	SettlementFee int64 // settlement_total_fee, 0 when absent
	FeeType       string
	CashFee       int64
	CashFeeType   string
	CouponFee     int64
	TransactionID string
	OutTradeNo    string
	Attach        string
	TimeEnd       time.Time // time_end, yyyyMMddHHmmss in Beijing time
	// Fields holds every element of the message, signed ones and all.
	Fields map[string]string
}

// v2DecisionFields are the fields of an APIv2 payment notification that VerifyV2Notification
// makes sure no other field's value takes in or makes up. The APIv2 sign covers the fields
// joined as name=value with "&", not where each one ends (docs/wechatpay.md): a verified message
// one of whose values holds "&name=" for one of these names, or a field name holding "&" or "=",
// may be a genuine one regrouped (an attach of "gift&mch_id=…&out_trade_no=T2&p=" made T1's
// payment T2's) and is refused (ErrMalformed). A program deciding by another field (attach)
// must not trust where its value ends.
var v2DecisionFields = []string{"appid", "cash_fee", "fee_type", "mch_id", "out_trade_no", "result_code", "return_code",
	"settlement_total_fee", "sign_type", "time_end", "total_fee", "trade_state", "transaction_id"}

// VerifyV2Notification verifies an APIv2 XML payment notification with the APIv2 key (not the
// APIv3 key). Every received field takes part in the signature, unknown ones included. The
// algorithm follows the sign's length (32 hex: MD5, 64: HMAC-SHA256), since merchants set to
// HMAC-SHA256 are seen to receive MD5 signs; sign_type, when present, must be one of the two.
// The comparison is constant-time. Errors are *VerifyError (ErrSignature, ErrMalformed), with the
// out_trade_no the message claims in OutTradeNo when the XML parses. A message that verifies but
// may be regrouped (v2DecisionFields: a value holding "&out_trade_no=" and the like) is
// ErrMalformed: answer it with FAIL and query the order.
func VerifyV2Notification(body []byte, apiKey []byte) (*V2Notification, error) {
	n, err := verifyV2Notification(body, apiKey)
	if ve, ok := err.(*VerifyError); ok && ve.OutTradeNo == "" {
		if _, f, perr := parseFlatXML(body); perr == nil {
			ve.OutTradeNo = claimed(f["out_trade_no"])
		}
	}
	return n, err
}

// claimed makes a value an unverified message claims printable and short, for evidence only.
func claimed(v string) string {
	if len(v) > 128 {
		v = v[:128]
	}
	return strings.ToValidUTF8(v, "?")
}

func verifyV2Notification(body []byte, apiKey []byte) (*V2Notification, error) {
	if len(apiKey) == 0 {
		return nil, errors.New("wechatpay: v2: no API key")
	}
	_, f, err := parseFlatXML(body)
	if err != nil {
		return nil, verifyErr(ErrMalformed, CheckEnvelope, "%v", strings.TrimPrefix(err.Error(), ErrMalformed.Error()+": "))
	}
	sign := f["sign"]
	st := f["sign_type"]
	if st != "" && st != V2SignMD5 && st != V2SignHMACSHA256 {
		return nil, verifyErr(ErrMalformed, CheckHeaders, "unknown sign_type %q", st)
	}
	var alg string
	switch len(sign) {
	case 32:
		alg = V2SignMD5
	case 64:
		alg = V2SignHMACSHA256
	case 0:
		return nil, verifyErr(ErrSignature, CheckSignature, "no sign")
	default:
		return nil, verifyErr(ErrSignature, CheckSignature, "sign has %d characters (want 32 or 64)", len(sign))
	}
	want, _ := v2Sign(f, apiKey, alg)
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToUpper(sign))) != 1 {
		e := verifyErr(ErrSignature, CheckSignature, "%s sign does not match", alg)
		e.Message = []byte(V2SignString(f))
		return nil, e
	}
	if field, name, found := regroup.Find(v2DecisionFields, maps.All(f)); found {
		e := verifyErr(ErrMalformed, CheckDecode, "")
		e.Detail, e.OutTradeNo = regroup.Detail(field, name), claimed(f["out_trade_no"])
		return nil, e
	}
	n := &V2Notification{ReturnCode: f["return_code"], ReturnMsg: f["return_msg"], ResultCode: f["result_code"], ErrCode: f["err_code"],
		ErrCodeDes: f["err_code_des"], AppID: f["appid"], MchID: f["mch_id"], DeviceInfo: f["device_info"], NonceStr: f["nonce_str"],
		SignType: st, OpenID: f["openid"], IsSubscribe: f["is_subscribe"], TradeType: f["trade_type"], BankType: f["bank_type"],
		FeeType: f["fee_type"], CashFeeType: f["cash_fee_type"], TransactionID: f["transaction_id"], OutTradeNo: f["out_trade_no"],
		Attach: f["attach"], Fields: f}
	for _, x := range []struct {
		name string
		dst  *int64
	}{{"total_fee", &n.TotalFee}, {"settlement_total_fee", &n.SettlementFee}, {"cash_fee", &n.CashFee}, {"coupon_fee", &n.CouponFee}} {
		if *x.dst, err = parseFen(f, x.name); err != nil {
			return nil, verifyErr(ErrMalformed, CheckDecode, "%v", err)
		}
	}
	if s := f["time_end"]; s != "" {
		if n.TimeEnd, err = time.ParseInLocation("20060102150405", s, beijing); err != nil {
			return nil, verifyErr(ErrMalformed, CheckDecode, "time_end %q is not yyyyMMddHHmmss", s)
		}
	}
	return n, nil
}

// parseFen parses a non-negative integer amount in fen, in its canonical form (no leading zero:
// WeChat Pay never sends one, and "0100" read as 100 would be a value no one wrote); absent is 0.
func parseFen(f map[string]string, name string) (int64, error) {
	s, ok := f[name]
	if !ok || s == "" {
		return 0, nil
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%s (%d bytes) has a leading zero", name, len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%s (%d bytes) is not integer fen", name, len(s)) // not quoted: it may come from req_info, decrypted
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s (%d digits) is out of range", name, len(s))
	}
	return v, nil
}

// V2RefundInfo is the decrypted req_info of an APIv2 refund notification. Amounts are integer
// fen; SuccessTime is Beijing time.
type V2RefundInfo struct {
	TransactionID       string
	OutTradeNo          string
	RefundID            string
	OutRefundNo         string
	TotalFee            int64
	SettlementTotalFee  int64
	RefundFee           int64 // this refund
	SettlementRefundFee int64
	RefundStatus        string // SUCCESS, CHANGE (abnormal), REFUNDCLOSE
	SuccessTime         time.Time
	RefundRecvAccount   string // refund_recv_accout (sic)
	RefundAccount       string
	RefundRequestSource string
	// Fields holds every element of the decrypted <root>.
	Fields map[string]string
}

// DecryptV2RefundReqInfo decrypts the req_info of an APIv2 refund notification: base64, then
// AES-256-ECB under the 32 ASCII characters of lowercase hex md5(APIv2 key), PKCS#7 padding, a
// <root> XML. ECB is unauthenticated: a wrong key or tampering shows as bad padding or bad XML
// (ErrDecrypt), rarely as garbage; cross-check the refund against your records. Errors are
// *VerifyError.
func DecryptV2RefundReqInfo(reqInfo string, apiKey []byte) (*V2RefundInfo, error) {
	if len(apiKey) == 0 {
		return nil, errors.New("wechatpay: v2: no API key")
	}
	ct, err := base64.StdEncoding.DecodeString(strings.TrimSpace(reqInfo))
	if err != nil {
		return nil, verifyErr(ErrDecrypt, CheckDecrypt, "req_info is not base64")
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 || len(ct) > maxV2Body {
		return nil, verifyErr(ErrDecrypt, CheckDecrypt, "req_info is %d bytes, not a positive multiple of 16", len(ct))
	}
	sum := md5.Sum(apiKey)
	var key [32]byte
	hex.Encode(key[:], sum[:])
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, verifyErr(ErrDecrypt, CheckDecrypt, "cipher")
	}
	pt := make([]byte, len(ct))
	for i := 0; i < len(ct); i += aes.BlockSize {
		block.Decrypt(pt[i:i+aes.BlockSize], ct[i:i+aes.BlockSize])
	}
	pad := int(pt[len(pt)-1])
	if pad < 1 || pad > aes.BlockSize {
		return nil, verifyErr(ErrDecrypt, CheckDecrypt, "bad padding (wrong key?)")
	}
	for _, b := range pt[len(pt)-pad:] {
		if int(b) != pad {
			return nil, verifyErr(ErrDecrypt, CheckDecrypt, "bad padding (wrong key?)")
		}
	}
	root, f, err := parseFlatXML(pt[:len(pt)-pad])
	if err != nil || root != "root" {
		return nil, verifyErr(ErrDecrypt, CheckDecode, "plaintext is not a <root> XML (wrong key?)")
	}
	r := &V2RefundInfo{TransactionID: f["transaction_id"], OutTradeNo: f["out_trade_no"], RefundID: f["refund_id"], OutRefundNo: f["out_refund_no"],
		RefundStatus: f["refund_status"], RefundRecvAccount: f["refund_recv_accout"], RefundAccount: f["refund_account"],
		RefundRequestSource: f["refund_request_source"], Fields: f}
	for _, x := range []struct {
		name string
		dst  *int64
	}{{"total_fee", &r.TotalFee}, {"settlement_total_fee", &r.SettlementTotalFee}, {"refund_fee", &r.RefundFee}, {"settlement_refund_fee", &r.SettlementRefundFee}} {
		if *x.dst, err = parseFen(f, x.name); err != nil {
			return nil, verifyErr(ErrMalformed, CheckDecode, "%v", err)
		}
	}
	if s := f["success_time"]; s != "" {
		if r.SuccessTime, err = time.ParseInLocation("2006-01-02 15:04:05", s, beijing); err != nil {
			return nil, verifyErr(ErrMalformed, CheckDecode, "success_time (%d bytes) is not yyyy-MM-dd HH:mm:ss", len(s))
		}
	}
	return r, nil
}

// V2RefundNotification is an APIv2 refund notification: the outer XML (unsigned) and its
// decrypted req_info.
type V2RefundNotification struct {
	ReturnCode string
	ReturnMsg  string
	AppID      string
	MchID      string
	NonceStr   string
	Info       *V2RefundInfo
	// Fields holds every element of the outer XML.
	Fields map[string]string
}

// ParseV2RefundNotification parses an APIv2 refund notification and decrypts its req_info. It
// carries no sign: only the decryption with the APIv2 key authenticates it (weakly, ECB).
func ParseV2RefundNotification(body []byte, apiKey []byte) (*V2RefundNotification, error) {
	_, f, err := parseFlatXML(body)
	if err != nil {
		return nil, verifyErr(ErrMalformed, CheckEnvelope, "%v", strings.TrimPrefix(err.Error(), ErrMalformed.Error()+": "))
	}
	n := &V2RefundNotification{ReturnCode: f["return_code"], ReturnMsg: f["return_msg"], AppID: f["appid"], MchID: f["mch_id"], NonceStr: f["nonce_str"], Fields: f}
	if n.ReturnCode != "SUCCESS" {
		return nil, verifyErr(ErrMalformed, CheckEnvelope, "return_code %q", n.ReturnCode)
	}
	if f["req_info"] == "" {
		return nil, verifyErr(ErrMalformed, CheckEnvelope, "no req_info")
	}
	if n.Info, err = DecryptV2RefundReqInfo(f["req_info"], apiKey); err != nil {
		return nil, err
	}
	return n, nil
}

// V2Ack returns the exact XML acknowledgement of an APIv2 notification: return_code SUCCESS
// with return_msg OK when ok, else FAIL with msg. Send it with status 200.
func V2Ack(ok bool, msg string) []byte {
	code := "FAIL"
	if ok {
		code, msg = "SUCCESS", "OK"
	}
	return []byte("<xml><return_code><![CDATA[" + code + "]]></return_code><return_msg><![CDATA[" + cdataSafe(msg) + "]]></return_msg></xml>")
}

// cdataSafe keeps msg from closing its CDATA section.
func cdataSafe(s string) string { return strings.ReplaceAll(s, "]]>", "]]]]><![CDATA[>") }

// v2XML writes fields as an APIv2 XML message: <xml> with one element per field, sorted by
// name, values in CDATA. It is for simulators and tests (build, v2Sign, then add "sign").
func v2XML(fields map[string]string) []byte {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	b.WriteString("<xml>")
	for _, k := range keys {
		b.WriteString("<" + k + "><![CDATA[" + cdataSafe(fields[k]) + "]]></" + k + ">")
	}
	b.WriteString("</xml>")
	return b.Bytes()
}

// encryptV2RefundReqInfo encrypts a refund's <root> XML as WeChat Pay does for req_info:
// AES-256-ECB under lowercase hex md5(APIv2 key), PKCS#7, base64. It is for simulators and tests.
func encryptV2RefundReqInfo(plaintext []byte, apiKey []byte) (string, error) {
	if len(apiKey) == 0 {
		return "", errors.New("wechatpay: v2: no API key")
	}
	sum := md5.Sum(apiKey)
	var key [32]byte
	hex.Encode(key[:], sum[:])
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return "", fmt.Errorf("wechatpay: v2: %w", err)
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	pt := append(append([]byte(nil), plaintext...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	for i := 0; i < len(pt); i += aes.BlockSize {
		block.Encrypt(pt[i:i+aes.BlockSize], pt[i:i+aes.BlockSize])
	}
	return base64.StdEncoding.EncodeToString(pt), nil
}
