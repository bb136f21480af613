package jobs

import (
	"errors"
	"testing"
	"time"
)

func TestResolve(t *testing.T) {
	now := time.Date(2018, 1, 10, 22, 11, 40, 0, time.UTC)
	tests := []struct {
		name    string
		clauses []string
		want    string
		bad     bool
	}{
		{"default window is the last 24h to the end of the current window",
			[]string{"port 21"},
			"port 21 and after 2018-01-09T22:11:00Z and before 2018-01-10T22:12:00Z", false},
		{"relative after resolved and floored",
			[]string{"host 1.2.3.4", "after 5m ago"},
			"host 1.2.3.4 and after 2018-01-10T22:06:00Z and before 2018-01-10T22:12:00Z", false},
		{"decimal hours",
			[]string{"after 3.5h ago", "tcp"},
			"tcp and after 2018-01-10T18:41:00Z and before 2018-01-10T22:12:00Z", false},
		{"relative before ceiled, default after from now",
			[]string{"udp", "before 45m ago"},
			"udp and after 2018-01-09T22:11:00Z and before 2018-01-10T21:27:00Z", false},
		{"absolute bounds kept on boundaries",
			[]string{"before 2017-04-30T00:00:00Z", "net 1.2.3.0/24", "after 2017-04-29T00:00:00Z"},
			"net 1.2.3.0/24 and after 2017-04-29T00:00:00Z and before 2017-04-30T00:00:00Z", false},
		{"sorted, deduplicated, spaces normalised, the tightest bounds kept",
			[]string{"port  80", "host 1.2.3.4", "port 80", "after 10m ago", "after 5m ago", "before 1m ago", "before 2m ago"},
			"host 1.2.3.4 and port 80 and after 2018-01-10T22:06:00Z and before 2018-01-10T22:10:00Z", false},
		{"an or clause is bracketed",
			[]string{"host 1.1.1.1 or host 2.2.2.2", "tcp"},
			"(host 1.1.1.1 or host 2.2.2.2) and tcp and after 2018-01-09T22:11:00Z and before 2018-01-10T22:12:00Z", false},
		{"only time clauses", []string{"after 5m ago"}, "", true},
		{"no clauses", nil, "", true},
		{"bad unit", []string{"tcp", "after 5d ago"}, "", true},
		{"bad number", []string{"tcp", "after xm ago"}, "", true},
		{"bad absolute time", []string{"tcp", "before yesterday"}, "", true},
		{"empty range", []string{"tcp", "after 1m ago", "before 10m ago"}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := resolve(tc.clauses, now, time.Minute)
			if tc.bad {
				if !errors.Is(err, ErrBadQuery) {
					t.Fatalf("resolve(%q) = %v, want ErrBadQuery", tc.clauses, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve(%q): %v", tc.clauses, err)
			}
			if got := r.query(); got != tc.want {
				t.Errorf("query\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestIDs(t *testing.T) {
	now := time.Date(2018, 1, 10, 22, 11, 40, 0, time.UTC)
	id := func(now time.Time, owner string, sensors []string, clauses ...string) string {
		t.Helper()
		r, err := resolve(clauses, now, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return r.id(owner, sensors)
	}
	base := id(now, "alice", nil, "host 1.2.3.4", "port 80", "after 5m ago")
	same := []struct {
		name string
		got  string
	}{
		{"other order", id(now, "alice", nil, "after 5m ago", "port 80", "host 1.2.3.4")},
		{"same window, later", id(now.Add(15*time.Second), "alice", nil, "port 80", "host 1.2.3.4", "after 5m ago")},
	}
	for _, s := range same {
		if s.got != base {
			t.Errorf("%s: id %s, want %s", s.name, s.got, base)
		}
	}
	differ := []struct {
		name string
		got  string
	}{
		{"next window", id(now.Add(time.Minute), "alice", nil, "host 1.2.3.4", "port 80", "after 5m ago")},
		{"other user", id(now, "bob", nil, "host 1.2.3.4", "port 80", "after 5m ago")},
		{"other sensors", id(now, "alice", []string{"s1"}, "host 1.2.3.4", "port 80", "after 5m ago")},
		{"other clause", id(now, "alice", nil, "host 1.2.3.4", "port 81", "after 5m ago")},
	}
	for _, d := range differ {
		if d.got == base {
			t.Errorf("%s: same id %s as the base request", d.name, base)
		}
	}
	if len(base) != 32 {
		t.Errorf("id %q: want 32 hex digits (Docket's spool pattern)", base)
	}
}
