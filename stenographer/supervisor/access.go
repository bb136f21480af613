package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// A thread directory stenotype cannot write after dropping privileges
// makes it exit at once, every time: the daemon would back off forever
// while serving nothing new. That is a configuration error, found before
// anything starts: each directory is tested by a child process running
// `test` with stenotype's credentials (uid, gid, no supplementary groups,
// as stenotype's drop sets them), so ACLs, read-only mounts and every
// path component count as the kernel sees them. When it fails, the path
// is walked to name the component and its mode in the message.

// ErrNoAccess is the error of New when the user stenotype runs as cannot
// reach or write a thread directory.
var ErrNoAccess = errors.New("supervisor: thread directory unusable by stenotype's user")

// checkAccess requires that id can search and write every thread
// directory. It runs before the missing ones are made: those are created
// for id, so then id needs only to search down to the deepest existing
// one. Running as that very user (id is ourselves), the kernel's answer
// is asked directly.
func checkAccess(threads []store.Thread, id identity) error {
	for i, th := range threads {
		for _, d := range []struct{ what, dir string }{{"packets", th.PacketsDirectory}, {"index", th.IndexDirectory}} {
			target, write := existingAncestor(d.dir), true
			if target != d.dir {
				write = false
			}
			ok, err := canUse(target, write, id)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("supervisor: thread %d %s directory %s: %s: %w", i, d.what, d.dir, explainAccess(target, write, id), ErrNoAccess)
			}
		}
	}
	return nil
}

// existingAncestor returns dir or its deepest existing parent.
func existingAncestor(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || filepath.Dir(d) == d {
			return d
		}
	}
}

// canUse reports whether id can search dir, and create files in it when
// write is set.
func canUse(dir string, write bool, id identity) (bool, error) {
	if id.uid == os.Geteuid() && id.gid == os.Getegid() {
		mode := uint32(unix.X_OK)
		if write {
			mode |= unix.W_OK
		}
		return unix.Access(dir, mode) == nil, nil
	}
	if os.Geteuid() != 0 {
		// Only root can test as another user; stenotype's own probe will say.
		return true, nil
	}
	args := []string{"-d", dir, "-a", "-x", dir}
	if write {
		args = append(args, "-a", "-w", dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "test", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{
		Uid: uint32(id.uid), Gid: uint32(id.gid), Groups: []uint32{},
	}}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil
	case !errors.As(err, &ee):
		// No test(1) to run: the mode bits must do.
		return modeRefusal(dir, write, id) == "", nil
	}
	return false, fmt.Errorf("supervisor: test access to %s as uid %d: %w", dir, id.uid, err)
}

// explainAccess names the first path component that keeps id out of dir,
// with its mode and owner, and a way out.
func explainAccess(dir string, write bool, id identity) string {
	if why := modeRefusal(dir, write, id); why != "" {
		return why
	}
	// The modes allow it: an ACL, a read-only mount or a security module
	// says no.
	return fmt.Sprintf("user %s cannot write to it (tested as uid %d gid %d; the modes allow it, so an ACL, a read-only mount or a security module refuses)", userName(id.uid), id.uid, id.gid)
}

// modeRefusal walks dir's components and says which one's owner, group
// and other bits keep id out, or "" when none does.
func modeRefusal(dir string, write bool, id identity) string {
	name := userName(id.uid)
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	var parts []string
	for p := abs; ; p = filepath.Dir(p) {
		parts = append([]string{p}, parts...)
		if filepath.Dir(p) == p {
			break
		}
	}
	for i, p := range parts {
		info, err := os.Stat(p)
		if err != nil {
			return fmt.Sprintf("user %s cannot use it: %v", name, err)
		}
		if !info.IsDir() {
			return fmt.Sprintf("%s is not a directory", p)
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			break
		}
		last := write && i == len(parts)-1
		need, verb := fs.FileMode(0o1), "search"
		if last {
			need, verb = 0o3, "write to"
		}
		if permits(info.Mode().Perm(), st, id, need) {
			continue
		}
		fix := fmt.Sprintf("chmod o+x %s or pick a directory it can reach", p)
		if last {
			fix = fmt.Sprintf("chown %s %s or pick a directory it can write", name, p)
		}
		return fmt.Sprintf("user %s cannot %s %s (mode %04o owner %s): %s",
			name, verb, p, info.Mode().Perm(), userName(int(st.Uid)), fix)
	}
	return ""
}

// permits applies the owner/group/other mode bits of a file to id, whose
// only group is its gid (stenotype drops supplementary groups).
func permits(mode fs.FileMode, st *syscall.Stat_t, id identity, need fs.FileMode) bool {
	if id.uid == 0 {
		return true
	}
	shift := 0 // other
	switch {
	case int(st.Uid) == id.uid:
		shift = 6
	case int(st.Gid) == id.gid:
		shift = 3
	}
	return (mode>>shift)&need == need
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(uid)
}
