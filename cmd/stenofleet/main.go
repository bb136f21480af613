// Command stenofleet is the multi-sensor front end: analysts send one
// query (the sensor language on POST /query, or Docket's GET /pcap/... and
// POST /api/ forms) and get one PCAP merged from every selected sensor.
//
// Exit status: 0 after a clean stop (SIGTERM/SIGINT), 2 for a bad command
// line or config file, 1 for any other failure (certificates, listening).
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
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/fleet"
	"github.com/stenographer-ng/stenographer/stenographer/fleet/config"
	"github.com/stenographer-ng/stenographer/stenographer/fleet/jobs"
	"github.com/stenographer-ng/stenographer/stenographer/version"
)

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("stenofleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/stenofleet/config.yaml", "configuration file (Docket's YAML, or JSON)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	verbose := fs.Bool("v", false, "debug logging")
	// Hidden from the API on purpose: a profile for the benchmark
	// (tests/bench/fleet.sh), written at a clean stop, never served.
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file at exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(os.Stdout, version.String("stenofleet"))
		return 0
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if *cpuProfile != "" {
		stopProfile, err := startCPUProfile(*cpuProfile)
		if err != nil {
			log.Error("CPU profile", "err", err)
			return 1
		}
		defer stopProfile()
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	for _, w := range cfg.Warnings {
		log.Warn("configuration", "config", *cfgPath, "warning", w)
	}
	f, err := fleet.New(cfg, fleet.Options{Logger: log})
	if err != nil {
		log.Error("loading the sensors' client certificates", "err", err)
		return 1
	}
	srv, err := fleet.NewServer(cfg, f, log)
	if err != nil {
		log.Error("server", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	jobsDone := make(chan struct{})
	if cfg.SpoolDir == "" {
		close(jobsDone)
		log.Info("no SPOOL_DIR: the job API (/q/, /status/, /ids, /urls) is off")
	} else {
		m, err := jobs.New(jobs.Config{SpoolDir: cfg.SpoolDir, Run: f.JobRunner(),
			TimeWindow: time.Duration(cfg.TimeWindow), ExpireTime: time.Duration(cfg.ExpireTime),
			ExpireSpace: int64(cfg.ExpireSpace), CleanupInterval: time.Duration(cfg.CleanupTime),
			Logger: log, Registerer: f.Metrics().Registry()})
		if err != nil {
			log.Error("job spool", "SPOOL_DIR", cfg.SpoolDir, "err", err)
			return 1
		}
		srv.MountJobs(m)
		go func() { m.Run(ctx); close(jobsDone) }()
	}
	err = srv.Serve(ctx)
	stop()
	<-jobsDone // a job cut short stays Running on disk and is re-run at the next start
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("serving", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// startCPUProfile profiles until the returned function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("profiling into %s: %w", path, err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
