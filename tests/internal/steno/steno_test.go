package steno

import (
	"strings"
	"testing"
)

func TestParseIndex(t *testing.T) {
	good := "version 2.0\nproto 6 1048624,1049024\nproto 17 48\nport 53 48\nport 80 1048624\nvlan 7 48\n" +
		"ipv4 10.0.0.1 48,1048624\nipv4 192.168.0.1 48\nmpls 29 1049024\nipv6 ::1.2.3.4 48\nipv6 2001:db8::1 48\n"
	idx, err := ParseIndex([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if idx.Version != "2.0" || len(idx.Entries) != 10 {
		t.Fatalf("version %q, %d entries", idx.Version, len(idx.Entries))
	}
	sets, err := idx.PerPacket([]Position{{Pos: 48}, {Pos: 1048624}, {Pos: 1049024}})
	if err != nil {
		t.Fatal(err)
	}
	if got := sets[0].String(); got != "{proto 17, port 53, vlan 7, ipv4 10.0.0.1, ipv4 192.168.0.1, ipv6 ::1.2.3.4, ipv6 2001:db8::1}" {
		t.Errorf("packet 0 keys %s", got)
	}
	if _, err := idx.PerPacket([]Position{{Pos: 48}}); err == nil {
		t.Error("positions that are not packets accepted")
	}
	for name, bad := range map[string]string{
		"no version":        "proto 6 48\n",
		"keys out of order": "version 2.0\nport 80 48\nproto 6 48\n",
		"ipv4 order":        "version 2.0\nipv4 10.0.0.2 48\nipv4 10.0.0.1 48\n",
		"positions down":    "version 2.0\nproto 6 96,48\n",
		"duplicate":         "version 2.0\nproto 6 48,48\n",
		"not inet_ntop":     "version 2.0\nipv6 2001:DB8::1 48\n",
		"uncompressed":      "version 2.0\nipv6 2001:db8:0:0:0:0:0:1 48\n",
		"v4 as ipv6":        "version 2.0\nipv6 1.2.3.4 48\n",
		"vlan too big":      "version 2.0\nvlan 4096 48\n",
		"unknown type":      "version 2.0\nfoo 1 48\n",
		"no positions":      "version 2.0\nproto 6\n",
	} {
		if _, err := ParseIndex([]byte(bad)); err == nil {
			t.Errorf("%s: accepted %q", name, bad)
		}
	}
}

func TestParsePositionsAndStats(t *testing.T) {
	p, err := parsePosition("1048624 1700000000.123456789 60 1514")
	if err != nil || p.Pos != 1048624 || p.Sec != 1700000000 || p.Nsec != 123456789 || p.SnapLen != 60 || p.WireLen != 1514 {
		t.Errorf("parsePosition: %+v %v", p, err)
	}
	if _, err := parsePosition("48 1.5 60 60"); err == nil {
		t.Error("nanoseconds without 9 digits accepted")
	}
	log := "I stuff\nSTATS thread=0 packets=10 bytes=600 drops=0 blocks=1 files=0 mbps=0.005\n" +
		"STATS thread=1 packets=3 bytes=180 drops=2 blocks=1 files=0 mbps=0\n" +
		"STATS thread=0 packets=12 bytes=700 drops=1 blocks=2 files=1 mbps=1.50 blocks_dropped=4 socket_errors=5\n"
	last := LastStats([]byte(log))
	if len(last) != 2 || last[0].Packets != 12 || last[0].Drops != 1 || last[1].Drops != 2 || last[0].Mbps != 1.5 ||
		last[0].BlocksDropped != 4 || last[0].SocketErrors != 5 || last[1].BlocksDropped != 0 {
		t.Errorf("LastStats: %+v", last)
	}
	if n := len(ParseStats([]byte(strings.ReplaceAll(log, "STATS", "X")))); n != 0 {
		t.Errorf("%d stats from no STATS lines", n)
	}
}
