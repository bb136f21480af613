package fleet

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/stenographer-ng/stenographer/stenographer/server/servertest"
)

func TestRing(t *testing.T) {
	for _, tc := range []struct {
		size, adds int
		want       []int64 // the Packets of the samples, oldest first
	}{
		{size: 3, adds: 0, want: nil},
		{size: 3, adds: 2, want: []int64{1, 2}},
		{size: 3, adds: 3, want: []int64{1, 2, 3}},
		{size: 3, adds: 4, want: []int64{2, 3, 4}},
		{size: 3, adds: 10, want: []int64{8, 9, 10}},
		{size: 1, adds: 5, want: []int64{5}},
		{size: 0, adds: 2, want: []int64{2}}, // never less than one
	} {
		t.Run(fmt.Sprintf("%d into %d", tc.adds, tc.size), func(t *testing.T) {
			r := newRing(tc.size)
			for i := 1; i <= tc.adds; i++ {
				r.add(Sample{Packets: int64(i)})
			}
			var got []int64
			for _, s := range r.samples() {
				got = append(got, s.Packets)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("samples %v, want %v", got, tc.want)
			}
			last, ok := r.last()
			if ok != (len(tc.want) > 0) || ok && last.Packets != tc.want[len(tc.want)-1] {
				t.Errorf("last %v %v, want the newest of %v", last.Packets, ok, tc.want)
			}
		})
	}
}

func TestRingSize(t *testing.T) {
	for _, tc := range []struct {
		interval, history time.Duration
		want              int
	}{
		{30 * time.Second, 6 * time.Hour, 721},
		{time.Second, time.Minute, 61},
		{time.Second, 48 * time.Hour, 4096},
		{time.Minute, time.Minute, 2},
		{0, time.Hour, 1},
	} {
		if got := ringSize(tc.interval, tc.history, 4096); got != tc.want {
			t.Errorf("ringSize(%v, %v) = %d, want %d", tc.interval, tc.history, got, tc.want)
		}
	}
}

func TestRates(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	up := func(sec int, packets, drops int64) Sample {
		return Sample{Time: t0.Add(time.Duration(sec) * time.Second), Up: true, Packets: packets, Drops: drops}
	}
	down := Sample{Time: t0.Add(20 * time.Second), Err: "timed out"}
	for _, tc := range []struct {
		name         string
		prev, cur    Sample
		rated        bool
		packets, drs float64
	}{
		{"steady", up(0, 1000, 10), up(10, 3000, 30), true, 200, 2},
		{"no traffic", up(0, 1000, 10), up(10, 1000, 10), true, 0, 0},
		{"counters reset: a restarted sensor counts from zero", up(0, 5000, 50), up(10, 400, 0), true, 40, 0},
		{"drops alone reset", up(0, 100, 50), up(5, 600, 5), true, 100, 1},
		{"first sample", Sample{}, up(10, 10, 0), false, 0, 0},
		{"previous was down", down, up(30, 10, 0), false, 0, 0},
		{"current is down", up(0, 10, 0), down, false, 0, 0},
		{"clock went back", up(10, 10, 0), up(5, 20, 0), false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := withRates(tc.prev, tc.cur)
			if (s.PacketsPerSecond != nil) != tc.rated || (s.DropsPerSecond != nil) != tc.rated {
				t.Fatalf("rates %v %v, want rated %v", s.PacketsPerSecond, s.DropsPerSecond, tc.rated)
			}
			if tc.rated && (*s.PacketsPerSecond != tc.packets || *s.DropsPerSecond != tc.drs) {
				t.Errorf("rates %v/s, %v/s; want %v, %v", *s.PacketsPerSecond, *s.DropsPerSecond, tc.packets, tc.drs)
			}
		})
	}
}

// A down sample between two up ones does not break the rates: they are
// taken from the last up sample.
func TestHealthRecordSkipsDown(t *testing.T) {
	h := &health{rings: []*ring{newRing(10)}, lastUp: make([]Sample, 1)}
	t0 := time.Unix(1_700_000_000, 0)
	h.record(0, Sample{Time: t0, Up: true, Packets: 100})
	h.record(0, Sample{Time: t0.Add(10 * time.Second), Err: "refused"})
	s := h.record(0, Sample{Time: t0.Add(20 * time.Second), Up: true, Packets: 500})
	if s.PacketsPerSecond == nil || *s.PacketsPerSecond != 20 {
		t.Errorf("rate after a down sample %v, want 20/s over the 20 s since the last up one", s.PacketsPerSecond)
	}
	if n := len(h.samples(0)); n != 3 {
		t.Errorf("%d samples, want 3", n)
	}
}

// endless is an endless stream of well-formed sample lines.
type endless struct{ off int }

func (e *endless) Read(p []byte) (int, error) {
	const line = "stenographer_captured_packets_total{thread=\"0\"} 1\n"
	for i := range p {
		p[i] = line[e.off%len(line)]
		e.off++
	}
	return len(p), nil
}

func TestParseMetrics(t *testing.T) {
	const good = `# HELP stenographer_captured_packets_total Packets stenotype stored.
# TYPE stenographer_captured_packets_total counter
stenographer_captured_packets_total{thread="0"} 1200
stenographer_captured_packets_total{thread="1"} 34
stenographer_dropped_packets_total{thread="0"} 5
stenographer_dropped_packets_total{thread="1"} 2.0e+00
stenographer_disk_free_bytes{kind="index",thread="0"} 9000
stenographer_disk_free_bytes{kind="packets",thread="0"} 7000 1700000000000
go_goroutines 12
weird{label="a } \" b"} 1
`
	for _, tc := range []struct {
		name                 string
		body                 io.Reader
		packets, drops, free float64
		hasFree              bool
		err                  string
	}{
		{"a sensor's metrics", strings.NewReader(good), 1234, 7, 7000, true, ""},
		{"before stenotype's first STATS line", strings.NewReader("go_goroutines 3\n"), 0, 0, 0, false, ""},
		{"empty", strings.NewReader(""), 0, 0, 0, false, "no samples"},
		{"only comments", strings.NewReader("# HELP x y\n\n"), 0, 0, 0, false, "no samples"},
		{"HTML", strings.NewReader("<html><body>login</body></html>\n"), 0, 0, 0, false, "line 1"},
		{"a value that is not a number", strings.NewReader("go_goroutines 3\nstenographer_captured_packets_total{thread=\"0\"} lots\n"), 0, 0, 0, false, "line 2"},
		{"unterminated labels", strings.NewReader("stenographer_captured_packets_total{thread=\"0 1\n"), 0, 0, 0, false, "unterminated"},
		{"no value", strings.NewReader("stenographer_captured_packets_total\n"), 0, 0, 0, false, "line 1"},
		{"too many fields", strings.NewReader("go_goroutines 1 2 3\n"), 0, 0, 0, false, "line 1"},
		{"a negative counter", strings.NewReader("stenographer_dropped_packets_total -4\n"), 0, 0, 0, false, "is -4"},
		{"a NaN counter", strings.NewReader("stenographer_captured_packets_total NaN\n"), 0, 0, 0, false, "is NaN"},
		{"a line longer than 64 KiB", strings.NewReader("x" + strings.Repeat("y", 70<<10) + " 1\n"), 0, 0, 0, false, "too long"},
		{"an endless body", &endless{}, 0, 0, 0, false, "larger than"},
		{"just over the cap", io.MultiReader(strings.NewReader("go_goroutines 1\n#"), strings.NewReader(strings.Repeat("# x\n", MaxMetricsBytes/4))),
			0, 0, 0, false, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parseMetrics(tc.body)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.packets != tc.packets || m.drops != tc.drops || m.hasDiskFree != tc.hasFree || m.diskFree != tc.free {
				t.Errorf("got %+v; want packets %v, drops %v, free %v (%v)", m, tc.packets, tc.drops, tc.free, tc.hasFree)
			}
		})
	}
}

// sensorPages serves /debug/stats as stats and /metrics from metrics.
func sensorPages(stats string, metrics func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/debug/stats":
			io.WriteString(w, stats)
		case "/metrics":
			metrics(w, r)
		default:
			http.NotFound(w, r)
		}
	}
}

// TestPoll polls sensors over mutual TLS: a good one, and ones whose
// /metrics is endless, hangs or is missing; the bad ones are down with
// a reason, promptly, and stenofleet's gauges say so.
func TestPoll(t *testing.T) {
	set := servertest.Certs(t)
	const stats = "capture_up\t1\ncurrent_bytes\t4096\ndisk_free_bytes\t123456\noldest_timestamp\t1700000000000000000\n"
	endlessMetrics := func(w http.ResponseWriter, _ *http.Request) { io.Copy(w, io.LimitReader(&endless{}, 64<<20)) }
	hang := func(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	f := newFleet(t, set, time.Minute,
		fakeSensor{"good", sensorPages(stats, func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "stenographer_captured_packets_total{thread=\"0\"} 10\nstenographer_dropped_packets_total{thread=\"0\"} 1\n")
		})},
		fakeSensor{"endless", sensorPages(stats, endlessMetrics)},
		fakeSensor{"hangs", sensorPages(stats, hang)},
		fakeSensor{"no-metrics", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/debug/stats" {
				io.WriteString(w, stats)
				return
			}
			http.NotFound(w, r)
		}},
	)
	for i, want := range []string{"", "larger than", "deadline exceeded", "HTTP 404"} {
		sn := f.sensors[i]
		start := time.Now()
		s := f.health.record(i, sn.poll(context.Background(), 2*time.Second))
		f.metrics.sensorHealth(sn.cfg.Name, s)
		if took := time.Since(start); took > time.Minute {
			t.Errorf("%s: poll took %v", sn.cfg.Name, took)
		}
		if want != "" {
			if s.Up || !strings.Contains(s.Err, want) {
				t.Errorf("%s: up %v, error %q; want down with %q", sn.cfg.Name, s.Up, s.Err, want)
			}
			if v := gaugeValue(t, f.metrics.health.up, sn.cfg.Name); v != 0 {
				t.Errorf("%s: stenofleet_sensor_up %v, want 0", sn.cfg.Name, v)
			}
			continue
		}
		if !s.Up || s.Err != "" || s.Packets != 10 || s.Drops != 1 || s.DiskBytes != 4096 ||
			s.DiskFree == nil || *s.DiskFree != 123456 || !s.Oldest.Equal(time.Unix(1_700_000_000, 0)) ||
			s.CaptureUp == nil || !*s.CaptureUp {
			t.Errorf("%s: sample %+v", sn.cfg.Name, s)
		}
		g := f.metrics.health
		for _, c := range []struct {
			name string
			vec  *prometheus.GaugeVec
			want float64
		}{{"up", g.up, 1}, {"disk_free", g.diskFree, 123456}, {"disk_bytes", g.diskBytes, 4096}, {"oldest", g.oldest, 1_700_000_000}} {
			if got := gaugeValue(t, c.vec, sn.cfg.Name); got != c.want {
				t.Errorf("%s: gauge %s = %v, want %v", sn.cfg.Name, c.name, got, c.want)
			}
		}
	}
}

func gaugeValue(t *testing.T, v *prometheus.GaugeVec, sensor string) float64 {
	t.Helper()
	var m dto.Metric
	if err := v.WithLabelValues(sensor).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}
