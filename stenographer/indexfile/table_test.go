package indexfile

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/table"
)

// tableOpts are the table layouts the reader is checked against: goleveldb's
// writer, which follows the same format as the reference's LevelDB.
var tableOpts = []struct {
	name string
	o    opt.Options
}{
	{"default", opt.Options{Compression: opt.NoCompression}},
	{"snappy", opt.Options{Compression: opt.SnappyCompression}},
	{"tiny-blocks", opt.Options{Compression: opt.NoCompression, BlockSize: 64, BlockRestartInterval: 1}},
	{"small-blocks-restart-3", opt.Options{Compression: opt.NoCompression, BlockSize: 300, BlockRestartInterval: 3}},
	{"snappy-small-blocks", opt.Options{Compression: opt.SnappyCompression, BlockSize: 200, BlockRestartInterval: 5}},
}

type kv struct {
	key       []byte
	positions []uint32
}

// tableBytes returns a table with the given version value (nil: none)
// and sorted entries.
func tableBytes(o opt.Options, version []byte, entries []kv) ([]byte, error) {
	var buf bytes.Buffer
	w := table.NewWriter(&buf, &o)
	if version != nil {
		if err := w.Append([]byte{TypeVersion}, version); err != nil {
			return nil, err
		}
	}
	for _, e := range entries {
		v := make([]byte, 4*len(e.positions))
		for i, p := range e.positions {
			binary.BigEndian.PutUint32(v[4*i:], p)
		}
		if err := w.Append(e.key, v); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeTable writes tableBytes to a file and returns its path.
func writeTable(t *testing.T, o opt.Options, version []byte, entries []kv) string {
	t.Helper()
	b, err := tableBytes(o, version, entries)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "idx")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var version2 = []byte{0, 0, 0, 2, 0, 0, 0, 0}

// randomEntries returns n distinct sorted keys of several types with
// ascending positions; some lists are long so that blocks vary in size.
func randomEntries(r *rand.Rand, n int) []kv {
	seen := map[string]bool{}
	var out []kv
	for len(out) < n {
		var k []byte
		switch r.IntN(4) {
		case 0:
			k = ProtoKey(uint8(r.IntN(256)))
		case 1:
			k = PortKey(uint16(r.IntN(65536)))
		case 2:
			k = []byte{TypeIPv4, 10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))}
		default:
			k = append([]byte{TypeIPv6}, bytes.Repeat([]byte{byte(r.IntN(3))}, 16)...)
			k[16] = byte(r.IntN(256))
		}
		if seen[string(k)] {
			continue
		}
		seen[string(k)] = true
		count := 1 + r.IntN(5)
		if r.IntN(20) == 0 {
			count = 500 + r.IntN(2000)
		}
		var pos []uint32
		p := uint32(48 + r.IntN(100))
		for range count {
			pos = append(pos, p)
			p += uint32(48 + r.IntN(2000))
		}
		out = append(out, kv{k, pos})
	}
	slices.SortFunc(out, func(a, b kv) int { return bytes.Compare(a.key, b.key) })
	return out
}

// wantRange is the brute-force answer for [lo, hi].
func wantRange(entries []kv, lo, hi []byte) []uint32 {
	var out []uint32
	for _, e := range entries {
		if bytes.Compare(e.key, lo) >= 0 && bytes.Compare(e.key, hi) <= 0 {
			out = append(out, e.positions...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// A lookup returns exactly the positions of the keys in range, for random
// tables in every layout, including ranges between, before and after keys.
func TestRangeAgainstBruteForce(t *testing.T) {
	ctx := context.Background()
	for _, to := range tableOpts {
		t.Run(to.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(len(to.name))))
			entries := randomEntries(r, 200)
			x, err := Open(writeTable(t, to.o, version2, entries))
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			probe := func(lo, hi []byte) {
				t.Helper()
				got, err := x.Range(ctx, lo, hi)
				if err != nil {
					t.Fatalf("Range(%x, %x): %v", lo, hi, err)
				}
				want := wantRange(entries, lo, hi)
				if !slices.Equal(got, want) {
					t.Fatalf("Range(%x, %x) = %d positions, want %d", lo, hi, len(got), len(want))
				}
				// RangeWithin: a random sorted set, part from the answer.
				var within []uint32
				for _, p := range want {
					if r.IntN(3) == 0 {
						within = append(within, p)
					}
				}
				for range r.IntN(50) {
					within = append(within, uint32(r.IntN(1<<22)))
				}
				slices.Sort(within)
				within = slices.Compact(within)
				var wantWithin []uint32
				for _, p := range within {
					if _, ok := slices.BinarySearch(want, p); ok {
						wantWithin = append(wantWithin, p)
					}
				}
				gotWithin, err := x.RangeWithin(ctx, lo, hi, within)
				if err != nil || !slices.Equal(gotWithin, wantWithin) {
					t.Fatalf("RangeWithin(%x, %x, %d) = %d positions, %v; want %d", lo, hi, len(within), len(gotWithin), err, len(wantWithin))
				}
			}
			for i := 0; i < len(entries); i += 3 {
				probe(entries[i].key, entries[i].key)
			}
			for range 60 {
				a := entries[r.IntN(len(entries))].key
				b := entries[r.IntN(len(entries))].key
				if bytes.Compare(a, b) > 0 {
					a, b = b, a
				}
				// Exact ends, and ends that fall between keys.
				probe(a, b)
				probe(append(slices.Clone(a), 0), b)
				probe(a[:len(a)-1], append(slices.Clone(b), 0xff))
			}
			probe([]byte{0xff}, []byte{0xff, 0xff})        // after every key
			probe([]byte{TypeProto}, []byte{TypeProto, 0}) // before the first
			probe([]byte{TypeIPv6, 9}, []byte{TypeIPv4})   // lo > hi
			got, err := x.Entries()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(entries) {
				t.Fatalf("Entries: %d, want %d", len(got), len(entries))
			}
			for i, e := range got {
				if !bytes.Equal(e.Key, entries[i].key) || !slices.Equal(e.Positions, entries[i].positions) {
					t.Fatalf("entry %d = %x, want %x", i, e.Key, entries[i].key)
				}
			}
		})
	}
}

// Open reads a small table's tail once, and a table whose index block is
// larger than the tail read with a second read; both answer lookups.
func TestTailRead(t *testing.T) {
	ctx := context.Background()
	one := []kv{{PortKey(80), []uint32{48, 1000}}}
	r := rand.New(rand.NewPCG(7, 7))
	many := randomEntries(r, 4000)
	tests := []struct {
		name    string
		o       opt.Options
		entries []kv
		bigIdx  bool
	}{
		{"tiny", opt.Options{Compression: opt.NoCompression}, one, false},
		{"tiny-snappy", opt.Options{Compression: opt.SnappyCompression}, one, false},
		{"big-index-block", opt.Options{Compression: opt.NoCompression, BlockSize: 16, BlockRestartInterval: 1}, many, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTable(t, tc.o, version2, tc.entries)
			st, _ := os.Stat(path)
			x, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer x.Close()
			// The tail (the whole file here) and the first block for the
			// version record; the big table also reads its index block.
			wantReads := int64(2)
			if tc.bigIdx {
				wantReads = 3
			}
			if n := x.read.calls.Load(); n != wantReads {
				t.Errorf("opening a %d-byte table took %d reads, want %d", st.Size(), n, wantReads)
			}
			if tc.bigIdx && len(x.index.data) < tailRead {
				t.Fatalf("index block of %d bytes does not exceed the tail read; make the table bigger", len(x.index.data))
			}
			for _, e := range tc.entries[:min(len(tc.entries), 50)] {
				got, err := x.Lookup(ctx, e.key)
				if err != nil || !slices.Equal(got, e.positions) {
					t.Fatalf("Lookup(%x) = %v, %v; want %v", e.key, got, err, e.positions)
				}
			}
		})
	}
}

// Every truncation of a table, and every single-byte corruption of a small
// one, is refused or read safely: errors name the file, nothing panics, and
// a lookup that succeeds on a corrupted file returns sorted positions.
func TestTruncatedAndCorruptTables(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	entries := randomEntries(r, 40)
	for i := range entries { // short lists: a table of a few kilobytes
		entries[i].positions = entries[i].positions[:min(len(entries[i].positions), 4)]
	}
	for _, to := range tableOpts {
		t.Run(to.name, func(t *testing.T) {
			path := writeTable(t, to.o, version2, entries)
			good, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			bad := filepath.Join(t.TempDir(), "bad")
			try := func(data []byte, what string) {
				t.Helper()
				if err := os.WriteFile(bad, data, 0o644); err != nil {
					t.Fatal(err)
				}
				x, err := Open(bad)
				if err != nil {
					if !strings.Contains(err.Error(), bad) {
						t.Fatalf("%s: error %q does not name the file", what, err)
					}
					if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) {
						t.Fatalf("%s: error %v is neither ErrCorrupt nor ErrVersion", what, err)
					}
					return
				}
				defer x.Close()
				got, err := x.Range(context.Background(), []byte{TypeProto}, []byte{0xff})
				if err != nil {
					if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), bad) {
						t.Fatalf("%s: lookup error %v", what, err)
					}
					return
				}
				if !isStrictlySorted(got) {
					t.Fatalf("%s: positions not sorted", what)
				}
			}
			for n := 0; n < len(good); n++ {
				try(good[:n], fmt.Sprintf("truncated to %d bytes", n))
			}
			if len(good) > 4096 {
				return // byte flips: small tables only, to keep the test quick
			}
			for i := range good {
				d := slices.Clone(good)
				d[i] ^= 0x5a
				try(d, fmt.Sprintf("byte %d flipped", i))
			}
		})
	}
}

// The version record is required and checked in every layout, whether the
// first block is read in part (uncompressed, at least versionPrefix bytes)
// or whole.
func TestVersionRecord(t *testing.T) {
	entries := []kv{{ProtoKey(6), []uint32{48}}, {PortKey(80), []uint32{48}}}
	big := randomEntries(rand.New(rand.NewPCG(5, 5)), 100)
	tests := []struct {
		name    string
		version []byte
		entries []kv
		want    error
	}{
		{"ok-small-first-block", version2, entries, nil},
		{"ok-big-first-block", version2, big, nil},
		{"minor-version-ignored", []byte{0, 0, 0, 2, 0, 0, 0, 9}, big, nil},
		{"missing", nil, big, ErrVersion},
		{"missing-small", nil, entries, ErrVersion},
		{"major-1", []byte{0, 0, 0, 1, 0, 0, 0, 0}, big, ErrVersion},
		{"major-3-small", []byte{0, 0, 0, 3, 0, 0, 0, 0}, entries, ErrVersion},
		{"short-value", []byte{0, 0, 0, 2}, big, ErrVersion},
		{"long-value", []byte{0, 0, 0, 2, 0, 0, 0, 0, 0}, big, ErrVersion},
		{"empty-table", nil, nil, ErrVersion},
	}
	for _, to := range tableOpts {
		for _, tc := range tests {
			t.Run(to.name+"/"+tc.name, func(t *testing.T) {
				path := writeTable(t, to.o, tc.version, tc.entries)
				x, err := Open(path)
				if tc.want == nil {
					if err != nil {
						t.Fatal(err)
					}
					x.Close()
					return
				}
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), path) {
					t.Fatalf("Open err = %v, want %v naming the file", err, tc.want)
				}
			})
		}
	}
}

// Lookups read only the blocks that can hold their keys: a key after every
// separator reads nothing, and a single key reads one block (two when it is
// the last of its block and the separator equals it).
func TestLookupReadsOnlyItsBlocks(t *testing.T) {
	ctx := context.Background()
	var entries []kv
	for p := range 2000 {
		entries = append(entries, kv{PortKey(uint16(p)), []uint32{uint32(48 + p)}})
	}
	x, err := Open(writeTable(t, opt.Options{Compression: opt.NoCompression, BlockSize: 256}, version2, entries))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	before := x.BytesRead()
	if got, err := x.Lookup(ctx, []byte{0xff}); err != nil || got != nil {
		t.Fatalf("Lookup(ff) = %v, %v", got, err)
	}
	if n := x.BytesRead() - before; n != 0 {
		t.Errorf("a key after every block read %d bytes", n)
	}
	for _, p := range []uint16{0, 1, 700, 1999} {
		before := x.BytesRead()
		got, err := x.Lookup(ctx, PortKey(p))
		if err != nil || !slices.Equal(got, []uint32{uint32(48 + p)}) {
			t.Fatalf("Lookup(port %d) = %v, %v", p, got, err)
		}
		if n := x.BytesRead() - before; n > 2*(256+64) {
			t.Errorf("Lookup(port %d) read %d bytes, more than two blocks", p, n)
		}
	}
	before = x.BytesRead()
	if got, err := x.Range(ctx, PortKey(100), PortKey(199)); err != nil || len(got) != 100 {
		t.Fatalf("Range = %d positions, %v", len(got), err)
	}
	// 100 entries of about 9 bytes: a few 256-byte blocks, not the table.
	if n := x.BytesRead() - before; n > 2000 {
		t.Errorf("a range of 100 keys read %d bytes", n)
	}
}

// A zero-length block (index or data handle of size 0) is refused.
func TestEmptyBlocks(t *testing.T) {
	contents, err := blockContents(append([]byte{noCompression}, 0, 0, 0, 0))
	if err == nil {
		if _, err = parseBlock(contents); err == nil {
			t.Fatal("an empty block parsed")
		}
	}
	// An index block whose only entry points at an empty data block.
	var blk []byte
	blk = append(blk, 0, 1, 2, 0xff, 0, 0) // key ff → handle (0, 0)
	blk = binary.LittleEndian.AppendUint32(blk, 0)
	blk = binary.LittleEndian.AppendUint32(blk, 1)
	data := []byte{noCompression, 0, 0, 0, 0} // the empty data block with its trailer (checksum wrong)
	crc := crc32.Update(0, castagnoli, []byte{noCompression})
	binary.LittleEndian.PutUint32(data[1:], maskCRC(crc))
	idxOff := len(data)
	file := append(data, blk...)
	crc = crc32.Update(crc32.Checksum(blk, castagnoli), castagnoli, []byte{noCompression})
	file = append(file, noCompression)
	file = binary.LittleEndian.AppendUint32(file, maskCRC(crc))
	footer := binary.AppendUvarint(nil, 0)
	footer = binary.AppendUvarint(footer, 0)
	footer = binary.AppendUvarint(footer, uint64(idxOff))
	footer = binary.AppendUvarint(footer, uint64(len(blk)))
	footer = append(footer, make([]byte, 40-len(footer))...)
	footer = binary.LittleEndian.AppendUint64(footer, tableMagic)
	file = append(file, footer...)
	path := filepath.Join(t.TempDir(), "empty-block")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
}

func maskCRC(c uint32) uint32 { return (c>>15 | c<<17) + 0xa282ead8 }

// markHits finds the members of within in a list in any order: ascending
// (galloping), descending or shuffled (a damaged file), with repeats.
func TestMarkHits(t *testing.T) {
	within := []uint32{3, 10, 11, 50, 1000, 1001, 70000}
	enc := func(p ...uint32) []byte {
		var b []byte
		for _, x := range p {
			b = binary.BigEndian.AppendUint32(b, x)
		}
		return b
	}
	for _, tc := range []struct {
		list []uint32
		want []uint32
	}{
		{[]uint32{1, 3, 4, 11, 999, 1001, 80000}, []uint32{3, 11, 1001}},
		{[]uint32{70000, 1000, 50, 10, 3}, []uint32{3, 10, 50, 1000, 70000}},
		{[]uint32{1001, 2, 3, 3, 70000, 11}, []uint32{3, 11, 1001, 70000}},
		{[]uint32{90000}, nil},
		{nil, nil},
	} {
		hit := make([]bool, len(within))
		markHits(enc(tc.list...), within, hit)
		var got []uint32
		for i, h := range hit {
			if h {
				got = append(got, within[i])
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("markHits(%v) = %v, want %v", tc.list, got, tc.want)
		}
	}
}

// union merges any number of sorted lists, with repeats across lists and
// empty lists, and sorts lists that are not sorted.
func TestUnion(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for k := range 40 {
		var out []uint32
		var starts []int
		var all []uint32
		for range k % 9 {
			starts = append(starts, len(out))
			n := r.IntN(30)
			var list []uint32
			for range n {
				list = append(list, uint32(r.IntN(200)))
			}
			slices.Sort(list)
			list = slices.Compact(list)
			if k%7 == 6 && len(list) > 1 {
				list[0], list[len(list)-1] = list[len(list)-1], list[0] // unsorted
			}
			out = append(out, list...)
			all = append(all, list...)
		}
		slices.Sort(all)
		want := slices.Compact(all)
		if got := union(out, starts); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("case %d: union = %v, want %v", k, got, want)
		}
	}
}

// FuzzTable feeds arbitrary bytes (seeded with real tables) to Open and
// the lookups: errors are fine, panics and unsorted results are not.
func FuzzTable(f *testing.F) {
	r := rand.New(rand.NewPCG(11, 11))
	entries := randomEntries(r, 30)
	for i := range entries {
		entries[i].positions = entries[i].positions[:min(len(entries[i].positions), 3)]
	}
	for _, to := range tableOpts {
		o := to.o
		o.BlockSize = 128
		b, err := tableBytes(o, version2, entries)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := newFile("fuzz", bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		ctx := context.Background()
		got, err := x.Range(ctx, []byte{TypeProto}, []byte{0xff})
		if err == nil && !isStrictlySorted(got) {
			t.Fatal("Range result not sorted")
		}
		if err == nil && len(got) > 0 {
			w, err := x.RangeWithin(ctx, []byte{TypeProto}, []byte{0xff}, got[:len(got)/2+1])
			if err != nil || !slices.Equal(w, got[:len(got)/2+1]) {
				t.Fatalf("RangeWithin = %v, %v; want %v", w, err, got[:len(got)/2+1])
			}
		}
		x.Entries()
	})
}
