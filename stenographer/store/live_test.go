package store

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/indexfile"
	"github.com/stenographer-ng/stenographer/stenographer/internal/fixture"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
)

// liveFixture is a thread 0 with one finished pair (packets 0..9) and a
// live file (packets 100..144 in three blocks) whose packet file and
// delta tables each case lays out.
type liveFixture struct {
	dir, name string
	data      []byte   // the live packet file
	positions []uint32 // of packets 100+i
}

const liveFirst = 100

func newLiveFixture(t *testing.T) *liveFixture {
	t.Helper()
	dir := t.TempDir()
	var done, live []fixture.Packet
	for k := 0; k < 10; k++ {
		done = append(done, fixture.Packet{Time: base.Add(time.Duration(k) * time.Second), Data: []byte{byte(k), 0, 60: 0}, Keys: [][]byte{portKey(2000)}})
	}
	if _, err := fixture.Write(dir, 0, base, blockSize, done); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"PKT1", "IDX1"} { // open's second thread, empty
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for k := liveFirst; k < liveFirst+45; k++ {
		live = append(live, fixture.Packet{Time: base.Add(time.Duration(k) * time.Second), Data: append([]byte{byte(k), 0}, make([]byte, 120)...)})
	}
	f := &liveFixture{dir: dir, name: strconv.FormatInt(base.Add(liveFirst*time.Second).UnixMicro(), 10)}
	f.data, f.positions = fixture.Blocks(blockSize, live)
	if len(f.data) != 3*blockSize {
		t.Fatalf("live file of %d bytes, want three blocks", len(f.data))
	}
	return f
}

// packetFile writes the live packet file, hidden or visible.
func (f *liveFixture) packetFile(t *testing.T, hidden bool) {
	name := f.name
	if hidden {
		name = "." + name
	}
	if err := os.WriteFile(filepath.Join(f.dir, "PKT0", name), f.data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// delta writes delta table seq covering [from, to) and listing, under
// port 2000, the packets whose positions are in [lo, hi). id is the
// pair-identity record (the first block header unless given); a negative
// from writes no live-range record.
func (f *liveFixture) delta(t *testing.T, seq int, from, to, lo, hi int64, id []byte) {
	index := map[string][]uint32{}
	for _, p := range f.positions {
		if int64(p) >= lo && int64(p) < hi {
			index[string(portKey(2000))] = append(index[string(portKey(2000))], p)
		}
	}
	if from >= 0 {
		index["\x00\x02"] = []uint32{uint32(from >> 32), uint32(from), uint32(to >> 32), uint32(to)}
	}
	if id == nil {
		id = f.data[:48]
	}
	for i := 0; i+4 <= len(id); i += 4 {
		index["\x00\x01"] = append(index["\x00\x01"], binary.BigEndian.Uint32(id[i:]))
	}
	path := filepath.Join(f.dir, "IDX0", "."+f.name+".d"+strconv.Itoa(seq))
	if err := fixture.WriteIndex(path, index); err != nil {
		t.Fatal(err)
	}
}

// blocks returns the live packet numbers of blocks [first, last).
func (f *liveFixture) blocks(first, last int) []int {
	var out []int
	for i, p := range f.positions {
		if b := int(p) / blockSize; b >= first && b < last {
			out = append(out, liveFirst+i)
		}
	}
	return out
}

func TestLiveFiles(t *testing.T) {
	const b = blockSize
	finished := seq(0, 10, 1, nil)
	other := make([]byte, 48)
	other[0] = 9
	for _, tc := range []struct {
		name   string
		layout func(t *testing.T, f *liveFixture)
		want   []int // live packets served
		errIs  error // a file error the query reports
	}{
		{"whole and a delta", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, true)
			f.delta(t, 1, 0, b, 0, b, nil)
			f.delta(t, 2, b, 2*b, b, 2*b, nil)
		}, []int{0, 2}, nil},
		{"a newer whole table replaces the deltas", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, true)
			f.delta(t, 1, 0, b, 0, b, nil)
			f.delta(t, 2, b, 2*b, b, 2*b, nil)
			f.delta(t, 3, 0, 3*b, 0, 3*b, nil)
		}, []int{0, 3}, nil},
		{"only the whole tables after removal", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, true)
			f.delta(t, 17, 0, 2*b, 0, 2*b, nil)
			f.delta(t, 18, 2*b, 3*b, 2*b, 3*b, nil)
		}, []int{0, 3}, nil},
		{"positions outside a table's range are not served", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, true)
			f.delta(t, 1, 0, b, 0, 3*b, nil)
		}, []int{0, 1}, nil},
		{"a gap in the chain serves what is before it", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, true)
			f.delta(t, 1, 0, b, 0, b, nil)
			f.delta(t, 2, 2*b, 3*b, 2*b, 3*b, nil)
		}, []int{0, 1}, nil},
		{"a missing table in the chain serves nothing", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, true)
			f.delta(t, 1, 0, b, 0, b, nil)
			f.delta(t, 3, b, 2*b, b, 2*b, nil)
		}, nil, nil},
		{"no delta yet", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, true)
		}, nil, nil},
		{"the packet file renamed before its index", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, false)
			f.delta(t, 1, 0, 3*b, 0, 3*b, nil)
		}, []int{0, 3}, nil},
		{"the last block short on disk, as stenotype writes a sparse one", func(t *testing.T, f *liveFixture) {
			f.data = f.data[:2*b+2048] // its packets end before that
			f.packetFile(t, true)
			f.delta(t, 1, 0, 3*b, 0, 3*b, nil)
		}, []int{0, 3}, nil},
		{"a range past the end of the file", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, true)
			f.delta(t, 1, 0, 1<<32, 0, 3*b, nil)
		}, []int{0, 3}, nil},
		{"a delta table without a live range", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, true)
			f.delta(t, 1, -1, 0, 0, b, nil)
		}, nil, indexfile.ErrCorrupt},
		{"a delta table of another packet file", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, true)
			f.delta(t, 1, 0, b, 0, b, other)
		}, nil, ErrNotAPair},
		{"tables of two packet files", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, true)
			f.delta(t, 1, 0, b, 0, b, nil)
			f.delta(t, 2, b, 2*b, b, 2*b, other)
		}, nil, ErrNotAPair},
		{"an empty live range", func(t *testing.T, f *liveFixture) {
			f.packetFile(t, true)
			f.delta(t, 1, 0, 0, 0, 3*b, nil)
		}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newLiveFixture(t)
			tc.layout(t, f)
			s := open(t, f.dir)
			var want []int
			if tc.want != nil {
				want = f.blocks(tc.want[0], tc.want[1])
			}
			for _, q := range []string{"port 2000", "after " + base.Add(-time.Hour).Format(time.RFC3339)} {
				got, res := run(t, s, q, pcap.Limits{})
				live := slices.DeleteFunc(slices.Clone(got), func(k int) bool { return k < liveFirst })
				if !slices.Equal(got[:len(got)-len(live)], finished) {
					t.Errorf("%q: the finished file gave %v", q, got[:len(got)-len(live)])
				}
				if !slices.Equal(live, want) {
					t.Errorf("%q: live packets %v, want %v", q, live, want)
				}
				if tc.errIs == nil && len(res.Errors) != 0 {
					t.Errorf("%q: file errors %v", q, res.Errors)
				}
				if tc.errIs != nil && (len(res.Errors) != 1 || !errors.Is(res.Errors[0], tc.errIs)) {
					t.Errorf("%q: file errors %v, want one wrapping %v", q, res.Errors, tc.errIs)
				}
			}
			if len(s.Files(0)) != 1 {
				t.Errorf("Files lists %d files: a live file is not a pair", len(s.Files(0)))
			}
		})
	}
}

// TestLiveFileFinished: once the full index is visible, the file is an
// ordinary pair and leftover deltas are ignored, even while the view
// still holds the file as live.
func TestLiveFileFinished(t *testing.T) {
	f := newLiveFixture(t)
	f.packetFile(t, true)
	f.delta(t, 1, 0, blockSize, 0, blockSize, nil)
	s := open(t, f.dir)
	// stenotype finishes the file: renames it, writes the full index.
	if err := os.Rename(filepath.Join(f.dir, "PKT0", "."+f.name), filepath.Join(f.dir, "PKT0", f.name)); err != nil {
		t.Fatal(err)
	}
	index := map[string][]uint32{string(portKey(2000)): f.positions}
	if err := fixture.WriteIndex(filepath.Join(f.dir, "IDX0", f.name), index); err != nil {
		t.Fatal(err)
	}
	want := append(seq(0, 10, 1, nil), seq(liveFirst, liveFirst+45, 1, nil)...)
	for _, refresh := range []bool{false, true} {
		if refresh {
			if err := s.Refresh(); err != nil {
				t.Fatal(err)
			}
		}
		if got, res := run(t, s, "port 2000", pcap.Limits{}); !slices.Equal(got, want) || len(res.Errors) != 0 {
			t.Errorf("refreshed %v: got %v (errors %v), want %v", refresh, got, res.Errors, want)
		}
	}
	if len(s.Files(0)) != 2 {
		t.Errorf("Files lists %d files after the refresh, want 2", len(s.Files(0)))
	}
}

func TestParseDeltaName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		file string
		seq  int
		ok   bool
	}{
		{".1700000000000000.d1", "1700000000000000", 1, true},
		{".1700000000000000.d42", "1700000000000000", 42, true},
		{"1700000000000000.d1", "", 0, false},
		{".1700000000000000.d1.tmp", "", 0, false},
		{".1700000000000000.d0", "", 0, false},
		{".1700000000000000.d01", "", 0, false},
		{".1700000000000000.d-1", "", 0, false},
		{".1700000000000000", "", 0, false},
		{".x.d1", "", 0, false},
	} {
		file, seq, ok := parseDeltaName(tc.in)
		if file != tc.file || seq != tc.seq || ok != tc.ok {
			t.Errorf("parseDeltaName(%q) = %q, %d, %v", tc.in, file, seq, ok)
		}
	}
}

// TestLiveDeltasReplaced: between two queries stenotype wrote more deltas
// and a whole table that replaced them all, so the newest table the store
// saw is gone and the next names up to the whole one are free.
func TestLiveDeltasReplaced(t *testing.T) {
	const b = blockSize
	f := newLiveFixture(t)
	f.packetFile(t, true)
	f.delta(t, 1, 0, b, 0, b, nil)
	f.delta(t, 2, b, 2*b, b, 2*b, nil)
	s := open(t, f.dir)
	if got, _ := run(t, s, "port 2000", pcap.Limits{}); len(got) != 10+len(f.blocks(0, 2)) {
		t.Fatalf("before: %d packets", len(got))
	}
	for _, seq := range []int{1, 2} {
		if err := os.Remove(filepath.Join(f.dir, "IDX0", "."+f.name+".d"+strconv.Itoa(seq))); err != nil {
			t.Fatal(err)
		}
	}
	f.delta(t, 18, 0, 3*b, 0, 3*b, nil)
	got, res := run(t, s, "port 2000", pcap.Limits{})
	if want := append(seq(0, 10, 1, nil), f.blocks(0, 3)...); !slices.Equal(got, want) || len(res.Errors) != 0 {
		t.Errorf("after the whole table replaced the deltas: %v (errors %v), want %v", got, res.Errors, want)
	}
}
