package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/summary"
)

// Building summaries. Files are summarized in groups of SummaryGroup
// consecutive files not yet covered (a run broken by a covered file is
// left for later), so a group is written once, when its last file has
// arrived: the newest files, fewer than a group, are looked up one by one,
// which costs about as much as a small store. Every summaryMerge
// consecutive small tables are merged into one, so a query over a month
// of one-minute files opens about 43,000/1,024 tables per thread, not
// 43,000 indexes. A table all of whose files retention has deleted is
// removed; one that still covers some is kept as it is: its bits for
// deleted files are never asked.

// DefaultSummaryGroup is how many files a first-level table covers.
const DefaultSummaryGroup = 64

// summaryMerge is how many first-level tables are merged into one.
const summaryMerge = 16

// tmpAge is how old a temporary table must be before Summarize removes
// it as left over from an interrupted build.
const tmpAge = 10 * time.Minute

// Summarize writes the summary tables that thread files call for and
// removes those that cover no file any more, returning the number of
// tables written. It reads index files in the index reader pool, one
// group at a time, so queries keep their share of the disks; queries use
// each table as soon as it is written. Files that cannot be summarized
// (a damaged index) are left to per-file lookups.
func (s *Store) Summarize(ctx context.Context) (int, error) {
	if !s.cfg.Summaries {
		return 0, nil
	}
	s.summarizing.Lock()
	defer s.summarizing.Unlock()
	written := 0
	var errs []error
	for i := range s.cfg.Threads {
		n, err := s.summarizeThread(ctx, i)
		written += n
		if err != nil {
			if ctx.Err() != nil {
				return written, ctx.Err()
			}
			errs = append(errs, err)
		}
	}
	return written, errors.Join(errs...)
}

func (s *Store) summarizeThread(ctx context.Context, i int) (int, error) {
	th := s.cfg.Threads[i]
	dir := SummaryDir(th)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, fmt.Errorf("store: thread %d summaries: %w", i, err)
	}
	s.removeOldTemporaries(dir)
	files := s.Files(i)
	present := make(map[string]FileInfo, len(files))
	for _, f := range files {
		present[f.Name] = f
	}
	sums := s.reloadSummaries(i)
	for path := range sums.unreadable {
		// Damaged, or of another version: its files are built again.
		if err := os.Remove(path); err == nil {
			s.log.Info("removed an unreadable summary table", "path", path)
		}
	}
	for path, sf := range sums.tables {
		switch tableState(sf, present) {
		case tableGone:
			if err := os.Remove(path); err == nil {
				s.log.Debug("removed a summary whose files are all deleted", "path", path)
			}
		case tableStale:
			// Its files are summarized again below. Kept, it could hide
			// their new tables (the view keeps one table per file),
			// leaving them uncovered and rebuilt at every run.
			if err := os.Remove(path); err == nil {
				s.log.Info("removed a summary table built from index files since changed or replaced", "path", path)
			}
		}
	}
	sums = s.reloadSummaries(i)
	written := 0
	g := s.cfg.SummaryGroup
	var run []FileInfo
	for _, f := range files {
		if ref, ok := sums.cover[f.Name]; ok && summaryCovers(ref.member, f) {
			run = run[:0]
			continue
		}
		if s.unsummarizable(f) {
			continue
		}
		run = append(run, f)
		if len(run) < g {
			continue
		}
		if err := s.buildGroup(ctx, i, dir, run); err != nil {
			return written, err
		}
		written++
		run = run[:0]
	}
	n, err := s.mergeTables(ctx, i, dir)
	return written + n, err
}

// What a table is to the files listed now.
const (
	tableCurrent = iota // its listed files are the ones it was built from
	tableGone           // none of its files is listed any more
	tableStale          // one of its listed files is not the one it was built from
)

func tableState(sf *sumFile, present map[string]FileInfo) int {
	state := tableGone
	for _, m := range sf.members {
		f, ok := present[m.Name]
		switch {
		case !ok:
		case !summaryCovers(m, f):
			return tableStale
		default:
			state = tableCurrent
		}
	}
	return state
}

// buildGroup writes one first-level table. A file whose index cannot be
// read is remembered and the group left for the next run without it.
func (s *Store) buildGroup(ctx context.Context, i int, dir string, run []FileInfo) error {
	in := make([]summary.IndexFile, len(run))
	for k, f := range run {
		_, idx := s.paths(f)
		in[k] = summary.IndexFile{Name: f.Name, Path: idx}
	}
	if err := take(ctx, s.indexSlots); err != nil {
		return err
	}
	path := filepath.Join(dir, run[0].Name+"-"+run[len(run)-1].Name+summaryExt)
	err := summary.Build(ctx, path, in)
	<-s.indexSlots
	if ie, ok := summary.AsInputError(err); ok && ctx.Err() == nil {
		s.log.Warn("index file left out of summaries: it is looked up on its own", "path", in[ie.Input].Path, "err", err)
		s.mu.Lock()
		s.badSummaryInputs[inputKey(run[ie.Input])] = true
		s.mu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	s.reloadSummaries(i)
	return nil
}

// mergeTables merges runs of summaryMerge consecutive small tables.
func (s *Store) mergeTables(ctx context.Context, i int, dir string) (int, error) {
	sums := s.summaries(i)
	var small []*sumFile
	for _, sf := range sums.tables {
		if len(sf.members) < s.cfg.SummaryGroup*summaryMerge {
			small = append(small, sf)
		}
	}
	slices.SortFunc(small, func(a, b *sumFile) int { return compareNames(a.members[0].Name, b.members[0].Name) })
	written := 0
	for len(small) >= summaryMerge {
		group := small[:summaryMerge]
		small = small[summaryMerge:]
		if err := s.mergeGroup(ctx, dir, group); err != nil {
			s.log.Warn("summaries not merged", "err", err)
			if ctx.Err() != nil {
				return written, ctx.Err()
			}
			continue
		}
		written++
		s.reloadSummaries(i)
	}
	return written, nil
}

func (s *Store) mergeGroup(ctx context.Context, dir string, group []*sumFile) error {
	var tables []*summary.Table
	defer func() {
		for _, t := range tables {
			t.Close()
		}
	}()
	for k, sf := range group {
		if k > 0 && compareNames(sf.members[0].Name, group[k-1].members[len(group[k-1].members)-1].Name) <= 0 {
			return fmt.Errorf("store: summaries %s and %s overlap", group[k-1].path, sf.path)
		}
		t, err := summary.Open(sf.path)
		if err != nil {
			return err
		}
		tables = append(tables, t)
	}
	if err := take(ctx, s.indexSlots); err != nil {
		return err
	}
	first, last := group[0].members[0].Name, group[len(group)-1].members
	path := filepath.Join(dir, first+"-"+last[len(last)-1].Name+summaryExt)
	err := summary.Merge(ctx, path, tables)
	<-s.indexSlots
	if err != nil {
		return err
	}
	// The merged table covers the same files: queries that listed the
	// small ones before this point still open them, or fall back.
	for _, sf := range group {
		if sf.path != path {
			os.Remove(sf.path)
		}
	}
	return nil
}

// reloadSummaries rereads thread i's summary directory into the view.
func (s *Store) reloadSummaries(i int) *threadSums {
	sums := s.loadSummaries(s.cfg.Threads[i], s.summaries(i))
	s.mu.Lock()
	if s.sums != nil {
		s.sums[i] = sums
		s.files[i] = annotate(s.files[i], sums)
	}
	s.mu.Unlock()
	return sums
}

func (s *Store) unsummarizable(f FileInfo) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.badSummaryInputs[inputKey(f)]
}

// inputKey names f's index as the listing saw it: a new index under the
// same name is tried again.
func inputKey(f FileInfo) summary.Member {
	return summary.Member{Name: f.Name, IndexSize: f.IndexSize, Inode: f.indexIno, Ctime: f.indexCtime}
}

// removeOldTemporaries removes hidden files an interrupted build left.
func (s *Store) removeOldTemporaries(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > tmpAge {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// compareNames orders file names (decimal microseconds) numerically.
func compareNames(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}
