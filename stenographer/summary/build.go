package summary

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/syndtr/goleveldb/leveldb/opt"
	"github.com/syndtr/goleveldb/leveldb/table"

	"github.com/stenographer-ng/stenographer/stenographer/indexfile"
)

// IndexFile is one index file to summarize. The table records the
// identity (size, inode, change time) of the file Build opens, not of the
// one a listing saw: those are what a reader must compare with.
type IndexFile struct {
	Name string
	Path string
}

// InputError is a build's failure to read one of its inputs; Input is
// its number among them. The caller can build again without it.
type InputError struct {
	Input int
	Err   error
}

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// source is one input of a merge: an index file (one member) or a table
// (its members), its keys in order, its files numbered from off.
type source struct {
	it    *indexfile.Iter
	input int
	off   int
	n     int  // members
	index bool // every key means the one file
	name  string
}

// Build writes to path a table of the index files, in their order (names
// ascending). It reads the files' keys in one merge, holding a block of
// each file at a time, never the whole set of keys.
func Build(ctx context.Context, path string, files []IndexFile) error {
	var srcs []*source
	var open []*indexfile.File
	defer func() {
		release(srcs)
		for _, x := range open {
			x.Close()
		}
	}()
	var members []Member
	for i, f := range files {
		x, err := indexfile.Open(f.Path)
		if err != nil {
			return &InputError{i, fmt.Errorf("summary: %w", err)}
		}
		open = append(open, x)
		info, err := x.Stat()
		if err != nil {
			return &InputError{i, fmt.Errorf("summary: %w", err)}
		}
		m := Member{Name: f.Name, IndexSize: info.Size()}
		m.Inode, m.Ctime = Identity(info)
		srcs = append(srcs, &source{it: x.NewIter(firstKey), input: i, off: len(members), n: 1, index: true, name: f.Path})
		members = append(members, m)
	}
	return write(ctx, path, members, srcs)
}

// Merge writes to path one table covering the tables' members, in order:
// each table's names must all come after the previous table's.
func Merge(ctx context.Context, path string, tables []*Table) error {
	var srcs []*source
	defer func() { release(srcs) }()
	var members []Member
	for i, t := range tables {
		srcs = append(srcs, &source{it: t.x.NewIter(firstKey), input: i, off: len(members), n: len(t.members), name: t.Name()})
		members = append(members, t.members...)
	}
	return write(ctx, path, members, srcs)
}

func release(srcs []*source) {
	for _, s := range srcs {
		s.it.Release()
	}
}

// sources orders the inputs by their current key, then by input.
type sources []*source

func (h sources) Len() int { return len(h) }
func (h sources) Less(i, j int) bool {
	if c := bytes.Compare(h[i].it.Key(), h[j].it.Key()); c != 0 {
		return c < 0
	}
	return h[i].input < h[j].input
}
func (h sources) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *sources) Push(x any)   { *h = append(*h, x.(*source)) }
func (h *sources) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// next advances s; false at its end, with an error if it failed.
func (s *source) next() (bool, error) {
	if s.it.Next() {
		return true, nil
	}
	if err := s.it.Err(); err != nil {
		return false, &InputError{s.input, fmt.Errorf("summary: reading %s: %w", s.name, err)}
	}
	return false, nil
}

// write merges srcs into a table over members at path: written under a
// hidden temporary name, synced, then renamed into place, so a reader
// sees a whole table or none.
func write(ctx context.Context, path string, members []Member, srcs []*source) (err error) {
	n := len(members)
	if n == 0 || n > MaxFiles {
		return fmt.Errorf("summary: %s: %d files, want 1 to %d", path, n, MaxFiles)
	}
	var list []byte
	prev := uint64(0)
	for _, m := range members {
		name, perr := strconv.ParseUint(m.Name, 10, 64)
		if perr != nil || name <= prev {
			return fmt.Errorf("summary: %s: file %q out of order or not a file name", path, m.Name)
		}
		prev = name
		list = binary.BigEndian.AppendUint64(list, name)
		list = binary.BigEndian.AppendUint64(list, uint64(m.IndexSize))
		list = binary.BigEndian.AppendUint64(list, m.Inode)
		list = binary.BigEndian.AppendUint64(list, uint64(m.Ctime))
	}
	// A name of its own (O_EXCL): a daemon and stenoquery --summarize
	// building the same table at once each write their own file, and
	// either rename leaves a whole table.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	tmp := f.Name()
	if err = f.Chmod(0o640); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("summary: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := table.NewWriter(f, &opt.Options{Compression: opt.NoCompression})
	format := append(append([]byte{}, magic...), 0, 0, 0, Version)
	format = binary.BigEndian.AppendUint32(format, uint32(n))
	if err = w.Append(formatKey, format); err == nil {
		err = w.Append(filesKey, list)
	}
	if err != nil {
		return fmt.Errorf("summary: writing %s: %w", tmp, err)
	}
	if err = mergeKeys(ctx, w, n, srcs); err != nil {
		return err
	}
	if err = w.Close(); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("summary: writing %s: %w", path, err)
	}
	return nil
}

// mergeKeys appends every key of srcs with the union of the files holding
// it, in key order.
func mergeKeys(ctx context.Context, w *table.Writer, n int, srcs []*source) error {
	h := make(sources, 0, len(srcs))
	for _, s := range srcs {
		ok, err := s.next()
		if err != nil {
			return err
		}
		if ok {
			h = append(h, s)
		}
	}
	heap.Init(&h)
	var key, val []byte
	cur := newBits(n)
	for count := 0; len(h) > 0; count++ {
		if count%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if count > 0 && bytes.Compare(h[0].it.Key(), key) <= 0 {
			// Only a damaged input goes back: its keys are out of order.
			return &InputError{h[0].input, fmt.Errorf("%w %s: key %x out of order", ErrCorrupt, h[0].name, h[0].it.Key())}
		}
		key = append(key[:0], h[0].it.Key()...)
		clear(cur)
		for len(h) > 0 && bytes.Equal(h[0].it.Key(), key) {
			s := h[0]
			if s.index {
				cur.set(s.off)
			} else {
				part := newBits(s.n)
				if err := decodeInto(part, s.it.Value(), s.n, s.name, key); err != nil {
					return &InputError{s.input, err}
				}
				for j := range s.n {
					if part.Has(j) {
						cur.set(s.off + j)
					}
				}
			}
			ok, err := s.next()
			switch {
			case err != nil:
				return err
			case ok:
				heap.Fix(&h, 0)
			default:
				heap.Pop(&h)
			}
		}
		val = encode(val[:0], cur, n)
		if err := w.Append(key, val); err != nil {
			return fmt.Errorf("summary: %w", err)
		}
	}
	return nil
}

// AsInputError is errors.As for an *InputError.
func AsInputError(err error) (*InputError, bool) {
	var ie *InputError
	ok := errors.As(err, &ie)
	return ie, ok
}
