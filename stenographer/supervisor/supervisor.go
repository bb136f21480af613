// Package supervisor runs stenotype and keeps it running: the only package
// of the daemon that starts processes.
//
// Stage: config → a running stenotype writing into the threads'
// directories. Input: the stenotype path, interface, flags and thread
// directories. Output: file pairs on disk (read by the store), stenotype's
// log lines in the daemon's log and its STATS in the metrics.
//
// Lifecycle: New creates missing thread directories, checks that the user
// stenotype drops to can write them (access.go), locks them (lock.go:
// a second daemon on them is refused) and makes the private directory D
// of SPEC §2 (symlinks PKT<i>, IDX<i>); Start runs the loop
// that first stops a stenotype orphaned by an earlier stenographer on the
// same directories (orphans.go), then, before every start, tidies what an
// unfinished run left (re-indexing packet files without index), starts
// stenotype, and restarts it when it exits (backing off while it keeps
// failing) or when a thread stops producing files; Stop terminates
// stenotype (SIGTERM so it flushes its files, SIGKILL after a grace
// period) and removes D.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/metrics"
	"github.com/stenographer-ng/stenographer/stenographer/store"
)

// Defaults of the Config knobs.
const (
	DefaultStaleTimeout  = 5 * time.Minute
	DefaultCheckInterval = 15 * time.Second
	DefaultBackoffBase   = time.Second
	DefaultBackoffMax    = time.Minute
	DefaultHealthyAfter  = time.Minute
	DefaultStopGrace     = 30 * time.Second
)

// Config configures a Supervisor. Zero durations take the defaults.
type Config struct {
	StenotypePath string
	Interface     string
	Flags         []string // passed first; --threads, --dir and --iface follow
	Threads       []store.Thread
	// ThreadIDs are the daemon-wide numbers of Threads, for logs and
	// metrics, when this stenotype runs only some of the config's threads
	// (one interface of several, see Group). Nil: 0, 1, ...
	ThreadIDs []int
	Logger    *slog.Logger

	// StaleTimeout: a thread that has opened no new file for this long
	// while packets reach it (or while stenotype reports nothing) gets
	// stenotype killed and restarted. Negative disables the check.
	StaleTimeout time.Duration
	// CheckInterval is how often the stale check looks at the directories.
	CheckInterval time.Duration
	// BackoffBase is the wait before a restart; it doubles after each run
	// shorter than HealthyAfter, up to BackoffMax, and is reset by a run
	// that lasted HealthyAfter.
	BackoffBase, BackoffMax, HealthyAfter time.Duration
	// StopGrace is how long stenotype may take to flush after SIGTERM
	// (its last blocks retire after --blockage_sec, then it indexes them)
	// before it gets SIGKILL.
	StopGrace time.Duration
}

// Supervisor runs one stenotype. Its methods are safe for concurrent use.
type Supervisor struct {
	cfg     Config
	ids     []int        // daemon-wide thread numbers
	log     *slog.Logger // component=supervisor
	out     *slog.Logger // component=stenotype: its output
	dir     string       // D
	args    []string
	id      identity
	chown   bool
	locks   []*os.File // flock of every thread directory, held until Stop
	reindex reindexer  // for packet files that lost their index

	startOnce, stopOnce sync.Once
	stop                chan struct{} // closed by Stop: terminate and return
	kill                chan struct{} // closed when Stop's ctx ends: SIGKILL now
	done                chan struct{} // closed when the loop has returned

	mu     sync.Mutex
	pid    int
	starts int
	errs   []error // of the final stop
	// downSince is when capture last stopped (or New ran); zero while a
	// started stenotype runs. See CaptureState.
	downSince time.Time
}

// CaptureState reports whether stenotype is running and, when it is not
// (not started yet, restarting after an exit, stopped as stale), since
// when capture has been down.
func (s *Supervisor) CaptureState() (up bool, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.downSince.IsZero(), s.downSince
}

// New prepares the directories: missing thread directories are created
// (given to the user stenotype drops to, when running as root) and the
// private directory D is made. Stop removes D; call it even if Start is
// never called.
func New(cfg Config) (*Supervisor, error) {
	if len(cfg.Threads) == 0 {
		return nil, errors.New("supervisor: no threads")
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&cfg.StaleTimeout, DefaultStaleTimeout}, {&cfg.CheckInterval, DefaultCheckInterval},
		{&cfg.BackoffBase, DefaultBackoffBase}, {&cfg.BackoffMax, DefaultBackoffMax},
		{&cfg.HealthyAfter, DefaultHealthyAfter}, {&cfg.StopGrace, DefaultStopGrace},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ids := cfg.ThreadIDs
	if ids == nil {
		for i := range cfg.Threads {
			ids = append(ids, i)
		}
	}
	if len(ids) != len(cfg.Threads) {
		return nil, fmt.Errorf("supervisor: %d thread ids for %d threads", len(ids), len(cfg.Threads))
	}
	// Every line about this stenotype names its interface: with several,
	// the log must say which one failed.
	log = log.With("interface", cfg.Interface)
	s := &Supervisor{
		cfg:   cfg,
		ids:   ids,
		log:   log.With("component", "supervisor"),
		out:   log.With("component", "stenotype"),
		chown: os.Geteuid() == 0,
		stop:  make(chan struct{}),
		kill:  make(chan struct{}),
		done:  make(chan struct{}),
		// Down until the first start succeeds.
		downSince: time.Now(),
	}
	id, err := resolveIdentity(flagValue(cfg.Flags, "uid"), flagValue(cfg.Flags, "gid"), os.Geteuid(), os.Getegid())
	if err != nil {
		return nil, err
	}
	s.id = id
	s.reindex = newReindexer(cfg.StenotypePath, cfg.Flags)
	if err := checkAccess(cfg.Threads, id); err != nil {
		return nil, err
	}
	for _, th := range cfg.Threads {
		for _, d := range []string{th.PacketsDirectory, th.IndexDirectory} {
			created, err := makeDirs(d, id, s.chown)
			for _, c := range created {
				if s.chown {
					s.log.Info("created directory", "path", c, "uid", id.uid, "gid", id.gid)
				} else {
					s.log.Info("created directory", "path", c)
				}
			}
			if err != nil {
				return nil, err
			}
		}
	}
	// Locked before anything in them is touched: a second daemon on these
	// directories must leave the first one's files alone.
	if s.locks, err = lockDirs(cfg.Threads); err != nil {
		return nil, err
	}
	s.dir, err = privateDir(cfg.Threads)
	if err != nil {
		unlockDirs(s.locks)
		return nil, err
	}
	s.args = append(append(append([]string(nil), LiveDefaults...), cfg.Flags...),
		"--threads="+strconv.Itoa(len(cfg.Threads)), "--dir="+s.dir, "--iface="+cfg.Interface)
	s.log.Debug("private directory", "dir", s.dir)
	return s, nil
}

// LiveDefaults come before the config's Flags, which can override them
// (stenotype takes the last value of a flag given twice): blocks retire
// after a second, not the reference's 10 s, and a delta index is
// published every second, so a packet is queryable about two seconds
// after it arrives instead of a minute or two (DESIGN.md). A fast link
// fills its blocks long before either timeout and is not affected.
var LiveDefaults = []string{"--blockage_sec=1", "--live_index_ms=1000"}

// Dir returns the private directory given to stenotype as --dir.
func (s *Supervisor) Dir() string { return s.dir }

// Args returns stenotype's arguments.
func (s *Supervisor) Args() []string { return append([]string(nil), s.args...) }

// Pid returns the running stenotype's process id, or 0.
func (s *Supervisor) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// Starts returns how many times stenotype was started.
func (s *Supervisor) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// Start runs the supervision loop in the background.
func (s *Supervisor) Start() {
	s.startOnce.Do(func() { go s.loop() })
}

// Stop terminates stenotype and waits for it: SIGTERM, then SIGKILL after
// StopGrace or when ctx ends, whichever is first. Then it removes D and
// releases the directory locks. It returns an error when stenotype had to
// be killed or D could not be removed.
func (s *Supervisor) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		close(s.stop)
		started := false
		s.startOnce.Do(func() { close(s.done) }) // never started: nothing to wait for
		select {
		case <-s.done:
		default:
			started = true
		}
		if started {
			select {
			case <-s.done:
			case <-ctx.Done():
				close(s.kill)
				<-s.done
			}
		}
		if err := os.RemoveAll(s.dir); err != nil {
			s.mu.Lock()
			s.errs = append(s.errs, fmt.Errorf("supervisor: remove %s: %w", s.dir, err))
			s.mu.Unlock()
		}
		unlockDirs(s.locks)
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}

func (s *Supervisor) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

func (s *Supervisor) loop() {
	defer close(s.done)
	s.reapOrphans()
	delay := s.cfg.BackoffBase
	for !s.stopping() {
		for i, th := range s.cfg.Threads {
			if _, err := cleanLeftovers(s.log, s.ids[i], th, s.reindex); err != nil {
				s.log.Error("cleaning leftovers", "thread", s.ids[i], "err", err)
			}
		}
		began := time.Now()
		r := s.runOnce()
		ran := time.Since(began)
		if s.stopping() {
			return
		}
		if ran >= s.cfg.HealthyAfter {
			delay = s.cfg.BackoffBase
		}
		attrs := []any{"restart_in", delay}
		switch {
		case r.startErr != nil:
			s.log.Error("cannot start stenotype", append([]any{"path", s.cfg.StenotypePath, "err", r.startErr}, attrs...)...)
		case r.stale != "":
			s.log.Warn("stenotype was stale and was stopped", append([]any{"pid", r.pid, "why", r.stale, "status", exitStatus(r.waitErr)}, attrs...)...)
		default:
			a := []any{"pid", r.pid, "status", exitStatus(r.waitErr), "ran", ran.Round(time.Millisecond)}
			if r.last != "" {
				a = append(a, "last_line", r.last)
			}
			s.log.Error("stenotype exited", append(a, attrs...)...)
		}
		select {
		case <-s.stop:
			return
		case <-time.After(delay):
		}
		if ran < s.cfg.HealthyAfter {
			delay = min(2*delay, s.cfg.BackoffMax)
		}
	}
}

// run is how one stenotype process ended.
type run struct {
	pid      int
	startErr error  // it did not start
	waitErr  error  // its exit (nil: status 0)
	stale    string // why the stale check stopped it
	last     string // its last output line
}

func (s *Supervisor) runOnce() run {
	out := newRunOutput(s.out, s.ids)
	stdout := &lineWriter{onLine: func(l string) { out.line("stdout", l) }}
	stderr := &lineWriter{onLine: func(l string) { out.line("stderr", l) }}
	cmd := exec.Command(s.cfg.StenotypePath, s.args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Own process group: a terminal's ^C reaches only stenographer, which
	// then stops stenotype in order. Pdeathsig covers stenographer dying
	// (it is cleared when stenotype changes its credentials, so it only
	// helps before the privilege drop).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return run{startErr: err}
	}
	metrics.StenotypeStarted(s.ids...)
	pid := cmd.Process.Pid
	s.mu.Lock()
	s.pid = pid
	s.starts++
	s.downSince = time.Time{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.pid = 0
		s.downSince = time.Now()
		s.mu.Unlock()
	}()
	s.log.Info("started stenotype", "pid", pid, "path", s.cfg.StenotypePath, "args", strings.Join(s.args, " "))

	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	finish := func(r run) run {
		stdout.flush()
		stderr.flush()
		r.pid, r.last = pid, out.last()
		return r
	}
	stale := newStaleTracker(s.cfg.Threads, s.cfg.StaleTimeout, out, s.log, time.Now())
	tick := time.NewTicker(s.cfg.CheckInterval)
	defer tick.Stop()
	for {
		select {
		case err := <-waited:
			return finish(run{waitErr: err})
		case <-s.stop:
			s.log.Info("stopping stenotype", "pid", pid)
			err, killed := s.terminate(cmd, waited)
			if killed {
				s.mu.Lock()
				s.errs = append(s.errs, fmt.Errorf("supervisor: stenotype (pid %d) did not exit within %v of SIGTERM and was killed; its last files are incomplete", pid, s.cfg.StopGrace))
				s.mu.Unlock()
			}
			r := finish(run{waitErr: err})
			s.log.Info("stenotype stopped", "pid", pid, "status", exitStatus(err))
			return r
		case now := <-tick.C:
			if why := stale.check(now); why != "" {
				s.log.Warn("stenotype is stale; stopping it", "pid", pid, "why", why)
				err, _ := s.terminate(cmd, waited)
				return finish(run{waitErr: err, stale: why})
			}
		}
	}
}

// terminate sends SIGTERM and waits StopGrace for the exit, then SIGKILL.
// Stop's expired context (s.kill) cuts the grace short.
func (s *Supervisor) terminate(cmd *exec.Cmd, waited <-chan error) (err error, killed bool) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	grace := time.NewTimer(s.cfg.StopGrace)
	defer grace.Stop()
	select {
	case err := <-waited:
		return err, false
	case <-grace.C:
	case <-s.kill:
	}
	s.log.Error("stenotype did not exit after SIGTERM; killing it", "pid", cmd.Process.Pid, "grace", s.cfg.StopGrace)
	_ = cmd.Process.Kill()
	return <-waited, true
}

// exitStatus describes a Wait error for the log.
func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	return err.Error()
}

// flagValue returns the value of --name in stenotype flags ("--name=v" or
// "--name v"; the last wins, as in stenotype), or "".
func flagValue(flags []string, name string) string {
	v := ""
	for i := 0; i < len(flags); i++ {
		switch f := flags[i]; {
		case strings.HasPrefix(f, "--"+name+"="):
			v = f[len(name)+3:]
		case f == "--"+name && i+1 < len(flags):
			v = flags[i+1]
			i++
		}
	}
	return v
}
