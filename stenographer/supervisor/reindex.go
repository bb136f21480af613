package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/blockfile"
)

// A packet file can lose its index while its packets are on disk: the
// index write failed (index disk full) after the packet file was renamed
// into place, or stenotype was killed while the file was still hidden
// (its blocks are whole: each was written with O_DIRECT before the ring
// got it back). Deleting such a file at the next start loses packets, and
// keeping it unindexed hides them forever. So the leftover cleanup gives
// it an index with `stenodump reindex` (the same parser stenotype indexes
// with) and renames both into place; only files without a single packet
// are deleted. A file that cannot be indexed is kept and logged;
// retention counts it and deletes it, oldest first, when space is low.

// reindexer rebuilds index files. A zero value (no stenodump) cannot.
type reindexer struct {
	stenodump string // path; "" when not found
	blockSize int    // packet file block size in bytes
}

// newReindexer finds stenodump beside stenotype, else in PATH.
func newReindexer(stenotypePath string, flags []string) reindexer {
	r := reindexer{blockSize: 1 << 20}
	if kb, err := strconv.Atoi(flagValue(flags, "blocksize_kb")); err == nil && kb > 0 {
		r.blockSize = kb << 10
	}
	if p := filepath.Join(filepath.Dir(stenotypePath), "stenodump"); isExecutable(p) {
		r.stenodump = p
	} else if p, err := exec.LookPath("stenodump"); err == nil {
		r.stenodump = p
	}
	return r
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// hasPackets reports whether the packet file holds at least one packet.
func (r reindexer) hasPackets(path string) bool {
	f, err := blockfile.Open(path, r.blockSize)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.ScanInPlace().Next()
}

// index writes the index of packet file pkt to idxDir/<name>, through a
// hidden file as stenotype does, so the pair appears only when complete.
func (r reindexer) index(pkt, idxDir, name string) error {
	if r.stenodump == "" {
		return errors.New("stenodump not found beside stenotype or in PATH")
	}
	hidden := filepath.Join(idxDir, "."+name)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, r.stenodump, "reindex", "--blocksize_kb="+strconv.Itoa(r.blockSize>>10), pkt, hidden)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		os.Remove(hidden)
		return fmt.Errorf("%s reindex %s: %w: %s", r.stenodump, pkt, err, strings.TrimSpace(stderr.String()))
	}
	if err := os.Rename(hidden, filepath.Join(idxDir, name)); err != nil {
		os.Remove(hidden)
		return fmt.Errorf("reindex %s: %w", pkt, err)
	}
	return nil
}

// padToBlock extends a packet file whose length is not a block multiple
// to the next one. stenotype writes a sparse block only up to its used
// bytes and cuts the file to its block multiple when it finishes it; a
// crash between the two leaves the last block short, its missing tail a
// hole that reads as zeros once the length is restored, as every reader
// expects.
func (r reindexer) padToBlock(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("recover %s: %w", path, err)
	}
	bs := int64(r.blockSize)
	if rem := st.Size() % bs; rem != 0 {
		if err := os.Truncate(path, st.Size()-rem+bs); err != nil {
			return fmt.Errorf("recover %s: pad to a block multiple: %w", path, err)
		}
	}
	return nil
}

// unhide renames a hidden packet file into place; it fails when a file of
// that name is already there.
func unhide(dir, name string) error {
	to := filepath.Join(dir, name)
	if _, err := os.Lstat(to); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("recover %s: %s exists", filepath.Join(dir, "."+name), to)
	}
	return os.Rename(filepath.Join(dir, "."+name), to)
}
