package supervisor

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Group runs one Supervisor per capture interface: the threads of one
// interface are one stenotype and one fanout group, so each interface
// has its own disks, and a link that goes away, or a stenotype that keeps
// failing, restarts only its own stenotype. Its methods are safe for
// concurrent use.
type Group struct {
	ifaces []string
	sups   []*Supervisor // one per interface, in ifaces order
	owner  []int         // daemon thread → index into sups
}

// InterfaceState is how capture on one interface is doing.
type InterfaceState struct {
	Name      string
	Threads   []int // the daemon's thread numbers on it
	Up        bool
	DownSince time.Time // zero while up
	Pid       int       // its stenotype, 0 while down
	Starts    int       // times its stenotype was started
}

// NewGroup splits cfg.Threads by their Interface (empty: cfg.Interface)
// and prepares one Supervisor for each, in the order the interfaces first
// appear. A --fanout_id in cfg.Flags is kept for the first interface and
// counted up for the others: the kernel refuses a fanout group that spans
// devices. cfg.ThreadIDs must be nil: the group numbers the threads.
func NewGroup(cfg Config) (*Group, error) {
	if len(cfg.Threads) == 0 {
		return nil, errors.New("supervisor: no threads")
	}
	if cfg.ThreadIDs != nil {
		return nil, errors.New("supervisor: NewGroup numbers the threads itself; ThreadIDs must be nil")
	}
	g := &Group{owner: make([]int, len(cfg.Threads))}
	var subs []Config
	for i, th := range cfg.Threads {
		name := th.Interface
		if name == "" {
			name = cfg.Interface
		}
		k := slices.Index(g.ifaces, name)
		if k < 0 {
			k = len(g.ifaces)
			g.ifaces = append(g.ifaces, name)
			sub := cfg
			sub.Interface, sub.Threads, sub.ThreadIDs = name, nil, []int{}
			sub.Flags = fanoutFlags(cfg.Flags, k)
			subs = append(subs, sub)
		}
		th.Interface = name
		subs[k].Threads = append(subs[k].Threads, th)
		subs[k].ThreadIDs = append(subs[k].ThreadIDs, i)
		g.owner[i] = k
	}
	for _, sub := range subs {
		s, err := New(sub)
		if err != nil {
			// Release the directories the earlier ones locked.
			_ = g.Stop(context.Background())
			return nil, err
		}
		g.sups = append(g.sups, s)
	}
	return g, nil
}

// fanoutFlags gives the k-th interface's stenotype its own --fanout_id
// when flags set one (stenotype takes the last).
func fanoutFlags(flags []string, k int) []string {
	out := append([]string(nil), flags...)
	v := flagValue(flags, "fanout_id")
	if k == 0 || v == "" {
		return out
	}
	id, err := strconv.Atoi(v)
	if err != nil {
		return out // stenotype refuses it with its own message
	}
	return append(out, "--fanout_id="+strconv.Itoa((id+k)&0xffff))
}

// Interfaces returns the capture interfaces, in config order.
func (g *Group) Interfaces() []string { return append([]string(nil), g.ifaces...) }

// Supervisor returns the supervisor of interface name, or nil.
func (g *Group) Supervisor(name string) *Supervisor {
	if k := slices.Index(g.ifaces, name); k >= 0 {
		return g.sups[k]
	}
	return nil
}

// Start starts every interface's supervision loop.
func (g *Group) Start() {
	for _, s := range g.sups {
		s.Start()
	}
}

// Stop stops every interface's stenotype at once (each gets its own
// grace, all bounded by ctx) and returns their errors joined.
func (g *Group) Stop(ctx context.Context) error {
	errs := make([]error, len(g.sups))
	var wg sync.WaitGroup
	for i, s := range g.sups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Stop(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// CaptureState is down while any interface is down (since the earliest
// of those): a result then lacks that interface's recent packets.
func (g *Group) CaptureState() (up bool, since time.Time) {
	up = true
	for _, s := range g.sups {
		u, t := s.CaptureState()
		if !u && (up || t.Before(since)) {
			up, since = false, t
		}
	}
	return up, since
}

// ThreadCaptureState is the capture state of the interface that daemon
// thread i captures on.
func (g *Group) ThreadCaptureState(i int) (up bool, since time.Time) {
	if i < 0 || i >= len(g.owner) {
		return false, time.Time{}
	}
	return g.sups[g.owner[i]].CaptureState()
}

// States returns every interface's state, in config order.
func (g *Group) States() []InterfaceState {
	out := make([]InterfaceState, len(g.sups))
	for k, s := range g.sups {
		up, since := s.CaptureState()
		st := InterfaceState{Name: g.ifaces[k], Threads: append([]int(nil), s.ids...), Up: up,
			Pid: s.Pid(), Starts: s.Starts()}
		if !up {
			st.DownSince = since
		}
		out[k] = st
	}
	return out
}
