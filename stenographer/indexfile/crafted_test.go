package indexfile

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/syndtr/goleveldb/leveldb/opt"
)

// A hand-assembled table with valid checksums (blockWithTrailer computes
// LevelDB's masked CRC-32C), for damage that a checksum does not catch.

// entry encodes one block entry as written, lengths given explicitly.
func entry(shared, unshared, vlen uint64, key, value []byte) []byte {
	b := binary.AppendUvarint(nil, shared)
	b = binary.AppendUvarint(b, unshared)
	b = binary.AppendUvarint(b, vlen)
	return append(append(b, key...), value...)
}

// blockOf is a block of whole-key entries (no prefix sharing), each a
// restart point, unless restarts is given.
func blockOf(entries [][]byte, restarts ...uint32) []byte {
	var b []byte
	var offs []uint32
	for _, e := range entries {
		offs = append(offs, uint32(len(b)))
		b = append(b, e...)
	}
	if restarts != nil {
		offs = restarts
	}
	for _, o := range offs {
		b = binary.LittleEndian.AppendUint32(b, o)
	}
	return binary.LittleEndian.AppendUint32(b, uint32(len(offs)))
}

func kvEntry(key []byte, positions ...uint32) []byte {
	var v []byte
	for _, p := range positions {
		v = binary.BigEndian.AppendUint32(v, p)
	}
	return entry(0, uint64(len(key)), uint64(len(v)), key, v)
}

// rawBlock appends the type byte and the masked CRC-32C over both.
func rawBlock(contents []byte, typ byte) []byte {
	out := append(slices.Clone(contents), typ)
	c := crc32.Checksum(out, castagnoli)
	return binary.LittleEndian.AppendUint32(out, (c>>15|c<<17)+0xa282ead8)
}

// assembled is a table: data blocks, an empty metaindex, an index block
// (from the data blocks' handles and last keys, or built by index), the
// footer.
type assembled struct {
	data      [][]byte // block contents
	dataType  []byte   // per block type byte; default uncompressed
	lastKeys  [][]byte
	index     func(h []blockHandle, last [][]byte) []byte // nil: well-formed
	indexType byte
}

func (a assembled) bytes() []byte {
	var file []byte
	var handles []blockHandle
	for i, d := range a.data {
		var typ byte
		if i < len(a.dataType) {
			typ = a.dataType[i]
		}
		handles = append(handles, blockHandle{uint64(len(file)), uint64(len(d))})
		file = append(file, rawBlock(d, typ)...)
	}
	meta := blockHandle{uint64(len(file)), 8}
	file = append(file, rawBlock([]byte{0, 0, 0, 0, 1, 0, 0, 0}, 0)...)
	build := a.index
	if build == nil {
		build = wellFormedIndex
	}
	idx := build(handles, a.lastKeys)
	index := blockHandle{uint64(len(file)), uint64(len(idx))}
	file = append(file, rawBlock(idx, a.indexType)...)
	var footer []byte
	footer = binary.AppendUvarint(binary.AppendUvarint(footer, meta.off), meta.length)
	footer = binary.AppendUvarint(binary.AppendUvarint(footer, index.off), index.length)
	footer = append(footer, make([]byte, 40-len(footer))...)
	footer = binary.LittleEndian.AppendUint64(footer, tableMagic)
	return append(file, footer...)
}

func handleValue(h blockHandle) []byte {
	return binary.AppendUvarint(binary.AppendUvarint(nil, h.off), h.length)
}

func wellFormedIndex(h []blockHandle, last [][]byte) []byte {
	var es [][]byte
	for i := range h {
		v := handleValue(h[i])
		es = append(es, entry(0, uint64(len(last[i])), uint64(len(v)), last[i], v))
	}
	return blockOf(es)
}

// indexWith is a well-formed index block but for block i's handle.
func indexWith(i int, bad blockHandle) func([]blockHandle, [][]byte) []byte {
	return func(h []blockHandle, last [][]byte) []byte {
		h = slices.Clone(h)
		h[i] = bad
		return wellFormedIndex(h, last)
	}
}

var (
	versionEntry = entry(0, 1, 8, []byte{TypeVersion}, version2)
	block0       = blockOf([][]byte{versionEntry, kvEntry(ProtoKey(6), 48, 96)})
	block1       = blockOf([][]byte{kvEntry(PortKey(80), 48), kvEntry(PortKey(443), 96)})
	lastKeys     = [][]byte{ProtoKey(6), PortKey(443)}
)

// goodTable has the version record and three keys in two data blocks.
func goodTable() assembled {
	return assembled{data: [][]byte{block0, block1}, lastKeys: lastKeys}
}

// Tables with valid checksums and every kind of impossible block: handles
// of 64 GiB, past the end of the file or over other blocks; restart arrays
// that do not fit or point inside entries; keys sharing more than the
// previous key has, out of order, or of huge length; huge values; Snappy
// blocks announcing gigabytes. Open or the lookup fails with ErrCorrupt
// naming the file: never a crash, never an empty answer without an error,
// and memory stays small.
func TestCraftedBlocks(t *testing.T) {
	huge := uint64(64 << 30)
	tests := []struct {
		name string
		edit func(a *assembled)
	}{
		{"data handle of 64 GiB", func(a *assembled) { a.index = indexWith(1, blockHandle{uint64(len(block0)) + 5, huge}) }},
		{"data handle past the end of the file", func(a *assembled) { a.index = indexWith(1, blockHandle{1 << 20, uint64(len(block1))}) }},
		{"data handle over the index block", func(a *assembled) {
			a.index = indexWith(1, blockHandle{uint64(len(block0) + len(block1) + 10 + 13), 20})
		}},
		{"data handles overlapping", func(a *assembled) { a.index = indexWith(1, blockHandle{4, uint64(len(block1))}) }},
		{"index value not a handle", func(a *assembled) {
			a.index = func(h []blockHandle, last [][]byte) []byte {
				v := append(handleValue(h[1]), 7)
				return blockOf([][]byte{entry(0, 2, uint64(len(handleValue(h[0]))), last[0], handleValue(h[0])), entry(0, 3, uint64(len(v)), last[1], v)})
			}
		}},
		{"index restart count huge", func(a *assembled) {
			a.index = func(h []blockHandle, last [][]byte) []byte {
				b := wellFormedIndex(h, last)
				binary.LittleEndian.PutUint32(b[len(b)-4:], 1<<30)
				return b
			}
		}},
		{"index shares more than the previous key", func(a *assembled) {
			a.index = func(h []blockHandle, last [][]byte) []byte {
				v0, v1 := handleValue(h[0]), handleValue(h[1])
				return blockOf([][]byte{entry(0, 2, uint64(len(v0)), last[0], v0), entry(9, 1, uint64(len(v1)), []byte{0xbb}, v1)}, 0)
			}
		}},
		{"index Snappy length of 4 GiB", func(a *assembled) {
			a.index = func([]blockHandle, [][]byte) []byte { return binary.AppendUvarint(nil, 1<<32-1) }
			a.indexType = 1
		}},
		{"data restart count zero", func(a *assembled) { a.data[1] = append(slices.Clone(block1[:len(block1)-4]), 0, 0, 0, 0) }},
		{"data restart count huge", func(a *assembled) {
			a.data[1] = binary.LittleEndian.AppendUint32(slices.Clone(block1[:len(block1)-4]), 1000)
		}},
		{"data restart inside an entry", func(a *assembled) {
			a.data[1] = blockOf([][]byte{kvEntry(PortKey(80), 48), kvEntry(PortKey(443), 96)}, 0, 3)
		}},
		{"data restart past the entries", func(a *assembled) {
			a.data[1] = blockOf([][]byte{kvEntry(PortKey(80), 48), kvEntry(PortKey(443), 96)}, 0, 200)
		}},
		{"data shares more than the previous key", func(a *assembled) {
			a.data[1] = blockOf([][]byte{kvEntry(PortKey(80), 48), entry(7, 1, 4, []byte{0xbb}, []byte{0, 0, 0, 96})}, 0)
		}},
		{"data keys out of order", func(a *assembled) {
			a.data[1] = blockOf([][]byte{kvEntry(PortKey(443), 96), kvEntry(PortKey(80), 48)})
		}},
		{"data value length huge", func(a *assembled) {
			a.data[1] = blockOf([][]byte{kvEntry(PortKey(80), 48), entry(0, 3, 1<<62, PortKey(443), []byte{0, 0, 0, 96})})
		}},
		{"data key length huge", func(a *assembled) {
			a.data[1] = blockOf([][]byte{kvEntry(PortKey(80), 48), entry(0, 1<<63, 4, PortKey(443), []byte{0, 0, 0, 96})})
		}},
		{"data value past the entries", func(a *assembled) {
			a.data[1] = blockOf([][]byte{kvEntry(PortKey(80), 48), entry(0, 3, 40, PortKey(443), []byte{0, 0, 0, 96})})
		}},
		{"data block shorter than a restart count", func(a *assembled) { a.data[1] = []byte{1, 0} }},
		{"data Snappy length of 4 GiB", func(a *assembled) {
			a.data[1] = binary.AppendUvarint(nil, 1<<32-1)
			a.dataType = []byte{0, 1}
		}},
	}
	dir := t.TempDir()
	ctx := context.Background()
	// The well-formed table answers, so the damage below is all that fails.
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, goodTable().bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	x, err := Open(good)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := x.Range(ctx, []byte{TypeProto}, []byte{0xff}); err != nil || !slices.Equal(got, []uint32{48, 96}) {
		t.Fatalf("well-formed table: %v, %v", got, err)
	}
	x.Close()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := goodTable()
			a.data = slices.Clone(a.data)
			tc.edit(&a)
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(path, a.bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			named := func(err error) bool { return errors.Is(err, ErrCorrupt) && strings.Contains(err.Error(), path) }
			x, err := Open(path)
			if err != nil {
				if !named(err) {
					t.Fatalf("Open = %v, want ErrCorrupt naming the file", err)
				}
				t.Logf("Open: %v", err)
				return
			}
			defer x.Close()
			got, err := x.Range(ctx, []byte{TypeProto}, []byte{0xff})
			if !named(err) {
				t.Fatalf("Range = %v, %v; want ErrCorrupt naming the file", got, err)
			}
			t.Logf("Range: %v", err)
		})
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("crafted tables allocated %d MB", alloc>>20)
	}
}

// The pair-identity record is found in every layout, from the file's head
// when the table is uncompressed; a table without it has none.
func TestPacketFileID(t *testing.T) {
	id := make([]uint32, 12) // 48 bytes, as positions
	var want []byte
	for i := range id {
		id[i] = 0xa0a1a2a3 + uint32(i)
		want = binary.BigEndian.AppendUint32(want, id[i])
	}
	entries := []kv{{ProtoKey(6), []uint32{48}}, {PortKey(80), []uint32{48}}}
	with := append([]kv{{packetFileKey, id}}, entries...)
	for _, to := range tableOpts {
		for _, tc := range []struct {
			name    string
			entries []kv
			want    []byte
		}{{"with", with, want}, {"without", entries, nil}} {
			t.Run(to.name+"/"+tc.name, func(t *testing.T) {
				x, rec, _ := openRecorded(t, to.o, tc.entries)
				defer x.Close()
				if got := x.PacketFileID(); !bytes.Equal(got, tc.want) {
					t.Errorf("PacketFileID = %x, want %x", got, tc.want)
				}
				uncompressed := to.o.Compression == opt.NoCompression
				for _, rd := range rec.reads {
					if uncompressed && rd[0] == 0 && rd[1] > versionHead {
						t.Errorf("read %d bytes at offset 0: the head should settle the record", rd[1])
					}
				}
			})
		}
	}
}
