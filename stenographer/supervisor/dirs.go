package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"

	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// makeDirs creates dir and its missing parents. When chown is set, every
// directory it created is given to id, so stenotype can write there (and
// traverse to there) after dropping privileges. It returns the created
// directories, outermost first.
func makeDirs(dir string, id identity, chown bool) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("supervisor: %w", err)
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	var created []string
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return created, fmt.Errorf("supervisor: %w", err)
		}
		created = append(created, d)
		if chown {
			if err := os.Chown(d, id.uid, id.gid); err != nil {
				return created, fmt.Errorf("supervisor: %w", err)
			}
		}
	}
	return created, nil
}

// privateDir creates stenotype's --dir: a fresh directory holding only
// the symlinks PKT<i> and IDX<i> to the threads' directories (SPEC §2).
// It is 0755 so stenotype can follow the links after dropping privileges;
// its contents are symlinks only, so nothing is exposed.
func privateDir(threads []store.Thread) (string, error) {
	d, err := os.MkdirTemp("", "stenographer-")
	if err != nil {
		return "", fmt.Errorf("supervisor: private directory: %w", err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		os.RemoveAll(d)
		return "", fmt.Errorf("supervisor: %w", err)
	}
	for i, th := range threads {
		for _, l := range []struct{ name, target string }{
			{"PKT" + strconv.Itoa(i), th.PacketsDirectory}, {"IDX" + strconv.Itoa(i), th.IndexDirectory},
		} {
			target, err := filepath.Abs(l.target)
			if err == nil {
				err = os.Symlink(target, filepath.Join(d, l.name))
			}
			if err != nil {
				os.RemoveAll(d)
				return "", fmt.Errorf("supervisor: private directory: %w", err)
			}
		}
	}
	return d, nil
}

// cleanLeftovers tidies what a stenotype that did not finish left in a
// thread's directories (reindex.go says why packets are kept): a packet
// file without index, visible or hidden, that holds packets is indexed
// and put in place; hidden files without packets (files just opened,
// probe files), hidden index files and index files without a packet file
// are deleted. Only regular files are touched; anything else (directories,
// foreign files) is left alone. It must run while no stenotype writes
// there. It returns the number of files deleted; every deletion and
// recovery is logged.
func cleanLeftovers(log *slog.Logger, thread int, th store.Thread, rx reindexer) (int, error) {
	pkts, err := regularFiles(th.PacketsDirectory)
	if err != nil {
		return 0, err
	}
	idx, err := regularFiles(th.IndexDirectory)
	if err != nil {
		return 0, err
	}
	deleted := 0
	var errs []error
	remove := func(dir, name string, size int64, why string) {
		p := filepath.Join(dir, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("supervisor: delete leftover: %w", err))
			return
		}
		deleted++
		log.Info("deleted leftover file", "thread", thread, "path", p, "bytes", size, "reason", why)
	}
	for name, size := range idx {
		switch {
		case name[0] == '.':
			remove(th.IndexDirectory, name, size, "hidden file of an unfinished write")
		case isStenoName(name) && !hasPartner(pkts, name):
			remove(th.IndexDirectory, name, size, "index file without packet file")
		}
	}
	var unindexed []string
	for name, size := range pkts {
		switch {
		case name[0] == '.' && isStenoName(name[1:]):
			visible := name[1:]
			p := filepath.Join(th.PacketsDirectory, name)
			if _, dup := pkts[visible]; dup || !rx.hasPackets(p) {
				remove(th.PacketsDirectory, name, size, "hidden file of an unfinished write")
				continue
			}
			if err := rx.padToBlock(p); err != nil {
				errs = append(errs, fmt.Errorf("supervisor: %w", err))
				continue
			}
			if err := unhide(th.PacketsDirectory, visible); err != nil {
				errs = append(errs, fmt.Errorf("supervisor: %w", err))
				continue
			}
			log.Info("recovered the packet file of an unfinished write", "thread", thread, "path", filepath.Join(th.PacketsDirectory, visible), "bytes", size)
			unindexed = append(unindexed, visible)
		case name[0] == '.':
			remove(th.PacketsDirectory, name, size, "hidden file of an unfinished write")
		case isStenoName(name) && !hasPartner(idx, name):
			if !rx.hasPackets(filepath.Join(th.PacketsDirectory, name)) {
				remove(th.PacketsDirectory, name, size, "packet file without index or packets")
				continue
			}
			unindexed = append(unindexed, name)
		}
	}
	for _, name := range unindexed {
		p := filepath.Join(th.PacketsDirectory, name)
		if err := rx.index(p, th.IndexDirectory, name); err != nil {
			log.Error("packet file without index kept unqueryable: cannot re-index it (retention counts it)", "thread", thread, "path", p, "err", err)
			continue
		}
		log.Info("re-indexed packet file without index", "thread", thread, "path", p, "index", filepath.Join(th.IndexDirectory, name))
	}
	return deleted, errors.Join(errs...)
}

func isStenoName(name string) bool {
	_, ok := store.ParseName(name)
	return ok
}

func hasPartner(m map[string]int64, name string) bool {
	_, ok := m[name]
	return ok
}

// regularFiles maps the names of dir's regular files to their sizes.
func regularFiles(dir string) (map[string]int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	out := make(map[string]int64, len(entries))
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		var size int64
		if info, err := e.Info(); err == nil {
			size = info.Size()
		}
		out[e.Name()] = size
	}
	return out, nil
}

// newest returns the newest stenotype file in dir, hidden (being
// written) or not: its name without the dot and its size. The name is ""
// when there is none.
func newest(dir string) (string, int64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", 0, err
	}
	name, size := "", int64(0)
	for _, e := range entries {
		n := e.Name()
		if len(n) > 0 && n[0] == '.' {
			n = n[1:]
		}
		if !isStenoName(n) || !e.Type().IsRegular() {
			continue
		}
		if len(n) > len(name) || len(n) == len(name) && n > name {
			name, size = n, 0
			if info, err := e.Info(); err == nil {
				size = info.Size()
			}
		}
	}
	return name, size, nil
}
