// Package indexfile reads stenotype index files: one LevelDB table per
// packet file mapping a key (type byte + value) to the ascending positions
// of the packets that carry it (SPEC §4).
//
// Stage: disk → positions. Input: an index file and keys or key ranges.
// Output: sorted, duplicate-free packet positions in the partner packet file.
//
// Tables are read with goleveldb's table package, which opens one table file
// directly (levigo only opens whole databases) and reads both uncompressed
// and Snappy blocks; see DESIGN.md for the choice.
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
	"sync/atomic"

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

// File is an open index file, safe for concurrent use.
type File struct {
	name string
	f    *os.File
	read *countingReader
	t    *table.Reader
}

// countingReader counts the bytes the table reader asks for, so that
// statistics can show a lookup reads only the blocks its keys need.
type countingReader struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
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
	cr := &countingReader{r: f}
	t, err := table.NewReader(cr, st.Size(), storage.FileDesc{}, nil, nil, &opt.Options{})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w %s: %v", ErrCorrupt, name, err)
	}
	x := &File{name: name, f: f, read: cr, t: t}
	if err := x.checkVersion(); err != nil {
		x.Close()
		return nil, err
	}
	return x, nil
}

func (x *File) checkVersion() error {
	v, err := x.t.Get([]byte{TypeVersion}, nil)
	if errors.Is(err, lerrors.ErrNotFound) {
		return fmt.Errorf("%w %s: no version record", ErrVersion, x.name)
	}
	if err != nil {
		return fmt.Errorf("%w %s: %v", ErrCorrupt, x.name, err)
	}
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
	x.t.Release()
	return x.f.Close()
}

// Lookup returns the positions stored under key (nil if the key is absent).
func (x *File) Lookup(ctx context.Context, key []byte) ([]uint32, error) {
	return x.Range(ctx, key, key)
}

// Range returns the union of the positions of every key k with
// lo <= k <= hi (bytewise), sorted and without duplicates.
func (x *File) Range(ctx context.Context, lo, hi []byte) ([]uint32, error) {
	it := x.t.NewIterator(&util.Range{Start: lo}, nil)
	defer it.Release()
	var out []uint32
	lists := 0
	for it.Next() {
		if bytes.Compare(it.Key(), hi) > 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		v := it.Value()
		if len(v)%4 != 0 {
			return nil, fmt.Errorf("%w %s: key %x has a value of %d bytes", ErrCorrupt, x.name, it.Key(), len(v))
		}
		for i := 0; i < len(v); i += 4 {
			out = append(out, binary.BigEndian.Uint32(v[i:]))
		}
		lists++
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrCorrupt, x.name, err)
	}
	// One list from a well-formed file is already sorted; several lists, or
	// a file we do not trust to be well formed, are normalized here.
	if lists > 1 || !isStrictlySorted(out) {
		slices.Sort(out)
		out = slices.Compact(out)
	}
	return out, nil
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
	it := x.t.NewIterator(&util.Range{Start: []byte{TypeProto}}, nil)
	defer it.Release()
	var out []Entry
	for it.Next() {
		v := it.Value()
		if len(v)%4 != 0 {
			return nil, fmt.Errorf("%w %s: key %x has a value of %d bytes", ErrCorrupt, x.name, it.Key(), len(v))
		}
		e := Entry{Key: slices.Clone(it.Key())}
		for i := 0; i < len(v); i += 4 {
			e.Positions = append(e.Positions, binary.BigEndian.Uint32(v[i:]))
		}
		out = append(out, e)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrCorrupt, x.name, err)
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
