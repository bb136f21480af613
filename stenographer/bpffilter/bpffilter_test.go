package bpffilter

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcap"
)

func frame(t *testing.T, vlan bool, proto layers.IPProtocol, port uint16, payload int) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, EthernetType: layers.EthernetTypeIPv4}
	ls := []gopacket.SerializableLayer{eth}
	if vlan {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4})
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2)}
	ls = append(ls, ip)
	switch proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(port), SYN: true}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, tcp)
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
		_ = udp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, udp)
	}
	ls = append(ls, gopacket.Payload(make([]byte, payload)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestMatch(t *testing.T) {
	tcp80 := frame(t, false, layers.IPProtocolTCP, 80, 10)
	udp53 := frame(t, false, layers.IPProtocolUDP, 53, 300)
	tagged := frame(t, true, layers.IPProtocolUDP, 53, 10)
	for _, tc := range []struct {
		expr    string
		frame   []byte
		wireLen int // 0: the frame's length
		want    bool
	}{
		{"tcp port 80", tcp80, 0, true},
		{"tcp port 80", udp53, 0, false},
		{"tcp[tcpflags] & tcp-syn != 0", tcp80, 0, true},
		{"udp and greater 300", udp53, 0, true},
		{"udp and greater 300", tcp80, 0, false},
		// A packet captured short still has its length on the wire.
		{"greater 1000", tcp80, 1500, true},
		{"less 100", tcp80, 1500, false},
		{"ether broadcast", tcp80, 0, true},
		{"ether src 02:00:00:00:00:01", udp53, 0, true},
		{"vlan 100 and udp port 53", tagged, 0, true},
		{"udp port 53", tagged, 0, false}, // tcpdump's meaning: untagged offsets
		{"ip[9] = 6", tcp80, 0, true},
		{"tcp port 80", tcp80[:20], 0, false}, // cut inside the IP header
	} {
		f, err := Compile(tc.expr)
		if err != nil {
			t.Fatalf("%q: %v", tc.expr, err)
		}
		wl := tc.wireLen
		if wl == 0 {
			wl = len(tc.frame)
		}
		if got := f.Matcher()(tc.frame, wl); got != tc.want {
			t.Errorf("%q on a %d-byte frame (%d on the wire): %v, want %v", tc.expr, len(tc.frame), wl, got, tc.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, expr := range []string{"port", "tcp port 99999", "ether[0] = ", strings.Repeat("(", 70000)} {
		_, err := Compile(expr)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%.40q: %v, want ErrInvalid", expr, err)
		}
	}
	if _, err := Compile("port"); err == nil || !strings.Contains(err.Error(), "syntax error") {
		t.Errorf("libpcap's message is lost: %v", err)
	}
}

// TestSameAsGopacket holds the dlopen'ed libpcap to what gopacket's
// linked one gives (the path production used before): the same program,
// or the same message, for each expression.
func TestSameAsGopacket(t *testing.T) {
	lib, err := loadLibpcap()
	if err != nil {
		t.Fatal(err)
	}
	for _, expr := range []string{"", "tcp port 80", "udp and greater 300", "less 100", "vlan 100 and udp port 53",
		"ip6 and udp and not port 53", "ether broadcast or ether multicast", "net 10.0.0.0/8", "tcp[tcpflags] & tcp-syn != 0",
		"port", "tcp port 99999", "ether[0] = ", "host nosuchhost.invalid"} {
		want, wantErr := pcap.CompileBPFFilter(layers.LinkTypeEthernet, snaplen, expr)
		got, err := lib.compile(expr, snaplen)
		if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
			t.Errorf("%q: error %v, gopacket's %v", expr, err, wantErr)
			continue
		}
		if len(got) != len(want) {
			t.Errorf("%q: %d instructions, gopacket's %d", expr, len(got), len(want))
			continue
		}
		for i, w := range want {
			if g := got[i]; g.Op != w.Code || g.Jt != w.Jt || g.Jf != w.Jf || g.K != w.K {
				t.Errorf("%q: instruction %d is %+v, gopacket's %+v", expr, i, g, w)
			}
		}
	}
}

func TestUnavailable(t *testing.T) {
	_, err := openLibpcap([]string{"libpcap-absent.so.0.8", "/nonexistent/libpcap.so"})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalid) {
		t.Fatalf("%v, want ErrUnavailable only", err)
	}
	for _, name := range []string{"libpcap-absent.so.0.8", "/nonexistent/libpcap.so"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%v does not name %s", err, name)
		}
	}
	// A library without libpcap's symbols is refused, not called.
	if _, err := openLibpcap([]string{"libc.so.6"}); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "pcap_open_dead") {
		t.Errorf("libc as libpcap: %v", err)
	}
}

// TestConcurrentCompile compiles from many goroutines at once (run with
// -race): each must get its own expression's program.
func TestConcurrentCompile(t *testing.T) {
	tcp80 := frame(t, false, layers.IPProtocolTCP, 80, 10)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			port := 80 + i%2
			f, err := Compile(fmt.Sprintf("tcp port %d", port))
			if err != nil {
				errs <- err
				return
			}
			if got := f.Matcher()(tcp80, len(tcp80)); got != (port == 80) {
				errs <- fmt.Errorf("tcp port %d on a port-80 frame: %v", port, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
