// Package connlimit bounds the connections a server holds: in total and
// per client address. Without it, a thousand idle TCP connections that
// never complete a TLS handshake use up a 1024-descriptor limit and lock
// out every legitimate client. With it, a connection over the per-address
// bound is closed as soon as it is accepted; at the total bound a new
// connection takes the place of the oldest one that has not completed its
// handshake (the server says which have, with Authenticated), so a flood
// of idle connections cannot keep a client with a certificate out; and
// the servers' handshake timeouts free the rest.
package connlimit

import (
	"container/list"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Limits of one listener. Zero fields take the defaults.
type Limits struct {
	// MaxConns bounds the listener's open connections.
	MaxConns int
	// MaxConnsPerIP bounds the open connections from one client address.
	MaxConnsPerIP int
	// HandshakeTimeout bounds the TLS handshake (and, over HTTPS, the
	// request headers that follow it).
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection idle between requests or streams.
	IdleTimeout time.Duration
}

// Defaults. DefaultMaxConns is further bounded by a quarter of the
// process's descriptor limit, so two listeners at their bound still leave
// half the descriptors to packet and index files.
const (
	DefaultMaxConns         = 256
	DefaultMaxConnsPerIP    = 32
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
)

// WithDefaults returns l with its zero fields set to the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxConns <= 0 {
		l.MaxConns = DefaultMaxConns
		var rl unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Cur/4 < uint64(l.MaxConns) {
			l.MaxConns = max(int(rl.Cur/4), 1)
		}
	}
	if l.MaxConnsPerIP <= 0 {
		l.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if l.HandshakeTimeout <= 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	return l
}

// Wrap returns ln with l's connection bounds (l as from WithDefaults).
// Refusals and evictions are logged at most every refusalLogEvery, with
// their count.
func Wrap(ln net.Listener, l Limits, log *slog.Logger) net.Listener {
	return &listener{Listener: ln, lim: l, log: log, perIP: map[string]int{}, pending: list.New()}
}

// Authenticated tells c's listener that c (accepted from a Wrap listener,
// or a *tls.Conn over one) completed its TLS handshake: it is no longer
// closed to make room for a newcomer.
func Authenticated(c net.Conn) {
	// Under a *tls.Conn, perhaps under other wrappers (coalesce.Conn).
	lc, ok := c.(*conn)
	for !ok {
		u, wraps := c.(interface{ NetConn() net.Conn })
		if !wraps {
			return
		}
		c = u.NetConn()
		lc, ok = c.(*conn)
	}
	lc.l.mu.Lock()
	defer lc.l.mu.Unlock()
	if lc.pending != nil {
		lc.l.pending.Remove(lc.pending)
		lc.pending = nil
	}
}

const refusalLogEvery = 10 * time.Second

type listener struct {
	net.Listener
	lim Limits
	log *slog.Logger

	mu      sync.Mutex
	total   int
	perIP   map[string]int
	pending *list.List // of *conn not yet Authenticated, oldest first
	refused int        // refusals and evictions since the last log line
	lastLog time.Time
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		nc := &conn{Conn: c, l: l, ip: hostOf(c.RemoteAddr())}
		evicted, why := l.take(nc)
		if why != "" {
			c.Close()
			l.refusedOne(nc.ip, why)
			continue
		}
		if evicted != nil {
			// Its place is already nc's; closing it gives back the
			// descriptor and its count.
			evicted.Close()
			l.refusedOne(evicted.ip, "connection limit reached: closed the oldest connection still in its handshake")
		}
		return nc, nil
	}
}

// take counts c, making room at the total bound by taking the place of
// the oldest unauthenticated connection (returned, to be closed), or says
// which bound c is over.
func (l *listener) take(c *conn) (evicted *conn, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[c.ip] >= l.lim.MaxConnsPerIP {
		return nil, "per-client connection limit reached"
	}
	if l.total >= l.lim.MaxConns {
		oldest := l.pending.Front()
		if oldest == nil {
			return nil, "connection limit reached, every connection authenticated"
		}
		evicted = l.pending.Remove(oldest).(*conn)
		evicted.pending = nil
	}
	l.total++
	l.perIP[c.ip]++
	c.pending = l.pending.PushBack(c)
	return evicted, ""
}

func (l *listener) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.pending != nil {
		l.pending.Remove(c.pending)
		c.pending = nil
	}
	l.total--
	if l.perIP[c.ip]--; l.perIP[c.ip] <= 0 {
		delete(l.perIP, c.ip)
	}
}

func (l *listener) refusedOne(ip, why string) {
	l.mu.Lock()
	l.refused++
	now := time.Now()
	if now.Sub(l.lastLog) < refusalLogEvery {
		l.mu.Unlock()
		return
	}
	n := l.refused
	l.refused, l.lastLog = 0, now
	total, fromIP := l.total, l.perIP[ip]
	l.mu.Unlock()
	l.log.Warn("closing connections: "+why, "closed", n, "last_from", ip,
		"open", total, "open_from_last", fromIP, "max", l.lim.MaxConns, "max_per_ip", l.lim.MaxConnsPerIP)
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

type conn struct {
	net.Conn
	l       *listener
	ip      string
	pending *list.Element // in l.pending until Authenticated; guarded by l.mu
	once    sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}
