// Command fresh measures time to queryable (issue 10, part 1): it sends
// probe packets, each from an address of its own, on a link a stenographer
// captures, and polls with the real stenoread until each probe is found.
// A probe's time is from its send to the end of the first stenoread that
// returned it (what an analyst waiting for it sees, the client included).
//
// It runs inside the benchmark's network namespace (tests/bench/fresh.sh),
// sending on one end of a veth pair whose other end the daemon captures.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

func main() {
	iface := flag.String("iface", "", "interface to send the probes on")
	probes := flag.Int("probes", 20, "number of probes")
	every := flag.Duration("every", 2*time.Second, "time between probes")
	poll := flag.Duration("poll", 200*time.Millisecond, "time between stenoread polls")
	timeout := flag.Duration("timeout", 4*time.Minute, "give up on a probe after this long")
	stenoread := flag.String("stenoread", "stenoread", "the stenoread script")
	subnet := flag.Int("subnet", 0, "third byte of the probes' source addresses 10.77.N.i, unique per run")
	label := flag.String("label", "", "the condition, for the output line")
	flag.Parse()
	if *iface == "" || *probes < 1 || *probes > 250 {
		log.Fatal("fresh: --iface is required and --probes must be 1..250")
	}
	send, err := sender(*iface)
	if err != nil {
		log.Fatal(err)
	}
	addr := func(i int) string { return fmt.Sprintf("10.77.%d.%d", *subnet, i+1) }
	index := map[string]int{}
	for i := 0; i < *probes; i++ {
		index[addr(i)] = i
	}

	// The daemon answers queries before its stenotype's socket is bound:
	// a warm-up probe, sent until it is found, shows that capture runs.
	warm := probeFrame(fmt.Sprintf("10.77.%d.250", *subnet))
	warmed := false
	for start := time.Now(); !warmed && time.Since(start) < 3*time.Minute; {
		if err := send(warm); err != nil {
			log.Fatalf("fresh: sending the warm-up probe: %v", err)
		}
		for i := 0; i < 10 && !warmed; i++ {
			time.Sleep(*poll)
			out, err := exec.Command(*stenoread, fmt.Sprintf("host 10.77.%d.250", *subnet), "-nn").Output()
			if err != nil {
				log.Fatalf("fresh: stenoread: %v", err)
			}
			warmed = bytes.Contains(out, []byte(fmt.Sprintf("10.77.%d.250", *subnet)))
		}
	}
	if !warmed {
		log.Fatalf("fresh: %s: the warm-up probe was never found: is capture running?", *label)
	}

	var mu sync.Mutex
	sent := make([]time.Time, *probes)
	go func() {
		for i := 0; i < *probes; i++ {
			frame := probeFrame(addr(i))
			mu.Lock()
			sent[i] = time.Now()
			mu.Unlock()
			if err := send(frame); err != nil {
				log.Fatalf("fresh: sending probe %d: %v", i, err)
			}
			time.Sleep(*every)
		}
	}()

	found := make([]time.Duration, *probes)
	seen := 0
	polls := 0
	srcRE := regexp.MustCompile(`IP (10\.77\.\d+\.\d+)\.\d+ >`)
	deadline := time.Now().Add(time.Duration(*probes)*(*every) + *timeout)
	for seen < *probes {
		if time.Now().After(deadline) {
			var missing []string
			for i := range found {
				if found[i] == 0 {
					missing = append(missing, addr(i))
				}
			}
			log.Fatalf("fresh: %s: %d of %d probes found before the deadline; missing %v", *label, seen, *probes, missing)
		}
		var terms []string
		mu.Lock()
		for i := range sent {
			if !sent[i].IsZero() && found[i] == 0 {
				terms = append(terms, "host "+addr(i))
			}
		}
		mu.Unlock()
		if len(terms) == 0 {
			time.Sleep(*poll)
			continue
		}
		out, err := exec.Command(*stenoread, strings.Join(terms, " or "), "-nn").Output()
		done := time.Now()
		polls++
		if err != nil {
			log.Fatalf("fresh: stenoread: %v", err)
		}
		for _, m := range srcRE.FindAllSubmatch(out, -1) {
			i, ok := index[string(m[1])]
			mu.Lock()
			if ok && found[i] == 0 && !sent[i].IsZero() {
				found[i] = done.Sub(sent[i])
				seen++
			}
			mu.Unlock()
		}
		if !bytes.Contains(out, []byte("10.77.")) {
			time.Sleep(*poll)
		}
	}
	slices.Sort(found)
	fmt.Printf("%-28s probes %3d  p50 %6.2f s  p99 %6.2f s  min %6.2f s  max %6.2f s  (%d stenoread polls)\n",
		*label, *probes, pct(found, 50).Seconds(), pct(found, 99).Seconds(), found[0].Seconds(), found[len(found)-1].Seconds(), polls)
}

// pct is the p-th percentile (nearest rank) of sorted d.
func pct(d []time.Duration, p int) time.Duration {
	i := (len(d)*p + 99) / 100
	return d[max(i, 1)-1]
}

// sender returns a function sending raw frames on iface.
func sender(iface string) (func([]byte) error, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("fresh: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		return nil, fmt.Errorf("fresh: socket(AF_PACKET): %w", err)
	}
	to := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
	return func(frame []byte) error { return unix.Sendto(fd, frame, 0, to) }, nil
}

// probeFrame is a UDP packet from src to 10.78.0.1 port 9 (discard).
func probeFrame(src string) []byte {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0x77, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0x78, 1}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.ParseIP(src).To4(), DstIP: net.IPv4(10, 78, 0, 1).To4()}
	udp := &layers.UDP{SrcPort: 9, DstPort: 9}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		log.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, eth, ip, udp, gopacket.Payload("stenographer probe")); err != nil {
		log.Fatal(err)
	}
	return buf.Bytes()
}

func init() { log.SetFlags(0); log.SetOutput(os.Stderr) }
