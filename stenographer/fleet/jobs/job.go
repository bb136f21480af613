package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// RunFunc runs query on the named sensors (nil: all) and writes the merged
// PCAP to w. It is the fleet's fan-out; the Manager only stores its output.
type RunFunc func(ctx context.Context, query string, sensors []string, w io.Writer) (Report, error)

// Report is what a run says about each sensor.
type Report struct {
	Sensors []SensorResult
}

// SensorResult is one sensor's part of a run. Err is empty when the sensor
// answered in full; Refused marks a sensor that rejected the query.
type SensorResult struct {
	Name           string
	Packets, Bytes int64
	Duration       time.Duration
	Err            string
	Refused        bool
}

// State is where a job is in its life (see the package comment).
type State string

// The job states, spelled as Docket's /status answers them.
const (
	Queued    State = "Queued"
	Running   State = "Running"
	Completed State = "Completed"
	Failed    State = "Failed"
)

// Event is one entry of a job's history.
type Event struct {
	Time    time.Time `json:"time"`
	State   State     `json:"state"`
	Message string    `json:"message,omitempty"`
}

// SensorEvent is a sensor's outcome in a job, as /status shows it.
type SensorEvent struct {
	Sensor          string  `json:"sensor"`
	Packets         int64   `json:"packets"`
	Bytes           int64   `json:"bytes"`
	DurationSeconds float64 `json:"duration_seconds"`
	Error           string  `json:"error,omitempty"`
	Refused         bool    `json:"refused,omitempty"`
}

// Job is a job's persisted state (job.json). Copies handed out by the
// Manager are snapshots.
type Job struct {
	ID        string        `json:"id"`
	Owner     string        `json:"owner"`
	Query     string        `json:"query"`
	Sensors   []string      `json:"sensors,omitempty"`
	Requested time.Time     `json:"requested"`
	Seq       int64         `json:"seq"` // submission order, kept across restarts
	State     State         `json:"state"`
	Partial   bool          `json:"partial,omitempty"`
	Missing   []string      `json:"missing,omitempty"`
	Error     string        `json:"error,omitempty"`
	Finished  time.Time     `json:"finished,omitzero"`
	Bytes     int64         `json:"bytes,omitempty"` // size of merged.pcap
	History   []Event       `json:"history"`
	Results   []SensorEvent `json:"results,omitempty"`
}

// Spool file names inside <SpoolDir>/<id>/.
const (
	stateName   = "job.json"
	resultName  = "merged.pcap"
	hiddenState = ".job.json.tmp"
	hiddenPcap  = ".merged.pcap.tmp"
)

// URL is where the job's result is served, relative to the handler.
func (j Job) URL() string { return "/" + j.ID + "/" + resultName }

func (j *Job) setState(s State, now time.Time, msg string) {
	j.State = s
	j.History = append(j.History, Event{Time: now.UTC(), State: s, Message: msg})
}

// clone copies the slices so a snapshot does not share them.
func (j *Job) clone() Job {
	c := *j
	c.Sensors = append([]string(nil), j.Sensors...)
	c.Missing = append([]string(nil), j.Missing...)
	c.History = append([]Event(nil), j.History...)
	c.Results = append([]SensorEvent(nil), j.Results...)
	return c
}

// writeAtomic writes data to dir/name through a hidden file, fsyncs it,
// renames it into place and fsyncs dir, so a reader (or a restart) sees the
// old file or the new one, never part of one.
func writeAtomic(dir, hidden, name string, write func(io.Writer) error) error {
	tmp := filepath.Join(dir, hidden)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("jobs: create %s: %w", tmp, err)
	}
	werr := write(f)
	if werr == nil {
		if err := f.Sync(); err != nil {
			werr = fmt.Errorf("jobs: fsync %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil && werr == nil {
		werr = fmt.Errorf("jobs: close %s: %w", tmp, err)
	}
	if werr != nil {
		os.Remove(tmp)
		return werr
	}
	dst := filepath.Join(dir, name)
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("jobs: rename %s to %s: %w", tmp, dst, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("jobs: open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("jobs: fsync %s: %w", dir, err)
	}
	return nil
}

func saveJob(dir string, j *Job) error {
	return writeAtomic(dir, hiddenState, stateName, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(j); err != nil {
			return fmt.Errorf("jobs: encode %s: %w", filepath.Join(dir, stateName), err)
		}
		return nil
	})
}

func loadJob(dir string) (*Job, error) {
	p := filepath.Join(dir, stateName)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("jobs: read %s: %w", p, err)
	}
	var j Job
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("jobs: decode %s: %w", p, err)
	}
	if j.ID != filepath.Base(dir) {
		return nil, fmt.Errorf("jobs: %s: id %q does not match its directory", p, j.ID)
	}
	return &j, nil
}
