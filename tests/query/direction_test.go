package query_test

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stenographer-ng/stenographer/tests/internal/oracle"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestDirectionAndNegation checks src/dst primitives and not/! end to
// end, on the generated traffic and on every corpus capture:
//   - against tcpdump, on the untagged IPv4 and IPv6 packets, where
//     tcpdump's `ip src host` and `tcp src port` mean what ours do once
//     the filter demands a sane, complete header;
//   - against the oracle (the indexing rules of the corpus README, walked
//     independently of the daemon's code) for every packet, tagged or not,
//     and for negations with and without an indexed term.
//
// Each query's parameters are the commonest address, network and ports of
// the file, so the results are not empty.
func TestDirectionAndNegation(t *testing.T) {
	testenv.RequireTools(t, "tcpdump")
	generated := generatedPcap(t)
	im := &imports{dirs: map[string]string{}}
	t.Run("generated", func(t *testing.T) { checkDirections(t, im, []string{generated}) })
	t.Run("corpus", func(t *testing.T) {
		corpus, _ := filepath.Glob(filepath.Join(testenv.PcapDir(t), "*.pcap"))
		checkDirections(t, im, corpus)
	})
}

// tcpdump equivalents, for untagged packets with a complete IP header of
// at least 20 bytes (what the indexer demands before it takes addresses)
// and, for ports, a complete TCP or UDP header.
const (
	sane4 = "ether[12:2] = 0x800 and ip[0] & 0xf0 = 0x40 and ip[0] & 0xf >= 5 and ip[19:1] >= 0"
	sane6 = "ether[12:2] = 0x86dd and ip6[0] & 0xf0 = 0x60 and ip6[39:1] >= 0"
)

func checkDirections(t *testing.T, im *imports, files []string) {
	matched, vsTcpdump, tagged := 0, 0, 0
	for _, path := range files {
		f, err := pcapfile.Read(path)
		if err != nil {
			t.Fatal(err)
		}
		sets := make([]oracle.Set, len(f.Packets))
		for i, p := range f.Packets {
			sets[i] = oracle.Packet(p.Data)
		}
		p, ok := commonest(sets)
		if !ok {
			continue
		}
		dir := im.dir(t, path)
		name := filepath.Base(path)
		for _, q := range p.oracleQueries() {
			want, err := oracle.ParseQuery(q)
			if err != nil {
				t.Fatal(err)
			}
			var sel []pcapfile.Packet
			for i, s := range sets {
				if want.Match(s) {
					sel = append(sel, f.Packets[i])
				}
			}
			ours := parsePcap(t, stenoquery(t, dir, q))
			samePackets(t, name+" "+q+" (oracle)", sel, ours)
			matched += len(ours)
		}
		for _, c := range append(p.tcpdumpCases(), taggedCases(f.Packets)...) {
			ours := parsePcap(t, stenoquery(t, dir, "--filter", c.untagged, c.query))
			theirs := parsePcap(t, testenv.MustRun(t, timeout, "tcpdump", "-r", path, "-w", "-", c.untagged+" and "+c.tcpdump))
			samePackets(t, name+" "+c.query+" (tcpdump "+c.tcpdump+")", theirs, ours)
			vsTcpdump += len(ours)
			if strings.HasPrefix(c.query, "vlan ") {
				tagged += len(ours)
			}
		}
	}
	if matched == 0 || vsTcpdump == 0 || tagged == 0 {
		t.Errorf("%d packets matched the oracle's queries, %d tcpdump's (%d tagged): the comparison proves too little", matched, vsTcpdump, tagged)
	}
}

func parsePcap(t *testing.T, b []byte) []pcapfile.Packet {
	t.Helper()
	f, err := pcapfile.Parse(b)
	if err != nil {
		t.Fatalf("not a pcap (%d bytes): %v", len(b), err)
	}
	return f.Packets
}

// params are one file's commonest source address and destination port.
type params struct {
	addr netip.Addr // the commonest source address
	port uint32     // a destination port; 0 if none
	vlan uint32     // a VLAN id; 0 if none
}

func commonest(sets []oracle.Set) (params, bool) {
	addrs, ports, vlans := map[netip.Addr]int{}, map[uint32]int{}, map[uint32]int{}
	for _, s := range sets {
		for _, k := range s {
			switch k.Type {
			case oracle.IPv4 | oracle.Src, oracle.IPv6 | oracle.Src:
				addrs[k.Addr]++
			case oracle.Port | oracle.Dst:
				ports[k.Num]++
			case oracle.VLAN:
				vlans[k.Num]++
			}
		}
	}
	if len(addrs) == 0 {
		return params{}, false
	}
	return params{addr: top(addrs, netip.Addr.Compare), port: top(ports, cmp.Compare[uint32]), vlan: top(vlans, cmp.Compare[uint32])}, true
}

// top returns the commonest key of counts, the least by compare on a
// tie, or the zero value for no keys.
func top[K comparable](counts map[K]int, compare func(a, b K) int) K {
	var best K
	n := -1
	for _, k := range slices.SortedFunc(maps.Keys(counts), compare) {
		if counts[k] > n {
			best, n = k, counts[k]
		}
	}
	return best
}

func (p params) network() string {
	bits := 16
	if p.addr.Is6() {
		bits = 48
	}
	return netip.PrefixFrom(p.addr, bits).Masked().String()
}

// oracleQueries are directions and negations the oracle decides.
func (p params) oracleQueries() []string {
	a, n := p.addr.String(), p.network()
	qs := []string{
		"src host " + a,
		"dst host " + a,
		"src net " + n,
		"dst net " + n + " or src host " + a,
		"not host " + a,  // no indexed term: every packet read
		"!src host " + a, // the same, inexact inner term
		"net " + n + " and not src host " + a,
		"not (tcp or udp)",
		"not not src host " + a,
	}
	if p.port != 0 {
		port := fmt.Sprint(p.port)
		qs = append(qs,
			"src port "+port,
			"dst port "+port,
			"src host "+a+" and not dst port "+port,
			"host "+a+" and !port "+port,
			"not port "+port+" and not host "+a,
			"port "+port+" and not (src port "+port+" and dst port "+port+")",
		)
	}
	if p.vlan != 0 {
		v := fmt.Sprint(p.vlan)
		qs = append(qs, "vlan "+v+" and src host "+a, "vlan "+v+" and not dst host "+a, "not vlan "+v)
	}
	return qs
}

type tcpdumpCase struct{ query, untagged, tcpdump string }

// tcpdumpCases are the directional primitives on untagged packets, with
// the tcpdump expression that selects the same ones.
func (p params) tcpdumpCases() []tcpdumpCase {
	a := p.addr.String()
	sane, ip := sane4, "ip"
	if p.addr.Is6() {
		sane, ip = sane6, "ip6"
	}
	cs := []tcpdumpCase{
		{"src host " + a, sane, ip + " src host " + a},
		{"dst host " + a, sane, ip + " dst host " + a},
		{"src net " + p.network(), sane, ip + " src net " + p.network()},
		{"not dst host " + a, sane, "not " + ip + " dst host " + a},
	}
	if p.port != 0 && p.addr.Is4() {
		// tcpdump's ports skip no IPv6 extension header: IPv4 only.
		port := fmt.Sprint(p.port)
		for _, d := range []string{"src", "dst"} {
			cs = append(cs, tcpdumpCase{d + " port " + port, sane4,
				"((tcp " + d + " port " + port + " and tcp[19:1] >= 0) or (udp " + d + " port " + port + " and udp[7:1] >= 0))"})
		}
	}
	return cs
}

// taggedCases compare `vlan V and src host A` and a negation with
// tcpdump's `vlan V and ...` (which shifts the offsets of what follows it
// past the tag) on the packets with one 802.1Q tag before IPv4, for the
// commonest tag and source address among them.
func taggedCases(pkts []pcapfile.Packet) []tcpdumpCase {
	type tagAddr struct {
		vlan uint16
		addr netip.Addr
	}
	counts := map[tagAddr]int{}
	for _, p := range pkts {
		b := p.Data
		if len(b) >= 18+20 && binary.BigEndian.Uint16(b[12:]) == 0x8100 && binary.BigEndian.Uint16(b[16:]) == 0x800 {
			counts[tagAddr{binary.BigEndian.Uint16(b[14:]) & 0xfff, netip.AddrFrom4([4]byte(b[18+12 : 18+16]))}]++
		}
	}
	if len(counts) == 0 {
		return nil
	}
	best := top(counts, func(x, y tagAddr) int { return cmp.Or(cmp.Compare(x.vlan, y.vlan), x.addr.Compare(y.addr)) })
	v, a := fmt.Sprint(best.vlan), best.addr.String()
	one := "ether[12:2] = 0x8100 and ether[16:2] = 0x800"
	inner := "ip[0] & 0xf0 = 0x40 and ip[0] & 0xf >= 5 and ip[19:1] >= 0"
	return []tcpdumpCase{
		{"vlan " + v + " and src host " + a, one, "vlan " + v + " and " + inner + " and ip src host " + a},
		{"vlan " + v + " and not dst host " + a, one, "vlan " + v + " and " + inner + " and not ip dst host " + a},
	}
}
