// A sensor killed while stenofleet streams its part of a query.

package fleet_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// Enough of the victim's traffic that its answer outlasts every buffer
// between it and the test (socket buffers grow to a few MB each).
const (
	bulkHost    = "10.8.8.8"
	bulkPackets = 20000
	bulkSize    = 1400
)

// bulkFrames is UDP from sensor i's hosts to bulkHost, which no other
// subtest's query matches.
func bulkFrames(t *testing.T, i int) []pcapfile.Packet {
	out := make([]pcapfile.Packet, 0, bulkPackets)
	for j := range bulkPackets {
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, byte(i), 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, byte(i), 2},
			EthernetType: layers.EthernetTypeIPv4}
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: net.IPv4(10, 1, byte(i), byte(1+j%4)), DstIP: net.ParseIP(bulkHost).To4()}
		u := &layers.UDP{SrcPort: layers.UDPPort(10000 + j%5000), DstPort: 9999}
		u.SetNetworkLayerForChecksum(ip)
		payload := make([]byte, bulkSize)
		copy(payload, strconv.Itoa(j))
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			eth, ip, u, gopacket.Payload(payload)); err != nil {
			t.Fatal(err)
		}
		d := append([]byte(nil), buf.Bytes()...)
		out = append(out, pcapfile.Packet{Time: time.Unix(1700000000, int64(j)*1000), WireLen: len(d), Data: d})
	}
	return out
}

// midStream has the victim capture bulk traffic, starts a query that
// matches it and the others' packets, reads the answer's start and then
// stops reading, so stenofleet blocks and the victim blocks mid-part;
// then SIGKILLs the victim's stenographer (and stenotype). The query
// completes, its trailer names the victim, the other sensors' packets
// are exact, and what came from the victim is a prefix of what it
// returns alone.
func (e *fleetEnv) midStream(t *testing.T, victim int) {
	v := e.sensors[victim]
	file := filepath.Join(e.dir, "bulk.pcap")
	if err := pcapfile.Write(file, bulkFrames(t, victim)); err != nil {
		t.Fatal(err)
	}
	if r := v.pair.RunSender(3*time.Minute, "tcpreplay", "-i", v.pair.SenderIf, "--pps=5000", file); r.Err != nil {
		t.Fatalf("tcpreplay: %v", r.Err)
	}
	v.waitCount(t, "host "+bulkHost, bulkPackets)

	q := "host " + sharedHost + " or host " + bulkHost
	var others []*sensorNode
	for i, s := range e.sensors {
		if i != victim {
			others = append(others, s)
		}
	}
	want := e.union(t, q, others)
	alone := parse(t, v.d.MustQuery(q, nil)).Packets
	tree := append([]int{v.d.PID()}, daemon.Descendants(v.d.PID())...)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+fleetAddr+"/query?sensors=good", strings.NewReader(q))
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("POST /query: %v", err)
	}
	defer resp.Body.Close()
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatalf("reading the answer's first 64 KiB: %v", err)
	}
	// Not reading: the buffers fill until the victim cannot send.
	blocked := 0
	deadline := time.Now().Add(time.Minute)
	for prev := -1; blocked < 3; time.Sleep(300 * time.Millisecond) {
		n := sendQueue(v, victim)
		if n > 0 && n == prev {
			blocked++
		} else {
			blocked = 0
		}
		prev = n
		if time.Now().After(deadline) {
			t.Fatalf("%s never blocked sending its part (send queue %d)", v.name, n)
		}
	}
	for _, pid := range tree {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("query with %s killed mid-way: %v", v.name, err)
	}
	body := append(head, rest...)
	miss := resp.Trailer.Get("Steno-Missing-Sensors")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(miss, v.name+"=") || strings.Contains(miss, ",") {
		t.Fatalf("status %d, Steno-Missing-Sensors %q; want 200 naming %s only", resp.StatusCode, miss, v.name)
	}
	e.tcpdumpReads(t, "sensor killed mid-way", body)
	var fromOthers, fromVictim []pcapfile.Packet
	for _, p := range parse(t, body).Packets {
		if int(p.Data[4]) == victim { // the sensor number in the source MAC
			fromVictim = append(fromVictim, p)
		} else {
			fromOthers = append(fromOthers, p)
		}
	}
	e.samePackets(t, "the other sensors", fromOthers, want)
	if len(fromVictim) == 0 || len(fromVictim) >= len(alone) {
		t.Fatalf("%d packets from %s, of its %d: want its part cut, not whole or empty", len(fromVictim), v.name, len(alone))
	}
	for i, p := range fromVictim {
		if a := alone[i]; !p.Time.Equal(a.Time) || !bytes.Equal(p.Data, a.Data) {
			t.Fatalf("packet %d from %s is not its %dth alone: the part is not a prefix", i, v.name, i)
		}
	}
	t.Logf("%s killed mid-way: %d of its %d packets arrived; missing %q", v.name, len(fromVictim), len(alone), miss)
}

// sendQueue is the bytes the victim's stenographer has written and the
// fleet not yet taken, on its connection from stenofleet (0 if none).
func sendQueue(s *sensorNode, i int) int {
	r := testenv.Run(testenv.Deadline, "ip", "netns", "exec", s.pair.CaptureNS, "ss", "-Htn", "state", "established",
		"sport", "=", fmt.Sprintf(":%d", daemon.HTTPSPort), "dst", fmt.Sprintf("10.77.%d.1", i))
	if r.Err != nil {
		return 0
	}
	most := 0
	for _, l := range strings.Split(string(r.Stdout), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			n, _ := strconv.Atoi(f[1])
			most = max(most, n)
		}
	}
	return most
}
