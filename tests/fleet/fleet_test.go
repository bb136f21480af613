// Package fleet_test runs stenofleet in front of three real sensors
// (stenographer + stenotype, each capturing its own veth in its own
// namespaces) and checks the merged results against what each sensor
// returns alone.
//
// Topology: a "fleet" namespace holds stenofleet; a veth from it to each
// sensor's capture namespace (10.77.i.1 ↔ 10.77.i.2) carries the HTTPS
// queries. Sensors listen on 0.0.0.0 there, so the harness still reaches
// them on 127.0.0.1, and stenofleet checks their certificates for
// 127.0.0.1 (server_name). Capture is on the pair's veth only, so the
// query link adds no frames to what the sensors record.
package fleet_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

const (
	perSensor  = 40
	fleetAddr  = "127.0.0.1:9443"
	sharedHost = "10.9.9.9"
)

// frames builds sensor i's traffic: UDP and TCP between 10.1.i.x and the
// shared host, so "host 10.9.9.9" hits every sensor and "net 10.1.i.0/24"
// one.
func frames(t *testing.T, i int) []pcapfile.Packet {
	var out []pcapfile.Packet
	for j := 0; j < perSensor; j++ {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, byte(i), 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, byte(i), 2},
			EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: net.IPv4(10, 1, byte(i), byte(1+j%4)), DstIP: net.ParseIP(sharedHost).To4()}
		var l4 gopacket.SerializableLayer
		if j%2 == 0 {
			ip.Protocol = layers.IPProtocolUDP
			u := &layers.UDP{SrcPort: layers.UDPPort(2000 + j), DstPort: 53}
			u.SetNetworkLayerForChecksum(ip)
			l4 = u
		} else {
			ip.Protocol = layers.IPProtocolTCP
			c := &layers.TCP{SrcPort: layers.TCPPort(3000 + j), DstPort: 80, SYN: true, Window: 1024}
			c.SetNetworkLayerForChecksum(ip)
			l4 = c
		}
		buf := gopacket.NewSerializeBuffer()
		payload := gopacket.Payload(bytes.Repeat([]byte{byte(i), byte(j)}, 20+j))
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ip, l4, payload); err != nil {
			t.Fatal(err)
		}
		d := append([]byte(nil), buf.Bytes()...)
		out = append(out, pcapfile.Packet{Time: time.Unix(1700000000, int64(j)*1000), WireLen: len(d), Data: d})
	}
	return out
}

type sensorNode struct {
	name string
	pair *netns.Pair
	d    *daemon.Daemon
}

type fleetEnv struct {
	t       *testing.T
	ns      string
	sensors []*sensorNode
	client  *http.Client // alice, from the analysts' CA
	dir     string
	log     *testenv.SyncBuffer // the main instance's
	main    *fleetProc          // the instance on fleetAddr
	certs   *fleetCerts
}

func TestFleet(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip", "tcpreplay", "tcpdump")
	e := &fleetEnv{t: t, dir: t.TempDir(), log: &testenv.SyncBuffer{}}
	e.ns = netns.NewNamespace(t, "fleet")

	// Three sensors, started together; their readiness is awaited after.
	for i := 0; i < 3; i++ {
		pair := netns.NewPair(t)
		netns.Link(t, pair.CaptureNS, e.ns, fmt.Sprintf("10.77.%d.2/24", i), fmt.Sprintf("10.77.%d.1/24", i))
		d := daemon.Start(t, pair, daemon.Options{NoWait: true, Edit: func(c *daemon.Config) { c.Host = "0.0.0.0" }})
		e.sensors = append(e.sensors, &sensorNode{name: fmt.Sprintf("sensor-%d", i), pair: pair, d: d})
	}
	for _, s := range e.sensors {
		s.d.WaitFor("HTTPS to answer and stenotype to report", 90*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			code, _, err := s.d.Get(ctx, "/debug/stats")
			return err == nil && code == http.StatusOK && bytes.Contains(s.d.Log(), []byte("STATS thread="))
		})
	}
	// Each sensor captures its own traffic, replayed at the same time so
	// the sensors' timestamps interleave.
	errs := make(chan error, 3)
	for i, s := range e.sensors {
		file := filepath.Join(e.dir, s.name+".pcap")
		if err := pcapfile.Write(file, frames(t, i)); err != nil {
			t.Fatal(err)
		}
		go func() {
			r := s.pair.RunSender(2*time.Minute, "tcpreplay", "-i", s.pair.SenderIf, "--pps=100", file)
			errs <- r.Err
		}()
	}
	for range e.sensors {
		if err := <-errs; err != nil {
			t.Fatalf("tcpreplay: %v", err)
		}
	}
	for _, s := range e.sensors {
		s.waitCount(t, "host "+sharedHost, perSensor)
	}
	e.startFleet()

	// The merge is only tested if the sensors' packets interleave in time.
	all := e.union(t, "host "+sharedHost, e.sensors)
	switches := 0
	for i := 1; i < len(all); i++ {
		if all[i].Data[4] != all[i-1].Data[4] { // the sensor number in the source MAC
			switches++
		}
	}
	if switches < 10 {
		t.Fatalf("the sensors' packets hardly interleave (%d switches in %d packets): the merge is not exercised", switches, len(all))
	}
	queries := []string{"host " + sharedHost, "udp and port 53", "tcp", "net 10.1.1.0/24", "host 10.1.2.3 or host 10.1.0.1"}
	t.Run("merged equals union", func(t *testing.T) {
		for _, q := range queries {
			want := e.union(t, q, e.sensors)
			got := e.query(t, "/query?sensors=good", q, http.StatusOK)
			e.samePackets(t, q, got.Packets, want)
		}
	})
	t.Run("sensor selection by tag and name", func(t *testing.T) {
		q := "host " + sharedHost
		got := e.query(t, "/query?sensors=dmz", q, http.StatusOK)
		e.samePackets(t, "dmz", got.Packets, e.union(t, q, e.sensors[:1]))
		got = e.query(t, "/query?sensors=core,sensor-0", q, http.StatusOK)
		e.samePackets(t, "core,sensor-0", got.Packets, e.union(t, q, e.sensors))
		e.query(t, "/query?sensors=nosuch", q, http.StatusBadRequest)
	})
	t.Run("docket GET and POST", func(t *testing.T) {
		want := e.union(t, "host "+sharedHost+" and udp", e.sensors)
		e.samePackets(t, "GET /pcap", e.get(t, "/pcap/host/"+sharedHost+"/udp/?sensors=good", http.StatusOK).Packets, want)
		form := url.Values{"host": {sharedHost}, "proto-name": {"udp"}}
		e.samePackets(t, "POST /api/ form", e.post(t, "/api/?sensors=good", "application/x-www-form-urlencoded",
			form.Encode(), http.StatusOK).Packets, want)
		e.samePackets(t, "POST /api/ JSON", e.post(t, "/api/?sensors=good", "application/json",
			`{"host": "`+sharedHost+`", "proto-name": "udp"}`, http.StatusOK).Packets, want)
		want = e.union(t, "net 10.1.0.0/24 and port 53 and after 600m ago", e.sensors)
		e.samePackets(t, "GET /pcap net", e.get(t, "/pcap/net/10.1.0.0/24/port/53/after/10h/?sensors=good", http.StatusOK).Packets, want)
		e.get(t, "/pcap/host/not-an-ip/", http.StatusBadRequest)
	})
	t.Run("limits", func(t *testing.T) {
		r := e.do(t, "POST", "/query?sensors=good", "", "host "+sharedHost, map[string]string{"Steno-Limit-Packets": "7"})
		if r.status != http.StatusOK || len(parse(t, r.body).Packets) != 7 || r.trailer.Get("Steno-Truncated") != "true" {
			t.Errorf("limit 7: status %d, %d bytes, trailers %v", r.status, len(r.body), r.trailer)
		}
	})
	t.Run("every sensor refuses", func(t *testing.T) {
		r := e.do(t, "POST", "/query?sensors=good", "", "host 1.2.3.4 and (", nil)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "refused") {
			t.Errorf("bad query: status %d: %s", r.status, r.body)
		}
	})
	t.Run("bad client certificate", func(t *testing.T) {
		r := e.do(t, "POST", "/query?sensors=good,bad", "", "host "+sharedHost, nil)
		miss := r.trailer.Get("Steno-Missing-Sensors")
		if r.status != http.StatusOK || !strings.Contains(miss, "sensor-badcert=") || !strings.Contains(miss, "certificate") ||
			strings.Contains(miss, "sensor-0") {
			t.Errorf("status %d, Steno-Missing-Sensors %q", r.status, miss)
		}
		e.samePackets(t, "good,bad", parse(t, r.body).Packets, e.union(t, "host "+sharedHost, e.sensors))
	})
	t.Run("access", func(t *testing.T) {
		e.refused(t, nil, "no client certificate")
		other := newCA(t, e.dir, "other")
		cf, kf := other.issue("mallory", false)
		kp, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			t.Fatal(err)
		}
		e.refused(t, []tls.Certificate{kp}, "a certificate from another CA")
		if !strings.Contains(string(e.log.Bytes()), "user=alice") {
			t.Errorf("queries are not logged with the user; log:\n%s", testenv.Tail(e.log.Bytes(), 2000))
		}
	})
	t.Run("stats and metrics", func(t *testing.T) {
		var st []map[string]any
		if err := json.Unmarshal(e.get(t, "/stats", http.StatusOK).raw, &st); err != nil {
			t.Fatal(err)
		}
		if len(st) != 4 {
			t.Fatalf("stats: %d entries, want 4: %v", len(st), st)
		}
		for _, s := range st {
			name, _ := s["sensor"].(string)
			_, hasErr := s["error"]
			_, hasFiles := s["current_files"]
			if (name == "sensor-badcert") != hasErr || (name != "sensor-badcert" && !hasFiles) {
				t.Errorf("stats entry %v", s)
			}
		}
		m := string(e.get(t, "/metrics", http.StatusOK).raw)
		for _, want := range []string{`stenofleet_queries_total{outcome="ok"}`, `stenofleet_queries_total{outcome="partial"}`,
			`stenofleet_sensor_errors_total{kind="error",sensor="sensor-badcert"}`, "stenofleet_bytes_served_total",
			`stenofleet_sensor_query_seconds_count{sensor="sensor-1"}`} {
			if !strings.Contains(m, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
	t.Run("jobs", func(t *testing.T) {
		j := e.main.submit(t, "/q/host/"+sharedHost+"/udp/?sensors=good")
		if again := e.main.submit(t, "/q/udp/host/"+sharedHost+"/?sensors=good"); again["id"] != j["id"] {
			t.Errorf("the same clauses in another order: job %s, want %s", again["id"], j["id"])
		}
		if !strings.Contains(j["query"], " and after ") || j["url"] != "/"+j["id"]+"/merged.pcap" {
			t.Errorf("job %v: want resolved time bounds in query and url /<id>/merged.pcap", j)
		}
		e.main.waitState(t, j["id"], "Completed")
		res := e.get(t, j["url"], http.StatusOK)
		stream := e.query(t, "/query?sensors=good", j["query"], http.StatusOK)
		e.samePackets(t, "job result", res.Packets, stream.Packets)
		e.samePackets(t, "job result", res.Packets, e.union(t, "host "+sharedHost+" and udp", e.sensors))
		e.tcpdumpReads(t, "job result", res.raw)
		var ids []string
		if err := json.Unmarshal(e.getRaw(t, "/ids", http.StatusOK), &ids); err != nil || !slices.Contains(ids, j["id"]) {
			t.Errorf("/ids = %v (%v), want %s listed", ids, err, j["id"])
		}
		e.getRaw(t, "/no-such-job/merged.pcap", http.StatusNotFound)
		t.Run("password access", func(t *testing.T) { e.passwordAccess(t, j["id"]) })
	})
	t.Run("preview", func(t *testing.T) {
		var p struct {
			Packets []struct {
				Time     time.Time
				Sensor   string
				Src      string
				Protocol string
				Length   int
			}
		}
		a := e.expect(t, e.do(t, "POST", "/preview?sensors=good", "", "host "+sharedHost, nil), "POST /preview", http.StatusOK)
		if err := json.Unmarshal(a.body, &p); err != nil {
			t.Fatalf("POST /preview: %v: %s", err, testenv.Tail(a.body, 300))
		}
		want := e.union(t, "host "+sharedHost, e.sensors)[:50]
		if len(p.Packets) != len(want) {
			t.Fatalf("preview: %d packets, want %d", len(p.Packets), len(want))
		}
		for i, w := range want {
			g := p.Packets[i]
			if !g.Time.Equal(w.Time) || g.Length != w.WireLen || g.Sensor != fmt.Sprintf("sensor-%d", w.Data[4]) || g.Src == "" ||
				(g.Protocol != "udp" && g.Protocol != "tcp") {
				t.Errorf("preview packet %d: %+v, want time %v, length %d, sensor-%d", i, g, w.Time, w.WireLen, w.Data[4])
			}
		}
		r := e.do(t, "POST", "/preview?sensors=good", "", "host 1.2.3.4 and (", nil)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "refused") {
			t.Errorf("preview of a bad query: status %d: %s", r.status, r.body)
		}
	})
	t.Run("web page", func(t *testing.T) { e.webPage(t) })
	t.Run("sensor health", func(t *testing.T) { e.sensorHealth(t) })
	t.Run("job restart after SIGKILL", func(t *testing.T) { e.jobRestart(t, syscall.SIGKILL, "127.0.0.1:9444") })
	t.Run("job restart after SIGTERM", func(t *testing.T) { e.jobRestart(t, syscall.SIGTERM, "127.0.0.1:9445") })
	t.Run("expiry by age", func(t *testing.T) { e.expireAge(t, "127.0.0.1:9446") })
	t.Run("expiry by space", func(t *testing.T) { e.expireSpace(t, "127.0.0.1:9447") })
	t.Run("sensor killed mid-stream", func(t *testing.T) { e.midStream(t, 2) })
	t.Run("one sensor stopped", func(t *testing.T) {
		e.sensors[2].d.Stop()
		q := "host " + sharedHost
		r := e.do(t, "POST", "/query?sensors=good", "", q, nil)
		miss := r.trailer.Get("Steno-Missing-Sensors")
		if r.status != http.StatusOK || !strings.HasPrefix(miss, "sensor-2=") || strings.Contains(miss, ",") {
			t.Fatalf("status %d, Steno-Missing-Sensors %q", r.status, miss)
		}
		e.samePackets(t, "two sensors", parse(t, r.body).Packets, e.union(t, q, e.sensors[:2]))
	})
}

// startFleet writes stenofleet's config (the three sensors tagged, plus
// one with a client certificate the sensors do not trust) and starts it
// in the fleet namespace.
func (e *fleetEnv) startFleet() {
	e.main = e.startInstance(e.t, e.writeConfig("stenofleet.yaml", fleetOpts{}), fleetAddr, e.log)
}
