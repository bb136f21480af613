// Package query parses Stenographer queries (SPEC §5) into a tree and
// evaluates that tree against one index file at a time.
//
// Stage: query text → per-file packet positions. Parsing is pure; the
// evaluation reads only through the small Index interface, so the package
// does no IO of its own.
package query

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Node is a node of a parsed query.
type Node interface {
	String() string
	node()
}

// Key matches packets whose index holds a key in [Lo, Hi] (inclusive,
// bytewise): one key for `port 80`, a range for `net 10.0.0.0/8`.
type Key struct {
	Lo, Hi []byte
	Text   string // the primitive as the user wrote it, normalized
}

// Time matches packets captured before or after an instant.
type Time struct {
	Before bool // true: ts < At; false: ts > At
	At     time.Time
}

// Iface matches every packet captured on the named interface and none
// captured elsewhere: it selects files (a thread's interface, Span.Interface),
// not packets, so it costs no index lookup.
type Iface struct{ Name string }

// Dir matches packets whose source (Src) or destination address or port
// is in Key's range: `src host A`, `dst net N`, `src port P`. The index
// does not know direction, so Key's lookup gives candidates and each
// candidate's headers decide (package frame, the indexer's rules).
type Dir struct {
	Src bool
	Key Key // an address range or a port
}

// Not matches packets its child does not match.
type Not struct{ Child Node }

// And matches packets that all of its children match.
type And struct{ Children []Node }

// Or matches packets that any of its children match.
type Or struct{ Children []Node }

func (Key) node()   {}
func (Time) node()  {}
func (Iface) node() {}
func (Dir) node()   {}
func (Not) node()   {}
func (And) node()   {}
func (Or) node()    {}

func (k Key) String() string { return k.Text }

func (i Iface) String() string { return "iface " + i.Name }

func (d Dir) String() string {
	if d.Src {
		return "src " + d.Key.Text
	}
	return "dst " + d.Key.Text
}

func (n Not) String() string { return "not " + join([]Node{n.Child}, "") }

func (t Time) String() string {
	w := "after"
	if t.Before {
		w = "before"
	}
	return w + " " + t.At.UTC().Format(time.RFC3339Nano)
}

func (a And) String() string { return join(a.Children, " and ") }
func (o Or) String() string  { return join(o.Children, " or ") }

func join(ns []Node, sep string) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = n.String()
		switch n.(type) {
		case Key, Time, Iface, Dir, Not:
		default:
			parts[i] = "(" + parts[i] + ")"
		}
	}
	return strings.Join(parts, sep)
}

// Key type bytes of address keys (SPEC §4).
const (
	keyIPv4 = 0x04
	keyIPv6 = 0x06
)

// Key constructors, shared by both syntaxes.

func protoKey(p uint8) Key {
	return Key{Lo: []byte{0x01, p}, Hi: []byte{0x01, p}, Text: fmt.Sprintf("ip proto %d", p)}
}

func portKey(p uint16) Key {
	k := []byte{0x02, byte(p >> 8), byte(p)}
	return Key{Lo: k, Hi: k, Text: fmt.Sprintf("port %d", p)}
}

func vlanKey(v uint16) Key {
	k := []byte{0x03, byte(v >> 8), byte(v)}
	return Key{Lo: k, Hi: k, Text: fmt.Sprintf("vlan %d", v)}
}

func mplsKey(l uint32) Key {
	k := []byte{0x05, byte(l >> 24), byte(l >> 16), byte(l >> 8), byte(l)}
	return Key{Lo: k, Hi: k, Text: fmt.Sprintf("mpls %d", l)}
}

func addrBytes(a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return append([]byte{0x04}, b[:]...)
	}
	b := a.As16()
	return append([]byte{0x06}, b[:]...)
}

// addrRangeKey covers every address from lo to hi inclusive; both must be
// of the same family.
func addrRangeKey(lo, hi netip.Addr, text string) Key {
	return Key{Lo: addrBytes(lo), Hi: addrBytes(hi), Text: text}
}

// prefixRange returns the first and last address of a prefix.
func prefixRange(p netip.Prefix) (netip.Addr, netip.Addr) {
	p = p.Masked()
	lo := p.Addr()
	if lo.Is4() {
		b := lo.As4()
		for i := p.Bits(); i < 32; i++ {
			b[i/8] |= 1 << (7 - i%8)
		}
		return lo, netip.AddrFrom4(b)
	}
	b := lo.As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	return lo, netip.AddrFrom16(b)
}
