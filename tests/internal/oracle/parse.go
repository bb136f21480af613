package oracle

import (
	"encoding/binary"
	"net/netip"
)

// Ethertypes and protocol numbers the rules name.
const (
	etherIPv4          = 0x0800
	etherIPv6          = 0x86dd
	etherMPLS          = 0x8847
	etherMPLSMulticast = 0x8848

	protoHopByHop = 0
	protoTCP      = 6
	protoUDP      = 17
	protoRouting  = 43
	protoFragment = 44
	protoDestOpts = 60
	protoMobility = 135
)

func isVLAN(et uint16) bool {
	switch et {
	case 0x8100, 0x88a8, 0x9100, 0x9200, 0x9300:
		return true
	}
	return false
}

// Keys returns the keys one captured Ethernet frame must be indexed under.
func Keys(frame []byte) Set {
	var s Set
	for _, k := range Packet(frame) {
		if k.Type&(Src|Dst) == 0 {
			s = append(s, k)
		}
	}
	return s
}

// Packet returns Keys and, marked Src or Dst, the source and destination
// address and ports of the same headers: what a Query matches against.
func Packet(frame []byte) Set {
	var s Set
	ethernet(frame, &s)
	return s.Normalize()
}

func be16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }
func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// ethernet walks an Ethernet header, its VLAN tags and MPLS labels.
func ethernet(b []byte, s *Set) {
	if len(b) < 14 {
		return
	}
	et := be16(b[12:])
	b = b[14:]
	for isVLAN(et) {
		if len(b) < 4 {
			return
		}
		*s = append(*s, Key{Type: VLAN, Num: uint32(be16(b) & 0x0fff)})
		et = be16(b[2:])
		b = b[4:]
	}
	switch et {
	case etherIPv4:
		ipv4(b, s)
	case etherIPv6:
		ipv6(b, s)
	case etherMPLS, etherMPLSMulticast:
		for {
			if len(b) < 4 {
				return
			}
			e := be32(b)
			*s = append(*s, Key{Type: MPLS, Num: e >> 12})
			b = b[4:]
			if e&0x100 != 0 { // bottom of stack
				break
			}
		}
		if len(b) < 1 {
			return
		}
		switch b[0] >> 4 {
		case 4:
			ipv4(b, s)
		case 6:
			ipv6(b, s)
		case 0:
			// Pseudo-wire control word, then a whole Ethernet frame
			// (each level consumes bytes, so recursion ends).
			if len(b) >= 4 {
				ethernet(b[4:], s)
			}
		}
	}
}

// ipv4: the header (IHL*4 bytes, IHL >= 5) must be complete and say
// version 4; ports only in the first (or only) fragment.
func ipv4(b []byte, s *Set) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl {
		return
	}
	proto := b[9]
	src, dst := netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
	*s = append(*s, Key{Type: Proto, Num: uint32(proto)},
		Key{Type: IPv4, Addr: src}, Key{Type: IPv4, Addr: dst},
		Key{Type: IPv4 | Src, Addr: src}, Key{Type: IPv4 | Dst, Addr: dst})
	if be16(b[6:])&0x1fff != 0 { // non-first fragment
		return
	}
	transport(proto, b[ihl:], s)
}

// ipv6: the fixed header must be complete and say version 6.
func ipv6(b []byte, s *Set) {
	if len(b) < 40 || b[0]>>4 != 6 {
		return
	}
	src, dst := netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
	*s = append(*s, Key{Type: IPv6, Addr: src}, Key{Type: IPv6, Addr: dst},
		Key{Type: IPv6 | Src, Addr: src}, Key{Type: IPv6 | Dst, Addr: dst})
	next := b[6]
	b = b[40:]
	for {
		switch next {
		case protoHopByHop, protoRouting, protoDestOpts, protoMobility:
			if len(b) < 2 {
				return // truncated extension header: no protocol known
			}
			n := (int(b[1]) + 1) * 8
			if len(b) < n {
				return
			}
			next = b[0]
			b = b[n:]
		case protoFragment:
			if len(b) < 8 {
				return
			}
			if be16(b[2:])&0xfff8 != 0 { // non-first fragment
				*s = append(*s, Key{Type: Proto, Num: protoFragment})
				return
			}
			next = b[0]
			b = b[8:]
		default:
			*s = append(*s, Key{Type: Proto, Num: uint32(next)})
			transport(next, b, s)
			return
		}
	}
}

// transport adds TCP/UDP ports when the whole header is captured.
func transport(proto uint8, b []byte, s *Set) {
	switch {
	case proto == protoTCP && len(b) >= 20, proto == protoUDP && len(b) >= 8:
		sp, dp := uint32(be16(b)), uint32(be16(b[2:]))
		*s = append(*s, Key{Type: Port, Num: sp}, Key{Type: Port, Num: dp},
			Key{Type: Port | Src, Num: sp}, Key{Type: Port | Dst, Num: dp})
	}
}
