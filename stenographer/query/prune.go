package query

import "slices"

// MayMatch reports whether any packet of a file with the given span can
// match q, judging by time bounds and interfaces alone (index keys count
// as "maybe").
// It lets a caller skip a file without opening its index.
func MayMatch(q Node, span Span) bool {
	return MayMatchKeys(q, span, nil)
}

// MayMatchKeys is MayMatch judging index keys too: has reports whether the
// file may hold a key in [lo, hi] (a summary of many files' keys answers
// it without opening the file's index). A nil has counts every key as
// "maybe". has must never say false for a key the file holds: a false
// answer skips the file.
func MayMatchKeys(q Node, span Span, has func(lo, hi []byte) bool) bool {
	switch n := q.(type) {
	case Key:
		return has == nil || has(n.Lo, n.Hi)
	case Dir:
		return has == nil || has(n.Key.Lo, n.Key.Hi)
	case Not:
		// A file without the child's keys is all match; only an
		// interface decides a whole file.
		if i, ok := n.Child.(Iface); ok {
			return i.Name != span.Interface
		}
		return true
	case Iface:
		return n.Name == span.Interface
	case Time:
		if n.Before {
			return span.Min.Before(n.At)
		}
		return span.Max.IsZero() || span.Max.After(n.At)
	case And:
		for _, c := range n.Children {
			if !MayMatchKeys(c, span, has) {
				return false
			}
		}
		return true
	case Or:
		for _, c := range n.Children {
			if MayMatchKeys(c, span, has) {
				return true
			}
		}
		return false
	}
	return true
}

// Keys returns the index-key primitives of q in the order they appear,
// for explaining a query.
func Keys(q Node) []Key {
	var out []Key
	var walk func(Node)
	walk = func(n Node) {
		switch n := n.(type) {
		case Key:
			out = append(out, n)
		case Dir:
			out = append(out, n.Key)
		case Not:
			walk(n.Child)
		case And:
			for _, c := range n.Children {
				walk(c)
			}
		case Or:
			for _, c := range n.Children {
				walk(c)
			}
		}
	}
	walk(q)
	return out
}

// UnboundedNegation reports whether q negates something yet has no
// indexed term that bounds its candidates (`not port 22`, `host A or not
// tcp`): evaluating it leaves every packet of its time range a candidate,
// to be read and decided one by one. A query of time bounds alone reads
// every packet too, as the reference's did, and is not counted here.
func UnboundedNegation(q Node) bool {
	return hasNot(q) && !bounded(q)
}

// bounded reports whether an index lookup limits q's candidates.
func bounded(n Node) bool {
	switch n := n.(type) {
	case Key, Dir:
		return true
	case And:
		return slices.ContainsFunc(n.Children, bounded)
	case Or:
		return !slices.ContainsFunc(n.Children, func(c Node) bool { return !bounded(c) })
	}
	return false
}

func hasNot(n Node) bool {
	switch n := n.(type) {
	case Not:
		return true
	case And:
		return slices.ContainsFunc(n.Children, hasNot)
	case Or:
		return slices.ContainsFunc(n.Children, hasNot)
	}
	return false
}
