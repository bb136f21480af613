// Package gen builds a pcap that covers every encapsulation the indexer
// handles, each frame with the index keys it must produce written out by
// hand. It makes the integration tests meaningful without the shared
// corpus, and it checks the oracle against hand-written expectations.
//
// Frames are built with gopacket/layers where gopacket can serialize the
// header, and byte by byte where the point is a broken or unusual header.
package gen

import (
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
)

// Case is one generated frame.
type Case struct {
	Name    string
	Data    []byte   // captured bytes
	WireLen int      // >= len(Data); larger when the frame is cut by a snaplen
	Keys    []string // expected keys as stenodump prints them ("port 80"), sorted
	// Live is false for frames the kernel does not deliver to a packet
	// socket when sent over a veth (shorter than an Ethernet header, or a
	// VLAN tag the receive path cannot pull).
	Live bool
}

// Base is the timestamp of the first generated packet; packets are 1.000001 ms
// apart so nanosecond and microsecond digits both vary.
var Base = time.Unix(1700000000, 123456789)

// Packets returns the cases as pcap records.
func Packets(cases []Case) []pcapfile.Packet {
	out := make([]pcapfile.Packet, len(cases))
	for i, c := range cases {
		out[i] = pcapfile.Packet{
			Time:    Base.Add(time.Duration(i) * 1000001 * time.Nanosecond),
			WireLen: c.WireLen,
			Data:    c.Data,
		}
	}
	return out
}

// WritePcap writes all cases (live only if liveOnly) as a nanosecond pcap.
func WritePcap(path string, liveOnly bool) ([]Case, error) {
	var cs []Case
	for _, c := range Cases() {
		if c.Live || !liveOnly {
			cs = append(cs, c)
		}
	}
	return cs, pcapfile.Write(path, Packets(cs))
}

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
	v4a  = net.IP{10, 1, 0, 1}
	v4b  = net.IP{10, 2, 0, 2}
	v6a  = net.ParseIP("2001:db8::1")
	v6b  = net.ParseIP("2001:db8:0:1::2")
)

func eth(et layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}
}

func dot1q(id uint16, next layers.EthernetType) *layers.Dot1Q {
	return &layers.Dot1Q{VLANIdentifier: id, Priority: 3, Type: next}
}

func mpls(label uint32, bottom bool) *layers.MPLS {
	return &layers.MPLS{Label: label, StackBottom: bottom, TTL: 64}
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: v4a, DstIP: v4b, Id: 0x1234}
}

func ip6(next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: v6a, DstIP: v6b}
}

func tcp(src, dst uint16) *layers.TCP {
	return &layers.TCP{SrcPort: layers.TCPPort(src), DstPort: layers.TCPPort(dst), Seq: 1, SYN: true, Window: 1024}
}

func udp(src, dst uint16) *layers.UDP {
	return &layers.UDP{SrcPort: layers.UDPPort(src), DstPort: layers.UDPPort(dst)}
}

// build serializes layers, fixing lengths and checksums. The transport
// checksum uses the last IP layer in the list.
func build(ls ...gopacket.SerializableLayer) []byte {
	var netLayer gopacket.NetworkLayer
	for _, l := range ls {
		if n, ok := l.(gopacket.NetworkLayer); ok {
			netLayer = n
		}
	}
	for _, l := range ls {
		switch x := l.(type) {
		case *layers.TCP:
			if netLayer != nil {
				_ = x.SetNetworkLayerForChecksum(netLayer)
			}
		case *layers.UDP:
			if netLayer != nil {
				_ = x.SetNetworkLayerForChecksum(netLayer)
			}
		case *layers.ICMPv6:
			if netLayer != nil {
				_ = x.SetNetworkLayerForChecksum(netLayer)
			}
		}
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: netLayer != nil}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		panic(fmt.Sprintf("gen: serialize: %v", err))
	}
	return append([]byte(nil), buf.Bytes()...)
}

// raw serializes transport layers alone (no checksum), for payloads placed
// after hand-written headers.
func raw(ls ...gopacket.SerializableLayer) gopacket.Payload {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, ls...); err != nil {
		panic(fmt.Sprintf("gen: serialize: %v", err))
	}
	return gopacket.Payload(append([]byte(nil), buf.Bytes()...))
}

func payload(n int) gopacket.Payload {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i)
	}
	return p
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// IPv6 extension headers, by hand: next header, length in 8-byte units
// beyond the first 8, then contents.
func hopByHop(next byte) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} } // PadN
func destOpts(next byte) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} }
func routing(next byte) []byte { // type 0, one address, 24 bytes
	return cat([]byte{next, 2, 0, 1, 0, 0, 0, 0}, net.ParseIP("2001:db8::99").To16())
}
func fragment(next byte, offset uint16, more bool) []byte {
	v := offset << 3
	if more {
		v |= 1
	}
	return []byte{next, 0, byte(v >> 8), byte(v), 0xde, 0xad, 0xbe, 0xef}
}
func mobility() []byte { return []byte{59, 0, 0, 0, 0, 0, 0, 0} } // Binding Refresh Request

// Expected key sets used by many cases.
var (
	keysV4   = []string{"ipv4 10.1.0.1", "ipv4 10.2.0.2"}
	keysV6   = []string{"ipv6 2001:db8::1", "ipv6 2001:db8:0:1::2"}
	keysTCP4 = append([]string{"proto 6", "port 1234", "port 80"}, keysV4...)
	keysUDP6 = append([]string{"proto 17", "port 5353", "port 53"}, keysV6...)
)

func join(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// Cases returns every generated frame in pcap order.
func Cases() []Case {
	var cs []Case
	add := func(name string, data []byte, keys []string) *Case {
		k := append([]string(nil), keys...)
		sort.Strings(k)
		cs = append(cs, Case{Name: name, Data: data, WireLen: len(data), Keys: k, Live: len(data) >= 14})
		return &cs[len(cs)-1]
	}
	// cut keeps the first n bytes of the last case, as a snaplen would.
	cut := func(c *Case, n int) { c.Data = c.Data[:n] }

	// Plain IPv4 / IPv6.
	add("ipv4-tcp", build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(1234, 80), payload(10)), keysTCP4)
	add("ipv4-udp", build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(5353, 53), payload(20)),
		join([]string{"proto 17", "port 5353", "port 53"}, keysV4))
	add("ipv4-icmp", build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1}, payload(32)),
		join([]string{"proto 1"}, keysV4))
	add("ipv6-tcp", build(eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolTCP), tcp(50000, 443), payload(5)),
		join([]string{"proto 6", "port 50000", "port 443"}, keysV6))
	add("ipv6-udp", build(eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolUDP), udp(5353, 53), payload(12)), keysUDP6)
	add("ipv6-icmpv6", build(eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolICMPv6),
		&layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}, payload(8)),
		join([]string{"proto 58"}, keysV6))
	add("ipv4-sctp-no-ports", build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolSCTP), payload(28)),
		join([]string{"proto 132"}, keysV4))
	add("ipv4-gre-not-entered", build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolGRE),
		&layers.GRE{Protocol: layers.EthernetTypeIPv4}, &layers.IPv4{Version: 4, IHL: 5, TTL: 9, Protocol: layers.IPProtocolUDP,
			SrcIP: net.IP{192, 0, 2, 1}, DstIP: net.IP{192, 0, 2, 2}}, udp(7, 7)),
		join([]string{"proto 47"}, keysV4))
	same := ip4(layers.IPProtocolUDP)
	same.DstIP = v4a
	add("ipv4-same-src-dst", build(eth(layers.EthernetTypeIPv4), same, udp(4444, 4444)),
		[]string{"proto 17", "port 4444", "ipv4 10.1.0.1"})
	compat := ip6(layers.IPProtocolUDP)
	compat.SrcIP = net.ParseIP("::1.2.3.4")
	compat.DstIP = net.ParseIP("::ffff:10.0.0.1")
	add("ipv6-v4compat-and-mapped", build(eth(layers.EthernetTypeIPv6), compat, udp(1, 2)),
		[]string{"proto 17", "port 1", "port 2", "ipv6 ::1.2.3.4", "ipv6 ::ffff:10.0.0.1"})
	add("arp-no-keys", build(eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet,
		Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
		SourceHwAddress: macA, SourceProtAddress: v4a, DstHwAddress: make([]byte, 6), DstProtAddress: v4b}), nil)

	// VLAN stacks.
	add("vlan1-ipv4-udp", build(eth(layers.EthernetTypeDot1Q), dot1q(100, layers.EthernetTypeIPv4),
		ip4(layers.IPProtocolUDP), udp(5353, 53)),
		join([]string{"vlan 100", "proto 17", "port 5353", "port 53"}, keysV4))
	add("qinq-88a8-8100-ipv6-tcp", build(eth(layers.EthernetTypeQinQ), dot1q(200, layers.EthernetTypeDot1Q),
		dot1q(300, layers.EthernetTypeIPv6), ip6(layers.IPProtocolTCP), tcp(22, 60000)),
		join([]string{"vlan 200", "vlan 300", "proto 6", "port 22", "port 60000"}, keysV6))
	add("vlan3-ipv4-tcp", build(eth(layers.EthernetTypeDot1Q), dot1q(10, layers.EthernetTypeDot1Q),
		dot1q(20, layers.EthernetTypeDot1Q), dot1q(4095, layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(1234, 80)),
		join([]string{"vlan 10", "vlan 20", "vlan 4095"}, keysTCP4))
	add("vlan-9100-ipv4-tcp", build(eth(0x9100), dot1q(5, layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(1234, 80)),
		join([]string{"vlan 5"}, keysTCP4))
	add("vlan-id0-priority-only", build(eth(layers.EthernetTypeDot1Q), dot1q(0, layers.EthernetTypeIPv4),
		ip4(layers.IPProtocolTCP), tcp(1234, 80)),
		join([]string{"vlan 0"}, keysTCP4))

	// MPLS.
	add("mpls1-ipv4-tcp", build(eth(layers.EthernetTypeMPLSUnicast), mpls(29, true), ip4(layers.IPProtocolTCP), tcp(1234, 80)),
		join([]string{"mpls 29"}, keysTCP4))
	add("mpls3-ipv6-udp", build(eth(layers.EthernetTypeMPLSUnicast), mpls(16, false), mpls(17, false), mpls(1048575, true),
		ip6(layers.IPProtocolUDP), udp(5353, 53)),
		join([]string{"mpls 16", "mpls 17", "mpls 1048575"}, keysUDP6))
	add("mpls-multicast-8848-ipv6", build(eth(layers.EthernetTypeMPLSMulticast), mpls(0, true), ip6(layers.IPProtocolUDP), udp(5353, 53)),
		join([]string{"mpls 0"}, keysUDP6))
	add("vlan-mpls-ipv4-icmp", build(eth(layers.EthernetTypeDot1Q), dot1q(7, layers.EthernetTypeMPLSUnicast), mpls(1000, true),
		ip4(layers.IPProtocolICMPv4), &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(0, 0)}),
		join([]string{"vlan 7", "mpls 1000", "proto 1"}, keysV4))
	inner := build(eth(layers.EthernetTypeDot1Q), dot1q(42, layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(5353, 53))
	add("mpls-pw-cw-eth-vlan-ipv4", build(eth(layers.EthernetTypeMPLSUnicast), mpls(500, false), mpls(501, true),
		gopacket.Payload(cat([]byte{0, 0, 0, 7}, inner))),
		join([]string{"mpls 500", "mpls 501", "vlan 42", "proto 17", "port 5353", "port 53"}, keysV4))
	add("mpls-pw-cw-eth-mpls-ipv6", build(eth(layers.EthernetTypeMPLSUnicast), mpls(600, true),
		gopacket.Payload(cat([]byte{0, 0, 0, 1}, build(eth(layers.EthernetTypeMPLSUnicast), mpls(601, true),
			ip6(layers.IPProtocolUDP), udp(5353, 53))))),
		join([]string{"mpls 600", "mpls 601"}, keysUDP6))
	add("mpls-unknown-nibble", build(eth(layers.EthernetTypeMPLSUnicast), mpls(77, true),
		gopacket.Payload(cat([]byte{0x50, 0, 0, 0}, payload(36)))), []string{"mpls 77"})
	add("mpls-pw-cw-unknown-ethertype", build(eth(layers.EthernetTypeMPLSUnicast), mpls(78, true), payload(40)),
		[]string{"mpls 78"}) // CW 00010203, inner ethertype 0x1011: nothing more

	// IPv6 extension headers.
	v6ext := func(first layers.IPProtocol, ext []byte, tr gopacket.SerializableLayer) []byte {
		return build(eth(layers.EthernetTypeIPv6), ip6(first), gopacket.Payload(cat(ext, raw(tr, payload(4)))))
	}
	add("ipv6-hbh-tcp", v6ext(0, hopByHop(6), tcp(1234, 80)),
		join([]string{"proto 6", "port 1234", "port 80"}, keysV6))
	add("ipv6-routing-udp", v6ext(43, routing(17), udp(5353, 53)), keysUDP6)
	add("ipv6-hbh-dst-rt-dst-tcp", v6ext(0, cat(hopByHop(60), destOpts(43), routing(60), destOpts(6)), tcp(1234, 80)),
		join([]string{"proto 6", "port 1234", "port 80"}, keysV6))
	add("ipv6-first-fragment-udp", v6ext(44, fragment(17, 0, true), udp(5353, 53)), keysUDP6)
	add("ipv6-atomic-fragment-tcp", v6ext(44, fragment(6, 0, false), tcp(1234, 80)),
		join([]string{"proto 6", "port 1234", "port 80"}, keysV6))
	add("ipv6-hbh-first-fragment-dst-udp", v6ext(0, cat(hopByHop(44), fragment(60, 0, true), destOpts(17)), udp(5353, 53)), keysUDP6)
	add("ipv6-non-first-fragment", v6ext(44, fragment(17, 185, false), udp(5353, 53)),
		join([]string{"proto 44"}, keysV6))
	add("ipv6-hbh-non-first-fragment", v6ext(0, cat(hopByHop(44), fragment(6, 1, true)), tcp(1234, 80)),
		join([]string{"proto 44"}, keysV6))
	add("ipv6-mobility", build(eth(layers.EthernetTypeIPv6), ip6(135), gopacket.Payload(mobility())),
		join([]string{"proto 59"}, keysV6))
	add("ipv6-no-next-header", build(eth(layers.EthernetTypeIPv6), ip6(59)), join([]string{"proto 59"}, keysV6))
	add("ipv6-esp-not-skipped", build(eth(layers.EthernetTypeIPv6), ip6(50), payload(24)), join([]string{"proto 50"}, keysV6))

	// IPv4 fragments and options.
	f1 := ip4(layers.IPProtocolTCP)
	f1.Flags = layers.IPv4MoreFragments
	add("ipv4-first-fragment-tcp", build(eth(layers.EthernetTypeIPv4), f1, tcp(1234, 80), payload(16)), keysTCP4)
	f2 := ip4(layers.IPProtocolUDP)
	f2.FragOffset = 185
	add("ipv4-non-first-fragment-udp", build(eth(layers.EthernetTypeIPv4), f2, udp(5353, 53)),
		join([]string{"proto 17"}, keysV4))
	f3 := ip4(layers.IPProtocolTCP)
	f3.FragOffset = 1
	f3.Flags = layers.IPv4MoreFragments
	add("ipv4-non-first-fragment-offset1", build(eth(layers.EthernetTypeIPv4), f3, payload(40)),
		join([]string{"proto 6"}, keysV4))
	opt := ip4(layers.IPProtocolUDP)
	opt.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}} // NOPs + EOL: IHL 6
	add("ipv4-options-udp", build(eth(layers.EthernetTypeIPv4), opt, udp(5353, 53)),
		join([]string{"proto 17", "port 5353", "port 53"}, keysV4))

	// Broken and truncated frames: a header that does not fit gives nothing.
	c := add("trunc-in-ipv4-header", build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(1234, 80)), nil)
	cut(c, 14+19)
	c = add("trunc-in-ipv4-options", build(eth(layers.EthernetTypeIPv4), opt, udp(5353, 53)), nil)
	cut(c, 14+22)
	c = add("trunc-in-tcp-header", build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(1234, 80), payload(100)),
		join([]string{"proto 6"}, keysV4))
	cut(c, 14+20+19)
	c = add("trunc-tcp-header-exact", build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(1234, 80), payload(100)),
		keysTCP4)
	cut(c, 14+20+20)
	c = add("trunc-in-udp-header", build(eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolUDP), udp(5353, 53), payload(100)),
		join([]string{"proto 17"}, keysV6))
	cut(c, 14+40+7)
	c = add("trunc-in-ipv6-header", build(eth(layers.EthernetTypeIPv6), ip6(layers.IPProtocolUDP), udp(5353, 53)), nil)
	cut(c, 14+39)
	c = add("trunc-in-ipv6-hbh", v6ext(0, hopByHop(6), tcp(1234, 80)), keysV6)
	cut(c, 14+40+7)
	c = add("trunc-in-ipv6-fragment-header", v6ext(44, fragment(17, 0, true), udp(1, 2)), keysV6)
	cut(c, 14+40+7)
	c = add("trunc-in-vlan-tag", build(eth(layers.EthernetTypeDot1Q), dot1q(9, layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP)), nil)
	cut(c, 14+3)
	c.Live = false // the receive path drops a tag it cannot pull
	c = add("trunc-after-vlan-tag", build(eth(layers.EthernetTypeDot1Q), dot1q(9, layers.EthernetTypeDot1Q),
		dot1q(10, layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP)), []string{"vlan 9"})
	cut(c, 14+4+2)
	c = add("trunc-in-mpls-stack", build(eth(layers.EthernetTypeMPLSUnicast), mpls(1, false), mpls(2, true),
		ip4(layers.IPProtocolTCP)), []string{"mpls 1"})
	cut(c, 14+4+3)
	c = add("trunc-after-mpls-bottom", build(eth(layers.EthernetTypeMPLSUnicast), mpls(3, true), ip4(layers.IPProtocolTCP)),
		[]string{"mpls 3"})
	cut(c, 14+4)
	c = add("trunc-ethernet", build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(1234, 80)), nil)
	cut(c, 13)
	c = add("snaplen-cut-after-ports", build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(1234, 80), payload(1400)),
		keysTCP4)
	cut(c, 96)
	ihl4 := build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), tcp(1234, 80))
	ihl4[14] = 0x44
	add("ipv4-ihl-4", ihl4, nil)
	ihl0 := build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(1, 2))
	ihl0[14] = 0x40
	add("ipv4-ihl-0", ihl0, nil)
	ihlBig := build(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolUDP), udp(1, 2))
	ihlBig[14] = 0x4f // 60-byte header, frame has 14+20+8+pad
	add("ipv4-ihl-beyond-frame", ihlBig, nil)
	v6in4 := build(eth(layers.EthernetTypeIPv4), ip6(layers.IPProtocolUDP), udp(1, 2))
	add("ipv4-ethertype-version-6", v6in4, nil)
	v4in6 := build(eth(layers.EthernetTypeIPv6), ip4(layers.IPProtocolUDP), udp(1, 2), payload(30))
	add("ipv6-ethertype-version-4", v4in6, nil)
	tiny := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	add("ten-byte-frame", tiny, nil)

	for i := range cs {
		if cs[i].WireLen < len(cs[i].Data) {
			cs[i].WireLen = len(cs[i].Data)
		}
		if len(cs[i].Data) < 14 { // no Ethernet header: tcpreplay cannot send it
			cs[i].Live = false
		}
	}
	return cs
}
