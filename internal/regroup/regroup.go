// Package regroup finds what a signature over fields joined as name=value with "&" cannot place.
//
// Alipay's signatures (open platform and legacy mapi) and WeChat Pay's APIv2 sign cover the
// fields joined with "&", not where each one ends (docs/alipay.md, "Canonical strings"): a genuine
// message can be regrouped and still verify, text moved out of a field into the value before it
// (a real out_trade_no folded into notify_type, a seller_id into seller_email) or out of a value
// into a field of its own (a buyer's subject "Gift&out_trade_no=T2" made into another order's
// number). The protocol packages refuse a verified message in which Find finds something, so that
// a program using them alone decides by no field that may hold another's text.
package regroup

import (
	"fmt"
	"iter"
	"strings"
)

// Find returns the first field of fields whose name holds "&" or "=" (name is then ""), or whose
// value holds "&"+n+"=" for a name n of names (the first such n of names), with found true.
// The field "sign" is not looked at: it is not part of the signed text.
//
// Names are looked at before values: text taken into a field can sit in its name as well as in
// its value (a field named "notify_time=…&out_trade_no=T1&…&subject" took in the real order
// number, and no value held "&"). With names clean, all such text is in a value, and a value that
// holds none of "&n=" for the names a program decides by hides none of those fields and makes up
// none.
func Find(names []string, fields iter.Seq2[string, string]) (field, name string, found bool) {
	for k, v := range fields {
		if strings.ContainsAny(k, "&=") {
			return k, "", true
		}
		if k == "sign" || !strings.Contains(v, "&") {
			continue
		}
		for _, n := range names {
			if strings.Contains(v, "&"+n+"=") {
				return k, n, true
			}
		}
	}
	return "", "", false
}

// Detail says what Find found, for an error or the evidence: the field's name is quoted and cut
// to 64 bytes.
func Detail(field, name string) string {
	if len(field) > 64 {
		field = field[:64]
	}
	field = strings.ToValidUTF8(field, "?")
	if name == "" {
		return fmt.Sprintf("verified, but a field's name %q holds \"&\" or \"=\": the signature does not say where fields end", field)
	}
	return fmt.Sprintf("verified, but %s holds \"&%s=\": the signature does not say where fields end, and this one may hold another field's text", field, name)
}
