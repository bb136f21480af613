package jobs

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"syscall"
)

// Expire removes finished jobs older than ExpireTime, then, oldest first,
// finished jobs while the spool has less than ExpireSpace bytes free.
// Queued and running jobs are never removed. Run calls it periodically
// and after every job; it is exported for callers that want it now.
func (m *Manager) Expire() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var done []*Job
	for _, j := range m.jobs {
		if j.State == Completed || j.State == Failed {
			done = append(done, j)
		}
	}
	sort.Slice(done, func(a, b int) bool {
		if !done[a].Finished.Equal(done[b].Finished) {
			return done[a].Finished.Before(done[b].Finished)
		}
		return done[a].Seq < done[b].Seq
	})
	var errs []error
	if m.cfg.ExpireTime > 0 {
		now := m.cfg.Now()
		kept := done[:0]
		for _, j := range done {
			if now.Sub(j.Finished) < m.cfg.ExpireTime {
				kept = append(kept, j)
				continue
			}
			if err := m.removeLocked(j, "age"); err != nil {
				errs = append(errs, err)
			}
		}
		done = kept
	}
	if m.cfg.ExpireSpace > 0 {
		for _, j := range done {
			free, err := m.cfg.FreeSpace(m.cfg.SpoolDir)
			if err != nil {
				errs = append(errs, fmt.Errorf("jobs: free space of %s: %w", m.cfg.SpoolDir, err))
				break
			}
			if free >= m.cfg.ExpireSpace {
				break
			}
			if err := m.removeLocked(j, "space"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeLocked deletes a job and its directory. REQUIRES: m.mu held.
func (m *Manager) removeLocked(j *Job, why string) error {
	dir := m.dir(j.ID)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("jobs: expire %s: %w", dir, err)
	}
	delete(m.jobs, j.ID)
	m.gone.add(ExpiredError{ID: j.ID, Owner: j.Owner, Reason: why, Expired: m.cfg.Now()})
	m.metrics.expired.WithLabelValues(why).Inc()
	m.log.Info("job expired", "id", j.ID, "reason", why)
	return nil
}

// spoolBytesLocked is the size of the stored results. REQUIRES: m.mu held.
func (m *Manager) spoolBytesLocked() int64 {
	var n int64
	for _, j := range m.jobs {
		if j.State == Completed {
			n += j.Bytes
		}
	}
	return n
}

func statfsFree(dir string) (int64, error) {
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(s.Bavail) * s.Bsize, nil
}
