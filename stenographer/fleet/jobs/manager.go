package jobs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Docket's defaults: TIME_WINDOW is 60 seconds and cleanup runs at most
// every CLEANUP_TIME.
const (
	DefaultTimeWindow      = 60 * time.Second
	DefaultCleanupInterval = 10 * time.Second
)

// ErrNotFound is returned (wrapped) for an id the spool does not hold.
var ErrNotFound = errors.New("jobs: no such job")

// Config configures a Manager. SpoolDir and Run are required.
type Config struct {
	SpoolDir string
	Run      RunFunc
	// MaxRunning bounds the jobs run at once (default 1, as Docket's
	// single query worker; stenofleet's MAX_JOBS); the rest wait in
	// submission order.
	MaxRunning int
	// TimeWindow is Docket's TIME_WINDOW: bounds are widened to its
	// multiples so near-identical requests share a job.
	TimeWindow time.Duration
	// ExpireTime is Docket's EXPIRE_TIME (seconds there): a finished job
	// is removed this long after it finished. Zero keeps jobs.
	ExpireTime time.Duration
	// ExpireSpace is Docket's EXPIRE_SPACE, here in bytes: finished jobs
	// are removed, oldest first, while the spool's file system has less
	// free. Zero disables it.
	ExpireSpace int64
	// CleanupInterval is Docket's CLEANUP_TIME: how often expiry runs
	// besides after every job.
	CleanupInterval time.Duration
	// FreeSpace reports the free bytes of the file system holding dir
	// (default statfs); tests inject a fake.
	FreeSpace func(dir string) (int64, error)
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Allowed reports whether user may see owner's job (default: only
	// the owner).
	Allowed func(user, owner string) bool
	// RememberExpired bounds the expired ids answered with 410 Gone
	// (default DefaultRememberExpired).
	RememberExpired int
	Logger          *slog.Logger
	// Registerer, when set, receives the Manager's collectors.
	Registerer prometheus.Registerer
}

// Manager queues, runs, stores and expires jobs. Safe for concurrent use.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	jobs    map[string]*Job
	queue   []string // ids of Queued jobs, in run order
	running int
	nextSeq int64
	wake    chan struct{}
	gone    *goneSet // expired jobs, answered 410

	metrics *metrics
}

// New reads back the spool (see the package comment) and returns a
// Manager; Run starts its workers.
func New(cfg Config) (*Manager, error) {
	if cfg.SpoolDir == "" || cfg.Run == nil {
		return nil, errors.New("jobs: Config needs SpoolDir and Run")
	}
	if cfg.MaxRunning <= 0 {
		cfg.MaxRunning = 1
	}
	if cfg.TimeWindow <= 0 {
		cfg.TimeWindow = DefaultTimeWindow
	}
	if cfg.CleanupInterval <= 0 {
		cfg.CleanupInterval = DefaultCleanupInterval
	}
	if cfg.FreeSpace == nil {
		cfg.FreeSpace = statfsFree
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Allowed == nil {
		cfg.Allowed = func(user, owner string) bool { return user == owner }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RememberExpired <= 0 {
		cfg.RememberExpired = DefaultRememberExpired
	}
	if err := os.MkdirAll(cfg.SpoolDir, 0o750); err != nil {
		return nil, fmt.Errorf("jobs: create spool %s: %w", cfg.SpoolDir, err)
	}
	m := &Manager{
		cfg:  cfg,
		log:  cfg.Logger.With("component", "jobs"),
		jobs: map[string]*Job{},
		wake: make(chan struct{}, 1),
		gone: newGoneSet(cfg.RememberExpired),
	}
	if err := m.recover(); err != nil {
		return nil, err
	}
	m.metrics = newMetrics(m)
	if cfg.Registerer != nil {
		if err := m.metrics.register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Manager) dir(id string) string { return filepath.Join(m.cfg.SpoolDir, id) }

// recover loads every <id>/job.json. Directories without one are the
// leftovers of a Submit cut short and are removed.
func (m *Manager) recover() error {
	ents, err := os.ReadDir(m.cfg.SpoolDir)
	if err != nil {
		return fmt.Errorf("jobs: read spool %s: %w", m.cfg.SpoolDir, err)
	}
	var requeue []*Job
	for _, e := range ents {
		if !e.IsDir() || e.Name()[0] == '.' {
			continue
		}
		dir := m.dir(e.Name())
		j, err := loadJob(dir)
		if errors.Is(err, os.ErrNotExist) {
			m.log.Warn("removing spool directory without state", "dir", dir)
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("jobs: remove %s: %w", dir, err)
			}
			continue
		}
		if err != nil {
			return err
		}
		if err := removeHidden(dir); err != nil {
			return err
		}
		switch j.State {
		case Completed:
			if _, err := os.Stat(filepath.Join(dir, resultName)); err != nil {
				// A result lost under us is run again, never served half.
				j.setState(Queued, m.cfg.Now(), "result missing at start, run again")
				requeue = append(requeue, j)
			}
		case Running:
			j.setState(Queued, m.cfg.Now(), "service restarted mid-run, run again")
			requeue = append(requeue, j)
		case Queued:
			requeue = append(requeue, j)
		}
		m.jobs[j.ID] = j
		m.nextSeq = max(m.nextSeq, j.Seq+1)
	}
	sort.Slice(requeue, func(a, b int) bool { return requeue[a].Seq < requeue[b].Seq })
	for _, j := range requeue {
		if err := saveJob(m.dir(j.ID), j); err != nil {
			return err
		}
		m.queue = append(m.queue, j.ID)
	}
	return nil
}

// removeHidden deletes the hidden (partial) files of a job directory.
func removeHidden(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("jobs: read %s: %w", dir, err)
	}
	for _, e := range ents {
		if e.Name()[0] == '.' {
			p := filepath.Join(dir, e.Name())
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("jobs: remove %s: %w", p, err)
			}
		}
	}
	return nil
}

// Submit queues a job for user, or returns the existing job with the same
// id (see the package comment). A Failed job is queued again.
func (m *Manager) Submit(ctx context.Context, user string, clauses []string, sensors []string) (Job, error) {
	if err := ctx.Err(); err != nil {
		return Job{}, err
	}
	now := m.cfg.Now()
	r, err := resolve(clauses, now, m.cfg.TimeWindow)
	if err != nil {
		return Job{}, err
	}
	sensors = append([]string(nil), sensors...)
	sort.Strings(sensors)
	id := r.id(user, sensors)

	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if ok && j.State != Failed {
		return j.clone(), nil
	}
	if !ok {
		j = &Job{ID: id, Owner: user, Query: r.query(), Sensors: sensors, Requested: now.UTC()}
		if err := os.MkdirAll(m.dir(id), 0o750); err != nil {
			return Job{}, fmt.Errorf("jobs: create %s: %w", m.dir(id), err)
		}
	}
	j.Seq = m.nextSeq
	j.Error, j.Partial, j.Missing, j.Results = "", false, nil, nil
	j.setState(Queued, now, "submitted by "+user)
	if err := saveJob(m.dir(id), j); err != nil {
		return Job{}, err
	}
	m.nextSeq++
	m.jobs[id] = j
	m.gone.forget(id)
	m.queue = append(m.queue, id)
	m.signal()
	m.log.Info("job queued", "id", id, "user", user, "query", j.Query)
	return j.clone(), nil
}

func (m *Manager) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Get returns a snapshot of job id. For a job that expiry removed (and
// is still remembered) the error is an *ExpiredError (ErrExpired).
func (m *Manager) Get(id string) (Job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		if e, gone := m.gone.get(id); gone {
			return Job{}, e
		}
		return Job{}, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return j.clone(), nil
}

// List returns snapshots of every job, in submission order.
func (m *Manager) List() []Job {
	m.mu.Lock()
	out := make([]Job, 0, len(m.jobs))
	for _, j := range m.jobs {
		out = append(out, j.clone())
	}
	m.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].Seq < out[b].Seq })
	return out
}

// ResultPath is where a Completed job's merged PCAP is.
func (m *Manager) ResultPath(id string) string { return filepath.Join(m.dir(id), resultName) }

// Run runs queued jobs, at most MaxRunning at once, and expires old ones
// until ctx is done; it returns once every worker has stopped. Runs cut
// short by ctx stay Running on disk so the next Manager re-runs them.
func (m *Manager) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range m.cfg.MaxRunning {
		wg.Go(func() { m.worker(ctx) })
	}
	wg.Go(func() {
		t := time.NewTicker(m.cfg.CleanupInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := m.Expire(); err != nil {
					m.log.Warn("expiry failed", "err", err)
				}
			}
		}
	})
	wg.Wait()
	return ctx.Err()
}

// next takes the first queued job and marks it Running, or waits.
func (m *Manager) next(ctx context.Context) (*Job, bool) {
	for {
		m.mu.Lock()
		if len(m.queue) > 0 {
			id := m.queue[0]
			m.queue = m.queue[1:]
			if len(m.queue) > 0 {
				m.signal() // another idle worker may take the rest
			}
			j := m.jobs[id]
			j.setState(Running, m.cfg.Now(), "")
			err := saveJob(m.dir(id), j)
			if err != nil {
				m.finishLocked(j, nil, err)
				m.mu.Unlock()
				continue
			}
			m.running++
			m.mu.Unlock()
			return j, true
		}
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, false
		case <-m.wake:
		}
	}
}

func (m *Manager) worker(ctx context.Context) {
	for {
		j, ok := m.next(ctx)
		if !ok {
			return
		}
		m.mu.Lock()
		query, sensors := j.Query, append([]string(nil), j.Sensors...)
		m.mu.Unlock()
		rep, size, err := m.execute(ctx, j.ID, query, sensors)
		m.mu.Lock()
		m.running--
		if ctx.Err() != nil {
			// Stopped, not failed: job.json still says Running.
			m.mu.Unlock()
			return
		}
		m.finishLocked(j, &rep, err)
		j.Bytes = size
		if err := saveJob(m.dir(j.ID), j); err != nil {
			m.log.Error("saving finished job", "id", j.ID, "err", err)
		}
		m.mu.Unlock()
		if err := m.Expire(); err != nil {
			m.log.Warn("expiry failed", "err", err)
		}
	}
}

// execute runs one job into its hidden file and renames it into place.
func (m *Manager) execute(ctx context.Context, id, query string, sensors []string) (Report, int64, error) {
	dir := m.dir(id)
	if err := removeHidden(dir); err != nil {
		return Report{}, 0, err
	}
	var rep Report
	var size int64
	err := writeAtomic(dir, hiddenPcap, resultName, func(w io.Writer) error {
		cw := &countWriter{w: w}
		bw := bufio.NewWriterSize(cw, 1<<16)
		var err error
		rep, err = m.cfg.Run(ctx, query, sensors, bw)
		if err != nil {
			return fmt.Errorf("jobs: run %s: %w", id, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if failedAll(rep) {
			return fmt.Errorf("jobs: run %s: every sensor failed", id)
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("jobs: write %s: %w", filepath.Join(dir, hiddenPcap), err)
		}
		size = cw.n
		return nil
	})
	return rep, size, err
}

func failedAll(r Report) bool {
	for _, s := range r.Sensors {
		if s.Err == "" && !s.Refused {
			return false
		}
	}
	return len(r.Sensors) > 0
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// finishLocked records a run's outcome. REQUIRES: m.mu held.
func (m *Manager) finishLocked(j *Job, rep *Report, err error) {
	now := m.cfg.Now()
	j.Finished = now.UTC()
	j.Results, j.Missing, j.Partial = nil, nil, false
	if rep != nil {
		for _, s := range rep.Sensors {
			j.Results = append(j.Results, SensorEvent{
				Sensor: s.Name, Packets: s.Packets, Bytes: s.Bytes,
				DurationSeconds: s.Duration.Seconds(), Error: s.Err, Refused: s.Refused,
			})
			if s.Err != "" || s.Refused {
				j.Missing = append(j.Missing, s.Name)
			}
		}
	}
	if err != nil {
		j.Error = err.Error()
		j.setState(Failed, now, j.Error)
		m.metrics.finished.WithLabelValues("failed").Inc()
		m.log.Warn("job failed", "id", j.ID, "err", err)
		return
	}
	j.Partial = len(j.Missing) > 0
	msg := ""
	outcome := "completed"
	if j.Partial {
		msg = fmt.Sprintf("partial: %d sensor(s) missing", len(j.Missing))
		outcome = "partial"
	}
	j.setState(Completed, now, msg)
	m.metrics.finished.WithLabelValues(outcome).Inc()
	m.log.Info("job done", "id", j.ID, "partial", j.Partial)
}
