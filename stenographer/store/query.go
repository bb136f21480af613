package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/blockfile"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/query"
)

// StartSlack is how much earlier than its file's name a packet may have
// been captured: packets wait in the kernel ring (up to the block timeout,
// longer under backlog) before the block holding them is written, possibly
// into a file opened after they arrived.
const StartSlack = 5 * time.Minute

// Result summarizes one query.
type Result struct {
	Packets      int64 // packets written
	Bytes        int64 // PCAP bytes written
	FilesOpened  int   // file pairs whose index was consulted
	FilesSkipped int   // file pairs pruned by time without opening
	// FilesSummarySkipped file pairs were ruled out by a summary table
	// without opening their index; SummaryBytes is what the tables gave.
	FilesSummarySkipped int
	SummaryBytes        int64
	Lookups             int   // index range lookups
	IndexBytes          int64 // bytes the key lookups read from index files (opening an index reads its footer and block index once more)
	Truncated           bool  // a limit stopped the result early
	FilesAgedOut        int   // file pairs deleted by retention while the query ran
	// Errors lists files that could not be read completely; the result has
	// everything else. A query is not failed for one bad file.
	Errors []error
}

// Query writes every packet matching q, across all threads, to w in
// timestamp order, each with the index in Interfaces of the interface
// its thread captures on. It stops early at w's limits
// (Result.Truncated) or when ctx is cancelled (returning ctx's error).
// A query CheckScan refuses writes nothing.
func (s *Store) Query(ctx context.Context, q query.Node, w pcap.Output) (*Result, error) {
	res := &Result{}
	if err := s.CheckScan(q); err != nil {
		return res, err
	}
	var srcs []pcap.Source
	ifaces := s.Interfaces()
	for i, th := range s.cfg.Threads {
		t := &threadSource{ctx: ctx, s: s, q: q, thread: i, iface: slices.Index(ifaces, th.Interface),
			files: s.queryFiles(i), res: res, sums: s.newSummaryView(ctx, i)}
		defer t.shutdown()
		srcs = append(srcs, t)
	}
	m := pcap.NewMerge(srcs...)
write:
	for b := m.NextBatch(); b != nil; b = m.NextBatch() {
		for i := range b {
			p := &b[i]
			if err := w.WriteFrom(p.Interface, p.Timestamp, p.WireLen, p.Data); err != nil {
				if errors.Is(err, pcap.ErrLimit) {
					res.Truncated = true
					break write
				}
				return res, fmt.Errorf("store: writing result: %w", err)
			}
		}
	}
	if err := m.Err(); err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if err := w.Flush(); err != nil {
		return res, fmt.Errorf("store: writing result: %w", err)
	}
	res.Packets, res.Bytes = w.Packets(), w.Bytes()
	return res, nil
}

// span is what is known of the packets of files[j] of thread i before
// its index is read: from StartSlack before its name to the next file's
// name, and the thread's interface.
func (s *Store) span(i int, files []FileInfo, j int) query.Span {
	span := query.Span{Min: files[j].Start.Add(-StartSlack), Interface: s.cfg.Threads[i].Interface}
	if j+1 < len(files) {
		span.Max = files[j+1].Start
	}
	return span
}

// Interfaces returns the threads' capture interfaces, each once, in the
// order they first appear: the interface numbers of Query's output.
func (s *Store) Interfaces() []string {
	var out []string
	for _, th := range s.cfg.Threads {
		if !slices.Contains(out, th.Interface) {
			out = append(out, th.Interface)
		}
	}
	return out
}

// batchSize bounds how many packets a thread reads ahead of the merge: a
// whole 1 MiB block of small packets, so a block is read about once.
// batchBytes bounds the bytes read for one batch (the arena's use) before
// its last run of packets (at most a block): small, so that one arena is
// touched once and reused by every batch.
const (
	batchSize  = 4096
	batchBytes = 1 << 20
)

// threadSource yields one thread's matching packets in file order. It
// reads a batch of packets at a time so that a block is read once for all
// the matches it holds.
type threadSource struct {
	ctx    context.Context
	s      *Store
	q      query.Node
	thread int
	iface  int // index of its interface in Store.Interfaces
	files  []FileInfo
	res    *Result
	sums   *summaryView // nil without summaries

	next  int // index of the next file to open
	cur   *fileCursor
	batch []pcap.Packet
	bi    int
	// arena holds the frames of the current batch. It is reused for the
	// next batch: the merge refills a source only after the packet it last
	// returned has been written. used counts the batch's bytes in it.
	arena []byte
	used  int
	ahead []*evaluation // files being evaluated, in file order
	err   error
}

// fileCursor is the progress through one matching file.
type fileCursor struct {
	info    FileInfo
	idx     index
	pkt     *blockfile.File
	release func()
	match   query.Match
	scan    *blockfile.Scanner // when match.All
	pos     int                // next index into match.Positions
}

func (t *threadSource) Next() bool {
	for t.err == nil {
		if t.bi < len(t.batch) {
			t.bi++
			return true
		}
		if err := t.ctx.Err(); err != nil {
			t.err = err
			break
		}
		if t.cur == nil && !t.openNext() {
			return false
		}
		if t.cur != nil {
			t.fill()
		}
	}
	t.close()
	return false
}

func (t *threadSource) Packet() pcap.Packet { return t.batch[t.bi-1] }

// Batch hands over the rest of the batch (pcap.Batcher).
func (t *threadSource) Batch() []pcap.Packet {
	b := t.batch[t.bi-1:]
	t.bi = len(t.batch)
	return b
}

// alloc returns n bytes of the arena. When the arena must grow, earlier
// frames of the batch keep pointing into the old one, which stays valid.
func (t *threadSource) alloc(n int) []byte {
	if cap(t.arena)-len(t.arena) < n {
		// Room for a batch's bytes and its last run (one block): one chunk
		// serves every batch.
		t.arena = make([]byte, 0, max(batchBytes+t.s.cfg.BlockSize+64<<10, n))
	}
	start := len(t.arena)
	t.arena = t.arena[:start+n]
	t.used += n
	return t.arena[start : start+n : start+n]
}

// allocRun is alloc for a run of packets read in one go, or nil once the
// batch has its bytes: a batch ends between runs, never inside one.
func (t *threadSource) allocRun(n int) []byte {
	if t.used >= batchBytes {
		return nil
	}
	return t.alloc(n)
}

// keepBytes copies b into the arena.
func (t *threadSource) keepBytes(b []byte) []byte {
	d := t.alloc(len(b))
	copy(d, b)
	return d
}
func (t *threadSource) Err() error { return t.err }

func (t *threadSource) close() {
	if t.cur != nil {
		t.cur.release()
		t.cur = nil
	}
}

// lookahead is how many files' indexes are evaluated ahead of the file
// being read, concurrently: a rare match spends its time opening indexes,
// and those opens are independent.
const lookahead = 8

// evaluation is the outcome of opening and evaluating one file, filled in
// by its own goroutine; done is closed when it is complete.
type evaluation struct {
	info    FileInfo
	done    chan struct{}
	skipped bool // pruned by time without opening
	// bySummary: skipped because a summary table rules it out.
	bySummary bool
	p         *pair
	release   func()
	match     query.Match
	// indexBytes is what the key lookups read from the index.
	indexBytes int64
	err        error
}

// skippedByTime and skippedBySummary are the outcomes of every skipped
// file; never modified.
var skippedByTime, skippedBySummary = skipped(false), skipped(true)

func skipped(bySummary bool) *evaluation {
	e := &evaluation{done: make(chan struct{}), skipped: true, bySummary: bySummary}
	close(e.done)
	return e
}

func (t *threadSource) evaluate(f FileInfo, span query.Span) *evaluation {
	if ok, bySummary := t.sums.mayMatch(t.q, f, span); !ok {
		// Shared outcomes: a query over tens of thousands of files skips
		// most of them, and nothing of a skipped file is kept.
		if bySummary {
			return skippedBySummary
		}
		return skippedByTime
	}
	e := &evaluation{info: f, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		t.s.evaluateFile(t.ctx, t.q, span, e)
	}()
	return e
}

// evaluateFile evaluates q on e.info's index in an index reader slot,
// filling e. On a non-empty match the pair stays acquired in e (the
// caller releases it); otherwise it is released here.
func (s *Store) evaluateFile(ctx context.Context, q query.Node, span query.Span, e *evaluation) {
	if e.err = take(ctx, s.indexSlots); e.err != nil {
		return
	}
	defer func() { <-s.indexSlots }()
	p, release, err := s.acquire(e.info)
	if err != nil {
		e.err = err
		return
	}
	before := p.idx.BytesRead()
	e.match, e.err = query.EvaluateLimited(ctx, q, p.idx, span, positionLimit(p.idx))
	e.indexBytes = p.idx.BytesRead() - before
	if errors.Is(e.err, query.ErrTooLarge) {
		e.err = fmt.Errorf("store: %s: %w", p.idx.Name(), e.err)
	}
	if e.err != nil || e.match.Empty() {
		release()
		return
	}
	e.p, e.release = p, release
}

// positionLimit bounds the positions one file's evaluation may look up in
// all: as many as the whole index can hold (a lookup repeated in the query
// counts once), at least 64 Ki so small files never refuse a sane query.
// A query's lookups in one file then hold no more than a few times the
// index file's size (DESIGN.md).
func positionLimit(idx index) int { return max(idx.MaxPositions(), 1<<16) }

// schedule starts evaluations until lookahead are pending.
func (t *threadSource) schedule() {
	for len(t.ahead) < lookahead && t.next < len(t.files) {
		f := t.files[t.next]
		t.next++
		t.ahead = append(t.ahead, t.evaluate(f, t.s.span(t.thread, t.files, t.next-1)))
	}
}

// openNext moves to the next file that may hold matches; false when no
// file is left.
func (t *threadSource) openNext() bool {
	for {
		t.schedule()
		if len(t.ahead) == 0 {
			return false
		}
		e := t.ahead[0]
		t.ahead = t.ahead[1:]
		<-e.done
		switch {
		case e.bySummary:
			t.res.FilesSummarySkipped++
			continue
		case e.skipped:
			t.res.FilesSkipped++
			continue
		case e.err != nil && t.ctx.Err() != nil:
			t.err = t.ctx.Err()
			return false
		case e.err != nil:
			t.fileError(e.info, e.err)
			continue
		}
		t.res.FilesOpened++
		t.res.Lookups += e.match.Lookups
		t.res.IndexBytes += e.indexBytes
		if e.p == nil { // nothing matched
			continue
		}
		pkt, err := e.p.packets()
		if err != nil {
			e.release()
			t.fileError(e.info, err)
			continue
		}
		t.cur = &fileCursor{info: e.info, idx: e.p.idx, pkt: pkt, release: e.release, match: e.match}
		if e.match.All {
			t.cur.scan = pkt.ScanInPlace()
		}
		return true
	}
}

// shutdown releases the files evaluated ahead but never read (the query
// ended early: a limit, an error or a cancellation).
func (t *threadSource) shutdown() {
	t.close()
	t.res.SummaryBytes += t.sums.bytesRead()
	t.sums.close()
	for _, e := range t.ahead {
		<-e.done
		if e.release != nil {
			e.release()
		}
	}
	t.ahead = nil
}

func (t *threadSource) fileError(f FileInfo, err error) {
	if errors.Is(err, fs.ErrNotExist) && !t.s.has(f) {
		// Retention deleted the pair after this query listed it: its
		// packets aged out, which is not a failure of the query.
		t.s.log.Debug("query skips a file deleted by retention", "thread", f.Thread, "file", f.Name)
		t.res.FilesAgedOut++
		return
	}
	t.s.log.Warn("query skips unreadable file", "thread", f.Thread, "file", f.Name, "err", err)
	t.res.Errors = append(t.res.Errors, err)
}

// scanEnd returns the damage a finished scan of c's packet file met, and
// whether the file's index knows of packets after the last one the scan
// found: a file cut at a block boundary, or whose last blocks were
// zeroed, looks like a shorter file to the scan.
func (t *threadSource) scanEnd(c *fileCursor) error {
	err := c.scan.Err()
	last, ierr := c.idx.LastProtocolPosition(t.ctx)
	switch {
	case ierr != nil && t.ctx.Err() == nil:
		ierr = fmt.Errorf("store: checking the end of %s: %w", c.pkt.Name(), ierr)
	case ierr == nil && last > c.scan.LastPosition():
		ierr = fmt.Errorf("%w %s: its index %s lists a packet at position %d, after the last packet found (at %d) in its %d bytes: the file was cut or its end overwritten",
			blockfile.ErrCorrupt, c.pkt.Name(), c.idx.Name(), last, c.scan.LastPosition(), c.pkt.Size())
	default:
		ierr = nil
	}
	switch {
	case err == nil:
		return ierr
	case ierr == nil:
		return err
	}
	return fmt.Errorf("%w; %w", err, ierr)
}

// fill reads the next batch from the current file, moving past the file
// when it is exhausted.
func (t *threadSource) fill() {
	if err := take(t.ctx, t.s.packetSlots); err != nil {
		t.err = err
		return
	}
	defer func() { <-t.s.packetSlots }()
	t.batch, t.bi = t.batch[:0], 0
	t.arena, t.used = t.arena[:0], 0
	c := t.cur
	keep := c.match.Keep
	if c.scan != nil {
		full := func() bool { return len(t.batch) >= batchSize || t.used >= batchBytes }
		for !full() && c.scan.Next() {
			p := c.scan.Packet()
			if keep == nil || keep(uint32(p.Position), p.Timestamp, p.Data) {
				t.batch = append(t.batch, pcap.Packet{Timestamp: p.Timestamp, WireLen: p.WireLen, Data: t.keepBytes(p.Data), Interface: t.iface})
			}
		}
		if !full() {
			if err := t.scanEnd(c); err != nil {
				t.fileError(c.info, err)
			}
			t.close()
		}
		return
	}
	end := min(c.pos+batchSize, len(c.match.Positions))
	// Packets are read straight into the arena and returned from there.
	n, err := c.pkt.ReadPositionsInto(t.ctx, c.match.Positions[c.pos:end], t.allocRun, func(p *blockfile.Packet) bool {
		if keep == nil || keep(uint32(p.Position), p.Timestamp, p.Data) {
			t.batch = append(t.batch, pcap.Packet{Timestamp: p.Timestamp, WireLen: p.WireLen, Data: p.Data, Interface: t.iface})
		}
		return true
	})
	c.pos += n
	if err != nil {
		if t.ctx.Err() != nil {
			t.err = t.ctx.Err()
			return
		}
		if errors.Is(err, blockfile.ErrNotAPacket) {
			err = fmt.Errorf("%w: index %s gives positions that are not packets of %s: %w", ErrNotAPair, c.idx.Name(), c.pkt.Name(), err)
		}
		t.fileError(c.info, err)
		t.close()
		return
	}
	if c.pos >= len(c.match.Positions) {
		t.close()
	}
}
