package paynotify

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Byte-identical duplicates (docs/storage.md, "Repeated duplicates").
//
// A provider that does not get our answer, or gets it late, sends the same notification again,
// and a load balancer's or proxy's retries do the same: every copy is verified and answered, but
// a copy that is byte-identical to one already recorded, and meets the same verdict, is counted
// on that record (Evidence.Repeats, Change.Repeat) rather than stored again. The Processor keeps
// a bounded memory of the duplicate records it wrote lately, by a digest of everything a record
// holds but its id, time and duration; a repeat takes the id of the record it repeats. What the
// memory forgets (a restart, another instance, a day later) costs only a new record.

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
}

type repeatEntry struct {
	id string
	at time.Time // when the record was written
}

// lookup returns the id of the record that ev would repeat, if one was written in the last
// repeatSpan.
func (r *repeats) lookup(key [sha256.Size]byte, now time.Time) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.byKey[key]
	if !ok || now.Sub(e.at) >= repeatSpan || now.Before(e.at) {
		return "", false
	}
	return e.id, true
}

// remember records that the record id was written for key at now.
func (r *repeats) remember(key [sha256.Size]byte, id string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey == nil {
		r.byKey = make(map[[sha256.Size]byte]repeatEntry, repeatMemory)
		r.ring = make([][sha256.Size]byte, 0, repeatMemory)
	}
	if _, ok := r.byKey[key]; !ok {
		if len(r.ring) < repeatMemory {
			r.ring = append(r.ring, key)
		} else {
			delete(r.byKey, r.ring[r.next])
			r.ring[r.next] = key
			r.next = (r.next + 1) % repeatMemory
		}
	}
	r.byKey[key] = repeatEntry{id: id, at: now}
}

// repeatable reports whether c may be recorded as a repeat: a duplicate notification that
// writes nothing but its evidence.
func repeatable(c *Change) bool {
	ev := c.Evidence
	return ev != nil && c.Order == nil && c.Refund == nil && len(c.Events) == 0 && c.Anomaly == nil &&
		ev.Verdict == VerdictDuplicate && (ev.Source == SourceNotification || ev.Source == "") && ev.ReprocessedFrom == ""
}

// repeatKey digests what a record of ev holds but its id, times and duration: two requests
// with the same key were the same bytes and were met the same way.
func repeatKey(ev *Evidence) [sha256.Size]byte {
	h := sha256.New()
	field := func(s string) {
		writeLen(h, len(s))
		h.Write([]byte(s))
	}
	for _, s := range []string{ev.App, ev.Provider, ev.Source, ev.Endpoint, string(ev.Verdict), ev.Reason, ev.Detail,
		ev.OutTradeNo, strconv.FormatInt(ev.OrderVersion, 10), ev.Answer} {
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
