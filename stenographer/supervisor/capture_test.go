package supervisor

import (
	"syscall"
	"testing"
	"time"
)

// TestCaptureState: capture is down from New until stenotype starts, up
// while it runs, and down again, since its exit, once it is killed.
func TestCaptureState(t *testing.T) {
	_, th := threads(t, 1)
	rec := newRecorder()
	cfg := fast(script(t, "exec sleep 600"), th, rec)
	cfg.BackoffBase, cfg.BackoffMax = time.Hour, time.Hour // stay down after the kill
	before := time.Now()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(t, s)
	if up, since := s.CaptureState(); up || since.Before(before) || since.After(time.Now()) {
		t.Errorf("before Start: up %v since %v; want down since New", up, since)
	}
	s.Start()
	waitFor(t, "stenotype to run", rec, func() bool { up, _ := s.CaptureState(); return up && s.Pid() != 0 })
	killed := time.Now()
	if err := syscall.Kill(s.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "capture to be down", rec, func() bool { up, _ := s.CaptureState(); return !up })
	if _, since := s.CaptureState(); since.Before(killed) {
		t.Errorf("down since %v, before the kill at %v", since, killed)
	}
}
