package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/paynotify/paynotify"
)

// verdicts in the order the chart stacks them.
var verdicts = []paynotify.Verdict{paynotify.VerdictAccepted, paynotify.VerdictDuplicate, paynotify.VerdictAnomaly,
	paynotify.VerdictRejected, paynotify.VerdictError}

// bar is one rectangle of the overview's chart.
type bar struct {
	X, Y, W, H int
	Class      string
	Title      string
}

// overview is the overview page's data.
type overview struct {
	Today       time.Time
	Paid        []paynotify.AppPaid
	PaidCount   int
	PaidTotal   paynotify.Amount
	Bars        []bar
	Hours       []bar // the hour labels (X, Title)
	Totals      map[paynotify.Verdict]int
	Verdicts    []paynotify.Verdict
	Max         int
	Anomalies   []*paynotify.Evidence
	Refunds     []*paynotify.Refund
	MoreRefunds int // refunds needing attention past the first overviewRefunds (the inbox lists them all)
	// Rejected and Errors are the notifications rejected and failed in the chart's 24 hours:
	// under Needs attention, which said "Nothing" while every notification of an app was
	// refused for a wrong key (a reviewer helper's finding).
	Rejected, Errors int
	Channels         []demoChannel
}

// demoChannel is one choice of the demo's create form.
type demoChannel struct{ App, Channel string }

// Chart geometry: 24 columns of 20 px in a 520×160 drawing.
const (
	chartLeft   = 40
	chartBottom = 140
	chartHeight = 120
	colWidth    = 20
)

// handleOverview serves /console/: today's paid orders per app (Beijing day), the notifications
// per verdict over the last 24 hours (one indexed count per hour), and the anomalies of the last
// 7 days and refunds that need someone.
func (c *Console) handleOverview(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	now := c.now()
	bj := now.In(beijing)
	today := time.Date(bj.Year(), bj.Month(), bj.Day(), 0, 0, 0, 0, beijing)
	st := c.Service.Store
	paid, err := st.PaidSince(ctx, today)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	ov := &overview{Today: today, Paid: paid, Totals: map[paynotify.Verdict]int{}, Verdicts: verdicts}
	for _, p := range paid {
		ov.PaidCount += p.Count
		ov.PaidTotal += p.Amount
	}
	end := now.Truncate(time.Hour).Add(time.Hour)
	counts := make([]map[paynotify.Verdict]int, 24)
	for i := range 24 {
		from := end.Add(time.Duration(i-24) * time.Hour)
		if counts[i], err = st.CountEvidence(ctx, from, from.Add(time.Hour)); err != nil {
			c.fail(w, r, err)
			return
		}
		n := 0
		for _, v := range verdicts {
			n += counts[i][v]
			ov.Totals[v] += counts[i][v]
		}
		ov.Max = max(ov.Max, n)
	}
	for i := range 24 {
		from := end.Add(time.Duration(i-24) * time.Hour)
		x := chartLeft + i*colWidth
		y := chartBottom
		for _, v := range verdicts {
			n := counts[i][v]
			if n == 0 {
				continue
			}
			h := max(1, n*chartHeight/max(ov.Max, 1))
			y -= h
			ov.Bars = append(ov.Bars, bar{X: x + 2, Y: y, W: colWidth - 4, H: h, Class: "v-" + string(v),
				Title: fmt.Sprintf("%s–%s (Beijing): %d %s", from.In(beijing).Format("15:04"), from.Add(time.Hour).In(beijing).Format("15:04"), n, v)})
		}
		if i%3 == 0 {
			ov.Hours = append(ov.Hours, bar{X: x, Title: from.In(beijing).Format("15h")})
		}
	}
	ov.Rejected, ov.Errors = ov.Totals[paynotify.VerdictRejected], ov.Totals[paynotify.VerdictError]
	if ov.Anomalies, err = anomalyEvidence(ctx, st, now.Add(-7*24*time.Hour), 10); err != nil {
		c.fail(w, r, err)
		return
	}
	if ov.Refunds, err = c.attentionRefunds(ctx, now); err != nil {
		c.fail(w, r, err)
		return
	}
	if n := len(ov.Refunds); n > overviewRefunds {
		// However old they are listed, they can be thousands after an outage: the inbox has all.
		ov.Refunds, ov.MoreRefunds = ov.Refunds[:overviewRefunds], n-overviewRefunds
	}
	if c.Demo {
		ov.Channels = c.demoChannels()
	}
	stamp, _ := c.stamp(ctx, "", "")
	c.render(w, r, http.StatusOK, "overview", &page{Title: "Overview", Nav: "overview", Data: ov, Live: "scope=all", Stamp: stamp})
}

// overviewRefunds is how many refunds needing attention the overview lists.
const overviewRefunds = 20

// attentionRefunds are the refunds that need attention, however old: pending ones whose checks ran
// out (or that the provider reports ABNORMAL), succeeded ones whose inferred amount no query
// confirmed. Those of the last 30 days only, they vanished from the console while still
// unresolved, money perhaps gone (a reviewer helper's finding); they are few (partial indexes).
func (c *Console) attentionRefunds(ctx context.Context, _ time.Time) ([]*paynotify.Refund, error) {
	return c.Service.Store.ListAttentionRefunds(ctx, time.Time{})
}

// demoChannels are the channels of every app, for the demo's create form.
func (c *Console) demoChannels() []demoChannel {
	var out []demoChannel
	for name, a := range c.Service.Apps {
		for _, ch := range []string{paynotify.ChannelAlipayPage, paynotify.ChannelAlipayWap, paynotify.ChannelAlipayPrecreate, paynotify.ChannelAlipayApp,
			paynotify.ChannelWechatNative, paynotify.ChannelWechatH5, paynotify.ChannelWechatJSAPI, paynotify.ChannelWechatApp,
			paynotify.ChannelAlipayDirect, paynotify.ChannelAlipayWapDirect} {
			if paynotify.ChannelProvider(ch) == a.Provider {
				out = append(out, demoChannel{App: name, Channel: ch})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].App < out[j].App })
	return out
}

// ordersPage is the orders page's data.
type ordersPage struct {
	Q, App, Status, Channel, From, To string
	Page                              int
	Orders                            []*paynotify.Order
	More                              bool
	Apps                              []string
	Statuses                          []paynotify.OrderStatus
	Channels                          []string
}

const ordersPerPage = 50

// handleOrders serves /console/orders: search by out_trade_no or provider trade number, filters by
// app, status, channel and creation date (Beijing days, both ends included), 50 a page.
func (c *Console) handleOrders(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	p := &ordersPage{Q: strings.TrimSpace(q.Get("q")), App: q.Get("app"), Status: q.Get("status"), Channel: q.Get("channel"),
		From: q.Get("from"), To: q.Get("to"), Page: 1, Apps: c.appNames(),
		Statuses: []paynotify.OrderStatus{paynotify.StatusPending, paynotify.StatusPaid, paynotify.StatusFinished, paynotify.StatusClosed, paynotify.StatusRefunded},
		Channels: []string{paynotify.ChannelAlipayPage, paynotify.ChannelAlipayWap, paynotify.ChannelAlipayPrecreate, paynotify.ChannelAlipayApp,
			paynotify.ChannelWechatNative, paynotify.ChannelWechatH5, paynotify.ChannelWechatJSAPI, paynotify.ChannelWechatApp,
			paynotify.ChannelAlipayDirect, paynotify.ChannelAlipayWapDirect}}
	if n, err := strconv.Atoi(q.Get("page")); err == nil && n > 1 && n <= 10000 {
		p.Page = n
	}
	f := paynotify.OrderFilter{App: p.App, Status: paynotify.OrderStatus(p.Status), Channel: p.Channel, TradeNo: p.Q,
		Limit: ordersPerPage + 1, Offset: (p.Page - 1) * ordersPerPage}
	for _, d := range []struct {
		name, s string
		t       *time.Time
		add     int
	}{{"from", p.From, &f.Since, 0}, {"to", p.To, &f.Until, 1}} {
		if d.s == "" {
			continue
		}
		day, err := time.ParseInLocation("2006-01-02", d.s, beijing)
		if err != nil {
			// The field named, not the text echoed: a link's text in the console's own error
			// banner is words put in its mouth (a reviewer helper's finding).
			c.fail(w, r, paynotify.Errorf(paynotify.EINVALID, "The %s date is not YYYY-MM-DD.", d.name))
			return
		}
		*d.t = day.AddDate(0, 0, d.add)
	}
	orders, err := c.Service.Store.ListOrders(r.Context(), f)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if len(orders) > ordersPerPage {
		orders, p.More = orders[:ordersPerPage], true
	}
	p.Orders = orders
	// One exact match of a search: straight to its page.
	if p.Q != "" && len(orders) == 1 && p.Page == 1 {
		http.Redirect(w, r, orderPath(orders[0].App, orders[0].OutTradeNo), http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "orders", &page{Title: "Orders", Nav: "orders", Data: p})
}

func (c *Console) appNames() []string {
	names := make([]string, 0, len(c.Service.Apps))
	for n := range c.Service.Apps {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// entry is one line of an order's timeline.
type entry struct {
	At       time.Time
	Kind     string // created, notification, query, reprocess, event, refund
	Evidence *evidenceView
	Event    *eventView
	Refund   *paynotify.Refund
	Order    *paynotify.Order
}

// eventView is an event with its webhook deliveries and attempts.
type eventView struct {
	*paynotify.Event
	Data       string
	Deliveries []*paynotify.WebhookDelivery
	Attempts   []*paynotify.WebhookAttempt
}

// The order page's evidence: every record but the rejected ones up to orderKept, each verdict
// with its own budget of bodies; the newest orderRejected rejected ones with a smaller one. Junk
// anyone can post naming the order (rejected, a hundred a minute under the cap) pushed the
// genuine notification off the page at 500, and made it tens of MiB (a reviewer helper's
// finding).
const (
	orderKept           = 500
	orderRejected       = 50
	orderBodyBudget     = 2 << 20
	orderRejectedBudget = 512 << 10
)

// orderVerdicts are the verdicts of the records the order page shows up to orderKept.
var orderVerdicts = []paynotify.Verdict{paynotify.VerdictAccepted, paynotify.VerdictDuplicate, paynotify.VerdictAnomaly, paynotify.VerdictError}

// orderEvidence loads the order page's evidence (newest first within each verdict) and says
// whether rejected records were left out.
func orderEvidence(ctx context.Context, st paynotify.Store, app, otn string) (evs []*paynotify.Evidence, rejectedMore bool, err error) {
	for _, v := range orderVerdicts {
		l, err := st.ListEvidence(ctx, paynotify.EvidenceFilter{App: app, OutTradeNo: otn, Verdict: v, Limit: orderKept, BodyBudget: orderBodyBudget})
		if err != nil {
			return nil, false, err
		}
		evs = append(evs, l...)
	}
	// Rejected, but not junk, shown as the others: query answers and reprocesses (ours), and
	// legacy Alipay's notify_id_unconfirmed (its signature held: a leaked key's trace), as
	// retention keeps them (a reviewer's finding: 50 forged posts pushed them off the page).
	seen := map[string]bool{}
	for _, f := range []paynotify.EvidenceFilter{{Source: paynotify.SourceQuery}, {Source: paynotify.SourceReprocess},
		{Source: paynotify.SourceNotification, Reason: "notify_id_unconfirmed"}} {
		f.App, f.OutTradeNo, f.Verdict, f.Limit, f.BodyBudget = app, otn, paynotify.VerdictRejected, orderKept, orderRejectedBudget
		l, err := st.ListEvidence(ctx, f)
		if err != nil {
			return nil, false, err
		}
		for _, e := range l {
			seen[e.ID] = true
		}
		evs = append(evs, l...)
	}
	junk, err := st.ListEvidence(ctx, paynotify.EvidenceFilter{App: app, OutTradeNo: otn, Verdict: paynotify.VerdictRejected,
		Source: paynotify.SourceNotification, Limit: orderRejected + 1, BodyBudget: orderRejectedBudget})
	if err != nil {
		return nil, false, err
	}
	if len(junk) > orderRejected {
		junk, rejectedMore = junk[:orderRejected], true
	}
	for _, e := range junk {
		if !seen[e.ID] {
			evs = append(evs, e)
		}
	}
	return evs, rejectedMore, nil
}

// orderPage is the order page's data.
type orderPage struct {
	// RejectedMore: more rejected records name the order than the page shows (orderEvidence).
	RejectedMore bool
	Order        *paynotify.Order
	App          *paynotify.App
	Timeline     []entry
	Refunds      []*paynotify.Refund
	PayLinks     [][2]string // demo: the sandbox's pay links
	PayForm      string      // demo: the app SDK stand-in's order string
	// Refund is the refund form's default amount: what is neither refunded nor pending; Pending
	// is the pending refunds' total, which the page warns about (retry those, with their own
	// numbers, rather than refunding again).
	Refund, Pending paynotify.Amount
}

// handleOrder serves /console/orders/{app}/{otn}: the order and its timeline, oldest first.
func (c *Console) handleOrder(w http.ResponseWriter, r *http.Request, ss *session) {
	ctx := r.Context()
	app, otn := r.PathValue("app"), r.PathValue("otn")
	st := c.Service.Store
	o, err := st.GetOrder(ctx, app, otn)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p := &orderPage{Order: o, App: c.Service.Apps[app], Refund: o.Amount - o.RefundedAmount}
	p.Timeline = append(p.Timeline, entry{At: o.CreatedAt, Kind: "created", Order: o})
	evs, more, err := orderEvidence(ctx, st, app, otn)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p.RejectedMore = more
	for _, ev := range evs {
		kind := ev.Source
		if kind == "" {
			kind = paynotify.SourceNotification
		}
		p.Timeline = append(p.Timeline, entry{At: ev.ReceivedAt, Kind: kind, Evidence: explain(ev, p.App, o)})
	}
	events, err := st.ListEvents(ctx, paynotify.EventFilter{App: app, OutTradeNo: otn, Limit: 500})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	for _, e := range events {
		v := &eventView{Event: e, Data: prettyJSON(e.Data)}
		if v.Deliveries, err = st.ListWebhookDeliveries(ctx, e.ID); err != nil {
			c.fail(w, r, err)
			return
		}
		if v.Attempts, err = st.ListWebhookAttempts(ctx, paynotify.WebhookAttemptFilter{EventID: e.ID, Limit: 100}); err != nil {
			c.fail(w, r, err)
			return
		}
		p.Timeline = append(p.Timeline, entry{At: e.Timestamp, Kind: "event", Event: v})
	}
	if p.Refunds, err = st.ListRefunds(ctx, app, otn); err != nil {
		c.fail(w, r, err)
		return
	}
	var nonFailed paynotify.Amount
	for _, rf := range p.Refunds {
		p.Timeline = append(p.Timeline, entry{At: rf.CreatedAt, Kind: "refund", Refund: rf})
		switch rf.Status {
		case paynotify.RefundPending:
			p.Pending += rf.Amount
			nonFailed += rf.Amount
		case paynotify.RefundSucceeded:
			nonFailed += rf.Amount
		}
	}
	// What the server would still allow (paynotify.RefundBound's rule, its ECONFLICT included).
	p.Refund = max(o.Amount-(max(nonFailed-p.Pending, o.RefundedAmount)+p.Pending), 0)
	sort.SliceStable(p.Timeline, func(i, j int) bool { return p.Timeline[i].At.Before(p.Timeline[j].At) })
	if c.Demo && o.Status == paynotify.StatusPending {
		p.PayLinks, p.PayForm = payLinks(o.Pay)
	}
	stamp, err := c.stamp(ctx, app, otn)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	live := "app=" + urlQueryEscape(app) + "&otn=" + urlQueryEscape(otn)
	c.render(w, r, http.StatusOK, "order", &page{Title: "Order " + otn, Nav: "orders", Data: p, Live: live, Stamp: stamp})
}

// payLinks returns, for the demo, the sandbox links that pay an order (URLs in its pay
// parameters; a WeChat code_url or prepay id through the sandbox's pay page) and the order string
// of an Alipay app payment.
func payLinks(pay json.RawMessage) (links [][2]string, orderString string) {
	var m map[string]any
	if json.Unmarshal(pay, &m) != nil {
		return nil, ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s, ok := m[k].(string)
		if !ok {
			continue
		}
		switch {
		case strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://"):
			links = append(links, [2]string{k, s})
		case strings.HasPrefix(s, "weixin://"):
			links = append(links, [2]string{k, "/sandbox/wechatpay/pay?code_url=" + urlQueryEscape(s)})
		}
	}
	prepay, _ := m["prepayid"].(string)
	if pkg, _ := m["package"].(string); prepay == "" && strings.HasPrefix(pkg, "prepay_id=") {
		prepay = strings.TrimPrefix(pkg, "prepay_id=")
	}
	if prepay != "" {
		links = append(links, [2]string{"prepay", "/sandbox/wechatpay/pay?prepay_id=" + urlQueryEscape(prepay)})
	}
	orderString, _ = m["order_string"].(string)
	return links, orderString
}

func prettyJSON(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	out, _ := json.MarshalIndent(v, "", "  ")
	return string(out)
}

// notificationsPage is the notifications list's data.
type notificationsPage struct {
	App, Verdict, Reason, Source string
	OutTradeNo                   string
	Apps                         []string
	Verdicts                     []paynotify.Verdict
	Items                        []*paynotify.Evidence
}

// handleNotifications serves /console/notifications: the newest 100 evidence records, filtered by
// app, verdict, reason and source.
func (c *Console) handleNotifications(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	p := &notificationsPage{App: q.Get("app"), Verdict: q.Get("verdict"), Reason: strings.TrimSpace(q.Get("reason")), Source: q.Get("source"),
		OutTradeNo: strings.TrimSpace(q.Get("out_trade_no")), Apps: c.appNames(), Verdicts: verdicts}
	// The list shows no body: none is read (BodyBudget 1 fits none).
	items, err := c.Service.Store.ListEvidence(r.Context(), paynotify.EvidenceFilter{App: p.App, Verdict: paynotify.Verdict(p.Verdict),
		Reason: p.Reason, Source: p.Source, OutTradeNo: p.OutTradeNo, Limit: 100, BodyBudget: 1})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	p.Items = items
	c.render(w, r, http.StatusOK, "notifications", &page{Title: "Notifications", Nav: "notifications", Data: p})
}

// handleNotification serves /console/notifications/{id}: one record with its checks (for those
// that name no order we have).
func (c *Console) handleNotification(w http.ResponseWriter, r *http.Request, ss *session) {
	ev, err := c.Service.Store.GetEvidence(r.Context(), r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	var o *paynotify.Order
	if ev.OutTradeNo != "" {
		o, _ = c.Service.Store.GetOrder(r.Context(), ev.App, ev.OutTradeNo)
	}
	c.render(w, r, http.StatusOK, "notification", &page{Title: "Notification " + ev.ID, Nav: "notifications",
		Data: entry{At: ev.ReceivedAt, Kind: ev.Source, Evidence: explain(ev, c.Service.Apps[ev.App], o), Order: o}})
}

// anomaliesPage is the anomaly inbox's data.
type anomaliesPage struct {
	Items   []*paynotify.Evidence
	Refunds []*paynotify.Refund
}

// handleAnomalies serves /console/anomalies: the newest 100 anomalies (verified messages that
// disagree with an order or the config) and the refunds that need someone.
func (c *Console) handleAnomalies(w http.ResponseWriter, r *http.Request, ss *session) {
	items, err := anomalyEvidence(r.Context(), c.Service.Store, time.Time{}, 100)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	refunds, err := c.attentionRefunds(r.Context(), c.now())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, r, http.StatusOK, "anomalies", &page{Title: "Anomalies", Nav: "anomalies", Data: &anomaliesPage{Items: items, Refunds: refunds}})
}

// anomalyEvidence lists, newest first, at most limit records received since then (zero: any
// time) that someone must look at: the anomalies, and the late payments, which are applied
// (verdict accepted) but are money that arrived for an order the merchant took for closed (a
// reviewer helper's finding: the inbox and the overview left them out).
func anomalyEvidence(ctx context.Context, st paynotify.Store, since time.Time, limit int) ([]*paynotify.Evidence, error) {
	// The lists show no body: none is read (BodyBudget 1 fits none).
	out, err := st.ListEvidence(ctx, paynotify.EvidenceFilter{Verdict: paynotify.VerdictAnomaly, Since: since, Limit: limit, BodyBudget: 1})
	if err != nil {
		return nil, err
	}
	// Applied, but raised: late payments, and payments the provider says were refunded since.
	for _, reason := range []string{paynotify.ReasonLatePayment, paynotify.ReasonRefundedAtProvider} {
		late, err := st.ListEvidence(ctx, paynotify.EvidenceFilter{Verdict: paynotify.VerdictAccepted, Reason: reason,
			Since: since, Limit: limit, BodyBudget: 1})
		if err != nil {
			return nil, err
		}
		out = append(out, late...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ReceivedAt.After(out[j].ReceivedAt) })
	return out[:min(len(out), limit)], nil
}

// stamp is the state a live page was rendered from: for an order, its version, its newest
// evidence record and its refunds (how many, the last change); otherwise the newest evidence
// record. A refund that goes pending changes neither the order's version nor its evidence: an
// open page never showed it, and offered its amount again (a reviewer helper's finding).
func (c *Console) stamp(ctx context.Context, app, otn string) (string, error) {
	st := c.Service.Store
	newest := func(f paynotify.EvidenceFilter) (string, error) {
		f.Limit, f.BodyBudget = 1, 1 // its id only: no body read at each poll
		evs, err := st.ListEvidence(ctx, f)
		if err != nil || len(evs) == 0 {
			return "", err
		}
		return evs[0].ID, nil
	}
	if otn == "" {
		return newest(paynotify.EvidenceFilter{})
	}
	o, err := st.GetOrder(ctx, app, otn)
	if err != nil {
		return "", err
	}
	// The newest record of each verdict the page keeps, not a rejected one: junk naming the
	// order, which anyone can post, reloaded every open page (a reviewer helper's finding).
	var ev string
	for _, v := range orderVerdicts {
		id, err := newest(paynotify.EvidenceFilter{App: app, OutTradeNo: otn, Verdict: v})
		if err != nil {
			return "", err
		}
		ev += id + ","
	}
	refunds, err := st.ListRefunds(ctx, app, otn)
	if err != nil {
		return "", err
	}
	var changed int64
	for _, r := range refunds {
		changed = max(changed, r.UpdatedAt.UnixNano())
	}
	return fmt.Sprintf("v%d.%s.r%d.%d", o.Version, ev, len(refunds), changed), nil
}

// handleWait serves /console/wait?app=&otn=&stamp=: a long-poll that answers the current stamp as
// soon as it differs from the one given, or after WaitTimeout.
func (c *Console) handleWait(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	app, otn, was := q.Get("app"), q.Get("otn"), q.Get("stamp")
	timeout, every := c.WaitTimeout, c.PollInterval
	if timeout <= 0 {
		timeout = 25 * time.Second
	}
	if every <= 0 {
		every = 500 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	tick := time.NewTicker(every)
	defer tick.Stop()
	stopping := c.stopped()
	for {
		select {
		case <-stopping:
			cancel() // shutting down: answer now, as at the deadline
		default:
		}
		now, err := c.stamp(ctx, app, otn)
		if ctx.Err() != nil {
			now = was // timed out: nothing changed
		} else if err != nil {
			c.fail(w, r, err)
			return
		}
		if now != was || ctx.Err() != nil {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{"stamp": now})
			return
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		case <-stopping:
		}
	}
}
