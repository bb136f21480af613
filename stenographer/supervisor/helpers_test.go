package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// recorder is a slog.Handler keeping every record, so tests can assert on
// what the daemon logs. Attributes are flattened to strings.
type recorder struct {
	mu    *sync.Mutex
	recs  *[]record
	attrs []slog.Attr
}

type record struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

func (r record) String() string { return fmt.Sprintf("%s %q %v", r.Level, r.Msg, r.Attrs) }

func newRecorder() *recorder { return &recorder{mu: &sync.Mutex{}, recs: &[]record{}} }

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *recorder) WithGroup(string) slog.Handler            { return h }
func (h *recorder) WithAttrs(a []slog.Attr) slog.Handler {
	return &recorder{mu: h.mu, recs: h.recs, attrs: append(append([]slog.Attr(nil), h.attrs...), a...)}
}

func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	rec := record{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	*h.recs = append(*h.recs, rec)
	h.mu.Unlock()
	return nil
}

func (h *recorder) logger() *slog.Logger { return slog.New(h) }

// find returns the records with message msg.
func (h *recorder) find(msg string) []record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []record
	for _, r := range *h.recs {
		if r.Msg == msg {
			out = append(out, r)
		}
	}
	return out
}

func (h *recorder) dump() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for _, r := range *h.recs {
		b.WriteString(r.String() + "\n")
	}
	return b.String()
}

// waitFor polls cond with a generous deadline (the machine is slow and
// shared); it fails the test with the log when cond never holds.
func waitFor(t *testing.T, what string, rec *recorder, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; log:\n%s", what, rec.dump())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// script writes an executable shell script standing in for stenotype.
// Its first lines find --dir in the arguments as $dir.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake-stenotype")
	text := "#!/bin/sh\nfor a; do case \"$a\" in --dir=*) dir=${a#--dir=};; esac; done\n" + body + "\n"
	if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// threads returns n thread directory pairs under a new temp dir (not yet
// created).
func threads(t *testing.T, n int) (string, []store.Thread) {
	t.Helper()
	base := t.TempDir()
	// t.TempDir and its parent are 0700; as root, stenotype's user
	// (nobody) must reach the thread directories or New refuses them.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var out []store.Thread
	for i := 0; i < n; i++ {
		out = append(out, store.Thread{
			PacketsDirectory: filepath.Join(base, fmt.Sprintf("t%d", i), "pkt"),
			IndexDirectory:   filepath.Join(base, fmt.Sprintf("t%d", i), "idx"),
		})
	}
	return base, out
}

// fast returns a Config with knobs small enough for tests.
func fast(path string, th []store.Thread, rec *recorder) Config {
	return Config{
		StenotypePath: path, Interface: "lo", Threads: th, Logger: rec.logger(),
		StaleTimeout: -1, CheckInterval: 20 * time.Millisecond,
		BackoffBase: 20 * time.Millisecond, BackoffMax: 80 * time.Millisecond,
		HealthyAfter: time.Hour, StopGrace: 10 * time.Second,
	}
}

func stop(t *testing.T, s *Supervisor) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return s.Stop(ctx)
}
