package query

// MayMatch reports whether any packet of a file with the given span can
// match q, judging by time bounds and interfaces alone (index keys count
// as "maybe").
// It lets a caller skip a file without opening its index.
func MayMatch(q Node, span Span) bool {
	switch n := q.(type) {
	case Key:
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
			if !MayMatch(c, span) {
				return false
			}
		}
		return true
	case Or:
		for _, c := range n.Children {
			if MayMatch(c, span) {
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
