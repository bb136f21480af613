package daemon

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"golang.org/x/sys/unix"
)

// DialInNS connects to addr from inside the network namespace whose file
// is nsPath (e.g. /var/run/netns/NAME). The socket is created on an OS
// thread switched into that namespace and keeps it for its lifetime; the
// thread is switched back before it is released, or, should that fail,
// ends with its goroutine so that no thread stays in the namespace.
func DialInNS(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{err: fmt.Errorf("dial in %s: open own namespace: %w", nsPath, err)}
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			restored = true
			ch <- result{err: fmt.Errorf("dial in %s: %w", nsPath, err)}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			restored = true
			ch <- result{err: fmt.Errorf("dial in %s: setns: %w", nsPath, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		restored = unix.Setns(orig, unix.CLONE_NEWNET) == nil
		if err != nil {
			err = fmt.Errorf("dial %s in %s: %w", addr, nsPath, err)
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
