package fleet

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/pcap"
)

// memStreams makes n PCAP streams of per packets each, their timestamps
// interleaved (stream i holds packets i, i+n, i+2n, ...) and their
// lengths varied as real traffic is (60 to 1514 bytes).
func memStreams(t testing.TB, n, per int) [][]byte {
	t.Helper()
	base := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	data := make([]byte, 1514)
	var out [][]byte
	for i := range n {
		var b bytes.Buffer
		w, err := pcap.NewWriter(&b, pcap.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		for k := range per {
			seq := k*n + i
			data[0] = byte(seq)
			l := 60 + (seq*397)%1455
			if err := w.WritePacket(base.Add(time.Duration(seq)*time.Microsecond), l, data[:l]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Bytes())
	}
	return out
}

// memSources reads streams through the same source and pcapReader the
// sensors' HTTPS answers go through.
func memSources(t testing.TB, streams [][]byte) []pcap.Source {
	t.Helper()
	opened := make(chan struct{})
	close(opened)
	var out []pcap.Source
	for _, s := range streams {
		rd, err := newPCAPReader(bytes.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &source{rd: rd, opened: opened, resp: &http.Response{}})
	}
	return out
}

func TestMergeInto(t *testing.T) {
	streams := memStreams(t, 3, 5000)
	cases := []struct {
		name      string
		limits    pcap.Limits
		packets   int
		truncated bool
	}{
		{"whole", pcap.Limits{}, 15000, false},
		{"packet limit", pcap.Limits{MaxPackets: 1001}, 1001, true},
		{"byte limit", pcap.Limits{MaxBytes: 100000}, -1, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			pw, err := pcap.NewWriter(&out, c.limits)
			if err != nil {
				t.Fatal(err)
			}
			truncated, err := mergeInto(pw, memSources(t, streams))
			if err != nil || truncated != c.truncated {
				t.Fatalf("mergeInto: truncated %v, err %v; want truncated %v", truncated, err, c.truncated)
			}
			ts := records(t, out.Bytes())
			if c.packets >= 0 && len(ts) != c.packets {
				t.Fatalf("%d packets, want %d", len(ts), c.packets)
			}
			// Each packet is intact where it was handed out in place: the
			// first data byte is its sequence number, and it is in order.
			rd, err := newPCAPReader(bytes.NewReader(out.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			for seq := 0; ; seq++ {
				p, err := rd.next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if p.Data[0] != byte(seq) || len(p.Data) != 60+(seq*397)%1455 {
					t.Fatalf("packet %d: first byte %d, %d bytes", seq, p.Data[0], len(p.Data))
				}
			}
		})
	}
}

func TestPCAPReaderCutShort(t *testing.T) {
	s := memStreams(t, 1, 3)[0]
	for _, cut := range []int{pcap.FileHeaderSize + 5, pcap.FileHeaderSize + pcap.RecordHeaderSize + 10, len(s) - 1} {
		rd, err := newPCAPReader(bytes.NewReader(s[:cut]))
		if err != nil {
			t.Fatal(err)
		}
		for {
			_, err = rd.next()
			if err != nil {
				break
			}
		}
		if err == io.EOF {
			t.Errorf("stream cut at %d bytes: a clean end, want an error", cut)
		}
	}
}

// BenchmarkMerge is the merge path without the network: three in-memory
// sensor streams read, merged and written. Allocations are per merge, not
// per packet.
func BenchmarkMerge(b *testing.B) {
	const per = 20000
	streams := memStreams(b, 3, per)
	var total int64
	for _, s := range streams {
		total += int64(len(s))
	}
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		pw, err := pcap.NewWriter(io.Discard, pcap.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := mergeInto(pw, memSources(b, streams)); err != nil {
			b.Fatal(err)
		}
		if pw.Packets() != 3*per {
			b.Fatalf("%d packets, want %d", pw.Packets(), 3*per)
		}
	}
}
