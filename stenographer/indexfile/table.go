package indexfile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/golang/snappy"
)

// LevelDB table layout (the format of leveldb's table/format.cc, written
// here from its documentation):
//
//	data block 0 | ... | data block n-1 | meta blocks | metaindex | index | footer
//
// Every block is followed by a 5-byte trailer: a compression type byte and
// the masked CRC-32C of the block contents and that byte. The 48-byte footer
// holds the metaindex and index block handles (varint offset, varint size)
// padded to 40 bytes, then the 8-byte magic number. The index block maps,
// for each data block, a key >= its last key and < the next block's first
// key to the block's handle. A block is a run of prefix-compressed entries
// (varint shared, varint unshared, varint value length, key suffix, value),
// an array of uint32 restart offsets where an entry has no shared prefix,
// and the uint32 number of restarts.
const (
	footerSize     = 48
	trailerSize    = 5
	tableMagic     = 0xdb4775248b80fb57
	noCompression  = 0
	snappyCompress = 1
	// tailRead is how much of a file's end Open reads at once: the footer
	// and, for all but huge files, the whole index block with it.
	tailRead = 16 << 10
	// maxBlock bounds a block handle's size before anything is allocated.
	maxBlock = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// unmaskCRC undoes LevelDB's CRC masking.
func unmaskCRC(m uint32) uint32 {
	r := m - 0xa282ead8
	return r>>17 | r<<15
}

// handle locates a block (without its trailer) in the file.
type handle struct {
	offset, size uint64
}

// decodeHandle reads a handle from the front of b and returns the rest.
func decodeHandle(b []byte) (handle, []byte, bool) {
	off, n := binary.Uvarint(b)
	if n <= 0 {
		return handle{}, nil, false
	}
	size, m := binary.Uvarint(b[n:])
	if m <= 0 {
		return handle{}, nil, false
	}
	return handle{off, size}, b[n+m:], true
}

// parseFooter returns the index block handle from a table's last 48 bytes.
func parseFooter(f []byte) (handle, error) {
	if binary.LittleEndian.Uint64(f[footerSize-8:]) != tableMagic {
		return handle{}, fmt.Errorf("bad table magic number")
	}
	_, rest, ok := decodeHandle(f[:footerSize-8]) // metaindex: unused (stenotype writes no filter)
	if !ok {
		return handle{}, fmt.Errorf("bad metaindex handle in footer")
	}
	idx, _, ok := decodeHandle(rest)
	if !ok {
		return handle{}, fmt.Errorf("bad index handle in footer")
	}
	return idx, nil
}

// checkHandle verifies that h and its trailer lie within the first limit
// bytes of the file.
func checkHandle(h handle, limit int64) error {
	if h.size > maxBlock || h.offset > uint64(limit) || h.size+trailerSize > uint64(limit)-h.offset {
		return fmt.Errorf("block handle (offset %d, size %d) outside the file's %d bytes", h.offset, h.size, limit)
	}
	return nil
}

// blockContents verifies a block read with its trailer and returns its
// contents, decompressed.
func blockContents(raw []byte) ([]byte, error) {
	n := len(raw) - trailerSize
	data, typ := raw[:n], raw[n]
	want := unmaskCRC(binary.LittleEndian.Uint32(raw[n+1:]))
	if got := crc32.Update(crc32.Checksum(data, castagnoli), castagnoli, raw[n:n+1]); got != want {
		return nil, fmt.Errorf("block checksum mismatch (crc32c %#08x, trailer says %#08x)", got, want)
	}
	switch typ {
	case noCompression:
		return data, nil
	case snappyCompress:
		out, err := snappy.Decode(nil, data)
		if err != nil {
			return nil, fmt.Errorf("snappy block: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown block compression type %d", typ)
}

// block is the decoded layout of one block's contents.
type block struct {
	data     []byte // the entries
	restarts []byte // numRestarts little-endian uint32 offsets into data
}

func parseBlock(b []byte) (block, error) {
	if len(b) < 4 {
		return block{}, fmt.Errorf("block of %d bytes", len(b))
	}
	n := uint64(binary.LittleEndian.Uint32(b[len(b)-4:]))
	if (n+1)*4 > uint64(len(b)) {
		return block{}, fmt.Errorf("block of %d bytes claims %d restart points", len(b), n)
	}
	end := len(b) - int(n+1)*4
	return block{data: b[:end], restarts: b[end : len(b)-4]}, nil
}

func (b *block) numRestarts() int { return len(b.restarts) / 4 }

func (b *block) restart(i int) int {
	return int(binary.LittleEndian.Uint32(b.restarts[4*i:]))
}

// blockIter walks a block's entries in order. Key and val alias the block
// (key is rebuilt in a buffer of the iterator's own) and are valid until
// the next move.
type blockIter struct {
	b        *block
	next     int // offset of the entry after the current one
	key, val []byte
	valid    bool
	err      error
}

// entry decodes the entry at off, which extends the key in it.key.
func (it *blockIter) entry(off int) bool {
	d := it.b.data
	if off >= len(d) {
		it.valid = false
		return false
	}
	shared, n1 := binary.Uvarint(d[off:])
	if n1 <= 0 {
		return it.fail(off, "bad shared length")
	}
	unshared, n2 := binary.Uvarint(d[off+n1:])
	if n2 <= 0 {
		return it.fail(off, "bad key length")
	}
	vlen, n3 := binary.Uvarint(d[off+n1+n2:])
	if n3 <= 0 {
		return it.fail(off, "bad value length")
	}
	p := uint64(off + n1 + n2 + n3)
	if shared > uint64(len(it.key)) || unshared > uint64(len(d))-p || vlen > uint64(len(d))-p-unshared {
		return it.fail(off, fmt.Sprintf("entry (shared %d, key %d, value %d bytes) outside the block", shared, unshared, vlen))
	}
	it.key = append(it.key[:shared], d[p:p+unshared]...)
	it.val = d[p+unshared : p+unshared+vlen]
	it.next = int(p + unshared + vlen)
	it.valid = true
	return true
}

func (it *blockIter) fail(off int, msg string) bool {
	it.err = fmt.Errorf("block entry at %d: %s", off, msg)
	it.valid = false
	return false
}

// Next moves to the following entry.
func (it *blockIter) Next() bool {
	if !it.valid {
		return false
	}
	return it.entry(it.next)
}

// First moves to the block's first entry.
func (it *blockIter) First() bool {
	it.key = it.key[:0]
	return it.entry(0)
}

// Seek moves to the first entry whose key is >= target: a binary search
// over the restart points, then a scan of at most one restart interval.
func (it *blockIter) Seek(target []byte) bool {
	lo, hi := 0, it.b.numRestarts()-1 // find the last restart with key < target
	for lo < hi {
		mid := (lo + hi + 1) / 2
		k, ok := it.restartKey(mid)
		if !ok {
			return false
		}
		if bytes.Compare(k, target) < 0 {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	start := 0
	if it.b.numRestarts() > 0 {
		start = it.b.restart(lo)
		if start > len(it.b.data) {
			return it.fail(start, "restart point outside the block")
		}
	}
	it.key = it.key[:0]
	for ok := it.entry(start); ok; ok = it.Next() {
		if bytes.Compare(it.key, target) >= 0 {
			return true
		}
	}
	return false
}

// restartKey decodes the key at restart point i, which shares nothing.
func (it *blockIter) restartKey(i int) ([]byte, bool) {
	off := it.b.restart(i)
	if off > len(it.b.data) {
		return nil, it.fail(off, "restart point outside the block")
	}
	it.key = it.key[:0]
	if !it.entry(off) {
		if it.err == nil {
			it.fail(off, "restart point at the end of the block")
		}
		return nil, false
	}
	return it.key, true // decoded from an empty key: shared was 0
}
