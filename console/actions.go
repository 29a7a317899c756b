package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/paynotify/paynotify"
)

// action is one of the console's actions: what the confirmation asks, and what it does.
type action struct {
	// Ask is the confirmation's question.
	Ask string
	// Do runs it and returns where to go and what to say.
	Do func(r *http.Request) (next, flash string, err error)
}

// confirmPage is the confirmation page's data: the form posted again, with confirm=yes.
type confirmPage struct {
	Action string
	Ask    string
	Fields [][2]string
	Back   string
}

// yuan is a CNY amount as an operator types it: digits, at most two decimals.
var yuan = regexp.MustCompile(`^(\d{1,10})(?:\.(\d{1,2}))?$`)

// parseYuan reads "88.88" as 8888 fen, without floats.
func parseYuan(s string) (paynotify.Amount, error) {
	m := yuan.FindStringSubmatch(strings.TrimPrefix(strings.TrimSpace(s), "¥"))
	if m == nil {
		return 0, paynotify.Errorf(paynotify.EINVALID, "The amount %q is not yuan with at most two decimals (e.g. 88.88).", s)
	}
	y, _ := strconv.ParseInt(m[1], 10, 64)
	f := m[2] + strings.Repeat("0", 2-len(m[2]))
	c, _ := strconv.ParseInt(f, 10, 64)
	return paynotify.Amount(y*100 + c), nil
}

// actions are the console's actions by name. Each calls the Service workflow the API calls.
func (c *Console) action(name string, r *http.Request) (*action, error) {
	app, otn, id := r.PostFormValue("app"), r.PostFormValue("otn"), r.PostFormValue("id")
	ctx := r.Context()
	back := orderPath(app, otn)
	switch name {
	case "query":
		return &action{Ask: "Query the provider about order " + otn + " now, and apply what it answers?", Do: func(r *http.Request) (string, string, error) {
			a, err := c.Service.App(app)
			if err != nil {
				return "", "", err
			}
			o, err := c.Service.Store.GetOrder(ctx, app, otn)
			if err != nil {
				return "", "", err
			}
			res, err := c.Service.CheckOrder(ctx, a, o, false)
			if err != nil {
				return "", "", err
			}
			msg := "Queried: the provider says " + strings.TrimSpace(res.State+" "+string(res.Verdict)+" "+res.Reason) + "."
			if res.Verdict == "" {
				msg += " Nothing to apply."
			}
			return back, msg, nil
		}}, nil
	case "close":
		return &action{Ask: "Close order " + otn + " at the provider? A closed order cannot be paid.", Do: func(r *http.Request) (string, string, error) {
			o, err := c.Service.CloseOrder(ctx, app, otn)
			if err != nil {
				return "", "", err
			}
			return back, "Closed: the order is " + string(o.Status) + ".", nil
		}}, nil
	case "refund":
		amount, err := parseYuan(r.PostFormValue("amount"))
		if err != nil {
			return nil, err
		}
		reason := strings.TrimSpace(r.PostFormValue("reason"))
		ask := "Refund ¥" + amount.String() + " of order " + otn + "? The money goes back to the buyer."
		if no := r.PostFormValue("out_request_no"); no != "" {
			ask = "Ask for refund " + no + " of ¥" + amount.String() + " of order " + otn + " again? Under its own number it is made once at most, whatever happened to the first request."
		} else if r.PostFormValue("confirm") != "yes" {
			// Asked when the operator clicks, from the store as it is then: the order's page may
			// have been rendered before a refund went pending (by the API, another operator), and
			// a second refund under a new number for the same complaint pays the buyer twice once
			// the first goes through (a reviewer helper's finding).
			refunds, err := c.Service.Store.ListRefunds(ctx, app, otn)
			if err != nil {
				return nil, err
			}
			var pending []string
			for _, rf := range refunds {
				if rf.Status == paynotify.RefundPending {
					pending = append(pending, rf.OutRequestNo+" (¥"+rf.Amount.String()+")")
				}
			}
			if len(pending) > 0 {
				ask += " Refunds of this order are pending: " + strings.Join(pending, ", ") + ". Each may still go through: " +
					"to ask for one again, retry it from the order's page under its own number; a new refund is money on top of them."
			}
		}
		return &action{Ask: ask, Do: func(r *http.Request) (string, string, error) {
			rf, _, err := c.Service.Refund(ctx, app, otn, paynotify.RefundRequest{Amount: amount, Reason: reason,
				OutRequestNo: r.PostFormValue("out_request_no")})
			if err != nil {
				return "", "", err
			}
			return back, fmt.Sprintf("Refund %s of ¥%s: %s.", rf.OutRequestNo, rf.Amount, rf.Status), nil
		}}, nil
	case "reprocess":
		return &action{Ask: "Verify and process notification " + id + " again? An order is paid once, however often.", Do: func(r *http.Request) (string, string, error) {
			res, err := c.Service.Reprocess(ctx, id)
			if err != nil {
				return "", "", err
			}
			next := "/console/notifications/" + url.PathEscape(res.Evidence.ID)
			if otn := res.Evidence.OutTradeNo; otn != "" {
				if _, err := c.Service.Store.GetOrder(ctx, res.Evidence.App, otn); err == nil {
					next = orderPath(res.Evidence.App, otn)
				}
			}
			return next, "Reprocessed: " + strings.TrimSpace(string(res.Verdict)+" "+res.Reason) + ".", nil
		}}, nil
	case "resend":
		return &action{Ask: "Deliver event " + id + " again to every webhook endpoint that subscribes to it?", Do: func(r *http.Request) (string, string, error) {
			n, err := c.Service.ResendEvent(ctx, id, "")
			if err != nil {
				return "", "", err
			}
			ev, err := c.Service.Store.GetEvent(ctx, id)
			next := "/console/"
			if err == nil && ev.OutTradeNo != "" {
				next = orderPath(ev.App, ev.OutTradeNo)
			}
			return next, fmt.Sprintf("Resent: %d deliveries queued.", n), nil
		}}, nil
	}
	return nil, paynotify.Errorf(paynotify.ENOTFOUND, "No action %q.", name)
}

// handleAction serves POST /console/actions/{action}: without confirm=yes it asks (the same form
// again, with confirm=yes); with it, it acts and returns to the page with what happened.
func (c *Console) handleAction(w http.ResponseWriter, r *http.Request, ss *session) {
	name := r.PathValue("action")
	a, err := c.action(name, r)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		if name == "refund" && r.PostFormValue("out_request_no") == "" {
			// The refund number is fixed on the confirmation page: confirming twice (a double
			// click, a reload) is the same refund, as the API's idempotency has it.
			r.PostForm.Set("out_request_no", paynotify.NewTradeNo())
		}
		p := &confirmPage{Action: name, Ask: a.Ask, Back: r.Referer()}
		for _, k := range []string{"app", "otn", "id", "amount", "reason", "out_request_no"} {
			if v := r.PostFormValue(k); v != "" {
				p.Fields = append(p.Fields, [2]string{k, v})
			}
		}
		if !strings.HasPrefix(p.Back, "/") {
			if u, err := url.Parse(p.Back); err == nil && u.Host == r.Host {
				p.Back = u.RequestURI()
			} else {
				p.Back = "/console/"
			}
		}
		c.render(w, r, http.StatusOK, "confirm", &page{Title: "Confirm", Data: p})
		return
	}
	// The line is the record of who did what (one admin password): what was asked, from where,
	// in which session (a tag of it, not its id); a refund's amount, number and reason (a
	// reviewer helper's finding: it said "action=refund" and the order only).
	attrs := []any{"action", name, "app", r.PostFormValue("app"), "out_trade_no", r.PostFormValue("otn"), "id", r.PostFormValue("id"),
		"client_ip", clientIP(r), "session", sessionTag(ss)}
	if name == "refund" {
		attrs = append(attrs, "amount", r.PostFormValue("amount"), "out_request_no", r.PostFormValue("out_request_no"),
			"reason", paynotify.ClipText(r.PostFormValue("reason"), 256))
	}
	next, flash, err := a.Do(r)
	if err != nil {
		c.logger().Warn("console: action failed", append(attrs, "err", err)...)
		c.fail(w, r, err)
		return
	}
	c.logger().Info("console: action", attrs...)
	http.Redirect(w, r, next+"?flash="+url.QueryEscape(flash)+"&fs="+flashMAC(ss, flash), http.StatusSeeOther)
}

// sessionTag names a session in the log without its id (which would let a reader of the log use
// it): the first 8 bytes of its SHA-256, hex. "" for none.
func sessionTag(ss *session) string {
	if ss == nil {
		return ""
	}
	sum := sha256.Sum256([]byte("paynotify console session\x00" + ss.id))
	return hex.EncodeToString(sum[:8])
}

// flashMAC authenticates a flash message for the session: the page shows a flash only with the
// MAC of the session it is shown to, so that a link cannot make the console say what it did not
// (the message is escaped, but a banner of ours on our page would still be believed). The key is
// the session's CSRF token, which never leaves the session's own pages.
func flashMAC(ss *session, msg string) string {
	if ss == nil {
		return ""
	}
	m := hmac.New(sha256.New, []byte(ss.csrf))
	m.Write([]byte("paynotify console flash\x00"))
	m.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// flashFor returns the flash of r's query if its MAC is the session's, else "".
func flashFor(r *http.Request, ss *session) string {
	q := r.URL.Query()
	msg, mac := q.Get("flash"), q.Get("fs")
	if msg == "" || ss == nil || !hmac.Equal([]byte(mac), []byte(flashMAC(ss, msg))) {
		return ""
	}
	return msg
}
