package supervisor

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// Two daemons on one thread directory delete each other's files: each
// takes the other's open files for leftovers of a crash. So every thread
// directory is locked with flock(LOCK_EX|LOCK_NB) on the directory itself
// for the daemon's life. The directory, not a lock file in it: a file
// would be one more thing for the leftover cleanup, retention and older
// versions to handle. The descriptor is close-on-exec (as every file Go
// opens), so stenotype never holds the lock: when the daemon dies the
// lock goes with it, and the next daemon gets it and then stops the
// orphaned stenotype (orphans.go).

// lockDirs locks every thread directory. On failure nothing stays locked.
func lockDirs(threads []store.Thread) ([]*os.File, error) {
	var locks []*os.File
	for _, th := range threads {
		for _, d := range []string{th.PacketsDirectory, th.IndexDirectory} {
			f, err := lockDir(d)
			if err != nil {
				unlockDirs(locks)
				return nil, err
			}
			locks = append(locks, f)
		}
	}
	return locks, nil
}

func lockDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("supervisor: lock thread directory: %w", err)
	}
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return f, nil
	}
	defer f.Close()
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return nil, fmt.Errorf("supervisor: flock %s: %w", dir, err)
	}
	holder := "another process"
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) == nil {
		if pid := flockHolder(st.Dev, st.Ino); pid > 0 {
			holder = fmt.Sprintf("process %d", pid)
			if comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); err == nil {
				holder += " (" + strings.TrimSpace(string(comm)) + ")"
			}
		}
	}
	return nil, fmt.Errorf("supervisor: thread directory %s is in use by %s, which holds its lock: "+
		"two daemons on one directory delete each other's files; stop the other daemon or give this one other directories: %w",
		dir, holder, ErrInUse)
}

// ErrInUse is the error of New when a thread directory is locked by
// another daemon.
var ErrInUse = errors.New("supervisor: thread directory in use")

func unlockDirs(locks []*os.File) {
	for _, f := range locks {
		f.Close() // closing the last descriptor releases the flock
	}
}

// flockHolder finds the pid holding a FLOCK on the file (dev, ino) in
// /proc/locks ("1: FLOCK  ADVISORY  WRITE 1234 08:02:1311 0 EOF"), or 0.
func flockHolder(dev, ino uint64) int {
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(dev), unix.Minor(dev), ino)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 6 && fields[1] == "FLOCK" && fields[5] == want {
			if pid, err := strconv.Atoi(fields[4]); err == nil {
				return pid
			}
		}
	}
	return 0
}
