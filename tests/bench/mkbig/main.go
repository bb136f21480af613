// Command mkbig writes one large Ethernet pcap for the query benchmark by
// repeating the corpus's capture files, each copy shifted in time (so the
// copies follow each other) and, from the second copy on, with the second
// octet of every IPv4 address bumped so that a host of the corpus stays as
// rare as it was in one copy.
//
//	mkbig -o big.pcap -min_bytes 2200000000 ../shared/pcaps/*.pcap
//
// With -byte_rate the packets' own timing is dropped: each packet is stamped
// as if the whole output had been captured at that constant rate of packet
// bytes, so that a small capture spans as many seconds as the file-count
// benchmark needs and every stored block covers about the same time.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

type packet struct {
	ts   time.Duration // offset from the copy's start
	wire int
	data []byte
}

func main() {
	out := flag.String("o", "big.pcap", "output pcap")
	minBytes := flag.Int64("min_bytes", 2_200_000_000, "write at least this many packet bytes")
	byteRate := flag.Int64("byte_rate", 0, "if > 0, stamp packets at this constant rate of packet bytes per second instead of their own timing")
	flag.Parse()
	var pkts []packet
	var span time.Duration
	for _, name := range flag.Args() {
		f, err := os.Open(name)
		if err != nil {
			fatal(err)
		}
		r, err := pcapgo.NewReader(f)
		if err != nil || r.LinkType() != layers.LinkTypeEthernet {
			f.Close()
			continue
		}
		var first time.Time
		for {
			data, ci, err := r.ReadPacketData()
			if err == io.EOF {
				break
			}
			if err != nil {
				break
			}
			if first.IsZero() {
				first = ci.Timestamp
			}
			off := ci.Timestamp.Sub(first)
			if off < 0 || off > time.Minute {
				off = 0 // keep each file's packets within a minute
			}
			pkts = append(pkts, packet{ts: span + off, wire: ci.Length, data: append([]byte(nil), data...)})
		}
		f.Close()
		span += time.Minute
	}
	o, err := os.Create(*out)
	if err != nil {
		fatal(err)
	}
	bw := bufio.NewWriterSize(o, 1<<20)
	w := pcapgo.NewWriterNanos(bw)
	if err := w.WriteFileHeader(262144, layers.LinkTypeEthernet); err != nil {
		fatal(err)
	}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var written, n int64
	for copyN := 0; written < *minBytes; copyN++ {
		start := base.Add(time.Duration(copyN) * span)
		for _, p := range pkts {
			data := p.data
			if copyN > 0 {
				data = append([]byte(nil), p.data...)
				shiftIPv4(data, byte(copyN))
			}
			ts := start.Add(p.ts)
			if *byteRate > 0 {
				// In float: written * 1e9 overflows int64 past 9 GB.
				ts = base.Add(time.Duration(float64(written) / float64(*byteRate) * 1e9))
			}
			ci := gopacketCI(ts, len(data), p.wire)
			if err := w.WritePacket(ci, data); err != nil {
				fatal(err)
			}
			written += int64(len(data))
			n++
		}
	}
	if err := bw.Flush(); err != nil {
		fatal(err)
	}
	o.Close()
	fmt.Printf("mkbig: %d packets, %d bytes of packets in %s\n", n, written, *out)
	if *byteRate > 0 {
		fmt.Printf("mkbig: packets stamped at %d bytes/s from %s over %.0f s\n", *byteRate, base.Format(time.RFC3339), float64(written)/float64(*byteRate))
	}
}

// shiftIPv4 adds k to the second octet of both addresses of an untagged
// IPv4 frame.
func shiftIPv4(d []byte, k byte) {
	if len(d) < 34 || d[12] != 0x08 || d[13] != 0x00 || d[14]>>4 != 4 {
		return
	}
	d[27] += k
	d[31] += k
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "mkbig:", err)
	os.Exit(1)
}
