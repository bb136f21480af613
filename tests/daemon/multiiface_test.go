package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	pb "github.com/stenographer-ng/stenographer/protobuf"
	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestMultipleInterfaces runs one daemon on two links (two veth pairs
// into the capture namespace, each from its own sender namespace), with
// two threads on the first interface and one on the second, and
// different traffic on each. `iface A` and `iface B` return exactly the
// frames sent on that link, in order; the merged query is their union in
// timestamp order; pcapng over HTTPS (read by tshark), gRPC, stenoquery
// and stenoread names the right interface for every packet. Then link A
// goes down and its stenotype is killed: the other stenotype keeps its
// pid and captures what is sent on B meanwhile, /metrics and
// /debug/stats show both interfaces, A's stenotype is restarted on its
// own, and A captures again once its link is back.
func TestMultipleInterfaces(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay", "tshark")
	pairA := netns.NewPair(t)
	pairB := pairA.AddPair(t)
	ifA, ifB := pairA.CaptureIf, pairB.CaptureIf
	var threads []daemon.Thread
	for _, ifc := range []string{ifA, ifB, ifA} {
		base := testenv.DiskTempDir(t)
		th := daemon.Thread{PacketsDirectory: filepath.Join(base, "pkt"), IndexDirectory: filepath.Join(base, "idx"), Interface: ifc}
		threads = append(threads, th)
	}
	d := daemon.Start(t, pairA, daemon.Options{ThreadDirs: threads, RPC: true})
	d.WaitFor("a stenotype per interface", time.Minute, func() bool { return len(d.Stenotypes()) == 2 })

	framesA := framesOf(t, generatedPcap(t))
	framesB := udpFrames(0, 60)
	replayFrames(t, pairA, framesA)
	waitCount(t, d, "iface "+ifA, len(framesA), 2*time.Minute)
	replayFrames(t, pairB, framesB)
	waitCount(t, d, "iface "+ifB, len(framesB), 2*time.Minute)

	// Per interface and merged, byte for byte.
	exact(t, d, "iface "+ifA, framesA)
	exact(t, d, "iface "+ifB, framesB)
	merged := append(slices.Clone(framesA), framesB...) // A was sent first
	exact(t, d, everything, merged)
	exact(t, d, "iface "+ifA+" or iface "+ifB, merged)
	exact(t, d, "iface "+ifB+" and port 7003", framesB[3:4])
	exact(t, d, "(iface "+ifA+" and port 7003) or (iface nosuch0 and udp)", nil)

	// pcapng: HTTPS (read by tshark), gRPC, stenoquery, stenoread.
	names := append(repeat(ifA, len(framesA)), repeat(ifB, len(framesB))...)
	r := queryPcapng(t, d, everything)
	if ct := r.Header.Get("Content-Type"); ct != "application/x-pcapng" {
		t.Errorf("Content-Type of a pcapng result = %q", ct)
	}
	ngExact(t, "HTTPS", r.Body, merged, names)
	tsharkInterfaces(t, r.Body, names)
	g, err := daemon.Retrieve(context.Background(), d.GRPCConn(nil), &pb.PcapRequest{Query: "iface " + ifB, Pcapng: true})
	if err != nil {
		t.Fatal(err)
	}
	ngExact(t, "gRPC", g.PCAP, framesB, repeat(ifB, len(framesB)))
	sq := testenv.Run(testenv.Deadline, testenv.Binary(t, "stenoquery"), "--config", d.ConfigPath, "--pcapng", everything)
	if sq.Err != nil {
		t.Fatal(sq.Err)
	}
	ngExact(t, "stenoquery", sq.Stdout, merged, names)
	sr := d.Stenoread(2*time.Minute, "--pcapng", "iface "+ifA, "-w", "-")
	if sr.Err != nil {
		t.Fatal(sr.Err)
	}
	ngExact(t, "stenoread", sr.Stdout, framesA, repeat(ifA, len(framesA)))
	if plain := d.MustQuery("iface "+ifB, nil); !bytes.HasPrefix(plain, []byte{0xd4, 0xc3, 0xb2, 0xa1}) {
		t.Errorf("a query without Accept is not PCAP: starts %x", plain[:min(8, len(plain))])
	}

	// A fails; B goes on.
	pidA, pidB := stenotypeOf(t, d, ifA), stenotypeOf(t, d, ifB)
	setLink(t, pairA, "down")
	if err := syscall.Kill(pidA, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	framesB2 := udpFrames(100, 40)
	replayFrames(t, pairB, framesB2)
	allB := append(slices.Clone(framesB), framesB2...)
	waitCount(t, d, "iface "+ifB, len(allB), 2*time.Minute)
	exact(t, d, "iface "+ifB, allB)
	if now := stenotypeOf(t, d, ifB); now != pidB {
		t.Errorf("%s's stenotype is pid %d, was %d: A's failure restarted it", ifB, now, pidB)
	}
	d.WaitFor("/metrics to show A's stenotype restarted and B's running since the start", 2*time.Minute, func() bool {
		m, err := d.Metrics()
		return err == nil && m[`stenographer_interface_stenotype_starts_total{interface="`+ifA+`"}`] >= 2 &&
			m[`stenographer_interface_stenotype_starts_total{interface="`+ifB+`"}`] == 1 &&
			m[`stenographer_interface_capture_up{interface="`+ifB+`"}`] == 1 &&
			m[`stenographer_thread_interface_info{interface="`+ifB+`",thread="1"}`] == 1
	})
	st := debugStats(t, d)
	if len(st.Interfaces) != 2 || st.Interfaces[0].Name != ifA || st.Interfaces[1].Name != ifB ||
		!slices.Equal(st.Interfaces[0].Threads, []int{0, 2}) || !slices.Equal(st.Interfaces[1].Threads, []int{1}) ||
		!st.Interfaces[1].Up || st.Interfaces[1].Files == 0 {
		t.Errorf("/debug/stats interfaces = %+v", st.Interfaces)
	}
	code, text, err := d.Get(context.Background(), "/debug/stats")
	if err != nil || code != 200 || !bytes.Contains(text, []byte("iface_"+ifB+"_capture_up\t1\n")) {
		t.Errorf("/debug/stats text (status %d, %v) lacks iface_%s_capture_up 1:\n%s", code, err, ifB, text)
	}

	// A comes back by itself once its link is up again.
	setLink(t, pairA, "up")
	d.WaitFor("A's stenotype to run again", 3*time.Minute, func() bool {
		pid := stenotypeOf(t, d, ifA)
		return pid != 0 && pid != pidA
	})
	probe := udpFrames(200, 1)
	seen := d.Poll(3*time.Minute, func() bool {
		// The new stenotype's socket may not be bound yet: probe until a
		// frame on A is captured again.
		replayFrames(t, pairA, probe)
		return d.Poll(10*time.Second, func() bool { return countOf(t, d, "iface "+ifA+" and port 7200") > 0 })
	})
	if !seen {
		t.Fatalf("nothing sent on %s is captured after its link came back; log:\n%s", ifA, d.LogTail())
	}
	after := "iface " + ifA + " and after " + rfc3339(boundary())
	framesA2 := udpFrames(300, 30)
	replayFrames(t, pairA, framesA2)
	waitCount(t, d, after, len(framesA2), 2*time.Minute)
	exact(t, d, after, framesA2)
}

// udpFrames makes n distinct UDP frames 10.99.0.1:5000 → 10.99.0.2:(7000+first+i)
// whose payload names their number.
func udpFrames(first, n int) [][]byte {
	var out [][]byte
	for i := first; i < first+n; i++ {
		out = append(out, udpFrame(net.IP{10, 99, 0, 1}, net.IP{10, 99, 0, 2}, 5000, 7000+i, []byte(fmt.Sprintf("frame %d on its link", i))))
	}
	return out
}

// udpFrame makes an Ethernet IPv4 UDP frame.
func udpFrame(src, dst net.IP, sport, dport int, payload []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src, DstIP: dst}
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	_ = udp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(payload)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// replayFrames writes frames to a pcap and sends it on pair's link.
func replayFrames(t *testing.T, pair *netns.Pair, frames [][]byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "frames.pcap")
	var pkts []pcapfile.Packet
	at := time.Now()
	for i, f := range frames {
		pkts = append(pkts, pcapfile.Packet{Time: at.Add(time.Duration(i) * time.Millisecond), WireLen: len(f), Data: f})
	}
	if err := pcapfile.Write(p, pkts); err != nil {
		t.Fatal(err)
	}
	replay(t, pair, 500, len(frames), p)
}

// exact requires query's PCAP result to be want, frame for frame, in
// non-decreasing timestamp order.
func exact(t *testing.T, d *daemon.Daemon, query string, want [][]byte) {
	t.Helper()
	f := parsePCAP(t, query, d.MustQuery(query, nil))
	var got [][]byte
	for i, p := range f.Packets {
		if i > 0 && p.Time.Before(f.Packets[i-1].Time) {
			t.Errorf("%q: packet %d is older than the one before it", query, i)
		}
		got = append(got, p.Data)
	}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("%q returned %d frames, not the %d sent on its link(s) in order", query, len(got), len(want))
	}
}

func countOf(t *testing.T, d *daemon.Daemon, query string) int {
	t.Helper()
	return len(parsePCAP(t, query, d.MustQuery(query, nil)).Packets)
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func queryPcapng(t *testing.T, d *daemon.Daemon, query string) *daemon.QueryResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := d.Query(ctx, query, map[string]string{"Accept": "application/x-pcapng"})
	if err != nil || r.Status != 200 {
		t.Fatalf("pcapng query %q: %v %+v", query, err, r)
	}
	return r
}

// ngExact reads a pcapng result with gopacket's reader: the frames must
// be want and each packet's interface must be named names[i], with
// nanosecond timestamps in order.
func ngExact(t *testing.T, what string, data []byte, want [][]byte, names []string) {
	t.Helper()
	r, err := pcapgo.NewNgReader(bytes.NewReader(data), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("%s: not pcapng (%d bytes, starts %x): %v", what, len(data), data[:min(len(data), 16)], err)
	}
	var got [][]byte
	var last time.Time
	for i := 0; ; i++ {
		frame, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		ifc, err := r.Interface(ci.InterfaceIndex)
		if err != nil {
			t.Fatalf("%s: packet %d: %v", what, i, err)
		}
		if i < len(names) && ifc.Name != names[i] {
			t.Errorf("%s: packet %d names interface %q, want %q", what, i, ifc.Name, names[i])
		}
		if ifc.TimestampResolution != 9 || ifc.LinkType != layers.LinkTypeEthernet {
			t.Errorf("%s: interface %q has timestamp resolution %v and link type %v", what, ifc.Name, ifc.TimestampResolution, ifc.LinkType)
		}
		if ci.Timestamp.Before(last) {
			t.Errorf("%s: packet %d is older than the one before it", what, i)
		}
		last = ci.Timestamp
		got = append(got, slices.Clone(frame))
	}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("%s: %d frames, not the %d expected in order", what, len(got), len(want))
	}
}

// tsharkInterfaces reads a pcapng result with tshark: packet i must be
// on names[i].
func tsharkInterfaces(t *testing.T, data []byte, names []string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "result.pcapng")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r := testenv.Run(testenv.Deadline, "tshark", "-n", "-r", p, "-T", "fields", "-e", "frame.interface_name")
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	got := strings.Fields(string(r.Stdout))
	if !slices.Equal(got, names) {
		t.Errorf("tshark reads %d packets on interfaces %v...; want %d (%s then %s)", len(got), got[:min(len(got), 4)], len(names), names[0], names[len(names)-1])
	}
}

// statsInterfaces is the part of /debug/stats?format=json this test reads.
type statsInterfaces struct {
	Interfaces []struct {
		Name    string `json:"name"`
		Threads []int  `json:"threads"`
		Up      bool   `json:"up"`
		Pid     int    `json:"stenotype_pid"`
		Files   int    `json:"files"`
	} `json:"interfaces"`
}

func debugStats(t *testing.T, d *daemon.Daemon) statsInterfaces {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, body, err := d.Get(ctx, "/debug/stats?format=json")
	if err != nil || code != 200 {
		t.Fatalf("/debug/stats: %d %v", code, err)
	}
	var st statsInterfaces
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("/debug/stats: %v\n%s", err, body)
	}
	return st
}

// stenotypeOf is the pid of the stenotype capturing on ifc (0 while it
// is down), as /debug/stats says and /proc confirms.
func stenotypeOf(t *testing.T, d *daemon.Daemon, ifc string) int {
	t.Helper()
	for _, i := range debugStats(t, d).Interfaces {
		if i.Name == ifc && i.Pid != 0 && slices.Contains(d.Stenotypes(), i.Pid) {
			cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(i.Pid) + "/cmdline")
			if !bytes.Contains(cmdline, []byte("--iface="+ifc+"\x00")) {
				t.Fatalf("/debug/stats says pid %d captures %s; its command line is %q", i.Pid, ifc, cmdline)
			}
			return i.Pid
		}
	}
	return 0
}

func setLink(t *testing.T, pair *netns.Pair, state string) {
	t.Helper()
	must(t, testenv.Run(testenv.Deadline, "ip", "-n", pair.CaptureNS, "link", "set", "dev", pair.CaptureIf, state))
}
