package daemon_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/stenographer-ng/stenographer/protobuf"
	"github.com/stenographer-ng/stenographer/tests/internal/daemon"
	"github.com/stenographer-ng/stenographer/tests/internal/netns"
	"github.com/stenographer-ng/stenographer/tests/internal/testenv"
)

// TestGRPCListenAddress: with Host 127.0.0.1 (HTTPS on loopback only) gRPC
// listens on every address, as the reference does, so a remote client in
// the sender namespace reaches it on the capture end's address while HTTPS
// stays unreachable there; with Rpc.ServerHost 127.0.0.1 gRPC is loopback
// only. The first daemon's config also carries the reference key
// TestimonySocket, which is accepted with one warning in the log.
func TestGRPCListenAddress(t *testing.T) {
	pair := netns.NewPair(t)
	const capAddr, sndAddr = "10.203.0.1", "10.203.0.2"
	for _, a := range []struct{ ns, ifc, addr string }{
		{pair.CaptureNS, pair.CaptureIf, capAddr}, {pair.SenderNS, pair.SenderIf, sndAddr},
	} {
		must(t, testenv.Run(testenv.Deadline, "ip", "-n", a.ns, "addr", "add", a.addr+"/24", "dev", a.ifc))
	}
	senderNS := "/var/run/netns/" + pair.SenderNS
	remoteGRPC := capAddr + ":" + strconv.Itoa(daemon.GRPCPort)
	retrieve := func(d *daemon.Daemon) error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := daemon.Retrieve(ctx, d.GRPCConnTo(senderNS, remoteGRPC, nil), &pb.PcapRequest{Query: everything})
		return err
	}

	d := daemon.Start(t, pair, daemon.Options{RPC: true, NoWaitCapture: true, Edit: func(c *daemon.Config) {
		c.TestimonySocket = "/var/run/testimony.sock"
	}})
	if err := retrieve(d); err != nil {
		t.Errorf("gRPC from the sender namespace to %s with no Rpc.ServerHost: %v; want it reachable (the reference listens on every address)", remoteGRPC, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := daemon.DialInNS(ctx, senderNS, "tcp", capAddr+":"+strconv.Itoa(daemon.HTTPSPort))
	if err == nil {
		conn.Close()
		t.Errorf("HTTPS answered on %s with Host 127.0.0.1: want loopback only", capAddr)
	}
	if n := strings.Count(string(d.Log()), "TestimonySocket"); n != 1 {
		t.Errorf("the log mentions TestimonySocket %d times, want one warning:\n%s", n, d.LogTail())
	}
	d.Stop()

	d = daemon.Start(t, pair, daemon.Options{RPC: true, NoWaitCapture: true, RPCEdit: func(r *daemon.RPC) {
		r.ServerHost = "127.0.0.1"
	}})
	if err := retrieve(d); err == nil {
		t.Errorf("gRPC reachable on %s with Rpc.ServerHost 127.0.0.1", remoteGRPC)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	if _, err := daemon.Retrieve(ctx2, d.GRPCConn(nil), &pb.PcapRequest{Query: everything}); err != nil {
		t.Errorf("gRPC on loopback with Rpc.ServerHost 127.0.0.1: %v", err)
	}
}
