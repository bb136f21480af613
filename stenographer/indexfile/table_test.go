package indexfile

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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

// recordingReader records the reads made through it.
type recordingReader struct {
	r     io.ReaderAt
	mu    sync.Mutex
	reads [][2]int64 // offset, length
}

func (r *recordingReader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	r.reads = append(r.reads, [2]int64{off, int64(len(p))})
	r.mu.Unlock()
	return r.r.ReadAt(p, off)
}

// ascending returns n ascending positions.
func ascending(r *rand.Rand, n int) []uint32 {
	pos := make([]uint32, n)
	p := uint32(48)
	for i := range pos {
		pos[i] = p
		p += uint32(48 + r.IntN(2000))
	}
	return pos
}

// Open checks the version record by reading the first 64 bytes of an
// uncompressed table, not its first block (here 80 KB of protocol keys);
// a Snappy table's head does not parse as an entry, so its first block is
// read whole through goleveldb, and the version record is still found.
// openRecorded opens a table of entries written with o, recording its
// reads; it returns the file, the reads and the table's size.
func openRecorded(t *testing.T, o opt.Options, entries []kv) (*File, *recordingReader, int) {
	t.Helper()
	b, err := tableBytes(o, version2, entries)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingReader{r: bytes.NewReader(b)}
	x, err := newFile("idx", rec, int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return x, rec, len(b)
}

func TestVersionCheckReadsOnlyTheHead(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	entries := []kv{
		{ProtoKey(6), ascending(r, 20000)},
		{ProtoKey(17), ascending(r, 5000)},
		{PortKey(80), ascending(r, 10)},
	}
	for _, tc := range []struct {
		name     string
		o        opt.Options
		fastPath bool
	}{
		{"uncompressed", opt.Options{Compression: opt.NoCompression}, true},
		{"snappy", opt.Options{Compression: opt.SnappyCompression}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, rec, size := openRecorded(t, tc.o, entries)
			defer x.Close()
			var fromStart int64 // the longest read at offset 0
			for _, rd := range rec.reads {
				if rd[0] == 0 {
					fromStart = max(fromStart, rd[1])
				}
			}
			if tc.fastPath {
				if fromStart != versionHead {
					t.Errorf("version check read %d bytes at offset 0, want %d", fromStart, versionHead)
				}
				if n := x.BytesRead(); n > 4096 {
					t.Errorf("opening a %d-byte table read %d bytes", size, n)
				}
			} else if fromStart <= versionHead {
				t.Errorf("version check on a Snappy table read %d bytes at offset 0, want the whole first block", fromStart)
			}
			before := x.BytesRead()
			got, err := x.Lookup(context.Background(), ProtoKey(6))
			if err != nil || !slices.Equal(got, entries[0].positions) {
				t.Fatalf("Lookup(proto 6) = %d positions, %v; want %d", len(got), err, len(entries[0].positions))
			}
			if n := x.BytesRead() - before; tc.fastPath && n < 80000 {
				t.Errorf("Lookup(proto 6) read %d bytes; its list alone is 80000", n)
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

// The version record is required and checked in every layout: from the
// file's head (uncompressed tables whose first entry is an 8-byte version
// record) or through goleveldb's Get (Snappy tables, and records of the
// wrong length, which do not parse as the expected head).
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
// separator reads nothing, and a single key reads one block (also when it
// is the last of its block and the index separator equals it).
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
	for p := range uint16(2000) { // every key, so the last of each block too
		before := x.BytesRead()
		got, err := x.Lookup(ctx, PortKey(p))
		if err != nil || !slices.Equal(got, []uint32{uint32(48 + p)}) {
			t.Fatalf("Lookup(port %d) = %v, %v", p, got, err)
		}
		if n := x.BytesRead() - before; n > 256+64 {
			t.Errorf("Lookup(port %d) read %d bytes, more than one block", p, n)
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

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// blockWithTrailer appends an uncompressed block's trailer (type byte and
// masked CRC-32C) to its contents.
func blockWithTrailer(contents []byte) []byte {
	c := crc32.Update(crc32.Checksum(contents, castagnoli), castagnoli, []byte{0})
	out := append(slices.Clone(contents), 0)
	return binary.LittleEndian.AppendUint32(out, (c>>15|c<<17)+0xa282ead8)
}

// craftedTable assembles a table with valid checksums around the given
// data block contents: data block at 0, an empty metaindex block, an index
// block whose one entry (key ff) points at the data block, and a footer.
// metaAt0 makes the footer's metaindex handle (0, len(data)) instead.
func craftedTable(data []byte, metaAt0 bool, indexSize uint64) []byte {
	file := blockWithTrailer(data)
	metaOff := uint64(len(file))
	emptyBlock := []byte{0, 0, 0, 0, 1, 0, 0, 0} // no entries, one restart at 0
	file = append(file, blockWithTrailer(emptyBlock)...)
	var idx []byte
	handle := binary.AppendUvarint(binary.AppendUvarint(nil, 0), uint64(len(data)))
	idx = append(idx, 0, 1, byte(len(handle)), 0xff)
	idx = append(idx, handle...)
	idx = binary.LittleEndian.AppendUint32(idx, 0)
	idx = binary.LittleEndian.AppendUint32(idx, 1)
	idxOff := uint64(len(file))
	file = append(file, blockWithTrailer(idx)...)
	if indexSize == 0 {
		indexSize = uint64(len(idx))
	}
	var footer []byte
	if metaAt0 {
		footer = binary.AppendUvarint(binary.AppendUvarint(footer, 0), uint64(len(data)))
	} else {
		footer = binary.AppendUvarint(binary.AppendUvarint(footer, metaOff), uint64(len(emptyBlock)))
	}
	footer = binary.AppendUvarint(binary.AppendUvarint(footer, idxOff), indexSize)
	footer = append(footer, make([]byte, 40-len(footer))...)
	footer = binary.LittleEndian.AppendUint64(footer, tableMagic)
	return append(file, footer...)
}

// Tables with valid checksums but impossible blocks, on which goleveldb's
// reader panics (an empty block; a restart count larger than the block),
// and a footer whose index handle claims 100 GB (goleveldb would allocate
// that much before reading): Open returns ErrCorrupt naming the file.
func TestCraftedTables(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name      string
		data      []byte
		metaAt0   bool
		indexSize uint64
	}{
		{"empty-data-block", nil, false, 0},
		{"empty-metaindex-block", nil, true, 0},
		{"restarts-beyond-block", []byte{0, 0, 0, 0, 0xe8, 3, 0, 0}, false, 0},
		{"huge-index-handle", []byte{0, 0, 0, 0, 1, 0, 0, 0}, false, 100 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, craftedTable(tc.data, tc.metaAt0, tc.indexSize), 0o644); err != nil {
				t.Fatal(err)
			}
			x, err := Open(path)
			if err == nil {
				x.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open = %v, want ErrCorrupt naming the file", err)
			}
		})
	}
}

// A lookup that makes goleveldb panic (a data block of a valid index
// block and checksum whose restart count exceeds the block, met only by the
// lookup, not by Open) returns ErrCorrupt naming the file, and the file
// stays usable.
func TestPanicInLookup(t *testing.T) {
	entries := []kv{{ProtoKey(6), []uint32{48}}, {PortKey(80), []uint32{100}}}
	good, err := tableBytes(opt.Options{Compression: opt.NoCompression, BlockSize: 16}, version2, entries)
	if err != nil {
		t.Fatal(err)
	}
	// The second data block holds port 80: find it by its key and give it a
	// restart count of 1000, then fix its checksum.
	i := bytes.Index(good, PortKey(80))
	if i < 0 {
		t.Fatal("port key not found")
	}
	start := i - 3               // shared, unshared, value length
	end := start + 3 + 3 + 4 + 8 // entry, one restart, restart count
	blk := slices.Clone(good[start:end])
	binary.LittleEndian.PutUint32(blk[len(blk)-4:], 1000)
	bad := slices.Clone(good)
	copy(bad[start:], blockWithTrailer(blk))
	path := filepath.Join(t.TempDir(), "idx")
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	x, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	ctx := context.Background()
	if _, err := x.Lookup(ctx, PortKey(80)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Lookup(port 80) = %v, want ErrCorrupt naming the file", err)
	}
	if got, err := x.Lookup(ctx, ProtoKey(6)); err != nil || !slices.Equal(got, []uint32{48}) {
		t.Fatalf("Lookup(proto 6) after the failure = %v, %v", got, err)
	}
}

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
