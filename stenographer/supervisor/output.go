package supervisor

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/metrics"
)

// statsRE matches stenotype's STATS line (totals since it started). The
// trailing counters came later and are optional, so an older stenotype's
// lines still count.
var statsRE = regexp.MustCompile(`STATS thread=(\d+) packets=(\d+) bytes=(\d+) drops=(\d+)` +
	`(?: .*?blocks_dropped=(\d+))?(?: .*?socket_errors=(\d+))?`)

// stats is one STATS line.
type stats struct {
	thread int
	metrics.StenotypeStats
}

func parseStats(line string) (stats, bool) {
	m := statsRE.FindStringSubmatch(line)
	if m == nil {
		return stats{}, false
	}
	var s stats
	var err error
	if s.thread, err = strconv.Atoi(m[1]); err != nil {
		return stats{}, false
	}
	for i, p := range []*uint64{&s.Packets, &s.Bytes, &s.Drops, &s.BlocksDropped, &s.SocketErrors} {
		if m[i+2] == "" {
			continue
		}
		if *p, err = strconv.ParseUint(m[i+2], 10, 64); err != nil {
			return stats{}, false
		}
	}
	return s, true
}

// maxLine bounds one forwarded line; the rest of a longer line is cut.
const maxLine = 16 << 10

// lineWriter is stenotype's stdout or stderr: it splits the stream into
// lines and hands each to onLine. exec copies the pipe into it.
type lineWriter struct {
	mu     sync.Mutex
	buf    []byte
	onLine func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p[:min(len(p), max(0, maxLine-len(w.buf)))]...)
			break
		}
		line := append(w.buf, p[:min(i, max(0, maxLine-len(w.buf)))]...)
		w.onLine(strings.TrimRight(string(line), "\r"))
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// flush hands on a last line without a newline.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.onLine(string(w.buf))
		w.buf = w.buf[:0]
	}
}

// runOutput follows one stenotype process's output: it logs each line,
// feeds STATS lines to the metrics and remembers what the stale check
// and the exit message need.
type runOutput struct {
	log *slog.Logger
	ids []int            // daemon-wide number of each of stenotype's threads
	now func() time.Time // when a line came (a fake clock in tests)

	mu       sync.Mutex
	lastLine string            // last non-STATS line, for the exit message
	stats    map[int]stats     // last STATS of each thread
	statsAt  map[int]time.Time // when it came
}

// newRunOutput follows a stenotype whose thread i is the daemon's thread
// ids[i] (nil: the same number).
func newRunOutput(log *slog.Logger, ids []int) *runOutput {
	return &runOutput{log: log, ids: ids, now: time.Now, stats: map[int]stats{}, statsAt: map[int]time.Time{}}
}

// global returns the daemon-wide number of stenotype's thread i.
func (o *runOutput) global(i int) int {
	if i >= 0 && i < len(o.ids) {
		return o.ids[i]
	}
	return i
}

func (o *runOutput) line(stream string, l string) {
	if l == "" {
		return
	}
	if s, ok := parseStats(l); ok {
		metrics.RecordStenotypeStats(o.global(s.thread), s.StenotypeStats)
		o.mu.Lock()
		o.stats[s.thread] = s
		o.statsAt[s.thread] = o.now()
		o.mu.Unlock()
		// Info: one line per thread every --stats_sec (60 s by default)
		// is the capture rate an operator wants to see in the log.
		_, text := stenotypeLevel(l)
		o.log.Info("stenotype", stream, text)
		return
	}
	level, text := stenotypeLevel(l)
	o.mu.Lock()
	o.lastLine = text
	o.mu.Unlock()
	o.log.Log(context.Background(), level, "stenotype", stream, text)
}

// stenotypeLevel maps stenotype's own log prefix "<time> <I|E|V> " to a
// level and drops it (the daemon's log has its own time); other lines
// (usage errors, a crash message) are kept whole at info level.
func stenotypeLevel(l string) (slog.Level, string) {
	f := strings.SplitN(l, " ", 3)
	if len(f) != 3 || len(f[0]) < 20 || !strings.HasSuffix(f[0], "Z") || len(f[1]) != 1 {
		return slog.LevelInfo, l
	}
	switch f[1] {
	case "E":
		return slog.LevelWarn, f[2]
	case "V":
		return slog.LevelDebug, f[2]
	case "I":
		return slog.LevelInfo, f[2]
	}
	return slog.LevelInfo, l
}

func (o *runOutput) last() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastLine
}

// threadStats returns thread i's last STATS line and when it came.
func (o *runOutput) threadStats(i int) (stats, time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, ok := o.stats[i]
	return s, o.statsAt[i], ok
}
