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
	keys := query.Keys(q)
	for i := range s.cfg.Threads {
		files := s.queryFiles(i)
		for j, f := range files {
			span := s.span(i, files, j)
			if !query.MayMatch(q, span) {
				fmt.Fprintf(w, "thread %d file %s: skipped by time or interface\n", i, f.Name)
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
