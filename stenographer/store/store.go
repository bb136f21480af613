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
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/blockfile"
	"github.com/stenographer-ng/stenographer/stenographer/indexfile"
	"github.com/stenographer-ng/stenographer/stenographer/query"
	"github.com/stenographer-ng/stenographer/stenographer/summary"
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
	// IndexReaders bounds the index files being evaluated at once, and
	// PacketReaders the batches of packets being read at once, over every
	// query together: many broad queries then share the disks with each
	// other and with capture instead of each adding its own readers.
	// 0 means DefaultIndexReaders, DefaultPacketReaders.
	IndexReaders, PacketReaders int
	// MaxScanBytes bounds the packet data a query may read whole because
	// no indexed term bounds its negation (CheckScan); 0: no limit.
	MaxScanBytes int64
	// Summaries makes queries use the summary tables in each thread's
	// SummaryDir (summaries.go) and lets Summarize write them.
	Summaries bool
	// SummaryGroup is how many files a new summary table covers; 0 means
	// DefaultSummaryGroup.
	SummaryGroup int
	// NamesOnly makes Refresh list names without a stat per file: for a
	// one-shot query (stenoquery), to which the stats of 20,000 pairs
	// cost more than the query. Sizes are then read where a query needs
	// them (Cost, CheckScan), Files' sizes are zero, and a summary is
	// trusted for a file by the index's name and inode number alone
	// (summaryCovers).
	NamesOnly bool
	Logger    *slog.Logger
}

// Defaults of Config's reader pools: a few per query of the default
// --max_queries (16), and lookahead (8) for one query alone.
const (
	DefaultIndexReaders  = 16
	DefaultPacketReaders = 8
)

// FileInfo describes one usable file pair.
type FileInfo struct {
	Thread int
	Name   string    // decimal microseconds since the epoch
	Start  time.Time // from the name: when stenotype opened the file
	Size   int64     // packet file length in bytes (see sized)
	// Allocated is what the packet file takes on disk (st_blocks * 512):
	// less than Size when stenotype left the unused part of sparse blocks
	// as holes (a slow link). Space, retention and stats count this.
	Allocated int64
	// IndexSize is the index file's length, known with Config.Summaries
	// (see indexStat).
	IndexSize int64 `json:",omitempty"`
	// sized says Size and Allocated are known: not with Config.NamesOnly,
	// where whoever needs them asks (packetSize).
	sized bool
	// indexIno is the index file's inode number; indexStat says that it,
	// IndexSize and indexCtime come from a stat, else it is the listing's.
	// A summary table is used for the file only if it was built from this
	// index (summaryCovers).
	indexIno   uint64
	indexCtime int64
	indexStat  bool
	// cover is the file's place in a summary table, if one lists it.
	cover *coverRef
	// Live marks a file stenotype is still writing, read through its
	// delta tables (live.go). Files never lists one.
	Live bool `json:",omitempty"`
}

// Store tracks the file pairs of every thread. Safe for concurrent use.
type Store struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	files [][]FileInfo // per thread, ascending by name
	live  [][]FileInfo // per thread, the files still being written
	// liveSeq is the highest delta sequence number seen per thread/file.
	liveSeq map[string]int
	open    *openFiles
	// sums is each thread's summary tables (nil without Config.Summaries).
	sums []*threadSums
	// summarizing serializes Summarize.
	summarizing sync.Mutex
	// badSummaryInputs are index files a build could not read.
	badSummaryInputs map[summary.Member]bool
	// indexSlots and packetSlots are the reader pools (Config).
	indexSlots, packetSlots chan struct{}
}

// New returns a Store over cfg's threads; call Refresh to find files.
func New(cfg Config) *Store {
	if cfg.BlockSize == 0 {
		cfg.BlockSize = blockfile.DefaultBlockSize
	}
	if cfg.MaxOpenFiles <= 0 {
		cfg.MaxOpenFiles = 1000
	}
	if cfg.IndexReaders <= 0 {
		cfg.IndexReaders = DefaultIndexReaders
	}
	if cfg.PacketReaders <= 0 {
		cfg.PacketReaders = DefaultPacketReaders
	}
	if cfg.SummaryGroup <= 0 {
		cfg.SummaryGroup = DefaultSummaryGroup
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "store")
	return &Store{
		cfg:     cfg,
		log:     log,
		files:   make([][]FileInfo, len(cfg.Threads)),
		live:    make([][]FileInfo, len(cfg.Threads)),
		liveSeq: map[string]int{},

		badSummaryInputs: map[summary.Member]bool{},
		open:             newOpenFiles(max(cfg.MaxOpenFiles/2, 1)),

		indexSlots:  make(chan struct{}, cfg.IndexReaders),
		packetSlots: make(chan struct{}, cfg.PacketReaders),
	}
}

// Threads returns the number of threads.
func (s *Store) Threads() int { return len(s.cfg.Threads) }

// Thread returns thread i's directories.
func (s *Store) Thread(i int) Thread { return s.cfg.Threads[i] }

// ParseName returns the time a file name encodes, or false if the name is
// not a visible stenotype file name.
func ParseName(name string) (time.Time, bool) {
	us, ok := parseMicros(name)
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMicro(us), true
}

func parseMicros(name string) (int64, bool) {
	if name == "" || name[0] == '.' {
		return 0, false
	}
	us, err := strconv.ParseInt(name, 10, 64)
	if err != nil || us <= 0 {
		return 0, false
	}
	return us, true
}

// Refresh rescans every thread's directories. A pair is usable once both
// the packet file and the index file are visible; half pairs are ignored.
func (s *Store) Refresh() error {
	all := make([][]FileInfo, len(s.cfg.Threads))
	live := make([][]FileInfo, len(s.cfg.Threads))
	seqs := map[string]int{}
	for i, th := range s.cfg.Threads {
		files, l, seq, err := scanThread(i, th, !s.cfg.NamesOnly, s.cfg.Summaries)
		if err != nil {
			return err
		}
		all[i], live[i] = files, l
		for n, q := range seq {
			seqs[strconv.Itoa(i)+"/"+n] = q
		}
	}
	var sums []*threadSums
	if s.cfg.Summaries {
		sums = make([]*threadSums, len(s.cfg.Threads))
		for i, th := range s.cfg.Threads {
			sums[i] = s.loadSummaries(th, s.summaries(i))
			all[i] = annotate(all[i], sums[i])
		}
	}
	s.mu.Lock()
	s.files, s.live, s.sums = all, live, sums
	for k, q := range seqs {
		seqs[k] = max(q, s.liveSeq[k])
	}
	s.liveSeq = seqs // forgets the files no longer live
	s.mu.Unlock()
	return nil
}

// scanThread lists thread i's usable pairs, and its live files with the
// highest delta sequence number listed for each. stat asks for the files'
// sizes (a stat per packet file), indexStat for the index files' too
// (another per file), which only summaries use; without stat a file's
// sizes are unknown (FileInfo.sized) and its index known by inode number.
func scanThread(i int, th Thread, stat, indexStat bool) (files, live []FileInfo, seqs map[string]int, err error) {
	// Two directories of 20,000 names each: listed at once.
	var pl *dirList
	var perr error
	listed := make(chan struct{})
	go func() {
		defer close(listed)
		pl, perr = listDir(th.PacketsDirectory)
	}()
	il, ierr := listDir(th.IndexDirectory)
	<-listed
	defer pl.close()
	defer il.close()
	if err := cmp.Or(perr, ierr); err != nil {
		return nil, nil, nil, fmt.Errorf("store: thread %d: %w", i, err)
	}
	pkts, idx := visible(pl), visible(il)
	var out []FileInfo
	for a, b := 0, 0; a < len(pkts) && b < len(idx); {
		us := pkts[a].us
		p, x := pl.entries[pkts[a].k], il.entries[idx[b].k]
		if c := compareNamed(us, p.name, idx[b].us, x.name); c != 0 {
			if c < 0 {
				a++
			} else {
				b++
			}
			continue
		}
		a, b = a+1, b+1
		// Anything but a directory is listed, so that a FIFO or device
		// with a pair's name is reported when a query opens it (the open
		// refuses non-regular files), not skipped without a word.
		if pl.isDir(p) {
			continue
		}
		out = append(out, FileInfo{Thread: i, Name: p.name, Start: time.UnixMicro(us), indexIno: x.ino})
	}
	if stat {
		out = statPairs(pl, il, out, indexStat)
	}
	indexed := func(name string) bool {
		us, ok := parseMicros(name)
		_, found := slices.BinarySearchFunc(idx, name, func(n named, name string) int {
			return compareNamed(n.us, il.entries[n.k].name, us, name)
		})
		return ok && found
	}
	live, seqs = liveFiles(i, th, pl, il, indexed)
	return out, live, seqs, nil
}

// statWorkers stat a listing's pairs at once, statBatch pairs at a time:
// over 20,000 pairs the stats were most of a listing's time (warm, a
// system call each; cold, an inode read each, which the disk serves
// better several at a time).
const (
	statWorkers = 8
	statBatch   = 256
)

// statPairs fills in the sizes (and with indexStat the index files'
// status) of files (a pair's two files have one name), dropping the
// pairs whose packet file has gone since the listing or is a directory.
func statPairs(pl, il *dirList, files []FileInfo, indexStat bool) []FileInfo {
	gone := make([]bool, len(files))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(statWorkers, (len(files)+statBatch-1)/statBatch) {
		wg.Go(func() {
			for {
				start := int(next.Add(statBatch)) - statBatch
				if start >= len(files) {
					return
				}
				for j := start; j < min(start+statBatch, len(files)); j++ {
					f := &files[j]
					st, err := pl.stat(f.Name)
					if err != nil || st.dir {
						gone[j] = true
						continue
					}
					f.Size, f.Allocated, f.sized = st.size, st.allocated, true
					if indexStat {
						if xs, err := il.stat(f.Name); err == nil {
							f.IndexSize, f.indexIno, f.indexCtime, f.indexStat = xs.size, xs.ino, xs.ctime, true
						}
					}
				}
			}
		})
	}
	wg.Wait()
	kept := files[:0]
	for j, f := range files {
		if !gone[j] {
			kept = append(kept, f)
		}
	}
	return kept
}

// named is a visible stenotype name: the microseconds it encodes and
// its entry's place in the listing. Pointer-free, so that sorting 20,000
// of them moves 16 bytes each and no write barriers.
type named struct {
	us int64
	k  int32
}

// visible returns the entries of d that are stenotype file names, by
// time, then by name ("+5" and "5" are different files).
func visible(d *dirList) []named {
	out := make([]named, 0, len(d.entries))
	for k, e := range d.entries {
		if us, ok := parseMicros(e.name); ok {
			out = append(out, named{us, int32(k)})
		}
	}
	slices.SortFunc(out, func(a, b named) int { return compareNamed(a.us, d.entries[a.k].name, b.us, d.entries[b.k].name) })
	return out
}

func compareNamed(us int64, name string, us2 int64, name2 string) int {
	switch {
	case us < us2:
		return -1
	case us > us2:
		return 1
	}
	return strings.Compare(name, name2)
}

// packetSize returns f's packet file length, read now where the listing
// did not (NamesOnly): only a query that reads files whole needs it.
func (s *Store) packetSize(f FileInfo) int64 {
	if f.sized {
		return f.Size
	}
	pkt, _ := s.paths(f)
	info, err := os.Lstat(pkt)
	if err != nil {
		return 0 // gone: the query reports it when it opens the file
	}
	return info.Size()
}

// Files returns a snapshot of thread i's usable pairs, oldest first.
func (s *Store) Files(i int) []FileInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.files[i])
}

// queryFiles returns thread i's pairs and live files, oldest first.
func (s *Store) queryFiles(i int) []FileInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]FileInfo, 0, len(s.files[i])+len(s.live[i]))
	out = append(out, s.files[i]...)
	for _, l := range s.live[i] {
		// Usually the newest already; a renamed file can sort anywhere:
		// after the files of the same start, as a stable sort would put
		// it. (Sorting 20,000 sorted files for it was a tenth of a rare
		// query's time.)
		k := sort.Search(len(out), func(k int) bool { return out[k].Start.After(l.Start) })
		out = slices.Insert(out, k, l)
	}
	return out
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

// index is what a query reads of a pair's index: one index file, or the
// delta tables of a live file (liveIndex).
type index interface {
	query.WithinIndex
	Name() string
	PacketFileID() []byte
	BytesRead() int64
	MaxPositions() int
	LastProtocolPosition(ctx context.Context) (int64, error)
	Close() error
}

// pair is an open index and, once a query needs its packets, the packet
// file beside it: most files of a narrow query are never read.
type pair struct {
	idx     index
	pktPath string
	// altPktPath is opened when pktPath is gone: a live file's packet
	// file is renamed from PKT/.N to PKT/N before its index is written.
	altPktPath string
	// limit, unless negative, is where the packet file ends for this pair:
	// a live file's blocks beyond its index may be half written.
	limit     int64
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
		if errors.Is(err, fs.ErrNotExist) && p.altPktPath != "" {
			pkt, err = blockfile.Open(p.altPktPath, p.blockSize)
		}
		if err == nil && p.limit >= 0 {
			pkt.Limit(p.limit)
		}
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
	if f.Live {
		return s.openLive(f)
	}
	pktPath, idxPath := s.paths(f)
	return s.open.acquire(pktPath, func() (*pair, error) {
		idx, err := indexfile.Open(idxPath)
		if err != nil {
			return nil, err
		}
		return &pair{idx: idx, pktPath: pktPath, limit: -1, blockSize: s.cfg.BlockSize}, nil
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

// take waits for a slot of pool, or for ctx to end. The caller releases
// the slot by receiving from pool.
func take(ctx context.Context, pool chan struct{}) error {
	select {
	case pool <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// AllocatedBytes is the space info's file takes on disk (st_blocks * 512),
// or its length where the platform does not say.
func AllocatedBytes(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
