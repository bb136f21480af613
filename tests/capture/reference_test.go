package capture_test

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/stenographer-ng/stenographer/tests/internal/oracle"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/steno"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// The reference capture replayed these corpus files, in order.
var referenceReplay = []string{"pcapplusplus-many-protocols.pcap", "arkime-mpls-basic.pcap", "mercury-emix.pcap"}

const (
	referenceCapture = "1795335446956521"
	referenceEmpty   = "1795335454945426"
)

func num(t oracle.Type, n uint32) oracle.Key { return oracle.Key{Type: t, Num: n} }

// rangePositions is what an IPv4 range lookup returns: the union of the
// positions of every ipv4 key in [lo, hi].
func rangePositions(idx *steno.Index, lo, hi string) []uint32 {
	a, b := netip.MustParseAddr(lo), netip.MustParseAddr(hi)
	seen := map[uint32]bool{}
	for _, e := range idx.Entries {
		if e.Key.Type == oracle.IPv4 && e.Key.Addr.Compare(a) >= 0 && e.Key.Addr.Compare(b) <= 0 {
			for _, p := range e.Positions {
				seen[p] = true
			}
		}
	}
	var out []uint32
	for p := range seen {
		out = append(out, p)
	}
	sortU32(out)
	return out
}

func sortU32(s []uint32) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// TestReferenceIndexes reads the reference's index files (LevelDB tables,
// version 2.0) and looks up the keys the upstream README lists.
func TestReferenceIndexes(t *testing.T) {
	up := testenv.UpstreamDir(t)
	idx := func(name string) *steno.Index {
		i := steno.ReadIndex(t, filepath.Join(up, "IDX0", name))
		if i.Version != "2.0" {
			t.Errorf("%s: version %q, want 2.0", name, i.Version)
		}
		return i
	}
	dhcp, mpls, vlan := idx("dhcp"), idx("mpls"), idx("vlan")
	four := []uint32{1048624, 1049024, 1049448, 1049848}
	for _, c := range []struct {
		file string
		got  []uint32
		want []uint32
	}{
		{"dhcp port 67", dhcp.Lookup(num(oracle.Port, 67)), four},
		{"dhcp port 69", dhcp.Lookup(num(oracle.Port, 69)), nil},
		{"dhcp ip proto 17", dhcp.Lookup(num(oracle.Proto, 17)), four},
		{"dhcp ip proto 18", dhcp.Lookup(num(oracle.Proto, 18)), nil},
		{"dhcp 192.168.0.1-192.168.0.254", rangePositions(dhcp, "192.168.0.1", "192.168.0.254"), []uint32{1049024, 1049848}},
		{"dhcp 10.0.0.1-10.0.0.254", rangePositions(dhcp, "10.0.0.1", "10.0.0.254"), nil},
		{"mpls mpls 29", mpls.Lookup(num(oracle.MPLS, 29)),
			[]uint32{1051144, 1054304, 1054592, 1054736, 1054888, 1055184, 1055328, 1055472, 1055800, 1056824, 1056968}},
		{"mpls mpls 55", mpls.Lookup(num(oracle.MPLS, 55)), nil},
		{"vlan vlan 7", vlan.Lookup(num(oracle.VLAN, 7)), []uint32{1123648, 1126248, 1178544, 1192552, 1208680}},
		{"vlan vlan 8", vlan.Lookup(num(oracle.VLAN, 8)), nil},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: positions %v, want %v", c.file, c.got, c.want)
		}
	}
	// Keys 0x00..0x02 inclusive: the version record, proto 17, proto 58.
	var protos []uint32
	for _, e := range dhcp.Entries {
		if e.Key.Type == oracle.Proto {
			protos = append(protos, e.Key.Num)
		}
	}
	if !reflect.DeepEqual(protos, []uint32{17, 58}) {
		t.Errorf("dhcp: proto keys %v, want [17 58]", protos)
	}
}

// TestReferenceCapture reads the reference's packet file and its index.
func TestReferenceCapture(t *testing.T) {
	up := testenv.UpstreamDir(t)
	pcaps := testenv.PcapDir(t)
	dir := filepath.Join(up, "capture")

	// The empty pair of an idle rotation must read as empty.
	if ps := steno.Positions(t, filepath.Join(dir, "PKT0", referenceEmpty), 1024); len(ps) != 0 {
		t.Errorf("empty packet file: %d positions", len(ps))
	}
	if pk := steno.Packets(t, filepath.Join(dir, "PKT0", referenceEmpty), 1024); len(pk.Packets) != 0 {
		t.Errorf("empty packet file: %d packets", len(pk.Packets))
	}
	if e := steno.ReadIndex(t, filepath.Join(dir, "IDX0", referenceEmpty)); e.Version != "2.0" || len(e.Entries) != 0 {
		t.Errorf("empty index: version %q, %d keys; want 2.0 and none", e.Version, len(e.Entries))
	}

	pkt := filepath.Join(dir, "PKT0", referenceCapture)
	pos := steno.Positions(t, pkt, 1024)
	got := steno.Packets(t, pkt, 1024)
	if len(got.Packets) != 11896 || len(pos) != 11896 {
		t.Errorf("reference capture: %d packets (%d positions), want 11896", len(got.Packets), len(pos))
	}

	// The replayed frames in order; the stored ones must be exactly these
	// minus the few that could not be sent.
	type src struct {
		file string
		i    int
		data []byte
	}
	var sent []src
	for _, f := range referenceReplay {
		pf, err := pcapfile.Read(filepath.Join(pcaps, f))
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range pf.Packets {
			sent = append(sent, src{f, i, p.Data})
		}
	}
	var skipped []string
	j := 0
	stored := make([]src, 0, len(got.Packets))
	for _, s := range sent {
		if j < len(got.Packets) && string(got.Packets[j].Data) == string(s.data) {
			stored = append(stored, s)
			j++
			continue
		}
		skipped = append(skipped, fmt.Sprintf("%s #%d (%d bytes)", s.file, s.i, len(s.data)))
	}
	if j != len(got.Packets) {
		t.Fatalf("reference capture: stored packet #%d (%s) is not the next replayed frame (skipped so far: %v)",
			j, hexHead(got.Packets[j].Data, 48), skipped)
	}
	if len(skipped) != 4 {
		t.Errorf("reference capture: %d replayed frames not stored, want 4: %v", len(skipped), skipped)
	}
	for _, s := range skipped {
		if s[:len("mercury-emix.pcap")] != "mercury-emix.pcap" {
			t.Errorf("reference capture: frame %s missing; only mercury-emix.pcap frames may be", s)
		}
	}
	t.Logf("reference capture: %d packets byte-identical to the replayed frames; not stored: %v", j, skipped)

	// The reference index is the oracle's keys of what the reference parsed:
	// the frame without the tag the kernel stripped (the reference did not
	// index it). Frames whose outer ethertype is 802.1Q/802.1ad had it
	// stripped on the veth receive path.
	idx := steno.ReadIndex(t, filepath.Join(dir, "IDX0", referenceCapture))
	sets, err := idx.PerPacket(pos)
	if err != nil {
		t.Fatal(err)
	}
	var parsed [][]byte
	stripped := 0
	for _, p := range got.Packets {
		d := p.Data
		if len(d) >= 18 && (d[12] == 0x81 && d[13] == 0x00 || d[12] == 0x88 && d[13] == 0xa8) {
			d = append(append([]byte(nil), d[:12]...), d[16:]...)
			stripped++
		}
		parsed = append(parsed, d)
	}
	if stripped != 24 {
		t.Errorf("reference capture: %d packets with an outer VLAN tag, README says 24 were stripped", stripped)
	}
	checkKeys(t, "reference index", parsed, sets, func(i int) string {
		return fmt.Sprintf("reference packet #%d (position %d, %s #%d)", i, pos[i].Pos, stored[i].file, stored[i].i)
	})
}

// TestReindexReferenceCapture indexes the reference packet file with our
// parser (`stenodump reindex`): unlike the reference, every packet whose
// outer tag the kernel stripped must carry that VLAN key too, so the keys
// equal the oracle's keys of the restored frames.
func TestReindexReferenceCapture(t *testing.T) {
	up := testenv.UpstreamDir(t)
	pkt := filepath.Join(up, "capture", "PKT0", referenceCapture)
	out := filepath.Join(t.TempDir(), "reindex")
	testenv.MustRun(t, testenv.Deadline, testenv.Stenodump(t), "reindex", pkt, out)
	pos := steno.Positions(t, pkt, 1024)
	got := steno.Packets(t, pkt, 1024)
	idx := steno.ReadIndex(t, out)
	if idx.Version != "2.0" {
		t.Errorf("reindexed version %q, want 2.0", idx.Version)
	}
	sets, err := idx.PerPacket(pos)
	if err != nil {
		t.Fatal(err)
	}
	checkKeys(t, "reindexed reference capture", frames(got.Packets), sets, func(i int) string {
		return fmt.Sprintf("reference packet #%d (position %d)", i, pos[i].Pos)
	})
}
