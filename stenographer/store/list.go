package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listing a thread's directories. A store of 20,000 pairs is 40,000
// names: os.ReadDir sorts them and makes an object of each, about three
// times the cost of the getdents calls themselves, and a stat per name
// costs more than the listing (each stat of a cold store reads an inode).
// So a listing is getdents into one buffer, and the caller stats only
// what it needs, relative to the directory's descriptor.

// dirEntry is one name of a listing, with what getdents tells for free.
type dirEntry struct {
	name string
	ino  uint64
	typ  uint8 // unix.DT_*; DT_UNKNOWN where the file system does not say
}

// dirList is a directory's names and an open descriptor to stat them by.
type dirList struct {
	path    string
	fd      int
	entries []dirEntry
}

// listBuf is the getdents buffer: a directory of 20,000 stenotype names
// is about 800 KB of records, read in four calls.
const listBuf = 256 << 10

func listDir(path string) (*dirList, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	d := &dirList{path: path, fd: fd}
	buf := make([]byte, listBuf)
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			d.close()
			return nil, &os.PathError{Op: "getdents", Path: path, Err: err}
		}
		if n <= 0 {
			return d, nil
		}
		if err := d.parse(buf[:n]); err != nil {
			d.close()
			return nil, err
		}
	}
}

// parse appends the linux_dirent64 records of b: ino u64, off s64,
// reclen u16, type u8, then the name, NUL-terminated. The names are
// substrings of one copy of b: one allocation per call, not per name.
func (d *dirList) parse(b []byte) error {
	all := string(b)
	for off := 0; off < len(all); {
		r := all[off:]
		if len(r) < 20 {
			return fmt.Errorf("store: listing %s: short directory record", d.path)
		}
		reclen := int(binary.NativeEndian.Uint16(b[off+16:]))
		if reclen < 20 || reclen > len(r) {
			return fmt.Errorf("store: listing %s: directory record of %d bytes", d.path, reclen)
		}
		name := r[19:reclen]
		if k := strings.IndexByte(name, 0); k >= 0 {
			name = name[:k]
		}
		if name != "." && name != ".." {
			d.entries = append(d.entries, dirEntry{name: name, ino: binary.NativeEndian.Uint64(b[off:]), typ: r[18]})
		}
		off += reclen
	}
	return nil
}

// fileStat is what the store uses of a file's status.
type fileStat struct {
	size, allocated int64
	ino             uint64
	ctime           int64 // ns since the epoch
	dir             bool
}

// stat is lstat of name in the directory.
func (d *dirList) stat(name string) (fileStat, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return fileStat{}, &os.PathError{Op: "lstat", Path: d.path + "/" + name, Err: err}
		}
		break
	}
	return fileStat{size: st.Size, allocated: st.Blocks * 512, ino: st.Ino,
		ctime: st.Ctim.Nano(), dir: st.Mode&unix.S_IFMT == unix.S_IFDIR}, nil
}

// isDir reports whether e is a directory, asking the file system only
// where the listing did not say.
func (d *dirList) isDir(e dirEntry) bool {
	if e.typ != unix.DT_UNKNOWN {
		return e.typ == unix.DT_DIR
	}
	st, err := d.stat(e.name)
	return err == nil && st.dir
}

func (d *dirList) close() {
	if d != nil && d.fd >= 0 {
		unix.Close(d.fd)
		d.fd = -1
	}
}
