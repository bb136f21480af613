// Package store is the read-side view of stenotype's output: per thread, a
// packet directory and an index directory holding file pairs named by the
// microsecond they were opened (SPEC §2).
//
// Stage: directories → queryable file pairs. Input: thread directories.
// Output: the pairs usable for queries (both files visible), opened lazily
// and kept open up to a bound, and query execution over them (query.go).
package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/blockfile"
	"github.com/stenographer-ng/stenographer/stenographer/indexfile"
)

// Thread names the two directories of one stenotype thread and the
// interface it captures on (empty when the store is given none: queries
// naming an interface then match nothing of it).
type Thread struct {
	PacketsDirectory string
	IndexDirectory   string
	Interface        string `json:",omitempty"`
}

// Config configures a Store.
type Config struct {
	Threads   []Thread
	BlockSize int // packet file block size; 0 means 1 MiB
	// MaxOpenFiles bounds open file descriptors (two per open pair); 0
	// means 1000. Pairs in use by a query are never closed, so the bound
	// can be exceeded while that many pairs are being read at once.
	MaxOpenFiles int
	Logger       *slog.Logger
}

// FileInfo describes one usable file pair.
type FileInfo struct {
	Thread int
	Name   string    // decimal microseconds since the epoch
	Start  time.Time // from the name: when stenotype opened the file
	Size   int64     // packet file length in bytes
	// Allocated is what the packet file takes on disk (st_blocks * 512):
	// less than Size when stenotype left the unused part of sparse blocks
	// as holes (a slow link). Space, retention and stats count this.
	Allocated int64
}

// Store tracks the file pairs of every thread. Safe for concurrent use.
type Store struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	files [][]FileInfo // per thread, ascending by name
	open  *openFiles
}

// New returns a Store over cfg's threads; call Refresh to find files.
func New(cfg Config) *Store {
	if cfg.BlockSize == 0 {
		cfg.BlockSize = blockfile.DefaultBlockSize
	}
	if cfg.MaxOpenFiles <= 0 {
		cfg.MaxOpenFiles = 1000
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "store")
	return &Store{
		cfg:   cfg,
		log:   log,
		files: make([][]FileInfo, len(cfg.Threads)),
		open:  newOpenFiles(max(cfg.MaxOpenFiles/2, 1)),
	}
}

// Threads returns the number of threads.
func (s *Store) Threads() int { return len(s.cfg.Threads) }

// Thread returns thread i's directories.
func (s *Store) Thread(i int) Thread { return s.cfg.Threads[i] }

// ParseName returns the time a file name encodes, or false if the name is
// not a visible stenotype file name.
func ParseName(name string) (time.Time, bool) {
	if name == "" || name[0] == '.' {
		return time.Time{}, false
	}
	us, err := strconv.ParseInt(name, 10, 64)
	if err != nil || us <= 0 {
		return time.Time{}, false
	}
	return time.UnixMicro(us), true
}

// Refresh rescans every thread's directories. A pair is usable once both
// the packet file and the index file are visible; half pairs are ignored.
func (s *Store) Refresh() error {
	all := make([][]FileInfo, len(s.cfg.Threads))
	for i, th := range s.cfg.Threads {
		files, err := scanThread(i, th)
		if err != nil {
			return err
		}
		all[i] = files
	}
	s.mu.Lock()
	s.files = all
	s.mu.Unlock()
	return nil
}

func scanThread(i int, th Thread) ([]FileInfo, error) {
	pkts, err := os.ReadDir(th.PacketsDirectory)
	if err != nil {
		return nil, fmt.Errorf("store: thread %d: %w", i, err)
	}
	idx, err := os.ReadDir(th.IndexDirectory)
	if err != nil {
		return nil, fmt.Errorf("store: thread %d: %w", i, err)
	}
	indexed := make(map[string]bool, len(idx))
	for _, e := range idx {
		indexed[e.Name()] = true
	}
	var out []FileInfo
	for _, e := range pkts {
		start, ok := ParseName(e.Name())
		// Anything but a directory is listed, so that a FIFO or device
		// with a pair's name is reported when a query opens it (the open
		// refuses non-regular files), not skipped without a word.
		if !ok || !indexed[e.Name()] || e.IsDir() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		out = append(out, FileInfo{Thread: i, Name: e.Name(), Start: start, Size: info.Size(), Allocated: AllocatedBytes(info)})
	}
	slices.SortFunc(out, func(a, b FileInfo) int { return a.Start.Compare(b.Start) })
	return out, nil
}

// Files returns a snapshot of thread i's usable pairs, oldest first.
func (s *Store) Files(i int) []FileInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.files[i])
}

// has reports whether f is still in the view (Forget has not dropped it).
// Only error paths ask, so a linear search is fine.
func (s *Store) has(f FileInfo) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.files[f.Thread], func(g FileInfo) bool { return g.Name == f.Name })
}

func (s *Store) paths(f FileInfo) (pkt, idx string) {
	th := s.cfg.Threads[f.Thread]
	return th.PacketsDirectory + "/" + f.Name, th.IndexDirectory + "/" + f.Name
}

// pair is an open index file and, once a query needs its packets, the
// packet file beside it: most files of a narrow query are never read.
type pair struct {
	idx       *indexfile.File
	pktPath   string
	blockSize int
	once      sync.Once
	pkt       *blockfile.File
	pktErr    error
}

// ErrNotAPair is wrapped when a packet file and the index of the same name
// were not written together (a pair swapped or restored from elsewhere).
var ErrNotAPair = errors.New("store: packet file and index are not a pair")

// packets opens the packet file on first use and checks that it belongs
// with the index: positions from another file's index could land inside
// packets and be served as packets that never existed.
func (p *pair) packets() (*blockfile.File, error) {
	p.once.Do(func() {
		pkt, err := blockfile.Open(p.pktPath, p.blockSize)
		if err == nil {
			if err = p.checkPair(pkt); err != nil {
				pkt.Close()
				pkt = nil
			}
		}
		p.pkt, p.pktErr = pkt, err
	})
	return p.pkt, p.pktErr
}

// checkPair compares the packet file's first block header with the one
// stenotype recorded in the index (one 48-byte read). An index without
// the record (the reference's, or tests') gets the slower check of every
// position against its block's chain of packets instead.
func (p *pair) checkPair(pkt *blockfile.File) error {
	id := p.idx.PacketFileID()
	if id == nil {
		pkt.CheckChains()
		return nil
	}
	h, err := pkt.FirstBlockHeader()
	if err != nil {
		return err
	}
	if !bytes.Equal(h, id) {
		return fmt.Errorf("%w: %s does not start with the block %s was written for", ErrNotAPair, p.pktPath, p.idx.Name())
	}
	return nil
}

// close runs when no query uses the pair any more.
func (p *pair) close() {
	p.idx.Close()
	if p.pkt != nil {
		p.pkt.Close()
	}
}

// acquire opens (or reuses) f's pair. The caller must release it.
func (s *Store) acquire(f FileInfo) (*pair, func(), error) {
	pktPath, idxPath := s.paths(f)
	return s.open.acquire(pktPath, func() (*pair, error) {
		idx, err := indexfile.Open(idxPath)
		if err != nil {
			return nil, err
		}
		return &pair{idx: idx, pktPath: pktPath, blockSize: s.cfg.BlockSize}, nil
	})
}

// Forget drops a pair from the view (retention deleted it). An open
// handle stays valid for the queries using it and is closed after them.
func (s *Store) Forget(f FileInfo) {
	s.mu.Lock()
	files := s.files[f.Thread]
	if i := slices.IndexFunc(files, func(g FileInfo) bool { return g.Name == f.Name }); i >= 0 {
		s.files[f.Thread] = slices.Delete(slices.Clone(files), i, i+1)
	}
	s.mu.Unlock()
	pktPath, _ := s.paths(f)
	s.open.forget(pktPath)
}

// AllocatedBytes is the space info's file takes on disk (st_blocks * 512),
// or its length where the platform does not say.
func AllocatedBytes(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
