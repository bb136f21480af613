package supervisor

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The threads of a config are grouped by interface, in the order the
// interfaces first appear, each group numbered with the daemon's thread
// numbers; a --fanout_id is counted up for the later groups.
func TestGroupSplitsThreadsByInterface(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ifaces  []string // each thread's Interface ("" takes Config.Interface)
		flags   []string
		want    []string // Interfaces()
		ids     [][]int  // each group's ThreadIDs
		fanouts []string // each group's --fanout_id, "" when none
	}{
		{"one interface", []string{"", ""}, nil, []string{"lo"}, [][]int{{0, 1}}, []string{""}},
		{"interleaved", []string{"a", "b", "a", ""}, nil, []string{"a", "b", "lo"}, [][]int{{0, 2}, {1}, {3}}, []string{"", "", ""}},
		{"fanout id counted up", []string{"a", "b"}, []string{"--fanout_id=65535"}, []string{"a", "b"}, [][]int{{0}, {1}}, []string{"65535", "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, th := threads(t, len(tc.ifaces))
			for i, ifc := range tc.ifaces {
				th[i].Interface = ifc
			}
			cfg := fast("/bin/true", th, newRecorder())
			cfg.Flags = tc.flags
			g, err := NewGroup(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Stop(t.Context())
			if !slices.Equal(g.Interfaces(), tc.want) {
				t.Fatalf("Interfaces = %q, want %q", g.Interfaces(), tc.want)
			}
			for k, name := range tc.want {
				s := g.Supervisor(name)
				if !slices.Equal(s.ids, tc.ids[k]) {
					t.Errorf("%s: threads %v, want %v", name, s.ids, tc.ids[k])
				}
				for _, i := range tc.ids[k] {
					if s.cfg.Threads[slices.Index(s.ids, i)].PacketsDirectory != th[i].PacketsDirectory {
						t.Errorf("%s: thread %d has the wrong directories", name, i)
					}
				}
				args := s.Args()
				if want := "--iface=" + name; args[len(args)-1] != want {
					t.Errorf("%s: args end %q, want %q", name, args[len(args)-1], want)
				}
				if got := flagValue(args, "fanout_id"); got != tc.fanouts[k] {
					t.Errorf("%s: --fanout_id %q, want %q", name, got, tc.fanouts[k])
				}
			}
		})
	}
}

// One interface's stenotype failing again and again never stops or
// restarts the other's; each is logged with its interface, and STATS
// lines count for the daemon's thread numbers.
func TestGroupSupervisesInterfacesApart(t *testing.T) {
	_, th := threads(t, 3)
	th[0].Interface, th[1].Interface, th[2].Interface = "good", "bad", "good"
	pids := filepath.Join(t.TempDir(), "pids")
	path := script(t, `for a; do case "$a" in --iface=*) ifc=${a#--iface=};; esac; done
echo "$ifc $$" >> `+pids+`
if [ "$ifc" = bad ]; then echo "no such device $ifc" >&2; exit 3; fi
echo "STATS thread=1 packets=5 bytes=300 drops=0" >&2
exec sleep 600`)
	rec := newRecorder()
	g, err := NewGroup(fast(path, th, rec))
	if err != nil {
		t.Fatal(err)
	}
	base := gatherCounter(t, "stenographer_captured_packets_total", "2")
	g.Start()
	good, bad := g.Supervisor("good"), g.Supervisor("bad")
	waitFor(t, "bad's stenotype to fail four times while good's runs", rec, func() bool {
		return bad.Starts() >= 4 && good.Pid() != 0
	})
	if good.Starts() != 1 {
		t.Errorf("good's stenotype started %d times; bad's failures restarted it", good.Starts())
	}
	if up, _ := g.ThreadCaptureState(2); !up {
		t.Error("thread 2 (good) reported down")
	}
	waitFor(t, "good's STATS line to count for thread 2", rec, func() bool {
		return gatherCounter(t, "stenographer_captured_packets_total", "2")-base == 5
	})
	st := g.States()
	if len(st) != 2 || st[0].Name != "good" || !slices.Equal(st[0].Threads, []int{0, 2}) || !st[0].Up || st[0].Pid != good.Pid() ||
		st[1].Name != "bad" || st[1].Starts < 4 {
		t.Errorf("States = %+v", st)
	}
	for _, r := range rec.find("stenotype exited") {
		if r.Attrs["interface"] != "bad" {
			t.Errorf("an exit logged for interface %q: %v", r.Attrs["interface"], r)
		}
	}
	if err := g.Stop(t.Context()); err != nil {
		t.Error(err)
	}
	data, _ := os.ReadFile(pids)
	if n := strings.Count(string(data), "good "); n != 1 {
		t.Errorf("good's stenotype ran %d times:\n%s", n, data)
	}
}
