package console

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/paynotify/paynotify"
)

// check is one line of a notification's checks, as the timeline spells it out.
type check struct {
	Name string
	// Outcome is "pass", "fail", "skip" (not made) or "info".
	Outcome string
	Text    string
}

// evidenceView is an evidence record as a page shows it.
type evidenceView struct {
	*paynotify.Evidence
	// SignedText is the canonical string the provider's signature covers, as rebuilt from the
	// raw body and headers for reading (the verifier's own bytes are what counted); SignedHow
	// says how it is built and which key checks it.
	SignedText string
	SignedHow  string
	Checks     []check
	// Remedy is what to do about the record's reason (remedy), "" for nothing.
	Remedy     string
	BodyText   string
	HeaderRows [][2]string
}

// rejectReasons are the reasons of a request that failed before its content was trusted.
var rejectReasons = []string{paynotify.ReasonSignatureInvalid, paynotify.ReasonMalformed, paynotify.ReasonDuplicateKey,
	paynotify.ReasonTimestampSkew, paynotify.ReasonProbe, paynotify.ReasonUnknownSerial, paynotify.ReasonDecryptFailed,
	paynotify.ReasonOutTradeNoMismatch}

// explain builds the view of ev: its raw body and headers, the canonical string of its
// signature, and each check with its outcome. The outcomes are those the Processor recorded (the
// verdict and its reason); the values are read from the raw message, next to what the app's
// config and the order expect. a and o may be nil (an app no longer configured, an unknown order).
func explain(ev *paynotify.Evidence, a *paynotify.App, o *paynotify.Order) *evidenceView {
	v := &evidenceView{Evidence: ev, BodyText: strings.ToValidUTF8(string(ev.Body), "\uFFFD"), Remedy: remedy(ev, a)}
	keys := make([]string, 0, len(ev.Headers))
	for k := range ev.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, val := range ev.Headers[k] {
			v.HeaderRows = append(v.HeaderRows, [2]string{k, val})
		}
	}
	if ev.BodyOmitted {
		// Its checks read the raw message, which this page did not load (its budget): its own
		// page has them (a reviewer's finding: they read an empty body, "The message says “”").
		v.Checks = append(v.Checks, check{"checks", "skip", "Not shown here: this page loads a few MiB of bodies at most, and this record's is beyond them. " +
			"The verdict above is the one recorded; open the record for its checks."})
		return v
	}
	if ev.Source == paynotify.SourceQuery {
		v.Checks = append(v.Checks, check{"answer", outcomeOf(ev.Verdict, ""), "The provider's signed answer to our query (" + ev.Endpoint + "), verified over its raw bytes, then applied like a notification: " + verdictText(ev)})
		return v
	}
	f := fields(ev)
	// rejected: nothing of the message's content was trusted, so no check after the signature was
	// made: a refusal, and a step after the signature that failed (a check that could not be
	// made, a resource that does not decrypt, an unconfirmed notify_id or refund). Those rows said
	// "pass" beside values that disagreed with the config and the order (a reviewer helper's
	// finding). A store's failure (the decision was made, its commit failed) is not among them.
	rejected := ev.Verdict == paynotify.VerdictRejected || slices.Contains(rejectReasons, ev.Reason) ||
		slices.Contains([]string{paynotify.ReasonVerifyUnavailable, paynotify.ReasonDecryptFailed, "notify_id_unconfirmed", "refund_unconfirmed"}, ev.Reason)
	// stopped is a check not made because one before it failed (the Processor checks the app id,
	// then the seller, then the order, then the amount).
	stopped := func(name, why string) check {
		return check{name, "skip", "Not checked: " + why + "."}
	}

	// The signature.
	// A step after the signature that failed: WeChat Pay's decryption (the signature is checked
	// first), legacy Alipay's notify_verify, the commit. Its own row: shown on the signature's,
	// a wrong APIv3 key read as a signature failure, and a store's error as part of "Verified"
	// (a reviewer helper's finding).
	var after *check
	sig := check{Name: "signature"}
	const v2Applied = "No signature: req_info decrypted with the APIv2 key (encrypted, not signed); applied as WeChat Pay's signed refund query answered about the refund it names."
	switch {
	case ev.Reason == paynotify.ReasonVerifyUnavailable && v2Refund(ev):
		sig.Outcome, sig.Text = "pass", "No signature: req_info decrypted with the APIv2 key (encrypted, not signed)."
		after = &check{"refund query", "fail", "Could not confirm it now: " + ev.Detail}
	case ev.Reason == paynotify.ReasonVerifyUnavailable:
		sig.Outcome, sig.Text = "fail", "Could not be checked now: "+ev.Detail
	case ev.Reason == paynotify.ReasonDecryptFailed && ev.Endpoint == "wechatpay":
		sig.Outcome, sig.Text = "pass", "Verified."
		after = &check{"decrypt", "fail", "The resource does not decrypt with the app's APIv3 key (" + ev.Detail + ")."}
	case ev.Reason == "notify_id_unconfirmed":
		sig.Outcome, sig.Text = "pass", "Verified."
		after = &check{"notify_verify", "fail", ev.Detail}
	case ev.Reason == "refund_unconfirmed":
		sig.Outcome, sig.Text = "pass", "No signature: req_info decrypted with the APIv2 key (encrypted, not signed)."
		after = &check{"refund query", "fail", ev.Detail}
	case rejected:
		sig.Outcome, sig.Text = "fail", "Refused ("+ev.Reason+"): "+ev.Detail
	case ev.Verdict == paynotify.VerdictError && (ev.Reason == paynotify.ReasonStoreError || ev.Reason == paynotify.ReasonClientGone):
		sig.Outcome, sig.Text = "pass", "Verified."
		if v2Refund(ev) {
			sig.Text = v2Applied
		}
		after = &check{"commit", "fail", "Not committed (" + ev.Reason + "): " + ev.Detail}
	default:
		sig.Outcome, sig.Text = "pass", "Verified."
		if v2Refund(ev) {
			// No signature to verify: what was applied is the refund query's answer (a reviewer
			// of that change: "Verified." said otherwise).
			sig.Text = v2Applied
		}
		if ev.Detail != "" && ev.Verdict != paynotify.VerdictAnomaly {
			sig.Text += " " + ev.Detail // an anomaly's detail is what disagreed: on the status row
		}
	}
	if !ev.BodyOmitted { // left out by the page's budget: its own page has it
		v.SignedText, v.SignedHow = signedText(ev, a)
	}
	v.Checks = append(v.Checks, sig)
	if after != nil {
		v.Checks = append(v.Checks, *after)
	}

	skip := func(name, what string) check {
		return check{name, "skip", "Not checked: the message was refused before its content was trusted (" + what + ")."}
	}
	// The app id (and WeChat's merchant id).
	want := ""
	if a != nil {
		want = a.AppID
		if a.MchID != "" {
			want = strings.TrimSpace(want + " / mch " + a.MchID)
		}
	}
	appText := "The message says " + quote(f.appID) + "; the app's config expects " + quote(want) + "."
	switch {
	case rejected:
		v.Checks = append(v.Checks, skip("app id", "message says "+quote(f.appID)))
	case ev.Reason == paynotify.ReasonAppIDMismatch:
		v.Checks = append(v.Checks, check{"app id", "fail", appText})
	case f.appID == "" && ev.Provider == paynotify.ProviderWechatpay && ev.Endpoint == "wechatpay":
		v.Checks = append(v.Checks, check{"app id", "pass", "Inside the encrypted resource (decrypted with the APIv3 key): matched the config (" + quote(want) + ")."})
	case f.appID == "" && ev.Endpoint == "wechatpay-v2":
		v.Checks = append(v.Checks, check{"app id", "skip", "An APIv2 refund notification: its envelope is not signed, and req_info only encrypted under this mchid's APIv2 key; " +
			"what was applied is WeChat Pay's signed refund query's answer about the refund it names."})
	default:
		v.Checks = append(v.Checks, check{"app id", "pass", appText})
	}
	// The seller (Alipay).
	if ev.Provider != paynotify.ProviderWechatpay {
		var sellers []string
		if a != nil {
			sellers = a.SellerIDs
		}
		text := "The message says " + quote(f.seller) + "; the config allows " + quote(strings.Join(sellers, ", ")) + "."
		switch {
		case rejected:
			v.Checks = append(v.Checks, skip("seller", "message says "+quote(f.seller)))
		case ev.Reason == paynotify.ReasonAppIDMismatch:
			v.Checks = append(v.Checks, stopped("seller", "the app id did not match, and the message was not looked at further (it says "+quote(f.seller)+")"))
		case ev.Reason == paynotify.ReasonSellerMismatch:
			v.Checks = append(v.Checks, check{"seller", "fail", text})
		case len(sellers) == 0:
			v.Checks = append(v.Checks, check{"seller", "skip", "No seller_ids in the app's config: not checked (the message says " + quote(f.seller) + ")."})
		default:
			v.Checks = append(v.Checks, check{"seller", "pass", text})
		}
	}
	// The amount.
	orderAmount := "no order"
	if o != nil {
		orderAmount = "¥" + o.Amount.String()
	}
	amountText := "The message says " + quote(f.amount) + "; the order is " + orderAmount + "."
	switch {
	case rejected:
		v.Checks = append(v.Checks, skip("amount", "message says "+quote(f.amount)))
	case ev.Reason == paynotify.ReasonAppIDMismatch || ev.Reason == paynotify.ReasonSellerMismatch:
		what := "app id"
		if ev.Reason == paynotify.ReasonSellerMismatch {
			what = "seller"
		}
		v.Checks = append(v.Checks, stopped("amount", "the "+what+" did not match, and the message was not looked at further (it says "+quote(f.amount)+")"))
	case ev.Reason == paynotify.ReasonUnknownOrder:
		v.Checks = append(v.Checks, stopped("amount", "no order "+quote(ev.OutTradeNo)+" to compare it with (the message says "+quote(f.amount)+")"))
	case ev.Reason == paynotify.ReasonAmountMismatch || ev.Reason == paynotify.ReasonCurrencyMismatch:
		v.Checks = append(v.Checks, check{"amount", "fail", amountText + " (" + ev.Reason + ")"})
	case f.amount == "" && ev.Endpoint == "wechatpay":
		v.Checks = append(v.Checks, check{"amount", "pass", "Inside the encrypted resource: matched the order (" + orderAmount + ")."})
	default:
		v.Checks = append(v.Checks, check{"amount", "pass", amountText})
	}
	// The status, and what it did to the order.
	if rejected {
		v.Checks = append(v.Checks, skip("status", "message says "+quote(f.status)))
	} else {
		status := "The message says " + quote(f.status)
		if f.status == "" && ev.Endpoint == "wechatpay" {
			status = "The encrypted resource's trade state"
		}
		v.Checks = append(v.Checks, check{"status", outcomeOf(ev.Verdict, ev.Reason), status + ": " + verdictText(ev)})
	}
	return v
}

// signedText asks the app's verifier (paynotify.SignedTexter) for the bytes the notification's
// signature covers, built by its protocol package, and how they are checked; "" when it cannot
// say (an app no longer configured, a body that does not parse). A GBK form's bytes are shown as
// valid UTF-8: the signature covered the bytes themselves.
func signedText(ev *paynotify.Evidence, a *paynotify.App) (text, how string) {
	if a == nil || a.Gateway == nil || ev.Endpoint == "" {
		return "", ""
	}
	st, ok := a.Gateway.Verifier(ev.Endpoint).(paynotify.SignedTexter)
	if !ok {
		return "", ""
	}
	b, how, err := st.SignedText(http.Header(ev.Headers), ev.Body)
	if err != nil {
		return "", "The body does not parse: " + err.Error()
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), how
}

// outcomeOf is the outcome of the last check from the verdict.
func outcomeOf(v paynotify.Verdict, reason string) string {
	switch v {
	case paynotify.VerdictAccepted, paynotify.VerdictDuplicate:
		return "pass"
	case paynotify.VerdictAnomaly:
		if paynotify.Acknowledged(reason) {
			return "info"
		}
	}
	return "fail"
}

// verdictText says in words what the verdict did.
func verdictText(ev *paynotify.Evidence) string {
	switch ev.Verdict {
	case paynotify.VerdictAccepted:
		return "accepted, applied to the order (version " + itoa(ev.OrderVersion) + ")."
	case paynotify.VerdictDuplicate:
		return "duplicate: already applied, no change."
	case paynotify.VerdictAnomaly:
		if ev.Detail != "" {
			return "anomaly " + ev.Reason + " (" + ev.Detail + "): not applied; see the anomaly inbox."
		}
		return "anomaly " + ev.Reason + ": not applied; see the anomaly inbox."
	case paynotify.VerdictRejected:
		return "rejected (" + ev.Reason + ")."
	}
	return string(ev.Verdict) + " (" + ev.Reason + "): not applied; the provider retries."
}

func quote(s string) string {
	if s == "" {
		return "nothing"
	}
	return "“" + s + "”"
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// messageFields are the values a page shows from a raw notification.
type messageFields struct {
	appID, seller, amount, status string
}

// v2Refund reports whether ev is a WeChat Pay APIv2 refund notification: req_info, and no sign.
func v2Refund(ev *paynotify.Evidence) bool {
	if ev.Endpoint != "wechatpay-v2" {
		return false
	}
	m := xmlFields(ev.Body)
	return m["req_info"] != "" && m["sign"] == ""
}

// fields reads the values of a raw notification by its endpoint (docs/alipay.md,
// docs/alipay-legacy.md, docs/wechatpay.md).
func fields(ev *paynotify.Evidence) messageFields {
	var f messageFields
	switch ev.Endpoint {
	case "wechatpay":
		// The ids, the amount and the state are inside the encrypted resource.
	case "wechatpay-v2":
		if v2Refund(ev) {
			// A refund: its envelope is not signed and req_info only encrypted; what was applied
			// is WeChat Pay's refund query's answer, not anything shown here.
			break
		}
		m := xmlFields(ev.Body)
		f.appID, f.amount, f.status = m["appid"], fen(m["total_fee"]), strings.TrimSpace(m["result_code"]+" "+m["trade_state"])
		if m["mch_id"] != "" {
			f.appID += " / mch " + m["mch_id"]
		}
	default: // alipay, alipay-legacy: a form
		q, err := url.ParseQuery(string(ev.Body))
		if err != nil {
			break
		}
		m := map[string]string{}
		for k, vs := range q {
			m[k] = vs[0]
		}
		f.appID, f.seller, f.status = m["app_id"], m["seller_id"], m["trade_status"]
		f.amount = m["total_amount"]
		if f.amount == "" {
			f.amount = m["total_fee"]
		}
		if f.amount != "" {
			f.amount = "¥" + f.amount
		}
		if m["notify_data"] != "" && m["service"] != "" { // the legacy WAP notification
			// Its signature covers notify_data alone (with service, v, sec_id): a form-level
			// amount, seller or status is anyone's. Under 0001 notify_data is encrypted, and
			// nothing is shown.
			nd := xmlFields([]byte(m["notify_data"]))
			f.appID, f.seller, f.status, f.amount = "", nd["seller_id"], nd["trade_status"], ""
			if nd["total_fee"] != "" {
				f.amount = "¥" + nd["total_fee"]
			}
		}
	}
	return f
}

// fen shows a WeChat amount in fen as yuan.
func fen(s string) string {
	if s == "" {
		return ""
	}
	var n int64
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		return s + " fen"
	}
	return "¥" + paynotify.Amount(n).String()
}

// xmlFields reads the flat elements of an XML document (<xml><k>v</k>…</xml>).
func xmlFields(body []byte) map[string]string {
	out := map[string]string{}
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = false
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	depth, key := 0, ""
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return out
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			key = t.Name.Local
			text.Reset()
		case xml.CharData:
			text.Write(t)
		case xml.EndElement:
			if depth == 2 && key == t.Name.Local {
				out[key] = text.String()
			}
			depth--
		}
	}
}
