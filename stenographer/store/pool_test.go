package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/query"
)

// TestReaderPools: 50 queries at once through pools of one index reader
// and one packet reader all get their exact answers; a query waiting for
// a reader ends with its context.
func TestReaderPools(t *testing.T) {
	dir, _ := build(t, 400)
	s := New(Config{BlockSize: blockSize, IndexReaders: 1, PacketReaders: 1, Threads: []Thread{
		{filepath.Join(dir, "PKT0"), filepath.Join(dir, "IDX0"), "eth0"},
		{filepath.Join(dir, "PKT1"), filepath.Join(dir, "IDX1"), "eth1"},
	}})
	if err := s.Refresh(); err != nil {
		t.Fatal(err)
	}
	queries := []string{"port 1003", "port 1001 or port 1007", "after " + base.Add(100*time.Second).Format(time.RFC3339)}
	want := map[string][]int{}
	for _, q := range queries {
		want[q], _ = run(t, s, q, pcap.Limits{})
		if len(want[q]) == 0 {
			t.Fatalf("%q matches nothing", q)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := queries[i%len(queries)]
			if got, _ := run(t, s, q, pcap.Limits{}); !slices.Equal(got, want[q]) {
				t.Errorf("query %d %q: %d packets, want %d", i, q, len(got), len(want[q]))
			}
		}()
	}
	wg.Wait()

	// Every reader busy: a query gives up with its context.
	for _, pool := range []chan struct{}{s.indexSlots, s.packetSlots} {
		pool <- struct{}{}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		n, _ := query.Parse("port 1003", base.Add(time.Hour))
		var buf bytes.Buffer
		w, _ := pcap.NewWriter(&buf, pcap.Limits{})
		if _, err := s.Query(ctx, n, w); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("query with no reader free: %v, want its deadline", err)
		}
		cancel()
		<-pool
	}
}
