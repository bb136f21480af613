package jobs

import (
	"errors"
	"fmt"
	"time"
)

// DefaultRememberExpired bounds the expired ids a Manager keeps so that
// /status/<id> and /<id>/merged.pcap can say 410 Gone rather than 404;
// beyond it the oldest are forgotten, so memory stays bounded however
// many jobs expire.
const DefaultRememberExpired = 10000

// ErrExpired is returned (wrapped, as an *ExpiredError) by Get for a job
// that expiry removed.
var ErrExpired = errors.New("jobs: job expired")

// ExpiredError says when and why a job was removed.
type ExpiredError struct {
	ID      string
	Owner   string
	Reason  string // "age" or "space"
	Expired time.Time
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("jobs: job %q expired (%s) at %s", e.ID, e.Reason, e.Expired.UTC().Format(time.RFC3339))
}

func (e *ExpiredError) Unwrap() error { return ErrExpired }

// goneSet remembers the last max expired jobs. Not safe for concurrent
// use: the Manager's mutex guards it.
type goneSet struct {
	max   int
	byID  map[string]goneEntry
	order []goneRef // oldest first; may hold stale refs to re-used ids
	seq   uint64
}

type goneEntry struct {
	err ExpiredError
	seq uint64
}

type goneRef struct {
	id  string
	seq uint64
}

func newGoneSet(max int) *goneSet {
	return &goneSet{max: max, byID: map[string]goneEntry{}}
}

func (g *goneSet) add(e ExpiredError) {
	g.seq++
	g.byID[e.ID] = goneEntry{err: e, seq: g.seq}
	g.order = append(g.order, goneRef{id: e.ID, seq: g.seq})
	for len(g.byID) > g.max && len(g.order) > 0 {
		g.evictOldest()
	}
	// Stale refs (ids submitted again) would otherwise let order grow
	// past max; compact when it doubles.
	if len(g.order) > 2*g.max {
		kept := make([]goneRef, 0, len(g.byID))
		for _, r := range g.order {
			if e, ok := g.byID[r.id]; ok && e.seq == r.seq {
				kept = append(kept, r)
			}
		}
		g.order = kept
	}
}

func (g *goneSet) evictOldest() {
	r := g.order[0]
	g.order = g.order[1:]
	if e, ok := g.byID[r.id]; ok && e.seq == r.seq {
		delete(g.byID, r.id)
	}
}

// forget drops id (a job submitted again after it expired).
func (g *goneSet) forget(id string) { delete(g.byID, id) }

func (g *goneSet) get(id string) (*ExpiredError, bool) {
	e, ok := g.byID[id]
	if !ok {
		return nil, false
	}
	c := e.err
	return &c, true
}

func (g *goneSet) len() int { return len(g.byID) }
