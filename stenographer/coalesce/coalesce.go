// Package coalesce gathers the TLS records of one large write into one
// system call.
//
// Stage: between a server's TLS layer and its TCP connection. Input: the
// records crypto/tls writes (at most 16 KiB of payload each, one Write
// apiece). Output: the same bytes, in order, written to the connection in
// pieces of up to MaxBatch while a writer holds the connection (Hold …
// Release), and unchanged otherwise.
//
// Why: crypto/tls makes one write system call per record, so a 256 KiB
// piece of a PCAP result costs 16 calls, and on a loopback or a fast link
// each call pushes its own segment and wakes the reader: in a profile of
// a 1.5 GB result over HTTPS those calls were a third of the daemon's CPU.
// Gathered, the kernel sends full-sized segments and the reader wakes a
// sixteenth as often, for one copy in memory.
package coalesce

import (
	"context"
	"net"
	"sync"
)

// MaxBatch bounds what a held connection gathers before writing: a
// writer's piece plus its records' framing fits, and a long hold never
// holds more than this in memory.
const MaxBatch = 512 << 10

var batches = sync.Pool{New: func() any { b := make([]byte, 0, MaxBatch); return &b }}

// Conn is a net.Conn whose writes between Hold and Release are gathered
// and written together. Safe for concurrent use; a write from another
// goroutine during a hold (a TLS alert) is gathered too and leaves, in
// order, at Release.
type Conn struct {
	net.Conn
	mu    sync.Mutex
	held  bool
	batch *[]byte // while held
	err   error   // the first failed write of a batch: the connection is broken
}

// New returns c gathering its writes while held.
func New(c net.Conn) *Conn { return &Conn{Conn: c} }

// NetConn returns the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Hold makes the writes that follow wait, gathered, for Release. Hold
// and Release on a nil *Conn do nothing, so a writer need not check
// whether its connection gathers.
func (c *Conn) Hold() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held {
		c.held = true
		c.batch = batches.Get().(*[]byte)
	}
}

// Release writes what was gathered since Hold and ends the hold. Its
// error is that of the first failed write since Hold.
func (c *Conn) Release() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held {
		return c.err
	}
	err := c.flush()
	c.held = false
	*c.batch = (*c.batch)[:0]
	batches.Put(c.batch)
	c.batch = nil
	return err
}

// Do runs fn with c held: the writes fn makes leave together when it
// returns. Its error is fn's, else Release's.
func (c *Conn) Do(fn func() error) error {
	c.Hold()
	err := fn()
	if rerr := c.Release(); err == nil {
		err = rerr
	}
	return err
}

// Write gathers p while the connection is held, else writes it. Once a
// gathered write has failed every Write fails with that error: what the
// TLS layer believed sent was lost, so the stream is broken.
func (c *Conn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.held {
		return c.Conn.Write(p)
	}
	b := *c.batch
	if len(b)+len(p) > cap(b) {
		if err := c.flush(); err != nil {
			return 0, err
		}
		if len(p) > cap(b) {
			return c.Conn.Write(p)
		}
		b = *c.batch
	}
	*c.batch = append(b, p...)
	return len(p), nil
}

func (c *Conn) flush() error {
	if c.err != nil {
		return c.err
	}
	b := *c.batch
	if len(b) == 0 {
		return nil
	}
	_, err := c.Conn.Write(b)
	*c.batch = b[:0]
	if err != nil {
		c.err = err
	}
	return err
}

// Find returns the Conn under c (a *tls.Conn or another wrapper with a
// NetConn method), or nil when there is none.
func Find(c net.Conn) *Conn {
	for c != nil {
		if cc, ok := c.(*Conn); ok {
			return cc
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
	return nil
}

// Listener wraps every connection ln accepts in a Conn.
func Listener(ln net.Listener) net.Listener { return listener{ln} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return New(c), nil
}

type ctxKey struct{}

// NewContext returns ctx carrying c (an http.Server's ConnContext puts
// the connection's Conn there for its handlers).
func NewContext(ctx context.Context, c *Conn) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// FromContext returns the Conn ctx carries, or nil.
func FromContext(ctx context.Context) *Conn {
	c, _ := ctx.Value(ctxKey{}).(*Conn)
	return c
}
