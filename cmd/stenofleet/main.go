// Command stenofleet is the multi-sensor front end: analysts send one
// query (the sensor language on POST /query, or Docket's GET /pcap/... and
// POST /api/ forms) and get one PCAP merged from every selected sensor.
//
// SIGHUP re-reads PASSWORD_FILE; a file that does not load is logged and
// the users loaded before stay. The rest of the config is read at start
// only.
//
// Two tools for operators, which start no server:
//
//	stenofleet --check-config [--config FILE]   exit 0 when FILE would start, 1 (naming the key) when not
//	stenofleet --hash-password [--user NAME]    a PASSWORD_FILE line from the password on stdin
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

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }

func run(args []string, stdin *os.File, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stenofleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/stenofleet/config.yaml", "configuration file (Docket's YAML, or JSON)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	verbose := fs.Bool("v", false, "debug logging")
	check := fs.Bool("check-config", false, "check the configuration and the files it names as a start would, and exit (0: good, 1: bad)")
	hash := fs.Bool("hash-password", false, "read a password from stdin and print a PASSWORD_FILE line for --user")
	userName := fs.String("user", "", "with --hash-password: the user name (default: the current user's)")
	// Hidden from the API on purpose: a profile for the benchmark
	// (tests/bench/fleet.sh), written at a clean stop, never served.
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file at exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "stenofleet: unexpected argument %q (try -h)\n", fs.Arg(0))
		return 2
	}
	if *userName != "" && !*hash {
		fmt.Fprintln(stderr, "stenofleet: --user goes with --hash-password")
		return 2
	}
	switch {
	case *showVersion:
		fmt.Fprintln(stdout, version.String("stenofleet"))
		return 0
	case *hash:
		return hashPassword(*userName, stdin, stdout, stderr)
	case *check:
		return checkConfig(*cfgPath, stdout, stderr)
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
	// Taken for the whole run, before serving, so a SIGHUP never gets Go's
	// default (exit), with or without PASSWORD_FILE.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go reloadOnHangup(ctx, hup, srv, log)
	jobsDone := make(chan struct{})
	if cfg.SpoolDir == "" {
		close(jobsDone)
		log.Info("no SPOOL_DIR: the job API (/q/, /status/, /ids, /urls) is off")
	} else {
		m, err := jobs.New(jobs.Config{SpoolDir: cfg.SpoolDir, Run: f.JobRunner(), MaxRunning: *cfg.MaxJobs,
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
	healthDone := make(chan struct{})
	go func() { f.RunHealth(ctx); close(healthDone) }()
	err = srv.Serve(ctx)
	stop()
	<-healthDone
	<-jobsDone // a job cut short stays Running on disk and is re-run at the next start
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("serving", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// reloadOnHangup re-reads the password file at each SIGHUP until ctx
// ends.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, srv *fleet.Server, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			switch err := srv.ReloadPasswords(); {
			case errors.Is(err, fleet.ErrNoPasswordFile):
				log.Warn("SIGHUP: no PASSWORD_FILE to re-read; the rest of the config is read only at start")
			case err != nil:
				log.Error("SIGHUP: PASSWORD_FILE not reloaded; the users loaded before stay", "err", err)
			}
		}
	}
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
