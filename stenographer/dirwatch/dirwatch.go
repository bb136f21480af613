// Package dirwatch tells the daemon at once when stenotype starts or
// finishes a file, so that a new pair is queryable without waiting for
// the next periodic scan (which stays, as the fallback for anything the
// watch misses: a queue overflow, a directory replaced).
//
// Stage: thread directories → "look again" signals. It watches each
// directory with inotify (golang.org/x/sys/unix) for names created or
// renamed into it, and reacts only to stenotype file names, visible (N)
// or hidden (.N): the delta tables stenotype writes every second
// (.N.d<seq>) do not change the list of files, and the store finds them
// by itself.
package dirwatch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Settle is how long the watcher waits after an event for the ones that
// come with it (a rotation renames the packet file, opens the next one and
// renames the index), so that they cost one rescan.
const Settle = 20 * time.Millisecond

// Watcher watches directories. Its Run delivers the signals.
type Watcher struct {
	f    *os.File
	dirs map[int32]string // watch descriptor → directory
}

// New watches dirs. The directories must exist.
func New(dirs []string) (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("dirwatch: inotify_init1: %w", err)
	}
	w := &Watcher{f: os.NewFile(uintptr(fd), "inotify"), dirs: map[int32]string{}}
	for _, d := range dirs {
		wd, err := unix.InotifyAddWatch(fd, d, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ONLYDIR)
		if err != nil {
			w.f.Close()
			return nil, fmt.Errorf("dirwatch: inotify_add_watch %s: %w", d, err)
		}
		w.dirs[int32(wd)] = d
	}
	return w, nil
}

// Run calls changed after every burst of relevant events until ctx ends,
// then closes the watcher. It returns the error that stopped the watch
// early, if any (the caller's periodic scan then goes on alone).
func (w *Watcher) Run(ctx context.Context, changed func()) error {
	events := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() { errc <- w.read(events) }()
	defer w.f.Close() // ends read
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case <-events:
		}
		// Let the rest of the burst arrive.
		t := time.NewTimer(Settle)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		select {
		case <-events:
		default:
		}
		changed()
	}
}

// read parses events until the file is closed, signalling on events for
// stenotype file names.
func (w *Watcher) read(events chan<- struct{}) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if errors.Is(err, os.ErrClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("dirwatch: read inotify events: %w", err)
		}
		if relevant(buf[:n]) {
			select {
			case events <- struct{}{}:
			default: // one is pending already
			}
		}
	}
}

// relevant reports whether the events in b name a stenotype file, or lost
// some (a queue overflow: anything may have changed).
func relevant(b []byte) bool {
	for len(b) >= unix.SizeofInotifyEvent {
		mask := binary.NativeEndian.Uint32(b[4:8])
		nameLen := int(binary.NativeEndian.Uint32(b[12:16]))
		if nameLen > len(b)-unix.SizeofInotifyEvent {
			return true // a malformed read: look again rather than miss a file
		}
		name := strings.TrimRight(string(b[unix.SizeofInotifyEvent:unix.SizeofInotifyEvent+nameLen]), "\x00")
		b = b[unix.SizeofInotifyEvent+nameLen:]
		if mask&unix.IN_Q_OVERFLOW != 0 || isFileName(strings.TrimPrefix(name, ".")) {
			return true
		}
	}
	return false
}

// isFileName reports whether name is a stenotype file name: decimal
// microseconds.
func isFileName(name string) bool {
	us, err := strconv.ParseInt(name, 10, 64)
	return err == nil && us > 0 && name[0] != '+'
}
