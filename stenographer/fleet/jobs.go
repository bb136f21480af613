package fleet

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/stenographer-ng/stenographer/stenographer/fleet/docket"
	"github.com/stenographer-ng/stenographer/stenographer/fleet/jobs"
)

// JobRunner is the fan-out as the job queue runs it: the same Query the
// streaming endpoints use, with the job's resolved query text.
func (f *Fleet) JobRunner() jobs.RunFunc {
	return func(ctx context.Context, query string, sensors []string, w io.Writer) (jobs.Report, error) {
		rep, err := f.Query(ctx, Request{Query: query, Sensors: sensors, User: "job"}, w)
		out := jobs.Report{Sensors: make([]jobs.SensorResult, 0, len(rep.Sensors))}
		for _, s := range rep.Sensors {
			out.Sensors = append(out.Sensors, jobs.SensorResult{Name: s.Name, Packets: s.Packets, Bytes: s.Bytes,
				Duration: s.Duration, Err: s.Err, Refused: s.Refused})
		}
		return out, err
	}
}

// MountJobs serves Docket's asynchronous API (GET /q/<terms> or
// /q/query/<sensor-language text>, /status/<id>,
// /<id>/merged.pcap, /ids, /urls) from m, behind the server's
// authentication; a job belongs to the user who submitted it.
func (s *Server) MountJobs(m *jobs.Manager) {
	h := m.Handler(func(path string) ([]string, error) {
		// /q/query/<text>: the sensor language as one clause, for the
		// page; parenthesized since clauses are AND-ed in sorted order and
		// and/or have equal precedence.
		if text, ok := strings.CutPrefix(path, "/query/"); ok {
			if strings.TrimSpace(text) == "" {
				return nil, errors.New("empty query")
			}
			return []string{"(" + text + ")"}, nil
		}
		q, err := docket.FromPath(path)
		if err != nil {
			return nil, err
		}
		return q.Clauses, nil
	}, func(r *http.Request) string { return User(r.Context()) })
	// A result's path, /<id>/merged.pcap, overlaps every other pattern, so
	// the job handler also takes what nothing else matches (404 there).
	for _, p := range []string{"GET /q/", "GET /q", "GET /status/", "GET /ids", "GET /urls", "GET /"} {
		s.Handle(p, h)
	}
}
