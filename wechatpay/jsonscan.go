package wechatpay

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// A small, allocation-light JSON reader for the fixed shapes of notifications. encoding/json costs
// about as much as the RSA verification itself on these bodies (reflection plus a separate validity
// scan), which VerifyNotification's budget (at most 1.6× a bare RSA verification,
// docs/performance.md) cannot afford. The reader is strict about structure (it rejects what
// encoding/json rejects for these shapes; FuzzJSONDecode checks both agree) and decodes strings
// with escapes through encoding/json.

var errJSON = errors.New("invalid JSON")

const maxJSONDepth = 64

type jsonReader struct {
	b []byte
	i int
}

func (r *jsonReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// object calls fn for each member of the object at the cursor; fn must consume the value.
func (r *jsonReader) object(fn func(key string) error) error {
	r.ws()
	if r.i >= len(r.b) || r.b[r.i] != '{' {
		return errJSON
	}
	r.i++
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == '}' {
		r.i++
		return nil
	}
	for {
		r.ws()
		key, err := r.str()
		if err != nil {
			return err
		}
		r.ws()
		if r.i >= len(r.b) || r.b[r.i] != ':' {
			return errJSON
		}
		r.i++
		r.ws()
		if err := fn(key); err != nil {
			return err
		}
		r.ws()
		if r.i >= len(r.b) {
			return errJSON
		}
		switch r.b[r.i] {
		case ',':
			r.i++
		case '}':
			r.i++
			return nil
		default:
			return errJSON
		}
	}
}

// rawString returns the extent of the string at the cursor and whether it has escapes.
func (r *jsonReader) rawString() (start, end int, escaped bool, err error) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return 0, 0, false, errJSON
	}
	start = r.i
	for j := r.i + 1; j < len(r.b); j++ {
		c := r.b[j]
		switch {
		case c == '"':
			r.i = j + 1
			return start, r.i, escaped, nil
		case c == '\\':
			escaped = true
			j++
		case c < 0x20:
			return 0, 0, false, errJSON
		}
	}
	return 0, 0, false, errJSON
}

func (r *jsonReader) str() (string, error) {
	start, end, escaped, err := r.rawString()
	if err != nil {
		return "", err
	}
	if !escaped && validUTF8(r.b[start+1:end-1]) {
		return string(r.b[start+1 : end-1]), nil
	}
	var s string // escapes or invalid UTF-8: let encoding/json decide, exactly
	if err := json.Unmarshal(r.b[start:end], &s); err != nil {
		return "", errJSON
	}
	return s, nil
}

func validUTF8(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return utf8Valid(b)
		}
	}
	return true
}

// strField reads a string or null into *dst.
func (r *jsonReader) strField(dst *string) error {
	if r.null() {
		return nil
	}
	s, err := r.str()
	if err != nil {
		return err
	}
	*dst = s
	return nil
}

func (r *jsonReader) null() bool {
	if len(r.b)-r.i >= 4 && string(r.b[r.i:r.i+4]) == "null" {
		r.i += 4
		return true
	}
	return false
}

// intField reads an integer (or null) into *dst; fractions and exponents are errors.
func (r *jsonReader) intField(dst *int64) error {
	if r.null() {
		return nil
	}
	start := r.i
	if err := r.number(); err != nil {
		return err
	}
	v, err := strconv.ParseInt(string(r.b[start:r.i]), 10, 64)
	if err != nil {
		return fmt.Errorf("a number of %d characters is not an int64", r.i-start) // not quoted: decrypted text
	}
	*dst = v
	return nil
}

// number consumes a JSON number, validating its grammar.
func (r *jsonReader) number() error {
	b, i := r.b, r.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return errJSON
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return errJSON
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return errJSON
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	r.i = i
	return nil
}

// skip consumes any JSON value.
func (r *jsonReader) skip(depth int) error {
	if depth > maxJSONDepth {
		return errJSON
	}
	r.ws()
	if r.i >= len(r.b) {
		return errJSON
	}
	switch c := r.b[r.i]; {
	case c == '"':
		_, err := r.str()
		return err
	case c == '{':
		return r.object(func(string) error { return r.skip(depth + 1) })
	case c == '[':
		r.i++
		r.ws()
		if r.i < len(r.b) && r.b[r.i] == ']' {
			r.i++
			return nil
		}
		for {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
			r.ws()
			if r.i >= len(r.b) {
				return errJSON
			}
			if r.b[r.i] == ']' {
				r.i++
				return nil
			}
			if r.b[r.i] != ',' {
				return errJSON
			}
			r.i++
		}
	case c == 't' && len(r.b)-r.i >= 4 && string(r.b[r.i:r.i+4]) == "true":
		r.i += 4
	case c == 'f' && len(r.b)-r.i >= 5 && string(r.b[r.i:r.i+5]) == "false":
		r.i += 5
	case r.null():
	case c == '-' || (c >= '0' && c <= '9'):
		return r.number()
	default:
		return errJSON
	}
	return nil
}

// end checks that only whitespace follows the top-level value.
func (r *jsonReader) end() error {
	r.ws()
	if r.i != len(r.b) {
		return errJSON
	}
	return nil
}

// obj reads a nested object field (or null) with fn.
func (r *jsonReader) obj(fn func(key string) error) error {
	if r.null() {
		return nil
	}
	return r.object(fn)
}

func decodeEnvelope(b []byte, e *envelope) error {
	r := &jsonReader{b: b}
	err := r.object(func(k string) error {
		switch k {
		case "id":
			return r.strField(&e.ID)
		case "create_time":
			return r.strField(&e.CreateTime)
		case "resource_type":
			return r.strField(&e.ResourceType)
		case "event_type":
			return r.strField(&e.EventType)
		case "summary":
			return r.strField(&e.Summary)
		case "resource":
			if r.null() {
				e.Resource = nil
				return nil
			}
			if e.Resource == nil { // a repeated key merges, as in encoding/json
				e.Resource = &Resource{}
			}
			res := e.Resource
			return r.object(func(k string) error {
				switch k {
				case "original_type":
					return r.strField(&res.OriginalType)
				case "algorithm":
					return r.strField(&res.Algorithm)
				case "ciphertext":
					return r.strField(&res.Ciphertext)
				case "associated_data":
					return r.strField(&res.AssociatedData)
				case "nonce":
					return r.strField(&res.Nonce)
				}
				return r.skip(2)
			})
		}
		return r.skip(1)
	})
	if err != nil {
		return err
	}
	return r.end()
}

func decodeTransaction(b []byte, w *wireTransaction) error {
	r := &jsonReader{b: b}
	err := r.object(func(k string) error {
		switch k {
		case "appid":
			return r.strField(&w.AppID)
		case "mchid":
			return r.strField(&w.MchID)
		case "out_trade_no":
			return r.strField(&w.OutTradeNo)
		case "transaction_id":
			return r.strField(&w.TransactionID)
		case "trade_type":
			return r.strField(&w.TradeType)
		case "trade_state":
			return r.strField(&w.TradeState)
		case "trade_state_desc":
			return r.strField(&w.TradeStateDesc)
		case "bank_type":
			return r.strField(&w.BankType)
		case "attach":
			return r.strField(&w.Attach)
		case "success_time":
			return r.strField(&w.SuccessTime)
		case "payer":
			return r.obj(func(k string) error {
				if k == "openid" {
					return r.strField(&w.Payer.OpenID)
				}
				return r.skip(2)
			})
		case "amount":
			return r.obj(func(k string) error {
				switch k {
				case "total":
					return r.intField(&w.Amount.Total)
				case "payer_total":
					return r.intField(&w.Amount.PayerTotal)
				case "currency":
					return r.strField(&w.Amount.Currency)
				case "payer_currency":
					return r.strField(&w.Amount.PayerCurrency)
				}
				return r.skip(2)
			})
		}
		return r.skip(1)
	})
	if err != nil {
		return err
	}
	return r.end()
}

func decodeRefund(b []byte, w *wireRefund) error {
	r := &jsonReader{b: b}
	err := r.object(func(k string) error {
		switch k {
		case "mchid":
			return r.strField(&w.MchID)
		case "out_trade_no":
			return r.strField(&w.OutTradeNo)
		case "transaction_id":
			return r.strField(&w.TransactionID)
		case "out_refund_no":
			return r.strField(&w.OutRefundNo)
		case "refund_id":
			return r.strField(&w.RefundID)
		case "refund_status":
			return r.strField(&w.RefundStatus)
		case "status":
			return r.strField(&w.Status)
		case "success_time":
			return r.strField(&w.SuccessTime)
		case "create_time":
			return r.strField(&w.CreateTime)
		case "channel":
			return r.strField(&w.Channel)
		case "user_received_account":
			return r.strField(&w.UserReceivedAccount)
		case "amount":
			return r.obj(func(k string) error {
				switch k {
				case "total":
					return r.intField(&w.Amount.Total)
				case "refund":
					return r.intField(&w.Amount.Refund)
				case "payer_total":
					return r.intField(&w.Amount.PayerTotal)
				case "payer_refund":
					return r.intField(&w.Amount.PayerRefund)
				case "currency":
					return r.strField(&w.Amount.Currency)
				}
				return r.skip(2)
			})
		}
		return r.skip(1)
	})
	if err != nil {
		return err
	}
	return r.end()
}

func utf8Valid(b []byte) bool { return utf8.Valid(b) }
