// Package indexfile reads stenotype index files: one LevelDB table per
// packet file mapping a key (type byte + value) to the ascending positions
// of the packets that carry it (SPEC §4).
//
// Stage: disk → positions. Input: an index file and keys or key ranges.
// Output: sorted, duplicate-free packet positions in the partner packet file.
//
// Tables are read with goleveldb's table package (github.com/syndtr/goleveldb
// /leveldb/table), which opens one table file from an io.ReaderAt and reads
// uncompressed and Snappy blocks; see DESIGN.md for the choice. This package
// adds what the query engine needs on top of it: a version check that reads
// only the head of the first data block, range lookups that merge a range's
// sorted lists or keep only given candidate positions (RangeWithin), a count
// of the bytes read (for --stats), the pair-identity record (key 00 01:
// the header of the packet file's first block, which stenotype writes
// after the version record), checks of every block against the file and
// of its layout before goleveldb decodes it (blocks.go), and guards that
// turn the table reader's failures on damaged files, panics included,
// into errors naming the file.
package indexfile

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/stenographer-ng/stenographer/stenographer/internal/datafile"
	lerrors "github.com/syndtr/goleveldb/leveldb/errors"
	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/storage"
	"github.com/syndtr/goleveldb/leveldb/table"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// Key type bytes.
const (
	TypeVersion byte = 0x00
	TypeProto   byte = 0x01
	TypePort    byte = 0x02
	TypeVLAN    byte = 0x03
	TypeIPv4    byte = 0x04
	TypeMPLS    byte = 0x05
	TypeIPv6    byte = 0x06
)

// MajorVersion is the only index major version this reader understands.
const MajorVersion = 2

var (
	// ErrCorrupt is wrapped by errors about malformed index contents.
	ErrCorrupt = errors.New("indexfile: corrupt index")
	// ErrVersion is wrapped when the version record is missing or unknown.
	ErrVersion = errors.New("indexfile: unsupported index version")
)

// tableOptions: block checksums verified on every read, and an iterator
// that meets a corrupt block stops with an error instead of skipping the
// block (goleveldb's default when Strict is zero, spelled out here because
// skipping would silently lose packets).
var tableOptions = opt.Options{Strict: opt.StrictBlockChecksum | opt.StrictReader}

// blockPool recycles the block buffers of every open table: a query opens
// many index files and reads a block or two from each, and without a pool
// goleveldb allocates each block afresh (about 7 times the garbage on a query
// for a rare host). goleveldb's own database always reads tables with such
// a pool. Values are decoded before the iterator moves on, so nothing here
// keeps a block buffer after goleveldb has put it back.
var blockPool = util.NewBufferPool(16 << 10)

// File is an open index file, safe for concurrent use.
type File struct {
	name string
	size int64
	// packetFileID is the pair-identity record (the packet file's first
	// block header), nil when the file has none (older or other writers).
	packetFileID []byte
	f            io.Closer // nil when the table was not opened from a path
	read         *countingReader
	t            *table.Reader
}

// countingReader counts the bytes read from the file, so that statistics
// can show a lookup reads only the blocks its keys need. It marks I/O
// errors (readError) so that they are not reported as corruption.
type countingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	if err != nil && err != io.EOF {
		err = &readError{err}
	}
	return n, err
}

// readError is an I/O error from the file, as opposed to bad contents.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// BytesRead returns how many bytes of the file have been read so far.
func (x *File) BytesRead() int64 { return x.read.n.Load() }

// Open opens the index file at name and checks its version record.
func Open(name string) (*File, error) { return openPath(name, newFile) }

// OpenTable opens any LevelDB table at name with the checks and guards of
// Open but without the index version check: other tables the daemon
// writes in the same format (summaries) read their own records with Get.
func OpenTable(name string) (*File, error) { return openPath(name, openTable) }

// openPath opens the file at name and reads it as a table with open.
func openPath(name string, open func(string, io.ReaderAt, int64) (*File, error)) (*File, error) {
	f, size, err := datafile.Open(name)
	if err != nil {
		return nil, fmt.Errorf("indexfile: %w", err)
	}
	x, err := open(name, f, size)
	if err != nil {
		f.Close()
		return nil, err
	}
	x.f = f
	return x, nil
}

// newFile opens the size-byte table r, called name in errors, and checks
// its version record.
func newFile(name string, r io.ReaderAt, size int64) (*File, error) {
	x, err := openTable(name, r, size)
	if err != nil {
		return nil, err
	}
	if err := x.checkVersion(size); err != nil {
		x.t.Release()
		return nil, err
	}
	return x, nil
}

// openTable opens the size-byte table r, called name in errors.
func openTable(name string, r io.ReaderAt, size int64) (*File, error) {
	x := &File{name: name, size: size, read: &countingReader{r: r}}
	meta, index, err := x.checkFooter(size)
	if err != nil {
		return nil, err
	}
	// Data blocks come first, then the metaindex and index blocks.
	data, err := x.readIndexBlock(index, min(meta.off, index.off))
	if err != nil {
		return nil, err
	}
	blocks := append(data, meta, index)
	if index.off < meta.off {
		blocks[len(blocks)-2], blocks[len(blocks)-1] = index, meta
	}
	err = x.guard(func() error {
		t, err := table.NewReader(&blockReader{x: x, blocks: blocks}, size, storage.FileDesc{}, nil, blockPool, &tableOptions)
		if err != nil {
			return err
		}
		x.t = t
		// NewReader keeps a bad metaindex or index block to itself until the
		// next call; a new iterator reports it without reading anything.
		it := t.NewIterator(nil, nil)
		defer it.Release()
		return it.Error()
	})
	if err != nil {
		if x.t != nil {
			x.t.Release()
		}
		return nil, err
	}
	return x, nil
}

// tableErr turns an error from the table reader into one naming the file:
// I/O errors as they are, anything else as corruption.
func (x *File) tableErr(err error) error {
	if err == nil {
		return nil
	}
	var re *readError
	if errors.As(err, &re) {
		return fmt.Errorf("indexfile: read %s: %w", x.name, re.err)
	}
	var be *blockError
	if errors.As(err, &be) {
		return fmt.Errorf("%w %s: %v", ErrCorrupt, x.name, be)
	}
	return fmt.Errorf("%w %s: %v", ErrCorrupt, x.name, err)
}

// guard runs fn, which calls the table reader, and returns its error as
// tableErr does. goleveldb trusts a block's layout once its checksum
// matches, so a damaged file (or one crafted with valid checksums) can make
// it index out of range; such a panic becomes an ErrCorrupt error too.
func (x *File) guard(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w %s: table reader failed: %v", ErrCorrupt, x.name, r)
		}
	}()
	return x.tableErr(fn())
}

// Table footer (LevelDB's table format): two block handles (metaindex,
// index; each a varint offset and a varint size) padded to 40 bytes, then
// the 8-byte magic number. Every block is followed by a 5-byte trailer.
const (
	footerLen   = 48
	trailerLen  = 5
	tableMagic  = 0xdb4775248b80fb57
	versionHead = 80 // the version record and the pair-identity record
)

// checkFooter checks that the footer's block handles lie within the file
// before goleveldb reads them, and returns them. goleveldb allocates the
// buffer a handle asks for before reading the block and checking its
// checksum, and the footer has no checksum of its own: a damaged footer
// could ask for a hundred gigabytes, which is a fatal out-of-memory error,
// not a recoverable panic. (The data block handles, in the index block,
// are checked by readIndexBlock.)
func (x *File) checkFooter(size int64) (meta, index blockHandle, err error) {
	if size < footerLen {
		return meta, index, fmt.Errorf("%w %s: file of %d bytes is too short for a table footer", ErrCorrupt, x.name, size)
	}
	var f [footerLen]byte
	if _, err := x.read.ReadAt(f[:], size-footerLen); err != nil {
		return meta, index, x.tableErr(err)
	}
	if binary.LittleEndian.Uint64(f[footerLen-8:]) != tableMagic {
		return meta, index, fmt.Errorf("%w %s: bad table magic number", ErrCorrupt, x.name)
	}
	limit := uint64(size - footerLen)
	b := f[:footerLen-8]
	for i, what := range []string{"metaindex", "index"} {
		h, n := decodeHandle(b)
		if n == 0 {
			return meta, index, fmt.Errorf("%w %s: bad %s block handle in the footer", ErrCorrupt, x.name, what)
		}
		b = b[n:]
		if h.off > limit || h.length > limit-h.off || trailerLen > limit-h.off-h.length {
			return meta, index, fmt.Errorf("%w %s: %s block (offset %d, %d bytes) outside the file's %d bytes", ErrCorrupt, x.name, what, h.off, h.length, size)
		}
		if i == 0 {
			meta = h
		} else {
			index = h
		}
	}
	return meta, index, nil
}

// checkVersion checks the version record: key 0x00, the smallest key a
// file holds, so the first entry of the first data block.
//
// Getting it through goleveldb reads and checksums that whole block, and
// in a stenotype index the first block also holds the protocol keys, with
// positions of a large share of the file's packets: hundreds of kilobytes
// per file, most of the cost of a query for a rare host. So the check
// first reads only the file's first versionHead bytes. The first data
// block starts at offset 0, and a block is a run of entries (varint shared
// key length, varint unshared key length, varint value length, key bytes,
// value). If the head is the entry shared=0, unshared=1, value length=8,
// key 0x00, the 8-byte value is the version record (major, minor: uint32
// big-endian). This holds without reading the block's compression type
// byte (in its trailer): a Snappy block starts with the varint of its
// uncompressed length, which is 0x00 only for an empty block, so a head
// 00 01 08 00 is an uncompressed block whose first key is 0x00. (A table
// without data blocks starts with its metaindex block, whose first bytes
// are never 00 01.) Any other head (a compressed block, another layout, a
// missing record) falls back to goleveldb's Get of key 0x00. The block's
// checksum is not verified here; it is when a lookup reads the block.
func (x *File) checkVersion(size int64) error {
	var head [versionHead]byte
	n, err := x.read.ReadAt(head[:min(size, versionHead)], 0)
	if err != nil && err != io.EOF {
		return x.tableErr(err)
	}
	if n >= 12 && head[0] == 0 && head[1] == 1 && head[2] == 8 && head[3] == TypeVersion {
		if err := x.checkVersionValue(head[4:12]); err != nil {
			return err
		}
		if id, known := packetFileIDAt(head[12:n]); known {
			x.packetFileID = id
			return nil
		}
		return x.getPacketFileID()
	}
	v, err := x.get([]byte{TypeVersion})
	if err != nil {
		return err
	}
	if v == nil {
		return fmt.Errorf("%w %s: no version record", ErrVersion, x.name)
	}
	if err := x.checkVersionValue(v); err != nil {
		return err
	}
	return x.getPacketFileID()
}

// packetFileKey is the key of the pair-identity record, which stenotype
// writes right after the version record: the header of the packet file's
// first block (packetFileIDLen bytes).
var packetFileKey = []byte{TypeVersion, 0x01}

const packetFileIDLen = 48

// packetFileIDAt decodes the pair-identity record from b, the bytes that
// follow the version record's entry at the start of the first block;
// known is false when b does not settle whether there is one. The entry
// shares the version key's byte, or none at a restart point.
func packetFileIDAt(b []byte) (id []byte, known bool) {
	shared, n0 := binary.Uvarint(b)
	if n0 <= 0 || shared > 1 {
		return nil, false
	}
	unshared, n1 := binary.Uvarint(b[n0:])
	if n1 <= 0 {
		return nil, false
	}
	vlen, n2 := binary.Uvarint(b[n0+n1:])
	m := n0 + n1 + n2
	if n2 <= 0 || unshared > uint64(len(b)-m) {
		return nil, false
	}
	key := append([]byte{TypeVersion}[:shared], b[m:m+int(unshared)]...)
	if !bytes.Equal(key, packetFileKey) {
		// Keys ascend and this one follows the version record: the
		// record, if any, would be here.
		return nil, bytes.Compare(key, packetFileKey) > 0
	}
	if vlen != packetFileIDLen || uint64(len(b)-m)-unshared < vlen {
		return nil, false
	}
	v := b[m+int(unshared):]
	return slices.Clone(v[:vlen]), true
}

// getPacketFileID reads the pair-identity record through goleveldb, for
// layouts the head does not settle.
func (x *File) getPacketFileID() error {
	v, err := x.get(packetFileKey)
	if err != nil {
		return err
	}
	if v != nil && len(v) != packetFileIDLen {
		return fmt.Errorf("%w %s: pair-identity record of %d bytes", ErrCorrupt, x.name, len(v))
	}
	x.packetFileID = v
	return nil
}

var liveRangeKey = []byte{TypeVersion, 0x02}

// LiveRange returns the live-range record of a delta table (the index
// stenotype publishes of a packet file it is still writing): the byte
// range [from, to) of the packet file's blocks whose positions the table
// lists. ok is false for an ordinary index.
func (x *File) LiveRange() (from, to int64, ok bool, err error) {
	v, err := x.get(liveRangeKey)
	if err != nil || v == nil {
		return 0, 0, false, err
	}
	if len(v) != 16 {
		return 0, 0, false, fmt.Errorf("%w %s: live-range record of %d bytes", ErrCorrupt, x.name, len(v))
	}
	f, t := binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
	// Positions are 32-bit: no packet file is longer.
	if f > t || t > 1<<32 {
		return 0, 0, false, fmt.Errorf("%w %s: live range [%d, %d)", ErrCorrupt, x.name, f, t)
	}
	return int64(f), int64(t), true, nil
}

// Get returns the value of key, nil when the file does not hold it.
func (x *File) Get(key []byte) ([]byte, error) { return x.get(key) }

// get returns the value of key, nil when the file does not hold it.
func (x *File) get(key []byte) ([]byte, error) {
	var v []byte
	err := x.guard(func() error {
		var err error
		v, err = x.t.Get(key, nil)
		if errors.Is(err, lerrors.ErrNotFound) {
			v, err = nil, nil
		}
		return err
	})
	return v, err
}

// PacketFileID returns the header of the first block of the packet file
// this index was written for, or nil if the index does not record it.
func (x *File) PacketFileID() []byte { return x.packetFileID }

func (x *File) checkVersionValue(v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("%w %s: version record of %d bytes", ErrVersion, x.name, len(v))
	}
	if major := binary.BigEndian.Uint32(v); major != MajorVersion {
		return fmt.Errorf("%w %s: major version %d, want %d", ErrVersion, x.name, major, MajorVersion)
	}
	return nil
}

// Stat returns the open file's status (fstat): what a caller records of
// the file it read, which a path looked up again need not be.
func (x *File) Stat() (fs.FileInfo, error) {
	st, ok := x.f.(interface{ Stat() (fs.FileInfo, error) })
	if !ok {
		return nil, fmt.Errorf("indexfile: %s: not opened from a file", x.name)
	}
	info, err := st.Stat()
	if err != nil {
		return nil, fmt.Errorf("indexfile: %w", err)
	}
	return info, nil
}

// Name returns the file's path.
func (x *File) Name() string { return x.name }

// Size returns the file's size in bytes.
func (x *File) Size() int64 { return x.size }

// MaxPositions bounds how many positions the file's values can hold in
// all: 4 bytes each.
func (x *File) MaxPositions() int { return int(x.size / 4) }

// Close releases the file.
func (x *File) Close() error {
	x.t.Release()
	if x.f == nil {
		return nil
	}
	return x.f.Close()
}

// Each calls fn for each entry with lo <= key <= hi (no upper bound when
// hi is nil), in key order, until fn returns an error, which Each returns.
// Key and value are valid only during the call.
func (x *File) Each(ctx context.Context, lo, hi []byte, fn func(k, v []byte) error) error {
	return x.each(ctx, lo, hi, fn)
}

// each calls fn for each entry with lo <= key <= hi (no upper bound when
// hi is nil), in key order, until fn returns an error. Key and value are
// valid only during the call. The goleveldb iterator reads a data block
// when it first needs one, and the range's limit (the smallest key above
// hi) keeps it from reading blocks after hi's: a lookup reads only the
// blocks that can hold its keys.
func (x *File) each(ctx context.Context, lo, hi []byte, fn func(k, v []byte) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	slice := &util.Range{Start: lo}
	if hi != nil {
		if bytes.Compare(lo, hi) > 0 {
			return nil // goleveldb refuses a reversed range
		}
		slice.Limit = append(slices.Clip(hi), 0) // the smallest key > hi
	}
	var ferr error
	err := x.guard(func() error {
		it := x.t.NewIterator(slice, nil)
		defer it.Release()
		for n := 0; it.Next(); n++ {
			k := it.Key()
			if hi != nil && bytes.Compare(k, hi) > 0 {
				break
			}
			if n > 0 {
				if ferr = ctx.Err(); ferr != nil {
					return nil
				}
			}
			if ferr = fn(k, it.Value()); ferr != nil {
				return nil
			}
			if hi != nil && bytes.Equal(k, hi) {
				// No later key is <= hi. Stopping here, not at the next
				// key, saves reading the next block when hi ends a block
				// whose index separator is hi itself.
				break
			}
		}
		return it.Error()
	})
	if ferr != nil {
		return ferr
	}
	return err
}

// ProtoKey, PortKey, VLANKey, MPLSKey and AddrKey build index keys.
func ProtoKey(p uint8) []byte { return []byte{TypeProto, p} }

// PortKey is the key of a TCP or UDP port.
func PortKey(p uint16) []byte { return []byte{TypePort, byte(p >> 8), byte(p)} }

// VLANKey is the key of a 12-bit VLAN id.
func VLANKey(v uint16) []byte { return []byte{TypeVLAN, byte(v >> 8), byte(v)} }

// MPLSKey is the key of a 20-bit MPLS label.
func MPLSKey(l uint32) []byte {
	k := []byte{TypeMPLS, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(k[1:], l)
	return k
}

// AddrKey is the key of an IPv4 or IPv6 address.
func AddrKey(a netip.Addr) []byte {
	if a.Is4() || a.Is4In6() {
		b := a.Unmap().As4()
		return append([]byte{TypeIPv4}, b[:]...)
	}
	b := a.As16()
	return append([]byte{TypeIPv6}, b[:]...)
}
