// Package retention keeps the threads' disks usable: it deletes the oldest
// file pairs while a thread holds more than MaxDirectoryFiles pairs or its
// disk has DiskFreePercentage or less free (SPEC §11).
//
// Stage: store + disk state → deleted oldest pairs. Input: the store's
// view of the pairs (refreshed each cycle) and statfs of the threads'
// directories. Output: fewer files, the store told first (Forget), a log
// line and a metric per deletion.
//
// Decisions:
//   - Each pair is forgotten by the store before it is unlinked: new
//     queries no longer see it, and a query already reading it keeps its
//     open descriptors, so it finishes with the data it started with.
//   - Threads sharing a filesystem are cleaned together: while the disk is
//     low, the oldest pair among them goes first, so one thread does not
//     lose all its history while another keeps everything.
//   - Free space is measured once per cycle and the bytes deleted are
//     added to it: space held by a file a query still reads only returns
//     when the query ends, and measuring again would delete more than
//     needed.
//   - Packet files without an index (an index write failed) older than a
//     thread's newest pair count as files and may be deleted like pairs:
//     they hold space that no query can see until the next start
//     re-indexes them.
//   - The disk-free rule never deletes a thread's newest pair. When only
//     that is left and the disk is still low, something other than
//     stenotype fills it; that is logged as an error (once until it
//     clears) instead of deleting all captured data.
package retention

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/config"
	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// Store is what retention needs of *store.Store.
type Store interface {
	Refresh() error
	Files(thread int) []store.FileInfo
	Forget(store.FileInfo)
}

// Disk is a filesystem's size and free space in bytes, with its device
// number (threads on one device share the space).
type Disk struct {
	Dev         uint64
	Total, Free uint64
}

// StatFS measures the filesystem holding path. The default uses
// statfs(2) and counts the space available to unprivileged users, the
// space stenotype (after dropping root) can write.
type StatFS func(path string) (Disk, error)

// Config configures a Cleaner.
type Config struct {
	Store    Store
	Threads  []config.Thread // directories and limits, as configured
	Interval time.Duration   // between cycles of Run; 0 means 15s
	Logger   *slog.Logger
	StatFS   StatFS // nil: statfs(2)
}

// Cleaner runs the cleanup cycles.
type Cleaner struct {
	cfg    Config
	log    *slog.Logger
	warned []bool // per thread: the "disk still low" error was logged
}

// New returns a Cleaner.
func New(cfg Config) *Cleaner {
	if cfg.Interval <= 0 {
		cfg.Interval = 15 * time.Second
	}
	if cfg.StatFS == nil {
		cfg.StatFS = statFS
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cleaner{cfg: cfg, log: log.With("component", "retention"), warned: make([]bool, len(cfg.Threads))}
}

// Run runs a cycle at once and then every Interval until ctx ends.
func (c *Cleaner) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		if err := c.Once(); err != nil {
			c.log.Error("cleanup cycle", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Once refreshes the store and deletes what the limits require. Errors
// about one thread do not stop the others; they are returned together.
func (c *Cleaner) Once() error {
	if err := c.cfg.Store.Refresh(); err != nil {
		// A missing directory of one thread must not stop cleanup of
		// the others; what the store did see is still used.
		c.log.Error("refreshing the file list", "err", err)
	}
	files := make([][]store.FileInfo, len(c.cfg.Threads))
	for i, th := range c.cfg.Threads {
		files[i] = withUnindexed(i, th, c.cfg.Store.Files(i))
	}
	var errs []error
	for i, th := range c.cfg.Threads {
		for len(files[i]) > th.MaxDirectoryFiles {
			f := files[i][0]
			if _, err := c.delete(f, "max_files", "files", len(files[i]), "max_files", th.MaxDirectoryFiles); err != nil {
				errs = append(errs, err)
				break
			}
			files[i] = files[i][1:]
		}
	}
	if err := c.diskFree(files); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// diskFree deletes oldest pairs while a thread's filesystems are at or
// below its DiskFreePercentage.
func (c *Cleaner) diskFree(files [][]store.FileInfo) error {
	disks := map[uint64]*Disk{}                         // by device, Free grows as we delete
	threadDisks := make([][]uint64, len(c.cfg.Threads)) // devices of each thread's two dirs
	var errs []error
	for i, th := range c.cfg.Threads {
		for _, dir := range []string{th.PacketsDirectory, th.IndexDirectory} {
			d, err := c.cfg.StatFS(dir)
			if err != nil {
				errs = append(errs, fmt.Errorf("retention: thread %d: statfs %s: %w", i, dir, err))
				continue
			}
			if _, ok := disks[d.Dev]; !ok {
				disks[d.Dev] = &d
			}
			threadDisks[i] = append(threadDisks[i], d.Dev)
		}
	}
	freePct := func(i int) (float64, bool) {
		lowest, ok := 100.0, false
		for _, dev := range threadDisks[i] {
			d := disks[dev]
			if d.Total == 0 {
				continue
			}
			lowest, ok = min(lowest, 100*float64(d.Free)/float64(d.Total)), true
		}
		return lowest, ok
	}
	stuck := make([]bool, len(c.cfg.Threads))
	for {
		// The oldest pair among the threads that are low on disk.
		pick := -1
		for i, th := range c.cfg.Threads {
			pct, ok := freePct(i)
			if !ok || stuck[i] || pct > float64(th.DiskFreePercentage) {
				if ok && pct > float64(th.DiskFreePercentage) {
					c.warned[i] = false
				}
				continue
			}
			if len(files[i]) <= 1 {
				if !c.warned[i] {
					c.log.Error("disk still low after deleting all but the newest file pair; something else is filling it",
						"thread", i, "free_pct", round(pct), "disk_free_percentage", th.DiskFreePercentage,
						"packets_directory", th.PacketsDirectory, "index_directory", th.IndexDirectory)
					c.warned[i] = true
				}
				continue
			}
			if pick < 0 || files[i][0].Start.Before(files[pick][0].Start) {
				pick = i
			}
		}
		if pick < 0 {
			return errors.Join(errs...)
		}
		pct, _ := freePct(pick)
		freed, err := c.delete(files[pick][0], "disk_free", "free_pct", round(pct), "disk_free_percentage", c.cfg.Threads[pick].DiskFreePercentage)
		if err != nil {
			errs = append(errs, err)
			stuck[pick] = true
			continue
		}
		files[pick] = files[pick][1:]
		for dev, n := range freed {
			if d, ok := disks[dev]; ok {
				d.Free += n
			}
		}
	}
}

// withUnindexed adds to a thread's pairs (oldest first) its packet files
// that have no index and are older than its newest pair, in Start order.
// Their index write failed (an index disk full): they hold space but no
// query can see them until the next start re-indexes them, so the limits
// count them and the disk-free rule may delete them, oldest first. Files
// newer than the newest pair are left out: their index may be being
// written (stenotype indexes files in order, after the rename).
func withUnindexed(thread int, th config.Thread, pairs []store.FileInfo) []store.FileInfo {
	if len(pairs) == 0 {
		return pairs
	}
	newest := pairs[len(pairs)-1].Start
	entries, err := os.ReadDir(th.PacketsDirectory)
	if err != nil {
		return pairs
	}
	paired := make(map[string]bool, len(pairs))
	for _, f := range pairs {
		paired[f.Name] = true
	}
	var extra []store.FileInfo
	for _, e := range entries {
		start, ok := store.ParseName(e.Name())
		if !ok || paired[e.Name()] || !e.Type().IsRegular() || !start.Before(newest) {
			continue
		}
		if _, err := os.Lstat(filepath.Join(th.IndexDirectory, e.Name())); !errors.Is(err, fs.ErrNotExist) {
			continue // its index appeared since the store's refresh
		}
		f := store.FileInfo{Thread: thread, Name: e.Name(), Start: start}
		if info, err := e.Info(); err == nil {
			f.Size, f.Allocated = info.Size(), store.AllocatedBytes(info)
		}
		extra = append(extra, f)
	}
	if len(extra) == 0 {
		return pairs
	}
	out := append(append([]store.FileInfo(nil), pairs...), extra...)
	slices.SortStableFunc(out, func(a, b store.FileInfo) int { return a.Start.Compare(b.Start) })
	return out
}

// delete forgets f in the store and unlinks its two files. It returns the
// bytes freed per device (blocks allocated, as statfs counts them).
func (c *Cleaner) delete(f store.FileInfo, reason string, why ...any) (map[uint64]uint64, error) {
	th := c.cfg.Threads[f.Thread]
	c.cfg.Store.Forget(f)
	freed := map[uint64]uint64{}
	var length int64
	var errs []error
	for _, p := range []string{filepath.Join(th.PacketsDirectory, f.Name), filepath.Join(th.IndexDirectory, f.Name)} {
		var st syscall.Stat_t
		statErr := syscall.Stat(p, &st)
		if err := os.Remove(p); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("retention: delete %s: %w", p, err))
			}
			continue
		}
		if statErr == nil {
			freed[st.Dev] += uint64(st.Blocks) * 512
			length += st.Size
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.log.Error("cannot delete file pair", "thread", f.Thread, "name", f.Name, "reason", reason, "err", err)
		return freed, err
	}
	metrics.FileDeleted(f.Thread, reason)
	c.log.Info("deleted oldest file pair", append([]any{"thread", f.Thread, "name", f.Name,
		"start", f.Start.UTC().Format(time.RFC3339), "length_bytes", length, "freed_bytes", sum(freed), "reason", reason}, why...)...)
	return freed, nil
}

func sum(freed map[uint64]uint64) uint64 {
	var n uint64
	for _, b := range freed {
		n += b
	}
	return n
}

func round(pct float64) float64 { return float64(int(pct*100+0.5)) / 100 }

// FreeSpace is the default StatFS, for others that report the disks.
func FreeSpace(path string) (Disk, error) { return statFS(path) }

func statFS(path string) (Disk, error) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(path, &s); err != nil {
		return Disk{}, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return Disk{}, err
	}
	return Disk{Dev: st.Dev, Total: s.Blocks * uint64(s.Bsize), Free: s.Bavail * uint64(s.Bsize)}, nil
}
