package daemon_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/steno"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// Bad files in a running daemon's store: an index whose checksums are
// valid but whose data block handle claims 64 GiB (goleveldb allocated it,
// and the daemon died on the first query touching the file), an index
// whose handle lies past the end of its file, and a FIFO with a pair's
// name (a query hung on it forever). Every query answers with every packet
// of the other files, the daemon logs each bad file, stays up and answers
// the next query; a 1 MB query of '(' is refused as bad, not a stack
// overflow.
func TestDamagedFilesInDaemon(t *testing.T) {
	testenv.RequireTools(t, "tcpreplay")
	pcap := generatedPcap(t)
	frames := framesOf(t, pcap)
	pair := netns.NewPair(t)
	d := daemon.Start(t, pair, daemon.Options{})
	replay(t, pair, 1000, len(frames), pcap)
	waitCount(t, d, everything, len(frames), 2*time.Minute)
	waitFinished(t, d, 0)

	th := d.Config.Threads[0]
	files := d.Files(0)
	oldest, err := strconv.ParseInt(files[0], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	// Named before the oldest file, so that every query of the last hour
	// opens them.
	var bad []string
	for i, idx := range [][]byte{steno.CraftedIndex(0, 64<<30), steno.CraftedIndex(1<<20, 40), nil} {
		name := strconv.FormatInt(oldest-int64(i+1)*1000, 10)
		if err := os.Link(filepath.Join(th.PacketsDirectory, files[0]), filepath.Join(th.PacketsDirectory, name)); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(th.IndexDirectory, name)
		if idx == nil {
			err = syscall.Mkfifo(path, 0o644)
		} else {
			err = os.WriteFile(path, idx, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		bad = append(bad, path)
	}
	logged := func() bool {
		for _, p := range bad {
			if !bytes.Contains(d.Log(), []byte(p)) {
				return false
			}
		}
		return true
	}
	// The store sees the new files at its next refresh: query until every
	// bad file has been met (and logged), each answer complete.
	d.WaitFor("queries meeting every bad file", 2*time.Minute, func() bool {
		waitCount(t, d, everything, len(frames), 2*time.Minute)
		return logged()
	})
	waitCount(t, d, "tcp or udp", count(t, "tcp or udp", frames), time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := d.Query(ctx, strings.Repeat("(", 1<<20), nil)
	if err != nil || r.Status == http.StatusOK || d.Exited() {
		t.Fatalf("1 MB of '(': %v, status %v, daemon exited %v; log:\n%s", err, r, d.Exited(), d.LogTail())
	}
	waitCount(t, d, everything, len(frames), time.Minute)
	// The captured files themselves pass every check: the scans of the
	// time queries, and the pair-identity record stenotype wrote.
	for _, f := range files {
		for _, p := range []string{filepath.Join(th.PacketsDirectory, f), filepath.Join(th.IndexDirectory, f)} {
			if bytes.Contains(d.Log(), []byte(p)) {
				t.Errorf("the log names the captured file %s:\n%s", p, d.LogTail())
			}
		}
	}
}
