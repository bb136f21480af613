package pcap

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"
)

type sliceSource struct {
	pkts []Packet
	i    int
	err  error
}

func (s *sliceSource) Next() bool {
	if s.i >= len(s.pkts) {
		return false
	}
	s.i++
	return true
}
func (s *sliceSource) Packet() Packet { return s.pkts[s.i-1] }
func (s *sliceSource) Err() error {
	if s.i >= len(s.pkts) {
		return s.err
	}
	return nil
}

func src(secs ...int) *sliceSource {
	s := &sliceSource{}
	for _, x := range secs {
		s.pkts = append(s.pkts, Packet{Timestamp: time.Unix(int64(x), 0), Data: []byte{byte(x)}})
	}
	return s
}

func TestMerge(t *testing.T) {
	m := NewMerge(src(1, 4, 7), src(), src(2, 3, 9), src(4, 5))
	var got []int
	for m.Next() {
		got = append(got, int(m.Packet().Timestamp.Unix()))
	}
	if err := m.Err(); err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 2, 3, 4, 4, 5, 7, 9}; !slices.Equal(got, want) {
		t.Errorf("merge = %v, want %v", got, want)
	}
}

// batchSource is a sliceSource holding its packets in batches of size,
// as the store's thread sources do.
type batchSource struct {
	sliceSource
	size    int
	batches int // Batch calls
}

func (s *batchSource) Batch() []Packet {
	s.batches++
	end := min(len(s.pkts), (s.i+s.size-1)/s.size*s.size) // the end of the current packet's batch
	b := s.pkts[s.i-1 : end]
	s.i = end
	return b
}

func TestMergeNextBatch(t *testing.T) {
	batched := func(size int, secs ...int) *batchSource { return &batchSource{sliceSource: *src(secs...), size: size} }
	for _, tc := range []struct {
		name    string
		srcs    []Source
		want    []int
		batches int // Batch calls of the first source
	}{
		{"one batcher", []Source{batched(3, 1, 2, 3, 4, 5, 6, 7)}, []int{1, 2, 3, 4, 5, 6, 7}, 3},
		{"one plain source", []Source{src(1, 2, 3)}, []int{1, 2, 3}, 0},
		// Two sources: packet by packet while both have packets, then
		// by batch once the other is exhausted.
		{"batcher and another", []Source{batched(2, 1, 3, 5, 6, 7, 8), src(2, 4)}, []int{1, 2, 3, 4, 5, 6, 7, 8}, 2},
		{"none", []Source{}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMerge(tc.srcs...)
			var got []int
			for b := m.NextBatch(); b != nil; b = m.NextBatch() {
				for _, p := range b {
					got = append(got, int(p.Timestamp.Unix()))
				}
			}
			if err := m.Err(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("NextBatch gave %v, want %v", got, tc.want)
			}
			if len(tc.srcs) == 0 {
				return
			}
			if b, ok := tc.srcs[0].(*batchSource); ok && b.batches != tc.batches {
				t.Errorf("%d Batch calls, want %d", b.batches, tc.batches)
			}
		})
	}
}

func TestMergeError(t *testing.T) {
	bad := src(2)
	bad.err = errors.New("disk on fire")
	m := NewMerge(src(1, 3), bad)
	n := 0
	for m.Next() {
		n++
	}
	if m.Err() == nil || n != 2 {
		t.Errorf("got %d packets, err %v; want 2 and the source's error", n, m.Err())
	}
}

func TestWriterReadBack(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	frame := bytes.Repeat([]byte{0xab}, 60)
	ts := time.Date(2024, 1, 2, 3, 4, 5, 678901234, time.UTC)
	for i := 0; i < 3; i++ {
		if err := w.WritePacket(ts.Add(time.Duration(i)*time.Second), 1514, frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatal(err)
		}
		want := ts.Add(time.Duration(i) * time.Second).Truncate(time.Microsecond)
		if !ci.Timestamp.Equal(want) || ci.Length != 1514 || !bytes.Equal(data, frame) {
			t.Errorf("packet %d: ts %v len %d data %d bytes", i, ci.Timestamp, ci.Length, len(data))
		}
	}
	if w.Bytes() != int64(buf.Len()) || w.Packets() != 3 {
		t.Errorf("Bytes/Packets = %d/%d, stream has %d bytes", w.Bytes(), w.Packets(), buf.Len())
	}
	// tcpdump must read it too.
	if _, err := exec.LookPath("tcpdump"); err == nil {
		cmd := exec.Command("tcpdump", "-qnr", "-")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.Output()
		if err != nil || strings.Count(string(out), "length 1514") != 3 {
			t.Errorf("tcpdump: %v\n%s", err, out)
		}
	}
}

func TestLimits(t *testing.T) {
	frame := make([]byte, 100)
	tests := []struct {
		limits Limits
		want   int64
	}{
		{Limits{}, 10},
		{Limits{MaxPackets: 3}, 3},
		{Limits{MaxBytes: FileHeaderSize + 2*(RecordHeaderSize+100)}, 2},
		{Limits{MaxBytes: FileHeaderSize + 2*(RecordHeaderSize+100) + 50}, 3}, // the crossing packet is kept
		{Limits{MaxBytes: FileHeaderSize + 1}, 1},
		{Limits{MaxBytes: 10}, 0}, // the file header alone reaches it
		{Limits{MaxPackets: 5, MaxBytes: FileHeaderSize + 3*(RecordHeaderSize+100)}, 3},
		{Limits{MaxPackets: 2, MaxBytes: FileHeaderSize + 3*(RecordHeaderSize+100)}, 2},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%+v", tc.limits), func(t *testing.T) {
			var buf bytes.Buffer
			w, _ := NewWriter(&buf, tc.limits)
			var err error
			for i := 0; i < 10 && err == nil; i++ {
				err = w.WritePacket(time.Unix(1, 0), 100, frame)
			}
			if tc.want < 10 && !errors.Is(err, ErrLimit) {
				t.Errorf("err = %v, want ErrLimit", err)
			}
			w.Flush()
			if w.Packets() != tc.want {
				t.Errorf("packets = %d, want %d", w.Packets(), tc.want)
			}
			// A byte limit stops the stream at the first packet that
			// reaches it: without that packet the stream is under it.
			if l := tc.limits.MaxBytes; l > 0 && w.Packets() > 0 && int64(buf.Len()-RecordHeaderSize-len(frame)) >= l {
				t.Errorf("stream of %d bytes went on after reaching limit %d", buf.Len(), l)
			}
		})
	}
}

// TestFlushInterval checks that a streaming writer hands the first packet
// on at once and keeps later ones buffered until the interval has passed.
func TestFlushInterval(t *testing.T) {
	tests := []struct {
		name     string
		interval time.Duration
		wantOut  int // bytes reaching the underlying writer after two packets
	}{
		{"no interval buffers everything", 0, 0},
		{"first packet leaves at once", time.Hour, FileHeaderSize + RecordHeaderSize + 60},
		{"tiny interval flushes each packet", time.Nanosecond, FileHeaderSize + 2*(RecordHeaderSize+60)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			w, err := NewWriter(&out, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			w.SetFlushInterval(tc.interval)
			for range 2 {
				time.Sleep(time.Millisecond)
				if err := w.WritePacket(time.Unix(1, 0), 60, make([]byte, 60)); err != nil {
					t.Fatal(err)
				}
			}
			if out.Len() != tc.wantOut {
				t.Errorf("after two packets %d bytes reached the output, want %d", out.Len(), tc.wantOut)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if want := FileHeaderSize + 2*(RecordHeaderSize+60); out.Len() != want {
				t.Errorf("after Flush %d bytes, want %d", out.Len(), want)
			}
		})
	}
}
