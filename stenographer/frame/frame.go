// Package frame finds, in a captured Ethernet frame, the header fields a
// query can name by direction: the source and destination address of the
// first IPv4 or IPv6 header and the ports of the TCP or UDP header after
// it. It walks the frame by the very rules stenotype's indexer follows
// (SPEC §4; stenotype/index/packet_parser.cc), so `src host A` is decided
// on the same header that put the packet under key `host A`.
//
// Stage: packet bytes read for a query → the per-packet check of `src`
// and `dst` primitives. It never reads outside the slice it is given.
package frame

import "encoding/binary"

// Endpoints are the directional fields of one frame. Version is 0 when no
// complete IP header was reached; Ports is false when no complete TCP or
// UDP header follows it (or the packet is a non-first fragment).
type Endpoints struct {
	Version          int      // 0, 4 or 6
	Src, Dst         [16]byte // IPv4 uses the first 4 bytes
	Ports            bool
	SrcPort, DstPort uint16
}

// SrcAddr and DstAddr return the addresses as their bytes (4 or 16), or
// nil when the frame has no IP header.
func (e *Endpoints) SrcAddr() []byte { return e.addr(&e.Src) }
func (e *Endpoints) DstAddr() []byte { return e.addr(&e.Dst) }

func (e *Endpoints) addr(a *[16]byte) []byte {
	switch e.Version {
	case 4:
		return a[:4]
	case 6:
		return a[:]
	}
	return nil
}

const (
	etherIPv4          = 0x0800
	etherIPv6          = 0x86dd
	etherMPLSUnicast   = 0x8847
	etherMPLSMulticast = 0x8848

	// A pseudo-wire may carry Ethernet carrying MPLS again: hostile
	// input must not nest without end. The indexer has the same bound.
	maxEthernetDepth = 8
	maxIPv6Headers   = 64
)

func isVLAN(t uint16) bool {
	switch t {
	case 0x8100, 0x88a8, 0x9100, 0x9200, 0x9300:
		return true
	}
	return false
}

// Parse walks one frame (any VLAN tag the kernel stripped already put
// back, as the store returns packets).
func Parse(b []byte) Endpoints {
	var e Endpoints
	if len(b) >= 14 {
		afterEthertype(b[14:], binary.BigEndian.Uint16(b[12:]), 0, &e)
	}
	return e
}

func afterEthertype(b []byte, typ uint16, depth int, e *Endpoints) {
	for isVLAN(typ) {
		if len(b) < 4 {
			return
		}
		typ = binary.BigEndian.Uint16(b[2:])
		b = b[4:]
	}
	switch typ {
	case etherIPv4:
		ipv4(b, e)
	case etherIPv6:
		ipv6(b, e)
	case etherMPLSUnicast, etherMPLSMulticast:
		mpls(b, depth, e)
	}
}

func mpls(b []byte, depth int, e *Endpoints) {
	for {
		if len(b) < 4 {
			return
		}
		bottom := b[2]&0x01 != 0
		b = b[4:]
		if bottom {
			break
		}
	}
	if len(b) < 1 {
		return
	}
	switch b[0] >> 4 {
	case 4:
		ipv4(b, e)
	case 6:
		ipv6(b, e)
	case 0: // pseudo-wire control word, then a whole Ethernet frame
		if depth+1 >= maxEthernetDepth || len(b) < 4+14 {
			return
		}
		afterEthertype(b[4+14:], binary.BigEndian.Uint16(b[4+12:]), depth+1, e)
	}
}

func ipv4(b []byte, e *Endpoints) {
	if len(b) < 20 {
		return
	}
	ihl := int(b[0]&0x0f) * 4
	if b[0]>>4 != 4 || ihl < 20 || len(b) < ihl {
		return
	}
	e.Version = 4
	copy(e.Src[:], b[12:16])
	copy(e.Dst[:], b[16:20])
	if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
		return // ports only in the first fragment
	}
	transport(b[ihl:], b[9], e)
}

func ipv6(b []byte, e *Endpoints) {
	if len(b) < 40 || b[0]>>4 != 6 {
		return
	}
	e.Version = 6
	copy(e.Src[:], b[8:24])
	copy(e.Dst[:], b[24:40])
	next := b[6]
	b = b[40:]
	for range maxIPv6Headers {
		switch next {
		case 0, 43, 60, 135: // hop-by-hop, routing, destination options, mobility
			if len(b) < 8 {
				return
			}
			n := (int(b[1]) + 1) * 8
			if len(b) < n {
				return
			}
			next, b = b[0], b[n:]
			continue
		case 44: // fragment
			if len(b) < 8 || binary.BigEndian.Uint16(b[2:])&0xfff8 != 0 {
				return // a non-first fragment has no ports
			}
			next, b = b[0], b[8:]
			continue
		}
		break
	}
	transport(b, next, e)
}

func transport(b []byte, proto uint8, e *Endpoints) {
	switch {
	case proto == 6 && len(b) >= 20, proto == 17 && len(b) >= 8:
		e.Ports = true
		e.SrcPort = binary.BigEndian.Uint16(b)
		e.DstPort = binary.BigEndian.Uint16(b[2:])
	}
}
