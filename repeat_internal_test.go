package paynotify

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"
)

// The memory of duplicate records: a record takes repeats for repeatSpan from when it was
// written, not before it (a clock that went back), and the oldest is forgotten beyond
// repeatMemory, whatever was remembered again in between.
func TestRepeats_Memory(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	var r repeats
	key := func(i int) [sha256.Size]byte { return sha256.Sum256(fmt.Append(nil, i)) }
	// Each record of an order of its own (the order named as the record), but key 0's two.
	rec := func(id string) *Evidence {
		return &Evidence{ID: id, App: "shop", OutTradeNo: id, Verdict: VerdictDuplicate}
	}
	orders := func() int {
		n := 0
		for _, c := range r.byOrder {
			n += c
		}
		return n
	}
	if _, ok := r.lookup(key(0), t0); ok {
		t.Fatal("an empty memory found a record")
	}
	r.remember(key(0), rec("ntf_0"), t0)
	for _, c := range []struct {
		at   time.Time
		want bool
	}{{t0, true}, {t0.Add(repeatSpan - time.Second), true}, {t0.Add(repeatSpan), false}, {t0.Add(-time.Second), false}} {
		if e, ok := r.lookup(key(0), c.at); ok != c.want || ok && e.id != "ntf_0" {
			t.Errorf("lookup at %v: %q, %v; want found %v", c.at.Sub(t0), e.id, ok, c.want)
		}
	}
	// Remembered again (a new record after the span): the same key, the new id, one slot.
	r.remember(key(0), rec("ntf_0b"), t0.Add(repeatSpan))
	if e, ok := r.lookup(key(0), t0.Add(repeatSpan)); !ok || e.id != "ntf_0b" {
		t.Errorf("after remembering again: %q, %v", e.id, ok)
	}
	if r.holds("shop", "ntf_0") || !r.holds("shop", "ntf_0b") || orders() != 1 {
		t.Errorf("orders after remembering key 0 again: %v, want ntf_0b's alone", r.byOrder)
	}
	for i := 1; i < repeatMemory; i++ {
		r.remember(key(i), rec(fmt.Sprint("ntf_", i)), t0)
	}
	if len(r.byKey) != repeatMemory || len(r.ring) != repeatMemory || orders() != repeatMemory {
		t.Fatalf("%d keys, %d in the ring, %d counted by order; want %d each", len(r.byKey), len(r.ring), orders(), repeatMemory)
	}
	// One more: key 0, the oldest in, goes; key 1 stays until the next.
	r.remember(key(repeatMemory), rec("ntf_new"), t0)
	if _, ok := r.lookup(key(0), t0.Add(repeatSpan)); ok || r.holds("shop", "ntf_0b") {
		t.Error("the oldest record (or its order) is still remembered past the bound")
	}
	if _, ok := r.lookup(key(1), t0); !ok {
		t.Error("the second oldest was forgotten too")
	}
	r.remember(key(repeatMemory+1), rec("ntf_new2"), t0)
	if _, ok := r.lookup(key(1), t0); ok {
		t.Error("the second oldest is still remembered after the next")
	}
	if len(r.byKey) != repeatMemory || orders() != repeatMemory || len(r.byOrder) != repeatMemory || !r.holds("shop", "ntf_new2") {
		t.Errorf("%d keys, %d counted by order in %d orders; want %d each, ntf_new2's among them", len(r.byKey), orders(), len(r.byOrder), repeatMemory)
	}
}
