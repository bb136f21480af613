package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestGoneSet: the set keeps the newest max ids, forgets re-submitted
// ones and does not grow with stale entries.
func TestGoneSet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		max    int
		ops    []string // "+id" expires id, "-id" forgets it
		keep   []string
		forgot []string
	}{
		{"under the bound", 3, []string{"+a", "+b"}, []string{"a", "b"}, nil},
		{"oldest evicted", 2, []string{"+a", "+b", "+c"}, []string{"b", "c"}, []string{"a"}},
		{"re-expired is newest", 2, []string{"+a", "+b", "+a", "+c"}, []string{"a", "c"}, []string{"b"}},
		{"forgotten", 3, []string{"+a", "+b", "-a"}, []string{"b"}, []string{"a"}},
		{"forgotten frees room", 2, []string{"+a", "+b", "-a", "+c"}, []string{"b", "c"}, []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGoneSet(tc.max)
			for _, op := range tc.ops {
				if op[0] == '+' {
					g.add(ExpiredError{ID: op[1:], Reason: "age"})
				} else {
					g.forget(op[1:])
				}
			}
			for _, id := range tc.keep {
				if _, ok := g.get(id); !ok {
					t.Errorf("%s forgotten, want kept", id)
				}
			}
			for _, id := range tc.forgot {
				if _, ok := g.get(id); ok {
					t.Errorf("%s kept, want forgotten", id)
				}
			}
		})
	}
	g := newGoneSet(10)
	for i := range 1000 {
		id := fmt.Sprint(i % 15)
		g.add(ExpiredError{ID: id})
		if i%3 == 0 {
			g.forget(id)
		}
	}
	if g.len() > 10 || len(g.order) > 20 {
		t.Errorf("after 1000 expiries: %d ids, %d refs; want at most 10 and 20", g.len(), len(g.order))
	}
}

// TestGone: an expired job answers 410 with its reason on /status and on
// its result, to its owner only; an unknown id stays 404; a job submitted
// again after it expired is served again.
func TestGone(t *testing.T) {
	c := newClock()
	f := &fakeFleet{}
	s := start(t, Config{SpoolDir: t.TempDir(), Run: f.Run, Now: c.Now, ExpireTime: time.Minute,
		CleanupInterval: time.Hour, RememberExpired: 2})
	// Absolute bounds: the same id after the clock moved on.
	clauses := []string{"port 1", "after 2018-01-10T22:00:00Z", "before 2018-01-10T22:05:00Z"}
	j := waitState(t, s.m, submit(t, s.m, "alice", clauses...).ID, Completed)
	c.Add(2 * time.Minute)
	if err := s.m.Expire(); err != nil {
		t.Fatal(err)
	}
	_, err := s.m.Get(j.ID)
	var ee *ExpiredError
	if !errors.As(err, &ee) || !errors.Is(err, ErrExpired) || ee.Reason != "age" || ee.Owner != "alice" {
		t.Fatalf("Get of an expired job: %v, want an ExpiredError for age", err)
	}
	for _, tc := range []struct {
		user, path string
		code       int
	}{
		{"alice", "/status/" + j.ID, http.StatusGone},
		{"alice", j.URL(), http.StatusGone},
		{"bob", "/status/" + j.ID, http.StatusForbidden},
		{"bob", j.URL(), http.StatusForbidden},
		{"alice", "/status/never-was", http.StatusNotFound},
		{"alice", "/never-was/merged.pcap", http.StatusNotFound},
	} {
		code, b := s.get(t, tc.user, tc.path)
		if code != tc.code {
			t.Errorf("GET %s as %s: %d %s, want %d", tc.path, tc.user, code, b, tc.code)
			continue
		}
		if code != http.StatusGone {
			continue
		}
		var body map[string]string
		if err := json.Unmarshal(b, &body); err != nil || body["reason"] != "age" || body["id"] != j.ID || body["error"] == "" {
			t.Errorf("GET %s: body %s (%v), want the id, reason age and an error", tc.path, b, err)
		}
	}
	again := waitState(t, s.m, submit(t, s.m, "alice", clauses...).ID, Completed)
	if again.ID != j.ID {
		t.Fatalf("re-submitted job id %s, want %s", again.ID, j.ID)
	}
	if code, _ := s.get(t, "alice", j.URL()); code != http.StatusOK {
		t.Errorf("re-submitted job's result: %d, want 200", code)
	}
}
