// Package summary reads and writes summary tables: for a group of a
// thread's index files, each index key (ports, VLANs, addresses, MPLS
// labels) mapped to the set of the group's files holding it, so that a
// query learns from one table which of hundreds of files can match instead
// of opening each file's index.
//
// Stage: index files → summary tables → per query, the files that may
// hold a key. Input: index files, or summary tables to merge. Output: a
// table in LevelDB's table format (read back through indexfile's checked
// reader), and bit sets over its files.
//
// A summary only ever narrows: a file it does not list, or one whose index
// is not the one it was built from, is looked up in its own index, and a
// table that fails any check answers "maybe" for all its files. Layout
// (keys ascending, uncompressed blocks):
//
//	00 00   format: "STSM", version u32 BE = 2, file count n u32 BE (1 ≤ n ≤ MaxFiles)
//	00 01   files: n × (name u64 BE: the file's microseconds, index file size u64 BE,
//	        inode number u64 BE, status change time u64 BE: ns since the epoch),
//	        in the order of their bits, names ascending; size, inode and
//	        change time are the open index file's (fstat) when it was read
//	        (version 1 had the name and size only)
//	k       for every index key k of type ≥ 2 in any file: the files holding it,
//	        either 00 + ascending u16 BE file numbers, or 01 + a bitmap of
//	        ⌈n/8⌉ bytes (file j is bit j%8 of byte j/8), whichever is shorter
//
// Protocol keys (type 1) are left out: nearly every file holds them.
package summary

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"strconv"
	"syscall"

	"github.com/stenographer-ng/stenographer/stenographer/indexfile"
)

// Version is the layout version this package writes and reads.
const Version = 2

// MaxFiles bounds the files of one table: bit sets stay small and a
// damaged count cannot ask for much memory.
const MaxFiles = 1 << 14

// ErrCorrupt is wrapped by errors about a table that fails a check.
var ErrCorrupt = errors.New("summary: damaged summary table")

var (
	formatKey = []byte{0x00, 0x00}
	filesKey  = []byte{0x00, 0x01}
	magic     = []byte("STSM")
	// firstKey is the smallest key a table summarizes: protocol keys
	// (type 1) and the records (type 0) are not summarized.
	firstKey = []byte{indexfile.TypePort}
)

// Member is one file a table covers: its name and the identity of the
// index file it was built from, which a reader compares with the index
// file there now. Any change to a file's contents sets its change time,
// and a file put in its place is another inode (see Identity).
type Member struct {
	Name      string
	IndexSize int64
	Inode     uint64
	Ctime     int64 // status change time, ns since the epoch
}

// memberLen is the bytes of one member in the files record.
const memberLen = 32

// Identity returns the inode number and status change time of info, or
// zeros where the platform does not say (a table built then is used by
// no query: zero matches no file's inode).
func Identity(info fs.FileInfo) (ino uint64, ctime int64) {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Ino, st.Ctim.Nano()
	}
	return 0, 0
}

// Bits is a set of a table's file numbers.
type Bits []uint64

func newBits(n int) Bits { return make(Bits, (n+63)/64) }

// Has reports whether file j is in the set.
func (b Bits) Has(j int) bool { return j >= 0 && j/64 < len(b) && b[j/64]&(1<<(j%64)) != 0 }

func (b Bits) set(j int) { b[j/64] |= 1 << (j % 64) }

func (b Bits) or(c Bits) {
	for i := range b {
		b[i] |= c[i]
	}
}

func (b Bits) count() int {
	n := 0
	for _, w := range b {
		n += bits.OnesCount64(w)
	}
	return n
}

// all returns the set of files 0..n-1.
func all(n int) Bits {
	b := newBits(n)
	for j := range n {
		b.set(j)
	}
	return b
}

// Table is an open summary table. Safe for concurrent use.
type Table struct {
	x       *indexfile.File
	members []Member
}

// Open opens the summary table at path and checks its records.
func Open(path string) (*Table, error) {
	x, err := indexfile.OpenTable(path)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	t := &Table{x: x}
	if t.members, err = readMembers(x); err != nil {
		x.Close()
		return nil, err
	}
	return t, nil
}

// OpenKnown opens the table at path that an earlier Open found to have
// members and size bytes, without reading its records again (a query opens
// every table of its time range, and the file list is most of what opening
// reads). The caller checks first that the file is the one it read
// (modification time, size); the size is checked here once more.
func OpenKnown(path string, members []Member, size int64) (*Table, error) {
	x, err := indexfile.OpenTable(path)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	if x.Size() != size {
		x.Close()
		return nil, fmt.Errorf("summary: %s changed: %d bytes, %d when first read", path, x.Size(), size)
	}
	return &Table{x: x, members: members}, nil
}

func readMembers(x *indexfile.File) ([]Member, error) {
	f, err := x.Get(formatKey)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	if len(f) != 12 || !bytes.Equal(f[:4], magic) {
		return nil, fmt.Errorf("%w %s: no format record", ErrCorrupt, x.Name())
	}
	if v := binary.BigEndian.Uint32(f[4:]); v != Version {
		return nil, fmt.Errorf("%w %s: version %d, want %d", ErrCorrupt, x.Name(), v, Version)
	}
	n := binary.BigEndian.Uint32(f[8:])
	if n == 0 || n > MaxFiles {
		return nil, fmt.Errorf("%w %s: %d files", ErrCorrupt, x.Name(), n)
	}
	v, err := x.Get(filesKey)
	if err != nil {
		return nil, fmt.Errorf("summary: %w", err)
	}
	if uint64(len(v)) != memberLen*uint64(n) {
		return nil, fmt.Errorf("%w %s: file list of %d bytes for %d files", ErrCorrupt, x.Name(), len(v), n)
	}
	out := make([]Member, n)
	var prev uint64
	for j := range out {
		r := v[memberLen*j:]
		name, size := binary.BigEndian.Uint64(r), binary.BigEndian.Uint64(r[8:])
		if name <= prev || name > 1<<62 || size > 1<<40 {
			return nil, fmt.Errorf("%w %s: file %d of the list (%d, %d bytes) out of order or range", ErrCorrupt, x.Name(), j, name, size)
		}
		prev = name
		out[j] = Member{Name: strconv.FormatUint(name, 10), IndexSize: int64(size),
			Inode: binary.BigEndian.Uint64(r[16:]), Ctime: int64(binary.BigEndian.Uint64(r[24:]))}
	}
	return out, nil
}

// Members returns the files the table covers, in the order of their bits.
func (t *Table) Members() []Member { return t.members }

// Name returns the table's path.
func (t *Table) Name() string { return t.x.Name() }

// Size returns the table's size in bytes.
func (t *Table) Size() int64 { return t.x.Size() }

// BytesRead returns the bytes read from the table so far.
func (t *Table) BytesRead() int64 { return t.x.BytesRead() }

// Close releases the table.
func (t *Table) Close() error { return t.x.Close() }

// MaxRangeKeys bounds the keys one Match reads: a range wider than that
// (a /8 over a store full of addresses) answers "every file", which
// sends the query to the files' own indexes, where it is bounded.
const MaxRangeKeys = 1 << 16

// Match returns the files that may hold a key k with lo <= k <= hi: the
// union of the keys' sets, or every file for keys the table does not
// summarize (protocols) and for a range of more than MaxRangeKeys keys.
func (t *Table) Match(ctx context.Context, lo, hi []byte) (Bits, error) {
	n := len(t.members)
	if bytes.Compare(hi, firstKey) < 0 {
		return all(n), nil
	}
	out := newBits(n)
	keys := 0
	errWide := errors.New("wide")
	err := t.x.Each(ctx, lo, hi, func(k, v []byte) error {
		if keys++; keys > MaxRangeKeys {
			return errWide
		}
		return decodeInto(out, v, n, t.x.Name(), k)
	})
	switch {
	case errors.Is(err, errWide):
		return all(n), nil
	case err != nil:
		return nil, fmt.Errorf("summary: %w", err)
	}
	return out, nil
}

// Encodings of a key's set of files.
const (
	encList   = 0
	encBitmap = 1
)

// encode appends the encoding of b (over n files) to dst.
func encode(dst []byte, b Bits, n int) []byte {
	c := b.count()
	if 2*c < (n+7)/8 {
		dst = append(dst, encList)
		for j := range n {
			if b.Has(j) {
				dst = binary.BigEndian.AppendUint16(dst, uint16(j))
			}
		}
		return dst
	}
	dst = append(dst, encBitmap)
	for i := 0; i < (n+7)/8; i++ {
		dst = append(dst, byte(b[i/8]>>(8*(i%8))))
	}
	return dst
}

// decodeInto adds the files of encoded set v (over n files) to b.
func decodeInto(b Bits, v []byte, n int, name string, k []byte) error {
	bad := func(what string) error {
		return fmt.Errorf("%w %s: key %x: %s", ErrCorrupt, name, k, what)
	}
	if len(v) == 0 {
		return bad("empty value")
	}
	switch body := v[1:]; v[0] {
	case encList:
		if len(body)%2 != 0 {
			return bad("odd file list")
		}
		prev := -1
		for i := 0; i < len(body); i += 2 {
			j := int(binary.BigEndian.Uint16(body[i:]))
			if j <= prev || j >= n {
				return bad("file number out of order or range")
			}
			prev = j
			b.set(j)
		}
	case encBitmap:
		if len(body) != (n+7)/8 {
			return bad("bitmap of the wrong length")
		}
		for i, c := range body {
			if i*8+8 > n && c>>(n-i*8) != 0 {
				return bad("bits past the last file")
			}
			b[i/8] |= uint64(c) << (8 * (i % 8))
		}
	default:
		return bad("unknown encoding")
	}
	return nil
}
