// Package datafile opens a store's packet and index files for reading.
package datafile

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrNotRegular is wrapped when a file with a data file's name is not a
// regular file (a FIFO, a device, a directory, a socket).
var ErrNotRegular = errors.New("not a regular file")

// Open opens name for reading and returns it with its size. O_NONBLOCK
// makes opening a FIFO return at once instead of waiting for a writer
// that never comes (which hung a query forever); on a regular file it
// changes nothing, as reads of regular files never block. The fstat that
// follows rejects anything that is not a regular file, so a FIFO is never
// read either.
func Open(name string) (*os.File, int64, error) {
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("fstat %s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("open %s: %w (%v)", name, ErrNotRegular, st.Mode().Type())
	}
	return f, st.Size(), nil
}
