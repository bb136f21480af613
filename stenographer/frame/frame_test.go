package frame

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// h decodes hex with spaces, for frames written header by header.
func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

const (
	macs     = "020000000001 020000000002 "
	ipv4TCP  = "45000028 1234 0000 4006 0000 0a000001 0a000002 "  // 10.0.0.1 > 10.0.0.2
	ipv4Frag = "45000028 1234 0010 4011 0000 0a000001 0a000002 "  // offset 16
	ipv4IHL4 = "44000028 1234 0000 4006 0000 0a000001 0a000002 "  // IHL below 5
	tcpHdr   = "0050 01bb 00000001 00000000 5002 0400 0000 0000 " // 80 > 443
	udpHdr   = "0035 d431 0008 0000 "                             // 53 > 54321
	ipv6UDP  = "60000000 0010 11 40 20010db8000000000000000000000001 20010db8000000000000000000000002 "
	ipv6HBH  = "60000000 0018 00 40 20010db8000000000000000000000001 20010db8000000000000000000000002 1100010400000000 "
	ipv6Frag = "60000000 0010 2c 40 20010db8000000000000000000000001 20010db8000000000000000000000002 11000009 00000001 " // offset 1
)

func TestParse(t *testing.T) {
	v4 := func(s, d byte) (src, dst [16]byte) {
		src[0], src[3], dst[0], dst[3] = 10, s, 10, d
		return
	}
	s4, d4 := v4(1, 2)
	var s6, d6 [16]byte
	copy(s6[:], h("20010db8000000000000000000000001"))
	copy(d6[:], h("20010db8000000000000000000000002"))
	tests := []struct {
		name  string
		frame []byte
		want  Endpoints
	}{
		{"ipv4 tcp", h(macs + "0800" + ipv4TCP + tcpHdr), Endpoints{4, s4, d4, true, 80, 443}},
		{"qinq 88a8/8100 ipv4 tcp", h(macs + "88a8 0064 8100 00c8 0800" + ipv4TCP + tcpHdr), Endpoints{4, s4, d4, true, 80, 443}},
		{"triple 9100 ipv6 udp", h(macs + "9100 0001 9200 0002 9300 0003 86dd" + ipv6UDP + udpHdr), Endpoints{6, s6, d6, true, 53, 54321}},
		{"ipv6 hop-by-hop udp", h(macs + "86dd" + ipv6HBH + udpHdr), Endpoints{6, s6, d6, true, 53, 54321}},
		{"ipv6 non-first fragment", h(macs + "86dd" + ipv6Frag + udpHdr), Endpoints{Version: 6, Src: s6, Dst: d6}},
		{"mpls two labels ipv4", h(macs + "8847 00001040 00002140" + ipv4TCP + tcpHdr), Endpoints{4, s4, d4, true, 80, 443}},
		{"mpls control word ethernet vlan ipv6", h(macs + "8847 00003140 00000000" + macs + "8100 0005 86dd" + ipv6UDP + udpHdr), Endpoints{6, s6, d6, true, 53, 54321}},
		{"ipv4 non-first fragment", h(macs + "0800" + ipv4Frag + udpHdr), Endpoints{Version: 4, Src: s4, Dst: d4}},
		{"ipv4 tcp header cut short", h(macs + "0800" + ipv4TCP + "0050 01bb 00000001"), Endpoints{Version: 4, Src: s4, Dst: d4}},
		{"ipv4 IHL below 5", h(macs + "0800" + ipv4IHL4 + tcpHdr), Endpoints{}},
		{"ipv4 header cut short", h(macs + "0800 45000028 1234 0000 4006 0000 0a000001"), Endpoints{}},
		{"arp", h(macs + "0806 0001 0800 0604 0001"), Endpoints{}},
		{"runt", h("0200000000"), Endpoints{}},
		{"vlan tag cut short", h(macs + "8100 00"), Endpoints{}},
	}
	for _, tc := range tests {
		if got := Parse(tc.frame); got != tc.want {
			t.Errorf("%s: Parse = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// Pseudo-wires carrying MPLS carrying pseudo-wires stop at the nesting
// bound instead of recursing without end.
func TestParseNestingBound(t *testing.T) {
	f := h(macs + "8847")
	for range 100 {
		f = append(f, h("00001140 00000000"+macs+"8847")...)
	}
	if got := Parse(f); got != (Endpoints{}) {
		t.Errorf("Parse of 100 nested pseudo-wires = %+v, want nothing", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(h(macs + "0800" + ipv4TCP + tcpHdr))
	f.Add(h(macs + "8847 00003140 00000000" + macs + "8100 0005 86dd" + ipv6HBH + udpHdr))
	f.Fuzz(func(t *testing.T, b []byte) {
		e := Parse(b)
		if e.Ports && e.Version == 0 {
			t.Fatalf("ports without an IP header: %+v", e)
		}
		// A frame's fields never depend on bytes after the headers.
		if e2 := Parse(append(bytes.Clone(b), 0xff, 0xff)); e.Version != 0 && e.Ports && e2 != e {
			t.Fatalf("trailing bytes changed %+v into %+v", e, e2)
		}
	})
}
