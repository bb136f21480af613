// Package oracle computes, independently of the C++ indexer, which index
// keys (SPEC §4) a captured frame must produce, following the rules stated
// in the shared corpus README (../shared/pcaps/README.md):
//
//   - After the Ethernet header, strip any number of VLAN tags (ethertypes
//     0x8100, 0x88a8, 0x9100, 0x9200, 0x9300; every id is a key) and MPLS
//     label stacks (0x8847, 0x8848; every label is a key). After the bottom
//     label the first nibble picks IPv4 (4), IPv6 (6), or (0) a 4-byte
//     pseudo-wire control word followed by another Ethernet header.
//   - The first IPv4/IPv6 header reached gives its source and destination
//     addresses and the protocol: the IPv4 protocol, or the IPv6 next header
//     after skipping hop-by-hop, routing, destination-options, mobility and
//     first-fragment headers; a non-first IPv6 fragment has protocol 44.
//   - TCP or UDP source and destination ports follow, except in non-first
//     fragments. Tunnels are not entered.
//   - A header that does not fit in the captured bytes gives nothing, and
//     neither does anything after it.
//
// It is a byte-level walk written from those rules, not from the C++ code.
package oracle

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// Type is an index key type (SPEC §4 key byte).
type Type uint8

const (
	Proto Type = 1
	Port  Type = 2
	VLAN  Type = 3
	IPv4  Type = 4
	MPLS  Type = 5
	IPv6  Type = 6
)

// Src and Dst mark a Type as the source or destination field of its
// header: keys no index holds, which Packet adds so that a Query can
// decide `src host`, `dst port` and the like.
const (
	Src Type = 0x10
	Dst Type = 0x20
)

var typeNames = map[Type]string{Proto: "proto", Port: "port", VLAN: "vlan", IPv4: "ipv4", MPLS: "mpls", IPv6: "ipv6"}

// TypeByName maps stenodump's type names to types.
var TypeByName = map[string]Type{"proto": Proto, "port": Port, "vlan": VLAN, "ipv4": IPv4, "mpls": MPLS, "ipv6": IPv6}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type%d", uint8(t))
}

// Key is one index key. Num holds proto, port, VLAN id or MPLS label; Addr
// holds IPv4/IPv6 addresses.
type Key struct {
	Type Type
	Num  uint32
	Addr netip.Addr
}

// String renders a key as stenodump prints it: "<type> <value>".
func (k Key) String() string {
	switch k.Type {
	case IPv4, IPv6:
		return k.Type.String() + " " + FormatAddr(k.Addr)
	default:
		return k.Type.String() + " " + strconv.FormatUint(uint64(k.Num), 10)
	}
}

// Bytes is the key as stored in the index file (type byte + value).
func (k Key) Bytes() []byte {
	b := []byte{byte(k.Type)}
	switch k.Type {
	case Proto:
		b = append(b, byte(k.Num))
	case Port, VLAN:
		b = binary.BigEndian.AppendUint16(b, uint16(k.Num))
	case MPLS:
		b = binary.BigEndian.AppendUint32(b, k.Num)
	case IPv4, IPv6:
		b = append(b, k.Addr.AsSlice()...)
	}
	return b
}

// Less orders keys as the index file does (bytewise on Bytes).
func Less(a, b Key) bool { return string(a.Bytes()) < string(b.Bytes()) }

// ParseKey parses a stenodump key line's "<type> <value>".
func ParseKey(typ, value string) (Key, error) {
	t, ok := TypeByName[typ]
	if !ok {
		return Key{}, fmt.Errorf("unknown key type %q", typ)
	}
	k := Key{Type: t}
	switch t {
	case IPv4, IPv6:
		a, err := netip.ParseAddr(value)
		if err != nil {
			return Key{}, fmt.Errorf("bad %s address %q: %w", typ, value, err)
		}
		if (t == IPv4) != a.Is4() {
			return Key{}, fmt.Errorf("%s key with address %q of the other family", typ, value)
		}
		k.Addr = a
	default:
		max := map[Type]uint64{Proto: 255, Port: 65535, VLAN: 4095, MPLS: 1<<20 - 1}[t]
		n, err := strconv.ParseUint(value, 10, 32)
		if err != nil || n > max {
			return Key{}, fmt.Errorf("bad %s value %q", typ, value)
		}
		k.Num = uint32(n)
	}
	return k, nil
}

// Set is the set of keys of one packet, sorted and without duplicates.
type Set []Key

// Normalize sorts s and removes duplicates.
func (s Set) Normalize() Set {
	sort.Slice(s, func(i, j int) bool { return Less(s[i], s[j]) })
	out := s[:0]
	for i, k := range s {
		if i == 0 || k != s[i-1] {
			out = append(out, k)
		}
	}
	return out
}

func (s Set) String() string {
	parts := make([]string, len(s))
	for i, k := range s {
		parts[i] = k.String()
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// Has reports whether s holds k.
func (s Set) Has(k Key) bool {
	for _, x := range s {
		if x == k {
			return true
		}
	}
	return false
}

// Diff returns the keys only in want (missing) and only in got (extra).
func Diff(want, got Set) (missing, extra Set) {
	for _, k := range want {
		if !got.Has(k) {
			missing = append(missing, k)
		}
	}
	for _, k := range got {
		if !want.Has(k) {
			extra = append(extra, k)
		}
	}
	return missing, extra
}

// FormatAddr prints an address as glibc's inet_ntop does: RFC 5952 text,
// except that an IPv6 address whose first 96 bits are zero (IPv4-compatible,
// other than :: and ::1 and ::a.b where the last word run allows) keeps the
// embedded dotted quad, like "::1.2.3.4".
func FormatAddr(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	b := a.As16()
	zero12 := true
	for _, x := range b[:12] {
		if x != 0 {
			zero12 = false
		}
	}
	// glibc: the longest zero run starts at word 0 and is exactly 6 words
	// long (word 6 is not zero) -> "::" + dotted quad of the last 4 bytes.
	if zero12 && (b[12] != 0 || b[13] != 0) {
		return fmt.Sprintf("::%d.%d.%d.%d", b[12], b[13], b[14], b[15])
	}
	return a.String()
}
