package daemon

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Process trees: the daemon, stenotype and the clients the tests start, found
// and stopped through /proc so nothing outlives a test.

// Children returns the pids whose parent is pid.
func Children(pid int) []int {
	var out []int
	for p, pp := range parents() {
		if pp == pid {
			out = append(out, p)
		}
	}
	sort.Ints(out)
	return out
}

// Descendants returns every process below pid.
func Descendants(pid int) []int {
	par := parents()
	var out []int
	for p := range par {
		for q, n := p, 0; q > 1 && n < 64; q, n = par[q], n+1 {
			if par[q] == pid {
				out = append(out, p)
				break
			}
		}
	}
	sort.Ints(out)
	return out
}

// parents maps every pid to its parent pid, from /proc/<pid>/stat.
func parents() map[int]int {
	out := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		out[pid] = ppid
	}
	return out
}

func alivePIDs(pids []int) []int {
	var out []int
	for _, p := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(data)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			if f := strings.Fields(s[i+1:]); len(f) > 0 && f[0] == "Z" {
				continue // a zombie is dead
			}
		}
		out = append(out, p)
	}
	return out
}

func killAll(pids []int) {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

// ProcessAlive reports whether pid runs (and is no zombie).
func ProcessAlive(pid int) bool { return len(alivePIDs([]int{pid})) == 1 }
