package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/stenographer-ng/stenographer/stenographer/indexfile"
)

// Live files. While stenotype writes packet file PKT/.N it publishes the
// index of the blocks written so far as delta tables IDX/.N.d<seq>
// (stenotype/write/index_thread.h): each holds a live-range record, the
// byte range [from, to) of the blocks it lists; a whole one starts at 0 and
// the deltas after it continue where the one before ended. A query reads
// the newest whole table and the deltas after it, and the packet file only
// up to the end of that chain: every block below it was on disk when the
// table appeared. The file stays live until its full index IDX/N is
// visible (its packet file may be PKT/N meanwhile); then it is an ordinary
// pair.
//
// Deltas change every second, so live pairs are opened for each query and
// never kept, and their tables are found by probing names upward from the
// highest sequence number seen rather than by listing the index directory,
// which can hold tens of thousands of files.

// Bounds against a directory a hostile writer filled with deltas: the
// probes one open makes, and the tables it reads.
const (
	maxDeltaProbes = 4096
	maxDeltaTables = 256
	// maxDeltaGap bounds the names probed past a removed table; the
	// periodic scan finds anything further.
	maxDeltaGap = 1024
)

// parseDeltaName splits ".N.d<seq>" into N and seq.
func parseDeltaName(name string) (file string, seq int, ok bool) {
	if !strings.HasPrefix(name, ".") {
		return "", 0, false
	}
	file, s, found := strings.Cut(name[1:], ".d")
	if !found {
		return "", 0, false
	}
	if _, ok := ParseName(file); !ok {
		return "", 0, false
	}
	seq, err := strconv.Atoi(s)
	if err != nil || seq <= 0 || strconv.Itoa(seq) != s {
		return "", 0, false
	}
	return file, seq, true
}

// liveFiles finds thread i's live files in its directory listings: a
// hidden packet file, or delta tables, and no visible index. It returns
// them with the highest delta sequence number listed for each.
func liveFiles(i int, th Thread, pkts, idx *dirList, indexed func(string) bool) ([]FileInfo, map[string]int) {
	seqs := map[string]int{}
	for _, e := range idx.entries {
		if n, seq, ok := parseDeltaName(e.name); ok && !indexed(n) {
			seqs[n] = max(seqs[n], seq)
		}
	}
	names := map[string]*dirEntry{}
	for _, e := range pkts.entries {
		if n := strings.TrimPrefix(e.name, "."); n != e.name && !indexed(n) {
			if _, ok := ParseName(n); ok {
				names[n] = &e
			}
		}
	}
	for n := range seqs {
		if _, ok := names[n]; !ok {
			names[n] = nil // the packet file is being renamed, or already is PKT/N
		}
	}
	var out []FileInfo
	for n, e := range names {
		start, _ := ParseName(n)
		f := FileInfo{Thread: i, Name: n, Start: start, Live: true, sized: true}
		if e != nil {
			if st, err := pkts.stat(e.name); err == nil && !st.dir {
				f.Size, f.Allocated = st.size, st.allocated
			}
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b FileInfo) int { return a.Start.Compare(b.Start) })
	return out, seqs
}

// liveTable is one delta table of a live file.
type liveTable struct {
	x        *indexfile.File
	from, to int64
}

// liveIndex reads a live file's chain of delta tables as one index: each
// table answers for its own range of the packet file only, so the
// positions stay ascending and duplicate-free whatever a table holds.
type liveIndex struct {
	name   string
	tables []liveTable // ascending, contiguous from 0
}

func (l *liveIndex) end() int64 {
	if len(l.tables) == 0 {
		return 0
	}
	return l.tables[len(l.tables)-1].to
}

func (l *liveIndex) Name() string { return l.name }

func (l *liveIndex) PacketFileID() []byte {
	if len(l.tables) == 0 {
		return nil
	}
	return l.tables[0].x.PacketFileID()
}

func (l *liveIndex) BytesRead() int64 {
	var n int64
	for _, t := range l.tables {
		n += t.x.BytesRead()
	}
	return n
}

func (l *liveIndex) MaxPositions() int {
	n := 0
	for _, t := range l.tables {
		n += t.x.MaxPositions()
	}
	return n
}

func (l *liveIndex) Close() error {
	var errs []error
	for _, t := range l.tables {
		errs = append(errs, t.x.Close())
	}
	return errors.Join(errs...)
}

// collect runs lookup on every table and keeps what falls in its range.
func (l *liveIndex) collect(lookup func(x *indexfile.File) ([]uint32, error)) ([]uint32, error) {
	var out []uint32
	for _, t := range l.tables {
		p, err := lookup(t.x)
		if err != nil {
			return nil, err
		}
		for _, v := range p {
			if int64(v) >= t.from && int64(v) < t.to {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

func (l *liveIndex) Range(ctx context.Context, lo, hi []byte) ([]uint32, error) {
	return l.collect(func(x *indexfile.File) ([]uint32, error) { return x.Range(ctx, lo, hi) })
}

func (l *liveIndex) RangeWithin(ctx context.Context, lo, hi []byte, within []uint32) ([]uint32, error) {
	return l.collect(func(x *indexfile.File) ([]uint32, error) { return x.RangeWithin(ctx, lo, hi, within) })
}

func (l *liveIndex) LastProtocolPosition(ctx context.Context) (int64, error) {
	last := int64(-1)
	for _, t := range l.tables {
		p, err := t.x.LastProtocolPosition(ctx)
		if err != nil {
			return 0, err
		}
		if p < t.to {
			last = max(last, p)
		}
	}
	return last, nil
}

// errDeltasMoved: a table of the chain was removed while it was being
// opened (a whole one replaced it, or the full index did).
var errDeltasMoved = errors.New("store: delta tables replaced while opening")

// openLive opens f, a live file, for one query. When its full index has
// appeared since the last scan, it is opened as the ordinary pair.
func (s *Store) openLive(f FileInfo) (*pair, func(), error) {
	th := s.cfg.Threads[f.Thread]
	for attempt := 0; ; attempt++ {
		if _, err := os.Stat(th.IndexDirectory + "/" + f.Name); err == nil {
			g := f
			g.Live = false
			return s.acquire(g)
		}
		idx, err := s.openDeltas(th, f)
		if errors.Is(err, errDeltasMoved) && attempt < 3 {
			continue
		}
		if errors.Is(err, errDeltasMoved) {
			idx, err = &liveIndex{name: th.IndexDirectory + "/." + f.Name}, nil
		}
		if err != nil {
			return nil, nil, err
		}
		pkt := th.PacketsDirectory + "/." + f.Name
		p := &pair{idx: idx, pktPath: pkt, altPktPath: th.PacketsDirectory + "/" + f.Name, limit: idx.end(), blockSize: s.cfg.BlockSize}
		return p, p.close, nil
	}
}

// openDeltas opens the chain of f's delta tables: the newest whole one
// and the deltas after it.
func (s *Store) openDeltas(th Thread, f FileInfo) (*liveIndex, error) {
	prefix := th.IndexDirectory + "/." + f.Name + ".d"
	key := strconv.Itoa(f.Thread) + "/" + f.Name
	s.mu.Lock()
	top := s.liveSeq[key]
	s.mu.Unlock()
	exists := func(seq int) bool {
		_, err := os.Lstat(prefix + strconv.Itoa(seq))
		return err == nil
	}
	probes := 0
	up := func() {
		for ; probes < maxDeltaProbes && exists(top+1); probes++ {
			top++
		}
	}
	up()
	if top > 0 && !exists(top) {
		// A whole table replaced the newest one seen: it and the deltas
		// after it are further on, past the removed ones (at most those
		// written since the last scan listed the directory).
		for gap := 1; gap <= maxDeltaGap; gap++ {
			if exists(top + gap) {
				top += gap
				up()
				break
			}
		}
	}
	s.mu.Lock()
	s.liveSeq[key] = max(s.liveSeq[key], top)
	s.mu.Unlock()

	l := &liveIndex{name: prefix + strconv.Itoa(top)}
	var chain []liveTable // newest first
	fail := func(err error) (*liveIndex, error) {
		for _, t := range chain {
			t.x.Close()
		}
		return nil, err
	}
	for seq := top; seq >= 1 && len(chain) < maxDeltaTables; seq-- {
		x, err := indexfile.Open(prefix + strconv.Itoa(seq))
		if errors.Is(err, fs.ErrNotExist) {
			return fail(errDeltasMoved)
		}
		if err != nil {
			return fail(err)
		}
		from, to, ok, err := x.LiveRange()
		if err == nil && !ok {
			err = fmt.Errorf("%w %s: a delta table without a live range", indexfile.ErrCorrupt, x.Name())
		}
		if err != nil {
			x.Close()
			return fail(err)
		}
		chain = append(chain, liveTable{x: x, from: from, to: to})
		if from == 0 {
			break
		}
	}
	slices.Reverse(chain)
	// Only a chain from 0 without gaps covers its range: anything else
	// serves the part that does.
	n := 0
	for n < len(chain) && chain[n].from == l.end() {
		if n > 0 && !slices.Equal(chain[n].x.PacketFileID(), chain[0].x.PacketFileID()) {
			return fail(fmt.Errorf("%w: delta tables %s and %s describe different packet files", ErrNotAPair, chain[0].x.Name(), chain[n].x.Name()))
		}
		l.tables = chain[:n+1]
		n++
	}
	for _, t := range chain[n:] {
		t.x.Close()
	}
	return l, nil
}
