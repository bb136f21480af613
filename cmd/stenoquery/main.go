// Command stenoquery runs a query against stenotype data directories on
// this machine and writes the matching packets as PCAP, without a running
// stenographer: for analysts who carry a sensor's disks to another machine,
// and for tests.
//
//	stenoquery --config /etc/stenographer/config 'host 10.0.0.1 and port 53' > out.pcap
//	stenoquery --dir /data/steno --count 'tcp'
//	stenoquery --thread /d0/pkt:/d0/idx --thread /d1/pkt:/d1/idx --explain 'port 443'
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/query"
	"github.com/stenographer-ng/stenographer/stenographer/store"
)

type threadFlags []store.Thread

func (t *threadFlags) String() string { return fmt.Sprint(*t) }
func (t *threadFlags) Set(v string) error {
	pkt, idx, ok := strings.Cut(v, ":")
	if !ok || pkt == "" || idx == "" {
		return errors.New("want PACKETS_DIR:INDEX_DIR")
	}
	*t = append(*t, store.Thread{PacketsDirectory: pkt, IndexDirectory: idx})
	return nil
}

// gcPercent replaces Go's default GOGC of 100 (unless GOGC is set): a
// query's live heap is a few megabytes of batch arenas and read buffers,
// and collecting each time it doubles costs a rare-host query a tenth of
// its run time for nothing; the heap stays bounded, at a few times as much.
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	var threads threadFlags
	config := flag.String("config", "", "stenographer config file whose Threads to read")
	dir := flag.String("dir", "", "stenotype --dir output: reads every PKT<i>/IDX<i> pair in it")
	flag.Var(&threads, "thread", "PACKETS_DIR:INDEX_DIR of one thread (repeatable)")
	blockKB := flag.Int("blocksize_kb", 1024, "packet file block size, as stenotype's --blocksize_kb")
	out := flag.String("w", "-", "write PCAP to this file (- for stdout)")
	count := flag.Bool("count", false, "print the number of matching packets instead of PCAP")
	explain := flag.Bool("explain", false, "print the parsed query and, per file, the positions each primitive matched")
	stats := flag.Bool("stats", false, "print what the query read (files, lookups, index bytes) to stderr")
	limitPackets := flag.Int64("limit-packets", 0, "stop after this many packets (0: no limit)")
	limitBytes := flag.Int64("limit-bytes", 0, "stop after this many PCAP bytes (0: no limit)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: stenoquery (--config FILE | --dir DIR | --thread P:I ...) [flags] QUERY\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*config, *dir, threads, *blockKB, flag.Arg(0), *out, *count, *explain, *stats, pcap.Limits{MaxPackets: *limitPackets, MaxBytes: *limitBytes}); err != nil {
		fmt.Fprintln(os.Stderr, "stenoquery:", err)
		os.Exit(1)
	}
}

func run(config, dir string, threads []store.Thread, blockKB int, text, out string, count, explain, stats bool, limits pcap.Limits) error {
	var err error
	switch {
	case config != "":
		threads, err = threadsFromConfig(config)
	case dir != "":
		threads, err = threadsFromDir(dir)
	}
	if err != nil {
		return err
	}
	if len(threads) == 0 {
		return errors.New("no data directories: give --config, --dir or --thread")
	}
	q, err := query.Parse(text, time.Now())
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st := store.New(store.Config{Threads: threads, BlockSize: blockKB * 1024, Logger: logger})
	if err := st.Refresh(); err != nil {
		return err
	}
	if explain {
		return st.Explain(ctx, q, os.Stdout)
	}
	var w io.Writer = os.Stdout
	if count {
		w = io.Discard
	} else if out != "-" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	pw, err := pcap.NewWriter(w, limits)
	if err != nil {
		return err
	}
	pw.SetFlushInterval(pcap.StreamFlushInterval)
	res, err := st.Query(ctx, q, pw)
	if err != nil {
		return err
	}
	for _, e := range res.Errors {
		fmt.Fprintln(os.Stderr, "stenoquery: warning:", e)
	}
	if count {
		fmt.Println(res.Packets)
	}
	if stats {
		fmt.Fprintf(os.Stderr, "stats: packets=%d pcap_bytes=%d files_opened=%d files_skipped=%d lookups=%d index_bytes_read=%d\n",
			res.Packets, res.Bytes, res.FilesOpened, res.FilesSkipped, res.Lookups, res.IndexBytes)
	}
	if res.Truncated {
		fmt.Fprintf(os.Stderr, "stenoquery: result truncated at %d packets, %d bytes\n", res.Packets, res.Bytes)
	}
	if n := len(res.Errors); n > 0 {
		// The result is complete except for those files; a script must
		// still be able to tell it from a whole one.
		return fmt.Errorf("%d file(s) could not be read completely (warnings above); the result has all other packets", n)
	}
	return nil
}

// threadsFromConfig reads only the Threads of a stenographer config file;
// the full config is validated by the daemon.
func threadsFromConfig(path string) ([]store.Thread, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c struct{ Threads []store.Thread }
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c.Threads, nil
}

// threadsFromDir finds PKT<i>/IDX<i> pairs in a stenotype --dir.
func threadsFromDir(dir string) ([]store.Thread, error) {
	var out []store.Thread
	for i := 0; ; i++ {
		pkt := filepath.Join(dir, fmt.Sprintf("PKT%d", i))
		idx := filepath.Join(dir, fmt.Sprintf("IDX%d", i))
		if _, err := os.Stat(pkt); err != nil {
			break
		}
		out = append(out, store.Thread{PacketsDirectory: pkt, IndexDirectory: idx})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PKT0 directory in %s", dir)
	}
	return out, nil
}
