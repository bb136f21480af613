package store

import (
	"errors"
	"fmt"

	"github.com/stenographer-ng/stenographer/stenographer/query"
)

// ErrScanLimit is wrapped by CheckScan's refusal of a query that would
// read more packet data than Config.MaxScanBytes allows.
var ErrScanLimit = errors.New("store: query would read too much packet data")

// scanSize returns the packet files, and their bytes, that q would read
// whole because no indexed term bounds its negation: every file of its
// time range. Both are zero for any other query.
func (s *Store) scanSize(q query.Node) (files int, bytes int64) {
	if !query.UnboundedNegation(q) {
		return 0, 0
	}
	for i := range s.cfg.Threads {
		fs := s.queryFiles(i)
		for j, f := range fs {
			if query.MayMatch(q, s.span(i, fs, j)) {
				files++
				bytes += s.packetSize(f)
			}
		}
	}
	return files, bytes
}

// CheckScan refuses, before anything is read, a query whose negation no
// indexed term bounds when the packets of its time range exceed
// Config.MaxScanBytes: such a query reads every one of them.
func (s *Store) CheckScan(q query.Node) error {
	if s.cfg.MaxScanBytes <= 0 {
		return nil
	}
	files, bytes := s.scanSize(q)
	if bytes <= s.cfg.MaxScanBytes {
		return nil
	}
	return fmt.Errorf("%w: no indexed term (host, net, port, ip proto, vlan, mpls) bounds the negation in %q, so it reads every packet of its time range: %d bytes in %d files, more than the limit of %d bytes (--max_scan_bytes); add an indexed term or a narrower time range (before/after)",
		ErrScanLimit, q.String(), bytes, files, s.cfg.MaxScanBytes)
}
