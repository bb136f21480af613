package indexfile

import (
	"github.com/syndtr/goleveldb/leveldb/iterator"
	"github.com/syndtr/goleveldb/leveldb/util"
)

// Iter walks a table's entries from a start key in key order, one at a
// time: what a merge of many tables needs, where Each's callback cannot
// interleave them. Not safe for concurrent use; Release it when done.
type Iter struct {
	x   *File
	it  iterator.Iterator
	err error
}

// NewIter returns an iterator over the entries with key >= start.
func (x *File) NewIter(start []byte) *Iter {
	i := &Iter{x: x}
	i.err = x.guard(func() error {
		i.it = x.t.NewIterator(&util.Range{Start: start}, nil)
		return nil
	})
	return i
}

// Next moves to the next entry; false at the end or on an error (Err).
func (i *Iter) Next() bool {
	if i.err != nil || i.it == nil {
		return false
	}
	ok := false
	i.err = i.x.guard(func() error {
		ok = i.it.Next()
		if !ok {
			return i.it.Error()
		}
		return nil
	})
	return ok && i.err == nil
}

// Key and Value are the current entry's, valid until the next call to Next.
func (i *Iter) Key() []byte   { return i.it.Key() }
func (i *Iter) Value() []byte { return i.it.Value() }

// Err is the error that ended the iteration, naming the file.
func (i *Iter) Err() error { return i.err }

// Release frees the iterator.
func (i *Iter) Release() {
	if i.it != nil {
		i.it.Release()
		i.it = nil
	}
}
