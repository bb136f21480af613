package supervisor

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A stenographer that dies without stopping stenotype (SIGKILL, OOM)
// leaves it running: Pdeathsig does not survive stenotype's privilege
// drop. That orphan still writes into the thread directories, and the
// leftover cleanup of the next start would delete its open files. So
// before its first start the supervisor looks for private directories of
// an earlier run that link to its own thread directories, stops the
// stenotype given that --dir (SIGTERM, SIGKILL after StopGrace), and
// removes the directory. Nothing else is touched: a private directory of
// another instance links elsewhere.

// reapOrphans is called once, before the first start.
func (s *Supervisor) reapOrphans() {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(s.dir), "stenographer-*"))
	for _, d := range matches {
		if d == s.dir || !s.linksToOurs(d) {
			continue
		}
		inUse := false
		for _, pid := range processesWithArg("--dir=" + d) {
			if ppid, ok := liveStenographerParent(pid); ok {
				// Not an orphan: a daemon that took no directory locks
				// (an older version) shares these directories.
				s.log.Error("another stenographer runs a stenotype on these thread directories; leaving it alone",
					"stenographer_pid", ppid, "stenotype_pid", pid, "dir", d)
				inUse = true
				continue
			}
			s.log.Warn("stopping a stenotype left running by an earlier stenographer", "pid", pid, "dir", d)
			stopProcess(pid, s.cfg.StopGrace)
		}
		if inUse {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			s.log.Warn("cannot remove an earlier private directory", "dir", d, "err", err)
			continue
		}
		s.log.Info("removed an earlier private directory", "dir", d)
	}
}

// linksToOurs reports whether private directory d has a PKT<i> or IDX<i>
// link to one of our thread directories.
func (s *Supervisor) linksToOurs(d string) bool {
	ours := map[string]bool{}
	for _, th := range s.cfg.Threads {
		for _, p := range []string{th.PacketsDirectory, th.IndexDirectory} {
			if abs, err := filepath.Abs(p); err == nil {
				ours[abs] = true
			}
		}
	}
	entries, err := os.ReadDir(d)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "PKT") && !strings.HasPrefix(e.Name(), "IDX") {
			continue
		}
		if target, err := os.Readlink(filepath.Join(d, e.Name())); err == nil && ours[target] {
			return true
		}
	}
	return false
}

// processesWithArg returns the live processes having arg among their
// command-line arguments.
func processesWithArg(arg string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range bytes.Split(cmdline, []byte{0}) {
			if string(a) == arg && alive(pid) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// liveStenographerParent returns pid's parent when that is a running
// stenographer (its command name starts so).
func liveStenographerParent(pid int) (int, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(data[i+1:])) // state, ppid, ...
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil || ppid <= 1 || ppid == os.Getpid() {
		return 0, false
	}
	comm, err := os.ReadFile("/proc/" + f[1] + "/comm")
	if err != nil || !strings.HasPrefix(string(comm), "stenographer") || !alive(ppid) {
		return 0, false
	}
	return ppid, true
}

// alive reports whether pid runs (exists and is not a zombie).
func alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses, which may hold
	// spaces.
	i := bytes.LastIndexByte(data, ')')
	return i >= 0 && i+2 < len(data) && data[i+2] != 'Z'
}

// stopProcess sends SIGTERM and waits up to grace, then sends SIGKILL and
// waits a little more.
func stopProcess(pid int, grace time.Duration) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(pid, grace) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	waitGone(pid, 5*time.Second)
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for alive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
