package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stenographer-ng/stenographer/stenographer/frame"
)

// Index is what evaluation needs from one index file: the sorted,
// duplicate-free positions of every key in [lo, hi].
type Index interface {
	Range(ctx context.Context, lo, hi []byte) ([]uint32, error)
}

// WithinIndex is an Index that can also answer Range(lo, hi) ∩ within
// (within sorted and duplicate-free) without building the whole range:
// evaluation then looks up the later keys of an 'and' only among the
// candidates the earlier ones left.
type WithinIndex interface {
	Index
	RangeWithin(ctx context.Context, lo, hi []byte, within []uint32) ([]uint32, error)
}

// Span is what is known of the packets of one file before its index is
// read: every packet has Min <= ts <= Max (a zero Max means unknown, no
// limit), and all were captured on Interface (what `iface` selects).
type Span struct {
	Min, Max  time.Time
	Interface string
}

// Match is the result of evaluating a query against one file.
type Match struct {
	// All is true when the index cannot narrow the packets down (a query of
	// time bounds only, or an 'or' with one): every packet of the file is a
	// candidate. Otherwise Positions are the candidates, ascending.
	All       bool
	Positions []uint32
	// Keep, when not nil, must be called for each candidate packet: it
	// decides on the packet's own timestamp and, for `src`/`dst`
	// primitives, its headers (data is the frame with any VLAN tag the
	// kernel stripped put back). Nil means every candidate matches.
	Keep func(pos uint32, ts time.Time, data []byte) bool
	// Lookups counts index range lookups done, for --explain and stats.
	Lookups int
}

// Empty reports whether nothing in the file can match.
func (m Match) Empty() bool { return !m.All && len(m.Positions) == 0 }

// ErrTooLarge is returned when a query's lookups in one file produce more
// positions than its limit allows.
var ErrTooLarge = errors.New("query: too many positions for one file")

// Evaluate runs the query q against one file's index. Time bounds that the
// span decides for the whole file are settled here; the rest go into Keep.
// Lookups stop as soon as an 'and' is known to be empty.
func Evaluate(ctx context.Context, q Node, idx Index, span Span) (Match, error) {
	return EvaluateLimited(ctx, q, idx, span, 0)
}

// EvaluateLimited is Evaluate failing with ErrTooLarge once the index
// lookups have produced more than limit positions in all (0: no limit).
// A lookup repeated in the query is done, and counted, once. Every set
// the evaluation holds is a lookup's result or a union or intersection of
// such results, so memory follows the limit (DESIGN.md states the bound).
func EvaluateLimited(ctx context.Context, q Node, idx Index, span Span, limit int) (Match, error) {
	e := &evaluator{ctx: ctx, idx: idx, span: span, limit: limit, seen: map[string][]uint32{}}
	r, err := e.eval(q)
	if err != nil {
		return Match{}, err
	}
	r.settle()
	m := Match{All: r.all, Positions: r.set, Lookups: e.lookups}
	if !r.empty() && (!r.exact || len(r.exclude) > 0) {
		m.Keep = r.matchesCandidate
	}
	return m, nil
}

// result is an evaluated subtree: the packets of set (or all packets),
// less those of exclude, and, for an inexact result, only those keep
// accepts. exclude holds what an exact `not` removes from a result that
// has no set of its own to subtract it from yet.
type result struct {
	all     bool
	set     []uint32
	exclude []uint32
	exact   bool
	keep    func(pos uint32, ts time.Time, data []byte) bool
}

func (r *result) empty() bool { return !r.all && len(r.set) == 0 }

// settle subtracts exclude from set once there is a set.
func (r *result) settle() {
	if !r.all && len(r.exclude) > 0 {
		r.set, r.exclude = difference(r.set, r.exclude), nil
	}
}

type evaluator struct {
	ctx      context.Context
	idx      Index
	span     Span
	lookups  int
	limit    int                 // on produced; 0: none
	produced int                 // positions returned by lookups so far
	seen     map[string][]uint32 // Range results by key range
}

// charge counts a lookup's result against the limit.
func (e *evaluator) charge(set []uint32) error {
	e.lookups++
	e.produced += len(set)
	if e.limit > 0 && e.produced > e.limit {
		return fmt.Errorf("%w: the lookups of %d primitives found more than %d positions", ErrTooLarge, e.lookups, e.limit)
	}
	return nil
}

func (e *evaluator) eval(n Node) (*result, error) {
	switch n := n.(type) {
	case Key:
		if err := e.ctx.Err(); err != nil {
			return nil, err
		}
		id := string(n.Lo) + "-" + string(n.Hi)
		if set, ok := e.seen[id]; ok {
			return &result{set: set, exact: true}, nil
		}
		set, err := e.idx.Range(e.ctx, n.Lo, n.Hi)
		if err != nil {
			return nil, err
		}
		if err := e.charge(set); err != nil {
			return nil, err
		}
		e.seen[id] = set
		return &result{set: set, exact: true}, nil
	case Time:
		return e.evalTime(n), nil
	case Iface:
		// The whole file is in or out.
		return &result{all: n.Name == e.span.Interface, exact: true}, nil
	case Dir:
		r, err := e.eval(n.Key)
		if err != nil {
			return nil, err
		}
		return directed(n, r), nil
	case Not:
		r, err := e.eval(n.Child)
		if err != nil {
			return nil, err
		}
		return negate(r), nil
	case And:
		return e.evalAnd(n.Children)
	case Or:
		return e.evalOr(n.Children)
	}
	panic("query: unknown node type")
}

// directed narrows r, the lookup of d's key, to packets whose headers
// have the key in d's direction.
func directed(d Dir, r *result) *result {
	if r.empty() {
		return r
	}
	field := d.field()
	return &result{set: r.set, keep: func(_ uint32, _ time.Time, data []byte) bool {
		ep := frame.Parse(data)
		v := field(&ep)
		return v != nil && bytes.Compare(v, d.Key.Lo[1:]) >= 0 && bytes.Compare(v, d.Key.Hi[1:]) <= 0
	}}
}

// field returns the header field d compares with its key: an address
// (only of the key's family) or a port, as bytes in network order.
func (d Dir) field() func(*frame.Endpoints) []byte {
	want := 0
	switch d.Key.Lo[0] {
	case keyIPv4:
		want = 4
	case keyIPv6:
		want = 6
	}
	if want == 0 { // a port
		return func(ep *frame.Endpoints) []byte {
			if !ep.Ports {
				return nil
			}
			p := ep.DstPort
			if d.Src {
				p = ep.SrcPort
			}
			return []byte{byte(p >> 8), byte(p)}
		}
	}
	return func(ep *frame.Endpoints) []byte {
		if ep.Version != want {
			return nil
		}
		if d.Src {
			return ep.SrcAddr()
		}
		return ep.DstAddr()
	}
}

// negate returns the complement of r. An exact set becomes an exclusion
// that an enclosing 'and' subtracts without reading a packet; anything
// else leaves every packet a candidate, decided one by one.
func negate(r *result) *result {
	if !r.exact {
		return &result{all: true, keep: func(pos uint32, ts time.Time, data []byte) bool {
			return !r.matches(pos, ts, data)
		}}
	}
	r.settle()
	switch {
	case r.all && len(r.exclude) > 0: // all but X: X
		return &result{set: r.exclude, exact: true}
	case r.all:
		return &result{exact: true}
	case len(r.set) == 0:
		return &result{all: true, exact: true}
	}
	return &result{all: true, exact: true, exclude: r.set}
}

// evalWithin evaluates c, one child of an 'and', given the candidates acc
// that the children before it left: a lookup, directed or negated
// lookup then reads the index only for those candidates. narrowed
// reports that the result's set is already within acc's.
func (e *evaluator) evalWithin(c Node, acc *result) (r *result, narrowed bool, err error) {
	if acc.all {
		r, err = e.eval(c)
		return r, false, err
	}
	switch n := c.(type) {
	case Key:
		return e.evalKeyWithin(n, acc.set)
	case Dir:
		r, narrowed, err = e.evalKeyWithin(n.Key, acc.set)
		if err != nil {
			return nil, false, err
		}
		return directed(n, r), narrowed, nil
	case Not:
		switch n.Child.(type) {
		case Key, Dir:
			// Only the candidates' own matches of the child matter.
			r, _, err = e.evalWithin(n.Child, acc)
			if err != nil {
				return nil, false, err
			}
			return negate(r), false, nil
		}
	}
	r, err = e.eval(c)
	return r, false, err
}

// evalKeyWithin looks key up among the positions of within only, when
// the index can; narrowed reports that it did (the result is then already
// intersected with within).
func (e *evaluator) evalKeyWithin(k Key, within []uint32) (r *result, narrowed bool, err error) {
	wi, ok := e.idx.(WithinIndex)
	if !ok {
		r, err = e.eval(k)
		return r, false, err
	}
	if err := e.ctx.Err(); err != nil {
		return nil, false, err
	}
	set, err := wi.RangeWithin(e.ctx, k.Lo, k.Hi, within)
	if err != nil {
		return nil, false, err
	}
	if err := e.charge(set); err != nil {
		return nil, false, err
	}
	return &result{set: set, exact: true}, true, nil
}

func (e *evaluator) evalTime(t Time) *result {
	in := func(ts time.Time) bool {
		if t.Before {
			return ts.Before(t.At)
		}
		return ts.After(t.At)
	}
	hasMax := !e.span.Max.IsZero()
	switch {
	case t.Before && hasMax && e.span.Max.Before(t.At), !t.Before && e.span.Min.After(t.At):
		return &result{all: true, exact: true} // the whole file is inside
	case t.Before && !e.span.Min.Before(t.At), !t.Before && hasMax && !e.span.Max.After(t.At):
		return &result{exact: true} // the whole file is outside
	}
	return &result{all: true, keep: func(_ uint32, ts time.Time, _ []byte) bool { return in(ts) }}
}

// evalAnd evaluates index lookups before time bounds and intersects as it
// goes, smallest set first, stopping at the first empty intersection. Only
// inexact children are kept, for the per-packet check: a candidate is in
// every exact child's set already.
func (e *evaluator) evalAnd(children []Node) (*result, error) {
	ordered := slices.Clone(children)
	slices.SortStableFunc(ordered, func(a, b Node) int { return cost(a) - cost(b) })
	var inexact []*result
	acc := &result{all: true, exact: true}
	for _, c := range ordered {
		r, narrowed, err := e.evalWithin(c, acc)
		if err != nil {
			return nil, err
		}
		if !r.exact {
			inexact = append(inexact, r)
		}
		if len(r.exclude) > 0 {
			acc.exclude = union(acc.exclude, r.exclude)
		}
		switch {
		case r.all:
		case acc.all, narrowed:
			acc.all, acc.set = false, r.set
		default:
			acc.set = intersect(acc.set, r.set)
		}
		acc.settle()
		acc.exact = acc.exact && r.exact
		if acc.empty() {
			return &result{exact: true}, nil
		}
	}
	if !acc.exact {
		acc.keep = func(pos uint32, ts time.Time, data []byte) bool {
			for _, p := range inexact {
				if !p.matches(pos, ts, data) {
					return false
				}
			}
			return true
		}
	}
	return acc, nil
}

// evalOr merges exact children into one set as it goes, so an 'or' of n
// lookups holds two sets at a time, not n; inexact children are kept for
// the per-packet check and merged into the candidates at the end.
func (e *evaluator) evalOr(children []Node) (*result, error) {
	var exactSet []uint32
	var inexact []*result
	all := false
	for _, c := range children {
		r, err := e.eval(c)
		if err != nil {
			return nil, err
		}
		// An exclusion is decided packet by packet here: an 'or' has no
		// set to subtract it from.
		plain := r.exact && len(r.exclude) == 0
		switch {
		case plain && r.all:
			return &result{all: true, exact: true}, nil
		case plain:
			exactSet = union(exactSet, r.set)
		default:
			inexact = append(inexact, r)
			all = all || r.all
		}
	}
	if len(inexact) == 0 {
		return &result{set: exactSet, exact: true}, nil
	}
	acc := &result{all: all}
	if !all {
		acc.set = exactSet
		for _, r := range inexact {
			acc.set = union(acc.set, r.set)
		}
	}
	acc.keep = func(pos uint32, ts time.Time, data []byte) bool {
		if _, found := slices.BinarySearch(exactSet, pos); found {
			return true
		}
		for _, p := range inexact {
			if p.matches(pos, ts, data) {
				return true
			}
		}
		return false
	}
	return acc, nil
}

// matches decides one packet against an evaluated subtree.
func (r *result) matches(pos uint32, ts time.Time, data []byte) bool {
	if !r.all {
		if _, found := slices.BinarySearch(r.set, pos); !found {
			return false
		}
	}
	return r.matchesCandidate(pos, ts, data)
}

// matchesCandidate is matches for a packet known to be in r's set.
func (r *result) matchesCandidate(pos uint32, ts time.Time, data []byte) bool {
	if len(r.exclude) > 0 {
		if _, found := slices.BinarySearch(r.exclude, pos); found {
			return false
		}
	}
	return r.keep == nil || r.keep(pos, ts, data)
}

// cost orders the children of an 'and': lookups of narrow keys first,
// time bounds (free, but they narrow nothing in the index) last.
func cost(n Node) int {
	switch n := n.(type) {
	case Iface:
		return -1 // free, and an 'and' on another interface stops here
	case Key:
		switch n.Lo[0] {
		case keyIPv4, keyIPv6: // addresses: usually the rarest
			if string(n.Lo) == string(n.Hi) {
				return 0
			}
			return 2
		case 0x02, 0x03, 0x05:
			return 1
		default: // protocols match a large share of traffic
			return 3
		}
	case Dir:
		return cost(n.Key)
	case Time:
		return 5
	case Not:
		// Last: it only removes, and removes cheapest from few candidates.
		return 6
	}
	return 4
}

// difference returns the elements of sorted set a that are not in b.
func difference(a, b []uint32) []uint32 {
	out := make([]uint32, 0, len(a))
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j < len(b) && b[j] == x {
			continue
		}
		out = append(out, x)
	}
	return out
}

// intersect returns the elements of both sorted sets.
func intersect(a, b []uint32) []uint32 {
	if len(a) > len(b) {
		a, b = b, a
	}
	out := make([]uint32, 0, len(a))
	// When one set is much smaller, binary search beats a linear merge.
	if len(a)*16 < len(b) {
		for _, x := range a {
			if _, ok := slices.BinarySearch(b, x); ok {
				out = append(out, x)
			}
		}
		return out
	}
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}

// union returns the elements of either sorted set.
func union(a, b []uint32) []uint32 {
	if len(a) == 0 {
		return b
	}
	if len(b) == 0 || (len(a) == len(b) && &a[0] == &b[0]) {
		return a // a repeated lookup gives the very same set
	}
	out := make([]uint32, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case a[i] > b[j]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}
