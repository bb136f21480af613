package coalesce_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/stenographer-ng/stenographer/stenographer/coalesce"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig"
	"github.com/stenographer-ng/stenographer/stenographer/tlsconfig/testcerts"
)

// recorder is a net.Conn that keeps each Write as one piece, failing
// every Write after failAfter of them (when failAfter > 0).
type recorder struct {
	net.Conn
	mu        sync.Mutex
	writes    [][]byte
	failAfter int
}

var errBroken = errors.New("broken pipe")

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failAfter > 0 && len(r.writes) >= r.failAfter {
		return 0, errBroken
	}
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func (r *recorder) pieces() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n []int
	for _, w := range r.writes {
		n = append(n, len(w))
	}
	return n
}

func TestGathering(t *testing.T) {
	big := coalesce.MaxBatch
	for _, tc := range []struct {
		name   string
		held   bool
		writes []int // sizes written
		want   []int // sizes reaching the connection
	}{
		{"not held: each write passes", false, []int{10, 20, 30}, []int{10, 20, 30}},
		{"held: one write at Release", true, []int{16 << 10, 16 << 10, 100}, []int{32<<10 + 100}},
		{"held: nothing written", true, nil, nil},
		{"held: a full batch leaves early", true, []int{big - 10, 20, 5}, []int{big - 10, 25}},
		{"held: a write larger than a batch passes alone", true, []int{10, big + 1, 7}, []int{10, big + 1, 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			c := coalesce.New(rec)
			var sent []byte
			write := func() error {
				for i, n := range tc.writes {
					p := bytes.Repeat([]byte{byte(i + 1)}, n)
					sent = append(sent, p...)
					if k, err := c.Write(p); err != nil || k != n {
						return errors.Join(err, errors.New("short write"))
					}
				}
				return nil
			}
			var err error
			if tc.held {
				err = c.Do(write)
			} else {
				err = write()
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := rec.pieces(); !slices.Equal(got, tc.want) {
				t.Errorf("pieces written %v, want %v", got, tc.want)
			}
			if got := bytes.Join(rec.writes, nil); !bytes.Equal(got, sent) {
				t.Errorf("the connection got %d bytes differing from the %d written", len(got), len(sent))
			}
		})
	}
}

// A gathered write that fails breaks the connection: Release reports it
// and every later Write fails, held or not.
func TestFailedBatchIsSticky(t *testing.T) {
	rec := &recorder{failAfter: 1}
	c := coalesce.New(rec)
	if _, err := c.Write([]byte("first")); err != nil {
		t.Fatal(err)
	}
	c.Hold()
	if _, err := c.Write([]byte("lost")); err != nil {
		t.Fatalf("a gathered write failed before Release: %v", err)
	}
	if err := c.Release(); !errors.Is(err, errBroken) {
		t.Fatalf("Release: %v, want %v", err, errBroken)
	}
	if _, err := c.Write([]byte("after")); !errors.Is(err, errBroken) {
		t.Fatalf("Write after a failed batch: %v, want %v", err, errBroken)
	}
	if err := c.Do(func() error { return nil }); !errors.Is(err, errBroken) {
		t.Fatalf("Do after a failed batch: %v, want %v", err, errBroken)
	}
}

// A nil *Conn (a connection that does not gather) runs Do's fn plainly.
func TestNilConn(t *testing.T) {
	var c *coalesce.Conn
	ran := false
	if err := c.Do(func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("Do on nil: ran %v, err %v", ran, err)
	}
	if coalesce.FromContext(context.Background()) != nil {
		t.Fatal("a context without a Conn returned one")
	}
}

// Over real TLS on TCP: a 256 KiB write, 16 records, leaves the server in
// one piece, the client reads it intact, and Find reaches the Conn under
// the *tls.Conn.
func TestTLSRecordsInOneWrite(t *testing.T) {
	set, err := testcerts.Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stc, err := tlsconfig.Server(set.CA, set.Server.Cert, set.Server.Key)
	if err != nil {
		t.Fatal(err)
	}
	ctc, err := tlsconfig.Client(set.CA, set.Client.Cert, set.Client.Key, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	counting := &countingListener{Listener: ln}
	tln := tls.NewListener(coalesce.Listener(counting), stc)

	payload := make([]byte, 256<<10)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	errc := make(chan error, 1)
	go func() {
		c, err := tln.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			errc <- err
			return
		}
		co := coalesce.Find(tc)
		if co == nil {
			errc <- errors.New("Find found no Conn under the *tls.Conn")
			return
		}
		ctx := coalesce.NewContext(context.Background(), co)
		before := counting.conn.writes()
		err = coalesce.FromContext(ctx).Do(func() error {
			_, err := tc.Write(payload)
			return err
		})
		if err == nil {
			if n := counting.conn.writes() - before; n != 1 {
				err = errors.New("the records of one write left in " + strconv.Itoa(n) + " writes, want 1")
			}
		}
		errc <- err
	}()

	c, err := tls.Dial("tcp", ln.Addr().String(), ctc)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("the client read other bytes than were written")
	}
}

// countingListener remembers its (one) accepted connection, which counts
// the writes that reach TCP.
type countingListener struct {
	net.Listener
	conn *countingConn
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.conn = &countingConn{Conn: c}
	return l.conn, nil
}

type countingConn struct {
	net.Conn
	mu sync.Mutex
	n  int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *countingConn) writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
