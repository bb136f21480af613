package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrBadQuery is returned (wrapped) by Submit for clauses that cannot form
// a job: empty, unparsable times, or an empty time range.
var ErrBadQuery = errors.New("jobs: bad query")

// DefaultLookback is how far back a job without an "after" clause reaches
// (Docket: "a start time of 24 hours ago").
const DefaultLookback = 24 * time.Hour

// resolved is a request reduced to what identifies it: the non-time
// clauses, sorted and deduplicated, and absolute window-aligned bounds.
type resolved struct {
	terms         []string
	after, before time.Time
}

// query is the sensor query text: terms first, then the bounds, as in
// Docket's answers ("port 21 and after … and before …").
func (r resolved) query() string {
	parts := make([]string, 0, len(r.terms)+2)
	for _, t := range r.terms {
		if needsParens(t) {
			t = "(" + t + ")"
		}
		parts = append(parts, t)
	}
	parts = append(parts,
		"after "+r.after.UTC().Format(time.RFC3339),
		"before "+r.before.UTC().Format(time.RFC3339))
	return strings.Join(parts, " and ")
}

// id hashes everything that changes a result, so equal ids mean equal
// results. The owner is part of it: two users asking the same thing get
// two jobs, and neither can see the other's by guessing.
func (r resolved) id(owner string, sensors []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "owner %q\n", owner)
	for _, s := range sensors {
		fmt.Fprintf(h, "sensor %q\n", s)
	}
	fmt.Fprintf(h, "query %q\n", r.query())
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// needsParens reports whether a clause must be bracketed to keep its
// meaning when AND-ed with others ("host a or host b").
func needsParens(t string) bool {
	f := strings.Fields(strings.ToLower(t))
	for _, w := range f {
		if w == "or" || w == "and" {
			return true
		}
	}
	return false
}

// resolve turns clauses into a resolved request at time now, widening the
// bounds to whole windows. Several after (before) clauses keep the latest
// (earliest), since they are AND-ed.
func resolve(clauses []string, now time.Time, window time.Duration) (resolved, error) {
	var r resolved
	seen := map[string]bool{}
	for _, c := range clauses {
		c = strings.Join(strings.Fields(c), " ")
		if c == "" {
			continue
		}
		kw, rest, _ := strings.Cut(c, " ")
		switch strings.ToLower(kw) {
		case "after", "before":
			t, err := parseTime(rest, now)
			if err != nil {
				return resolved{}, fmt.Errorf("%w: clause %q: %w", ErrBadQuery, c, err)
			}
			if strings.EqualFold(kw, "after") {
				if r.after.IsZero() || t.After(r.after) {
					r.after = t
				}
			} else if r.before.IsZero() || t.Before(r.before) {
				r.before = t
			}
		default:
			if !seen[c] {
				seen[c] = true
				r.terms = append(r.terms, c)
			}
		}
	}
	if len(r.terms) == 0 {
		return resolved{}, fmt.Errorf("%w: no clause other than time bounds", ErrBadQuery)
	}
	sort.Strings(r.terms)
	if r.after.IsZero() {
		r.after = now.Add(-DefaultLookback)
	}
	if r.before.IsZero() {
		// The end of the current window, even when now is on a boundary.
		r.before = floorTo(now, window).Add(window)
	}
	r.after = floorTo(r.after, window)
	r.before = ceilTo(r.before, window)
	if !r.after.Before(r.before) {
		return resolved{}, fmt.Errorf("%w: after %s is not before %s", ErrBadQuery,
			r.after.Format(time.RFC3339), r.before.Format(time.RFC3339))
	}
	return r, nil
}

// parseTime reads an absolute RFC 3339 time or a relative "N[.N]m ago" /
// "N[.N]h ago" (the units of SPEC §5 and Docket's translations).
func parseTime(s string, now time.Time) (time.Time, error) {
	if n, ok := strings.CutSuffix(s, " ago"); ok {
		if len(n) < 2 {
			return time.Time{}, fmt.Errorf("relative time %q: want N[.N]m or N[.N]h", s)
		}
		unit := time.Minute
		switch n[len(n)-1] {
		case 'm':
		case 'h':
			unit = time.Hour
		default:
			return time.Time{}, fmt.Errorf("relative time %q: unit must be m or h", s)
		}
		v, err := strconv.ParseFloat(n[:len(n)-1], 64)
		if err != nil || v < 0 || v > 1e7 {
			return time.Time{}, fmt.Errorf("relative time %q: bad number", s)
		}
		return now.Add(-time.Duration(v * float64(unit))), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q: want RFC 3339 or \"N m ago\": %w", s, err)
	}
	return t, nil
}

func floorTo(t time.Time, w time.Duration) time.Time { return t.UTC().Truncate(w) }

// ceilTo is the end of t's window; a time already on a boundary stays.
func ceilTo(t time.Time, w time.Duration) time.Time {
	f := t.UTC().Truncate(w)
	if f.Equal(t) {
		return f
	}
	return f.Add(w)
}
