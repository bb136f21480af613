// Command stenographer is the capture daemon (SPEC §11): it runs and
// babysits stenotype, deletes the oldest data to keep disks usable, and
// serves queries over HTTPS (and gRPC when the config has an Rpc section),
// both with mutual TLS.
//
// This file is flags and wiring only: config → store → supervisors (one
// per capture interface),
// retention, HTTPS and gRPC servers; SIGTERM/SIGINT stops them in order;
// SIGHUP is logged and ignored.
//
// Exit status: 0 after a clean stop, 2 for a bad command line or config
// file (thread directories stenotype's user cannot write included), 1 for
// any other failure (thread directories in use by another daemon,
// certificates, listening, a server that fails, a stenotype that had to be
// killed at shutdown).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/stenographer-ng/stenographer/stenographer/config"
	"github.com/stenographer-ng/stenographer/stenographer/connlimit"
	"github.com/stenographer-ng/stenographer/stenographer/dirwatch"
	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/retention"
	"github.com/stenographer-ng/stenographer/stenographer/rpc"
	serving "github.com/stenographer-ng/stenographer/stenographer/serve"
	"github.com/stenographer-ng/stenographer/stenographer/server"
	"github.com/stenographer-ng/stenographer/stenographer/store"
	"github.com/stenographer-ng/stenographer/stenographer/supervisor"
	"github.com/stenographer-ng/stenographer/stenographer/version"
)

// stopTimeout bounds the whole shutdown; stenotype gets its own grace
// (supervisor.DefaultStopGrace) inside it.
const stopTimeout = 60 * time.Second

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

// limits are the query and connection bounds from the command line.
type limits struct {
	maxQueries int
	conns      connlimit.Limits
	// watchFiles: find new files through inotify as well as the scan.
	watchFiles bool
	// indexReaders, packetReaders: the store's reader pools.
	indexReaders, packetReaders int
	// maxScanBytes: store.Config.MaxScanBytes.
	maxScanBytes int64
	// summaries: build and use summary tables; summaryGroup: files per
	// first-level table.
	summaries    bool
	summaryGroup int
}

// DefaultMaxScanBytes is --max_scan_bytes: 10 GiB, a scan of a minute or
// two from one disk, so that a stray `not port 22` cannot occupy the
// sensor's disks for hours.
const DefaultMaxScanBytes = 10 << 30

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("stenographer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/etc/stenographer/config", "configuration file (JSON, SPEC §9)")
	useSyslog := fs.Bool("syslog", false, "log to syslog (facility daemon) instead of stderr")
	verbosity := fs.Int("v", 0, "log verbosity: 0 info, 1 or more debug (idle-thread checks, private directory)")
	syncInterval := fs.Duration("sync_interval", 15*time.Second, "how often new files are picked up, disks checked and stenotype's progress looked at")
	staleTimeout := fs.Duration("stale_timeout", supervisor.DefaultStaleTimeout, "restart stenotype when a thread writes no new file for this long (negative: never)")
	var lim limits
	fs.IntVar(&lim.maxQueries, "max_queries", serving.DefaultMaxRunning, "queries running at once over HTTPS and gRPC together; more wait up to 10 s, then get 503 / RESOURCE_EXHAUSTED")
	fs.IntVar(&lim.conns.MaxConns, "max_conns", 0, "open connections per server (HTTPS, gRPC); 0: 256, or a quarter of the descriptor limit if lower")
	fs.IntVar(&lim.conns.MaxConnsPerIP, "max_conns_per_ip", connlimit.DefaultMaxConnsPerIP, "open connections per client address and server")
	fs.DurationVar(&lim.conns.HandshakeTimeout, "handshake_timeout", connlimit.DefaultHandshakeTimeout, "time a connection has for its TLS handshake (and, over HTTPS, its request headers)")
	fs.IntVar(&lim.indexReaders, "index_readers", store.DefaultIndexReaders, "index files evaluated at once, over all queries together")
	fs.IntVar(&lim.packetReaders, "packet_readers", store.DefaultPacketReaders, "batches of packets read at once, over all queries together")
	fs.Int64Var(&lim.maxScanBytes, "max_scan_bytes", DefaultMaxScanBytes, "refuse a query whose negation no indexed term bounds ('not port 22') when the packets of its time range exceed this many bytes (it reads them all); 0: no limit")
	fs.BoolVar(&lim.watchFiles, "watch_files", true, "find stenotype's new files at once through inotify (false: at the next --sync_interval scan only, e.g. on a file system without inotify)")
	fs.BoolVar(&lim.summaries, "summaries", true, "keep summary tables of the index files in IDX<i>/.summary (built in the background) so that a query opens only the indexes that can match")
	fs.IntVar(&lim.summaryGroup, "summary_group", store.DefaultSummaryGroup, "index files per first-level summary table")
	showVersion := fs.Bool("version", false, "print the version and commit, then exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Println(version.String("stenographer"))
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "stenographer: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *syncInterval <= 0 {
		fmt.Fprintf(stderr, "stenographer: --sync_interval must be positive, not %v\n", *syncInterval)
		return 2
	}
	log := newLogger(*useSyslog, *verbosity, stderr)
	defer logHangups(log)()

	cfg, err := config.Load(*configPath)
	if err != nil {
		log.Error("bad configuration", "err", err)
		if *useSyslog {
			fmt.Fprintf(stderr, "stenographer: %v\n", err)
		}
		return 2
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration", "config", *configPath, "warning", w)
	}
	log.Info("starting", "config", *configPath, "interfaces", strings.Join(cfg.Interfaces(), ","), "threads", len(cfg.Threads),
		"https", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)), "grpc", cfg.Rpc != nil)
	if lim.indexReaders <= 0 || lim.packetReaders <= 0 {
		fmt.Fprintf(stderr, "stenographer: --index_readers and --packet_readers must be positive, not %d and %d\n", lim.indexReaders, lim.packetReaders)
		return 2
	}
	if lim.maxScanBytes < 0 {
		fmt.Fprintf(stderr, "stenographer: --max_scan_bytes must be 0 (no limit) or positive, not %d\n", lim.maxScanBytes)
		return 2
	}
	if lim.maxQueries <= 0 {
		fmt.Fprintf(stderr, "stenographer: --max_queries must be positive, not %d\n", lim.maxQueries)
		return 2
	}
	if err := serve(cfg, log, *syncInterval, *staleTimeout, lim); err != nil {
		if errors.Is(err, supervisor.ErrNoAccess) {
			// Directories that can never work are a configuration error.
			log.Error("bad configuration", "err", err)
			return 2
		}
		log.Error("stopped with an error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// serve runs everything until SIGTERM/SIGINT or a server fails.
func serve(cfg *config.Config, log *slog.Logger, syncInterval, staleTimeout time.Duration, lim limits) error {
	// One stenotype per interface, each supervised on its own.
	sup, err := supervisor.NewGroup(supervisor.Config{
		StenotypePath: cfg.StenotypePath, Interface: cfg.Interface, Flags: cfg.Flags,
		Threads: cfg.StoreThreads(), Logger: log,
		StaleTimeout: staleTimeout, CheckInterval: syncInterval,
	})
	if err != nil {
		return err
	}
	// From here on, every return stops the supervisor (removing its
	// private directory) first.
	stopSup := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		return sup.Stop(ctx)
	}

	st := store.New(store.Config{Threads: cfg.StoreThreads(), BlockSize: cfg.BlockSize(),
		MaxOpenFiles: cfg.MaxOpenFiles, IndexReaders: lim.indexReaders, PacketReaders: lim.packetReaders,
		MaxScanBytes: lim.maxScanBytes, Summaries: lim.summaries, SummaryGroup: lim.summaryGroup, Logger: log})
	if err := st.Refresh(); err != nil {
		return errors.Join(err, stopSup())
	}

	type runner struct {
		name  string
		serve func(context.Context, net.Listener) error
		ln    net.Listener
	}
	var runners []runner
	closeAll := func() {
		for _, r := range runners {
			r.ln.Close()
		}
	}
	// One registry for /metrics and one Runner for both servers, so
	// --max_queries bounds them together.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		server.NewCollector(st, sup))
	queries, err := serving.New(serving.Config{Store: st, Metrics: metrics.New(reg), MaxRunning: lim.maxQueries, Logger: log})
	if err != nil {
		return errors.Join(err, stopSup())
	}
	https, err := server.New(server.Config{Addr: net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		CertPath: cfg.CertPath, Store: st, Runner: queries, Capture: sup, Conns: lim.conns,
		RunningConfig: cfg, Logger: log})
	if err != nil {
		return errors.Join(err, stopSup())
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	if err != nil {
		return errors.Join(fmt.Errorf("HTTPS (Host, Port): %w", err), stopSup())
	}
	runners = append(runners, runner{"HTTPS", https.ServeListener, ln})
	if r := cfg.Rpc; r != nil {
		// Every address unless Rpc.ServerHost says otherwise, as the
		// reference listens: remote clients use gRPC, HTTPS stays on Host.
		addr := net.JoinHostPort(r.ServerHost, strconv.Itoa(r.ServerPort))
		g, err := rpc.New(rpc.Config{Addr: addr, CaCert: r.CaCert, ServerCert: r.ServerCert, ServerKey: r.ServerKey,
			Store: st, ServerPcapMaxSize: r.ServerPcapMaxSize, ClientPcapChunkSize: r.ClientPcapChunkSize,
			ClientPcapMaxSize: r.ClientPcapMaxSize, Runner: queries, Capture: sup, Conns: lim.conns, Logger: log})
		if err != nil {
			closeAll()
			return errors.Join(err, stopSup())
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return errors.Join(fmt.Errorf("gRPC (Rpc.ServerHost, Rpc.ServerPort): %w", err), stopSup())
		}
		runners = append(runners, runner{"gRPC", g.ServeListener, ln})
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	var wg sync.WaitGroup
	// Watching before stenotype starts: its first file must not be missed.
	if lim.watchFiles {
		watchFiles(ctx, &wg, cfg, st, log)
	}
	sup.Start()
	cleaner := retention.New(retention.Config{Store: st, Threads: cfg.Threads, Interval: syncInterval, Logger: log})
	wg.Add(1)
	go func() {
		defer wg.Done()
		cleaner.Run(ctx)
	}()
	if lim.summaries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			summarize(ctx, st, syncInterval, log)
		}()
	}
	failed := make(chan error, len(runners))
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.serve(ctx, r.ln); err != nil {
				failed <- fmt.Errorf("%s: %w", r.name, err)
				cancel()
			}
		}()
	}

	<-ctx.Done()
	log.Info("shutting down: servers stop accepting, stenotype flushes its files")
	// Servers and stenotype stop at the same time: the servers cancel
	// their queries at once, stenotype needs its --blockage_sec and the
	// index of its last file.
	var supErr error
	supDone := make(chan struct{})
	go func() {
		supErr = stopSup()
		close(supDone)
	}()
	wg.Wait()
	<-supDone
	close(failed)
	var errs []error
	for err := range failed {
		errs = append(errs, err)
	}
	return errors.Join(append(errs, supErr)...)
}

// summarize keeps the store's summary tables up to date until ctx ends:
// at once (a large existing store gets its tables while queries fall back
// to per-file lookups) and then every interval, as files arrive and
// retention deletes them.
func summarize(ctx context.Context, st *store.Store, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		start := time.Now()
		n, err := st.Summarize(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("building summaries", "err", err)
		}
		if n > 0 {
			log.Info("summary tables written", "tables", n, "seconds", time.Since(start).Seconds())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchFiles rescans the store as soon as stenotype starts or finishes a
// file, until ctx ends; the cleaner's periodic rescan remains the
// fallback, and alone when the watch cannot be set up.
func watchFiles(ctx context.Context, wg *sync.WaitGroup, cfg *config.Config, st *store.Store, log *slog.Logger) {
	var dirs []string
	for _, th := range cfg.StoreThreads() {
		dirs = append(dirs, th.PacketsDirectory, th.IndexDirectory)
	}
	w, err := dirwatch.New(dirs)
	if err != nil {
		log.Warn("new files are found by the periodic scan only", "err", err)
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := w.Run(ctx, func() {
			if err := st.Refresh(); err != nil {
				log.Debug("rescan after a new file", "err", err)
			}
		})
		if err != nil {
			log.Warn("new files are found by the periodic scan only", "err", err)
		}
	}()
}

// logHangups takes SIGHUP for the daemon's whole life, which by Go's
// default would kill it at once, leaving stenotype unflushed. It is logged
// and otherwise ignored: the log goes to stderr or syslog, so there is no
// file to reopen, and the config is read only at start (a changed config
// needs a restart). The returned function stops taking it.
func logHangups(log *slog.Logger) func() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				log.Warn("SIGHUP ignored: there is no log file to reopen and the config is read only at start; restart stenographer to apply a new config")
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}

// newLogger logs text lines to stderr, or to syslog with the severity of
// each record (syslog adds its own time stamp).
func newLogger(useSyslog bool, verbosity int, stderr io.Writer) *slog.Logger {
	level := slog.LevelInfo
	if verbosity > 0 {
		level = slog.LevelDebug
	}
	if !useSyslog {
		return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	}
	w, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_INFO, "stenographer")
	if err != nil {
		// Capture matters more than where the log goes.
		fmt.Fprintf(stderr, "stenographer: --syslog: %v; logging to stderr instead\n", err)
		return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	}
	return slog.New(slog.NewTextHandler(&syslogWriter{w: w}, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// syslogWriter takes the text handler's lines (one Write per record,
// starting "level=...") and sends each with the matching severity.
type syslogWriter struct{ w *syslog.Writer }

func (s *syslogWriter) Write(p []byte) (int, error) {
	line := string(p)
	var err error
	switch {
	case strings.HasPrefix(line, "level=ERROR"):
		err = s.w.Err(line)
	case strings.HasPrefix(line, "level=WARN"):
		err = s.w.Warning(line)
	case strings.HasPrefix(line, "level=DEBUG"):
		err = s.w.Debug(line)
	default:
		err = s.w.Info(line)
	}
	return len(p), err
}
