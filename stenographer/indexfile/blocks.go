package indexfile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"

	"github.com/golang/snappy"
)

// goleveldb trusts a block once its checksum matches: it allocates what a
// block handle or a Snappy header asks for (a crafted index with valid
// checksums and a 64 GiB data block handle was a fatal out-of-memory, not
// a recoverable panic), and it decodes entries without checking that a key
// shares no more bytes than the previous key has (it then builds keys from
// stale bytes: a silently wrong answer). So before goleveldb sees a table,
// Open reads and checks its index block and every data block handle in it
// against the file, and goleveldb reads through blockReader, which checks
// each block it reads before goleveldb decodes it.

const (
	blockTypeNone   = 0
	blockTypeSnappy = 1
	// maxSnappyRatio bounds a Snappy block's decoded length by its encoded
	// length: the densest Snappy element, a 3-byte copy of 64 bytes,
	// expands 21⅓ times.
	maxSnappyRatio = 22
)

type blockHandle struct{ off, length uint64 }

func (h blockHandle) end() uint64 { return h.off + h.length + trailerLen }

func decodeHandle(b []byte) (blockHandle, int) {
	off, n := binary.Uvarint(b)
	if n <= 0 {
		return blockHandle{}, 0
	}
	length, m := binary.Uvarint(b[n:])
	if m <= 0 {
		return blockHandle{}, 0
	}
	return blockHandle{off, length}, n + m
}

var castagnoliTable = crc32.MakeTable(crc32.Castagnoli)

// checksumOK checks a block's masked CRC-32C (LevelDB's: over the contents
// and the type byte, rotated right by 15 bits plus a constant).
func checksumOK(raw []byte) bool {
	n := len(raw) - 4
	c := crc32.Checksum(raw[:n], castagnoliTable)
	return binary.LittleEndian.Uint32(raw[n:]) == (c>>15|c<<17)+0xa282ead8
}

// snappyLenErr checks the decoded length that a Snappy block announces.
func snappyLenErr(contents []byte) error {
	n, k := binary.Uvarint(contents)
	if k <= 0 {
		return fmt.Errorf("bad Snappy header")
	}
	if n > maxSnappyRatio*uint64(len(contents)) {
		return fmt.Errorf("Snappy header claims %d bytes decoded from %d", n, len(contents))
	}
	return nil
}

// walkBlock checks the layout of an uncompressed block and calls fn for
// each entry with its whole key and its value, valid during the call. A
// block is a run of entries (varint shared key length, varint unshared key
// length, varint value length, unshared key bytes, value) followed by the
// restart offsets and their count (uint32 little-endian). Checked: the
// restart array fits and points at entries whose keys share nothing,
// every entry lies within the entries, shares no more than the previous
// key has, and has a key greater than the previous one (goleveldb
// binary-searches the restart points, so a bad restart or an unordered
// key makes lookups miss keys without an error).
func walkBlock(b []byte, fn func(key, value []byte) error) error {
	if len(b) < 4 {
		return fmt.Errorf("block of %d bytes has no restart count", len(b))
	}
	nr := binary.LittleEndian.Uint32(b[len(b)-4:])
	if nr == 0 || uint64(nr) > uint64(len(b)-4)/4 {
		return fmt.Errorf("restart count %d does not fit a block of %d bytes", nr, len(b))
	}
	end := len(b) - 4 - 4*int(nr)
	restart := func(i int) int { return int(binary.LittleEndian.Uint32(b[end+4*i:])) }
	if end == 0 && nr == 1 && restart(0) == 0 {
		return nil // an empty block, as LevelDB writes a metaindex without filter
	}
	var key []byte
	ri := 0
	for off := 0; off < end; {
		shared, n0 := binary.Uvarint(b[off:end])
		unshared, n1 := binary.Uvarint(b[off+max(n0, 0) : end])
		vlen, n2 := binary.Uvarint(b[off+max(n0, 0)+max(n1, 0) : end])
		if n0 <= 0 || n1 <= 0 || n2 <= 0 {
			return fmt.Errorf("entry at %d: bad length", off)
		}
		m := off + n0 + n1 + n2
		if unshared > uint64(end-m) || vlen > uint64(end-m)-unshared {
			return fmt.Errorf("entry at %d: key of %d and value of %d bytes run past the block's entries", off, unshared, vlen)
		}
		if shared > uint64(len(key)) {
			return fmt.Errorf("entry at %d shares %d bytes with a previous key of %d", off, shared, len(key))
		}
		suffix := b[m : m+int(unshared)]
		if off > 0 && bytes.Compare(suffix, key[shared:]) <= 0 {
			return fmt.Errorf("entry at %d: key not greater than the previous key", off)
		}
		switch {
		case ri < int(nr) && restart(ri) == off:
			if shared != 0 {
				return fmt.Errorf("entry at restart point %d shares %d bytes", off, shared)
			}
			ri++
		case ri < int(nr) && restart(ri) < off:
			return fmt.Errorf("restart offset %d is not the start of an entry", restart(ri))
		}
		key = append(key[:shared], suffix...)
		if err := fn(key, b[m+int(unshared):m+int(unshared)+int(vlen)]); err != nil {
			return err
		}
		off = m + int(unshared) + int(vlen)
	}
	if ri < int(nr) {
		return fmt.Errorf("restart offset %d is not the start of an entry", restart(ri))
	}
	return nil
}

// readIndexBlock reads the index block at h (within the file: checkFooter)
// and returns the data block handles it lists, checked to lie, in order and
// without overlap, before dataEnd (where the metaindex block starts).
func (x *File) readIndexBlock(h blockHandle, dataEnd uint64) ([]blockHandle, error) {
	raw := make([]byte, h.length+trailerLen)
	if _, err := x.read.ReadAt(raw, int64(h.off)); err != nil && err != io.EOF {
		return nil, x.tableErr(err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: index block (offset %d, %d bytes): %s", ErrCorrupt, x.name, h.off, h.length, fmt.Sprintf(format, args...))
	}
	if !checksumOK(raw) {
		return nil, bad("checksum mismatch")
	}
	contents := raw[:h.length]
	switch raw[h.length] {
	case blockTypeNone:
	case blockTypeSnappy:
		if err := snappyLenErr(contents); err != nil {
			return nil, bad("%v", err)
		}
		var err error
		if contents, err = snappy.Decode(nil, contents); err != nil {
			return nil, bad("%v", err)
		}
	default:
		return nil, bad("unknown block type %d", raw[h.length])
	}
	var out []blockHandle
	var next uint64 // where the next data block may start
	err := walkBlock(contents, func(_, v []byte) error {
		d, n := decodeHandle(v)
		if n == 0 || n != len(v) {
			return fmt.Errorf("entry %d: value %x is not a block handle", len(out), v)
		}
		if d.off < next || d.off > dataEnd || d.length > dataEnd-d.off || trailerLen > dataEnd-d.off-d.length {
			return fmt.Errorf("data block %d (offset %d, %d bytes) outside the data blocks [%d, %d)", len(out), d.off, d.length, next, dataEnd)
		}
		next = d.end()
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, bad("%v", err)
	}
	return out, nil
}

// blockReader is the io.ReaderAt goleveldb reads a table through. A read
// of a block that the index lists (or of the metaindex block) is checked
// before goleveldb sees it: an uncompressed block's layout (walkBlock), a
// Snappy block's announced length. Other reads (the footer) pass as they
// are; goleveldb verifies checksums itself.
type blockReader struct {
	x      *File
	blocks []blockHandle // ascending by offset
}

func (r *blockReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.x.read.ReadAt(p, off)
	i, found := slices.BinarySearchFunc(r.blocks, uint64(off), func(h blockHandle, o uint64) int {
		return cmpUint(h.off, o)
	})
	if !found || uint64(len(p)) != r.blocks[i].length+trailerLen || (err != nil && err != io.EOF) {
		return n, err
	}
	h := r.blocks[i]
	bad := func(format string, args ...any) error {
		return &blockError{fmt.Errorf("block at offset %d (%d bytes): %s", h.off, h.length, fmt.Sprintf(format, args...))}
	}
	if n < len(p) {
		return n, bad("only %d bytes in the file", n)
	}
	contents := p[:h.length]
	switch p[h.length] {
	case blockTypeNone:
		if err := walkBlock(contents, func(_, _ []byte) error { return nil }); err != nil {
			return n, bad("%v", err)
		}
	case blockTypeSnappy:
		// Decoded by goleveldb into a buffer of the announced length; its
		// layout is left to goleveldb (and guard), as stenotype and the
		// reference write uncompressed tables.
		if err := snappyLenErr(contents); err != nil {
			return n, bad("%v", err)
		}
	}
	return n, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// blockError is a block that blockReader refused.
type blockError struct{ err error }

func (e *blockError) Error() string { return e.err.Error() }
