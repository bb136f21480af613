package supervisor

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// staleTracker notices a thread that stopped producing files. A thread is
// stale when its packet directory has had no new file (hidden or visible)
// and its newest file has not grown for the timeout (growth counts, so a
// --fileage_sec above the timeout does not get a busy stenotype killed),
// unless stenotype's STATS lines in that time show that
// no packet reached the thread: an idle link is not a fault, and
// restarting would not make files appear. A stenotype that prints no
// STATS at all in that time is treated as stuck.
type staleTracker struct {
	threads []store.Thread
	timeout time.Duration
	out     *runOutput
	log     *slog.Logger
	newest  []string
	size    []int64
	since   []time.Time // when newest last changed (or the idle check last passed)
	base    []stats     // the thread's STATS at since
}

// newStaleTracker starts tracking at now (stenotype's start).
func newStaleTracker(threads []store.Thread, timeout time.Duration, out *runOutput, log *slog.Logger, now time.Time) *staleTracker {
	t := &staleTracker{threads: threads, timeout: timeout, out: out, log: log,
		newest: make([]string, len(threads)), size: make([]int64, len(threads)), since: make([]time.Time, len(threads)), base: make([]stats, len(threads))}
	for i, th := range threads {
		t.newest[i], t.size[i], _ = newest(th.PacketsDirectory)
		t.since[i] = now
	}
	return t
}

// check returns why stenotype is stale, or "".
func (t *staleTracker) check(now time.Time) string {
	if t.timeout < 0 {
		return ""
	}
	for i, th := range t.threads {
		name, size, err := newest(th.PacketsDirectory)
		if err != nil {
			t.log.Warn("stale check: cannot read directory", "thread", t.out.global(i), "err", err)
			continue
		}
		if name != t.newest[i] || size != t.size[i] {
			t.newest[i], t.size[i], t.since[i] = name, size, now
			t.base[i], _, _ = t.out.threadStats(i)
			continue
		}
		if now.Sub(t.since[i]) < t.timeout {
			continue
		}
		st, at, ok := t.out.threadStats(i)
		if ok && at.After(t.since[i]) && st.Packets == t.base[i].Packets && st.Drops == t.base[i].Drops {
			t.log.Debug("thread idle: no packets and no new file", "thread", t.out.global(i), "for", now.Sub(t.since[i]).Round(time.Second))
			t.since[i] = now
			continue
		}
		return fmt.Sprintf("thread %d: no new file in %s for %v", t.out.global(i), th.PacketsDirectory, t.timeout)
	}
	return ""
}
