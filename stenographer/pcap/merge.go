package pcap

import (
	"container/heap"
	"time"
)

// Packet is one packet of a result.
type Packet struct {
	Timestamp time.Time
	WireLen   int
	Data      []byte
	Interface int // the capture interface, for Output.WriteFrom
}

// Source yields packets in timestamp order. Next returns false at the end
// or on an error, which Err then reports.
type Source interface {
	Next() bool
	Packet() Packet
	Err() error
}

// Batcher is a Source holding packets read ahead in memory, which it
// can hand over at once.
type Batcher interface {
	Source
	// Batch returns the current packet and the ones after it that are
	// already read, and moves to the last of them. They stay valid until
	// the next call of Next.
	Batch() []Packet
}

// Merge yields the packets of several sources in timestamp order (ties in
// source order), holding one packet per source in memory.
type Merge struct {
	h   mergeHeap
	cur Packet
	err error
	one [1]Packet // NextBatch's answer of one packet
	// pending delays the first Next of each source until the first Next of
	// the merge, so no source does IO before the caller asks for packets.
	pending []Source
}

// NewMerge returns a merge of srcs.
func NewMerge(srcs ...Source) *Merge { return &Merge{pending: srcs} }

// Next advances to the next packet of any source.
func (m *Merge) Next() bool {
	if m.err != nil {
		return false
	}
	if m.pending != nil {
		for i, s := range m.pending {
			if !m.pull(s, i) {
				return false
			}
		}
		m.pending = nil
		heap.Init(&m.h)
	} else if len(m.h) == 1 {
		// One source left (a store of one thread): no order to keep, and
		// the heap's bookkeeping per packet was 5 % of the daemon's CPU
		// serving a 1.5 GB result.
		s := m.h[0].src
		if s.Next() {
			m.cur = s.Packet()
			return true
		}
		if err := s.Err(); err != nil {
			m.err = err
			return false
		}
		m.h = m.h[:0]
	} else if len(m.h) > 0 {
		// Refill from the source whose packet was returned last.
		top := m.h[0]
		if top.src.Next() {
			m.h[0].pkt = top.src.Packet()
			heap.Fix(&m.h, 0)
		} else {
			if err := top.src.Err(); err != nil {
				m.err = err
				return false
			}
			heap.Pop(&m.h)
		}
	}
	if len(m.h) == 0 {
		return false
	}
	m.cur = m.h[0].pkt
	return true
}

// NextBatch advances past the next packets in order and returns them;
// nil at the end or on an error. With one source left, a Batcher, that
// is every packet it holds (a broad result of one thread spends no time
// per packet here); else one packet.
func (m *Merge) NextBatch() []Packet {
	if !m.Next() {
		return nil
	}
	if len(m.h) == 1 {
		if b, ok := m.h[0].src.(Batcher); ok {
			return b.Batch()
		}
	}
	m.one[0] = m.cur
	return m.one[:]
}

func (m *Merge) pull(s Source, order int) bool {
	if s.Next() {
		m.h = append(m.h, &mergeItem{src: s, pkt: s.Packet(), order: order})
		return true
	}
	if err := s.Err(); err != nil {
		m.err = err
		return false
	}
	return true
}

// Packet returns the current packet.
func (m *Merge) Packet() Packet { return m.cur }

// Err returns the first error of any source.
func (m *Merge) Err() error { return m.err }

type mergeItem struct {
	src   Source
	pkt   Packet
	order int
}

type mergeHeap []*mergeItem

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	if c := h[i].pkt.Timestamp.Compare(h[j].pkt.Timestamp); c != 0 {
		return c < 0
	}
	return h[i].order < h[j].order
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(*mergeItem)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
