// Package indexfile reads stenotype index files: one LevelDB table per
// packet file mapping a key (type byte + value) to the ascending positions
// of the packets that carry it (SPEC §4).
//
// Stage: disk → positions. Input: an index file and keys or key ranges.
// Output: sorted, duplicate-free packet positions in the partner packet file.
//
// Tables are read by this package's own reader of the LevelDB table
// format (table.go): opening a file reads its tail once (footer and index
// block together) and the first entry of its first data block (the version
// record); a lookup reads only the data blocks that can hold its keys.
package indexfile

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
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

// File is an open index file, safe for concurrent use.
type File struct {
	name  string
	f     *os.File
	read  *countingReader
	size  int64
	index block // the decoded index block; read-only after Open
}

// countingReader counts the bytes read from the file, so that statistics
// can show a lookup reads only the blocks its keys need.
type countingReader struct {
	r     io.ReaderAt
	n     atomic.Int64
	calls atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	c.calls.Add(1)
	return n, err
}

// BytesRead returns how many bytes of the file have been read so far.
func (x *File) BytesRead() int64 { return x.read.n.Load() }

// Open opens the index file at name and checks its version record.
func Open(name string) (*File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("indexfile: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("indexfile: stat %s: %w", name, err)
	}
	x, err := newFile(name, f, st.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	x.f = f
	return x, nil
}

// newFile reads the table structure of the size-byte file r.
func newFile(name string, r io.ReaderAt, size int64) (*File, error) {
	x := &File{name: name, read: &countingReader{r: r}, size: size}
	if err := x.readIndex(); err != nil {
		return nil, err
	}
	if err := x.checkVersion(); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *File) corrupt(format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", ErrCorrupt, x.name, fmt.Sprintf(format, args...))
}

// readAt reads exactly len(p) bytes at off.
func (x *File) readAt(p []byte, off int64) error {
	if _, err := x.read.ReadAt(p, off); err != nil {
		if errors.Is(err, io.EOF) {
			return x.corrupt("short read of %d bytes at offset %d (file shrank?)", len(p), off)
		}
		return fmt.Errorf("indexfile: read %s at %d: %w", x.name, off, err)
	}
	return nil
}

// readIndex reads the footer and the index block, with one read of the
// file's tail when the index block is in it.
func (x *File) readIndex() error {
	if x.size < footerSize {
		return x.corrupt("file of %d bytes is too short for a table footer", x.size)
	}
	n := min(x.size, tailRead)
	tb := getBuf(int(n))
	defer putBuf(tb)
	tail := *tb
	tailStart := x.size - n
	if err := x.readAt(tail, tailStart); err != nil {
		return err
	}
	h, err := parseFooter(tail[n-footerSize:])
	if err != nil {
		return x.corrupt("%v", err)
	}
	if err := checkHandle(h, x.size-footerSize); err != nil {
		return x.corrupt("index %v", err)
	}
	var raw []byte
	if int64(h.offset) >= tailStart {
		rel := int64(h.offset) - tailStart
		raw = tail[rel : rel+int64(h.size)+trailerSize]
	} else {
		rb := getBuf(int(h.size + trailerSize))
		defer putBuf(rb)
		raw = *rb
		if err := x.readAt(raw, int64(h.offset)); err != nil {
			return err
		}
	}
	contents, err := blockContents(raw)
	if err != nil {
		return x.corrupt("index block at %d: %v", h.offset, err)
	}
	if sameMemory(contents, raw) {
		contents = slices.Clone(contents) // raw goes back to the pool
	}
	if x.index, err = parseBlock(contents); err != nil {
		return x.corrupt("index block at %d: %v", h.offset, err)
	}
	return nil
}

// dataBlock reads, verifies and decodes the data block of index entry val.
// The block may live in a pooled buffer: the caller passes buf to putBuf
// when done with the block.
func (x *File) dataBlock(val []byte) (_ block, _ handle, buf *[]byte, _ error) {
	h, _, ok := decodeHandle(val)
	if !ok {
		return block{}, h, nil, x.corrupt("bad block handle in the index block")
	}
	if err := checkHandle(h, x.size-footerSize); err != nil {
		return block{}, h, nil, x.corrupt("data %v", err)
	}
	buf = getBuf(int(h.size + trailerSize))
	raw := *buf
	if err := x.readAt(raw, int64(h.offset)); err != nil {
		putBuf(buf)
		return block{}, h, nil, err
	}
	contents, err := blockContents(raw)
	if err != nil {
		putBuf(buf)
		return block{}, h, nil, x.corrupt("data block at %d: %v", h.offset, err)
	}
	if !sameMemory(contents, raw) { // decompressed into new memory
		putBuf(buf)
		buf = nil
	}
	b, err := parseBlock(contents)
	if err != nil {
		putBuf(buf)
		return block{}, h, nil, x.corrupt("data block at %d: %v", h.offset, err)
	}
	return b, h, buf, nil
}

// sameMemory reports whether a and b start at the same byte.
func sameMemory(a, b []byte) bool {
	return len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
}

// bufPool recycles read buffers: a query opens many index files and reads
// a block or two from each, and fresh buffers cost page faults and
// garbage collection.
var bufPool sync.Pool // of *[]byte

// maxPooled is the largest buffer kept for reuse.
const maxPooled = 4 << 20

func getBuf(n int) *[]byte {
	if p, _ := bufPool.Get().(*[]byte); p != nil && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, max(n, tailRead))
	return &b
}

// putBuf returns a buffer from getBuf; nil is ignored.
func putBuf(p *[]byte) {
	if p != nil && cap(*p) <= maxPooled {
		bufPool.Put(p)
	}
}

// versionPrefix is how much of the first data block the version check
// reads: its first entry is the version record, and the rest of that block
// (the protocol keys, with positions of a large share of all packets) can
// be hundreds of kilobytes that the check does not need.
const versionPrefix = 64

// checkVersion finds the version record (key 0x00, the smallest key, so
// the first entry of the first data block). For an uncompressed block it
// reads only the block's head and its trailer's type byte: the value is
// checked field by field, the block checksum is not (it is when a lookup
// reads the block). Anything unexpected falls back to a full, verified
// read of the block.
func (x *File) checkVersion() error {
	it := blockIter{b: &x.index}
	if !it.First() {
		if it.err != nil {
			return x.corrupt("index block: %v", it.err)
		}
		return fmt.Errorf("%w %s: no version record (empty table)", ErrVersion, x.name)
	}
	if v, ok := x.versionFast(it.val); ok {
		return x.checkVersionValue(v)
	}
	b, _, buf, err := x.dataBlock(it.val)
	if err != nil {
		return err
	}
	defer putBuf(buf)
	bi := blockIter{b: &b}
	if !bi.Seek([]byte{TypeVersion}) || !bytes.Equal(bi.key, []byte{TypeVersion}) {
		if bi.err != nil {
			return x.corrupt("data block: %v", bi.err)
		}
		return fmt.Errorf("%w %s: no version record", ErrVersion, x.name)
	}
	return x.checkVersionValue(bi.val)
}

// versionFast returns the version value when the first block is stored
// uncompressed and starts with the version record; false means "look the
// slow way", never "absent".
func (x *File) versionFast(val []byte) ([]byte, bool) {
	h, _, ok := decodeHandle(val)
	if !ok || checkHandle(h, x.size-footerSize) != nil || h.size < versionPrefix {
		return nil, false
	}
	var head [versionPrefix]byte
	var typ [1]byte
	if x.readAt(head[:], int64(h.offset)) != nil || x.readAt(typ[:], int64(h.offset+h.size)) != nil || typ[0] != noCompression {
		return nil, false
	}
	// Entry: shared 0, unshared 1, value length 8, key 0x00, 8-byte value.
	if head[0] != 0 || head[1] != 1 || head[2] != 8 || head[3] != TypeVersion {
		return nil, false
	}
	return head[4:12], true
}

func (x *File) checkVersionValue(v []byte) error {
	if len(v) != 8 {
		return fmt.Errorf("%w %s: version record of %d bytes", ErrVersion, x.name, len(v))
	}
	if major := binary.BigEndian.Uint32(v); major != MajorVersion {
		return fmt.Errorf("%w %s: major version %d, want %d", ErrVersion, x.name, major, MajorVersion)
	}
	return nil
}

// Name returns the file's path.
func (x *File) Name() string { return x.name }

// Close releases the file.
func (x *File) Close() error {
	if x.f == nil {
		return nil
	}
	return x.f.Close()
}

// Lookup returns the positions stored under key (nil if the key is absent).
func (x *File) Lookup(ctx context.Context, key []byte) ([]uint32, error) {
	return x.Range(ctx, key, key)
}

// Range returns the union of the positions of every key k with
// lo <= k <= hi (bytewise), sorted and without duplicates. It reads only
// the data blocks whose key span meets [lo, hi]: none when the index block
// shows every key is below lo.
func (x *File) Range(ctx context.Context, lo, hi []byte) ([]uint32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []uint32
	var starts []int // where each key's list begins in out
	lists := 0
	err := x.scan(lo, func(k, v []byte) (bool, error) {
		if bytes.Compare(k, hi) > 0 {
			return false, nil
		}
		starts = append(starts, len(out))
		if lists > 0 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
		}
		if len(v)%4 != 0 {
			return false, x.corrupt("key %x has a value of %d bytes", k, len(v))
		}
		out = slices.Grow(out, len(v)/4)
		for i := 0; i < len(v); i += 4 {
			out = append(out, binary.BigEndian.Uint32(v[i:]))
		}
		lists++
		return true, nil
	}, hi)
	if err != nil {
		return nil, err
	}
	return union(out, starts), nil
}

// union turns out, the concatenation of lists beginning at starts, into
// their sorted, duplicate-free union. One list of a well-formed file is
// already sorted; several sorted lists are merged pairwise (n log k, not
// a sort's n log n); an unsorted list (a damaged file) means a full sort.
func union(out []uint32, starts []int) []uint32 {
	if isStrictlySorted(out) {
		return out
	}
	runs := append(starts, len(out))
	for i := 0; i+1 < len(runs); i++ {
		if !isStrictlySorted(out[runs[i]:runs[i+1]]) {
			slices.Sort(out)
			return slices.Compact(out)
		}
	}
	buf := make([]uint32, len(out))
	for len(runs) > 2 {
		var next []int
		n := 0
		for i := 0; i+1 < len(runs); i += 2 {
			next = append(next, n)
			a := out[runs[i]:runs[i+1]]
			var b []uint32
			if i+2 < len(runs) {
				b = out[runs[i+1]:runs[i+2]]
			}
			n += mergeInto(buf[n:], a, b)
		}
		runs = append(next, n)
		out, buf = buf[:n], out[:cap(out)]
	}
	return out
}

// mergeInto writes the sorted union of the sorted, duplicate-free a and b
// to dst (room for both) and returns its length.
func mergeInto(dst, a, b []uint32) int {
	n, i, j := 0, 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			dst[n] = a[i]
			i++
		case a[i] > b[j]:
			dst[n] = b[j]
			j++
		default:
			dst[n] = a[i]
			i++
			j++
		}
		n++
	}
	n += copy(dst[n:], a[i:])
	n += copy(dst[n:], b[j:])
	return n
}

// scanBlock calls fn for the entries of one data block (from the first
// key >= lo when seek is set); false means fn asked to stop.
func (x *File) scanBlock(b *block, h handle, seek bool, lo []byte, fn func(k, v []byte) (bool, error)) (bool, error) {
	bi := blockIter{b: b}
	var more bool
	if seek {
		more = bi.Seek(lo)
	} else {
		more = bi.First()
	}
	for ; more; more = bi.Next() {
		cont, err := fn(bi.key, bi.val)
		if err != nil || !cont {
			return false, err
		}
	}
	if bi.err != nil {
		return false, x.corrupt("data block at %d: %v", h.offset, bi.err)
	}
	return true, nil
}

// scan calls fn for each entry with key >= lo, in order, until fn returns
// false or an error. When hi is not nil, scan also stops before reading a
// block whose keys all exceed hi (its index separator before it is >= hi).
func (x *File) scan(lo []byte, fn func(k, v []byte) (bool, error), hi []byte) error {
	ix := blockIter{b: &x.index}
	first := true
	for ok := ix.Seek(lo); ok; ok = ix.Next() {
		b, h, buf, err := x.dataBlock(ix.val)
		if err != nil {
			return err
		}
		cont, err := x.scanBlock(&b, h, first, lo, fn)
		putBuf(buf) // fn copied what it keeps
		if err != nil || !cont {
			return err
		}
		first = false
		// Every key of the next block is > this block's separator.
		if hi != nil && bytes.Compare(ix.key, hi) >= 0 {
			return nil
		}
	}
	if ix.err != nil {
		return x.corrupt("index block: %v", ix.err)
	}
	return nil
}

// RangeWithin returns the positions in within (sorted, duplicate-free)
// that some key k with lo <= k <= hi holds: Range(lo, hi) ∩ within,
// without building or sorting the range's whole union. An 'and' uses it
// once one side has narrowed the candidates, e.g. a net range after a port.
func (x *File) RangeWithin(ctx context.Context, lo, hi []byte, within []uint32) ([]uint32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(within) == 0 {
		return nil, nil
	}
	hit := make([]bool, len(within))
	lists := 0
	err := x.scan(lo, func(k, v []byte) (bool, error) {
		if bytes.Compare(k, hi) > 0 {
			return false, nil
		}
		if lists > 0 {
			if err := ctx.Err(); err != nil {
				return false, err
			}
		}
		if len(v)%4 != 0 {
			return false, x.corrupt("key %x has a value of %d bytes", k, len(v))
		}
		markHits(v, within, hit)
		lists++
		return true, nil
	}, hi)
	if err != nil {
		return nil, err
	}
	var out []uint32
	for i, h := range hit {
		if h {
			out = append(out, within[i])
		}
	}
	return out, nil
}

// markHits sets hit[i] for each within[i] that the big-endian position
// list v holds. A list is normally ascending, so the search resumes where
// the last one ended, galloping forward; a descent (a damaged list) starts
// the search over, so any order gives the right answer.
func markHits(v []byte, within []uint32, hit []bool) {
	j := 0
	var prev uint32
	for i := 0; i+4 <= len(v); i += 4 {
		e := binary.BigEndian.Uint32(v[i:])
		if e < prev {
			j = 0
		}
		prev = e
		if j < len(within) && within[j] < e {
			// within[j] < e: double the step until within[j+step] >= e,
			// then binary-search the last step.
			step := 1
			for j+step < len(within) && within[j+step] < e {
				j += step
				step *= 2
			}
			k, _ := slices.BinarySearch(within[j+1:min(j+step+1, len(within))], e)
			j += 1 + k
		}
		if j < len(within) && within[j] == e {
			hit[j] = true
		}
	}
}

func isStrictlySorted(p []uint32) bool {
	for i := 1; i < len(p); i++ {
		if p[i] <= p[i-1] {
			return false
		}
	}
	return true
}

// Entry is one key of an index file with its positions.
type Entry struct {
	Key       []byte
	Positions []uint32
}

// Entries returns every key (version record excluded) in order; for
// inspection tools and tests.
func (x *File) Entries() ([]Entry, error) {
	var out []Entry
	err := x.scan([]byte{TypeProto}, func(k, v []byte) (bool, error) {
		if len(v)%4 != 0 {
			return false, x.corrupt("key %x has a value of %d bytes", k, len(v))
		}
		e := Entry{Key: slices.Clone(k)}
		for i := 0; i < len(v); i += 4 {
			e.Positions = append(e.Positions, binary.BigEndian.Uint32(v[i:]))
		}
		out = append(out, e)
		return true, nil
	}, nil)
	if err != nil {
		return nil, err
	}
	return out, nil
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
