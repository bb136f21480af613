// Package connlimit bounds the connections a server holds: in total and
// per client address. Without it, a thousand idle TCP connections that
// never complete a TLS handshake use up a 1024-descriptor limit and lock
// out every legitimate client; with it, connections beyond a bound are
// closed as soon as they are accepted, and the servers' handshake
// timeouts free the rest.
package connlimit

import (
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
// Connections over a bound are closed at once; refusals are logged at
// most every refusalLogEvery, with their count.
func Wrap(ln net.Listener, l Limits, log *slog.Logger) net.Listener {
	return &listener{Listener: ln, lim: l, log: log, perIP: map[string]int{}}
}

const refusalLogEvery = 10 * time.Second

type listener struct {
	net.Listener
	lim Limits
	log *slog.Logger

	mu      sync.Mutex
	total   int
	perIP   map[string]int
	refused int // since the last log line
	lastLog time.Time
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := hostOf(c.RemoteAddr())
		if why := l.take(ip); why != "" {
			c.Close()
			l.refusedOne(ip, why)
			continue
		}
		return &conn{Conn: c, l: l, ip: ip}, nil
	}
}

// take counts a connection from ip, or says which bound it is over.
func (l *listener) take(ip string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= l.lim.MaxConns:
		return "connection limit reached"
	case l.perIP[ip] >= l.lim.MaxConnsPerIP:
		return "per-client connection limit reached"
	}
	l.total++
	l.perIP[ip]++
	return ""
}

func (l *listener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
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
	l.log.Warn("closing new connections: "+why, "refused", n, "last_from", ip,
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
	l    *listener
	ip   string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}
