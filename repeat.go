package paynotify

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"slices"
	"sync"
	"time"
)

// Byte-identical duplicates (docs/storage.md, "Repeated duplicates").
//
// A provider that does not get our answer, or gets it late, sends the same notification again,
// and a load balancer's or proxy's retries do the same: every copy is verified and answered, but
// a copy whose record would be identical to one already written, and meets the same verdict, is
// counted on that record (Evidence.Repeats, Change.Repeat) rather than stored again. The
// Processor keeps a bounded memory of the duplicate records it wrote lately, by a digest of the
// request (the app's identities, the endpoint, the headers and body as kept), with the verdict
// the request met and the order version it was decided at. A repeat takes the id of the record
// it repeats.
//
// The same request meeting the same order version meets the same verdict (the decision reads
// nothing else for a fact that is not about a refund, and the app's identities are in the
// digest), so a remembered request is counted without reading the order first: the count is
// conditioned on the order being at that version still (Change.RepeatVersion), and when it is
// not, the request is decided in full. What the memory forgets (a restart, another instance, a
// day later) costs only a new record.

const (
	// repeatMemory bounds the duplicate records remembered.
	repeatMemory = 4096
	// repeatSpan is how long a record takes repeats: a day covers a provider's retry schedule
	// (Alipay's 8 tries in about 25 hours start a new record once).
	repeatSpan = 24 * time.Hour
)

// repeats remembers the duplicate records written lately, oldest first out.
type repeats struct {
	mu    sync.Mutex
	byKey map[[sha256.Size]byte]repeatEntry
	ring  [][sha256.Size]byte // insertion order, for eviction
	next  int
	// byOrder counts the entries of each order: a request about an order without one is not
	// digested at all, which spares first deliveries the digest.
	byOrder map[orderRef]int
}

// orderRef names an order in repeats.byOrder (a struct: looking one up builds no string).
type orderRef struct{ app, outTradeNo string }

// repeatEntry is a duplicate record written lately: its id, when it was written, and what the
// request met (the fields of its record that the decision filled).
type repeatEntry struct {
	order        orderRef
	id           string
	at           time.Time
	orderVersion int64
	outTradeNo   string
	reason       string
	detail       string
	answer       string
}

// matches reports whether ev, decided in full, would be a record identical to e's.
func (e *repeatEntry) matches(ev *Evidence) bool {
	return ev.Verdict == VerdictDuplicate && ev.OrderVersion == e.orderVersion && ev.OutTradeNo == e.outTradeNo &&
		ev.Reason == e.reason && ev.Detail == e.detail && ev.Answer == e.answer
}

// holds reports whether a record of the order app/outTradeNo is remembered.
func (r *repeats) holds(app, outTradeNo string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byOrder[orderRef{app, outTradeNo}] > 0
}

// lookup returns the record that a request with key would repeat, if one was written in the last
// repeatSpan.
func (r *repeats) lookup(key [sha256.Size]byte, now time.Time) (repeatEntry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byKey[key]
	if !ok || now.Sub(e.at) >= repeatSpan || now.Before(e.at) {
		return repeatEntry{}, false
	}
	return e, true
}

// remember records that the duplicate record ev was written for key at now.
func (r *repeats) remember(key [sha256.Size]byte, ev *Evidence, now time.Time) {
	e := repeatEntry{order: orderRef{ev.App, ev.OutTradeNo}, id: ev.ID, at: now, orderVersion: ev.OrderVersion,
		outTradeNo: ev.OutTradeNo, reason: ev.Reason, detail: ev.Detail, answer: ev.Answer}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey == nil {
		r.byKey = make(map[[sha256.Size]byte]repeatEntry, repeatMemory)
		r.ring = make([][sha256.Size]byte, 0, repeatMemory)
		r.byOrder = make(map[orderRef]int)
	}
	if old, ok := r.byKey[key]; ok {
		r.forget(old)
	} else if len(r.ring) < repeatMemory {
		r.ring = append(r.ring, key)
	} else {
		r.forget(r.byKey[r.ring[r.next]])
		delete(r.byKey, r.ring[r.next])
		r.ring[r.next] = key
		r.next = (r.next + 1) % repeatMemory
	}
	r.byKey[key] = e
	r.byOrder[e.order]++
}

// forget uncounts e's order; r.mu is held.
func (r *repeats) forget(e repeatEntry) {
	if r.byOrder[e.order]--; r.byOrder[e.order] <= 0 {
		delete(r.byOrder, e.order)
	}
}

// repeatable reports whether c may be recorded as a repeat: a duplicate notification that
// writes nothing but its evidence.
func repeatable(c *Change) bool {
	return c.duplicateEvidenceOnly() && rememberable(c.Evidence)
}

// rememberable reports whether ev is of a request the memory takes: a notification as received
// (not a reprocessing or a query answer).
func rememberable(ev *Evidence) bool {
	return (ev.Source == SourceNotification || ev.Source == "") && ev.ReprocessedFrom == ""
}

// repeatKey digests the request of ev as its record keeps it, with the identities of app that
// the decision checks it against.
func repeatKey(app *App, ev *Evidence) [sha256.Size]byte {
	h := sha256.New()
	field := func(s string) {
		writeLen(h, len(s))
		h.Write([]byte(s))
	}
	for _, s := range []string{ev.App, ev.Provider, ev.Source, ev.Endpoint, app.AppID, app.MchID} {
		field(s)
	}
	writeLen(h, len(app.SellerIDs))
	for _, s := range app.SellerIDs {
		field(s)
	}
	names := make([]string, 0, len(ev.Headers))
	for name := range ev.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	writeLen(h, len(names))
	for _, name := range names {
		field(name)
		values := ev.Headers[name]
		writeLen(h, len(values))
		for _, v := range values {
			field(v)
		}
	}
	writeLen(h, len(ev.Body))
	h.Write(ev.Body)
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}

func writeLen(h hash.Hash, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
}
