package query

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// memIndex is an in-memory index: key -> positions.
type memIndex map[string][]uint32

func (m memIndex) Range(_ context.Context, lo, hi []byte) ([]uint32, error) {
	var out []uint32
	for k, v := range m {
		if bytes.Compare([]byte(k), lo) >= 0 && bytes.Compare([]byte(k), hi) <= 0 {
			out = union(out, v)
		}
	}
	return out, nil
}

// withinIndex is a memIndex that also narrows lookups (WithinIndex) and
// counts how often it was asked to.
type withinIndex struct {
	memIndex
	narrowed *int
}

func (w withinIndex) RangeWithin(ctx context.Context, lo, hi []byte, within []uint32) ([]uint32, error) {
	*w.narrowed++
	all, err := w.Range(ctx, lo, hi)
	return intersect(all, within), err
}

// Every query gives the same packets, with the same lookups, whether the
// index narrows the later keys of an 'and' (WithinIndex) or not.
func TestEvaluate(t *testing.T) {
	narrowed := 0
	for _, idx := range []Index{testIndex, withinIndex{testIndex, &narrowed}} {
		testEvaluate(t, idx)
	}
	if narrowed == 0 {
		t.Error("RangeWithin was never used")
	}
}

var testIndex = memIndex{
	"\x02\x00\x50":         {10, 20, 30},     // port 80
	"\x02\x01\xbb":         {40, 50},         // port 443
	"\x01\x06":             {10, 20, 30, 40}, // tcp
	"\x01\x11":             {50, 60},         // udp
	"\x04\x0a\x00\x00\x01": {10, 40, 60},     // 10.0.0.1
	"\x04\x0a\x00\x00\x02": {20, 50},         // 10.0.0.2
	"\x04\x0b\x00\x00\x01": {30},             // 11.0.0.1
	"\x03\x00\x07":         {20, 30, 40, 50}, // vlan 7
}

func testEvaluate(t *testing.T, idx Index) {
	// Packet timestamps: position p was captured at base + p seconds.
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	ts := func(p uint32) time.Time { return base.Add(time.Duration(p) * time.Second) }
	all := []uint32{10, 20, 30, 40, 50, 60}
	span := Span{Min: ts(10), Max: ts(60), Interface: "eth0"}
	at := func(p uint32) string { return ts(p).Format(time.RFC3339) }

	tests := []struct {
		q       string
		want    []uint32
		lookups int
	}{
		{"port 80", []uint32{10, 20, 30}, 1},
		{"port 80 or port 443", []uint32{10, 20, 30, 40, 50}, 2},
		{"tcp and host 10.0.0.1", []uint32{10, 40}, 2},
		{"net 10.0.0.0/8", []uint32{10, 20, 40, 50, 60}, 1},
		{"net 10.0.0.0/8 and port 443", []uint32{40, 50}, 2},
		{"host 11.0.0.1 and port 443 and tcp", nil, 2}, // stops after the empty intersection
		{"port 80 and vlan 7 or udp", []uint32{20, 30, 50, 60}, 3},
		{"port 9", nil, 1},
		{"after " + at(35), []uint32{40, 50, 60}, 0},
		{"before " + at(35), []uint32{10, 20, 30}, 0},
		{"after " + at(0), all, 0},
		{"before " + at(100), all, 0},
		{"after " + at(100), nil, 0},
		{"tcp and after " + at(25), []uint32{30, 40}, 1},
		{"port 80 or after " + at(45), []uint32{10, 20, 30, 50, 60}, 1},
		{"(port 80 or after " + at(45) + ") and host 10.0.0.1", []uint32{10, 60}, 2},
		{"ip=10.0.0.1-10.0.0.2 port=443", []uint32{40, 50}, 2},
		// Exact and inexact operands of one 'or'; a repeated key is looked up once.
		{"port 80 or (udp and after " + at(55) + ") or port 443", all, 3},
		{"(tcp and before " + at(25) + ") or (udp and after " + at(55) + ")", []uint32{10, 20, 60}, 2},
		{"(port 80 or after " + at(45) + ") or (udp and before " + at(55) + ")", []uint32{10, 20, 30, 50, 60}, 2},
		{"port 80 or port 80 or (port 80 and after " + at(15) + ")", []uint32{10, 20, 30}, 1},
		// iface selects the whole file (this one is eth0) without a lookup;
		// an 'and' on another interface looks nothing up.
		{"iface eth0", all, 0},
		{"iface eth1", nil, 0},
		{"iface eth0 and port 80", []uint32{10, 20, 30}, 1},
		{"port 80 and iface eth1 and tcp", nil, 0},
		{"iface eth1 or port 443", []uint32{40, 50}, 1},
		{"(iface eth1 and port 80) or (iface eth0 and port 443)", []uint32{40, 50}, 1},
		{"iface eth0 or port 443", all, 0},
		{"iface eth0 and after " + at(45), []uint32{50, 60}, 0},
		// Negation: a difference of sets where an 'and' has one, else
		// every packet of the file decided one by one.
		{"not port 80", []uint32{40, 50, 60}, 1},
		{"tcp and not port 80", []uint32{40}, 2},
		{"not port 80 and tcp", []uint32{40}, 2},
		{"! udp", []uint32{10, 20, 30, 40}, 1},
		{"!udp and !tcp", nil, 2},
		{"not (port 80 or port 443)", []uint32{60}, 2},
		{"not tcp or port 80", []uint32{10, 20, 30, 50, 60}, 2},
		{"not not port 80", []uint32{10, 20, 30}, 1},
		{"host 10.0.0.1 and not after " + at(35), []uint32{10}, 1},
		{"vlan 7 and not (tcp and after " + at(25) + ")", []uint32{20, 50}, 2},
		{"not after " + at(0), nil, 0},
		{"not before " + at(45), []uint32{50, 60}, 0},
		{"not iface eth1", all, 0},
		{"not iface eth0 or port 443", []uint32{40, 50}, 1},
		{"net 10.0.0.0/8 and not host 10.0.0.2 and not udp", []uint32{10, 40}, 3},
		{"host 11.0.0.1 and not port 80", nil, 2},
	}
	for _, tc := range tests {
		q, err := Parse(tc.q, base)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.q, err)
		}
		m, err := Evaluate(context.Background(), q, idx, span)
		if err != nil {
			t.Fatalf("Evaluate(%q): %v", tc.q, err)
		}
		cands := m.Positions
		if m.All {
			cands = all
		}
		var got []uint32
		for _, p := range cands {
			if m.Keep == nil || m.Keep(p, ts(p), nil) {
				got = append(got, p)
			}
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%T: %q = %v, want %v", idx, tc.q, got, tc.want)
		}
		if m.Lookups != tc.lookups {
			t.Errorf("%q did %d lookups, want %d", tc.q, m.Lookups, tc.lookups)
		}
	}
}

// A negation an 'and' bounds is a difference of position sets: the
// candidates are exactly the result, and no packet is read to decide.
func TestNegationReadsNoExtraPackets(t *testing.T) {
	for _, q := range []string{"tcp and not port 80", "net 10.0.0.0/8 and not (port 443 or udp)", "vlan 7 and !host 10.0.0.2 and !!tcp"} {
		n, err := Parse(q, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		m, err := Evaluate(context.Background(), n, testIndex, Span{})
		if err != nil {
			t.Fatal(err)
		}
		if m.All || m.Keep != nil {
			t.Errorf("%q: every packet a candidate %v, per-packet check %v; want an exact set", q, m.All, m.Keep != nil)
		}
	}
}

func TestEvaluateCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	q, _ := Parse("port 80", time.Now())
	if _, err := Evaluate(ctx, q, memIndex{}, Span{}); err == nil {
		t.Error("Evaluate with a cancelled context succeeded")
	}
}

func TestSetOps(t *testing.T) {
	a := []uint32{1, 3, 5, 7, 9}
	b := []uint32{3, 4, 5, 100}
	if got := intersect(a, b); !slices.Equal(got, []uint32{3, 5}) {
		t.Errorf("intersect = %v", got)
	}
	if got := union(a, b); !slices.Equal(got, []uint32{1, 3, 4, 5, 7, 9, 100}) {
		t.Errorf("union = %v", got)
	}
	big := make([]uint32, 1000)
	for i := range big {
		big[i] = uint32(i * 2)
	}
	if got := intersect([]uint32{4, 5, 1998}, big); !slices.Equal(got, []uint32{4, 1998}) {
		t.Errorf("intersect small/big = %v", got)
	}
}

func TestMayMatch(t *testing.T) {
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	span := Span{Min: base, Max: base.Add(time.Hour)}
	open := Span{Min: base}
	tests := []struct {
		q    string
		span Span
		want bool
	}{
		{"port 80", span, true},
		{"after 2024-01-01T02:00:00Z", span, false},
		{"after 2024-01-01T02:00:00Z", open, true},
		{"after 2024-01-01T00:30:00Z", span, true},
		{"before 2023-12-31T23:00:00Z", span, false},
		{"before 2024-01-01T00:00:01Z", span, true},
		{"port 80 and before 2023-12-31T23:00:00Z", span, false},
		{"port 80 or before 2023-12-31T23:00:00Z", span, true},
		{"iface eth0", Span{Min: base, Interface: "eth0"}, true},
		{"iface eth0", Span{Min: base, Interface: "eth1"}, false},
		{"iface eth0 or iface eth1", Span{Min: base, Interface: "eth1"}, true},
		{"port 80 and iface eth0", Span{Min: base, Interface: "eth1"}, false},
		{"iface eth1 and before 2023-12-31T23:00:00Z", Span{Min: base, Interface: "eth1"}, false},
	}
	for _, tc := range tests {
		q, err := Parse(tc.q, base)
		if err != nil {
			t.Fatal(err)
		}
		if got := MayMatch(q, tc.span); got != tc.want {
			t.Errorf("MayMatch(%q, %v) = %v, want %v", tc.q, tc.span, got, tc.want)
		}
	}
}

// EvaluateLimited fails with ErrTooLarge once the lookups found more
// positions than the limit; a key repeated in the query counts once.
func TestEvaluateLimited(t *testing.T) {
	for _, tc := range []struct {
		q     string
		limit int
		fails bool
	}{
		{"tcp or udp", 6, false},
		{"tcp or udp", 5, true},
		{"tcp or tcp or (tcp and after 2000-01-01T00:00:00Z)", 4, false},
		{"tcp or udp", 0, false},
	} {
		q, err := Parse(tc.q, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, err = EvaluateLimited(context.Background(), q, testIndex, Span{}, tc.limit)
		if tc.fails != errors.Is(err, ErrTooLarge) || (!tc.fails && err != nil) {
			t.Errorf("%q with limit %d: %v", tc.q, tc.limit, err)
		}
	}
}
