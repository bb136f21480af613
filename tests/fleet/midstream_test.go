// A sensor killed while stenofleet streams its part of a query.

package fleet_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/pcapfile"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// midStream SIGSTOPs victim's stenographer, starts a query, waits until
// stenofleet holds a connection to it, then SIGKILLs it (and its
// stenotype): the query completes, its trailer names the victim, the
// other sensors' packets are exact, and what came from the victim is a
// prefix of what it returns alone.
func (e *fleetEnv) midStream(t *testing.T, victim int) {
	v := e.sensors[victim]
	q := "host " + sharedHost
	var others []*sensorNode
	for i, s := range e.sensors {
		if i != victim {
			others = append(others, s)
		}
	}
	want := e.union(t, q, others)
	alone := parse(t, v.d.MustQuery(q, nil)).Packets
	tree := append([]int{v.d.PID()}, daemon.Descendants(v.d.PID())...)
	stall(t, v) // the SIGCONT at cleanup finds it dead: harmless

	type result struct {
		status  int
		body    []byte
		trailer http.Header
		err     error
	}
	got := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", "https://"+fleetAddr+"/query?sensors=good", strings.NewReader(q))
		resp, err := e.client.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{status: resp.StatusCode, body: b, trailer: resp.Trailer, err: err}
	}()
	deadline := time.Now().Add(time.Minute)
	for !pending(v, victim) {
		if time.Now().After(deadline) {
			t.Fatalf("stenofleet's request never reached %s", v.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range tree {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("query with %s killed mid-way: %v", v.name, r.err)
	}
	miss := r.trailer.Get("Steno-Missing-Sensors")
	if r.status != http.StatusOK || !strings.HasPrefix(miss, v.name+"=") || strings.Contains(miss, ",") {
		t.Fatalf("status %d, Steno-Missing-Sensors %q; want 200 naming %s only", r.status, miss, v.name)
	}
	e.tcpdumpReads(t, "sensor killed mid-way", r.body)
	var fromOthers, fromVictim []pcapfile.Packet
	for _, p := range parse(t, r.body).Packets {
		if int(p.Data[4]) == victim { // the sensor number in the source MAC
			fromVictim = append(fromVictim, p)
		} else {
			fromOthers = append(fromOthers, p)
		}
	}
	e.samePackets(t, "the other sensors", fromOthers, want)
	if len(fromVictim) > len(alone) {
		t.Fatalf("%d packets from %s, it has %d", len(fromVictim), v.name, len(alone))
	}
	for i, p := range fromVictim {
		if a := alone[i]; !p.Time.Equal(a.Time) || !bytes.Equal(p.Data, a.Data) {
			t.Fatalf("packet %d from %s is not its %dth alone: the part is not a prefix", i, v.name, i)
		}
	}
	t.Logf("%s killed mid-way: %d of its %d packets arrived; missing %q", v.name, len(fromVictim), len(alone), miss)
}

// pending reports whether bytes from stenofleet wait unread on a
// connection to the stopped sensor: its request (or TLS hello) has
// arrived, so the kill cuts a part in progress, not one not yet begun.
// An idle kept-alive connection has none.
func pending(s *sensorNode, i int) bool {
	r := testenv.Run(testenv.Deadline, "ip", "netns", "exec", s.pair.CaptureNS, "ss", "-Htn", "state", "established",
		"sport", "=", fmt.Sprintf(":%d", daemon.HTTPSPort), "dst", fmt.Sprintf("10.77.%d.1", i))
	if r.Err != nil {
		return false
	}
	for _, l := range strings.Split(string(r.Stdout), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] != "0" {
			return true
		}
	}
	return false
}
