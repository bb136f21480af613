package fleet_test

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// healthSample is a sample of GET /sensors/history and /sensors.
type healthSample struct {
	Time             time.Time `json:"time"`
	Up               bool      `json:"up"`
	Err              string    `json:"error"`
	Oldest           time.Time `json:"oldest_packet"`
	Packets          int64     `json:"packets"`
	Drops            int64     `json:"drops"`
	DiskBytes        int64     `json:"disk_bytes"`
	DiskFree         *int64    `json:"disk_free_bytes"`
	PacketsPerSecond *float64  `json:"packets_per_second"`
	DropsPerSecond   *float64  `json:"drops_per_second"`
}

type healthHistory struct {
	Interval float64 `json:"interval_seconds"`
	Sensors  []struct {
		Name    string         `json:"name"`
		Samples []healthSample `json:"samples"`
	} `json:"sensors"`
}

// sensorHealth checks stenofleet's polls of the sensors (HEALTH_INTERVAL
// 1s): GET /sensors/history, the health in GET /sensors and the
// stenofleet_sensor_* gauges, against what the test sent each sensor.
func (e *fleetEnv) sensorHealth(t *testing.T) {
	// Each good sensor's newest sample is up, with a rate (so at least
	// two up samples) and the capture counted: stenotype reports its
	// counters in periodic STATS lines, which may lag the traffic.
	var h healthHistory
	newest := map[string]healthSample{}
	ready := func() bool {
		h = healthHistory{}
		if err := json.Unmarshal(e.getRaw(t, "/sensors/history", http.StatusOK), &h); err != nil {
			t.Fatalf("GET /sensors/history: %v", err)
		}
		for _, s := range h.Sensors {
			if len(s.Samples) > 0 {
				newest[s.Name] = s.Samples[len(s.Samples)-1]
			}
		}
		for _, sn := range e.sensors {
			s, ok := newest[sn.name]
			if !ok || !s.Up || s.PacketsPerSecond == nil || s.Packets < perSensor {
				return false
			}
		}
		_, ok := newest["sensor-badcert"]
		return ok
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !ready() {
		if time.Now().After(deadline) {
			t.Fatalf("after 2 min, the sensors' newest health samples are %+v; want each good one up, rated, with >= %d packets",
				newest, perSensor)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if h.Interval != 1 || len(h.Sensors) != len(e.sensors)+1 {
		t.Errorf("/sensors/history: interval %v s, %d sensors; want 1 s, %d", h.Interval, len(h.Sensors), len(e.sensors)+1)
	}
	now := time.Now()
	for _, sn := range e.sensors {
		s := newest[sn.name]
		if s.Err != "" || s.Drops < 0 || s.DiskBytes <= 0 || s.DiskFree == nil || *s.DiskFree <= 0 ||
			s.DropsPerSecond == nil || *s.PacketsPerSecond < 0 || *s.DropsPerSecond < 0 {
			t.Errorf("%s: newest sample %+v", sn.name, s)
		}
		// The sensors started with this test: their oldest file is from
		// its run, not from the replayed packets' 2023 timestamps.
		if s.Oldest.Before(now.Add(-time.Hour)) || s.Oldest.After(now.Add(time.Minute)) {
			t.Errorf("%s: oldest packet %v, want within the test's run (now %v)", sn.name, s.Oldest, now)
		}
	}
	if bad := newest["sensor-badcert"]; bad.Up || !strings.Contains(bad.Err, "certificate") {
		t.Errorf("sensor-badcert: newest sample up %v, error %q; want down, naming the certificate", bad.Up, bad.Err)
	}
	e.rateSeen(t, newest["sensor-0"])

	var one healthHistory
	if err := json.Unmarshal(e.getRaw(t, "/sensors/history?sensor=sensor-1", http.StatusOK), &one); err != nil ||
		len(one.Sensors) != 1 || one.Sensors[0].Name != "sensor-1" || len(one.Sensors[0].Samples) < 2 {
		t.Errorf("/sensors/history?sensor=sensor-1: %v %+v", err, one)
	}
	e.getRaw(t, "/sensors/history?sensor=nosuch", http.StatusNotFound)

	var list []struct {
		Name   string        `json:"name"`
		Tags   []string      `json:"tags"`
		Health *healthSample `json:"health"`
	}
	if err := json.Unmarshal(e.getRaw(t, "/sensors", http.StatusOK), &list); err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		good := s.Name != "sensor-badcert"
		if s.Health == nil || s.Health.Up != good || len(s.Tags) == 0 {
			t.Errorf("GET /sensors: %s: tags %v, health %+v; want up %v", s.Name, s.Tags, s.Health, good)
		}
	}

	m := string(e.get(t, "/metrics", http.StatusOK).raw)
	gauge := func(name, sensor string) (float64, bool) {
		re := regexp.MustCompile(`(?m)^` + name + `\{sensor="` + sensor + `"\} (\S+)$`)
		f := re.FindStringSubmatch(m)
		if f == nil {
			return 0, false
		}
		v, err := strconv.ParseFloat(f[1], 64)
		return v, err == nil
	}
	for _, sn := range e.sensors {
		for _, c := range []struct {
			name string
			ok   func(float64) bool
		}{
			{"stenofleet_sensor_up", func(v float64) bool { return v == 1 }},
			{"stenofleet_sensor_oldest_packet_timestamp_seconds", func(v float64) bool {
				return v > float64(now.Add(-time.Hour).Unix()) && v < float64(now.Add(time.Minute).Unix())
			}},
			{"stenofleet_sensor_capture_packets_per_second", func(v float64) bool { return v >= 0 }},
			{"stenofleet_sensor_drops_per_second", func(v float64) bool { return v >= 0 }},
			{"stenofleet_sensor_disk_bytes", func(v float64) bool { return v > 0 }},
			{"stenofleet_sensor_disk_free_bytes", func(v float64) bool { return v > 0 }},
		} {
			if v, ok := gauge(c.name, sn.name); !ok || !c.ok(v) {
				t.Errorf("/metrics %s{sensor=%q} = %v (present %v)", c.name, sn.name, v, ok)
			}
		}
	}
	if v, ok := gauge("stenofleet_sensor_up", "sensor-badcert"); !ok || v != 0 {
		t.Errorf("/metrics stenofleet_sensor_up{sensor=\"sensor-badcert\"} = %v (present %v), want 0", v, ok)
	}
	if _, ok := gauge("stenofleet_sensor_disk_bytes", "sensor-badcert"); ok {
		t.Errorf("/metrics has stenofleet_sensor_disk_bytes for sensor-badcert, which never answered:\n%s", m)
	}
}

// rateSeen replays sensor-0's traffic again and waits for a sample that
// counts it, with a packet rate above zero: the rates are the counters'
// deltas between polls.
func (e *fleetEnv) rateSeen(t *testing.T, before healthSample) {
	s := e.sensors[0]
	if r := s.pair.RunSender(2*time.Minute, "tcpreplay", "-i", s.pair.SenderIf, "--pps=100",
		filepath.Join(e.dir, s.name+".pcap")); r.Err != nil {
		t.Fatalf("tcpreplay: %v", r.Err)
	}
	var last healthSample
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		var h healthHistory
		if err := json.Unmarshal(e.getRaw(t, "/sensors/history?sensor="+s.name, http.StatusOK), &h); err != nil {
			t.Fatal(err)
		}
		var rated bool
		for _, x := range h.Sensors[0].Samples {
			if x.Time.After(before.Time) && x.PacketsPerSecond != nil && *x.PacketsPerSecond > 0 {
				rated = true
			}
			last = x
		}
		if rated && last.Packets >= before.Packets+perSensor {
			// The subtests after this one compare stenofleet's answers
			// with each sensor's own: the replay must be queryable first,
			// not land between two of their queries.
			s.waitCount(t, "host "+sharedHost, 2*perSensor)
			return
		}
	}
	t.Errorf("%s: after replaying %d more packets, newest sample %+v (before: %d packets); want them counted at a rate above 0",
		s.name, perSensor, last, before.Packets)
}
