package store

import (
	"context"
	"fmt"
	"io"

	"github.com/stenographer-ng/stenographer/stenographer/query"
)

// Explain writes the parsed query and, for every file pair, how many
// positions each primitive matched and how many candidates the whole
// query leaves (before per-packet time checks).
func (s *Store) Explain(ctx context.Context, q query.Node, w io.Writer) error {
	fmt.Fprintf(w, "query: %s\n", q)
	if files, bytes := s.scanSize(q); files > 0 {
		fmt.Fprintf(w, "no indexed term bounds its negation: every packet of its time range is read and checked (%d bytes in %d files)\n", bytes, files)
	}
	if err := s.CheckScan(q); err != nil {
		fmt.Fprintf(w, "refused: %v\n", err)
	}
	keys := query.Keys(q)
	for i := range s.cfg.Threads {
		files := s.queryFiles(i)
		sums := s.newSummaryView(ctx, i)
		defer sums.close()
		for j, f := range files {
			span := s.span(i, files, j)
			if ok, bySummary := sums.mayMatch(q, f, span); !ok {
				why := "time or interface"
				if bySummary {
					why = "summary"
				}
				fmt.Fprintf(w, "thread %d file %s: skipped by %s\n", i, f.Name, why)
				continue
			}
			p, release, err := s.acquire(f)
			if err != nil {
				fmt.Fprintf(w, "thread %d file %s: error: %v\n", i, f.Name, err)
				continue
			}
			if f.Live {
				fmt.Fprintf(w, "thread %d file %s (being written):\n", i, f.Name)
			} else {
				fmt.Fprintf(w, "thread %d file %s:\n", i, f.Name)
			}
			for _, k := range keys {
				pos, err := p.idx.Range(ctx, k.Lo, k.Hi)
				if err != nil {
					release()
					return err
				}
				fmt.Fprintf(w, "  %-40s %d positions\n", k.Text, len(pos))
			}
			m, err := query.Evaluate(ctx, q, p.idx, span)
			release()
			if err != nil {
				return err
			}
			switch {
			case m.All:
				fmt.Fprintf(w, "  => every packet of the file is a candidate (time filter: %v)\n", m.Keep != nil)
			default:
				fmt.Fprintf(w, "  => %d candidates (time filter: %v)\n", len(m.Positions), m.Keep != nil)
			}
		}
	}
	return nil
}

// Cost is what a query would touch, found by reading indexes only.
type Cost struct {
	Files        int // file pairs (and live files) in the store
	FilesSkipped int // pruned by time or interface without opening
	// FilesSummarySkipped were ruled out by a summary table without
	// opening their index; SummaryBytes is what the tables gave.
	FilesSummarySkipped int
	SummaryBytes        int64
	FilesOpened         int   // whose index was read
	IndexBytes          int64 // read from the indexes by the key lookups
	// Candidates is the packets the index lookups leave: the result's
	// size, or more when a per-packet time check remains (TimeChecked).
	Candidates  int64
	TimeChecked bool // some candidates face a per-packet check (time, src/dst, not)
	// ScanFiles files have no indexed term to narrow them (a time-only
	// query, or a negation no indexed term bounds): their ScanBytes bytes
	// of packets would all be read.
	ScanFiles int
	ScanBytes int64
	// Refused is CheckScan's refusal of the query, if it has one: an
	// unbounded negation over more than Config.MaxScanBytes.
	Refused error
	Errors  []error // files whose index could not be read
}

// Cost evaluates q against every index as Query would, without reading
// a packet: a client can ask what a query would cost before running it.
func (s *Store) Cost(ctx context.Context, q query.Node) (*Cost, error) {
	c := &Cost{Refused: s.CheckScan(q)}
	for i := range s.cfg.Threads {
		files := s.queryFiles(i)
		c.Files += len(files)
		sums := s.newSummaryView(ctx, i)
		defer func() {
			c.SummaryBytes += sums.bytesRead()
			sums.close()
		}()
		for j, f := range files {
			if err := ctx.Err(); err != nil {
				return c, err
			}
			span := s.span(i, files, j)
			if ok, bySummary := sums.mayMatch(q, f, span); !ok {
				if bySummary {
					c.FilesSummarySkipped++
				} else {
					c.FilesSkipped++
				}
				continue
			}
			e := &evaluation{info: f}
			s.evaluateFile(ctx, q, span, e)
			c.IndexBytes += e.indexBytes
			if e.release != nil {
				e.release()
			}
			if e.err != nil && ctx.Err() != nil {
				return c, ctx.Err()
			}
			if e.err != nil {
				c.Errors = append(c.Errors, e.err)
				continue
			}
			m := e.match
			c.FilesOpened++
			c.TimeChecked = c.TimeChecked || (m.Keep != nil && !m.Empty())
			if m.All {
				c.ScanFiles++
				c.ScanBytes += s.packetSize(f)
				continue
			}
			c.Candidates += int64(len(m.Positions))
		}
	}
	return c, nil
}
