package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/stenographer-ng/stenographer/stenographer/indexfile"
	"github.com/stenographer-ng/stenographer/stenographer/query"
	"github.com/stenographer-ng/stenographer/stenographer/summary"
)

// Summaries. Beside each thread's index files, in IDX<i>/.summary/, the
// daemon keeps summary tables (stenographer/summary): for a group of
// files, which of them hold each key. A query asks a file's table before
// opening the file's index and skips the file when the table says no
// key of the query can be there. The directory is hidden, so stenotype,
// the reference and the leftover cleanup (which touches regular files
// only) leave it alone; it is on the index disk, so retention's free-space
// rule sees its bytes.
//
// A table is used for a file only when it lists the file's name with the
// identity of the index file there now (summaryCovers); anything else (a
// file newer than the tables, a table that fails to open or to answer)
// means the file's own index is read, so no answer depends on a summary
// being there or right.

// SummaryDirName is the directory of a thread's summaries, inside its
// index directory.
const SummaryDirName = ".summary"

// summaryExt ends a summary table's name; hidden names are temporary.
const summaryExt = ".sum"

// SummaryDir returns th's summary directory.
func SummaryDir(th Thread) string { return filepath.Join(th.IndexDirectory, SummaryDirName) }

// sumFile is what Refresh knows of one table: its members, read once per
// version of the file.
type sumFile struct {
	path    string
	stamp   sumStamp
	members []summary.Member
}

// sumStamp tells one version of a table file from another: tables are
// written under a temporary name and renamed into place, so a new one is
// a new inode with a new change time even at the same size and mtime.
type sumStamp struct {
	size, mtime, ctime int64
	ino                uint64
}

func stampOf(info fs.FileInfo) sumStamp {
	ino, ctime := summary.Identity(info)
	return sumStamp{size: info.Size(), mtime: info.ModTime().UnixNano(), ctime: ctime, ino: ino}
}

// coverRef places a file in a table.
type coverRef struct {
	table  *sumFile
	bit    int
	member summary.Member
}

// threadSums is one thread's tables and the files they cover, replaced
// whole by Refresh.
type threadSums struct {
	tables map[string]*sumFile // by path
	cover  map[string]coverRef // by file name
	// unreadable are tables that failed to open, by path, as they were
	// then: Summarize replaces them, and a rescan does not warn again.
	unreadable map[string]sumStamp
}

// summaryCovers reports whether m, a table's record of a file, describes
// f's index as it is now. With a stat of the index (every listing but
// NamesOnly's) that is proved: any write to a file sets its change time,
// and a file put in its place is another inode, created (so changed)
// after the table was built. A NamesOnly listing has the inode number
// only, which tells a replacement by a new file that existed beside the
// old one (a rename into place: how stenotype, the reference, rsync and
// mv write) but not a rewrite in place (cp onto an existing index) nor a
// file deleted and created again that got the same inode number:
// stenoquery --stat_files=false trades the proof for speed.
func summaryCovers(m summary.Member, f FileInfo) bool {
	if m.Inode == 0 || m.Inode != f.indexIno {
		return false
	}
	return !f.indexStat || (m.IndexSize == f.IndexSize && m.Ctime == f.indexCtime)
}

// loadSummaries lists th's summary directory and reads the members of
// tables not already known in old. A table that cannot be read is left
// out: its files are looked up one by one.
func (s *Store) loadSummaries(th Thread, old *threadSums) *threadSums {
	out := &threadSums{tables: map[string]*sumFile{}, cover: map[string]coverRef{}, unreadable: map[string]sumStamp{}}
	dir := SummaryDir(th)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") || !strings.HasSuffix(n, summaryExt) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		path := filepath.Join(dir, n)
		sf := old.table(path)
		if stamp := stampOf(info); sf == nil || sf.stamp != stamp {
			if old != nil && old.unreadable[path] == stamp {
				out.unreadable[path] = stamp
				continue
			}
			t, err := summary.Open(path)
			if err != nil {
				s.log.Warn("summary table unused: its files are looked up one by one", "path", path, "err", err)
				out.unreadable[path] = stamp
				continue
			}
			sf = &sumFile{path: path, stamp: stamp, members: t.Members()}
			t.Close()
		}
		out.tables[path] = sf
		for j, m := range sf.members {
			out.cover[m.Name] = coverRef{table: sf, bit: j, member: m}
		}
	}
	return out
}

// annotate returns files with each file's place in sums, in a new slice:
// snapshots queries hold keep theirs.
func annotate(files []FileInfo, sums *threadSums) []FileInfo {
	out := slices.Clone(files)
	for j := range out {
		out[j].cover = nil
		if sums == nil {
			continue
		}
		if ref, ok := sums.cover[out[j].Name]; ok {
			out[j].cover = &ref
		}
	}
	return out
}

func (t *threadSums) table(path string) *sumFile {
	if t == nil {
		return nil
	}
	return t.tables[path]
}

// summaries returns thread i's current tables (nil without summaries).
func (s *Store) summaries(i int) *threadSums {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sums == nil {
		return nil
	}
	return s.sums[i]
}

// summaryView is one query's (or Cost's) use of one thread's tables: each
// opened once, each key's set of files read once per table. Not safe for
// concurrent use: a thread's files are judged one at a time, in order.
type summaryView struct {
	ctx    context.Context
	s      *Store
	sums   *threadSums
	open   map[*sumFile]*openSum
	closed bool
	// cur and curBit are the table and bit of the file being judged.
	cur    *openSum
	curBit int
	hasFn  func(lo, hi []byte) bool
}

type openSum struct {
	t   *summary.Table
	err error // the table is not used after an error
	// match holds each key range's set of files, read once. A query has
	// few keys (and at most 1000), so a list searched in order beats
	// hashing a key string for each of thousands of files.
	match []keyBits
}

type keyBits struct {
	lo, hi []byte
	bits   summary.Bits
}

// bits returns the files of o's table that may hold a key in [lo, hi].
func (o *openSum) bits(ctx context.Context, lo, hi []byte) (summary.Bits, error) {
	for _, m := range o.match {
		if bytes.Equal(m.lo, lo) && bytes.Equal(m.hi, hi) {
			return m.bits, nil
		}
	}
	b, err := o.t.Match(ctx, lo, hi)
	if err != nil {
		return nil, err
	}
	o.match = append(o.match, keyBits{lo, hi, b})
	return b, nil
}

func (s *Store) newSummaryView(ctx context.Context, thread int) *summaryView {
	sums := s.summaries(thread)
	if sums == nil || len(sums.cover) == 0 {
		return nil
	}
	v := &summaryView{ctx: ctx, s: s, sums: sums, open: map[*sumFile]*openSum{}}
	v.hasFn = v.hasCurrent
	return v
}

// has returns f's has for query.MayMatchKeys, or nil when no table covers
// f's index as it is now.
func (v *summaryView) has(f FileInfo) func(lo, hi []byte) bool {
	if v == nil || f.Live {
		return nil
	}
	ref := f.cover
	if ref == nil || !summaryCovers(ref.member, f) {
		return nil
	}
	o := v.table(ref.table)
	if o.err != nil {
		return nil
	}
	v.cur, v.curBit = o, ref.bit
	return v.hasFn
}

// hasCurrent answers for the file has last returned for: one function
// value per view, not one closure per file.
func (v *summaryView) hasCurrent(lo, hi []byte) bool {
	o := v.cur
	if len(lo) > 0 && lo[0] < indexfile.TypePort {
		return true // protocols are not summarized
	}
	if o.err != nil {
		return true
	}
	b, err := o.bits(v.ctx, lo, hi)
	if err != nil {
		if v.ctx.Err() == nil {
			v.s.log.Warn("summary table unused by a query: its files are looked up one by one", "path", o.t.Name(), "err", err)
		}
		o.err = err
		return true
	}
	return b.Has(v.curBit)
}

// table opens sf for this view, checking that it is still the table
// Refresh read: otherwise the bits would mean other files.
func (v *summaryView) table(sf *sumFile) *openSum {
	if o := v.open[sf]; o != nil {
		return o
	}
	o := &openSum{}
	v.open[sf] = o
	info, err := os.Stat(sf.path)
	switch {
	case err != nil:
		o.err = err
	case stampOf(info) != sf.stamp:
		o.err = fmt.Errorf("store: summary %s changed since the last scan", sf.path)
	default:
		o.t, o.err = summary.OpenKnown(sf.path, sf.members, sf.stamp.size)
	}
	if o.err != nil && !errors.Is(o.err, fs.ErrNotExist) {
		v.s.log.Warn("summary table unused by a query: its files are looked up one by one", "path", sf.path, "err", o.err)
	}
	return o
}

// mayMatch reports whether f can hold a match of q, and whether a summary
// is what ruled it out.
func (v *summaryView) mayMatch(q query.Node, f FileInfo, span query.Span) (ok, bySummary bool) {
	if !query.MayMatch(q, span) {
		return false, false
	}
	if has := v.has(f); has != nil && !query.MayMatchKeys(q, span, has) {
		return false, true
	}
	return true, false
}

// bytesRead is what the view read from its tables.
func (v *summaryView) bytesRead() int64 {
	if v == nil {
		return 0
	}
	var n int64
	for _, o := range v.open {
		if o.t != nil {
			n += o.t.BytesRead()
		}
	}
	return n
}

// close closes the view's tables.
func (v *summaryView) close() {
	if v == nil || v.closed {
		return
	}
	v.closed = true
	for _, o := range v.open {
		if o.t != nil {
			o.t.Close()
		}
	}
}
