package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/fleet/config"
)

// health holds every sensor's samples, in the fleet's sensor order.
type health struct {
	interval, history time.Duration
	// timeout bounds one poll (both requests) of one sensor.
	timeout time.Duration

	mu    sync.Mutex
	rings []*ring
	// lastUp is each sensor's newest up sample, the base of the rates
	// (a down sample between two up ones has no counters).
	lastUp []Sample
}

func newHealth(cfg *config.Config, sensors int) *health {
	iv, hist := time.Duration(cfg.HealthInterval), time.Duration(cfg.HealthHistory)
	if iv <= 0 {
		iv = config.DefaultHealthInterval
	}
	if hist < iv {
		hist = max(iv, config.DefaultHealthHistory)
	}
	h := &health{interval: iv, history: hist, timeout: min(max(iv, 5*time.Second), 30*time.Second),
		rings: make([]*ring, sensors), lastUp: make([]Sample, sensors)}
	for i := range h.rings {
		h.rings[i] = newRing(ringSize(iv, hist, config.MaxHealthSamples))
	}
	return h
}

// record adds sensor i's sample, with its rates, and returns it.
func (h *health) record(i int, s Sample) Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	s = withRates(h.lastUp[i], s)
	if s.Up {
		h.lastUp[i] = s
	}
	h.rings[i].add(s)
	return s
}

func (h *health) latest(i int) (Sample, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rings[i].last()
}

func (h *health) samples(i int) []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rings[i].samples()
}

// RunHealth polls every sensor's /debug/stats and /metrics at once and
// then every HEALTH_INTERVAL, until ctx is done. Each sensor has its own
// schedule: a slow one delays only its own samples.
func (f *Fleet) RunHealth(ctx context.Context) {
	var wg sync.WaitGroup
	for i, sn := range f.sensors {
		wg.Go(func() {
			t := time.NewTicker(f.health.interval)
			defer t.Stop()
			for {
				s := f.health.record(i, sn.poll(ctx, f.health.timeout))
				f.metrics.sensorHealth(sn.cfg.Name, s)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	wg.Wait()
}

// poll takes one sample of the sensor.
func (sn *sensor) poll(ctx context.Context, timeout time.Duration) Sample {
	s := Sample{Time: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := sn.stats(ctx, timeout)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	m, err := sn.metricsPage(ctx)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	s.Up = true
	num := func(k string) (int64, bool) { n, ok := st[k].(int64); return n, ok }
	if n, ok := num("oldest_timestamp"); ok && n > 0 {
		s.Oldest = time.Unix(0, n).UTC()
	}
	s.DiskBytes, _ = num("current_bytes")
	if n, ok := num("capture_up"); ok {
		up := n == 1
		s.CaptureUp = &up
	}
	if n, ok := num("disk_free_bytes"); ok {
		s.DiskFree = &n
	} else if m.hasDiskFree {
		n := int64(m.diskFree)
		s.DiskFree = &n
	}
	s.Packets, s.Drops = int64(m.packets), int64(m.drops)
	return s
}

// metricsPage reads the sensor's /metrics, at most MaxMetricsBytes.
func (sn *sensor) metricsPage(ctx context.Context) (sensorMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sn.base+"/metrics", nil)
	if err != nil {
		return sensorMetrics{}, err
	}
	resp, err := sn.client.Do(req)
	if err != nil {
		return sensorMetrics{}, fmt.Errorf("GET /metrics: %w", describe(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return sensorMetrics{}, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	m, err := parseMetrics(resp.Body)
	if err != nil {
		return m, fmt.Errorf("GET /metrics: %w", describe(err))
	}
	return m, nil
}

// SensorHistory is one sensor's part of GET /sensors/history.
type SensorHistory struct {
	Name    string   `json:"name"`
	Samples []Sample `json:"samples"`
}

// handleHistory answers GET /sensors/history[?sensor=NAME]: the samples
// of one sensor, or of all, oldest first.
func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	want := r.URL.Query().Get("sensor")
	out := struct {
		Interval float64         `json:"interval_seconds"`
		History  float64         `json:"history_seconds"`
		Sensors  []SensorHistory `json:"sensors"`
	}{Interval: s.fleet.health.interval.Seconds(), History: s.fleet.health.history.Seconds(), Sensors: []SensorHistory{}}
	for i, sn := range s.fleet.sensors {
		if want == "" || want == sn.cfg.Name {
			out.Sensors = append(out.Sensors, SensorHistory{Name: sn.cfg.Name, Samples: s.fleet.health.samples(i)})
		}
	}
	if want != "" && len(out.Sensors) == 0 {
		http.Error(w, fmt.Sprintf("no sensor %q", want), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(out)
}
