// Package steno drives the C++ binaries for the integration tests and reads
// what they wrote through stenodump: the PKT<i>/IDX<i> file pairs of an
// output directory, packet positions, packets as pcap, and index keys.
package steno

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/oracle"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// Position is one line of `stenodump positions`.
type Position struct {
	Pos     uint32
	Sec     uint32
	Nsec    uint32
	SnapLen int
	WireLen int
}

// Time is the packet's capture time.
func (p Position) Time() time.Time { return time.Unix(int64(p.Sec), int64(p.Nsec)).UTC() }

// Positions runs `stenodump positions` on a packet file.
func Positions(t testing.TB, pktFile string, blocksizeKB int) []Position {
	t.Helper()
	out := testenv.MustRun(t, testenv.Deadline, testenv.Stenodump(t), "positions",
		fmt.Sprintf("--blocksize_kb=%d", blocksizeKB), pktFile)
	var ps []Position
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		p, err := parsePosition(sc.Text())
		if err != nil {
			t.Fatalf("stenodump positions %s: line %d %q: %v", pktFile, n, sc.Text(), err)
		}
		ps = append(ps, p)
	}
	return ps
}

var positionRE = regexp.MustCompile(`^(\d+) (\d+)\.(\d{9}) (\d+) (\d+)$`)

func parsePosition(line string) (Position, error) {
	m := positionRE.FindStringSubmatch(line)
	if m == nil {
		return Position{}, fmt.Errorf("not `<position> <sec>.<nsec> <snaplen> <wirelen>`")
	}
	var v [5]uint64
	for i := range v {
		var err error
		if v[i], err = strconv.ParseUint(m[i+1], 10, 32); err != nil {
			return Position{}, err
		}
	}
	return Position{Pos: uint32(v[0]), Sec: uint32(v[1]), Nsec: uint32(v[2]), SnapLen: int(v[3]), WireLen: int(v[4])}, nil
}

// Packets runs `stenodump packets` on a packet file and reads its pcap.
func Packets(t testing.TB, pktFile string, blocksizeKB int) *pcapfile.File {
	t.Helper()
	out := filepath.Join(t.TempDir(), "packets.pcap")
	testenv.MustRun(t, testenv.Deadline, testenv.Stenodump(t), "packets",
		fmt.Sprintf("--blocksize_kb=%d", blocksizeKB), pktFile, out)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 24 || !bytes.Equal(data[:4], []byte{0x4d, 0x3c, 0xb2, 0xa1}) {
		t.Fatalf("stenodump packets %s: not a little-endian nanosecond pcap (header % x)", pktFile, data[:min(24, len(data))])
	}
	f, err := pcapfile.Parse(data)
	if err != nil {
		t.Fatalf("stenodump packets %s: %v", pktFile, err)
	}
	if f.LinkType != 1 {
		t.Fatalf("stenodump packets %s: link type %d, want 1", pktFile, f.LinkType)
	}
	return f
}

// IndexEntry is one key line of `stenodump index`.
type IndexEntry struct {
	Key       oracle.Key
	Text      string // the value as printed
	Positions []uint32
}

// Index is a parsed `stenodump index` output.
type Index struct {
	Version string
	Entries []IndexEntry
}

// ReadIndex runs `stenodump index` on an index file and checks the shape
// of its output: version line, keys in bytewise key order, positions
// ascending without duplicates, addresses in inet_ntop text.
func ReadIndex(t testing.TB, idxFile string) *Index {
	t.Helper()
	out := testenv.MustRun(t, testenv.Deadline, testenv.Stenodump(t), "index", idxFile)
	idx, err := ParseIndex(out)
	if err != nil {
		t.Fatalf("stenodump index %s: %v", idxFile, err)
	}
	return idx
}

// ParseIndex parses and checks `stenodump index` output.
func ParseIndex(out []byte) (*Index, error) {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "version ") {
		return nil, fmt.Errorf("first line %q is not `version <major>.<minor>`", firstLine(lines))
	}
	idx := &Index{Version: strings.TrimPrefix(lines[0], "version ")}
	for n, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d %q: want `<type> <value> <positions>`", n+2, l)
		}
		k, err := oracle.ParseKey(f[0], f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", n+2, err)
		}
		if k.Type == oracle.IPv4 || k.Type == oracle.IPv6 {
			if want := oracle.FormatAddr(k.Addr); want != f[1] {
				return nil, fmt.Errorf("line %d: address printed %q, inet_ntop prints %q", n+2, f[1], want)
			}
		}
		e := IndexEntry{Key: k, Text: f[1]}
		for _, ps := range strings.Split(f[2], ",") {
			p, err := strconv.ParseUint(ps, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("line %d: position %q: %v", n+2, ps, err)
			}
			if len(e.Positions) > 0 && uint32(p) <= e.Positions[len(e.Positions)-1] {
				return nil, fmt.Errorf("line %d (%s): positions not ascending/unique at %d", n+2, k, p)
			}
			e.Positions = append(e.Positions, uint32(p))
		}
		if len(idx.Entries) > 0 {
			prev := idx.Entries[len(idx.Entries)-1].Key
			if !oracle.Less(prev, k) {
				return nil, fmt.Errorf("line %d: key %s not after %s in bytewise order", n+2, k, prev)
			}
		}
		idx.Entries = append(idx.Entries, e)
	}
	return idx, nil
}

func firstLine(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[0]
}

// Lookup returns the positions of a key (nil when absent).
func (idx *Index) Lookup(k oracle.Key) []uint32 {
	for _, e := range idx.Entries {
		if e.Key == k {
			return e.Positions
		}
	}
	return nil
}

// PerPacket turns the index into each packet's key set, given the packet
// positions in file order. Positions that are not packets are errors.
func (idx *Index) PerPacket(positions []Position) ([]oracle.Set, error) {
	ord := make(map[uint32]int, len(positions))
	for i, p := range positions {
		ord[p.Pos] = i
	}
	sets := make([]oracle.Set, len(positions))
	for _, e := range idx.Entries {
		for _, p := range e.Positions {
			i, ok := ord[p]
			if !ok {
				return nil, fmt.Errorf("key %s lists position %d, which is not a packet", e.Key, p)
			}
			sets[i] = append(sets[i], e.Key)
		}
	}
	for i := range sets {
		sets[i] = sets[i].Normalize()
	}
	return sets, nil
}

// Pair is one packet file and its index file.
type Pair struct {
	Name     string // decimal microseconds
	Micros   uint64
	PKT, IDX string // paths
}

// Pairs lists thread i's file pairs in name order and checks the layout
// contract: no hidden (in-progress) files, every packet file has its index
// and every index its packet file, names are decimal and strictly
// increasing.
func Pairs(t testing.TB, dir string, thread int) []Pair {
	t.Helper()
	pktDir := filepath.Join(dir, fmt.Sprintf("PKT%d", thread))
	idxDir := filepath.Join(dir, fmt.Sprintf("IDX%d", thread))
	pk := listDir(t, pktDir)
	ix := listDir(t, idxDir)
	for _, n := range append(append([]string(nil), pk...), ix...) {
		if strings.HasPrefix(n, ".") {
			t.Errorf("hidden (unfinished) file left behind: %s", n)
		}
	}
	have := map[string]bool{}
	for _, n := range ix {
		have[n] = true
	}
	var pairs []Pair
	for _, n := range pk {
		if strings.HasPrefix(n, ".") {
			continue
		}
		us, err := strconv.ParseUint(n, 10, 64)
		if err != nil {
			t.Errorf("%s: file name %q is not decimal microseconds", pktDir, n)
			continue
		}
		if !have[n] {
			t.Errorf("%s/%s has no index file %s/%s", pktDir, n, idxDir, n)
			continue
		}
		delete(have, n)
		pairs = append(pairs, Pair{Name: n, Micros: us, PKT: filepath.Join(pktDir, n), IDX: filepath.Join(idxDir, n)})
	}
	for n := range have {
		if !strings.HasPrefix(n, ".") {
			t.Errorf("%s/%s has no packet file", idxDir, n)
		}
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].Micros < pairs[j].Micros })
	for i := 1; i < len(pairs); i++ {
		if pairs[i].Micros == pairs[i-1].Micros {
			t.Errorf("two files named %d", pairs[i].Micros)
		}
	}
	return pairs
}

func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("output directory: %v", err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// Stats is one `STATS` line of stenotype's stderr.
type Stats struct {
	Thread                               int
	Packets, Bytes, Drops, Blocks, Files uint64
	Mbps                                 float64
	BlocksDropped, SocketErrors          uint64 // write errors; capture socket errors (link down)
}

var statsRE = regexp.MustCompile(`STATS thread=(\d+) packets=(\d+) bytes=(\d+) drops=(\d+) blocks=(\d+) files=(\d+) mbps=([0-9.eE+-]+|nan|inf)` +
	`(?: blocks_dropped=(\d+))?(?: socket_errors=(\d+))?`)

// ParseStats returns every STATS line in stderr, in order.
func ParseStats(stderr []byte) []Stats {
	var out []Stats
	for _, m := range statsRE.FindAllStringSubmatch(string(stderr), -1) {
		var s Stats
		s.Thread, _ = strconv.Atoi(m[1])
		s.Packets, _ = strconv.ParseUint(m[2], 10, 64)
		s.Bytes, _ = strconv.ParseUint(m[3], 10, 64)
		s.Drops, _ = strconv.ParseUint(m[4], 10, 64)
		s.Blocks, _ = strconv.ParseUint(m[5], 10, 64)
		s.Files, _ = strconv.ParseUint(m[6], 10, 64)
		s.Mbps, _ = strconv.ParseFloat(m[7], 64)
		s.BlocksDropped, _ = strconv.ParseUint(m[8], 10, 64)
		s.SocketErrors, _ = strconv.ParseUint(m[9], 10, 64)
		out = append(out, s)
	}
	return out
}

// LastStats returns the last STATS line of each thread.
func LastStats(stderr []byte) map[int]Stats {
	last := map[int]Stats{}
	for _, s := range ParseStats(stderr) {
		last[s.Thread] = s
	}
	return last
}

// Stored is everything read back from one thread's files, in file order.
type Stored struct {
	Pairs     []Pair
	Positions [][]Position      // per pair
	Packets   []pcapfile.Packet // all pairs concatenated
	Keys      []oracle.Set      // per packet, from the index files
	FileOf    []int             // per packet: index into Pairs
}

// ReadThread reads all of thread i's pairs: positions, packets (with VLAN
// tags restored by stenodump) and per-packet index keys. It checks that
// stenodump's packets and positions agree.
func ReadThread(t testing.TB, dir string, thread, blocksizeKB int) *Stored {
	t.Helper()
	st := &Stored{Pairs: Pairs(t, dir, thread)}
	for fi, p := range st.Pairs {
		pos := Positions(t, p.PKT, blocksizeKB)
		pk := Packets(t, p.PKT, blocksizeKB)
		if len(pk.Packets) != len(pos) {
			t.Fatalf("%s: stenodump packets gives %d packets, positions %d", p.PKT, len(pk.Packets), len(pos))
		}
		for i, q := range pos {
			if !pk.Packets[i].Time.Equal(q.Time()) {
				t.Errorf("%s #%d: packets time %v, positions time %v", p.PKT, i, pk.Packets[i].Time, q.Time())
			}
		}
		idx := ReadIndex(t, p.IDX)
		if idx.Version != "2.0" {
			t.Errorf("%s: index version %q, want 2.0", p.IDX, idx.Version)
		}
		sets, err := idx.PerPacket(pos)
		if err != nil {
			t.Fatalf("%s: %v", p.IDX, err)
		}
		st.Positions = append(st.Positions, pos)
		st.Packets = append(st.Packets, pk.Packets...)
		st.Keys = append(st.Keys, sets...)
		for range pos {
			st.FileOf = append(st.FileOf, fi)
		}
	}
	return st
}
