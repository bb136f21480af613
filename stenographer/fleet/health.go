package fleet

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Sample is one poll of a sensor's /debug/stats and /metrics: what the
// sensor page and GET /sensors/history show.
type Sample struct {
	Time time.Time `json:"time"`
	// Up is true when both pages answered and parsed; Err says why not.
	Up  bool   `json:"up"`
	Err string `json:"error,omitempty"`
	// CaptureUp is the sensor's own word on stenotype (absent from
	// sensors that do not say).
	CaptureUp *bool `json:"capture_up,omitempty"`
	// Oldest is the sensor's oldest_timestamp: from then on every thread
	// has packets, the retention it really has.
	Oldest time.Time `json:"oldest_packet,omitzero"`
	// Packets and Drops are the sensor's cumulative counters, summed over
	// threads: packets stenotype stored, packets the kernel dropped.
	Packets int64 `json:"packets"`
	Drops   int64 `json:"drops"`
	// DiskBytes is the size of the stored packet files; DiskFree the
	// space left in the fullest of the sensor's directories (absent when
	// the sensor does not report it).
	DiskBytes int64  `json:"disk_bytes"`
	DiskFree  *int64 `json:"disk_free_bytes,omitempty"`
	// The rates since the sensor's previous up sample; absent for the
	// first one.
	PacketsPerSecond *float64 `json:"packets_per_second,omitempty"`
	DropsPerSecond   *float64 `json:"drops_per_second,omitempty"`
}

// rate is a counter's increase per second from prev to cur. A counter
// below its previous value was reset (the sensor restarted), so all of
// cur is new.
func rate(prev, cur int64, dt time.Duration) float64 {
	d := cur - prev
	if cur < prev {
		d = cur
	}
	return float64(d) / dt.Seconds()
}

// withRates fills s's rates from prev, the sensor's previous up sample.
func withRates(prev, s Sample) Sample {
	dt := s.Time.Sub(prev.Time)
	if !s.Up || !prev.Up || dt <= 0 {
		return s
	}
	p, d := rate(prev.Packets, s.Packets, dt), rate(prev.Drops, s.Drops, dt)
	s.PacketsPerSecond, s.DropsPerSecond = &p, &d
	return s
}

// ring keeps the newest len(buf) samples.
type ring struct {
	buf  []Sample
	next int // where the next sample goes
	full bool
}

func newRing(n int) *ring { return &ring{buf: make([]Sample, max(n, 1))} }

func (r *ring) add(s Sample) {
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	r.full = r.full || r.next == 0
}

// samples returns a copy, oldest first.
func (r *ring) samples() []Sample {
	if !r.full {
		return append([]Sample(nil), r.buf[:r.next]...)
	}
	return append(append([]Sample(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

// last returns the newest sample.
func (r *ring) last() (Sample, bool) {
	if !r.full && r.next == 0 {
		return Sample{}, false
	}
	return r.buf[(r.next+len(r.buf)-1)%len(r.buf)], true
}

// ringSize is how many samples cover history at interval, within max.
func ringSize(interval, history time.Duration, max int) int {
	if interval <= 0 {
		return 1
	}
	n := history/interval + 1
	if n > time.Duration(max) {
		return max
	}
	return int(n)
}

// MaxMetricsBytes bounds what stenofleet reads of a sensor's /metrics: a
// sensor's exposition is a few KiB, a hostile or broken one is cut here.
const MaxMetricsBytes = 4 << 20

// errTooLarge is returned by a cappedReader past its cap.
var errTooLarge = fmt.Errorf("larger than %d bytes", MaxMetricsBytes)

// cappedReader fails, rather than ends, past its cap: a body cut short
// would parse as a smaller, wrong one.
type cappedReader struct {
	r    io.Reader
	left int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return 0, errTooLarge
	}
	return n, err
}

// The sensor metrics the health samples use (stenographer/metrics and
// stenographer/server export them).
const (
	metricCaptured = "stenographer_captured_packets_total"
	metricDropped  = "stenographer_dropped_packets_total"
	metricDiskFree = "stenographer_disk_free_bytes"
)

// sensorMetrics is what a sensor's /metrics says about its health.
type sensorMetrics struct {
	packets, drops float64 // summed over threads
	diskFree       float64 // least over directories
	hasDiskFree    bool
}

// parseMetrics reads Prometheus text exposition, keeping the sums of the
// counters above. Every sample line must be well formed (a line number
// names the first one that is not), and a body with no samples is not
// Prometheus text.
func parseMetrics(r io.Reader) (sensorMetrics, error) {
	var m sensorMetrics
	cr := &cappedReader{r: r, left: MaxMetricsBytes}
	sc := bufio.NewScanner(cr)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	samples := 0
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, v, err := sampleLine(line)
		if err != nil && cr.left < 0 {
			// The scanner hands over the line the cap cut first.
			return m, errTooLarge
		}
		if err != nil {
			return m, fmt.Errorf("line %d: %w", n, err)
		}
		samples++
		switch name {
		case metricCaptured, metricDropped, metricDiskFree:
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				return m, fmt.Errorf("line %d: %s is %v", n, name, v)
			}
		}
		switch name {
		case metricCaptured:
			m.packets += v
		case metricDropped:
			m.drops += v
		case metricDiskFree:
			if !m.hasDiskFree || v < m.diskFree {
				m.diskFree, m.hasDiskFree = v, true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if samples == 0 {
		return m, errors.New("no samples: not Prometheus text")
	}
	return m, nil
}

// sampleLine splits `name{labels} value [timestamp]`.
func sampleLine(line string) (string, float64, error) {
	end := strings.IndexAny(line, "{ \t")
	if end <= 0 {
		return "", 0, fmt.Errorf("%.40q is not a sample", line)
	}
	name, rest := line[:end], line[end:]
	for _, c := range name {
		if !(c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "", 0, fmt.Errorf("%.40q is not a metric name", name)
		}
	}
	if rest[0] == '{' {
		j := labelsEnd(rest)
		if j < 0 {
			return "", 0, fmt.Errorf("%s: unterminated labels", name)
		}
		rest = rest[j+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 {
		return "", 0, fmt.Errorf("%s: want a value and an optional timestamp, have %.40q", name, rest)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return "", 0, fmt.Errorf("%s: value %.40q: %w", name, f[0], strconv.ErrSyntax)
	}
	return name, v, nil
}

// labelsEnd is the index of the '}' closing s's labels, skipping quoted
// values (which may hold '}' and escaped quotes); -1 when there is none.
func labelsEnd(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '}':
			return i
		}
	}
	return -1
}
