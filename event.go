package paynotify

import (
	"encoding/json"
	"time"
)

// EventType names what happened to an order (docs/api.md, "Events").
type EventType string

const (
	EventOrderPaid     EventType = "order.paid"
	EventOrderFinished EventType = "order.finished"
	EventOrderClosed   EventType = "order.closed"
	// EventOrderRefunded is raised for each confirmed refund, with the refund in its data.
	EventOrderRefunded EventType = "order.refunded"
	EventRefundFailed  EventType = "refund.failed"
	EventOrderAnomaly  EventType = "order.anomaly"
)

// Event is one entry of the event log. Events of one order are appended in version order, in the
// same transaction as the change they announce.
type Event struct {
	// Seq is the store's position of the event in the log; the API cursor is derived from it.
	Seq        int64           `json:"-"`
	ID         string          `json:"id"`
	Type       EventType       `json:"type"`
	Timestamp  time.Time       `json:"timestamp"`
	Version    int64           `json:"version"`
	App        string          `json:"-"`
	OutTradeNo string          `json:"-"`
	Data       json.RawMessage `json:"data"`
}

// EventRefund is the refund carried by order.refunded and refund.failed events.
type EventRefund struct {
	OutRequestNo     string `json:"out_request_no,omitempty"`
	Amount           Amount `json:"amount"`
	RefundedTotal    Amount `json:"refunded_total"`
	ProviderRefundNo string `json:"provider_refund_no,omitempty"`
	Status           string `json:"status,omitempty"`
}

// EventAnomaly is the anomaly carried by order.anomaly events.
type EventAnomaly struct {
	Reason         string `json:"reason"`
	NotificationID string `json:"notification_id,omitempty"`
}

// eventData is the data of an event: the order's fields, plus the refund or anomaly.
type eventData struct {
	*Order
	Refund  *EventRefund  `json:"refund,omitempty"`
	Anomaly *EventAnomaly `json:"anomaly,omitempty"`
}

// orphanData is the data of an anomaly without an order.
type orphanData struct {
	App        string        `json:"app"`
	OutTradeNo string        `json:"out_trade_no"`
	Anomaly    *EventAnomaly `json:"anomaly"`
}

// NewEvent builds an event about order o (the order as it stands at the event's version).
func NewEvent(id string, typ EventType, at time.Time, o *Order, refund *EventRefund, anomaly *EventAnomaly) *Event {
	data, err := json.Marshal(eventData{Order: o, Refund: refund, Anomaly: anomaly})
	if err != nil {
		panic(err) // plain structs: cannot fail
	}
	return &Event{ID: id, Type: typ, Timestamp: at.UTC(), Version: o.Version, App: o.App, OutTradeNo: o.OutTradeNo, Data: data}
}

// NewOrphanAnomalyEvent builds an order.anomaly event for a fact about an order we do not have.
func NewOrphanAnomalyEvent(id, app, outTradeNo string, at time.Time, anomaly *EventAnomaly) *Event {
	data, err := json.Marshal(orphanData{App: app, OutTradeNo: outTradeNo, Anomaly: anomaly})
	if err != nil {
		panic(err)
	}
	return &Event{ID: id, Type: EventOrderAnomaly, Timestamp: at.UTC(), App: app, OutTradeNo: outTradeNo, Data: data}
}
