package query

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
