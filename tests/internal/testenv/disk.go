package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// LoopDisk makes, formats and loop-mounts an ext4 image of sizeMB (no
// reserved blocks, so the disk really fills) and returns its mount point.
// It is unmounted and its loop device released at test end, after
// cleanups registered later (the processes writing to it) have run.
func LoopDisk(t testing.TB, sizeMB int) string {
	t.Helper()
	RequireTools(t, "mkfs.ext4", "mount", "umount", "losetup", "truncate")
	base := DiskTempDir(t)
	img, mnt := filepath.Join(base, "disk.img"), filepath.Join(base, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"truncate", "-s", fmt.Sprintf("%dM", sizeMB), img},
		{"mkfs.ext4", "-q", "-F", "-m", "0", img},
		{"mount", "-o", "loop", img, mnt},
	} {
		if r := Run(time.Minute, args[0], args[1:]...); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	t.Cleanup(func() {
		var err error
		for i := 0; i < 20; i++ {
			if err = Run(time.Minute, "umount", mnt).Err; err == nil {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("cleanup: %v", err)
		}
		// mount -o loop sets autoclear; release anything left regardless.
		if out, err := exec.Command("losetup", "-j", img).Output(); err == nil {
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if dev, _, ok := strings.Cut(l, ":"); ok && dev != "" {
					_ = exec.Command("losetup", "-d", dev).Run()
				}
			}
		}
	})
	return mnt
}

// FillDisk writes a ballast file in dir until its file system has at most
// leave bytes free (0: until ENOSPC), so that a disk-full test does not
// depend on how fast its traffic fills the disk: stenotype writes a sparse
// block only up to its used bytes, and a slow replay fills little. Big
// writes first, then 4 KiB ones (the file system's block) for the rest.
func FillDisk(t testing.TB, dir string, leave int64) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "ballast"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	free := func() int64 {
		var s syscall.Statfs_t
		if err := syscall.Statfs(dir, &s); err != nil {
			t.Fatalf("statfs %s: %v", dir, err)
		}
		return int64(s.Bavail) * s.Bsize
	}
	for _, chunk := range []int64{1 << 20, 4 << 10} {
		buf := make([]byte, chunk)
		for free()-chunk >= leave {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling %s: %v", dir, err)
				}
				break
			}
		}
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v", dir, err)
	}
	t.Logf("filled %s: %d bytes free", dir, free())
}
