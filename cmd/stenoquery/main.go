// Command stenoquery runs a query against stenotype data directories on
// this machine and writes the matching packets as PCAP (or pcapng with
// --pcapng), without a running
// stenographer: for analysts who carry a sensor's disks to another machine,
// and for tests.
//
//	stenoquery --config /etc/stenographer/config 'host 10.0.0.1 and port 53' > out.pcap
//	stenoquery --dir /data/steno --count 'tcp'
//	stenoquery --thread /d0/pkt:/d0/idx --thread /d1/pkt:/d1/idx --explain 'port 443'
package main

import (
	"context"
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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stenographer-ng/stenographer/stenographer/config"
	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/pcap"
	"github.com/stenographer-ng/stenographer/stenographer/serve"
	"github.com/stenographer-ng/stenographer/stenographer/store"
	"github.com/stenographer-ng/stenographer/stenographer/version"
)

type threadFlags []store.Thread

func (t *threadFlags) String() string { return fmt.Sprint(*t) }
func (t *threadFlags) Set(v string) error {
	pkt, idx, ok := strings.Cut(v, ":")
	idx, iface, _ := strings.Cut(idx, ":")
	if !ok || pkt == "" || idx == "" {
		return errors.New("want PACKETS_DIR:INDEX_DIR[:INTERFACE]")
	}
	*t = append(*t, store.Thread{PacketsDirectory: pkt, IndexDirectory: idx, Interface: iface})
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
	configPath := flag.String("config", "", "stenographer config file: its Threads, and --blocksize_kb from its Flags")
	dir := flag.String("dir", "", "stenotype --dir output: reads every PKT<i>/IDX<i> pair in it")
	flag.Var(&threads, "thread", "PACKETS_DIR:INDEX_DIR[:INTERFACE] of one thread (repeatable; the interface is for iface and --pcapng)")
	blockKB := flag.Int("blocksize_kb", 1024, "packet file block size, as stenotype's --blocksize_kb (default: the config's Flags, else 1024)")
	out := flag.String("w", "-", "write PCAP to this file (- for stdout)")
	ng := flag.Bool("pcapng", false, "write pcapng (an interface block per capture interface, nanosecond timestamps) instead of PCAP")
	count := flag.Bool("count", false, "print the number of matching packets instead of PCAP")
	explain := flag.Bool("explain", false, "print the parsed query and, per file, the positions each primitive matched")
	stats := flag.Bool("stats", false, "print what the query read (files, lookups, index bytes) to stderr")
	limitPackets := flag.Int64("limit-packets", 0, "stop after this many packets (0: no limit)")
	limitBytes := flag.Int64("limit-bytes", 0, "stop once the PCAP reaches this many bytes, after the packet that crosses it, as stenoread does (0: no limit)")
	filter := flag.String("filter", "", "tcpdump expression refining the result (compiled by libpcap, run on each packet the query finds)")
	summarize := flag.Bool("summarize", false, "write the summary tables the store lacks (as the daemon does in the background), then answer QUERY if given; safe beside a daemon building them too")
	maxScanBytes := flag.Int64("max_scan_bytes", 0, "refuse a query whose negation no indexed term bounds when the packets of its time range exceed this many bytes (0: no limit)")
	noSummaries := flag.Bool("no_summaries", false, "look every file up in its own index, ignoring summary tables")
	statFiles := flag.Bool("stat_files", true, "stat every file while listing, as the daemon does: a summary is trusted for a file only if its index has the size, change time and inode the summary recorded; false checks the inode number alone (no stat per file, but an index copied over in place, keeping its inode, would be missed)")
	showVersion := flag.Bool("version", false, "print the version and commit, then exit")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: stenoquery (--config FILE | --dir DIR | --thread P:I ...) [flags] QUERY\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *showVersion {
		fmt.Println(version.String("stenoquery"))
		return
	}
	if flag.NArg() != 1 && !(*summarize && flag.NArg() == 0) {
		flag.Usage()
		os.Exit(2)
	}
	// --blocksize_kb given on the command line wins; otherwise a config's
	// Flags say what stenotype wrote with.
	blockSize := 0
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "blocksize_kb" {
			blockSize = *blockKB * 1024
		}
	})
	o := options{filter: *filter, out: *out, limits: pcap.Limits{MaxPackets: *limitPackets, MaxBytes: *limitBytes},
		summarize: *summarize, summaries: !*noSummaries, statFiles: *statFiles,
		count: *count, explain: *explain, stats: *stats, ng: *ng, maxScanBytes: *maxScanBytes}
	if err := run(*configPath, *dir, threads, blockSize, flag.Arg(0), o); err != nil {
		fmt.Fprintln(os.Stderr, "stenoquery:", err)
		os.Exit(1)
	}
}

// options say how run answers the query.
type options struct {
	filter, out               string // --filter; -w
	limits                    pcap.Limits
	summarize, summaries      bool
	statFiles                 bool
	count, explain, stats, ng bool
	maxScanBytes              int64
}

// run answers the query. blockSize 0 means the config's, else 1 MiB.
func run(configPath, dir string, threads []store.Thread, blockSize int, text string, o options) error {
	count, explain, stats, ng, out := o.count, o.explain, o.stats, o.ng, o.out
	var err error
	switch {
	case configPath != "":
		// The daemon's own loader: the same checks, the same thread
		// directories, the same block size.
		var cfg *config.Config
		if cfg, err = config.Load(configPath); err == nil {
			threads = cfg.StoreThreads()
			if blockSize == 0 {
				blockSize = cfg.BlockSize()
			}
		}
	case dir != "":
		threads, err = threadsFromDir(dir)
	}
	if err != nil {
		return err
	}
	if len(threads) == 0 {
		return errors.New("no data directories: give --config, --dir or --thread")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st := store.New(store.Config{Threads: threads, BlockSize: blockSize, Logger: logger, Summaries: o.summaries || o.summarize, MaxScanBytes: o.maxScanBytes,
		// A one-shot query over 20,000 files would spend most of its
		// time in a stat of each.
		NamesOnly: !o.statFiles})
	t0 := time.Now()
	if err := st.Refresh(); err != nil {
		return err
	}
	listed := time.Since(t0)
	if o.summarize {
		t0 := time.Now()
		n, err := st.Summarize(ctx)
		fmt.Fprintf(os.Stderr, "stenoquery: %d summary tables written in %.2f s\n", n, time.Since(t0).Seconds())
		if err != nil || text == "" {
			return err
		}
	}
	q, err := serve.Parse(text, time.Now())
	if err != nil {
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
	runner, err := serve.New(serve.Config{Store: st, Metrics: metrics.New(prometheus.NewRegistry())})
	if err != nil {
		return err
	}
	t1 := time.Now()
	oc := runner.Run(ctx, serve.Request{Transport: metrics.TransportLocal, Text: text, Filter: o.filter, Limits: o.limits, Pcapng: ng}, sink{w})
	if oc.Err != nil {
		return oc.Err
	}
	res := oc.Result
	ran := time.Since(t1)
	for _, e := range res.Errors {
		fmt.Fprintln(os.Stderr, "stenoquery: warning:", e)
	}
	if count {
		fmt.Println(res.Packets)
	}
	if stats {
		fmt.Fprintf(os.Stderr, "stats: packets=%d pcap_bytes=%d files_opened=%d files_skipped=%d files_summary_skipped=%d lookups=%d index_bytes_read=%d summary_bytes_read=%d list_us=%d query_us=%d\n",
			res.Packets, res.Bytes, res.FilesOpened, res.FilesSkipped, res.FilesSummarySkipped, res.Lookups, res.IndexBytes, res.SummaryBytes,
			listed.Microseconds(), ran.Microseconds())
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

// sink writes straight to a file: there is nothing to flush.
type sink struct{ io.Writer }

func (sink) Flush() error { return nil }

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
