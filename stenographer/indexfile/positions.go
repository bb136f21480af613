package indexfile

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
)

// Positions: what the index holds under keys and key ranges, decoded
// and merged into sorted, duplicate-free lists.

// positionsErr checks that v is a list of 4-byte positions.
func (x *File) positionsErr(k, v []byte) error {
	if len(v)%4 != 0 {
		return fmt.Errorf("%w %s: key %x has a value of %d bytes", ErrCorrupt, x.name, k, len(v))
	}
	return nil
}

// Lookup returns the positions stored under key (nil if the key is absent).
func (x *File) Lookup(ctx context.Context, key []byte) ([]uint32, error) {
	return x.Range(ctx, key, key)
}

// Range returns the union of the positions of every key k with
// lo <= k <= hi (bytewise), sorted and without duplicates.
func (x *File) Range(ctx context.Context, lo, hi []byte) ([]uint32, error) {
	var out []uint32
	var starts []int // where each key's list begins in out
	err := x.each(ctx, lo, hi, func(k, v []byte) error {
		if err := x.positionsErr(k, v); err != nil {
			return err
		}
		starts = append(starts, len(out))
		out = slices.Grow(out, len(v)/4)
		for i := 0; i < len(v); i += 4 {
			out = append(out, binary.BigEndian.Uint32(v[i:]))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return union(out, starts), nil
}

// union turns out, the concatenation of lists beginning at starts, into
// their sorted, duplicate-free union. One list of a well-formed file is
// already sorted; several sorted lists are merged pairwise (n log k, not
// a sort's n log n); an unsorted list (a damaged file) means a full sort.
func union(out []uint32, starts []int) []uint32 {
	if isStrictlySorted(out) {
		return out
	}
	runs := append(starts, len(out))
	for i := 0; i+1 < len(runs); i++ {
		if !isStrictlySorted(out[runs[i]:runs[i+1]]) {
			slices.Sort(out)
			return slices.Compact(out)
		}
	}
	buf := make([]uint32, len(out))
	for len(runs) > 2 {
		var next []int
		n := 0
		for i := 0; i+1 < len(runs); i += 2 {
			next = append(next, n)
			a := out[runs[i]:runs[i+1]]
			var b []uint32
			if i+2 < len(runs) {
				b = out[runs[i+1]:runs[i+2]]
			}
			n += mergeInto(buf[n:], a, b)
		}
		runs = append(next, n)
		out, buf = buf[:n], out[:cap(out)]
	}
	return out
}

// mergeInto writes the sorted union of the sorted, duplicate-free a and b
// to dst (room for both) and returns its length.
func mergeInto(dst, a, b []uint32) int {
	n, i, j := 0, 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			dst[n] = a[i]
			i++
		case a[i] > b[j]:
			dst[n] = b[j]
			j++
		default:
			dst[n] = a[i]
			i++
			j++
		}
		n++
	}
	n += copy(dst[n:], a[i:])
	n += copy(dst[n:], b[j:])
	return n
}

// LastProtocolPosition returns the largest position listed under an IP
// protocol key, or -1 if there is none. Every IP packet has a protocol
// key, so a scan of the packet file that ends before this position lost
// packets (the file was cut or its end overwritten). The protocol keys
// are the file's first keys: this reads a few percent of the index.
func (x *File) LastProtocolPosition(ctx context.Context) (int64, error) {
	last := int64(-1)
	err := x.each(ctx, []byte{TypeProto}, []byte{TypeProto, 0xff}, func(k, v []byte) error {
		if err := x.positionsErr(k, v); err != nil {
			return err
		}
		for i := 0; i < len(v); i += 4 {
			last = max(last, int64(binary.BigEndian.Uint32(v[i:])))
		}
		return nil
	})
	return last, err
}

// RangeWithin returns the positions in within (sorted, duplicate-free)
// that some key k with lo <= k <= hi holds: Range(lo, hi) ∩ within,
// without building or sorting the range's whole union. An 'and' uses it
// once one side has narrowed the candidates, e.g. a net range after a port.
func (x *File) RangeWithin(ctx context.Context, lo, hi []byte, within []uint32) ([]uint32, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(within) == 0 {
		return nil, nil
	}
	hit := make([]bool, len(within))
	err := x.each(ctx, lo, hi, func(k, v []byte) error {
		if err := x.positionsErr(k, v); err != nil {
			return err
		}
		markHits(v, within, hit)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []uint32
	for i, h := range hit {
		if h {
			out = append(out, within[i])
		}
	}
	return out, nil
}

// markHits sets hit[i] for each within[i] that the big-endian position
// list v holds. A list is normally ascending, so the search resumes where
// the last one ended, galloping forward; a descent (a damaged list) starts
// the search over, so any order gives the right answer.
func markHits(v []byte, within []uint32, hit []bool) {
	j := 0
	var prev uint32
	for i := 0; i+4 <= len(v); i += 4 {
		e := binary.BigEndian.Uint32(v[i:])
		if e < prev {
			j = 0
		}
		prev = e
		if j < len(within) && within[j] < e {
			// within[j] < e: double the step until within[j+step] >= e,
			// then binary-search the last step.
			step := 1
			for j+step < len(within) && within[j+step] < e {
				j += step
				step *= 2
			}
			k, _ := slices.BinarySearch(within[j+1:min(j+step+1, len(within))], e)
			j += 1 + k
		}
		if j < len(within) && within[j] == e {
			hit[j] = true
		}
	}
}

func isStrictlySorted(p []uint32) bool {
	for i := 1; i < len(p); i++ {
		if p[i] <= p[i-1] {
			return false
		}
	}
	return true
}

// Entry is one key of an index file with its positions.
type Entry struct {
	Key       []byte
	Positions []uint32
}

// Entries returns every key (version record excluded) in order; for
// inspection tools and tests.
func (x *File) Entries() ([]Entry, error) {
	var out []Entry
	err := x.each(context.Background(), []byte{TypeProto}, nil, func(k, v []byte) error {
		if err := x.positionsErr(k, v); err != nil {
			return err
		}
		e := Entry{Key: slices.Clone(k)}
		for i := 0; i < len(v); i += 4 {
			e.Positions = append(e.Positions, binary.BigEndian.Uint32(v[i:]))
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
