package summary

import (
	"errors"
	"testing"
)

func TestEncodeDecode(t *testing.T) {
	for _, tc := range []struct {
		n    int
		bits []int
	}{
		{1, []int{0}}, {64, []int{3}}, {64, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 63}}, {1024, []int{5, 1023}},
		{1024, seq(0, 1024, 2)}, {100, seq(0, 100, 1)}, {9, []int{8}},
	} {
		b := newBits(tc.n)
		for _, j := range tc.bits {
			b.set(j)
		}
		v := encode(nil, b, tc.n)
		got := newBits(tc.n)
		if err := decodeInto(got, v, tc.n, "t", nil); err != nil {
			t.Fatalf("n=%d %v: %v", tc.n, tc.bits, err)
		}
		for j := range tc.n {
			if got.Has(j) != b.Has(j) {
				t.Errorf("n=%d %v: file %d got %v", tc.n, tc.bits, j, got.Has(j))
			}
		}
	}
}

func seq(from, to, step int) []int {
	var out []int
	for j := from; j < to; j += step {
		out = append(out, j)
	}
	return out
}

// TestDecodeDamaged: every malformed value is an ErrCorrupt, never a
// panic or a set with files the table does not have.
func TestDecodeDamaged(t *testing.T) {
	for name, v := range map[string][]byte{
		"empty":             {},
		"unknown encoding":  {7, 0, 1},
		"odd list":          {encList, 0, 1, 2},
		"list out of order": {encList, 0, 5, 0, 3},
		"list past the end": {encList, 0, 10},
		"short bitmap":      {encBitmap, 0xff},
		"long bitmap":       {encBitmap, 1, 2, 3},
		"bits past the end": {encBitmap, 0xff, 0x07},
	} {
		if err := decodeInto(newBits(10), v, 10, "t", []byte{2}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}
